"""The image commands' command-line side: ``images`` (``--format``, ``--digests``,
``--filter``), the ``image SUBCOMMAND`` group, ``image prune``, ``image history``, ``save``,
``load`` and ``system df`` output, as Docker prints them.

``image prune`` asks ``[y/N]`` on a terminal, as Docker does; when stdin is not a terminal
it needs ``-f`` and otherwise refuses with one line (Docker reads the answer from stdin and
silently does nothing: a script that forgot ``-f`` is better told).
"""

from __future__ import annotations

import sys
import time

from tsubo.cli.argv import FLAG, VALUE, Command, Option, Parsed, parse, usage
from tsubo.errors import InvalidArgument, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.api import Engine, Image

PROGRAM = "tsubo"

PRUNE_OPTIONS = (
    Option("all,a", FLAG, "every image no container uses, not only dangling ones"),
    Option("force,f", FLAG, "do not prompt for confirmation"),
)
HISTORY_OPTIONS = (
    Option("quiet,q", FLAG, "only IDs"),
    Option("no-trunc", FLAG, "do not truncate the CREATED BY column"),
)
DF_OPTIONS = (Option("verbose,v", FLAG, "show the space used by each object"),)

#: ``tsubo image VERB`` -> the top-level command it is (looked up in COMMANDS when run, so
#: commands added later, ``pull`` and ``push``, plug in)
IMAGE_ALIASES = {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi",
                 "tag": "tag", "load": "load", "save": "save", "import": "import",
                 "pull": "pull", "push": "push"}


# --- images ------------------------------------------------------------------------------------

def _created(image: Image) -> float:
    """The image config's ``created`` time, else when it was added here."""
    from tsubo.cli.render import _parse_time

    for text in (image.config.get("created"), image.created_at):
        if isinstance(text, str):
            try:
                parsed = _parse_time(text)
            except ValueError:
                continue
            if parsed is not None:
                return parsed
    return time.time()


def glob_match(pattern: str, text: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` do not match ``/``; ``[...]`` is not supported
    (Docker's reference filter patterns are names with stars)."""
    if not pattern:
        return not text
    head = pattern[0]
    if head == "*":
        return any(glob_match(pattern[1:], text[index:])
                   for index in range(len(text) + 1) if "/" not in text[:index])
    if not text:
        return False
    if head == "?":
        return text[0] != "/" and glob_match(pattern[1:], text[1:])
    return head == text[0] and glob_match(pattern[1:], text[1:])


def reference_matches(pattern: str, name: str) -> bool:
    """Docker's ``reference=PATTERN`` filter: *pattern* against the familiar form
    (``busybox:latest``) or name (``busybox``) of *name*, or the full ones."""
    from tsubo.api import parse_reference

    reference = parse_reference(name)
    candidates = (reference.familiar, reference.familiar_name, str(reference), reference.name)
    return any(glob_match(pattern, candidate) for candidate in candidates)


def _image_filters(filters: list[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key not in ("dangling", "reference", "label"):
            raise InvalidArgument("parse --filter", text,
                                  detail="expected dangling=, reference= or label=")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument("parse --filter", text, detail="dangling takes true or false")
        wanted.setdefault(key, []).append(value)
    return wanted


def _has_labels(image: Image, labels: list[str]) -> bool:
    config = image.config.get("config")
    found = config.get("Labels") if isinstance(config, dict) else None
    found = found if isinstance(found, dict) else {}
    for label in labels:
        key, sep, value = label.partition("=")
        if key not in found or (sep and found[key] != value):
            return False
    return True


def image_rows(images: list[Image], filters: list[str]) -> list[tuple[Image, str]]:
    """``(image, name)`` per row, ``""`` for an untagged image, after ``--filter``."""
    wanted = _image_filters(filters)
    rows: list[tuple[Image, str]] = []
    for image in images:
        if "dangling" in wanted:
            dangling = wanted["dangling"][-1].lower() in ("true", "1")
            if dangling != (not image.tags):
                continue
        if "label" in wanted and not _has_labels(image, wanted["label"]):
            continue
        names = image.tags or [""]
        if "reference" in wanted:
            names = [name for name in image.tags
                     if any(reference_matches(pattern, name) for pattern in wanted["reference"])]
        rows += [(image, name) for name in names]
    return rows


def _records(engine: Engine, rows: list[tuple[Image, str]], no_trunc: bool
             ) -> list[dict[str, str]]:
    from tsubo.api import parse_reference
    from tsubo.cli.render import human_duration, human_size

    digests = engine.image_digests()
    now = time.time()
    records = []
    for image, name in rows:
        repository, tag, digest = "<none>", "<none>", "<none>"
        if name:
            reference = parse_reference(name)
            repository, tag = reference.name, reference.tag or "<none>"
            digest = digests.get((reference.name, image.id), "<none>")
        created = _created(image)
        size = human_size(image.size, 3)
        records.append({
            "Repository": repository, "Tag": tag, "Digest": digest,
            "ID": f"sha256:{image.id}" if no_trunc else image.id[:12],
            "CreatedSince": f"{human_duration(now - created)} ago",
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
            "Size": size, "VirtualSize": size,
            "Containers": "N/A", "SharedSize": "N/A", "UniqueSize": "N/A",
        })
    return records


def table(lines: list[list[str]]) -> str:
    """Left-aligned columns, three spaces apart, as Docker's tabwriter."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in
                                zip(line, widths, strict=True)).rstrip() for line in lines)


def images_command(engine: Engine, parsed: Parsed) -> int:
    """``images [-a] [-q] [--digests] [--no-trunc] [--filter K=V] [--format F] [REPO[:TAG]]``."""
    from tsubo.cli.render import format_records

    if len(parsed.positional) > 1:
        raise InvalidArgument("images", " ".join(parsed.positional),
                              detail="takes at most one REPOSITORY[:TAG]")
    filters = parsed.texts("filter") + [f"reference={ref}" for ref in parsed.positional]
    rows = image_rows(engine.images(), filters)
    no_trunc = parsed.flag("no_trunc")
    if parsed.flag("quiet"):
        ids: list[str] = []
        for image, _name in rows:
            shown = f"sha256:{image.id}" if no_trunc else image.id[:12]
            if shown not in ids:
                ids.append(shown)
        _write("".join(f"{shown}\n" for shown in ids))
        return 0
    records = _records(engine, rows, no_trunc)
    columns = ["Repository", "Tag", *(["Digest"] if parsed.flag("digests") else []),
               "ID", "CreatedSince", "Size"]
    heads = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
             "CreatedSince": "CREATED", "Size": "SIZE"}

    def listing() -> str:
        return table([[heads[column] for column in columns],
                      *([record[column] for column in columns] for record in records)])

    if parsed.text("format"):
        _write(format_records(records, parsed.text("format"), listing))
    else:
        _write(listing() + "\n")
    return 0


# --- the image group ---------------------------------------------------------------------------

def image_command(engine: Engine, parsed: Parsed, commands: dict[str, Command]) -> int:
    """``image VERB ...``: the top-level command *VERB* stands for, or prune, history,
    inspect (images only)."""
    if not parsed.positional:
        raise InvalidArgument("image", "", detail="expected a subcommand: "
                              + ", ".join(sorted({*IMAGE_ALIASES, *_GROUP_ONLY})))
    verb, rest = parsed.positional[0], parsed.positional[1:]
    command = _GROUP_ONLY.get(verb)
    if command is None and verb in IMAGE_ALIASES:
        command = commands.get(IMAGE_ALIASES[verb])
        if command is None:
            raise Unsupported(f"image {verb}", "", detail="not available in this build")
    if command is None:
        raise InvalidArgument("image", verb, detail="unknown subcommand",
                              hint=f"'{PROGRAM} image' lists them")
    if rest[:1] in (["--help"], ["-h"]):
        _write(f"usage: {PROGRAM} image {verb} {command.usage.partition(' ')[2]}\n\n"
               f"{command.summary}\n\n{usage(command.options)}\n")
        return 0
    sub = parse(rest, command.options, f"image {verb}", stop_at_positional=False,
                combine_short=True, help_command=f"{PROGRAM} image {verb}")
    return command.handler(engine, sub)


def image_inspect_command(engine: Engine, parsed: Parsed) -> int:
    """``image inspect IMAGE...``: images only (``inspect`` tries containers first)."""
    from tsubo.cli.gotemplate import format_inspected

    if not parsed.positional:
        raise InvalidArgument("image inspect", "", detail="requires at least one image")
    _write(format_inspected([engine.image(ref).inspect() for ref in parsed.positional],
                            parsed.text("format")))
    return 0


def prune_command(engine: Engine, parsed: Parsed) -> int:
    """``image prune [-a] [-f]``."""
    from tsubo.api import parse_reference
    from tsubo.cli.render import human_size

    if parsed.positional:
        raise InvalidArgument("image prune", " ".join(parsed.positional),
                              detail="takes no arguments")
    everything = parsed.flag("all")
    if not parsed.flag("force"):
        what = ("all images without at least one container associated to them" if everything
                else "all dangling images")
        if not sys.stdin.isatty():
            raise InvalidArgument("image prune", "", detail=f"this removes {what} and stdin "
                                  "is not a terminal to confirm it", hint="add -f")
        sys.stdout.write(f"WARNING! This will remove {what}.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = engine.prune_images(all_images=everything)
    lines = []
    for image in result.deleted:
        lines += [f"Untagged: {parse_reference(name).familiar}" for name in image.tags]
        lines.append(f"Deleted: sha256:{image.id}")
    if lines:
        lines = ["Deleted Images:", *lines, ""]
    lines.append(f"Total reclaimed space: {human_size(result.reclaimed)}")
    _write("\n".join(lines) + "\n")
    return 0


def history_command(engine: Engine, parsed: Parsed) -> int:
    """``image history IMAGE``: the config's history, newest first; a step that made a
    layer shows that layer's size."""
    from tsubo.cli.render import _parse_time, human_duration, human_size

    if len(parsed.positional) != 1:
        raise InvalidArgument("image history", " ".join(parsed.positional),
                              detail="requires exactly one image")
    image = engine.image(parsed.positional[0])
    sizes = engine.layer_sizes()
    history = image.config.get("history")
    steps = [step for step in history if isinstance(step, dict)] \
        if isinstance(history, list) else []
    if not steps:  # an imported image has none: one step per layer
        steps = [{"created_by": "", "comment": "Imported"} for _ in image.layers]
    layers = iter(image.layers)
    lines = []
    now = time.time()
    for index, step in enumerate(steps):
        size = 0
        if not step.get("empty_layer"):
            size = sizes.get(next(layers, ""), 0)
        created_by = str(step.get("created_by", ""))
        if not parsed.flag("no_trunc") and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        shown_id = image.id[:12] if index == len(steps) - 1 else "<missing>"
        created = step.get("created")
        try:
            when = _parse_time(created) if isinstance(created, str) else None
        except ValueError:
            when = None
        age = f"{human_duration(now - when)} ago" if when else "N/A"
        lines.append([shown_id, age, created_by, human_size(size, 3),
                      str(step.get("comment", ""))])
    lines.reverse()
    if parsed.flag("quiet"):
        _write("".join(f"{line[0]}\n" for line in lines))
        return 0
    _write(table([["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], *lines]) + "\n")
    return 0


_GROUP_ONLY: dict[str, Command] = {
    "prune": Command(prune_command, PRUNE_OPTIONS, "image prune [-a] [-f]",
                     "remove dangling images (-a: every image no container uses)"),
    "history": Command(history_command, HISTORY_OPTIONS, "image history [-q] IMAGE",
                       "show the history of an image"),
    "inspect": Command(image_inspect_command,
                       (Option("format,f", VALUE, "a Go template ({{.Config.Cmd}}) or json"),),
                       "image inspect [-f TEMPLATE] IMAGE...",
                       "show images as JSON, or through a Go template"),
}


# --- save / load -------------------------------------------------------------------------------

def save_command(engine: Engine, parsed: Parsed) -> int:
    """``save [-o FILE] [--format F] IMAGE...``."""
    sys.stdout.flush()
    engine.save(parsed.positional, format=parsed.text("format") or "docker-archive",
                output=parsed.text("output"), stream=sys.stdout.buffer)
    return 0


def load_command(engine: Engine, parsed: Parsed) -> int:
    """``load [-i FILE|DIR] [-q]``."""
    from tsubo.api import iter_loaded_lines

    if parsed.positional:
        raise InvalidArgument("load", " ".join(parsed.positional),
                              detail="takes no arguments", hint="use -i FILE")
    loaded = engine.load(parsed.text("input"), sys.stdin.buffer)
    _write("".join(f"{line}\n" for line in iter_loaded_lines(loaded)))
    return 0


# --- system df ---------------------------------------------------------------------------------

def _reclaimable(reclaimable: int, total: int) -> str:
    from tsubo.cli.render import human_size

    if total > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable)


def df_command(engine: Engine, args: list[str]) -> int:
    """``system df [-v]``: Docker's summary (without Build Cache: there is no builder), or
    with ``-v`` each image, container and volume."""
    from tsubo.cli.render import human_duration, human_size, status_text

    parsed = parse(args, DF_OPTIONS, "system df", stop_at_positional=False, combine_short=True,
                   help_command=f"{PROGRAM} system df")
    if parsed.positional:
        raise InvalidArgument("system df", " ".join(parsed.positional),
                              detail="takes no arguments")
    usage_now = engine.disk_usage()
    summaries = (("Images", usage_now.image_summary),
                 ("Containers", usage_now.container_summary),
                 ("Local Volumes", usage_now.volume_summary))
    if not parsed.flag("verbose"):
        _write(table([["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                      *([kind, str(s.total), str(s.active), human_size(s.size),
                         _reclaimable(s.reclaimable, s.size)] for kind, s in summaries)])
               + "\n")
        return 0
    from tsubo.api import parse_reference

    now = time.time()
    images = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
               "UNIQUE SIZE", "CONTAINERS"]]
    for item in usage_now.images:
        age = f"{human_duration(now - _created(item.image))} ago"
        for name in item.image.tags or [""]:
            reference = parse_reference(name) if name else None
            images.append([reference.name if reference else "<none>",
                           (reference.tag or "<none>") if reference else "<none>",
                           item.image.id[:12], age, human_size(item.size),
                           human_size(item.shared_size),
                           human_size(item.size - item.shared_size), str(item.containers)])
    containers = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED",
                   "STATUS", "NAMES"]]
    from tsubo.cli.render import _fields

    for container in usage_now.containers:
        fields = _fields(container.row, now)
        command = fields["Command"]
        command = f'"{command[:17]}…"' if len(command) > 20 else f'"{command}"'
        containers.append([fields["ID"], fields["Image"][:30], command,
                           str(container.volumes), human_size(container.size),
                           fields["RunningFor"], status_text(container.row, now),
                           fields["Names"]])
    volumes = [["VOLUME NAME", "LINKS", "SIZE"]]
    volumes += [[volume.name, str(volume.links), human_size(volume.size)]
                for volume in usage_now.volumes]
    _write(f"Images space usage:\n\n{table(images)}\n\n"
           f"Containers space usage:\n\n{table(containers)}\n\n"
           f"Local Volumes space usage:\n\n{table(volumes)}\n")
    return 0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
