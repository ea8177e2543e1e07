"""``--internal`` against the real kernel, written as attacks: a container on an internal
network throws ICMP, TCP and UDP at every address of its host -- through ordinary sockets
and as crafted frames to the gateway's MAC -- and the host's stack must take in nothing but
UDP to the resolver on the gateway.

Same topology as tests/kernel/test_network_firewall.py, all inside the `netns` fixture's
throwaway namespace H: per network a bridge with the gateway address and per "container" a
netns ``H-<x>`` with ``eth0`` on a port of it; H also gets an "uplink" (a dummy link with an
IPv4 and an IPv6 address) and ``route_localnet`` on the bridges, as port publishing sets it,
so that 127.0.0.0/8 sent to the gateway's MAC is delivered unless the firewall drops it.
What the host took in is read from raw sockets in H (tests/netprobe.py). Packets go only to
addresses of H and to groups that stay on the test's links.
"""

from __future__ import annotations

import shutil

import pytest

from tests import netprobe
from tests.kernel import test_network_firewall
from tests.kernel.test_network_firewall import Topology, sh, table_text
from tsubo.kernel import nftables
from tsubo.network import firewall
from tsubo.network.models import Network

pytestmark = pytest.mark.skipif(shutil.which("nft") is None, reason="nft missing (nftables)")

# the fixture this module uses (imported as a value so it registers here)
topo = test_network_firewall.topo

UPLINK_V4 = "10.231.250.1"
UPLINK_V6 = "fd31::1"


def with_uplink(t: Topology) -> None:
    h = t.host.name
    sh("ip", "-n", h, "link", "set", "lo", "up")
    # a veth pair with both ends in H (this kernel has no dummy driver)
    sh("ip", "-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    sh("ip", "-n", h, "addr", "add", f"{UPLINK_V4}/24", "dev", "up0")
    sh("ip", "-n", h, "addr", "add", f"{UPLINK_V6}/64", "dev", "up0", "nodad")
    sh("ip", "-n", h, "link", "set", "up0", "up")
    sh("ip", "-n", h, "link", "set", "up1", "up")


def route_localnet(t: Topology, net: Network) -> None:
    t.host.run("sysctl", "-w", f"net.ipv4.conf.{net.bridge_name}.route_localnet=1")


def bridge_index(t: Topology, net: Network) -> int:
    return netprobe.link(t.host.name, net.bridge_name)[0]


def attack(t: Topology, letter: str, net: Network) -> None:
    """Everything from container LETTER at every address of H."""
    host = netprobe.addresses(t.host.name)
    netprobe.probe(t.containers[letter], netprobe.targets(host),
                   gateway_mac=netprobe.link(t.host.name, net.bridge_name)[1])


def is_resolver(arrival: netprobe.Arrival, net: Network) -> bool:
    return (arrival.protocol, arrival.destination, arrival.port) == ("udp", net.gateway, 53)


def two_networks(t: Topology) -> tuple[Network, Network]:
    with_uplink(t)
    internal = t.network(1, internal=True, letters="ab")
    normal = t.network(2, letters="cd")
    for net in (internal, normal):
        route_localnet(t, net)
        firewall.setup_network(net, netns=t.host.name)
    netprobe.wait_no_tentative(t.host.name, *t.containers.values())
    return internal, normal


def test_internal_network_reaches_no_host_address_but_its_resolver(topo: Topology) -> None:
    internal, normal = two_networks(topo)
    with netprobe.UdpServer(topo.host.name, internal.gateway, 53) as resolver, \
            netprobe.Sniffer(topo.host.name) as sniffer:
        attack(topo, "a", internal)
        attack(topo, "c", normal)
        arrivals = sniffer.collect()

    from_internal = [a for a in arrivals if a.ifindex == bridge_index(topo, internal)]
    leaked = [a for a in from_internal if not is_resolver(a, internal)]
    assert leaked == [], f"{len(leaked)} packets from the internal network reached the host"
    # the one open door is open: both the ordinary and the crafted datagram got through
    assert len([a for a in from_internal if is_resolver(a, internal)]) >= 2
    assert resolver.received.count(b"tsubo-probe") >= 2

    # the probes do reach the host from a normal network (the sniffer and probes work):
    # the uplink over IPv4 and IPv6, the other network's gateway, broadcast, multicast
    from_normal = {(a.protocol, a.destination, a.port) for a in arrivals
                   if a.ifindex == bridge_index(topo, normal)}
    for expected in [(protocol, UPLINK_V4, port) for protocol, port in
                     (("icmp", 0), ("tcp", 22), ("udp", 5555))] + [
            ("icmp", UPLINK_V6, 0), ("udp", UPLINK_V6, 5555), ("udp", internal.gateway, 53),
            ("udp", "255.255.255.255", 5555), ("icmp", "224.0.0.1", 0)]:
        assert expected in from_normal, expected
    # but never 127.0.0.0/8, even with route_localnet on the bridge: the host's own
    # (the table's ``localhost`` chain; published ports on 127.0.0.1 rely on it)
    assert [a for a in from_normal if a[1].startswith("127.")] == []
    assert any(a[1].startswith("fe80:") for a in from_normal)
    assert any(a[1].startswith("ff02:") for a in from_normal)

    # inside the network all is well; across networks nothing passes
    assert topo.ping("a", "10.231.1.3")
    assert not topo.ping("a", "10.231.2.2")


def test_resolver_rule_needs_a_socket_bound_to_the_gateway(topo: Topology) -> None:
    """A host resolver on 0.0.0.0:53 (dnsmasq's default) would answer, and relay, for an
    internal network whose own listener is not there: it gets nothing."""
    internal, _ = two_networks(topo)
    gateway_mac = netprobe.link(topo.host.name, internal.bridge_name)[1]
    with netprobe.UdpServer(topo.host.name, "0.0.0.0", 53) as wildcard:
        with netprobe.Sniffer(topo.host.name) as sniffer:
            netprobe.probe(topo.containers["a"], [internal.gateway], gateway_mac=gateway_mac,
                           tcp_ports=[53], udp_ports=[53])
            arrivals = sniffer.collect()
        assert [a for a in arrivals if a.ifindex == bridge_index(topo, internal)] == []
        assert wildcard.received == []
        # the listener of its own appears: it alone is reached (TCP 53 still is not)
        with netprobe.UdpServer(topo.host.name, internal.gateway, 53) as own, \
                netprobe.Sniffer(topo.host.name) as sniffer:
            netprobe.probe(topo.containers["a"], [internal.gateway], gateway_mac=gateway_mac,
                           tcp_ports=[53], udp_ports=[53])
            arrivals = sniffer.collect()
        assert {(a.protocol, a.port) for a in arrivals
                if a.ifindex == bridge_index(topo, internal)} == {("udp", 53)}
        assert own.received.count(b"tsubo-probe") == 2
        assert wildcard.received == []


def test_internal_rules_come_back_with_reload_and_go_with_the_network(topo: Topology) -> None:
    internal, normal = two_networks(topo)
    gateway_mac = netprobe.link(topo.host.name, internal.bridge_name)[1]

    def reached() -> set[tuple[str, str, int]]:
        with netprobe.Sniffer(topo.host.name) as sniffer:
            netprobe.probe(topo.containers["a"], [UPLINK_V4], gateway_mac=gateway_mac,
                           tcp_ports=[22], udp_ports=[5555])
            return {(a.protocol, a.destination, a.port) for a in sniffer.collect()
                    if a.ifindex == bridge_index(topo, internal)}

    assert reached() == set()
    topo.nft("flush", "ruleset")  # a host firewall restart
    assert ("udp", UPLINK_V4, 5555) in reached()  # the rules were what stopped it
    firewall.reload([internal, normal], netns=topo.host.name)
    assert reached() == set()
    host_chain = firewall.host_chain_name(internal)
    assert host_chain in table_text(topo)

    firewall.teardown_network(internal, netns=topo.host.name)
    text = table_text(topo)
    assert host_chain not in text and internal.bridge_name not in text
    assert firewall.owner_comment(normal) in text
    firewall.remove_all(netns=topo.host.name)
    assert nftables.list_table(netns=topo.host.name) is None
