"""rtnetlink in-process: the few requests of an endpoint attach, without an ``ip`` process.

What it owns
    :class:`Request`: one rtnetlink request as data — ``line``, the same change in ip's
    words (what a plan shows, what an error names), and what to send; its builders
    (:func:`add_veth`, :func:`set_link_up`, :func:`set_ipv4_conf`, :func:`add_address`,
    :func:`add_default_route`);
    and :func:`run`, which sends a list of them in order on a ``NETLINK_ROUTE`` socket of the
    calling thread's network namespace and waits for each one's acknowledgement.

Decisions
    * Why not ``ip -batch``: an ``ip`` process costs ~1.5 ms to start and, for every name on
      a line (``master BR``, ``dev X``), asks the kernel for that whole link with
      ``RTM_GETLINK``; the answer for a bridge port or a veth grows with the ports and
      namespaces there are (the kernel walks them). Here a name becomes an index with
      ``if_nametoindex`` (an ioctl on the name hash) and a netns name an fd.
    * The socket is made in the calling thread's namespace and acts there for its life:
      ``with iproute.InNetns(ns): rtnetlink.run(...)`` configures *ns*.
    * One request at a time, each with ``NLM_F_ACK``: the kernel would go on with the next
      message of a buffer after a failed one, and a plan stops at its first failure.
    * A failure is :class:`~tsubo.kernel.iproute.IpError` for the request's ``line``
      (``lineno`` counts from 1), with the kernel's errno and its extended-ack message,
      as ``ip -batch`` reports it, so callers and undo logic need not know which ran.
    * ``_socket`` and ``_struct`` only (``socket`` imports ``enum``): importing this costs
      nothing measurable.
"""

from __future__ import annotations

import os
from _struct import pack, unpack_from

from tsubo.kernel import iproute

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Sequence

_NETLINK_ROUTE = 0
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_NLM_F_ACK_TLVS = 0x200
_NLMSGERR_ATTR_MSG = 1
_NLA_F_NESTED = 0x8000
_RTM_NEWLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 20, 24
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER = 1, 3, 4, 10
_IFLA_LINKINFO, _IFLA_NET_NS_FD, _IFLA_AF_SPEC = 18, 28, 26
_IFLA_INET6_ADDR_GEN_MODE, _IN6_ADDR_GEN_MODE_NONE = 8, 1
_IFLA_INET_CONF = 1
_IPV4_DEVCONF = {"arp_notify": 22}
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _IFLA_INFO_SLAVE_KIND, _IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
_VETH_INFO_PEER = 1
_IFLA_BRPORT_MODE = 4  # hairpin
_IFF_UP = 0x1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_IFA_F_NODAD = 0x02
_RTA_GATEWAY, _RTA_OIF = 5, 4
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_AF_UNSPEC, _AF_INET, _AF_INET6 = 0, 2, 10
_CREATE = _NLM_F_CREATE | _NLM_F_EXCL

# what a request needs resolved when it runs: ("ifindex", name), ("netns", name), or
# ("inet6", "") for an IFLA_AF_SPEC that only a kernel with IPv6 takes
_Ref = tuple[str, str]


class Request:
    """One rtnetlink request: ``line`` says it in ip's words; ``kind`` and ``flags`` are the
    message's type and create flags; ``parts`` its body, bytes with a :data:`_Ref` where an
    interface index or a netns fd goes (as a native u32), resolved by :func:`run`."""

    __slots__ = ("flags", "kind", "line", "parts")

    def __init__(self, line: str, kind: int, flags: int, parts: list[bytes | _Ref]) -> None:
        self.line = line
        self.kind = kind
        self.flags = flags
        self.parts = parts

    def __repr__(self) -> str:
        return f"Request({self.line!r})"


# ---------------------------------------------------------------------------------------------
# builders (pure)


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return pack("HH", size, kind) + payload + b"\0" * (-size % 4)


def _nest(kind: int, parts: list[bytes | _Ref], *, flag: int = _NLA_F_NESTED
          ) -> list[bytes | _Ref]:
    """An attribute around *parts*, nested (*flag* 0: a struct and attributes, as a veth's
    peer is); its length is filled in by :func:`_encode`."""
    return [("nest", str(kind | flag)), *parts, ("end", "")]


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _mac(mac: str) -> bytes:
    return bytes(int(octet, 16) for octet in mac.split(":"))


def _u32(value: int) -> bytes:
    return pack("I", value)


def _ifinfo(index: _Ref | None = None, flags: int = 0, change: int = 0) -> list[bytes | _Ref]:
    if index is None:
        return [pack("BxHiII", _AF_UNSPEC, 0, 0, flags, change)]
    return [pack("BxH", _AF_UNSPEC, 0), ("ifindex", index[1]), pack("II", flags, change)]


def add_veth(name: str, peer: str, peer_netns: str, *, master: str | None, mtu: int | None,
             peer_mac: str | None) -> Request:
    """``link add NAME [mtu M] [master BR] type veth peer name PEER [address MAC] [mtu M]
    netns NS``: the peer is made inside netns *peer_netns* (a pin's name) directly."""
    mtu_part = f" mtu {mtu}" if mtu is not None else ""
    mac_part = f" address {peer_mac}" if peer_mac is not None else ""
    master_part = f" master {master}" if master is not None else ""
    line = (f"link add {name}{mtu_part}{master_part} type veth"
            f" peer name {peer}{mac_part}{mtu_part} netns {peer_netns}")
    peer_parts: list[bytes | _Ref] = [*_ifinfo(), _attr(_IFLA_IFNAME, _name(peer))]
    if peer_mac is not None:
        peer_parts.append(_attr(_IFLA_ADDRESS, _mac(peer_mac)))
    if mtu is not None:
        peer_parts.append(_attr(_IFLA_MTU, _u32(mtu)))
    peer_parts += [pack("HH", 8, _IFLA_NET_NS_FD), ("netns", peer_netns)]
    parts: list[bytes | _Ref] = [*_ifinfo(), _attr(_IFLA_IFNAME, _name(name))]
    if mtu is not None:
        parts.append(_attr(_IFLA_MTU, _u32(mtu)))
    if master is not None:
        parts += [pack("HH", 8, _IFLA_MASTER), ("ifindex", master)]
    parts += _nest(_IFLA_LINKINFO, [
        _attr(_IFLA_INFO_KIND, _name("veth")),
        *_nest(_IFLA_INFO_DATA, _nest(_VETH_INFO_PEER, peer_parts, flag=0))])
    return Request(line, _RTM_NEWLINK, _CREATE, parts)


def set_link_up(name: str, *, hairpin: bool = False) -> Request:
    """``link set NAME up [type bridge_slave hairpin on]``: with a bridge port's hairpin."""
    parts = _ifinfo(("ifindex", name), _IFF_UP, _IFF_UP)
    line = f"link set {name} up"
    if hairpin:
        line += " type bridge_slave hairpin on"
        parts += _nest(_IFLA_LINKINFO, [
            _attr(_IFLA_INFO_SLAVE_KIND, _name("bridge")),
            *_nest(_IFLA_INFO_SLAVE_DATA, [_attr(_IFLA_BRPORT_MODE, b"\1")])])
    return Request(line, _RTM_NEWLINK, 0, parts)


def set_no_link_local(name: str) -> Request:
    """``link set NAME addrgenmode none``: no IPv6 link-local address (so none of its DAD
    and MLD packets either) once the link is up. A request of its own, sent before the
    one that sets the link up: the kernel applies a message's flags before its
    ``IFLA_AF_SPEC``, and a link with carrier gets its address as it goes up. On a kernel
    without IPv6 the message is empty of settings."""
    return Request(f"link set {name} addrgenmode none", _RTM_NEWLINK, 0,
                   [*_ifinfo(("ifindex", name)), ("inet6", "")])


def set_ipv4_conf(dev: str, setting: str, value: int) -> Request:
    """What ``sysctl net.ipv4.conf.DEV.SETTING=VALUE`` does (ip has no command for it), as
    an ``IFLA_INET_CONF`` of the link: no ``/proc/sys`` path walk, whose dentries of a name
    (``eth0``) pile up in one hash chain, one per network namespace. *setting* is one of
    ``arp_notify``."""
    line = f"sysctl net.ipv4.conf.{dev}.{setting}={value}"
    parts = _ifinfo(("ifindex", dev))
    parts.append(_attr(_IFLA_AF_SPEC | _NLA_F_NESTED, _attr(_AF_INET | _NLA_F_NESTED, _attr(
        _IFLA_INET_CONF | _NLA_F_NESTED, _attr(_IPV4_DEVCONF[setting], _u32(value))))))
    return Request(line, _RTM_NEWLINK, 0, parts)


def _family(address: str) -> tuple[int, bytes]:
    """(AF_INET or AF_INET6, the packed address); ValueError if it is neither."""
    import _socket

    family = _AF_INET6 if ":" in address else _AF_INET
    try:
        return family, _socket.inet_pton(family, address)
    except OSError:
        raise ValueError(address) from None


def add_address(dev: str, address: str, prefix_len: int) -> Request:
    """``addr add A/P dev DEV``; an IPv6 address gets ``nodad`` (ours by IPAM: never held
    tentative). ValueError for an address that is not one."""
    family, packed = _family(address)
    nodad = family == _AF_INET6
    line = f"addr add {address}/{prefix_len} dev {dev}{' nodad' if nodad else ''}"
    flags = _IFA_F_NODAD if nodad else 0
    parts: list[bytes | _Ref] = [pack("BBBB", family, prefix_len, flags, _RT_SCOPE_UNIVERSE),
                                 ("ifindex", dev),
                                 _attr(_IFA_LOCAL, packed), _attr(_IFA_ADDRESS, packed)]
    return Request(line, _RTM_NEWADDR, _CREATE, parts)


def add_default_route(dev: str, gateway: str) -> Request:
    """``route add default via GW dev DEV`` (``::/0`` for an IPv6 gateway), in the main
    table. ValueError for a gateway that is not an address."""
    family, packed = _family(gateway)
    line = f"route add {'default' if family == _AF_INET else '::/0'} via {gateway} dev {dev}"
    parts: list[bytes | _Ref] = [
        pack("BBBBBBBBI", family, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE,
             _RTN_UNICAST, 0),
        _attr(_RTA_GATEWAY, packed), pack("HH", 8, _RTA_OIF), ("ifindex", dev)]
    return Request(line, _RTM_NEWROUTE, _CREATE, parts)


# ---------------------------------------------------------------------------------------------
# run


class _Failed(Exception):
    def __init__(self, errno: int, detail: str) -> None:
        super().__init__(errno, detail)
        self.errno = errno
        self.detail = detail


def _encode(parts: Sequence[bytes | _Ref], fds: list[int]) -> bytes:
    """The body of a request: references resolved in the calling thread's namespace (a
    netns fd opened is appended to *fds*, for the caller to close), nests closed."""
    out = bytearray()
    starts: list[int] = []
    for part in parts:
        if isinstance(part, bytes):
            out += part
            continue
        what, name = part
        if what == "ifindex":
            out += _u32(_ifindex(name))
        elif what == "netns":
            path = f"{iproute.NETNS_DIR}/{name}"
            try:
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as error:
                raise _Failed(error.errno or 0, f'Cannot open network namespace "{name}": '
                              f"{os.strerror(error.errno or 0)}") from None
            out += _u32(fds[-1])
        elif what == "inet6":
            if _has_ipv6():
                out += _attr(_IFLA_AF_SPEC | _NLA_F_NESTED, _attr(
                    _AF_INET6 | _NLA_F_NESTED, _attr(_IFLA_INET6_ADDR_GEN_MODE,
                                                     bytes([_IN6_ADDR_GEN_MODE_NONE]))))
        elif what == "nest":
            starts.append(len(out))
            out += pack("HH", 0, int(name))
        else:  # end of the innermost nest
            start = starts.pop()
            out[start:start + 2] = pack("H", len(out) - start)
    return bytes(out)


_ipv6: bool | None = None


def _has_ipv6() -> bool:
    """Whether the kernel has IPv6 (asked once: a /proc/sys lookup costs more the more
    network namespaces there are, see :func:`set_ipv4_conf`)."""
    global _ipv6
    if _ipv6 is None:
        _ipv6 = os.path.isdir("/proc/sys/net/ipv6")
    return _ipv6


def _ifindex(name: str) -> int:
    import _socket

    try:
        return int(_socket.if_nametoindex(name))
    except OSError as error:
        raise _Failed(error.errno or 19, f'Cannot find device "{name}"') from None


def run(requests: Sequence[Request], *, netns: str | None = None) -> None:
    """Send *requests* in order in netns *netns* (a pin's name; None: the calling thread's
    namespace), each answered before the next; the first failure raises its IpError
    (``line``, ``lineno``, errno, ``netns``)."""
    if not requests:
        return
    import _socket

    with iproute.InNetns(netns):
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                              _NETLINK_ROUTE)
        try:
            _run(sock, requests, netns)
        finally:
            sock.close()


def _run(sock: _socket.socket, requests: Sequence[Request], netns: str | None) -> None:
    sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
    sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
    for lineno, request in enumerate(requests, 1):
        fds: list[int] = []
        try:
            _ask(sock, lineno, request, _encode(request.parts, fds))
        except _Failed as failure:
            raise iproute.IpError(request.line, failure.detail, lineno=lineno, netns=netns,
                                  errno=failure.errno) from None
        finally:
            for fd in fds:
                os.close(fd)


def _ask(sock: _socket.socket, seq: int, request: Request, body: bytes) -> None:
    """Send one request and read its acknowledgement (_Failed on an error)."""
    flags = _NLM_F_REQUEST | _NLM_F_ACK | request.flags
    sock.sendto(pack("IHHII", 16 + len(body), request.kind, flags, seq, 0) + body, (0, 0))
    while True:
        answer = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(answer):
            size, kind, msg_flags, answer_seq, _ = unpack_from("IHHII", answer, offset)
            if kind == _NLMSG_ERROR and answer_seq == seq:
                (error,) = unpack_from("i", answer, offset + 16)
                if error == 0:
                    return
                detail = os.strerror(-error)
                if msg_flags & _NLM_F_ACK_TLVS:
                    message = _ext_ack_message(answer[offset + 36:offset + size])
                    if message:
                        detail = f"{message}: {detail}"
                raise _Failed(-error, detail)
            offset += max(16, (size + 3) & ~3)


def _ext_ack_message(tlvs: bytes) -> str:
    """The kernel's ``NLMSGERR_ATTR_MSG`` of an error's extended ack ('' when none)."""
    offset = 0
    while offset + 4 <= len(tlvs):
        size, kind = unpack_from("HH", tlvs, offset)
        if size < 4:
            break
        if kind & ~_NLA_F_NESTED == _NLMSGERR_ATTR_MSG:
            return tlvs[offset + 4:offset + size].rstrip(b"\0").decode(errors="replace")
        offset += (size + 3) & ~3
    return ""
