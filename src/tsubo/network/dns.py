"""Name resolution on user-defined networks: the wire format and the policy of the DNS
responder on each bridge's gateway.

A container on a network gets ``nameserver <gateway>`` in its ``/etc/resolv.conf``. The
engine's monitor (already the long-lived process of the running containers) listens on
``<gateway>:53/udp`` and hands every datagram to :func:`decide`, which says what to do with
it (pure: the monitor supplies the database lookups):

1. not a query (shorter than a header, or a response): dropped, never answered;
2. not one well-formed question of class IN in a standard query: an error reply (NOTIMP,
   FORMERR, REFUSED), never relayed -- a second question or another class could carry any
   name past the checks below;
3. the name (or 12-digit short ID) of a container on this network: its A record, or its
   AAAA record on a dual-stack network (an empty answer for other types, and for AAAA
   when it has no IPv6 address);
4. on an ``--internal`` network, anything else: NXDOMAIN. Nothing is relayed, so a
   container there cannot send data out through DNS names (the CVE-2024-29018 class);
5. the name or short ID of any other container of this engine (on another network, on
   none, stopped): NXDOMAIN, so the names of one network's containers never reach the
   upstream resolvers through another network;
6. anything else: relayed to the upstream nameservers (``ipam.dns_upstreams``) and the
   answer passed back, as Docker's embedded DNS does.

See docs/network.md, "Names" and "Internal networks".
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_TYPE_A = 1
_TYPE_AAAA = 28
_CLASS_IN = 1
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
_TTL = 10
_HEADER = 12


class Decision:
    """What the responder does with one datagram: send :attr:`reply` back (when not
    empty), relay the query upstream (:attr:`relay`), or neither (drop it)."""

    __slots__ = ("relay", "reply")

    def __init__(self, reply: bytes = b"", *, relay: bool = False) -> None:
        self.reply = reply
        self.relay = relay

    def __repr__(self) -> str:
        if self.relay:
            return "Decision(relay)"
        if self.reply:
            return f"Decision(reply rcode={rcode(self.reply)})"
        return "Decision(drop)"


DROP = Decision()
RELAY = Decision(relay=True)


def decide(packet: bytes, *, internal: bool, lookup: Callable[[str], str | None],
           engine_name: Callable[[str], bool],
           lookup6: Callable[[str], str | None] | None = None) -> Decision:
    """What to do with *packet*, received on the resolver of a network (see the module
    docstring for the rules). *internal*: the network is ``--internal``; *lookup*: the
    address on this network of the container with that name or short ID, else None;
    *engine_name*: whether a container of this engine has that name or short ID, anywhere;
    *lookup6*: the same for its IPv6 address ("" or None: it has none)."""
    parsed = _parse(packet)
    if parsed is None:
        return DROP
    if isinstance(parsed, int):
        return Decision(error_reply(packet, parsed))
    _, name, qtype, end = parsed
    name = name.rstrip(".")
    address = lookup(name)
    if address is not None:
        if qtype == _TYPE_AAAA and lookup6 is not None:
            address = lookup6(name) or ""
            if address:
                return Decision(answer(packet, end, address))
        if qtype != _TYPE_A:  # a name we own, asked for another type: an empty answer
            return Decision(packet[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0)
                            + packet[12:end])
        return Decision(answer(packet, end, address))
    if internal or engine_name(name):
        return Decision(answer(packet, end, None))
    return RELAY


def rcode(reply: bytes) -> int:
    """The response code of a DNS message (-1 if it has no header)."""
    return reply[3] & 0xF if len(reply) >= 4 else -1


def error_reply(packet: bytes, code: int) -> bytes:
    """A header-only response to *packet* (at least a header long) with *code*: same ID,
    opcode and RD bit, no question echoed."""
    flags = struct.unpack("!H", packet[2:4])[0]
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | code  # QR, opcode+RD kept, RA
    return packet[:2] + struct.pack("!HHHHH", reply_flags, 0, 0, 0, 0)


def question(packet: bytes) -> tuple[int, str, int, int] | None:
    """(query id, lower-case name, qtype, end offset of the question) of a standard query;
    None for anything else (responses, malformed packets, several questions)."""
    parsed = _parse(packet)
    return None if parsed is None or isinstance(parsed, int) else parsed


def _parse(packet: bytes) -> tuple[int, str, int, int] | int | None:
    """:func:`question`'s tuple; None for what is not a query at all (no reply is due);
    an rcode for a query we do not take (other opcode, several questions, malformed,
    another class)."""
    if len(packet) < _HEADER:
        return None
    query_id, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000:  # a response: never answered (no loops, no reflection)
        return None
    if (flags >> 11) & 0xF:
        return RCODE_NOTIMP  # not QUERY (IQUERY, STATUS, NOTIFY, UPDATE ...)
    if qdcount != 1:
        return RCODE_FORMERR
    labels = []
    offset = 12
    while True:
        if offset >= len(packet):
            return RCODE_FORMERR
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(packet):
            return RCODE_FORMERR  # compression pointers never appear in a question we accept
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        return RCODE_FORMERR
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    if qclass != _CLASS_IN:
        return RCODE_REFUSED
    return query_id, ".".join(labels).lower(), qtype, offset + 4


def answer(packet: bytes, end: int, address: str | None) -> bytes:
    """The response to *packet*: one A record for *address* (AAAA for an IPv6 one), or
    NXDOMAIN when None."""
    query_id = packet[:2]
    flags = 0x8180 if address else 0x8180 | RCODE_NXDOMAIN  # response, RD+RA
    header = query_id + struct.pack("!HHHHH", flags, 1, 1 if address else 0, 0, 0)
    body = packet[12:end]
    if address and ":" in address:
        from tsubo.network.addresses import ip6_to_int

        body += struct.pack("!HHHIH", 0xC00C, _TYPE_AAAA, _CLASS_IN, _TTL, 16)
        body += ip6_to_int(address).to_bytes(16, "big")
    elif address:
        body += struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, _TTL, 4)
        body += bytes(int(part) for part in address.split("."))
    return header + body


# --- DNS over TCP (RFC 7766): each message preceded by its length, two bytes ---------------


def tcp_frame(message: bytes) -> bytes:
    """*message* as it goes on a TCP connection."""
    return len(message).to_bytes(2, "big") + message


def read_tcp_message(conn: Any) -> bytes | None:
    """One message from the blocking socket *conn* (None: it closed before a whole one)."""
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data[2:2 + int.from_bytes(data[:2], "big")]
