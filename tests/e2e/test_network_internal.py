"""``--internal`` and the networks' resolvers, end to end, written as attacks (issue 15,
item 3; the CVE-2024-29018 class).

A container on an internal network throws ICMP, TCP and UDP at every address of every
interface of its host -- from inside (busybox) and from its pinned network namespace
(ordinary sockets and frames crafted to the gateway's MAC: 127.0.0.0/8, IPv6 link-local,
broadcast, multicast; tests/netprobe.py) -- and tries to get names out through DNS. A fake
upstream resolver of the test's own, inside the throwaway host namespace, is the engine's
upstream (the engine setting ``TSUBO_DNS_UPSTREAM``): it must hear nothing from the
internal network, and nothing about containers from another network, while an outside
name asked on a normal network still reaches it.

Everything runs inside the `netns` fixture's throwaway "host" namespace (through the
`net_engine` fixture of test_engine_network.py); packets go only to addresses of that
namespace and the containers', and to groups that stay on its links.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from tests import netprobe
from tests.e2e import test_engine_network
from tests.e2e.test_engine_network import NetEngine
from tsubo.network import dns

# the fixture this module uses (imported as a value so it registers here)
net_engine = test_engine_network.net_engine

UPLINK_V4 = "10.89.250.1"
UPLINK_V6 = "fd89::1"
UPSTREAM = "10.89.251.53"
OUTSIDE_ANSWER = "10.89.251.99"
INTERNAL_BRIDGE = "tsbsealed"
NORMAL_BRIDGE = "tsbopen"


def fake_upstream_reply(packet: bytes) -> bytes | None:
    """A resolver for every name: A -> OUTSIDE_ANSWER, other types: no records."""
    parsed = dns.question(packet)
    if parsed is None:
        return None
    _, _, qtype, end = parsed
    if qtype == 1:
        return dns.answer(packet, end, OUTSIDE_ANSWER)
    return packet[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + packet[12:end]


def asked_upstream(upstream: netprobe.UdpServer) -> set[str]:
    """The names in the DNS queries the fake upstream received (probes' junk left out)."""
    return {parsed[1] for packet in upstream.received
            if (parsed := dns.question(packet)) is not None}


def host_state(engine: NetEngine) -> tuple[dict[str, Any], list[Any]]:
    """The host namespace's links (flags, MTU, master, addresses) and its nft ruleset."""
    links = {}
    for link in json.loads(engine.host("ip", "-j", "addr").stdout):
        addresses = sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))
        links[link["ifname"]] = (sorted(link["flags"]), link["mtu"], link.get("master"),
                                 addresses)
    ruleset = json.loads(engine.host("nft", "-j", "list", "ruleset").stdout)["nftables"]
    return links, [item for item in ruleset if "metainfo" not in item]


def nslookup(engine: NetEngine, container: str, name: str) -> str:
    result = engine.run("exec", container, "nslookup", name, check=False)
    return result.stdout + result.stderr


def query_from(netns: str, server: str, packet: bytes) -> bytes:
    """One DNS datagram from inside *netns*; the reply (b"" if none came)."""
    replies: list[bytes] = []

    def ask() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(packet, (server, 53))
            try:
                replies.append(sock.recv(4096))
            except TimeoutError:
                pass

    netprobe.in_netns(netns, ask)
    return replies[0] if replies else b""


def dns_query(name: str, *, qclass: int = 1, questions: int = 1) -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    question += struct.pack("!HH", 1, qclass)
    return struct.pack("!HHHHHH", 0x4242, 0x0100, questions, 0, 0, 0) + question * questions


@pytest.fixture
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> NetEngine:
    """net_engine, with an uplink in the host namespace and the fake upstream's address."""
    base: NetEngine = request.getfixturevalue("net_engine")
    base.host("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    base.host("ip", "addr", "add", f"{UPLINK_V4}/24", "dev", "up0")
    base.host("ip", "addr", "add", f"{UPLINK_V6}/64", "dev", "up0", "nodad")
    base.host("ip", "addr", "add", f"{UPSTREAM}/24", "dev", "up1")
    base.host("ip", "link", "set", "up0", "up")
    base.host("ip", "link", "set", "up1", "up")
    netprobe.wait_no_tentative(base.netns)  # link-local addresses settled
    # the engine (and the monitor the first `run` forks) relays to our resolver
    monkeypatch.setenv("TSUBO_DNS_UPSTREAM", UPSTREAM)
    return base


def test_internal_network_is_sealed_and_names_do_not_leak(engine: NetEngine) -> None:
    netns = engine.netns
    before = host_state(engine)
    with netprobe.UdpServer(netns, UPSTREAM, 53, fake_upstream_reply) as upstream:
        engine.run("network", "create", "sealed", "--internal", "--subnet", "10.89.20.0/24",
                   "--bridge-name", INTERNAL_BRIDGE)
        # dual stack: a container on an IPv4-only network has no IPv6 address at all,
        # not even a link-local one (nothing it could reach the host with)
        engine.run("network", "create", "open", "--subnet", "10.89.21.0/24", "--ipv6",
                   "--subnet", "fd89:21::/64", "--bridge-name", NORMAL_BRIDGE)
        engine.start("vault", "sealed", "10.89.20.10")
        engine.start("vaultpeer", "sealed", "10.89.20.11")
        engine.start("lobby", "open", "10.89.21.10")
        for bridge in (INTERNAL_BRIDGE, NORMAL_BRIDGE):  # as port publishing will set it
            engine.host("sysctl", "-w", f"net.ipv4.conf.{bridge}.route_localnet=1")
        netprobe.wait_no_tentative(netns, "vault", "lobby")
        host = netprobe.addresses(netns)
        targets = netprobe.targets(host)
        assert {UPLINK_V4, UPLINK_V6, UPSTREAM, "10.89.20.1", "10.89.21.1", "127.0.0.1",
                "::1", "10.89.20.255"} <= set(targets)
        assert any(t.startswith("fe80:") for t in targets)

        # --- from inside the container: ping every IPv4 address of the host (127/8 is
        # the container's own loopback there: the crafted frames below try the host's)
        v4 = [t for t in targets if ":" not in t and not t.startswith("127.")]
        script = " ".join(f"(ping -c 1 -W 1 {t} >/dev/null 2>&1 && echo REACHED {t}) &"
                          for t in v4) + " wait"
        inside = engine.run("exec", "vault", "sh", "-c", script)
        assert "REACHED" not in inside.stdout, inside.stdout
        assert engine.run("exec", "vault", "ping", "-c", "1", "-W", "2", "10.89.20.11",
                          check=False).returncode == 0  # its own network works

        # --- from its network namespace: everything at everything
        internal_index, internal_mac = netprobe.link(netns, INTERNAL_BRIDGE)
        normal_index, normal_mac = netprobe.link(netns, NORMAL_BRIDGE)
        with netprobe.Sniffer(netns) as sniffer:
            netprobe.probe("vault", targets, gateway_mac=internal_mac)
            netprobe.probe("lobby", targets, gateway_mac=normal_mac)
            arrivals = sniffer.collect()
        from_vault = [a for a in arrivals if a.ifindex == internal_index
                      or a.source in ("10.89.20.10",)]
        resolver = {("udp", "10.89.20.1", 53), ("tcp", "10.89.20.1", 53)}  # DNS, both ways
        leaked = [a for a in from_vault
                  if (a.protocol, a.destination, a.port) not in resolver]
        assert leaked == [], f"{len(leaked)} packets reached the host, e.g. {leaked[:5]}"
        assert from_vault, "not even DNS on the gateway got through: the probe is broken"
        from_lobby = {(a.protocol, a.destination) for a in arrivals
                      if a.ifindex == normal_index}
        for reached in (("icmp", UPLINK_V4), ("udp", UPLINK_V6), ("udp", "10.89.20.1")):
            assert reached in from_lobby, reached  # a normal network does reach the host
        # but not its 127.0.0.0/8 (the localhost drop: 127.0.0.1 publishes are host-only)
        assert [a for a in from_lobby if a[1].startswith("127.")] == []

        # --- names: the internal network answers its own and nothing else
        assert "10.89.20.11" in nslookup(engine, "vault", "vaultpeer")
        for name in ("outside.example", "lobby", "exfil-0123.outside.example"):
            assert "NXDOMAIN" in nslookup(engine, "vault", name), name
        # a normal network never relays another network's container names
        vaultpeer_id = engine.run("inspect", "vaultpeer").stdout
        short_id = json.loads(vaultpeer_id)[0]["Id"][:12]
        for name in ("vaultpeer", "VaultPeer", short_id):
            assert "NXDOMAIN" in nslookup(engine, "lobby", name), name
        # ... nor smuggles one past the checks in another class or a second question
        refused = query_from("lobby", "10.89.21.1", dns_query("vaultpeer", qclass=3))
        assert dns.rcode(refused) == dns.RCODE_REFUSED
        two = query_from("lobby", "10.89.21.1", dns_query("vaultpeer", questions=2))
        assert dns.rcode(two) == dns.RCODE_FORMERR
        # nothing of all this reached the upstream (lobby's probes did: it may)
        assert asked_upstream(upstream) == set()
        assert not any(sender.startswith("10.89.20.") for sender in upstream.senders)

        # an outside name asked on a normal network is relayed, and answered
        assert OUTSIDE_ANSWER in nslookup(engine, "lobby", "outside.example")
        assert asked_upstream(upstream) == {"outside.example"}

        engine.run("rm", "-f", "vault", "vaultpeer", "lobby")
        engine.run("network", "rm", "sealed", "open")
    # the host namespace is as it was: addresses, links, the whole nft ruleset
    # (veth pairs go with their namespace, asynchronously: a few ms after `rm`)
    deadline = time.monotonic() + 10
    while (after := host_state(engine)) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(after[0]) == sorted(before[0])  # the same links
    assert after == before
    assert not Path("/run/netns/vault").exists()
