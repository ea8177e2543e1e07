"""Names and resolver options on a network (issue 10, item 8): ``--network-alias``,
``--hostname``/``--domainname`` answered by the network's resolver, ``--add-host`` (with
``host-gateway``), ``--dns`` (the asking container's own upstream), ``--dns-search``,
``--dns-option``; and the same options without a network.

Everything runs inside the throwaway "host" namespace of ``test_network_internal``'s
``engine`` fixture, with two fake upstream resolvers of the test's own there: the engine's
(``TSUBO_DNS_UPSTREAM``) and one a container names with ``--dns``.
"""

from __future__ import annotations

from tests import netprobe
from tests.e2e import test_engine_network, test_network_internal
from tests.e2e.engine_fixtures import one_line
from tests.e2e.test_engine_network import NetEngine
from tests.e2e.test_network_internal import (
    OUTSIDE_ANSWER,
    UPSTREAM,
    asked_upstream,
    fake_upstream_reply,
    nslookup,
)

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
