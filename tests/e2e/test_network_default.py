"""Docker's default network: ``tsubo run`` without ``--network`` joins ``bridge``.

The session keeps every other test off it (``$TSUBO_DEFAULT_NETWORK=none``, see
tests/conftest.py); these tests opt back in, with the engine inside a throwaway "host"
network namespace (the ``netns`` fixture, entered with nsenter) that also has an "outside"
namespace linked to it by a veth: 10.252.0.1 on the host's end, 10.252.0.2 outside, and no
route back from outside to the containers' subnet, so only masquerade brings replies home.
Every address reached belongs to a namespace the test made.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_engine_network import (  # noqa: F401 (net_engine: a fixture)
    TSUBO,
    NetEngine,
    net_engine,
)
from tests.e2e.test_network_ports import fetch, wait_listening
from tsubo.kernel.iproute import InNetns

HOST_END = "10.252.0.1"  # the throwaway host's address on the link to "outside"
OUTSIDE = "10.252.0.2"
WARNING = "WARNING: IPv4 forwarding is disabled. Networking will not work.\n"
SETTING = "TSUBO_DEFAULT_NETWORK"


class DefaultNet(NetEngine):
    """The CLI in the throwaway namespace, with the engine setting unset (Docker's default)
    unless *setting* is given."""

    outside: str = ""

    def run(self, *args: str, check: bool = True, setting: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != SETTING}
        if setting is not None:
            env[SETTING] = setting
        proc = subprocess.run([*self.prefix(), str(TSUBO), "--root", str(self.root), *args],
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=env)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def sleeper(self, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.run("run", "-d", "--name", name, *flags, "--rootfs", str(self.rootfs),
                        "sleep", "300")

    def bridge(self) -> dict[str, Any]:
        record = json.loads(self.run("network", "inspect", "bridge").stdout)[0]
        assert isinstance(record, dict)
        return record

    def address(self, name: str) -> str:
        for container in self.bridge()["Containers"].values():
            if container["Name"] == name:
                return str(container["IPv4Address"].split("/")[0])
        raise AssertionError(f"{name} is not on bridge")

    def forwarding(self, on: bool) -> None:
        assert self.host("sysctl", "-qw", f"net.ipv4.ip_forward={int(on)}").returncode == 0


@pytest.fixture
def defnet(net_engine: NetEngine) -> Iterator[DefaultNet]:  # noqa: F811
    """net_engine (whose teardown removes every container and network: its engine has the
    session's setting, under which ``bridge`` is removable) plus the outside namespace."""
    engine = DefaultNet(net_engine.netns, net_engine.root, net_engine.rootfs)
    outside = f"tsubo-t-o{secrets.token_hex(3)}"
    host_end = f"to{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", outside], check=True)
    engine.outside = outside
    try:
        for argv in (["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                      "netns", outside],
                     ["ip", "addr", "add", f"{HOST_END}/24", "dev", host_end],
                     ["ip", "link", "set", host_end, "up"]):
            assert engine.host(*argv).returncode == 0, argv
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"]):
            subprocess.run(["ip", "netns", "exec", outside, *argv], check=True)
        engine.forwarding(True)
        yield engine
    finally:
        subprocess.run(["ip", "netns", "delete", outside], check=False)


def test_run_without_network_joins_bridge_and_finds_neighbours(defnet: DefaultNet) -> None:
    """Docker's default bridge, 172.17.0.0/16 with gateway .1 on a host where nothing
    overlaps it; neighbours reach each other by address and, unlike Docker's default
    bridge, by name."""
    defnet.sleeper("one")
    defnet.sleeper("two")
    record = defnet.bridge()
    assert record["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert sorted(c["Name"] for c in record["Containers"].values()) == ["one", "two"]
    assert defnet.address("one") == "172.17.0.2"
    listed = defnet.run("network", "ls").stdout.splitlines()
    assert any(line.split()[1:3] == ["bridge", "bridge"] for line in listed[1:]), listed
    assert defnet.run("inspect", "one").stdout.count('"NetworkMode": "bridge"') == 1
    for target in (defnet.address("two"), "two"):
        ping = defnet.run("exec", "one", "ping", "-c", "1", "-W", "2", target, check=False)
        assert ping.returncode == 0, (target, ping.stdout, ping.stderr)
    assert defnet.ping_from_host(defnet.address("two"))
    # the isolated case stays: no interface but lo
    isolated = defnet.run("run", "--rm", "--network", "none", "--rootfs",
                          str(defnet.rootfs), "ls", "/sys/class/net")
    assert isolated.stdout.split() == ["lo"]


class PeerRecorder:
    """A TCP server in namespace *netns* that answers a line with ``outside`` and
    remembers each client's address."""

    def __init__(self, netns: str, address: str) -> None:
        with InNetns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((address, 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, peer = self.sock.accept()
        except OSError:
            return
        with connection:
            self.peers.append(peer[0])
            connection.recv(4096)
            connection.sendall(b"outside\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_default_bridge_reaches_outside_through_masquerade(defnet: DefaultNet) -> None:
    defnet.sleeper("client")
    server = PeerRecorder(defnet.outside, OUTSIDE)
    try:
        got = defnet.run("exec", "client", "sh", "-c",
                         f"echo hello | nc -w 5 {OUTSIDE} {server.port}", check=False)
    finally:
        server.close()
    assert got.returncode == 0 and got.stdout == "outside\n", (got.stdout, got.stderr)
    assert server.peers == [HOST_END]  # the container's address never left the host


def test_publish_with_no_other_flag(defnet: DefaultNet) -> None:
    """``-p 8080:80`` alone works (the default network); ``--network none -p`` keeps
    Docker's "conflicting options"."""
    defnet.run("run", "-d", "--name", "web", "-p", "8080:80", "--rootfs", str(defnet.rootfs),
               "nc", "-ll", "-p", "80", "-e", "echo", "web")
    wait_listening("web", 80)
    for address in ("172.17.0.1", HOST_END, "127.0.0.1"):
        assert fetch(defnet.netns, address, 8080) == "web", address
    assert fetch(defnet.outside, HOST_END, 8080) == "web"
    assert defnet.run("port", "web").stdout == "80/tcp -> 0.0.0.0:8080\n"
    refused = defnet.run("run", "--rm", "--network", "none", "-p", "8081:80", "--rootfs",
                         str(defnet.rootfs), "true", check=False)
    assert refused.returncode == 125, refused.stderr
    assert "conflicting options: port publishing and the none network mode" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1


def test_forwarding_off_is_one_warning_line(defnet: DefaultNet) -> None:
    """tsubo leaves ip_forward as the host has it (as for every network); when it is off,
    ``run``/``create`` on a network say so in one line (Docker's), and still work."""
    defnet.forwarding(False)
    made = defnet.sleeper("warned")
    assert made.stderr == WARNING
    assert defnet.run("create", "--name", "created", "--rootfs", str(defnet.rootfs),
                      "true").stderr == WARNING
    attached = defnet.run("run", "--rm", "--rootfs", str(defnet.rootfs), "echo", "hi")
    assert (attached.stdout, attached.stderr) == ("hi\n", WARNING)
    assert defnet.host("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    # a container that could not be made: its error alone, in one line
    failed = defnet.run("run", "--rm", "--ip", "172.17.0.1", "--rootfs", str(defnet.rootfs),
                        "true", check=False)
    assert failed.returncode == 125 and "is the gateway" in failed.stderr
    assert len(failed.stderr.splitlines()) == 1, failed.stderr
    # nothing to say for the isolated case, nor when the host forwards
    assert defnet.run("run", "--rm", "--network", "none", "--rootfs", str(defnet.rootfs),
                      "true").stderr == ""
    defnet.forwarding(True)
    assert defnet.sleeper("quiet").stderr == ""


def test_bridge_is_predefined_until_the_setting_says_otherwise(defnet: DefaultNet) -> None:
    """``network rm bridge``: Docker's refusal; ``network prune`` and ``system prune`` keep
    it. With ``$TSUBO_DEFAULT_NETWORK=none`` it is a network like any other and goes,
    leaving nothing in the namespace (bridge, veths, pins, firewall table)."""
    links_before = defnet.host("ip", "-o", "link").stdout
    defnet.run("run", "--rm", "--name", "gone", "--rootfs", str(defnet.rootfs), "true")
    refused = defnet.run("network", "rm", "bridge", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("tsubo: remove network: bridge is a pre-defined network "
                                     "and cannot be removed")
    assert len(refused.stderr.splitlines()) == 1
    defnet.run("network", "prune")
    defnet.run("system", "prune", "-f")
    assert defnet.run("network", "ls", "-q").stdout.split() == ["bridge"]
    bridge = defnet.bridge()["Options"]["bridge"]
    assert bridge in defnet.host("ip", "-o", "link").stdout
    removed = defnet.run("network", "rm", "bridge", setting="none")
    assert removed.stdout == "bridge\n"
    assert defnet.run("network", "ls", "-q").stdout == ""
    assert defnet.host("ip", "-o", "link").stdout == links_before
    assert "tsubo" not in defnet.host("nft", "list", "tables").stdout
    assert not Path("/run/netns/gone").exists()


def test_default_network_avoids_a_host_route_on_172_17(defnet: DefaultNet) -> None:
    assert defnet.host("ip", "route", "add", "172.17.0.0/16", "via", OUTSIDE).returncode == 0
    defnet.sleeper("moved")
    assert defnet.bridge()["IPAM"]["Config"] == [
        {"Subnet": "172.18.0.0/24", "Gateway": "172.18.0.1"}]


def test_first_uses_at_once_make_the_default_network_once(defnet: DefaultNet) -> None:
    """``create`` makes the container in its own process (``run`` asks the root's monitor,
    which takes one request at a time): four at once, and a ``run``, all race to make the
    default network. One makes it, all use it."""
    env = {k: v for k, v in os.environ.items() if k != SETTING}
    racers = [["create", "--name", f"racer{number}"] for number in range(4)]
    racers.append(["run", "-d", "--name", "racer4"])
    procs = [subprocess.Popen([*defnet.prefix(), str(TSUBO), "--root", str(defnet.root),
                               *verb, "--rootfs", str(defnet.rootfs), "sleep", "300"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for verb in racers]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 5, results
    for number in range(4):
        defnet.run("start", f"racer{number}")
    assert defnet.run("network", "ls", "-q").stdout.split() == ["bridge"]
    assert sorted(c["Name"] for c in defnet.bridge()["Containers"].values()) == [
        f"racer{number}" for number in range(5)]
    bridges = json.loads(defnet.host("ip", "-j", "link", "show", "type", "bridge").stdout)
    assert len(bridges) == 1, bridges
    ping = defnet.run("exec", "racer0", "ping", "-c", "1", "-W", "2", "racer3", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


API_SCRIPT = """
import json, sys, warnings
import tsubo

root, rootfs = sys.argv[1:3]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with tsubo.Engine(root) as engine:
        container = engine.run(rootfs=rootfs, command=["sleep", "300"], name="api")
        network = engine.inspect_network("bridge")
print(json.dumps({"containers": [c["Name"] for c in network["Containers"].values()],
                  "warnings": [(w.category.__name__, str(w.message)) for w in caught]}))
"""


def test_api_run_defaults_to_the_bridge_too(defnet: DefaultNet) -> None:
    """``Engine.run`` goes through the same options builder; the warning is a Python
    RuntimeWarning there."""
    defnet.forwarding(False)
    env = {k: v for k, v in os.environ.items() if k != SETTING}
    proc = subprocess.run([*defnet.prefix(), sys.executable, "-c", API_SCRIPT,
                           str(defnet.root), str(defnet.rootfs)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["containers"] == ["api"]
    assert result["warnings"] == [["RuntimeWarning", WARNING[len("WARNING: "):].strip()]]
    assert defnet.ping_from_host(defnet.address("api"))


def test_connect_to_bridge_makes_it_as_docker_always_has_it(defnet: DefaultNet) -> None:
    defnet.run("network", "create", "web", "--subnet", "10.89.30.0/24")
    defnet.sleeper("joiner", "--network", "web")
    defnet.run("network", "connect", "bridge", "joiner")
    assert [c["Name"] for c in defnet.bridge()["Containers"].values()] == ["joiner"]
    assert defnet.ping_from_host(defnet.address("joiner"))
