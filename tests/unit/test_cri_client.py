"""The CRI test client's protobuf wire format (tests/cri_client.py), against the encoding
examples of the protobuf documentation and round trips of what the CRI test sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("grpc", reason="grpcio not installed (the dev extras)")
from tests import cri_client as wire


def test_documented_examples() -> None:
    # protobuf's encoding guide: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 ...
    assert wire.varint(1, 150) == bytes.fromhex("089601")
    assert wire.string(2, "testing") == bytes.fromhex("120774657374696e67")
    # proto3 leaves zero and empty scalars out; sub-messages are sent even when empty
    assert wire.varint(3, 0) == wire.string(4, "") == b""
    assert wire.sub(15, b"") == bytes.fromhex("7a00")


def test_negative_int32_is_ten_bytes_and_reads_back() -> None:
    encoded = wire.varint(7, -1)
    assert len(encoded) == 11  # key + ten bytes of two's complement
    assert wire.signed(wire.number_of(wire.fields(encoded), 7), 32) == -1


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=5),
       st.lists(st.text(max_size=20), max_size=5),
       st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_round_trip(labels: dict[str, str], command: list[str], number: int) -> None:
    data = wire.message(wire.string_map(6, labels), wire.strings(3, command),
                        wire.varint(4, number))
    found = wire.fields(data)
    assert wire.read_map(found, 6) == labels
    assert [bytes(v).decode() for v in found.get(3, [])] == command
    assert wire.signed(wire.number_of(found, 4)) == number


def test_namespace_options_of_a_pod_config() -> None:
    config = wire.fields(wire.pod_sandbox_config("p", "u", "ns", cgroup_parent="/x",
                                                 pid=wire.POD))
    linux = wire.submessage(config, 8)
    assert wire.text(linux, 1) == "/x"
    options = wire.submessage(wire.submessage(linux, 2), 1)
    assert 2 not in options  # pid = POD = 0: left out, as proto3 does
    container = wire.fields(wire.container_config("c", "img", ["true"]))
    options = wire.submessage(wire.submessage(wire.submessage(container, 15), 2), 3)
    assert wire.number_of(options, 2) == wire.CONTAINER


@pytest.mark.parametrize("data", [b"\x08", b"\x12\x05ab", b"\x0b"])
def test_truncated_or_unknown_wire_types_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        wire.fields(data)
