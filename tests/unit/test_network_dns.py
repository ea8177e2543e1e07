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


HERE = {"beta": "10.89.10.11"}
ELSEWHERE = {"db", "0123456789ab"}  # a container on another network: name, short ID


def decide(packet: bytes, *, internal: bool = False) -> dns.Decision:
    return dns.decide(packet, internal=internal, lookup=HERE.get,
                      engine_name=lambda name: name in ELSEWHERE or name in HERE)


def header(reply: bytes) -> tuple[int, ...]:
    return struct.unpack("!HHHHHH", reply[:12])


def test_known_name_gets_one_a_record() -> None:
    for internal in (False, True):
        decision = decide(query("beta"), internal=internal)
        assert not decision.relay
        query_id, flags, qd, an, ns, ar = header(decision.reply)
        assert (query_id, flags & 0x8000, flags & 0xF, qd, an, ns, ar) == (
            0x1234, 0x8000, 0, 1, 1, 0, 0)
        assert decision.reply.endswith(bytes([10, 89, 10, 11]))


def test_names_are_case_insensitive() -> None:
    assert decide(query("BeTa")).reply.endswith(bytes([10, 89, 10, 11]))
    assert dns.rcode(decide(query("DB")).reply) == dns.RCODE_NXDOMAIN


def test_unknown_name_is_relayed_from_a_normal_network() -> None:
    decision = decide(query("example.org"))
    assert decision.relay and decision.reply == b""


def test_internal_network_answers_nxdomain_and_relays_nothing() -> None:
    for name, qtype in (("example.org", 1), ("example.org", 28), ("db", 1),
                        ("x" * 63 + ".exfil.example", 16), ("", 2)):
        packet = query(name, qtype=qtype) if name else _root_query(qtype)
        decision = decide(packet, internal=True)
        assert not decision.relay, name
        assert dns.rcode(decision.reply) == dns.RCODE_NXDOMAIN, name
        query_id, flags, qd, an, _, _ = header(decision.reply)
        assert (query_id, flags & 0x8000, qd, an) == (0x1234, 0x8000, 1, 0)
        assert decision.reply[12:] == packet[12:]  # the question echoed, nothing added


def test_names_of_containers_elsewhere_are_never_relayed() -> None:
    for name in ("db", "0123456789ab"):
        for qtype in (1, 28, 255):
            decision = decide(query(name, qtype=qtype))
            assert not decision.relay, (name, qtype)
            assert dns.rcode(decision.reply) == dns.RCODE_NXDOMAIN
    # a longer name that merely starts with one is someone else's: relayed
    assert decide(query("db.example.org")).relay


def test_other_types_of_a_known_name_get_an_empty_answer() -> None:
    reply = decide(query("beta", qtype=28)).reply
    assert dns.rcode(reply) == 0
    assert struct.unpack("!HH", reply[6:10]) == (0, 0)


def _root_query(qtype: int) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\0" + struct.pack(
        "!HH", qtype, 1)


def _with(packet: bytes, *, flags: int | None = None, qdcount: int | None = None,
          qclass: int | None = None) -> bytes:
    data = bytearray(packet)
    if flags is not None:
        data[2:4] = struct.pack("!H", flags)
    if qdcount is not None:
        data[4:6] = struct.pack("!H", qdcount)
    if qclass is not None:
        data[-2:] = struct.pack("!H", qclass)
    return bytes(data)


def test_what_we_do_not_parse_is_answered_with_an_error_never_relayed() -> None:
    two_questions = _with(query("db"), qdcount=2) + query("db")[12:]
    cases = [
        (_with(query("example.org"), flags=0x2100), dns.RCODE_NOTIMP),  # opcode UPDATE
        (_with(query("example.org"), flags=0x0900), dns.RCODE_NOTIMP),  # opcode IQUERY
        (two_questions, dns.RCODE_FORMERR),
        (_with(query("example.org"), qdcount=0), dns.RCODE_FORMERR),
        (query("example.org")[:-3], dns.RCODE_FORMERR),  # truncated question
        (query("example.org")[:14], dns.RCODE_FORMERR),  # cut inside a label
        (query("example.org")[:12] + b"\xc0\x0c" + b"\0\1\0\1", dns.RCODE_FORMERR),
        (_with(query("db"), qclass=3), dns.RCODE_REFUSED),  # CHAOS
        (_with(query("example.org"), qclass=255), dns.RCODE_REFUSED),  # ANY class
    ]
    for internal in (False, True):
        for packet, code in cases:
            decision = decide(packet, internal=internal)
            assert not decision.relay, packet
            assert dns.rcode(decision.reply) == code, packet
            query_id, flags, qd, an, ns, ar = header(decision.reply)
            assert query_id == 0x1234 and flags & 0x8000 and (qd, an, ns, ar) == (0, 0, 0, 0)
            assert (flags >> 11) & 0xF == (header(packet)[1] >> 11) & 0xF  # opcode kept


def test_responses_and_runts_are_dropped() -> None:
    for packet in (b"", b"\0" * 11, _with(query("example.org"), flags=0x8180)):
        decision = decide(packet)
        assert not decision.relay and decision.reply == b""
        assert decide(packet, internal=True).reply == b""


def test_malformed_and_non_queries_are_not_questions() -> None:
    assert dns.question(b"\0" * 5) is None
    response = bytearray(query("beta"))
    response[2] |= 0x80  # QR: a response, not a query
    assert dns.question(bytes(response)) is None
    assert dns.question(query("beta")[:-3]) is None
