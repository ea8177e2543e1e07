"""``tsubo lab``: deploy, destroy, inspect, exec, validate, graph — containerlab's verbs
over ``tsubo.api`` (the lab code is ``engine/lab/``)."""

from __future__ import annotations

import sys

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tsubo.api import Engine, Topology
    from tsubo.cli.argv import Parsed

VERBS = "deploy, apply, destroy, inspect, exec, validate, graph or capture"
#: ``lab validate``: netlab's convention
EXIT_CHECK_FAILED = 1
EXIT_NO_CHECKS = 2


def lab_command(engine: Engine, parsed: Parsed) -> int:
    if not parsed.positional:
        raise InvalidArgument("lab", "", detail=f"expected {VERBS}")
    verb, rest = parsed.positional[0], parsed.positional[1:]
    if verb == "capture":
        return _capture(engine, parsed, rest)
    handler = _VERBS.get(verb)
    if handler is None:
        raise InvalidArgument("lab", verb, detail=f"unknown verb: expected {VERBS}")
    if rest:
        raise InvalidArgument(f"lab {verb}", " ".join(rest), detail="unexpected arguments",
                              hint="the topology file goes after -t")
    return handler(engine, parsed)


def _deploy(engine: Engine, parsed: Parsed) -> int:
    if parsed.flag("explain"):
        sys.stdout.write("\n".join(engine.explain_lab(_file(parsed, "deploy"))) + "\n")
        return 0
    changed = engine.deploy_lab(_file(parsed, "deploy"))
    name = engine.read_lab(_file(parsed, "deploy")).name
    if not changed:
        sys.stdout.write(f"lab {name} is already deployed\n")
    _table(engine, [name])
    return 0


def _apply(engine: Engine, parsed: Parsed) -> int:
    changes = engine.apply_lab(_file(parsed, "apply"))
    sys.stdout.write("".join(f"{change}\n" for change in changes) or "nothing to change\n")
    return 0


def _destroy(engine: Engine, parsed: Parsed) -> int:
    for name in _names(engine, parsed, "destroy"):
        engine.destroy_lab(name, cleanup=parsed.flag("cleanup"))
        sys.stdout.write(f"destroyed lab {name}\n")
    return 0


def _inspect(engine: Engine, parsed: Parsed) -> int:
    names = _names(engine, parsed, "inspect")
    if parsed.text("format") == "json":
        import json

        sys.stdout.write(json.dumps([engine.inspect_lab(name) for name in names], indent=2)
                         + "\n")
    elif parsed.text("format") not in ("", "table"):
        raise InvalidArgument("lab inspect", parsed.text("format"),
                              detail="unknown format", hint="table or json")
    else:
        _table(engine, names)
    return 0


def _exec(engine: Engine, parsed: Parsed) -> int:
    command = parsed.text("cmd")
    if not command:
        raise InvalidArgument("lab exec", "", detail="no --cmd given")
    import shlex

    labels = []
    for text in parsed.texts("label"):
        key, sep, value = text.partition("=")
        if not sep:
            raise InvalidArgument("lab exec", text, detail="a label is KEY=VALUE")
        labels.append((key, value))
    status = 0
    for name in _names(engine, parsed, "exec"):
        for container, result in engine.lab_exec(name, shlex.split(command), labels=labels):
            sys.stdout.write(f"--- {container} (exit {result.exit_code})\n")
            sys.stdout.write(result.stdout.decode(errors="replace"))
            status = status or (1 if result.exit_code else 0)
    return status


def _validate(engine: Engine, parsed: Parsed) -> int:
    topology = engine.read_lab(_file(parsed, "validate"))
    if parsed.flag("matrix"):
        return _matrix(engine, topology)
    if not topology.checks:
        sys.stdout.write(f"lab {topology.name} defines no checks (tsubo.checks)\n")
        return EXIT_NO_CHECKS
    checks = engine.validate_lab(topology)
    for check in checks:
        sys.stdout.write(check.describe() + "\n")
    failed = sum(not check.passed for check in checks)
    sys.stdout.write(f"{len(checks) - failed} passed, {failed} failed\n")
    return EXIT_CHECK_FAILED if failed else 0


def _graph(engine: Engine, parsed: Parsed) -> int:
    chosen = parsed.text("format") or ("text" if sys.stdout.isatty() else "dot")
    sys.stdout.write(engine.lab_graph(_file(parsed, "graph"), chosen))
    return 0


_VERBS: dict[str, Callable[[Engine, Parsed], int]] = {
    "deploy": _deploy, "apply": _apply, "destroy": _destroy, "inspect": _inspect,
    "exec": _exec, "validate": _validate, "graph": _graph,
}


def _matrix(engine: Engine, topology: Topology) -> int:
    """Every node to every other node's addresses: a table, ``ok`` or ``-``."""
    results = engine.validate_lab(topology, matrix=True)
    if not results:
        sys.stdout.write(f"lab {topology.name} has no addresses to reach\n")
        return EXIT_NO_CHECKS
    sources = list(dict.fromkeys(result.check.source for result in results))
    targets = list(dict.fromkeys(result.check.target for result in results))
    cell = {(result.check.source, result.check.target): "ok" if result.passed else "-"
            for result in results}
    rows = [["", *targets]]
    rows += [[source, *(cell.get((source, target), "") for target in targets)]
             for source in sources]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    sys.stdout.write("\n".join("  ".join(text.ljust(width) for text, width
                                         in zip(row, widths, strict=True)).rstrip()
                               for row in rows) + "\n")
    failed = sum(not result.passed for result in results)
    sys.stdout.write(f"{len(results) - failed} reached, {failed} not\n")
    return EXIT_CHECK_FAILED if failed else 0


def _capture(engine: Engine, parsed: Parsed, endpoints: list[str]) -> int:
    """``lab capture NODE:IFACE [FILTER...] [-w FILE.pcap] [-c COUNT] [--timeout S]``."""
    if not endpoints:
        raise InvalidArgument("lab capture", "", detail="expected NODE:INTERFACE")
    count = parsed.text("count")
    timeout = parsed.text("timeout")
    try:
        count_value = int(count) if count else 0
        timeout_value = float(timeout) if timeout else None
    except ValueError:
        raise InvalidArgument("lab capture", f"{count} {timeout}".strip(),
                              detail="-c takes a number of packets, --timeout seconds") \
            from None
    [name] = _names(engine, parsed, "capture")
    sys.stdout.write(engine.lab_capture(name, endpoints[0], write=parsed.text("write"),
                                        count=count_value, timeout=timeout_value,
                                        expression=endpoints[1:]))
    return 0


def _file(parsed: Parsed, verb: str) -> str:
    path = parsed.text("topo")
    if not path:
        raise InvalidArgument(f"lab {verb}", "", detail="no topology file given",
                              hint="-t FILE.clab.yml")
    return path


def _names(engine: Engine, parsed: Parsed, verb: str) -> list[str]:
    """The labs a verb acts on: ``--all``, ``--name NAME``, or the one ``-t FILE`` names."""
    if parsed.flag("all"):
        return engine.labs()
    if parsed.text("name"):
        return [parsed.text("name")]
    if parsed.text("topo"):
        return [engine.read_lab(parsed.text("topo")).name]
    if verb == "inspect":
        return engine.labs()
    raise InvalidArgument(f"lab {verb}", "", detail="which lab?",
                          hint="-t FILE, --name NAME or --all")


def _table(engine: Engine, names: list[str]) -> None:
    rows = [["LAB", "NODE", "NAME", "CONTAINER ID", "STATE", "IPV4 ADDRESS"]]
    for name in names:
        info = engine.inspect_lab(name)
        for node in info["nodes"]:
            rows.append([name, node["node"], node["name"], node["container_id"],
                         node["state"], node["ipv4_address"] or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    sys.stdout.write("\n".join("   ".join(cell.ljust(width) for cell, width
                                        in zip(row, widths, strict=True)).rstrip()
                               for row in rows) + "\n")
