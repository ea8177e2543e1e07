"""IPv6 of dual-stack networks, pure parts: address text, ``--subnet``/``--ip6`` grammar,
the ULA pool, IPv6 leases in the shared table, AAAA answers, the firewall's IPv6 rules and
dual-family port choice."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest

from tsubo.errors import AlreadyExists, InvalidArgument, TsuboError
from tsubo.network import addresses, dns, firewall, ipam, ports
from tsubo.network.models import Network
from tsubo.network.store import NetworkStore, lease_address, lease_key
from tsubo.state.db import Database


@pytest.fixture
def store(tmp_path):
    database = Database(str(tmp_path / "tsubo.db"))
    yield NetworkStore(database)
    database.close()


def cid(number: int) -> str:
    return f"{number:064x}"


# --- address text ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["::", "::1", "fd00::1", "1::", "fe80::1:2", "::ffff:1.2.3.4",
                                  "1:2:3:4:5:6:7:8", "1:0:0:2:0:0:0:3", "FD00:0:0:0::A",
                                  "1:2:3:4:5:6:7::"])
def test_ip6_text_round_trips_as_ipaddress_does(text: str) -> None:
    value = addresses.ip6_to_int(text)
    assert value == int(ipaddress.IPv6Address(text))
    assert addresses.int_to_ip6(value) == str(ipaddress.IPv6Address(text))


def test_int_to_ip6_is_rfc5952_for_random_values() -> None:
    rng = random.Random(6)
    for _ in range(3000):
        value = rng.getrandbits(128)
        mask = rng.getrandbits(8)  # zero some groups: runs of zeros to compress
        for group in range(8):
            if mask >> group & 1:
                value &= ~(0xFFFF << (16 * group))
        assert addresses.int_to_ip6(value) == str(ipaddress.IPv6Address(value))
        assert addresses.ip6_to_int(addresses.int_to_ip6(value)) == value


@pytest.mark.parametrize("text", ["", ":", "1:::2", "1::2::3", "12345::", "g::", "1.2.3.4",
                                  "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::1%eth0",
                                  "1:2:3:4:5:6:7::8:9", "::1.2.3", "fd00::\u0661"])
def test_ip6_to_int_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        addresses.ip6_to_int(text)


def test_cidr6_bounds() -> None:
    first, last = addresses.cidr6_bounds("fd00:1::/64")
    assert addresses.int_to_ip6(first) == "fd00:1::"
    assert last - first == (1 << 64) - 1
    assert addresses.bounds("10.0.0.0/24") == addresses.cidr_bounds("10.0.0.0/24")


# --- grammar ----------------------------------------------------------------------------------


def test_parse_ip6_and_subnet6() -> None:
    assert ipam.parse_ip6("FD00:0::0005") == "fd00::5"
    assert ipam.parse_subnet6("FD00:0:0:1::/64") == "fd00:0:0:1::/64"
    assert ipam.resolve_addresses6("fd00:1::/64") == ("fd00:1::/64", "fd00:1::1")
    assert ipam.resolve_addresses6("fd00:1::/64", "fd00:1::fe") == ("fd00:1::/64",
                                                                      "fd00:1::fe")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ipam.parse_ip6("10.0.0.1"), "parse --ip6 '10.0.0.1': invalid IPv6 address"),
    (lambda: ipam.parse_ip("fd00::1"), "parse --ip fd00::1: invalid IPv4 address"),
    (lambda: ipam.parse_subnet6("fd00::"), "expected CIDR notation"),
    (lambda: ipam.parse_subnet6("fd00::/129"), "bad prefix length"),
    (lambda: ipam.parse_subnet6("fd00::1/64"), "host bits are set (hint: did you mean fd00::/64?)"),
    (lambda: ipam.parse_subnet6("fd00::/47"), "must be /48 to /126"),
    (lambda: ipam.parse_subnet6("fd00::/127"), "must be /48 to /126"),
    (lambda: ipam.parse_subnet6("fe80::/64"), "link-local"),
    (lambda: ipam.parse_subnet6("ff00::/64"), "multicast"),
    (lambda: ipam.parse_subnet6("::/64"), "reserved"),
    (lambda: ipam.resolve_addresses6("fd00::/64", "fd01::1"), "gateway is outside subnet"),
    (lambda: ipam.resolve_addresses6("fd00::/64", "fd00::"), "subnet-router anycast"),
    (lambda: ipam.split_families(["fd00::/64", "fd01::/64"], []), "more than one IPv6"),
    (lambda: ipam.split_families(["10.0.0.0/24"], ["fd00::1"]),
     "--gateway needs an IPv6 --subnet"),
])
def test_ipv6_refusals_name_the_flag(call: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert message in caught.value.message()


def test_split_families() -> None:
    assert ipam.split_families(["fd00::/64", "10.0.0.0/24"], ["10.0.0.9"]) == (
        "10.0.0.0/24", "10.0.0.9", "fd00::/64", "")
    assert ipam.split_families([""], [""]) == ("", "", "", "")


# --- the ULA pool ---------------------------------------------------------------------------


def test_ula_block_is_deterministic_per_network_and_unique_local() -> None:
    block = ipam.ula_block("a" * 64)
    assert block == ipam.ula_block("a" * 64) != ipam.ula_block("b" * 64)
    network = ipaddress.IPv6Network(block)
    assert network.prefixlen == 48 and network.subnet_of(ipaddress.IPv6Network("fd00::/8"))


def test_choose_subnet6_skips_taken_routes_and_nameservers() -> None:
    network_id = "c" * 64
    block = ipaddress.IPv6Network(ipam.ula_block(network_id))
    first, second, third = (str(s) for s in list(block.subnets(new_prefix=64))[:3])
    assert ipam.choose_subnet6(network_id, [], []) == first
    assert ipam.choose_subnet6(network_id, [first], ["::/0"]) == second
    assert ipam.choose_subnet6(network_id, [], [f"{block.network_address}/63"]) == third
    server = str(block.network_address + 5)
    assert ipam.choose_subnet6(network_id, [], [], [server]) == second
    with pytest.raises(TsuboError, match=r"every /64 of .* overlaps host route fd00::/8"):
        ipam.choose_subnet6(network_id, [], ["fd00::/8"], network="n")


def test_parse_routes6() -> None:
    output = ('[{"dst":"default","gateway":"fe80::1"},{"dst":"fd00:1::/64"},'
              '{"dst":"fd00::5"},{"dst":"::/0"},{"dst":"10.0.0.0/8"},{"type":"multicast"}]')
    assert ipam.parse_routes(output, ipv6=True) == ["fd00:1::/64", "fd00::5/128"]


# --- networks and leases ----------------------------------------------------------------------


def test_dual_stack_network_and_leases(store: NetworkStore) -> None:
    network = ipam.create_network(store, "v6", subnet="10.9.0.0/24", ipv6=True,
                                  subnet6="fd00:9::/64")
    assert (network.ipv6, network.subnet6, network.gateway6) == (True, "fd00:9::/64",
                                                                 "fd00:9::1")
    assert store.get_network("v6") == network
    got = [ipam.allocate6(store, network, container_id=cid(i)) for i in range(1, 4)]
    assert got == ["fd00:9::2", "fd00:9::3", "fd00:9::4"]
    assert ipam.allocate(store, network, container_id=cid(1)) == "10.9.0.2"
    # one table for both families: the container's leases, release and reuse
    assert sorted(a for _, a in store.container_leases(cid(1))) == ["10.9.0.2", "fd00:9::2"]
    assert ipam.release(store, network.id, "fd00:9::3")
    assert ipam.allocate6(store, network, container_id=cid(5)) == "fd00:9::3"
    assert ipam.allocate6(store, network, container_id=cid(6)) == "fd00:9::5"
    assert ipam.allocate6(store, network, "fd00:9::ffff:0:0:1",
                          container_id=cid(7)) == "fd00:9::ffff:0:0:1"
    store.forget_container(cid(1))
    assert store.container_leases(cid(1)) == []
    assert ipam.allocate6(store, network, container_id=cid(8)) == "fd00:9::2"
    assert ("fd00:9::1", "") in store.leases(network.id)  # the gateway's lease
    assert not ipam.release(store, network.id, "fd00:9::1")


@pytest.mark.parametrize(("requested", "kind", "message"), [
    ("fd00:8::5", InvalidArgument, "outside subnet fd00:9::/64"),
    ("fd00:9::", InvalidArgument, "subnet-router anycast"),
    ("fd00:9::1", AlreadyExists, "the gateway of network v6"),
    ("fd00:9::2", AlreadyExists, "already in use on network v6 by container 000000000000"),
    ("nonsense", InvalidArgument, "invalid IPv6 address"),
])
def test_ip6_refusals(store: NetworkStore, requested: str, kind: type[TsuboError],
                      message: str) -> None:
    network = ipam.create_network(store, "v6", subnet="10.9.0.0/24", ipv6=True,
                                  subnet6="fd00:9::/64")
    ipam.allocate6(store, network, container_id=cid(1))
    with pytest.raises(kind) as caught:
        ipam.allocate6(store, network, requested, container_id=cid(2))
    assert message in caught.value.message()


def test_create_refusals_and_the_ula_choice(store: NetworkStore) -> None:
    with pytest.raises(InvalidArgument, match="add --ipv6"):
        ipam.create_network(store, "x", subnet="10.1.0.0/24", subnet6="fd00:1::/64")
    ipam.create_network(store, "a", subnet="10.1.0.0/24", ipv6=True, subnet6="fd00:1::/64")
    with pytest.raises(InvalidArgument, match="overlaps subnet fd00:1::/64 of network a"):
        ipam.create_network(store, "b", subnet="10.2.0.0/24", ipv6=True,
                            subnet6="fd00:1:0:0:8000::/80")
    with pytest.raises(AlreadyExists, match="already the subnet of network a"):
        ipam.create_network(store, "b", subnet="10.2.0.0/24", ipv6=True,
                            subnet6="fd00:1::/64")
    chosen = ipam.create_network(store, "c", subnet="10.3.0.0/24", ipv6=True,
                                 routes6=lambda: [], network_id="d" * 64)
    assert chosen.subnet6 == ipam.choose_subnet6("d" * 64, [], [])
    v4only = ipam.create_network(store, "d", subnet="10.4.0.0/24")
    with pytest.raises(InvalidArgument, match="has no IPv6 subnet"):
        ipam.allocate6(store, v4only, "fd00::5", container_id=cid(1))
    assert [n.name for n in store.list_networks()] == ["a", "c", "d"]


def test_lease_keys_are_apart_and_reversible() -> None:
    assert lease_key("10.0.0.1") == 0x0A000001
    key = lease_key("fd00::1")
    assert isinstance(key, str) and key.startswith("6/") and len(key) == 34
    assert lease_address(key) == "fd00::1"
    assert str(lease_key("fd00::2")) > key  # text keys sort by value


# --- DNS ------------------------------------------------------------------------------------


def query(name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, 1)


def test_aaaa_answers_and_a_stays() -> None:
    here = {"web": "10.9.0.2", "old": "10.9.0.3"}
    here6 = {"web": "fd00:9::2", "old": ""}

    def decide(name: str, qtype: int) -> dns.Decision:
        return dns.decide(query(name, qtype), internal=False, lookup=here.get,
                          engine_name=lambda n: n in here, lookup6=here6.get)

    reply = decide("web", 28).reply
    assert struct.unpack("!HHHHHH", reply[:12])[3] == 1  # one answer
    assert reply[-16:] == ipaddress.IPv6Address("fd00:9::2").packed
    assert struct.unpack("!HH", reply[-26:-22]) == (28, 1)
    reply = decide("web", 1).reply
    assert reply[-4:] == bytes([10, 9, 0, 2])
    empty = decide("old", 28).reply  # known, without IPv6: no records, not NXDOMAIN
    assert dns.rcode(empty) == 0 and struct.unpack("!HHHHHH", empty[:12])[3] == 0
    assert decide("elsewhere.example", 28).relay


# --- firewall ---------------------------------------------------------------------------------


def test_firewall_masquerades_and_publishes_ipv6() -> None:
    net = Network("e" * 64, "v6", "10.9.0.0/24", "10.9.0.1", "tsbeeee", ipv6=True,
                  subnet6="fd00:9::/64", gateway6="fd00:9::1")
    batch: Any = firewall.setup_batch(net)["nftables"]
    nat = [c["add"]["rule"]["expr"] for c in batch if "rule" in c.get("add", {})
           and c["add"]["rule"]["chain"].endswith("-nat")]
    assert [expr[0]["match"]["left"]["payload"]["protocol"] for expr in nat] == \
        ["ip", "ip", "ip6", "ip6"]
    assert nat[3][0]["match"]["right"] == {"prefix": {"addr": "fd00:9::", "len": 64}}
    internal = Network("e" * 64, "v6", "10.9.0.0/24", "10.9.0.1", "tsbeeee", ipv6=True,
                       subnet6="fd00:9::/64", gateway6="fd00:9::1", internal=True)
    internal_batch: Any = firewall.setup_batch(internal)["nftables"]
    host_rules = [c["add"]["rule"]["expr"] for c in internal_batch
                  if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"].endswith("-host")]
    assert [expr[0]["match"]["left"] for expr in host_rules[:2]] == [
        {"ct": {"key": "ip daddr", "dir": "original"}},
        {"ct": {"key": "ip6 daddr", "dir": "original"}}]
    assert host_rules[-1] == [{"drop": None}]
    published = [ports.PublishedPort("0.0.0.0", 8080, 80, "tcp"),
                 ports.PublishedPort("::", 8080, 80, "tcp"),
                 ports.PublishedPort("fd99::1", 8081, 81, "udp")]
    commands: Any = firewall.publish_batch("f" * 64, "web", "10.9.0.2", published,
                                      address6="fd00:9::2")["nftables"]
    assert not any("rule" in c.get("add", {}) for c in commands)
    data = {c["add"]["element"]["name"]: [e[1] for e in c["add"]["element"]["elem"]]
            for c in commands if "element" in c.get("add", {})}
    assert data == {"ports4_addr": ["10.9.0.2"], "ports4_port": [80],
                    "bound6_addr": ["fd00:9::2"], "bound6_port": [81],
                    "ports6_addr": ["fd00:9::2"], "ports6_port": [80]}
    undo: Any = firewall.unpublish_batch(published, "10.9.0.2", "fd00:9::2")["nftables"]
    deleted = [c["delete"]["element"]["name"] for c in undo if "element" in c.get("delete", {})]
    assert deleted == list(data)


# --- ports ------------------------------------------------------------------------------------


def test_dual_choice_binds_both_families_on_one_port() -> None:
    specs = ports.parse_publish("8080:80") + ports.parse_publish("90")
    held = {("tcp", "::", 32768)}

    def holder(protocol: str, ip: str, port: int) -> str | None:
        return "x" if (protocol, ip, port) in held else None

    chosen = ports.choose(specs, holder, lambda: (32768, 32770), dual=True)
    assert [p.docker_text() for p in chosen] == [
        "0.0.0.0:8080->80/tcp", "[::]:8080->80/tcp", "0.0.0.0:32769->90/tcp",
        "[::]:32769->90/tcp"]
    single = ports.choose(ports.parse_publish("0.0.0.0:8080:80"), holder, lambda: (1, 2), dual=True)
    assert [p.docker_text() for p in single] == ["0.0.0.0:8080->80/tcp"]
    with pytest.raises(ports.PortTaken) as caught:
        ports.choose(ports.parse_publish("32768:80"), holder, lambda: (1, 2), dual=True)
    assert caught.value.message() == "[::]:32768/tcp is already in use by x"


def test_bindings_of_two_families_do_not_overlap() -> None:
    v4 = ports.PublishedPort("0.0.0.0", 8080, 80, "tcp")
    v6 = ports.PublishedPort("::", 8080, 80, "tcp")
    assert not v4.overlaps("tcp", "::", 8080) and not v6.overlaps("tcp", "0.0.0.0", 8080)
    assert v6.overlaps("tcp", "fd00::1", 8080) and v4.overlaps("tcp", "10.0.0.1", 8080)
    assert ports.ports_column([v4, v6]) == "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
