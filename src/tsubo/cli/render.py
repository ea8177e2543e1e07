"""What ``tsubo ps`` and ``tsubo volume`` print: Docker's tables, JSON and ``{{.Field}}``
templates, and the status words ("Up 5 seconds", "Exited (0) 3 minutes ago")."""

from __future__ import annotations

import sys
import time

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tsubo.api import ContainerRecord as ContainerRow
    from tsubo.api import Engine


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    import calendar

    main, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return seconds + float(f"0.{fraction or 0}")


def human_duration(seconds: float) -> str:
    """Docker's go-units HumanDuration."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 60:
        return "About a minute" if int(minutes) == 1 else f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 48:
        return "About an hour" if int(hours) == 1 else f"{int(hours)} hours"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days"
    return f"{int(days / 7)} weeks"


#: how ``ps`` shows a running container's health (Docker's words)
_HEALTH_SHOWN = {"starting": " (health: starting)", "healthy": " (healthy)",
                 "unhealthy": " (unhealthy)"}


def status_text(row: ContainerRow, now: float, health: str = "") -> str:
    started = _parse_time(row.started_at)
    finished = _parse_time(row.finished_at)
    if row.state in ("running", "paused") and started:
        text = f"Up {human_duration(now - started)}"
        if row.state == "paused":
            return text + " (Paused)"
        return text + _HEALTH_SHOWN.get(health, "")
    if row.state == "restarting" and finished:
        return f"Restarting ({row.exit_code}) {human_duration(now - finished)} ago"
    if row.state == "exited" and finished:
        return f"Exited ({row.exit_code}) {human_duration(now - finished)} ago"
    return row.state.capitalize()


def size_text(sizes: tuple[int, int]) -> str:
    """``ps -s``'s SIZE: ``2B (virtual 4.26MB)`` (go-units, precision 3, as Docker)."""
    return f"{human_size(sizes[0], 3)} (virtual {human_size(sizes[1], 3)})"


def _fields(row: ContainerRow, now: float, health: str = "", ports: str = "") -> dict[str, str]:
    from tsubo import jsonwire

    options = jsonwire.loads(row.options)
    assert isinstance(options, dict)
    command = " ".join([*(options.get("entrypoint") or []), *(options.get("command") or [])])
    created = _parse_time(row.created_at) or now
    return {
        "ID": row.id[:12], "Image": str(options.get("image") or row.rootfs),
        "Command": command,
        "CreatedAt": row.created_at, "RunningFor": f"{human_duration(now - created)} ago",
        "Status": status_text(row, now, health), "State": row.state, "Names": row.name,
        "Ports": ports, "Labels": row.labels,
    }


def container_table(rows: list[ContainerRow], health: dict[str, str] | None = None, *,
                    no_trunc: bool = False, ports: dict[str, str] | None = None,
                    sizes: dict[str, tuple[int, int]] | None = None) -> str:
    """``ps``'s table (*no_trunc*: full IDs and commands, as ``--no-trunc``; *ports*: the
    PORTS column's text by container ID; *sizes*: ``-s``'s SIZE column)."""
    now = time.time()
    table = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES",
              *(["SIZE"] if sizes is not None else [])]]
    for row in rows:
        fields = _fields(row, now, (health or {}).get(row.id, ""),
                         (ports or {}).get(row.id, ""))
        command = fields["Command"]
        command = f'"{command[:17]}…"' if len(command) > 20 and not no_trunc \
            else f'"{command}"'
        table.append([row.id if no_trunc else fields["ID"],
                      fields["Image"] if no_trunc else fields["Image"][:30], command,
                      fields["RunningFor"],
                      fields["Status"], fields["Ports"], fields["Names"],
                      *([size_text(sizes[row.id])] if sizes is not None else [])])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in
                                zip(line, widths, strict=True)).rstrip() for line in table)


def format_rows(rows: list[ContainerRow], template: str,
                health: dict[str, str] | None = None, *, no_trunc: bool = False,
                ports: dict[str, str] | None = None,
                sizes: dict[str, tuple[int, int]] | None = None) -> str:
    now = time.time()
    records = [_fields(row, now, (health or {}).get(row.id, ""), (ports or {}).get(row.id, ""))
               for row in rows]
    for record, row in zip(records, rows, strict=True):
        if no_trunc:
            record["ID"] = row.id
        if sizes is not None:
            record["Size"] = size_text(sizes[row.id])
    return format_records(records, template,
                          lambda: container_table(rows, health, no_trunc=no_trunc, ports=ports,
                                                  sizes=sizes))


def format_records(records: list[dict[str, str]], template: str,
                   table: Callable[[], str]) -> str:
    """``--format``: ``json`` (one object a line), ``table`` (*table*'s text), or a
    ``{{.Field}}`` template filled from each record (``ps``, ``images``)."""
    if template in ("json", "{{json .}}"):
        import json

        return "".join(json.dumps(record) + "\n" for record in records)
    if template == "table":
        return table() + "\n"
    if template.startswith("table "):
        template = template[6:]
    out = []
    for fields in records:
        line = template
        for key, value in fields.items():
            line = line.replace("{{." + key + "}}", value).replace("{{ ." + key + " }}", value)
        if "{{" in line:
            raise InvalidArgument("parse --format", template,
                                  detail=f"unknown field; known: {', '.join(fields)}")
        out.append(line.replace("\\t", "\t") + "\n")
    return "".join(out)


def human_size(size: float, precision: int = 4) -> str:
    """go-units' HumanSizeWithPrecision, as Docker prints sizes: ``4.26MB``, ``0B``
    (``images`` uses precision 3, ``system df`` 4)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    text = f"{size:.{precision}g}"
    if "e" in text and index < len(units) - 1:  # %g of 999.95 is 1e+03: one unit up
        return f"{size / 1000:.{precision}g}{units[index + 1]}"
    return text + units[index]


def filter_rows(rows: list[ContainerRow], filters: list[str], *, all_states: bool,
                networks: Callable[[ContainerRow], set[str]] | None = None
                ) -> list[ContainerRow]:
    """``ps --filter``: *networks* gives a container's network names and IDs
    (``network=``)."""
    from tsubo import jsonwire

    wanted: dict[str, list[str]] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key not in ("status", "name", "id", "label", "ancestor", "network"):
            raise InvalidArgument("parse --filter", text,
                                  detail="expected status=, name=, id=, label=, ancestor= "
                                  "or network=")
        wanted.setdefault(key, []).append(value)
    if "status" not in wanted and not all_states:
        rows = [row for row in rows if row.state in ("running", "paused", "restarting")]
    result = []
    for row in rows:
        labels = jsonwire.loads(row.labels)
        assert isinstance(labels, dict)
        if "status" in wanted and row.state not in wanted["status"]:
            continue
        if "name" in wanted and not any(v in row.name for v in wanted["name"]):
            continue
        if "id" in wanted and not any(row.id.startswith(v) for v in wanted["id"]):
            continue
        if "ancestor" in wanted and not any(_descends(row, v) for v in wanted["ancestor"]):
            continue
        if "network" in wanted and networks is not None and \
                not set(wanted["network"]) & networks(row):
            continue
        if "label" in wanted and not all(
                (label.partition("=")[0] in labels and
                 (not label.partition("=")[1] or
                  labels[label.partition("=")[0]] == label.partition("=")[2]))
                for label in wanted["label"]):
            continue
        result.append(row)
    return result


def _descends(row: ContainerRow, image: str) -> bool:
    """``--filter ancestor=IMAGE``: made from *image* (the same reference, however
    spelled: ``bb``, ``bb:latest``, ``docker.io/library/bb``; or an ID prefix)."""
    from tsubo import jsonwire
    from tsubo.api import parse_reference
    from tsubo.errors import TsuboError

    options = jsonwire.loads(row.options)
    name = str(options.get("image") or "") if isinstance(options, dict) else ""
    bare = image.removeprefix("sha256:")
    if len(bare) >= 4 and row.image.startswith(bare):
        return True
    try:
        return bool(name) and str(parse_reference(name)) == str(parse_reference(image))
    except TsuboError:
        return False


def volume_command(engine: Engine, args: list[str], *, quiet: bool = False) -> int:
    import json

    if not args:
        raise InvalidArgument("volume", "", detail="expected create, ls, inspect or rm")
    verb, names = args[0], args[1:]
    out = sys.stdout
    if verb == "create":
        out.write(engine.create_volume(names[0] if names else "") + "\n")
    elif verb in ("ls", "list"):
        volumes = engine.volumes()  # an unusable root fails before the header
        if not quiet:
            out.write("DRIVER    VOLUME NAME\n")
        for volume in volumes:
            out.write(f"{volume.name}\n" if quiet else f"local     {volume.name}\n")
    elif verb == "inspect":
        out.write(json.dumps([engine.inspect_volume(name) for name in names], indent=4)
                  + "\n")
    elif verb in ("rm", "remove"):
        for name in names:
            engine.remove_volume(name)
            out.write(name + "\n")
    else:
        raise InvalidArgument("volume", verb, detail="expected create, ls, inspect or rm")
    return 0
