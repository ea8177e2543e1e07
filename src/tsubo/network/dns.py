"""Name resolution on user-defined networks: a small DNS responder on each bridge's gateway.

A container on a network gets ``nameserver <gateway>`` in its ``/etc/resolv.conf``. The
engine's monitor (already the long-lived process of the running containers) listens on
``<gateway>:53/udp`` and answers A queries for the names of the containers on the asking
container's networks; any other query is relayed to the host's own nameservers and the
answer passed back (Docker's embedded DNS does the same). Only the wire format needed for
that is parsed: one question, class IN; everything else gets the upstream's answer.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_TYPE_A = 1
_CLASS_IN = 1
_RCODE_NXDOMAIN = 3
_TTL = 10


def question(packet: bytes) -> tuple[int, str, int, int] | None:
    """(query id, lower-case name, qtype, end offset of the question) of a standard query;
    None for anything else (responses, malformed packets, several questions)."""
    if len(packet) < 12:
        return None
    query_id, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1 or (flags >> 11) & 0xF:  # a response, or not QUERY
        return None
    labels = []
    offset = 12
    while True:
        if offset >= len(packet):
            return None
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(packet):
            return None  # compression pointers never appear in a question we accept
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    if qclass != _CLASS_IN:
        return None
    return query_id, ".".join(labels).lower(), qtype, offset + 4


def answer(packet: bytes, end: int, address: str | None) -> bytes:
    """The response to *packet*: one A record for *address*, or NXDOMAIN when None."""
    query_id = packet[:2]
    flags = 0x8180 if address else 0x8180 | _RCODE_NXDOMAIN  # response, RD+RA
    header = query_id + struct.pack("!HHHHH", flags, 1, 1 if address else 0, 0, 0)
    body = packet[12:end]
    if address:
        body += struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, _TTL, 4)
        body += bytes(int(part) for part in address.split("."))
    return header + body


def respond(packet: bytes, lookup: Callable[[str], str | None]) -> bytes | None:
    """Our answer to an A query for a known name (or AAAA for one: no record, no error);
    None when the query is for someone else (to be relayed upstream)."""
    parsed = question(packet)
    if parsed is None:
        return None
    _, name, qtype, end = parsed
    address = lookup(name.rstrip("."))
    if address is None:
        return None
    if qtype != _TYPE_A:  # a name we own, asked for another type: an empty answer
        return packet[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + packet[12:end]
    return answer(packet, end, address)
