"""The image-making commands of ``tsubo``: ``build``, ``commit``, ``diff``, ``export``.

``build`` prints podman's progress (``STEP 2/5: RUN ...``, the step's output as it comes,
``--> Using cache ...`` / ``--> <id>``, ``COMMIT``, the final ID on the last line); ``-q``
only the ID. ``-f -`` reads the Dockerfile from stdin; a context of ``-`` is a tar of the
context on stdin (plain or compressed; its ``Dockerfile`` unless ``-f`` names another).
``diff`` prints Docker's ``A|C|D /path`` lines; ``export`` writes a tar to ``-o FILE`` or
to stdout (refused when stdout is a terminal).
"""

from __future__ import annotations

import os
import sys

from tsubo.cli.argv import FLAG, LIST, VALUE, Option
from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.api import Engine
    from tsubo.cli.argv import Parsed

BUILD_OPTIONS = (
    Option("tag,t", LIST, "name the image NAME[:TAG] (repeatable)"),
    Option("file,f", VALUE, "the Dockerfile (default CONTEXT/Dockerfile; - reads stdin)"),
    Option("build-arg", LIST, "set a build argument KEY=VALUE (KEY alone: from the "
           "environment)"),
    Option("target", VALUE, "build up to this stage"),
    Option("no-cache", FLAG, "do not use the build cache"),
    Option("pull", FLAG, "pull the FROM images even when they are here"),
    Option("platform", VALUE, "OS/ARCH to build for: this machine's only"),
    Option("network", VALUE, "network of RUN steps: bridge, none or host", "bridge"),
    Option("label", LIST, "add a label KEY=VALUE to the image"),
    Option("quiet,q", FLAG, "print only the image ID"),
    Option("iidfile", VALUE, "write the image ID to this file"),
    Option("timestamp", VALUE, "set every time in the image to these seconds since the "
           "epoch (default $SOURCE_DATE_EPOCH)"),
)
COMMIT_OPTIONS = (
    Option("change,c", LIST, "apply a Dockerfile instruction (CMD, ENV, LABEL, ...)"),
    Option("message,m", VALUE, "commit message"),
    Option("author,a", VALUE, "author"),
    Option("pause,p", FLAG, "pause the container while committing (default true)", True),
)
EXPORT_OPTIONS = (Option("output,o", VALUE, "write to this file, not stdout"),)
BUILDER_OPTIONS = (Option("force,f", FLAG, "do not ask for confirmation"),)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _pairs(items: list[str], flag: str, *, from_env: bool = False) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"parse {flag}", item, detail="expected KEY=VALUE")
        if not sep:
            if not from_env:
                raise InvalidArgument(f"parse {flag}", item, detail="expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        found[key] = value
    return found


def build_command(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 1:
        raise InvalidArgument("build", " ".join(parsed.positional),
                              detail="expected exactly one CONTEXT directory")
    context = parsed.positional[0]
    dockerfile = parsed.text("file")
    text = None
    if dockerfile == "-":
        if context == "-":
            raise InvalidArgument("build", "-f - -", detail="stdin cannot be both the "
                                  "Dockerfile and the context")
        text = sys.stdin.read()
        dockerfile = ""
    timestamp = None
    if parsed.text("timestamp"):
        value = parsed.text("timestamp")
        if not value.isdigit():
            raise InvalidArgument("parse --timestamp", value,
                                  detail="expected seconds since the epoch")
        timestamp = int(value)
    network = parsed.text("network") or "bridge"
    if network not in ("bridge", "none", "host"):
        raise InvalidArgument("parse --network", network,
                              detail="expected bridge, none or host")
    quiet = parsed.flag("quiet")

    def say(line: str) -> None:
        _out(line)

    def output(data: bytes) -> None:
        sys.stdout.flush()
        os.write(1, data)

    image = engine.build(context, dockerfile=dockerfile, dockerfile_text=text,
                         tags=parsed.texts("tag"),
                         build_args=_pairs(parsed.texts("build_arg"), "--build-arg",
                                           from_env=True),
                         target=parsed.text("target"), no_cache=parsed.flag("no_cache"),
                         network=network, quiet=quiet,
                         labels=_pairs(parsed.texts("label"), "--label"),
                         timestamp=timestamp, pull=parsed.flag("pull"), say=say,
                         output=output,
                         context_stream=sys.stdin.buffer if context == "-" else None,
                         platform=parsed.text("platform"))
    if parsed.text("iidfile"):
        try:
            with open(parsed.text("iidfile"), "w", encoding="ascii") as iidfile:
                iidfile.write(f"sha256:{image.id}")
        except OSError as error:
            raise TsuboError.from_os_error("write --iidfile", parsed.text("iidfile"),
                                           error) from None
    _out(image.id if not quiet else f"sha256:{image.id}")
    return 0


def commit_command(engine: Engine, parsed: Parsed) -> int:
    if not 1 <= len(parsed.positional) <= 2:
        raise InvalidArgument("commit", " ".join(parsed.positional),
                              detail="expected CONTAINER [REPOSITORY[:TAG]]")
    reference = parsed.positional[1] if len(parsed.positional) == 2 else ""
    image = engine.commit(parsed.positional[0], reference, changes=parsed.texts("change"),
                          message=parsed.text("message"), author=parsed.text("author"),
                          pause=parsed.flag("pause"))
    _out(f"sha256:{image.id}")
    return 0


def diff_command(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 1:
        raise InvalidArgument("diff", " ".join(parsed.positional),
                              detail="expected one CONTAINER")
    lines = [f"{kind} {path}" for kind, path in engine.diff(parsed.positional[0])]
    if lines:
        _out("\n".join(lines))
    return 0


def export_command(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 1:
        raise InvalidArgument("export", " ".join(parsed.positional),
                              detail="expected one CONTAINER")
    output = parsed.text("output")
    if output and output != "-":
        engine.export(parsed.positional[0], output=output)
        return 0
    if os.isatty(1):
        raise InvalidArgument("export", parsed.positional[0], detail="refusing to write a "
                              "tar to a terminal", hint="use -o FILE or redirect stdout")
    with os.fdopen(os.dup(1), "wb") as stdout:
        engine.export(parsed.positional[0], stream=stdout)
    return 0


def builder_command(engine: Engine, parsed: Parsed) -> int:
    """``builder prune [-f]``: the build cache, and the layers only it kept."""
    from tsubo.cli.render import human_size

    if parsed.positional != ["prune"]:
        raise InvalidArgument("builder", " ".join(parsed.positional),
                              detail="expected: builder prune [-f]")
    if not parsed.flag("force"):
        if not sys.stdin.isatty():
            raise InvalidArgument("builder prune", "", detail="this removes the build cache "
                                  "and stdin is not a terminal to confirm it", hint="add -f")
        sys.stdout.write("WARNING! This will remove all the build cache.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    entries, freed = engine.prune_build_cache()
    _out(f"Deleted build cache entries: {entries}\nTotal reclaimed space: {human_size(freed)}")
    return 0
