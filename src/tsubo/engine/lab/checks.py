"""Lab checks: does ``from`` reach ``to`` (or not), over the topology's own interfaces.

What it owns
    Resolving a check to (namespace, interface, address) and running its probe
    (:mod:`tsubo.kernel.probes`) inside the source node's namespace.

Decisions
    * A check can never pass over the management network: the probe is bound to an
      interface of the topology's links (``SO_BINDTODEVICE``). With ``from: r1`` (no
      interface) the route to the target picks it, and a route through anything that is
      not one of the node's link interfaces (``eth0``, the management interface) fails the
      check, saying so, instead of probing. A target inside the management subnet is
      refused the same way.
    * ``to: node:iface`` is that interface's first address in ``tsubo.addresses``;
      ``to: node`` the node's first address (interfaces in name order).
    * Checks run in up to 16 threads (a namespace is entered per thread), each probe
      costing no process; an unreachable one waits out its timeout (1 s unless the check
      says otherwise; 0.5 s in a matrix).
    * The matrix (``validate --matrix``): every linux node to every address of every other
      node, by ICMP, each routed over the source's own link interfaces as any check.
"""

from __future__ import annotations

from dataclasses import dataclass

from tsubo.engine.lab.topology import HOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.lab.topology import Check, Topology


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    detail: str

    def describe(self) -> str:
        check = self.check
        what = f"tcp/{check.tcp_port}" if check.tcp_port else "icmp"
        expect = "reaches" if check.reachable else "does not reach"
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {check.source} {expect} {check.target} ({what}): {self.detail}"


def target_address(topology: Topology, target: str) -> str:
    """The address a check's ``to`` names (InvalidArgument when it names none)."""
    from tsubo.errors import InvalidArgument

    if ":" in target:
        node, ifname = target.split(":", 1)
        found = topology.addresses.get((node, ifname), ())
    elif target in topology.nodes or target == HOST:
        found = next((addresses for (node, _), addresses in sorted(topology.addresses.items())
                      if node == target and addresses), ())
    else:
        return target
    if not found:
        raise InvalidArgument("check", target, detail="has no address in tsubo.addresses")
    return found[0].split("/")[0]


def lab_interfaces(topology: Topology, node: str) -> set[str]:
    return {end.interface for link in topology.links for end in (link.a, link.b)
            if end.node == node}


def matrix_checks(topology: Topology) -> list[Check]:
    """One reachability check from every linux node to every address of every other
    node (interfaces in name order)."""
    from tsubo.engine.lab.topology import Check

    linux = [name for name, node in topology.nodes.items() if node.kind == "linux"]
    targets = [(node, ifname) for (node, ifname), addresses in sorted(topology.addresses.items())
               if node in linux and addresses]
    return [Check(source, f"{node}:{ifname}", True, 0, 0.5, 0)
            for source in linux for node, ifname in targets if node != source]


def run_checks(topology: Topology, checks: list[Check], *, mgmt_subnet: str = ""
               ) -> list[CheckResult]:
    """Run *checks* (in threads), results in their order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(checks)))) as pool:
        return list(pool.map(lambda check: run_check(topology, check,
                                                     mgmt_subnet=mgmt_subnet), checks))


def run_check(topology: Topology, check: Check, *, mgmt_subnet: str = "") -> CheckResult:
    """Run one check now (the lab is deployed)."""
    import ipaddress

    from tsubo.errors import TsuboError
    from tsubo.kernel import iproute, probes

    try:
        address = target_address(topology, check.target)
    except TsuboError as error:
        return CheckResult(check, False, error.detail)
    if mgmt_subnet and ipaddress.ip_address(address) in ipaddress.ip_network(mgmt_subnet):
        return CheckResult(check, False, f"{address} is on the management network "
                           f"({mgmt_subnet}): checks use the topology's own addresses")
    node, _, ifname = check.source.partition(":")
    netns = topology.container_name(node)
    own = lab_interfaces(topology, node)
    try:
        if not ifname:
            routes = iproute.query(["route", "get", address], netns=netns)
            device = routes[0].get("dev", "") if isinstance(routes, list) and routes \
                and isinstance(routes[0], dict) else ""
            if device not in own:
                return CheckResult(check, False,
                                   f"the route to {address} leaves through "
                                   f"{device or 'nothing'}, not a link of {node}")
            ifname = str(device)
        with iproute.InNetns(netns):
            if check.tcp_port:
                answered = probes.tcp_connect(address, check.tcp_port, ifname=ifname,
                                              timeout=check.timeout)
            else:
                answered = probes.icmp_echo(address, ifname=ifname, timeout=check.timeout,
                                            tries=2 if check.reachable else 1)
    except iproute.IpError as error:
        if not check.reachable and "unreachable" in error.detail.lower():
            return CheckResult(check, True, f"no route to {address}")
        return CheckResult(check, False, error.detail)
    except OSError as error:
        return CheckResult(check, False, str(error))
    via = f"{address} via {node}:{ifname}"
    if answered:
        return CheckResult(check, check.reachable, f"{via} answered")
    return CheckResult(check, not check.reachable, f"{via}: no answer in {check.timeout:g} s")
