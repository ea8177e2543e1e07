"""The commands that look at running containers: ``top``, ``stats`` and ``info``, printed
as Docker prints them (tables, ``--format json`` and Go templates)."""

from __future__ import annotations

import sys
import time

from tsubo.cli.argv import FLAG, LIST, VALUE, Option
from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.api import ContainerStats, Engine
    from tsubo.cli.argv import Parsed

STATS_OPTIONS = (
    Option("all,a", FLAG, "all containers (default: the running ones)"),
    Option("no-stream", FLAG, "print one reading and exit"),
    Option("no-trunc", FLAG, "do not truncate IDs"),
    Option("format", VALUE, "table, json, or a Go template ({{.Name}} {{.CPUPerc}})"),
)
EVENTS_OPTIONS = (
    Option("since", VALUE, "events from this time (RFC 3339, Unix seconds, or 10m ago)"),
    Option("until", VALUE, "events up to this time (then exit)"),
    Option("filter,f", LIST, "type=, event=, container=, image=, network=, volume=, label="),
    Option("format", VALUE, "json or a Go template ({{.Action}} {{.Actor.ID}})"),
)
INFO_OPTIONS = (Option("format,f", VALUE, "json or a Go template ({{.CgroupVersion}})"),)
#: seconds between two frames of the live view (Docker's)
STATS_INTERVAL = 1.0
_STATS_COLUMNS = (("ID", "CONTAINER ID"), ("Name", "NAME"), ("CPUPerc", "CPU %"),
                  ("MemUsage", "MEM USAGE / LIMIT"), ("MemPerc", "MEM %"),
                  ("NetIO", "NET I/O"), ("BlockIO", "BLOCK I/O"), ("PIDs", "PIDS"))


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _table(lines: list[list[str]], *, minimum: int = 0) -> str:
    """Left-aligned columns three spaces apart (Docker's tabwriter), each at least
    *minimum* wide."""
    widths = [max(minimum, *(len(line[index]) + 3 for line in lines))
              for index in range(len(lines[0]))]
    return "".join("".join(cell.ljust(width) for cell, width in
                           zip(line[:-1], widths, strict=False)) + line[-1] + "\n"
                   for line in lines)


# --- top ------------------------------------------------------------------------------------

def top_command(engine: Engine, parsed: Parsed) -> int:
    """``top CONTAINER [ps OPTIONS]``."""
    if not parsed.positional:
        raise InvalidArgument("top", "", detail="requires at least 1 argument")
    titles, rows = engine.top(parsed.positional[0], parsed.positional[1:])
    if titles:
        _write(_table([titles, *rows], minimum=20))
    return 0


# --- stats ------------------------------------------------------------------------------------

def binary_size(size: float) -> str:
    """go-units' BytesSize: ``1.5MiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    index = 0
    while size >= 1024 and index < len(units) - 1:
        size /= 1024
        index += 1
    return f"{size:.4g}{units[index]}"


def stats_record(stats: ContainerStats, *, no_trunc: bool = False) -> dict[str, str]:
    """What ``stats --format`` knows of one container (Docker's field names)."""
    from tsubo.cli.render import human_size

    shown = stats.id if no_trunc else stats.id[:12]
    return {
        "Container": shown, "ID": shown, "Name": stats.name,
        "CPUPerc": f"{stats.cpu_percent:.2f}%",
        "MemUsage": f"{binary_size(stats.memory)} / {binary_size(stats.memory_limit)}",
        "MemPerc": f"{stats.memory_percent:.2f}%",
        "NetIO": f"{human_size(stats.net_rx, 3)} / {human_size(stats.net_tx, 3)}",
        "BlockIO": f"{human_size(stats.block_read, 3)} / {human_size(stats.block_write, 3)}",
        "PIDs": str(stats.pids),
    }


def render_stats(records: list[dict[str, str]], template: str) -> str:
    """One frame: the table, JSON lines, or the template per container (``table ...``:
    with a header of the fields' column names)."""
    import json

    from tsubo.cli.gotemplate import Template

    if template == "json":
        return "".join(json.dumps(record) + "\n" for record in records)
    if not template or template == "table":
        return _table([[title for _, title in _STATS_COLUMNS],
                       *([record[key] for key, _ in _STATS_COLUMNS] for record in records)])
    header = ""
    if template.startswith("table "):
        template = template[6:]
        titles = dict(_STATS_COLUMNS)
        header = Template(template).render(
            {key: titles.get(key, key.upper()) for key in records[0]} if records
            else {key: title for key, title in _STATS_COLUMNS})
        header = header.replace("\\t", "\t") + "\n"
    parsed = Template(template)
    return header + "".join(parsed.render(record).replace("\\t", "\t") + "\n"
                            for record in records)


def stats_command(engine: Engine, parsed: Parsed) -> int:
    """``stats [-a] [--no-stream] [--no-trunc] [--format F] [CONTAINER...]``: on a
    terminal a table redrawn in place every second; elsewhere one frame after another;
    ``--no-stream`` one frame (CPU % over half a second)."""
    from tsubo.cli.gotemplate import Template

    template = parsed.text("format")
    if template not in ("", "json", "table"):
        Template(template.removeprefix("table "))  # a bad template fails first
    refs = parsed.positional
    sampler = engine.stats_sampler()

    def rows() -> list[Any]:
        if refs:
            return [engine.container(ref).record for ref in refs]
        return engine.container_records(all=parsed.flag("all"))

    def frame() -> str:
        return render_stats([stats_record(entry, no_trunc=parsed.flag("no_trunc"))
                             for entry in sampler.sample(rows())], template)

    if parsed.flag("no_stream"):
        sampler.sample(rows())
        time.sleep(0.5)
        _write(frame())
        return 0
    live = sys.stdout.isatty()
    while True:
        text = frame()
        _write(("\x1b[H\x1b[2J" if live else "") + text)
        time.sleep(STATS_INTERVAL)


# --- info -------------------------------------------------------------------------------------

def info_command(engine: Engine, parsed: Parsed) -> int:
    """``info [-f TEMPLATE]``."""
    import json

    from tsubo.cli.gotemplate import render
    from tsubo.cli.render import human_size

    if parsed.positional:
        raise InvalidArgument("info", " ".join(parsed.positional), detail="takes no arguments")
    info = engine.info()
    template = parsed.text("format")
    if template == "json":
        _write(json.dumps(info) + "\n")
        return 0
    if template:
        _write(render(template, info) + "\n")
        return 0
    layout = {"hybrid": " (hybrid: v1 controllers, v2 unified tree)"}.get(
        info["CgroupLayout"], "")
    lines = [
        "Server:",
        f" Containers: {info['Containers']}",
        f"  Running: {info['ContainersRunning']}",
        f"  Paused: {info['ContainersPaused']}",
        f"  Stopped: {info['ContainersStopped']}",
        f" Images: {info['Images']}",
        f" Volumes: {info['Volumes']}",
        f" Networks: {info['Networks']}",
        f" Server Version: {info['ServerVersion']}",
        f" Storage Driver: {info['Driver']}",
        f" Cgroup Driver: {info['CgroupDriver']}",
        f" Cgroup Version: {info['CgroupVersion']}{layout}",
        f" Cgroup Parent: {info['CgroupParent']}",
        f" Runtimes: {' '.join(info['Runtimes'])}",
        f" Default Runtime: {info['DefaultRuntime']}",
        f" Firewall Backend: {info['FirewallBackend']}",
        " Security Options:", *(f"  {option}" for option in info["SecurityOptions"]),
        f" Rootless: {str(info['Rootless']).lower()}",
        f" Kernel Version: {info['KernelVersion']}",
        f" Operating System: {info['OperatingSystem']}",
        f" OSType: {info['OSType']}",
        f" Architecture: {info['Architecture']}",
        f" CPUs: {info['NCPU']}",
        f" Total Memory: {human_size(info['MemTotal'])}",
        f" Name: {info['Name']}",
        f" Docker Root Dir: {info['DockerRootDir']}",
    ]
    _write("\n".join(lines) + "\n")
    return 0


# --- events -----------------------------------------------------------------------------------

def events_command(engine: Engine, parsed: Parsed) -> int:
    """``events [--since T] [--until T] [--filter K=V] [--format F]``: the log, then new
    events as they happen (until ``--until``, or an interrupt)."""
    import json

    from tsubo.api import parse_since
    from tsubo.cli.gotemplate import Template

    if parsed.positional:
        raise InvalidArgument("events", " ".join(parsed.positional),
                              detail="takes no arguments")
    now = time.time()
    since = parse_since(parsed.text("since"), now) if parsed.text("since") else None
    until = parse_since(parsed.text("until"), now) if parsed.text("until") else None
    template = parsed.text("format")
    compiled = Template(template) if template not in ("", "json", "{{json .}}") else None
    for event in engine.events(since=since if since is not None else now if until is None
                               else None, until=until, filters=parsed.texts("filter"),
                               follow=until is None or until > now):
        if template in ("json", "{{json .}}"):
            _write(json.dumps(event, separators=(",", ":")) + "\n")
        elif compiled is not None:
            _write(compiled.render(event) + "\n")
        else:
            _write(event_line(event) + "\n")
    return 0


def event_line(event: dict[str, Any]) -> str:
    """Docker's default line: ``TIME TYPE ACTION ID (key=value, ...)``."""
    stamp = int(event.get("timeNano", 0))
    seconds, nanos = divmod(stamp, 1_000_000_000)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    shown = ", ".join(f"{key}={attributes[key]}" for key in sorted(attributes))
    return (f"{when} {event.get('Type')} {event.get('Action')} {actor.get('ID', '')}"
            + (f" ({shown})" if shown else ""))
