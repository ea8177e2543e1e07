"""Attack probes for network isolation tests: from one network namespace, send every kind of
packet at every address of a "host" namespace; in the host, record what was delivered.

    sniffer = Sniffer(host_netns)           raw sockets opened in the host namespace
    probe(container_netns, targets, ...)    ICMP echo, TCP SYN and UDP at each target
    arrivals = sniffer.collect()            what the host's stack took in, and where from

What counts as "reached the host": a raw socket (ICMP, TCP, UDP; IPv4 and IPv6) gets a copy
of every packet the kernel delivers locally, after the netfilter input hook and before the
protocol handler (``raw_local_deliver``, ``ipv6_raw_deliver``), whatever listens or not.
With ``IP_PKTINFO`` / ``IPV6_RECVPKTINFO`` each copy names the interface it came in on and
its destination. So a firewall drop shows as *nothing*, and a TCP RST or ICMP error the host
would have sent shows as an arrival.

Two ways of sending, both from inside the prober's namespace (a thread ``setns``es there,
like ``ip netns exec``; a container's pinned netns is its network, whatever runs in it):

* ordinary sockets, the way a process in the container would (ARP/ND, routing, broadcast
  with ``SO_BROADCAST``; IPv6 link-local with the interface as scope);
* crafted Ethernet frames on an ``AF_PACKET`` socket, straight to the gateway's MAC (or the
  broadcast/multicast MAC): no ARP, ND or routing table decides whether they go out, so
  127.0.0.0/8, ::1, other interfaces' link-local addresses and addresses the prober has no
  route to are all tried (a container has CAP_NET_RAW by default).

Nothing here sends a packet outside the namespaces the test made: targets come from the
host namespace's own interfaces (plus broadcast and multicast groups that stay on the
link). Every socket is closed by the helpers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tsubo.kernel.iproute import InNetns

IP_PKTINFO = 8  # linux/in.h; not exported by Python's socket module
PROTOCOLS = {"icmp": socket.IPPROTO_ICMP, "tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOLS6 = {"icmp": socket.IPPROTO_ICMPV6, "tcp": socket.IPPROTO_TCP,
              "udp": socket.IPPROTO_UDP}
TCP_PORTS = (22, 53, 5555)
UDP_PORTS = (53, 5555)
#: beyond the interfaces' own addresses: the rest of loopback, all-hosts, limited broadcast
EXTRA_TARGETS = ("127.1.2.3", "255.255.255.255", "224.0.0.1", "ff02::1")


# ---------------------------------------------------------------------------------------------
# the host's addresses


@dataclass(frozen=True)
class Address:
    ifname: str
    ifindex: int
    address: str
    prefix_len: int
    broadcast: str = ""
    tentative: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


def addresses(netns: str) -> list[Address]:
    """Every address of every interface in *netns* (``ip -j addr``)."""
    out = subprocess.run(["ip", "-n", netns, "-j", "addr"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    found = []
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            found.append(Address(link["ifname"], int(link["ifindex"]), info["local"],
                                 int(info["prefixlen"]), info.get("broadcast", ""),
                                 bool(info.get("tentative"))))
    return found


def link(netns: str, ifname: str) -> tuple[int, str]:
    """(ifindex, MAC) of *ifname* in *netns*."""
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    (info,) = json.loads(out)
    return int(info["ifindex"]), str(info["address"])


def wait_no_tentative(*netns: str, timeout: float = 10.0) -> None:
    """Wait until DAD is over for every IPv6 address (a tentative one takes no packets)."""
    deadline = time.monotonic() + timeout
    while any(a.tentative for ns in netns for a in addresses(ns)):
        if time.monotonic() > deadline:
            raise AssertionError(f"IPv6 addresses still tentative in {netns}")
        time.sleep(0.1)


def targets(host: Iterable[Address]) -> list[str]:
    """Every host address, the broadcast address of each IPv4 subnet (whether the address
    was given one or not), and EXTRA_TARGETS."""
    found: list[str] = []
    for address in host:
        found.append(address.address)
        if address.broadcast:
            found.append(address.broadcast)
        if address.family == 4 and address.prefix_len < 31:
            subnet = ipaddress.ip_network(f"{address.address}/{address.prefix_len}",
                                          strict=False)
            found.append(str(subnet.broadcast_address))
    found += EXTRA_TARGETS
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# the host side: what was delivered


@dataclass(frozen=True)
class Arrival:
    protocol: str  # icmp, tcp, udp
    ifindex: int  # where it came in
    source: str
    destination: str
    port: int  # destination port (0 for ICMP)


class Sniffer:
    """Raw sockets in *netns* recording every locally delivered ICMP/TCP/UDP packet."""

    def __init__(self, netns: str) -> None:
        self.sockets: list[tuple[socket.socket, str, int]] = []
        with InNetns(netns):
            for name, number in PROTOCOLS.items():
                sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, number)
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                self.sockets.append((sock, name, 4))
            for name, number in PROTOCOLS6.items():
                sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, number)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                self.sockets.append((sock, name, 6))
        for sock, _, _ in self.sockets:
            sock.setblocking(False)

    def collect(self, settle: float = 0.5) -> list[Arrival]:
        """Everything received so far, after waiting *settle* seconds for stragglers."""
        time.sleep(settle)
        found = []
        for sock, name, family in self.sockets:
            while True:
                try:
                    data, ancillary, _, peer = sock.recvmsg(65535, 256)
                except BlockingIOError:
                    break
                found.append(_arrival(name, family, data, ancillary, peer))
        return found

    def close(self) -> None:
        for sock, _, _ in self.sockets:
            sock.close()
        self.sockets = []

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _arrival(name: str, family: int, data: bytes,
             ancillary: list[tuple[int, int, bytes]], peer: tuple[str, ...]) -> Arrival:
    ifindex, destination, port = 0, "", 0
    if family == 4:
        header = (data[0] & 0xF) * 4
        source = socket.inet_ntop(socket.AF_INET, data[12:16])
        destination = socket.inet_ntop(socket.AF_INET, data[16:20])
        transport = data[header:]
    else:
        source = peer[0].split("%")[0]
        transport = data
    for level, kind, value in ancillary:
        if family == 4 and (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO):
            ifindex = struct.unpack("i", value[:4])[0]
        elif family == 6 and (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO):
            destination = socket.inet_ntop(socket.AF_INET6, value[:16])
            ifindex = struct.unpack("i", value[16:20])[0]
    if name in ("tcp", "udp") and len(transport) >= 4:
        port = struct.unpack("!H", transport[2:4])[0]
    return Arrival(name, ifindex, source, destination, port)


# ---------------------------------------------------------------------------------------------
# the prober's side


def in_netns(netns: str, work: Callable[[], None]) -> None:
    """Run *work* in a thread that has entered *netns*; re-raise what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with InNetns(netns):
                work()
        except BaseException as error:  # handed to the caller
            errors.append(error)

    thread = threading.Thread(target=run, name=f"probe-{netns}")
    thread.start()
    thread.join(timeout=60)
    if errors:
        raise errors[0]


def probe(netns: str, destinations: Iterable[str], *, gateway_mac: str, ifname: str = "eth0",
          tcp_ports: Iterable[int] = TCP_PORTS, udp_ports: Iterable[int] = UDP_PORTS) -> None:
    """From *netns*: ICMP echo, TCP SYNs and UDP datagrams at every destination, once
    through ordinary sockets and once as crafted frames to *gateway_mac* on *ifname*."""
    destinations = list(destinations)
    tcp_ports, udp_ports = list(tcp_ports), list(udp_ports)

    def work() -> None:
        own = {a.family: a.address for a in _own_addresses(ifname)}
        scope = socket.if_nametoindex(ifname)
        pending: list[socket.socket] = []
        try:
            for destination in destinations:
                pending += _ordinary(destination, scope, tcp_ports, udp_ports)
            with contextlib.closing(socket.socket(socket.AF_PACKET, socket.SOCK_RAW)) as raw:
                raw.bind((ifname, 0))
                mac = _mac_bytes(_own_mac(ifname))
                for destination in destinations:
                    family = 6 if ":" in destination else 4
                    if family not in own:
                        continue
                    for frame in _frames(own[family], destination, mac, gateway_mac,
                                         tcp_ports, udp_ports):
                        raw.send(frame)
            time.sleep(0.3)  # let non-blocking connects send their SYNs (and retries)
        finally:
            for sock in pending:
                sock.close()

    in_netns(netns, work)


def _own_addresses(ifname: str) -> list[Address]:
    """This thread's namespace's addresses on *ifname* (read through /proc/thread-self:
    /proc/net is the namespace of the process, not of a thread that entered another)."""
    found = []
    index = socket.if_nametoindex(ifname)
    with open("/proc/thread-self/net/if_inet6") as table:
        for line in table:
            fields = line.split()
            if fields[5] == ifname:
                text = ":".join(fields[0][i:i + 4] for i in range(0, 32, 4))
                found.append(Address(ifname, index, str(ipaddress.IPv6Address(text)),
                                     int(fields[2], 16)))
    found.append(Address(ifname, index, _ipv4_of(ifname), 0))
    return [a for a in found if a.address]


def _ipv4_of(ifname: str) -> str:
    import fcntl

    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        try:
            request = struct.pack("256s", ifname.encode())
            reply = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
        except OSError:
            return ""
    return socket.inet_ntoa(reply[20:24])


def _own_mac(ifname: str) -> str:
    """The MAC of *ifname* in this thread's namespace (not /sys/class/net: that is the
    namespace sysfs was mounted in)."""
    import fcntl

    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        reply = fcntl.ioctl(sock.fileno(), 0x8927,  # SIOCGIFHWADDR
                            struct.pack("256s", ifname.encode()))
    return ":".join(f"{byte:02x}" for byte in reply[18:24])


def _ordinary(destination: str, scope: int, tcp_ports: list[int],
              udp_ports: list[int]) -> list[socket.socket]:
    """Send through ordinary sockets; the TCP ones are returned open (their SYNs and
    retransmissions go out while they exist)."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    link_scoped = family == socket.AF_INET6 and (
        destination.startswith("fe80:") or destination.startswith("ff02:"))

    def to(port: int) -> tuple[str, int] | tuple[str, int, int, int]:
        if family == socket.AF_INET6:
            return (destination, port, 0, scope if link_scoped else 0)
        return (destination, port)

    opened: list[socket.socket] = []
    echo = (socket.IPPROTO_ICMPV6, 128) if family == socket.AF_INET6 else (
        socket.IPPROTO_ICMP, 8)
    with contextlib.closing(socket.socket(family, socket.SOCK_RAW, echo[0])) as icmp:
        icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        message = struct.pack("!BBHHH", echo[1], 0, 0, 0x7453, 1) + b"tsubo-probe"
        if family == socket.AF_INET:
            message = message[:2] + struct.pack("!H", _checksum(message)) + message[4:]
        with contextlib.suppress(OSError):
            icmp.sendto(message, to(0))
    for port in udp_ports:
        with contextlib.closing(socket.socket(family, socket.SOCK_DGRAM)) as udp:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            with contextlib.suppress(OSError):
                udp.sendto(b"tsubo-probe", to(port))
    for port in tcp_ports:
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setblocking(False)
        try:
            tcp.connect(to(port))
        except (BlockingIOError, OSError):
            pass
        opened.append(tcp)
    return opened


# ---------------------------------------------------------------------------------------------
# crafted frames


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _destination_mac(destination: str, gateway_mac: str) -> bytes:
    address = ipaddress.ip_address(destination)
    if destination == "255.255.255.255":
        return b"\xff" * 6
    if address.is_multicast:
        packed = address.packed
        if address.version == 4:
            return b"\x01\x00\x5e" + bytes([packed[1] & 0x7F]) + packed[2:4]
        return b"\x33\x33" + packed[12:16]
    return _mac_bytes(gateway_mac)


def _frames(source: str, destination: str, own_mac: bytes, gateway_mac: str,
            tcp_ports: list[int], udp_ports: list[int]) -> Iterator[bytes]:
    """Ethernet frames carrying an ICMP echo, a TCP SYN per port and a UDP datagram per
    port from *source* to *destination*."""
    v6 = ":" in destination
    family = socket.AF_INET6 if v6 else socket.AF_INET
    src, dst = socket.inet_pton(family, source), socket.inet_pton(family, destination)
    ethernet = _destination_mac(destination, gateway_mac) + own_mac + (
        b"\x86\xdd" if v6 else b"\x08\x00")

    def packet(protocol: int, payload: bytes, checksum_at: int | None) -> bytes:
        if checksum_at is not None:
            pseudo = src + dst + (struct.pack("!IxxxB", len(payload), protocol) if v6
                                  else struct.pack("!xBH", protocol, len(payload)))
            value = _checksum(pseudo + payload) or 0xFFFF
            payload = payload[:checksum_at] + struct.pack("!H", value) + \
                payload[checksum_at + 2:]
        if v6:
            header = struct.pack("!IHBB", 6 << 28, len(payload), protocol, 64) + src + dst
        else:
            header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0x7453, 0x4000,
                                 64, protocol, 0) + src + dst
            header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return ethernet + header + payload

    body = b"tsubo-probe"
    if v6:
        yield packet(socket.IPPROTO_ICMPV6, struct.pack("!BBHHH", 128, 0, 0, 0x7453, 2) + body,
                     2)
    else:
        echo = struct.pack("!BBHHH", 8, 0, 0, 0x7453, 2) + body
        echo = echo[:2] + struct.pack("!H", _checksum(echo)) + echo[4:]
        yield packet(socket.IPPROTO_ICMP, echo, None)
    for port in tcp_ports:
        syn = struct.pack("!HHIIBBHHH", 40000 + port, port, int.from_bytes(os.urandom(4),
                          "big"), 0, 5 << 4, 0x02, 64240, 0, 0)
        yield packet(socket.IPPROTO_TCP, syn, 16)
    for port in udp_ports:
        datagram = struct.pack("!HHHH", 40000 + port, port, 8 + len(body), 0) + body
        yield packet(socket.IPPROTO_UDP, datagram, 6)


# ---------------------------------------------------------------------------------------------
# a UDP server in the host namespace (a DNS listener, a fake upstream resolver)


class UdpServer:
    """A UDP socket bound in *netns* to (*address*, *port*), served by a thread: every
    datagram is recorded (``received``, and its sender in ``senders``), and *reply* (if
    given) answers it."""

    def __init__(self, netns: str, address: str, port: int,
                 reply: Callable[[bytes], bytes | None] | None = None) -> None:
        self.received: list[bytes] = []
        self.senders: list[str] = []
        self.reply = reply
        with InNetns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self._stop_read, self._stop_write = os.pipe()
        self.thread = threading.Thread(target=self._serve, name=f"udp-{address}:{port}")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self._stop_read], [], [])
            if self._stop_read in ready:
                return
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                continue
            self.received.append(data)
            self.senders.append(peer[0])
            answer = self.reply(data) if self.reply else None
            if answer:
                with contextlib.suppress(OSError):
                    self.sock.sendto(answer, peer)

    def close(self) -> None:
        os.write(self._stop_write, b"x")
        self.thread.join(timeout=10)
        self.sock.close()
        os.close(self._stop_read)
        os.close(self._stop_write)

    def __enter__(self) -> UdpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
