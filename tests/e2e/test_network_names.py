"""Names and resolver options on a network (issue 10, item 8): ``--network-alias``,
``--hostname``/``--domainname`` answered by the network's resolver, ``--add-host`` (with
``host-gateway``), ``--dns`` (the asking container's own upstream), ``--dns-search``,
``--dns-option``; the same options without a network; DNS over TCP, answered and relayed.

Everything runs inside the throwaway "host" namespace of ``test_network_internal``'s
``engine`` fixture, with two fake upstream resolvers of the test's own there: the engine's
(``TSUBO_DNS_UPSTREAM``) and one a container names with ``--dns``.
"""

from __future__ import annotations

import socket
import struct
import threading

from tests import netprobe
from tests.e2e import test_engine_network, test_network_internal
from tests.e2e.engine_fixtures import one_line
from tests.e2e.test_engine_network import NetEngine
from tests.e2e.test_network_internal import (
    OUTSIDE_ANSWER,
    UPSTREAM,
    asked_upstream,
    dns_query,
    fake_upstream_reply,
    nslookup,
)
from tsubo.kernel.iproute import InNetns
from tsubo.network import dns

# the fixtures this module uses (imported as values so they register here)
net_engine = test_engine_network.net_engine
engine = test_network_internal.engine

OWN_UPSTREAM = "10.89.251.54"
EXIT_ENGINE = 125


def _cat(engine: NetEngine, container: str, path: str) -> str:
    return engine.run("exec", container, "cat", path).stdout


def test_aliases_hostnames_extra_hosts_and_own_upstreams(engine: NetEngine) -> None:
    engine.host("ip", "addr", "add", f"{OWN_UPSTREAM}/24", "dev", "up1")
    with netprobe.UdpServer(engine.netns, UPSTREAM, 53, fake_upstream_reply) as shared, \
            netprobe.UdpServer(engine.netns, OWN_UPSTREAM, 53, fake_upstream_reply) as own:
        engine.run("network", "create", "names", "--subnet", "10.89.22.0/24")
        engine.run("run", "-d", "--name", "web", "--network", "names", "--ip", "10.89.22.10",
                   "--network-alias", "www", "--network-alias", "api",
                   "--hostname", "webhost", "--domainname", "corp.example",
                   "--rootfs", str(engine.rootfs), "sleep", "300")
        engine.run("run", "-d", "--name", "client", "--network", "names",
                   "--add-host", "db.local:10.1.2.3", "--add-host", "gw:host-gateway",
                   "--dns", OWN_UPSTREAM, "--rootfs", str(engine.rootfs), "sleep", "300")
        engine.run("run", "-d", "--name", "tuner", "--network", "names",
                   "--dns-search", "corp.example", "--dns-option", "ndots:2",
                   "--rootfs", str(engine.rootfs), "sleep", "300")

        for name in ("web", "www", "API", "webhost", "webhost.corp.example"):
            assert "10.89.22.10" in nslookup(engine, "client", name), name

        hosts = _cat(engine, "client", "/etc/hosts")
        assert "10.1.2.3\tdb.local\n" in hosts and "10.89.22.1\tgw\n" in hosts
        assert _cat(engine, "client", "/etc/resolv.conf").splitlines() == [
            "nameserver 10.89.22.1", "options ndots:0"]  # its --dns is asked upstream
        resolv = _cat(engine, "tuner", "/etc/resolv.conf").splitlines()
        assert resolv == ["nameserver 10.89.22.1", "options ndots:0", "search corp.example",
                          "options ndots:2"]
        assert _cat(engine, "web", "/proc/sys/kernel/domainname").strip() == "corp.example"
        assert "webhost.corp.example\twebhost" in _cat(engine, "web", "/etc/hosts")

        # an outside name: the client's own --dns is asked, not the engine's upstream
        assert OUTSIDE_ANSWER in nslookup(engine, "client", "outside.example")
        assert asked_upstream(own) == {"outside.example"}
        assert asked_upstream(shared) == set()
        # ... and a container without --dns asks the engine's
        assert OUTSIDE_ANSWER in nslookup(engine, "web", "elsewhere.example")
        assert asked_upstream(shared) == {"elsewhere.example"}
        # aliases and hostnames are never relayed from another network either
        assert asked_upstream(own) | asked_upstream(shared) == {"outside.example",
                                                                  "elsewhere.example"}
        engine.run("rm", "-f", "web", "client", "tuner")
        engine.run("network", "rm", "names")


def test_resolver_options_without_a_network(engine: NetEngine) -> None:
    engine.run("run", "-d", "--name", "loner", "--network", "none", "--dns", "10.9.9.9",
               "--dns", "fd00::53", "--dns-search", "a.example", "--dns-search", "b.example",
               "--dns-option", "ndots:3", "--add-host", "h:10.0.0.7",
               "--rootfs", str(engine.rootfs), "sleep", "300")
    resolv = _cat(engine, "loner", "/etc/resolv.conf")
    servers = [line for line in resolv.splitlines() if line.startswith("nameserver")]
    assert servers == ["nameserver 10.9.9.9", "nameserver fd00::53"]  # the host's replaced
    assert "search a.example b.example\n" in resolv and "options ndots:3\n" in resolv
    assert "10.0.0.7\th\n" in _cat(engine, "loner", "/etc/hosts")
    engine.run("rm", "-f", "loner")


def test_bad_names_and_resolver_options_are_one_line(engine: NetEngine) -> None:
    rootfs = str(engine.rootfs)
    cases = {
        ("--add-host", "nocolon"): "invalid IP address",
        ("--add-host", "x:999.1.1.1"): "invalid IP address",
        ("--add-host", "bad_host!:1.2.3.4"): "invalid hostname",
        ("--add-host", "gw:host-gateway"): "needs one (--network NAME)",
        ("--dns", "resolver.example"): "not an IP address",
        ("--dns-search", "bad domain"): "not a domain name",
        ("--dns-option", ""): "expected one resolv.conf option",
        ("--network-alias", "web"): "need a network",
        ("--domainname", "-bad-"): "not a domain name",
    }
    for flags, message in cases.items():
        proc = engine.run("run", "--rm", *flags, "--rootfs", rootfs, "true", check=False)
        assert proc.returncode == EXIT_ENGINE, (flags, proc.stderr)
        assert message in one_line(proc.stderr), (flags, proc.stderr)
    assert engine.run("ps", "-aq").stdout == ""


def _big_answer(query: bytes) -> bytes:
    """An answer with 60 A records (~1 KB: more than a classic 512-byte datagram)."""
    parsed = dns.question(query)
    assert parsed is not None
    end = parsed[3]
    records = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 89, 7, n])
                       for n in range(60))
    return query[:2] + struct.pack("!HHHHH", 0x8180, 1, 60, 0, 0) + query[12:end] + records


class TcpDnsServer:
    """A DNS-over-TCP upstream in the test's namespace: answers every query with
    :func:`_big_answer` and records the names it was asked."""

    def __init__(self, netns: str, address: str) -> None:
        self.asked: list[str] = []
        with InNetns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 53))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                query = dns.read_tcp_message(conn) or b""
                parsed = dns.question(query)
                if parsed is not None:
                    self.asked.append(parsed[1])
                    answer = _big_answer(query)
                    conn.sendall(dns.tcp_frame(answer))

    def __enter__(self) -> TcpDnsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.sock.close()


def _tcp_query(netns: str, server: str, name: str) -> bytes:
    """One DNS query over TCP from inside *netns*; the answer (b"" if none)."""
    answers: list[bytes] = []

    def ask() -> None:
        with socket.create_connection((server, 53), timeout=5) as conn:
            conn.sendall(dns.tcp_frame(dns_query(name)))
            answers.append(dns.read_tcp_message(conn) or b"")

    netprobe.in_netns(netns, ask)
    return answers[0] if answers else b""


def test_dns_over_tcp_answers_and_relays_big_answers(engine: NetEngine) -> None:
    engine.host("ip", "addr", "add", f"{OWN_UPSTREAM}/24", "dev", "up1")
    with TcpDnsServer(engine.netns, OWN_UPSTREAM) as upstream:
        engine.run("network", "create", "tcpdns", "--subnet", "10.89.23.0/24")
        engine.run("run", "-d", "--name", "srv", "--network", "tcpdns", "--ip", "10.89.23.10",
                   "--network-alias", "www", "--rootfs", str(engine.rootfs), "sleep", "300")
        engine.run("run", "-d", "--name", "asker", "--network", "tcpdns", "--dns",
                   OWN_UPSTREAM, "--rootfs", str(engine.rootfs), "sleep", "300")
        # a container's name, answered by the resolver itself
        local = _tcp_query("asker", "10.89.23.1", "www")
        assert local.endswith(bytes([10, 89, 23, 10])) and dns.rcode(local) == 0
        # an outside name whose answer needs TCP: relayed to the container's upstream
        big = _tcp_query("asker", "10.89.23.1", "big.example")
        assert len(big) > 512 and struct.unpack("!H", big[6:8])[0] == 60
        assert upstream.asked == ["big.example"]
        engine.run("rm", "-f", "srv", "asker")
        engine.run("network", "rm", "tcpdns")
