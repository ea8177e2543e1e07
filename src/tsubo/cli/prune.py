"""The prune commands' command-line side: ``container prune``, ``volume prune`` and
``system prune``, with Docker's warning, ``[y/N]`` question and report.

As ``image prune`` (``cli/images.py``): on a terminal they ask; ``-f`` skips the question;
when stdin is not a terminal and ``-f`` is missing they refuse with one line, rather than
read an answer a script never gives (Docker reads one and silently does nothing).
"""

from __future__ import annotations

import sys

from tsubo.cli.argv import FLAG, Option
from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.api import Engine
    from tsubo.cli.argv import Parsed

PROGRAM = "tsubo"
FORCE = Option("force,f", FLAG, "do not prompt for confirmation")
CONTAINER_PRUNE_OPTIONS = (FORCE,)
VOLUME_PRUNE_OPTIONS = (
    Option("all,a", FLAG, "named volumes too, not only anonymous ones"), FORCE)
SYSTEM_PRUNE_OPTIONS = (
    Option("all,a", FLAG, "every image no container uses, not only dangling ones"),
    Option("volumes", FLAG, "anonymous volumes no container uses too"), FORCE)


def confirm(command: str, warning: str, parsed: Parsed) -> bool:
    """True to go ahead: ``-f``, or "y" typed at the question on a terminal."""
    if parsed.flag("force"):
        return True
    if not sys.stdin.isatty():
        raise InvalidArgument(command, "", detail="stdin is not a terminal to confirm "
                              "the removal", hint="add -f")
    sys.stdout.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _no_arguments(command: str, parsed: Parsed) -> None:
    if parsed.positional:
        raise InvalidArgument(command, " ".join(parsed.positional), detail="takes no arguments")


def container_prune_command(engine: Engine, parsed: Parsed) -> int:
    """``container prune [-f]``: remove every stopped container."""
    _no_arguments("container prune", parsed)
    if not confirm("container prune", "This will remove all stopped containers.", parsed):
        return 0
    _report([("Deleted Containers:", engine.prune_containers())], 0)
    return 0


def volume_prune_command(engine: Engine, parsed: Parsed) -> int:
    """``volume prune [-a] [-f]``: remove the unused anonymous (``-a``: all) volumes."""
    _no_arguments("volume prune", parsed)
    what = "all local volumes" if parsed.flag("all") else "anonymous local volumes"
    if not confirm("volume prune", f"This will remove {what} not used by at least one "
                   "container.", parsed):
        return 0
    removed = engine.prune_volumes(all=parsed.flag("all"))
    _report([("Deleted Volumes:", [name for name, _ in removed])],
            sum(size for _, size in removed))
    return 0


def system_prune_command(engine: Engine, parsed: Parsed) -> int:
    """``system prune [-a] [--volumes] [-f]``: stopped containers, unused networks,
    dangling (``-a``: unused) images and, with ``--volumes``, anonymous volumes."""
    _no_arguments("system prune", parsed)
    everything = parsed.flag("all")
    items = ["all stopped containers", "all networks not used by at least one container",
             *(["anonymous volumes not used by at least one container"]
               if parsed.flag("volumes") else []),
             "all images without at least one container associated to them" if everything
             else "all dangling images"]
    warning = "This will remove:\n" + "".join(f"  - {item}\n" for item in items)
    if not confirm("system prune", warning, parsed):
        return 0
    containers = engine.prune_containers()
    networks = [network.name for network in engine.prune_networks()]
    volumes = engine.prune_volumes() if parsed.flag("volumes") else []
    images = engine.prune_images(all_images=everything)
    from tsubo.api import parse_reference

    image_lines = []
    for image in images.deleted:
        image_lines += [f"untagged: {parse_reference(name).familiar}" for name in image.tags]
        image_lines.append(f"deleted: sha256:{image.id}")
    _report([("Deleted Containers:", containers), ("Deleted Networks:", networks),
             ("Deleted Volumes:", [name for name, _ in volumes]),
             ("Deleted Images:", image_lines)],
            images.reclaimed + sum(size for _, size in volumes))
    return 0


def _report(sections: list[tuple[str, list[str]]], reclaimed: int) -> None:
    from tsubo.cli.render import human_size

    lines = []
    for title, names in sections:
        if names:
            lines += [title, *names, ""]
    lines.append(f"Total reclaimed space: {human_size(reclaimed)}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
