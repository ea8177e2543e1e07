"""Point-to-point links of labs: veth pairs straight between two network namespaces, lab
bridges, and the addresses and routes of a namespace's interfaces — plan, then apply.

What it owns
    The ``ip -batch`` lines that make a lab's wiring: a veth pair whose two ends are
    created directly in their namespaces with their final names (``link add name eth1
    netns A type veth peer name eth1 netns B``: no temporary host-side name, no move, and
    so nothing left in the host's namespace if we die half-way), an end that stays in the
    host's namespace (``host:veth1``) or is enslaved to a bridge there, the Linux bridges
    of ``kind: bridge`` nodes, and per namespace the lines that bring interfaces up, add
    addresses and routes. Not the record of what was made (the caller records first), not
    names (they come in checked by the topology reader; checked again here).

Decisions
    * One ``ip`` process makes every pair of a lab (lines in the host's namespace may name
      any pinned namespace), then one process per namespace configures it: 1 + N
      processes for N nodes, whatever the number of links.
    * A pair between two nodes needs no teardown: it dies with either namespace. Host-side
      ends and bridges are removed by name with ``ip -force -batch`` (missing = removed).
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument
from tsubo.network.bridge import check_ifname

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _netns(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or any(c.isspace() for c in name) \
            or set(name) & set("\"'\\#"):
        raise InvalidArgument("check netns name", f'"{name}"', detail="not a file name")
    return name


def plan_veth(a_ifname: str, a_netns: str | None, b_ifname: str, b_netns: str | None, *,
              mtu: int, a_master: str = "", b_master: str = "") -> list[str]:
    """The lines that make one pair: *a_ifname* in *a_netns* (None: the host's namespace,
    where *a_master* may name its bridge) and *b_ifname* in *b_netns*."""
    if not 68 <= mtu <= 65535:
        raise InvalidArgument("plan link", f"{a_ifname}-{b_ifname}", detail=f"mtu {mtu}")

    def side(ifname: str, netns: str | None) -> str:
        text = f"name {check_ifname(ifname)}"
        if netns is not None:
            text += f" netns {_netns(netns)}"
        return f"{text} mtu {mtu}"

    lines = [f"link add {side(a_ifname, a_netns)} type veth peer {side(b_ifname, b_netns)}"]
    # `master` on the peer's half of `link add` is not applied by the kernel (the veth
    # driver creates the peer without it): enslave both ends with their own line
    for ifname, netns, master in ((a_ifname, a_netns, a_master), (b_ifname, b_netns, b_master)):
        if master and netns is None:
            lines.append(f"link set {ifname} master {check_ifname(master, 'bridge name')}")
    return lines


def plan_bridge(name: str) -> list[str]:
    """A lab bridge: no address, up (its ports are veth ends)."""
    check_ifname(name, "bridge name")
    return [f"link add {name} type bridge", f"link set {name} up"]


def plan_up(ifnames: Sequence[str]) -> list[str]:
    return [f"link set {check_ifname(name)} up" for name in ifnames]


def plan_addresses(ifname: str, addresses: Sequence[str]) -> list[str]:
    """``addr replace``: the same line sets an address the first time and again."""
    import ipaddress

    lines = []
    for address in addresses:
        try:
            ipaddress.ip_interface(address)
        except ValueError:
            raise InvalidArgument("plan address", address, detail="not an address with a "
                                  "prefix") from None
        lines.append(f"addr replace {address} dev {check_ifname(ifname)}")
    return lines


def plan_route(destination: str, via: str) -> str:
    import ipaddress

    try:
        network = ipaddress.ip_network(destination)
        gateway = ipaddress.ip_address(via)
    except ValueError as error:
        raise InvalidArgument("plan route", destination, detail=str(error)) from None
    return f"route replace {network} via {gateway}"


def apply_host(lines: Sequence[str]) -> None:
    """Run lines in the host's namespace, in one process (stops at the first failure)."""
    from tsubo.kernel import iproute

    iproute.run_batch(lines)


def apply_in_netns(netns: str, lines: Sequence[str],
                   sysctls: Sequence[tuple[str, str]] = ()) -> None:
    """Inside the namespace pinned as *netns*: write *sysctls* (``net/ipv4/ip_forward``
    form), then run *lines* in one process."""
    from tsubo.kernel import iproute, procfs

    with iproute.InNetns(_netns(netns)):
        for key, value in sysctls:
            procfs.write_sysctl(key, value, operation="write lab sysctl")
        iproute.run_batch(lines)


def remove_host_links(names: Sequence[str]) -> None:
    """Delete host-side links by name (bridges, veth ends): missing counts as removed."""
    from tsubo.network.bridge import apply_endpoint_detach

    if names:
        apply_endpoint_detach([f"link del {check_ifname(name)}" for name in names])


def pin_netns_of(name: str, pid: int) -> None:
    """Pin the network namespace of process *pid* at ``/run/netns/NAME`` (``ip netns
    attach``), for a node started without a network."""
    from tsubo.kernel import iproute

    iproute.run_batch([f"netns attach {_netns(name)} {int(pid)}"])
