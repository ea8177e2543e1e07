"""The wiring of a lab as data: which ``ip -batch`` lines run where, in which order — pure.

What it owns
    :func:`plan_wiring` turns a topology into a :class:`Wiring` (the lines of the host's
    namespace, then per node its sysctls and lines), which the deploy applies
    (``manager.py``) and :func:`explain` prints as the equivalent ``ip`` and ``sysctl``
    commands, runnable by hand: one plan, two readers, so the printed commands are what
    tsubo does (a test replays them in a fresh namespace and compares the result with a
    deploy's).
"""

from __future__ import annotations

from dataclasses import dataclass

from tsubo.engine.lab.topology import HOST, MGMT_NET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.lab.topology import Topology


@dataclass(frozen=True)
class NodeWiring:
    netns: str
    #: (key in slash form, value): ``net/ipv4/ip_forward``
    sysctls: tuple[tuple[str, str], ...]
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Wiring:
    #: bridge nodes (each made only when missing)
    bridges: tuple[str, ...]
    #: interfaces that live in the host's namespace (recorded before they are made)
    host_ends: tuple[str, ...]
    host_lines: tuple[str, ...]
    nodes: tuple[NodeWiring, ...]


def plan_wiring(topology: Topology, mgmt_bridge: str = "") -> Wiring:
    """The wiring of *topology* (*mgmt_bridge*: the management network's bridge, for
    ``mgmt-net`` ends)."""
    from tsubo.network import links

    def side(node: str) -> tuple[str | None, str]:
        """(netns, master bridge) of an endpoint's node."""
        if node == HOST:
            return None, ""
        if node == MGMT_NET:
            return None, mgmt_bridge
        if topology.nodes[node].kind == "bridge":
            return None, node
        return topology.container_name(node), ""

    host_ends = [end.interface for link in topology.links for end in (link.a, link.b)
                 if side(end.node)[0] is None]
    host_lines: list[str] = []
    for link in topology.links:
        a_netns, a_master = side(link.a.node)
        b_netns, b_master = side(link.b.node)
        host_lines += links.plan_veth(link.a.interface, a_netns, link.b.interface, b_netns,
                                      mtu=link.mtu, a_master=a_master, b_master=b_master)
    host_lines += links.plan_up(host_ends)
    for (owner, ifname), addresses in sorted(topology.addresses.items()):
        if owner == HOST:
            host_lines += links.plan_addresses(ifname, addresses)
    host_lines += [links.plan_route(route.destination, route.via)
                   for route in topology.routes.get(HOST, ())]
    nodes = []
    for node in topology.nodes.values():
        if node.kind != "linux" or node.network_mode == "host":
            continue
        ifnames = sorted({end.interface for link in topology.links
                          for end in (link.a, link.b) if end.node == node.name})
        lines = ["link set lo up", *links.plan_up(ifnames)]
        for ifname in ifnames:
            lines += links.plan_addresses(ifname, topology.addresses.get((node.name, ifname),
                                                                         ()))
        lines += [links.plan_route(route.destination, route.via)
                  for route in topology.routes.get(node.name, ())]
        sysctls = tuple((key.replace(".", "/"), value) for key, value in node.sysctls)
        nodes.append(NodeWiring(topology.container_name(node.name), sysctls, tuple(lines)))
    bridges = tuple(node.name for node in topology.nodes.values() if node.kind == "bridge")
    return Wiring(bridges, tuple(host_ends), tuple(host_lines), tuple(nodes))


def explain(topology: Topology, mgmt_bridge: str = "") -> list[str]:
    """The shell commands that wire *topology* as a deploy does, in its order. The nodes'
    namespaces stand in for their containers (``ip netns add``); a node with a
    management network also gets ``eth0`` there from the engine (``tsubo network``)."""
    from tsubo.network import links

    wiring = plan_wiring(topology, mgmt_bridge)
    commands = [f"# {topology.name}: the nodes' network namespaces (tsubo starts each "
                "node's container in its own)"]
    commands += [f"ip netns add {node.netns}" for node in wiring.nodes]
    managed = [topology.container_name(node.name) for node in topology.nodes.values()
               if topology.has_mgmt(node)]
    if managed:
        commands.append(f"# eth0 of {', '.join(managed)}: on the management network "
                        f"{topology.mgmt.network} (tsubo network create, run --network)")
    if wiring.bridges:
        commands.append("# bridges (made only when missing)")
        commands += [f"ip {line}" for name in wiring.bridges
                     for line in links.plan_bridge(name)]
    commands.append("# links: each end straight into its namespace; the host's ends")
    commands += [f"ip {line}" for line in wiring.host_lines]
    for node in wiring.nodes:
        commands.append(f"# {node.netns}")
        commands += [f"ip netns exec {node.netns} sysctl -qw {key.replace('/', '.')}={value}"
                     for key, value in node.sysctls]
        commands += [f"ip -n {node.netns} {line}" for line in node.lines]
    return commands
