"""Reachability probes: one ICMP echo or one TCP connection, from the network namespace of
the calling thread, bound to one interface.

What it owns
    The sockets of lab checks. They are opened by the engine itself, inside a node's
    namespace (:class:`tsubo.kernel.iproute.InNetns`: a socket belongs to the namespace of
    the thread that creates it), so a check needs nothing from the node's image (no
    ``ping`` binary, no shell) and costs no process.

Decisions
    * ``SO_BINDTODEVICE`` on every probe: the packets leave through that interface or not
      at all. A check can therefore never succeed over another path, such as the
      management network (the trap dot2net documents for containerlab labs).
    * ICMP through a raw socket (we are root): an echo request with our own identifier;
      replies of other sockets (a raw socket sees every ICMP packet of the namespace) are
      skipped by identifier and sequence.
"""

from __future__ import annotations

import os
import socket
import struct
import time

_SO_BINDTODEVICE = 25
_ICMP_ECHO_REQUEST = 8
_ICMP_ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _bind_device(sock: socket.socket, ifname: str) -> None:
    if ifname:
        sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, ifname.encode() + b"\0")


def icmp_echo(address: str, *, ifname: str = "", timeout: float = 1.0, tries: int = 1
              ) -> bool:
    """True when *address* answers an ICMP echo sent through *ifname* within *timeout*
    seconds (per try)."""
    import select

    # a raw socket sees every ICMP packet of the namespace (on its device): a random
    # identifier keeps checks running at once in other threads apart
    ident = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        _bind_device(sock, ifname)
        for sequence in range(1, tries + 1):
            payload = b"tsubo-lab-check"
            header = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, 0, ident, sequence)
            packet = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0,
                                 _checksum(header + payload), ident, sequence) + payload
            try:
                sock.sendto(packet, (address, 0))
            except OSError:  # no route through that interface: unreachable
                time.sleep(min(timeout, 0.05))
                continue
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data, (sender, _) = sock.recvfrom(2048)
                header_len = (data[0] & 0x0F) * 4
                if len(data) < header_len + 8 or sender != address:
                    continue
                kind, _, _, got_ident, got_sequence = struct.unpack(
                    "!BBHHH", data[header_len:header_len + 8])
                if kind == _ICMP_ECHO_REPLY and got_ident == ident \
                        and got_sequence == sequence:
                    return True
    return False


def tcp_connect(address: str, port: int, *, ifname: str = "", timeout: float = 1.0) -> bool:
    """True when a TCP connection to *address*:*port* through *ifname* is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        _bind_device(sock, ifname)
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except OSError:
            return False
    return True
