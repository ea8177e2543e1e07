"""The DNS wire handling of network/dns.py (pure)."""

from __future__ import annotations

import struct

from tsubo.network import dns


def query(name: str, qtype: int = 1, query_id: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, 1)


def test_question_is_parsed() -> None:
    parsed = dns.question(query("Web.Example"))
    assert parsed is not None
    query_id, name, qtype, end = parsed
    assert (query_id, name, qtype) == (0x1234, "web.example", 1)
    assert end == len(query("web.example"))


def test_known_name_gets_one_a_record() -> None:
    packet = query("beta")
    reply = dns.respond(packet, {"beta": "10.89.10.11"}.get)
    assert reply is not None
    query_id, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", reply[:12])
    assert (query_id, flags & 0x8000, flags & 0xF, qd, an, ns, ar) == (0x1234, 0x8000, 0, 1, 1,
                                                                       0, 0)
    assert reply.endswith(bytes([10, 89, 10, 11]))


def test_unknown_name_is_left_for_the_upstream() -> None:
    known: dict[str, str] = {}
    assert dns.respond(query("example.org"), known.get) is None


def test_other_types_of_a_known_name_get_an_empty_answer() -> None:
    reply = dns.respond(query("beta", qtype=28), {"beta": "10.89.10.11"}.get)
    assert reply is not None
    assert struct.unpack("!HH", reply[6:10]) == (0, 0)


def test_malformed_and_non_queries_are_ignored() -> None:
    assert dns.question(b"\0" * 5) is None
    response = bytearray(query("beta"))
    response[2] |= 0x80  # QR: a response, not a query
    assert dns.question(bytes(response)) is None
    truncated = query("beta")[:-3]
    assert dns.question(truncated) is None
    assert dns.respond(truncated, {"beta": "10.0.0.1"}.get) is None
