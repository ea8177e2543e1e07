"""Published ports with real traffic: ``tsubo run -p`` inside a throwaway "host" netns.

Servers run in the containers (busybox ``nc -ll -e echo NAME``: every connection is
answered with the container's name) or, for UDP, in the container's pinned network
namespace (the container's network, whatever runs in it). Clients are sockets opened in
the test's own namespaces: the host namespace (the output hook), a "remote" namespace
linked to it by a veth (the prerouting hook: another machine), and other containers
(hairpin, other networks). Every address belongs to a namespace the test made.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from tests import netprobe
from tests.e2e.test_engine_network import (  # noqa: F401 (net_engine: a fixture)
    TSUBO,
    NetEngine,
    crash,
    net_engine,
)
from tsubo.kernel.iproute import InNetns

REMOTE_HOST_ADDRESS = "10.251.0.1"  # the host's end of the link to the "remote" namespace
REMOTE_ADDRESS = "10.251.0.2"
REMOTE_OTHER = "10.251.0.3"  # a second source address of the remote machine
UPLINK = "10.250.0.1"  # another address of the host, on the link to the remote machine
REMOTE_HOST6 = "fd99::1"  # IPv6 on that link (test_network_ipv6.py)
REMOTE6 = "fd99::2"


def fetch(netns: str, address: str, port: int, *, source: str = "",
          timeout: float = 3.0) -> str | None:
    """Connect from *netns* to address:port (IPv4 or IPv6) and read what the server says;
    None when the connection fails or says nothing."""
    result: list[str | None] = [None]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def work() -> None:
        with InNetns(netns):
            sock = socket.socket(family, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(timeout)
            if source:
                sock.bind((source, 0))
            try:
                sock.connect((address, port))
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                result[0] = data.decode().strip() or None
            except OSError:
                result[0] = None

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout + 5)
    return result[0]


def udp_ask(netns: str, address: str, port: int, payload: bytes) -> bytes | None:
    result: list[bytes | None] = [None]

    def work() -> None:
        with InNetns(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(2)
            try:
                sock.sendto(payload, (address, port))
                result[0] = sock.recvfrom(4096)[0]
            except OSError:
                result[0] = None

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    return result[0]


class Ports(NetEngine):
    remote: str = ""  # the "remote machine" namespace
    uplink: str = ""  # the host's end of the link to it

    def serve(self, name: str, *flags: str, network: str = "pub") -> str:
        """A container answering every TCP connection on port 80 with its name."""
        out = self.run("run", "-d", "--name", name, "--network", network, *flags,
                       "--rootfs", str(self.rootfs), "nc", "-ll", "-p", "80", "-e", "echo",
                       name).stdout.strip()
        wait_listening(name, 80)
        return out

    def address(self, name: str) -> str:
        info = json.loads(self.run("network", "inspect", "pub").stdout)
        record = info[0] if isinstance(info, list) else info
        for container in record["Containers"].values():
            if container["Name"] == name:
                return str(container["IPv4Address"].split("/")[0])
        raise AssertionError(f"{name} not on network pub")

    def nft_table(self) -> str:
        return self.host("nft", "list", "table", "inet", "tsubo").stdout


def wait_listening(netns: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/tcp",
                              "/proc/net/tcp6"], capture_output=True, text=True).stdout
        if any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
               for line in out.splitlines()[1:]):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port} in {netns}")


@pytest.fixture
def ports(net_engine: NetEngine) -> Iterator[Ports]:  # noqa: F811
    """The engine in its throwaway host netns, with a network ``pub`` (10.89.1.0/24), a
    dummy uplink address, forwarding on (in that netns only) and a "remote" namespace
    linked by a veth (10.251.0.2 and .3 there, 10.251.0.1 on the host; and IPv6,
    ``fd99::2`` there, ``fd99::1`` on the host)."""
    engine = Ports(net_engine.netns, net_engine.root, net_engine.rootfs)
    remote = f"tsubo-t-r{secrets.token_hex(3)}"
    host_end = f"tr{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", remote], check=True)
    try:
        engine.remote = remote
        engine.uplink = host_end
        for argv in (
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
             "netns", remote],
            ["ip", "addr", "add", f"{REMOTE_HOST_ADDRESS}/24", "dev", host_end],
            ["ip", "addr", "add", f"{REMOTE_HOST6}/64", "dev", host_end, "nodad"],
            ["ip", "addr", "add", f"{UPLINK}/24", "dev", host_end],
            ["ip", "link", "set", host_end, "up"],
        ):
            assert engine.host(*argv).returncode == 0, argv
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{REMOTE_ADDRESS}/24", "dev", "eth0"],
            ["ip", "addr", "add", f"{REMOTE_OTHER}/24", "dev", "eth0"],
            ["ip", "addr", "add", f"{REMOTE6}/64", "dev", "eth0", "nodad"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", REMOTE_HOST_ADDRESS],
            ["ip", "-6", "route", "add", "default", "via", REMOTE_HOST6],
        ):
            subprocess.run(["ip", "netns", "exec", remote, *argv], check=True)
        engine.run("network", "create", "pub", "--subnet", "10.89.1.0/24")
        yield engine
    finally:
        subprocess.run(["ip", "netns", "delete", remote], check=False)


def test_published_port_from_the_host_another_machine_and_after_stop(ports: Ports) -> None:
    ports.serve("web", "-p", "8080:80")
    # the host itself (output hook), to its own addresses: gateway, uplink, localhost
    for address in ("10.89.1.1", UPLINK, "127.0.0.1"):
        assert fetch(ports.netns, address, 8080) == "web", address
    # another machine (prerouting hook), to the host's address on that link
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8080) == "web"
    # what the tools print
    assert "0.0.0.0:8080->80/tcp" in ports.run("ps").stdout
    assert ports.run("port", "web").stdout == "80/tcp -> 0.0.0.0:8080\n"
    assert ports.run("port", "web", "80").stdout == "0.0.0.0:8080\n"
    inspected = json.loads(ports.run("inspect", "web").stdout)[0]
    assert inspected["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert "tcp . 8080 comment \"tsubo container" in ports.nft_table()
    # stopped: the rules and the claim are gone, nothing answers
    ports.run("stop", "-t", "0", "web")
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8080, timeout=1) is None
    assert fetch(ports.netns, UPLINK, 8080, timeout=1) is None
    table = ports.nft_table()
    assert "tsubo container" not in table and "8080" not in table
    assert ports.run("port", "web").stdout == ""
    # started again: published again
    ports.run("start", "web")
    wait_listening("web", 80)
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8080) == "web"


def test_localhost_publish_is_host_only(ports: Ports) -> None:
    ports.serve("local", "-p", "127.0.0.1:8081:80")
    ports.serve("wide", "-p", "8082:80")
    ports.run("run", "-d", "--name", "neighbour", "--network", "pub",
              "--rootfs", str(ports.rootfs), "sleep", "300")
    assert fetch(ports.netns, "127.0.0.1", 8081) == "local"
    # not on the host's other addresses, not from another machine
    assert fetch(ports.netns, UPLINK, 8081, timeout=1) is None
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8081, timeout=1) is None
    # a neighbour on the bridge (where route_localnet is on) sending frames for 127.0.0.1
    # straight to the gateway's MAC: dropped before NAT; the same frames for the gateway's
    # address and the wide port do arrive (the probe works)
    gateway_mac = _bridge_mac(ports)
    with netprobe.Sniffer("local") as local, netprobe.Sniffer("wide") as wide:
        netprobe.probe("neighbour", ["127.0.0.1"], gateway_mac=gateway_mac,
                       tcp_ports=[8081], udp_ports=[])
        netprobe.probe("neighbour", ["10.89.1.1"], gateway_mac=gateway_mac,
                       tcp_ports=[8082], udp_ports=[])
        assert [a for a in local.collect() if a.protocol == "tcp" and a.port == 80] == []
        assert [a for a in wide.collect() if a.protocol == "tcp" and a.port == 80] != []
    route_localnet = ports.host("sysctl", "-n", f"net.ipv4.conf.{_bridge(ports)}."
                                "route_localnet").stdout.strip()
    assert route_localnet == "1"
    assert ports.host("sysctl", "-n", f"net.ipv4.conf.{ports.uplink}.route_localnet"
                      ).stdout.strip() == "0"


def _bridge(ports: Ports) -> str:
    info = json.loads(ports.run("network", "inspect", "pub").stdout)
    record = info[0] if isinstance(info, list) else info
    return str(record["Options"]["bridge"])


def _bridge_mac(ports: Ports) -> str:
    out = ports.host("ip", "-j", "link", "show", _bridge(ports)).stdout
    return str(json.loads(out)[0]["address"])


def test_hairpin_and_other_networks_reach_a_published_port(ports: Ports) -> None:
    ports.serve("web", "-p", "8083:80")
    ports.run("run", "-d", "--name", "same", "--network", "pub",
              "--rootfs", str(ports.rootfs), "sleep", "300")
    ports.run("network", "create", "other", "--subnet", "10.89.2.0/24")
    ports.run("run", "-d", "--name", "far", "--network", "other",
              "--rootfs", str(ports.rootfs), "sleep", "300")
    # itself, a neighbour, a container of another network: through host addresses
    for client in ("web", "same", "far"):
        for address in ("10.89.1.1", UPLINK):
            assert fetch(client, address, 8083) == "web", (client, address)
    # networks stay isolated otherwise: the far container cannot reach web's own port
    assert fetch("far", ports.address("web"), 80, timeout=1) is None


def test_udp_and_sctp_and_ranges(ports: Ports) -> None:
    ports.run("run", "-d", "--name", "dns", "--network", "pub", "-p", "5353:53/udp",
              "-p", "9000-9001:90-91", "-p", "7000:70/sctp",
              "--rootfs", str(ports.rootfs), "sleep", "300")
    address = ports.address("dns")
    with netprobe.UdpServer("dns", address, 53, reply=lambda data: b"re:" + data) as server:
        assert udp_ask(ports.remote, REMOTE_HOST_ADDRESS, 5353, b"q1") == b"re:q1"
        assert udp_ask(ports.netns, UPLINK, 5353, b"q2") == b"re:q2"
        assert server.received == [b"q1", b"q2"]
    assert ports.run("port", "dns").stdout.splitlines() == [
        "70/sctp -> 0.0.0.0:7000", "90/tcp -> 0.0.0.0:9000", "91/tcp -> 0.0.0.0:9001",
        "53/udp -> 0.0.0.0:5353"]
    assert "0.0.0.0:9000-9001->90-91/tcp" in ports.run("ps").stdout
    # two elements a port, its key to the container's address and to its port
    to_address = ports.host("nft", "list", "map", "inet", "tsubo", "ports4_addr").stdout
    to_port = ports.host("nft", "list", "map", "inet", "tsubo", "ports4_port").stdout
    element = r'{} \. {} comment "tsubo container [0-9a-f]{{12}} dns" : {}\b'
    assert re.search(element.format("sctp", 7000, re.escape(address)), to_address)
    assert re.search(element.format("sctp", 7000, 70), to_port)
    assert re.search(element.format("udp", 5353, re.escape(address)), to_address)
    assert re.search(element.format("udp", 5353, 53), to_port)


def test_publish_all_takes_ephemeral_ports_from_the_local_range(ports: Ports) -> None:
    ports.serve("any", "-P", "--expose", "80", "--expose", "81-82/udp", "-p", "0:83")
    low, high = (int(w) for w in ports.host(
        "cat", "/proc/sys/net/ipv4/ip_local_port_range").stdout.split())
    lines = ports.run("port", "any").stdout.splitlines()
    assert sorted(line.split(" -> ")[0] for line in lines) == [
        "80/tcp", "81/udp", "82/udp", "83/tcp"]
    chosen = {line.split(" -> ")[0]: int(line.rsplit(":", 1)[1]) for line in lines}
    assert all(low <= port <= high for port in chosen.values())
    assert chosen["80/tcp"] != chosen["83/tcp"] and chosen["81/udp"] != chosen["82/udp"]
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, chosen["80/tcp"]) == "any"


def test_conflicts_name_the_holder_and_leave_nothing(ports: Ports) -> None:
    ports.serve("first", "-p", "8090:80")
    before = ports.nft_table()
    taken = ports.run("run", "-d", "--name", "second", "--network", "pub", "-p", "8090:80",
                      "--rootfs", str(ports.rootfs), "true", check=False)
    assert taken.returncode == 125
    assert "8090/tcp is already in use by container first" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
    # refused before anything was made: no container, no claim, no rule
    assert ports.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["first"]
    assert ports.nft_table() == before
    # a host process listening on the port
    with InNetns(ports.netns):
        listener = socket.socket()
    with listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 8091))
        listener.listen()
        held = ports.run("run", "-d", "--name", "third", "--network", "pub",
                         "-p", "8091:80", "--rootfs", str(ports.rootfs), "true", check=False)
        assert held.returncode == 125
        assert "8091/tcp is already in use by host process" in held.stderr
        # another address, another protocol: no conflict
        ports.serve("fourth", "-p", f"{UPLINK}:8092:80", "-p", "8091:81/udp")
    assert fetch(ports.netns, UPLINK, 8092) == "fourth"
    assert fetch(ports.netns, "10.89.1.1", 8092, timeout=1) is None


def test_concurrent_starts_for_one_port_one_wins(ports: Ports) -> None:
    for round_ in range(3):
        names = [f"race{round_}a", f"race{round_}b"]
        procs = [subprocess.Popen(
            [*ports.prefix(), str(TSUBO), "--root", str(ports.root), "run", "-d",
             "--name", name, "--network", "pub", "-p", f"{8100 + round_}:80",
             "--rootfs", str(ports.rootfs), "sleep", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
        results = [(*proc.communicate(timeout=60), proc.returncode) for proc in procs]
        codes = sorted(code for _, _, code in results)
        assert codes == [0, 125], results
        loser = next(err for _, err, code in results if code)
        assert f"{8100 + round_}/tcp is already in use by container race{round_}" in loser
        to_address = ports.host("nft", "list", "map", "inet", "tsubo", "ports4_addr").stdout
        assert to_address.count(f"tcp . {8100 + round_}") == 1
        assert to_address.count("tsubo container") == round_ + 1
        running = ports.run("ps", "--format", "{{.Names}} {{.Ports}}").stdout
        assert running.count(f"0.0.0.0:{8100 + round_}->80/tcp") == 1


def test_operator_chain_filters_published_traffic_first(ports: Ports) -> None:
    ports.serve("web", "-p", "8095:80")
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_ADDRESS) == "web"
    assert ports.host("nft", "add", "rule", "inet", "tsubo", "operator", "ip", "saddr",
                      REMOTE_ADDRESS, "meta", "l4proto", "tcp", "ct", "original",
                      "proto-dst", "8095", "drop").returncode == 0
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_ADDRESS,
                 timeout=1) is None
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_OTHER) == "web"
    # a host firewall flush: the monitor restores the table, published ports included,
    # within a second (the flush took the operator's rule too: it is the operator's to add
    # again); a reload without a flush keeps the operator's rules
    ports.host("nft", "flush", "ruleset")
    deadline = time.monotonic() + 3
    while "tsubo container" not in ports.nft_table() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_OTHER) == "web"
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_ADDRESS) == "web"
    ports.host("nft", "add", "rule", "inet", "tsubo", "operator", "ip", "saddr",
               REMOTE_ADDRESS, "drop")
    ports.run("network", "reload")
    assert "ip saddr 10.251.0.2 drop" in ports.host(
        "nft", "list", "chain", "inet", "tsubo", "operator").stdout
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8095, source=REMOTE_ADDRESS,
                 timeout=1) is None


def test_publish_without_a_network_is_refused(ports: Ports) -> None:
    for flags in (["-p", "80"], ["--network", "host", "-p", "80"], ["-P"]):
        proc = ports.run("run", "-d", *flags, "--rootfs", str(ports.rootfs), "true",
                         check=False)
        assert proc.returncode == 125
        assert "conflicting options: port publishing" in proc.stderr
    proc = ports.run("run", "-d", "--network", "pub", "-p", "[::1]:80:80",
                     "--rootfs", str(ports.rootfs), "true", check=False)
    assert proc.returncode == 125 and "IPv6 loopback cannot be forwarded" in proc.stderr
    proc = ports.run("run", "-d", "--network", "pub", "-p", "[::]:80:80",
                     "--rootfs", str(ports.rootfs), "true", check=False)
    assert proc.returncode == 125 and "network has no IPv6" in proc.stderr
    assert ports.run("ps", "-aq").stdout == ""



def test_a_failing_nft_transaction_leaves_nothing(ports: Ports) -> None:
    """A map element put there behind tsubo's back makes the container's transaction
    fail (File exists): the start fails with nft's message; the container is taken down,
    its claim, map elements and lease are gone, and the port works for the next one."""
    ports.serve("web", "-p", "8096:80")  # makes the table's skeleton
    ports.run("rm", "-f", "web")
    assert ports.host("nft", "add", "element", "inet", "tsubo", "ports4_addr",
                      "{ tcp . 8097 : 10.89.1.250 }").returncode == 0
    failed = ports.run("run", "-d", "--name", "broken", "--network", "pub", "-p", "8097:80",
                       "--rootfs", str(ports.rootfs), "sleep", "300", check=False)
    assert failed.returncode == 125
    assert "nft" in failed.stderr and "exists" in failed.stderr.lower()
    table = ports.nft_table()
    assert "tsubo container" not in table and "tcp . 8097" in table  # only the planted one
    assert "broken" not in ports.run("ps", "--format", "{{.Names}}").stdout
    assert json.loads(ports.run("network", "inspect", "pub").stdout)[0]["Containers"] == {}
    assert ports.run("port", "broken").stdout == ""
    ports.host("nft", "delete", "element", "inet", "tsubo", "ports4_addr", "{ tcp . 8097 }")
    ports.run("rm", "-f", "broken")
    ports.serve("fixed", "-p", "8097:80")
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8097) == "fixed"


def test_gc_removes_the_ports_of_a_crashed_engine(ports: Ports) -> None:
    """The whole engine SIGKILLed with a container publishing: its chain, map elements and
    claims stay behind (recorded in the ledger), and `system gc` removes exactly them; the
    port is free for the next container."""
    ports.serve("victim", "-p", "8098:80", "-p", "127.0.0.1:8099:81/udp")
    ports.serve("bystander", "-p", "8100:80")
    crash(ports.root, "victim")
    table = ports.nft_table()
    assert "tcp . 8098" in table and "udp . 8099" in table  # left behind by the crash
    ports.run("system", "gc")
    table = ports.nft_table()
    assert "8098" not in table and "8099" not in table
    assert "tcp . 8100" in table  # the bystander keeps its port
    assert ports.run("port", "victim").stdout == ""
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8100) == "bystander"
    ports.serve("heir", "-p", "8098:80")
    assert fetch(ports.remote, REMOTE_HOST_ADDRESS, 8098) == "heir"
