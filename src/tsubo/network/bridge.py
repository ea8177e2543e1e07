"""The bridge driver: a Linux bridge per network, a veth pair per endpoint — plan, then apply.

What it owns
    The link plumbing of the seed's part 2: the bridge (gateway address, pinned MAC,
    ``accept_ra=0``), one veth pair per endpoint (host end on the bridge with hairpin on,
    peer inside the container's netns as ``eth0``, ``eth1``...), ``lo`` up, the default
    route, ``arp_notify``, the netns pins under ``/run/netns`` and the uplink MTU.
    Not IPAM (addresses come in decided), not names (``host_ifname`` comes in chosen), not
    the firewall, not the record of what was created (the caller records before applying).

Plan, then apply
    ``plan_*`` are pure: they validate every name and value (interface names ≤ 15 bytes,
    IFNAMSIZ; nothing that could split or comment out a batch line) and return ``ip -batch``
    lines (an endpoint: rtnetlink requests), so a bad name is refused before anything runs.
    ``apply_*`` run them with :mod:`tsubo.kernel.iproute` (one ``ip`` process per namespace
    touched) or :mod:`tsubo.kernel.rtnetlink`. Every apply takes
    ``host_netns``: ``None`` is the namespace we run in; tests pass a throwaway one.

Decisions
    * Endpoint setup runs no process: its plan is :class:`~tsubo.kernel.rtnetlink.Request`
      lists (each with its ip line, which errors name), sent in-process over rtnetlink,
      host side then container side (~0.8 ms against ~4 ms for two ``ip -batch``). The veth
      peer is created *directly inside* the container netns with its final name, MAC and
      MTU: the kernel checks the name in the peer's namespace, so a host ``eth0`` does not
      collide, and no temporary name, move or rename step is needed. ``master``/``mtu``
      ride on the same request: if enslaving fails the kernel unregisters the new pair.
    * The bridge port gets no IPv6 link-local address (``addrgenmode none``, a request
      before the one with hairpin and up): its DAD and MLD packets would be flooded to
      every other port. Nor does a container's interface on an IPv4-only network (Docker
      disables IPv6 there): each start's neighbour solicitation, MLD reports and router
      solicitations were flooded to every port and handled in every container's
      namespace (docs/performance.md, "The Nth container"). A dual-stack interface keeps
      its own.
    * No gratuitous ARP by default: a container's MAC is derived from its address
      (:func:`tsubo.network.names.mac_for`), so a neighbour's cache entry for a reused
      address is still right; the broadcast was handled in every container's namespace
      inside the request that set the link up (docs/network.md has the figures). A MAC
      given with ``--mac-address`` is announced: ``arp_notify=1`` as an ``IFLA_INET_CONF``
      request before the link goes up.
      A dual-stack interface's ``accept_dad=0`` is still a ``/proc/sys`` write made inside
      the container netns (:class:`~tsubo.kernel.iproute.InNetns`): rtnetlink cannot set it.
    * Bridge MAC: ``link add NAME address MAC type bridge`` with a MAC derived from the
      network id (:func:`bridge_mac`, locally administered, unicast). A bridge with an
      assigned address never adopts a port's MAC, so attaching/detaching ports cannot churn
      it (the netavark/CNI "pin to own address" fix, without the read-back step).
    * Bridge MTU is set with ``link set NAME mtu M`` after creation: an MTU given at
      ``link add`` is not "set by user" for the bridge driver and springs back to 1500 when
      the last port leaves.
    * ``accept_ra=0`` on the bridge is written right after its batch. The bridge has no
      ports yet, so no router advertisement can reach it in between; skipped when the host
      has IPv6 disabled (no ``/proc/sys/net/ipv6``).
    * IPv6 addresses get ``nodad`` (ours by IPAM; DAD would hold them tentative ~1-2 s), and
      ``accept_dad=0`` is written on the bridge and on a dual-stack container's interface
      (before it goes up), so their link-local addresses never make a start wait either.
      A dual-stack endpoint's default IPv6 route (``::/0 via GATEWAY6``) is one more line
      of the same container requests.
    * Failed setup unwinds (the veth pair, the half-made bridge) only when *our* ``link add``
      succeeded: a pre-existing link of the same name is never deleted.
    * Teardown runs ``ip -force -batch`` (all lines, one process), treats ENODEV/ENOENT as
      "already gone", and raises :class:`~tsubo.errors.TeardownErrors` listing every real
      failure. Deleting the host end of a veth removes the pair; deleting the container
      netns removes it too. Removing a bridge detaches any ports still on it: the caller
      removes a bridge only when its network has no endpoints left.
    * Cost: ``link del`` of a veth takes ~20 ms *in the kernel* here (unregistering waits
      for RCU grace periods; the raw ``ip -batch`` takes the same), against ~5 ms for the
      whole attach then. Removing a container therefore needs no detach at all:
      :func:`delete_netns` (~0.07 ms, in-process) drops the pin and the kernel removes the
      pair asynchronously with the namespace (gone ~10-15 ms later). Live ``disconnect``
      uses :func:`apply_endpoint_detach`.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, TeardownErrors
from tsubo.kernel import iproute, procfs, rtnetlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

IFNAMSIZ_MAX = 15  # IFNAMSIZ is 16 bytes including the NUL
DEFAULT_MTU = 1500
_UNSAFE = frozenset(" \t\n\r\v\f\"'\\#")  # would split, quote or comment out a batch line
_IFNAME_FORBIDDEN = frozenset("/:")
_HEX = frozenset("0123456789abcdef")
_GONE_ERRNOS = frozenset({2, 19})  # ENOENT, ENODEV


class EndpointPlan:
    """The requests of one endpoint, host side then container side, and the sysctls written
    between them (inside the container netns, before the interface goes up)."""

    __slots__ = ("host_ifname", "host_requests", "ifname", "netns_name", "netns_requests",
                 "netns_sysctls")

    def __init__(self, host_ifname: str, netns_name: str, ifname: str,
                 host_requests: list[rtnetlink.Request], netns_requests: list[rtnetlink.Request],
                 netns_sysctls: list[tuple[str, str]]) -> None:
        self.host_ifname = host_ifname
        self.netns_name = netns_name
        self.ifname = ifname
        self.host_requests = host_requests
        self.netns_requests = netns_requests
        self.netns_sysctls = netns_sysctls

    @property
    def host_lines(self) -> list[str]:
        """The host-side requests in ip's words (``ip -batch`` would do the same)."""
        return [request.line for request in self.host_requests]

    @property
    def netns_lines(self) -> list[str]:
        """The container-side requests in ip's words."""
        return [request.line for request in self.netns_requests]

    def __repr__(self) -> str:
        return (f"EndpointPlan(host_lines={self.host_lines!r}, netns_name={self.netns_name!r}, "
                f"netns_sysctls={self.netns_sysctls!r}, netns_lines={self.netns_lines!r})")


# ---------------------------------------------------------------------------------------------
# validation


def check_ifname(name: str, what: str = "interface name") -> str:
    """*name* if the kernel accepts it as an interface name (1-15 bytes, not ``.``/``..``,
    no ``/``, ``:`` or whitespace) and it is safe in a batch line; InvalidArgument otherwise."""
    size = len(name.encode())
    if not name or size > IFNAMSIZ_MAX:
        raise InvalidArgument(f"check {what}", f'"{name}"',
                              detail=f"{size} bytes; interface names are 1-{IFNAMSIZ_MAX} bytes",
                              hint="Linux limits interface names to 15 bytes (IFNAMSIZ)")
    if name in (".", "..") or not _UNSAFE.isdisjoint(name) or not _IFNAME_FORBIDDEN.isdisjoint(
            name) or not name.isprintable():
        raise InvalidArgument(f"check {what}", f'"{name}"',
                              detail="not a valid interface name (no /, :, quotes, # or spaces)")
    return name


def _token(value: str, what: str) -> str:
    if not value or not _UNSAFE.isdisjoint(value) or not value.isprintable():
        raise InvalidArgument(f"check {what}", f'"{value}"', detail="empty or unsafe characters")
    return value


def check_mac(mac: str) -> str:
    """*mac* in lower case if it is a unicast Ethernet address ``xx:xx:xx:xx:xx:xx``."""
    octets = mac.lower().split(":")
    if len(octets) != 6 or any(len(o) != 2 or not _HEX.issuperset(o) for o in octets):
        raise InvalidArgument("check MAC address", f'"{mac}"',
                              detail="expected six hex octets like 02:42:c0:a8:0a:01")
    if int(octets[0], 16) & 1:
        raise InvalidArgument("check MAC address", f'"{mac}"', detail="multicast address")
    return ":".join(octets)


def _check_mtu(mtu: int) -> int:
    if not 68 <= mtu <= 65535:
        raise InvalidArgument("check MTU", str(mtu), detail="must be 68-65535")
    return mtu


def _address(address: str, prefix_len: int, what: str) -> str:
    """*address* if it is a safe token and *prefix_len* fits its family."""
    limit = 128 if ":" in address else 32
    if not 0 <= prefix_len <= limit:
        raise InvalidArgument(f"check {what}", f"{address}/{prefix_len}",
                              detail=f"prefix length must be 0-{limit}")
    return _token(address, what)


def _cidr(address: str, prefix_len: int, what: str) -> str:
    return f"{_address(address, prefix_len, what)}/{prefix_len}"


def _dad_flag(address: str) -> str:
    return " nodad" if ":" in address else ""


def bridge_mac(network_id: str) -> str:
    """A stable MAC for a network's bridge: the first 6 bytes of SHA-256 of the id, made
    locally administered (bit 1) and unicast (bit 0 clear)."""
    data = f"tsubo-bridge:{network_id}".encode()
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib: ~6 ms import
    except ImportError:  # pragma: no cover - other interpreters / 3.12+
        from hashlib import sha256
    digest = bytearray(sha256(data).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


# ---------------------------------------------------------------------------------------------
# planners (pure)


def plan_bridge_create(name: str, gateway: str, prefix_len: int, mtu: int | None = None, *,
                       mac: str, gateway6: str = "", prefix_len6: int = 0) -> list[str]:
    """Batch lines that create bridge *name* with MAC *mac*, the gateway address (and the
    IPv6 one, when given), the MTU (pinned when given) and bring it up."""
    check_ifname(name, "bridge name")
    lines = [f"link add {name} address {check_mac(mac)} type bridge",
             f"addr add {_cidr(gateway, prefix_len, 'gateway')} dev {name}{_dad_flag(gateway)}"]
    if gateway6:
        lines.append(f"addr add {_cidr(gateway6, prefix_len6, 'gateway')} dev {name} nodad")
    mtu_part = f" mtu {_check_mtu(mtu)}" if mtu is not None else ""
    lines.append(f"link set {name}{mtu_part} up")
    return lines


def plan_bridge_remove(name: str) -> list[str]:
    return [f"link del {check_ifname(name, 'bridge name')}"]


def plan_endpoint_attach(bridge: str, host_ifname: str, netns_name: str, ifname: str,
                         address: str, prefix_len: int, gateway: str | None,
                         mac: str | None, mtu: int | None, *, address6: str = "",
                         prefix_len6: int = 0, gateway6: str | None = None,
                         announce: bool = False) -> EndpointPlan:
    """Plan one endpoint: a veth pair *host_ifname* (on *bridge*, hairpin on) <-> *ifname*
    (inside netns *netns_name*, with *address*/*prefix_len*, *mac*, *mtu*), ``lo`` up and
    a default route via *gateway* (None: no default route, e.g. a second network); on a
    dual-stack network also *address6*/*prefix_len6* and a default IPv6 route via
    *gateway6*. *announce*: a gratuitous ARP when the link comes up, for a MAC the
    neighbours may not know at this address (one not derived from it)."""
    check_ifname(bridge, "bridge name")
    check_ifname(host_ifname, "host interface name")
    check_ifname(ifname, "container interface name")
    _token(netns_name, "netns name")
    if "/" in netns_name or netns_name in (".", ".."):
        raise InvalidArgument("check netns name", f'"{netns_name}"', detail="not a file name")
    if mtu is not None:
        _check_mtu(mtu)
    try:
        host_requests = [
            rtnetlink.add_veth(host_ifname, ifname, netns_name, master=bridge, mtu=mtu,
                               peer_mac=check_mac(mac) if mac is not None else None),
            # hairpin: a container can reach itself through a published port (DNAT back
            # out of the port the packet came in on); no link-local address on a port
            rtnetlink.set_no_link_local(host_ifname),
            rtnetlink.set_link_up(host_ifname, hairpin=True),
        ]
        netns_requests = [
            # before the link goes up, so the gratuitous ARP on link-up actually happens
            *([rtnetlink.set_ipv4_conf(ifname, "arp_notify", 1)] if announce else []),
            rtnetlink.add_address(ifname, _address(address, prefix_len, "address"), prefix_len),
            *([rtnetlink.add_address(ifname, _address(address6, prefix_len6, "address"),
                                     prefix_len6)] if address6 else []),
            rtnetlink.set_link_up("lo"),
            # IPv4 only: no link-local address, whose DAD and MLD would flood every port
            *([] if address6 else [rtnetlink.set_no_link_local(ifname)]),
            rtnetlink.set_link_up(ifname),
        ]
        if gateway is not None:
            netns_requests.append(rtnetlink.add_default_route(ifname, _token(gateway, "gateway")))
        if address6 and gateway6 is not None:
            netns_requests.append(rtnetlink.add_default_route(ifname,
                                                              _token(gateway6, "gateway")))
    except ValueError as error:  # the value that is not an IP address
        raise InvalidArgument("check address", f'"{error}"', detail="not an IP address"
                              ) from None
    sysctls = [(f"net/ipv6/conf/{ifname}/accept_dad", "0")] if address6 else []
    return EndpointPlan(host_ifname, netns_name, ifname, host_requests, netns_requests,
                        sysctls)


def plan_endpoint_detach(host_ifname: str) -> list[str]:
    """Deleting the host end removes the pair (and the peer's addresses and routes)."""
    return [f"link del {check_ifname(host_ifname, 'host interface name')}"]


# ---------------------------------------------------------------------------------------------
# apply


def apply_bridge_create(name: str, lines: Sequence[str], *,
                        host_netns: str | None = None) -> None:
    """Run :func:`plan_bridge_create`'s *lines*, then ``accept_ra=0`` on bridge *name*.
    On failure after our ``link add`` succeeded, the half-made bridge is removed."""
    from tsubo.undo import UndoStack

    with UndoStack("create bridge", name) as undo:
        try:
            iproute.run_batch(lines, netns=host_netns)
        except iproute.IpError as error:
            if error.lineno > 1:
                undo.push(lambda: apply_bridge_remove(plan_bridge_remove(name),
                                                      host_netns=host_netns))
            raise
        undo.push(lambda: apply_bridge_remove(plan_bridge_remove(name), host_netns=host_netns))
        with iproute.InNetns(host_netns):
            if os.path.isdir("/proc/sys/net/ipv6/conf"):
                procfs.write_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")
                procfs.write_sysctl(f"net/ipv6/conf/{name}/accept_dad", "0")
        undo.commit()


def apply_endpoint_attach(plan: EndpointPlan, *, host_netns: str | None = None) -> None:
    """Host requests, then (inside the container netns) the sysctls and the container's.
    Any failure after the pair exists deletes the pair again."""
    from tsubo.undo import UndoStack

    def remove_pair() -> None:
        apply_endpoint_detach(plan_endpoint_detach(plan.host_ifname), host_netns=host_netns)

    with UndoStack("attach endpoint", plan.host_ifname) as undo:
        try:
            rtnetlink.run(plan.host_requests, netns=host_netns)
        except iproute.IpError as error:
            if error.lineno > 1:
                undo.push(remove_pair)
            raise
        undo.push(remove_pair)
        with iproute.InNetns(plan.netns_name):
            for key, value in plan.netns_sysctls:
                procfs.write_sysctl(key, value)
            rtnetlink.run(plan.netns_requests)
        undo.commit()


def _teardown(operation: str, obj: str, lines: Sequence[str], host_netns: str | None) -> None:
    errors = iproute.run_batch(lines, netns=host_netns, keep_going=True)
    real = [error for error in errors if error.errno not in _GONE_ERRNOS]
    if real:
        raise TeardownErrors(operation, obj, real)


def apply_endpoint_detach(lines: Sequence[str], *, host_netns: str | None = None) -> None:
    """Run detach lines (of one or many endpoints, in one process); missing links count as
    removed; every other failure is collected into one TeardownErrors."""
    _teardown("detach endpoints", ", ".join(line.rsplit(" ", 1)[-1] for line in lines),
              lines, host_netns)


def apply_bridge_remove(lines: Sequence[str], *, host_netns: str | None = None) -> None:
    """Remove the bridge; a missing bridge counts as removed."""
    _teardown("remove bridge", ", ".join(line.rsplit(" ", 1)[-1] for line in lines),
              lines, host_netns)


# ---------------------------------------------------------------------------------------------
# network namespaces and the uplink


def _netns_name(name: str) -> None:
    """A name a netns pin may have: a token and a file name of /run/netns."""
    _token(name, "netns name")
    if "/" in name or name in (".", ".."):
        raise InvalidArgument("check netns name", f'"{name}"', detail="not a file name")


def create_netns(name: str) -> None:
    """Pin a new network namespace at ``/run/netns/NAME`` (``ip netns add``), so
    ``ip netns exec NAME ...`` works; AlreadyExists-like IpError (EEXIST) if it exists."""
    _netns_name(name)
    iproute.add_netns_pin(name)


def rename_netns(name: str, new_name: str) -> None:
    """Move the pin ``/run/netns/NAME`` to ``/run/netns/NEW_NAME`` (pinned at the new
    name first, then unpinned at the old: the namespace never has no pin)."""
    _netns_name(name)
    _netns_name(new_name)
    iproute.copy_netns_pin(name, new_name)
    iproute.remove_netns_pin(name)


def delete_netns(name: str) -> None:
    """Unpin ``/run/netns/NAME`` like ``ip netns del`` (in-process); missing counts as
    success. The namespace, and the veth pairs in it, go when its last user does."""
    _netns_name(name)
    iproute.remove_netns_pin(name)


def bridge_mtu(name: str) -> int:
    """The MTU of bridge NAME (in the calling thread's netns): what a container's link on
    it gets. Set when the network was made (``--mtu``, else the uplink's then) and pinned,
    so it is asked of the bridge itself, in-process, not of the routes again at every
    start (two ``ip`` processes, ~3 ms)."""
    return iproute.link_mtu(name)


def uplink_mtu(*, host_netns: str | None = None) -> int:
    """MTU of the interface holding the default route (IPv4, else IPv6); a route's own
    ``mtu`` metric wins when lower. 1500 when there is no default route."""
    for family in ("-4", "-6"):
        routes = iproute.query([family, "route", "show", "default"], netns=host_netns)
        for route in _dicts(routes):
            dev = route.get("dev")
            if not isinstance(dev, str):
                continue
            links = iproute.query(["link", "show", "dev", dev], netns=host_netns)
            mtus = [_int(link.get("mtu")) for link in _dicts(links)]
            mtus += [_int(metric.get("mtu")) for metric in _dicts(route.get("metrics"))]
            mtus = [mtu for mtu in mtus if mtu > 0]
            if mtus:
                return min(mtus)
    return DEFAULT_MTU


def _dicts(value: object) -> Iterable[dict[str, object]]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
