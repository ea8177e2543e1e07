"""Pictures of a topology, without deploying it: Graphviz ``dot``, ``mermaid``, ``svg``
(through Graphviz's ``dot`` program) and plain ``text`` (what a terminal gets).

What it owns
    Turning a :class:`~tsubo.engine.lab.topology.Topology` into a graph description:
    one vertex per node (its kind in the label; ``host`` and ``mgmt-net`` when a link
    uses them), one edge per link labelled with both interface names (and the addresses
    from ``tsubo.addresses``). Pure except ``svg``, which runs ``dot -Tsvg`` (Debian's
    graphviz; a clear error without it).
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.lab.topology import Endpoint, Topology

FORMATS = ("dot", "mermaid", "svg", "text")


def _vertices(topology: Topology) -> list[tuple[str, str]]:
    """(name, kind) of every vertex, nodes first in file order."""
    found = [(node.name, node.kind) for node in topology.nodes.values()]
    for link in topology.links:
        for end in (link.a, link.b):
            if end.node not in topology.nodes and (end.node, end.node) not in found:
                found.append((end.node, end.node))
    return found


def _end_label(topology: Topology, end: Endpoint) -> str:
    addresses = topology.addresses.get((end.node, end.interface), ())
    return end.interface + (f" {addresses[0]}" if addresses else "")


def _end_text(topology: Topology, end: Endpoint) -> str:
    addresses = topology.addresses.get((end.node, end.interface), ())
    return f"{end}" + (f" ({addresses[0]})" if addresses else "")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(topology: Topology, format: str = "dot") -> str:
    if format == "dot":
        lines = [f"graph {_quoted(topology.name)} {{", "  node [shape=box];"]
        for name, kind in _vertices(topology):
            shape = ' shape=ellipse' if kind != "linux" else ""
            lines.append(f"  {_quoted(name)} [label={_quoted(f'{name} ({kind})')}{shape}];")
        for link in topology.links:
            lines.append(f"  {_quoted(link.a.node)} -- {_quoted(link.b.node)} "
                         f"[taillabel={_quoted(_end_label(topology, link.a))} "
                         f"headlabel={_quoted(_end_label(topology, link.b))}];")
        return "\n".join([*lines, "}"]) + "\n"
    if format == "mermaid":
        ids = {name: f"n{index}" for index, (name, _) in enumerate(_vertices(topology))}
        lines = ["graph LR"]
        for name, kind in _vertices(topology):
            text = f"{name} ({kind})".replace('"', "'")
            lines.append(f'  {ids[name]}["{text}"]' if kind == "linux"
                         else f'  {ids[name]}(["{text}"])')
        for link in topology.links:
            label = f"{_end_label(topology, link.a)} - {_end_label(topology, link.b)}"
            lines.append(f'  {ids[link.a.node]} ---|"{label}"| {ids[link.b.node]}')
        return "\n".join(lines) + "\n"
    if format == "svg":
        from tsubo.kernel import helpers

        helpers.require("dot")
        result = helpers.run(["dot", "-Tsvg"], stdin=render(topology, "dot").encode(),
                             operation="draw lab", obj=topology.name, timeout=60)
        result.check()
        return result.stdout.decode()
    if format == "text":
        width = max((len(f"{link.a}") for link in topology.links), default=0)
        lines = [f"lab {topology.name}: {len(topology.nodes)} nodes, "
                 f"{len(topology.links)} links"]
        lines += [f"  {_end_text(topology, link.a):<{width}}  ----  "
                  f"{_end_text(topology, link.b)}" for link in topology.links]
        unlinked = sorted(set(topology.nodes) - {end.node for link in topology.links
                                                 for end in (link.a, link.b)})
        lines += [f"  {name}  (no links)" for name in unlinked]
        return "\n".join(lines) + "\n"
    raise InvalidArgument("draw lab", format, detail="unknown format",
                          hint=" or ".join(FORMATS))
