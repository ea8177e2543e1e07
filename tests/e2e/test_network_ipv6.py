"""IPv6 dual-stack networks with real traffic, inside a throwaway "host" netns.

The setup is test_network_ports.py's: forwarding on in the host namespace only, and a
"remote" namespace linked by a veth (``fd99::2`` there, ``fd99::1`` on the host; and the
IPv4 pair ``10.251.0.0/24``), playing another machine: published ports are reached from
it, and masquerade is seen by it. Every address belongs to a namespace the test made.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.e2e.test_engine_network import net_engine  # noqa: F401 (a fixture)
from tests.e2e.test_network_ports import (  # noqa: F401 (ports: a fixture)
    REMOTE6,
    REMOTE_HOST6,
    REMOTE_HOST_ADDRESS,
    Ports,
    fetch,
    ports,
)
from tsubo.kernel.iproute import InNetns

REMOTE_HOST4 = REMOTE_HOST_ADDRESS
SUBNET6 = "fd00:10::/64"


class V6(Ports):
    """:class:`Ports` on the dual-stack network ``v6``."""

    def serve(self, name: str, *flags: str, network: str = "v6") -> str:
        return super().serve(name, *flags, network=network)

    def sleeper(self, name: str, *flags: str, network: str = "v6") -> None:
        self.run("run", "-d", "--name", name, "--network", network, *flags,
                 "--rootfs", str(self.rootfs), "sleep", "300")

    def ping6(self, name: str, address: str) -> bool:
        proc = self.run("exec", name, "ping", "-6", "-c", "1", "-W", "2", address,
                        check=False)
        return proc.returncode == 0

    def address6(self, name: str, network: str = "v6") -> str:
        info = json.loads(self.run("network", "inspect", network).stdout)[0]
        for container in info["Containers"].values():
            if container["Name"] == name:
                return str(container["IPv6Address"].split("/")[0])
        raise AssertionError(f"{name} not on network {network}")


@pytest.fixture
def v6(ports: Ports) -> V6:  # noqa: F811
    """The ``ports`` setup (host netns with forwarding on, a "remote machine" namespace
    with IPv4 and IPv6 on its link) and a dual-stack network ``v6``."""
    engine = V6(ports.netns, ports.root, ports.rootfs)
    engine.remote = ports.remote
    engine.run("network", "create", "v6", "--ipv6", "--subnet", SUBNET6,
               "--subnet", "10.89.6.0/24")
    return engine


def test_dual_stack_network_addresses_routes_and_ping6(v6: V6) -> None:
    info = json.loads(v6.run("network", "inspect", "v6").stdout)[0]
    assert info["EnableIPv6"] is True
    assert info["IPAM"]["Config"] == [{"Subnet": "10.89.6.0/24", "Gateway": "10.89.6.1"},
                                      {"Subnet": SUBNET6, "Gateway": "fd00:10::1"}]
    assert "fd00:10" not in v6.run("network", "ls").stdout  # ls is unchanged
    v6.sleeper("c1")
    v6.sleeper("c2")
    v6.sleeper("c3", "--ip6", "fd00:10::99", "--ip", "10.89.6.99")
    assert [v6.address6(name) for name in ("c1", "c2", "c3")] == \
        ["fd00:10::2", "fd00:10::3", "fd00:10::99"]
    # the address is usable at once (nodad: never "tentative"), the default route is ours
    addresses = v6.host("ip", "netns", "exec", "c1", "ip", "-6", "addr", "show", "eth0").stdout
    assert "fd00:10::2/64" in addresses and "tentative" not in addresses
    routes = v6.host("ip", "netns", "exec", "c1", "ip", "-6", "route").stdout
    assert "default via fd00:10::1 dev eth0" in routes
    assert v6.ping6("c1", "fd00:10::3")
    assert v6.ping6("c3", "fd00:10::2")
    settings = json.loads(v6.run("inspect", "c3").stdout)[0]["NetworkSettings"]["Networks"]
    assert {key: settings["v6"][key] for key in (
        "IPAddress", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway")} \
        == {"IPAddress": "10.89.6.99", "Gateway": "10.89.6.1",
            "GlobalIPv6Address": "fd00:10::99", "GlobalIPv6PrefixLen": 64,
            "IPv6Gateway": "fd00:10::1"}
    assert v6.host("busybox", "ping", "-6", "-c", "1", "-W", "2", "fd00:10::99"
                   ).returncode == 0
    # the lease goes with the container and is handed out again
    v6.run("rm", "-f", "c2")
    v6.sleeper("c4")
    assert v6.address6("c4") == "fd00:10::3"


def test_ip6_errors_and_bad_networks_leave_nothing(v6: V6) -> None:
    v6.sleeper("c1", "--ip6", "fd00:10::5")
    v6.run("network", "create", "four", "--subnet", "10.89.7.0/24")
    cases = [
        (["--ip6", "fd00:11::5"], "address is outside subnet fd00:10::/64"),
        (["--ip6", "fd00:10::5"], "already in use on network v6 by container"),
        (["--ip6", "fd00:10::1"], "address is the gateway of network v6"),
        (["--ip6", "10.0.0.1"], "invalid IPv6 address: 10.0.0.1"),
        (["--ip", "fd00:10::7"], "invalid IPv4 address: fd00:10::7"),
    ]
    for flags, message in cases:
        proc = v6.run("run", "-d", "--network", "v6", *flags, "--rootfs", str(v6.rootfs),
                      "sleep", "300", check=False)
        assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
    proc = v6.run("run", "-d", "--network", "four", "--ip6", "fd00:10::8", "--rootfs",
                  str(v6.rootfs), "sleep", "300", check=False)
    assert proc.returncode != 0 and "has no IPv6 subnet" in proc.stderr
    assert v6.run("ps", "-q").stdout.split() == [v6.run("ps", "-q", "-f", "name=c1"
                                                       ).stdout.strip()]
    bad = [
        (["--subnet", "fd00:20::/64"], "add --ipv6"),
        (["--ipv6", "--subnet", "fd00:20::/32"], "must be /48 to /126"),
        (["--ipv6", "--subnet", "fd00:20::/127"], "must be /48 to /126"),
        (["--ipv6", "--subnet", "fd00:20::1/64"], "host bits are set"),
        (["--ipv6", "--subnet", "fd00:10:0:0:8000::/80"], "overlaps subnet fd00:10::/64"),
        (["--ipv6", "--subnet", "fd00:20::/64", "--gateway", "fd00:21::1"],
         "gateway is outside subnet fd00:20::/64"),
        (["--ipv6", "--subnet", "fe80::/64"], "link-local"),
        (["--ipv6", "--subnet", "fd00:20::/64", "--subnet", "fd00:21::/64"],
         "more than one IPv6 --subnet"),
    ]
    for flags, message in bad:
        proc = v6.run("network", "create", "bad", *flags, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
    assert "bad" not in v6.run("network", "ls", "-q").stdout.split()
    assert "bad" not in v6.host("ip", "-o", "link").stdout


def test_ula_pool_and_isolation_between_ipv6_networks(v6: V6) -> None:
    v6.run("network", "create", "other", "--ipv6")
    info = json.loads(v6.run("network", "inspect", "other").stdout)[0]
    subnet6 = info["IPAM"]["Config"][1]["Subnet"]
    assert subnet6.startswith("fd") and subnet6.endswith("::/64"), subnet6
    v6.sleeper("a1")
    v6.sleeper("b1", network="other")
    v6.sleeper("b2", network="other")
    b1, b2 = v6.address6("b1", "other"), v6.address6("b2", "other")
    assert v6.ping6("b2", b1) and v6.ping6("b1", b2)  # same network
    assert not v6.ping6("a1", b1)  # isolated, as for IPv4
    assert not v6.ping6("b1", v6.address6("a1"))
    # a second network, connected live with --ip6: reached there (no second default route)
    v6.run("network", "connect", "--ip6", f"{b1.rpartition(':')[0]}:abc", "other", "a1")
    assert v6.address6("a1", "other").endswith(":abc")
    assert v6.ping6("a1", b1)
    routes = v6.host("ip", "netns", "exec", "a1", "ip", "-6", "route").stdout
    assert routes.count("default") == 1, routes
    assert "ip6 saddr" in v6.host("nft", "list", "table", "inet", "tsubo").stdout


def test_aaaa_answers_for_names_and_aliases(v6: V6) -> None:
    v6.sleeper("web", "--network-alias", "www")
    v6.sleeper("client")
    for name in ("web", "www", "WEB"):
        out = v6.run("exec", "client", "nslookup", "-type=AAAA", name, check=False).stdout
        assert "fd00:10::2" in out, out
    out = v6.run("exec", "client", "nslookup", "-type=A", "web", check=False).stdout
    assert "10.89.6.2" in out and "fd00:10" not in out, out
    assert v6.run("exec", "client", "ping", "-6", "-c", "1", "-W", "2", "web",
                  check=False).returncode == 0


def test_published_ports_on_both_families_and_ipv6_only(v6: V6) -> None:
    v6.serve("web", "-p", "8080:80")
    v6.serve("six", "-p", "[::]:8081:80")
    # Docker's default on a dual-stack network: both families, one port
    assert fetch(v6.remote, REMOTE_HOST6, 8080) == "web"
    assert fetch(v6.remote, REMOTE_HOST4, 8080) == "web"
    assert fetch(v6.netns, REMOTE_HOST6, 8080) == "web"  # the host itself (output hook)
    assert fetch(v6.remote, REMOTE_HOST6, 8081) == "six"
    assert fetch(v6.remote, REMOTE_HOST4, 8081, timeout=1) is None
    assert v6.run("port", "web").stdout == "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    ps = v6.run("ps", "--format", "{{.Names}} {{.Ports}}").stdout
    assert "six [::]:8081->80/tcp" in ps
    assert "web 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp" in ps
    bindings = json.loads(v6.run("inspect", "six").stdout)[0]["NetworkSettings"]["Ports"]
    assert bindings == {"80/tcp": [{"HostIp": "::", "HostPort": "8081"}]}
    # hairpin over IPv6: a container reaching a neighbour's port through a host address
    v6.sleeper("client")
    hairpin = v6.run("exec", "client", "nc", "-w", "2", REMOTE_HOST6, "8081", check=False)
    assert hairpin.stdout.strip() == "six", hairpin
    # a port of the same family is taken; the other family is free
    taken = v6.run("run", "-d", "--network", "v6", "-p", "[::]:8080:80", "--rootfs",
                   str(v6.rootfs), "true", check=False)
    assert taken.returncode == 125 and "[::]:8080/tcp is already in use by container web" \
        in taken.stderr, taken.stderr
    v6.serve("four", "-p", "0.0.0.0:8081:80")
    assert fetch(v6.remote, REMOTE_HOST4, 8081) == "four"
    assert fetch(v6.remote, REMOTE_HOST6, 8081) == "six"
    refused = v6.run("run", "-d", "--network", "v6", "-p", "[::1]:8090:80", "--rootfs",
                     str(v6.rootfs), "true", check=False)
    assert refused.returncode == 125 and "IPv6 loopback" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_outbound_ipv6_is_masqueraded(v6: V6) -> None:
    peers: list[str] = []
    with InNetns(v6.remote):
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with server:
        server.bind((REMOTE6, 9000))
        server.listen(1)
        server.settimeout(10)

        def accept() -> None:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            with conn:
                peers.append(peer[0])
                conn.sendall(b"hello\n")

        thread = threading.Thread(target=accept)
        thread.start()
        v6.sleeper("c1")
        out = v6.run("exec", "c1", "nc", "-w", "2", REMOTE6, "9000", check=False).stdout
        thread.join(12)
    assert out.strip() == "hello"
    assert peers == [REMOTE_HOST6]  # the host's address on that link, not fd00:10::2
    table = v6.host("nft", "list", "table", "inet", "tsubo").stdout
    assert 'ip6 saddr fd00:10::/64 oifname != "' in table and "masquerade" in table


def test_healing_after_a_flush_restores_ipv6(v6: V6) -> None:
    v6.serve("web", "-p", "8080:80")
    assert fetch(v6.remote, REMOTE_HOST6, 8080) == "web"
    v6.host("nft", "flush", "ruleset")
    deadline = time.monotonic() + 3
    while "tsubo container" not in v6.host("nft", "list", "table", "inet", "tsubo").stdout \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fetch(v6.remote, REMOTE_HOST6, 8080) == "web"
    table = v6.host("nft", "list", "table", "inet", "tsubo").stdout
    assert "ip6 saddr fd00:10::/64" in table
    assert "fd00:10::2" in v6.host("nft", "list", "map", "inet", "tsubo", "ports6_addr").stdout
    v6.sleeper("c2")
    assert v6.ping6("c2", "fd00:10::2")
    # ip6tables' FORWARD policy set to drop after the fact: the monitor puts its accept
    # rule in that chain too (the throwaway namespace's own ip6 filter table)
    assert v6.host("ip6tables", "-P", "FORWARD", "DROP").returncode == 0
    deadline = time.monotonic() + 3
    while "tsubo" not in v6.host("ip6tables", "-S", "FORWARD").stdout \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fetch(v6.remote, REMOTE_HOST6, 8080) == "web"
    assert "-P FORWARD DROP" in v6.host("ip6tables", "-S", "FORWARD").stdout
