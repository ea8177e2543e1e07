"""Pictures of a topology, without deploying it: Graphviz ``dot``, ``mermaid``, ``svg``
(through Graphviz's ``dot`` program) and plain ``text`` (what a terminal gets).

What it owns
    Turning a :class:`~tsubo.engine.lab.topology.Topology` into a graph description:
    one vertex per node (its kind in the label; ``host`` and ``mgmt-net`` when a link
    uses them), one edge per link labelled with both interface names (and the addresses
    from ``tsubo.addresses``). Pure except ``svg``, which runs ``dot -Tsvg`` (Debian's
    graphviz; a clear error without it). :func:`live_topology` draws the engine's own
    networks the same way (``tsubo network graph``): each network a bridge, each
    container on one a node, each endpoint a link with the container's address.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.lab.topology import Endpoint, Topology
    from tsubo.engine.paths import EngineState

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
        from tsubo.errors import Unsupported
        from tsubo.kernel import helpers

        if helpers.which("dot") is None:
            raise Unsupported("draw lab", topology.name, detail="svg needs Graphviz's dot",
                              hint="apt install graphviz, or use --format dot|mermaid|text")
        result = helpers.run(["dot", "-Tsvg"], stdin=render(topology, "dot").encode(),
                             operation="draw lab", obj=topology.name, timeout=60)
        result.check()
        return result.stdout.decode()
    if format == "text":
        width = max((len(_end_text(topology, link.a)) for link in topology.links), default=0)
        title = f"lab {topology.name}" if topology.path else topology.name
        lines = [f"{title}: {len(topology.nodes)} nodes, {len(topology.links)} links"]
        lines += [f"  {_end_text(topology, link.a):<{width}}  ----  "
                  f"{_end_text(topology, link.b)}" for link in topology.links]
        unlinked = sorted(set(topology.nodes) - {end.node for link in topology.links
                                                 for end in (link.a, link.b)})
        lines += [f"  {name}  (no links)" for name in unlinked]
        return "\n".join(lines) + "\n"
    raise InvalidArgument("draw lab", format, detail="unknown format",
                          hint=" or ".join(FORMATS))


def live_topology(engine: EngineState) -> Topology:
    """The engine's networks and the containers on them, as a topology to draw."""
    from tsubo.engine.lab.topology import Endpoint, Link, Mgmt, Node, Topology
    from tsubo.errors import NotFound
    from tsubo.network.store import NetworkStore

    store = NetworkStore(engine.db)
    nodes: dict[str, Node] = {}
    links: list[Link] = []
    addresses: dict[tuple[str, str], tuple[str, ...]] = {}
    for network in store.list_networks():
        bridge = f"{network.name} ({network.subnet})"
        nodes[bridge] = Node(name=bridge, kind="bridge", line=0)
        for endpoint in store.network_endpoints(network.id):
            try:
                container = engine.db.get_container(endpoint.container_id).name
            except NotFound:
                container = endpoint.container_id[:12]
            nodes.setdefault(container, Node(name=container, kind="linux", line=0))
            links.append(Link(Endpoint(container, endpoint.ifname),
                              Endpoint(bridge, endpoint.host_ifname), 0, 0))
            addresses[(container, endpoint.ifname)] = (
                f"{endpoint.address}/{endpoint.prefix_len}",)
    return Topology(name="tsubo networks", path="", prefix="", mgmt=Mgmt(network="none"),
                    nodes=nodes, links=tuple(links), addresses=addresses)
