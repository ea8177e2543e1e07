"""Labs end to end: ``tsubo lab`` and ``tsubo.Lab`` deploy real containers joined by real
veth pairs, and checks send real packets between them.

Everything runs inside a throwaway "host" network namespace (the ``netns`` fixture, entered
with nsenter, network namespace only), so links, bridges and packets stay in namespaces
the test made; the "host" of the seed lab is that namespace.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import engine_binary, wait_engine_gone, wait_for

rootfs_tar = engine_fixtures.rootfs_tar
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class LabHost:
    """The tsubo CLI and plain commands, inside the test's throwaway network namespace."""

    def __init__(self, netns: str, root: Path) -> None:
        self.netns = netns
        self.root = root

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def tsubo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix(), str(engine_binary()), "--root", str(self.root),
                               *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def host(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)

    def links(self) -> list[str]:
        out = self.host("ip", "-j", "link").stdout
        return sorted(link["ifname"] for link in json.loads(out) if link["ifname"] != "lo")

    def python(self, script: str) -> Any:
        """Run *script* with the venv's interpreter in the namespace; its last stdout line,
        parsed as JSON."""
        proc = subprocess.run([*self.prefix(), sys.executable, "-c", textwrap.dedent(script)],
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def lab_host(netns: Any, tmp_path: Path) -> Iterator[LabHost]:
    host = LabHost(netns.name, tmp_path / "root")
    host.host("ip", "link", "set", "lo", "up")
    try:
        yield host
    finally:
        listed = host.tsubo("lab", "inspect", "--format", "json", check=False).stdout
        for lab in json.loads(listed or "[]"):
            host.tsubo("lab", "destroy", "--name", lab["name"], "--cleanup", check=False)
        ids = host.tsubo("ps", "-aq", check=False).stdout.split()
        if ids:
            host.tsubo("rm", "-f", *ids, check=False)
        for network in host.tsubo("network", "ls", "-q", check=False).stdout.split():
            host.tsubo("network", "rm", network, check=False)
        wait_engine_gone(host.root)


def _nothing_left(host: LabHost) -> None:
    assert host.links() == []
    assert host.tsubo("ps", "-aq").stdout.split() == []
    assert host.tsubo("network", "ls", "-q").stdout.split() == []
    assert not list(Path("/run/netns").glob("clab-*"))
    assert not list((host.root / "labs").glob("*.json"))
    assert host.tsubo("system", "gc").stdout.strip() == ""


def test_seed_lab_rebuilds_the_seeds_part_two(lab_host: LabHost, rootfs_tar: Path) -> None:
    """examples/seed.clab.yml, unchanged: bridge docker1, the host's leg veth1 at .100,
    container1 at .1 and container2 at .2 — and the seed's pings."""
    host = lab_host
    host.tsubo("import", "-c", 'CMD ["sh"]', str(rootfs_tar), "busybox")
    seed = str(EXAMPLES / "seed.clab.yml")
    deployed = host.tsubo("lab", "deploy", "-t", seed)
    assert "container1" in deployed.stdout and "running" in deployed.stdout

    validated = host.tsubo("lab", "validate", "-t", seed)
    assert validated.stdout.splitlines()[-1] == "3 passed, 0 failed"
    # the seed's own commands work on the lab
    ping = host.host("ip", "netns", "exec", "container1", "busybox", "ping", "-c", "1",
                     "-W", "2", "192.168.10.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert host.host("busybox", "ping", "-c", "1", "-W", "2", "192.168.10.1").returncode == 0
    links = json.loads(host.host("ip", "-j", "-d", "link", "show", "master", "docker1").stdout)
    assert sorted(link["ifname"] for link in links) == \
        ["docker1-veth1", "docker1-veth2", "docker1-veth3"]
    address = json.loads(host.host("ip", "-j", "-4", "addr", "show", "dev", "veth1").stdout)
    assert [a["local"] for a in address[0]["addr_info"]] == ["192.168.10.100"]
    inside = host.tsubo("exec", "container2", "ip", "addr", "show", "container-veth2").stdout
    assert "192.168.10.2/24" in inside

    again = host.tsubo("lab", "deploy", "-t", seed)  # idempotent: nothing is redone
    assert "already deployed" in again.stdout
    executed = host.tsubo("lab", "exec", "-t", seed, "--label", "clab-node-name=container1",
                          "--cmd", "hostname")
    assert executed.stdout == "--- container1 (exit 0)\ncontainer1\n"

    host.tsubo("lab", "destroy", "-t", seed)
    host.tsubo("rmi", "busybox")
    _nothing_left(host)


def test_three_routers_in_a_line_through_the_python_api(lab_host: LabHost,
                                                        busybox_rootfs: Path) -> None:
    """r1 reaches r3 only through r2: not when r2 stops forwarding, and never over the
    management network the nodes also have."""
    result = lab_host.python(f"""
        import json, subprocess, tsubo
        with tsubo.Lab("line", root={str(lab_host.root)!r}, rootfs={str(busybox_rootfs)!r},
                       mgmt=True) as lab:
            for name in ("r1", "r2", "r3"):
                lab.node(name, cmd="sleep 600",
                         sysctls={{"net.ipv4.ip_forward": 1}} if name == "r2" else {{}})
            lab.link("r1:eth1", "r2:eth1", "10.0.12.1/24", "10.0.12.2/24")
            lab.link("r2:eth2", "r3:eth1", "10.0.23.2/24", "10.0.23.3/24")
            lab.route("r1", "10.0.23.0/24", "10.0.12.2")
            lab.route("r3", "10.0.12.0/24", "10.0.23.2")
            lab.deploy()
            found = {{
                "forwarding": lab.check_reachable("r1", "r3:eth1"),
                "back": lab.check_reachable("r3", "r1"),
                # the management address of r3 is on the mgmt network: never a check's way
                "mgmt": lab.check_reachable("r1", lab.engine.inspect_lab("line")["nodes"][2]
                                            ["ipv4_address"].split("/")[0]),
                "mgmt_route": lab.exec("r1", ["ip", "route"]).stdout.decode(),
            }}
            # /proc/sys is read-only inside the container: switch r2 off from the host side
            subprocess.run(["ip", "netns", "exec", "clab-line-r2", "sysctl", "-qw",
                            "net.ipv4.ip_forward=0"], check=True)
            found["off"] = lab.check_unreachable("r1", "r3:eth1")
            found["off_reachable"] = lab.check_reachable("r1", "r3:eth1")
            found["r2_still"] = lab.check_reachable("r1", "r2:eth1")
        found["labs_after"] = tsubo.Engine({str(lab_host.root)!r}).labs()
        print(json.dumps(found))
    """)
    assert result["forwarding"] and result["back"]
    assert "default via" in result["mgmt_route"]  # r1 could reach r3's mgmt address...
    assert result["mgmt"] is False                  # ...but a check never goes that way
    assert result["off"] and not result["off_reachable"]
    assert result["r2_still"]
    assert result["labs_after"] == []
    _nothing_left(lab_host)


def _line_file(tmp_path: Path, rootfs: Path, checks: str, nodes: int = 3) -> Path:
    names = [f"r{i}" for i in range(1, nodes + 1)]
    text = ["name: l3", "mgmt: {network: lab3}", "topology:",
            f"  defaults: {{tsubo: {{rootfs: {rootfs}}}, cmd: sleep 600}}", "  nodes:"]
    text += [f"    {name}: {{}}" for name in names]
    text += ["    br9: {kind: bridge}", "  links:"]
    text += [f'    - endpoints: ["{a}:eth1", "{b}:eth2"]' for a, b in itertools.pairwise(names)]
    text += ['    - endpoints: ["r1:eth3", "br9:br9-r1"]']
    text += ["tsubo:", "  addresses:", "    r1:eth1: 10.9.0.1/30", "    r2:eth2: 10.9.0.2/30",
             checks]
    path = tmp_path / "l3.clab.yml"
    path.write_text("\n".join(text) + "\n")
    return path


def test_validate_exit_codes_and_bad_files(lab_host: LabHost, busybox_rootfs: Path,
                                           tmp_path: Path) -> None:
    host = lab_host
    no_checks = _line_file(tmp_path, busybox_rootfs, "")
    host.tsubo("lab", "deploy", "-t", str(no_checks))
    assert host.tsubo("lab", "validate", "-t", str(no_checks), check=False).returncode == 2
    failing = _line_file(tmp_path, busybox_rootfs, "  checks:\n"
                         "    - {from: r1, to: r2:eth2}\n"
                         "    - {from: r1, to: 10.9.0.2, expect: unreachable}\n"
                         "    - {from: r1:eth1, to: 10.9.0.2, tcp: 80}")
    # checks are not part of what is deployed: the same lab
    assert "already deployed" in host.tsubo("lab", "deploy", "-t", str(failing)).stdout
    # another version of the file under the same name is refused, the lab untouched
    other = tmp_path / "other.clab.yml"
    other.write_text(failing.read_text().replace("10.9.0.2/30", "10.9.0.3/30"))
    refused = host.tsubo("lab", "deploy", "-t", str(other), check=False)
    assert refused.returncode == 1 and "another version" in refused.stderr
    result = host.tsubo("lab", "validate", "-t", str(failing), check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok   r1 reaches r2:eth2 (icmp)")
    assert lines[1].startswith("FAIL r1 does not reach 10.9.0.2 (icmp)")
    assert lines[2].startswith("FAIL r1:eth1 reaches 10.9.0.2 (tcp/80)")
    assert lines[3] == "1 passed, 2 failed"
    # the matrix: r3 has no address and no route but over its management interface, which
    # no check may use
    matrix = host.tsubo("lab", "validate", "-t", str(failing), "--matrix", check=False)
    assert matrix.returncode == 1
    assert matrix.stdout.splitlines() == ["    r2:eth2  r1:eth1", "r1  ok", "r2           ok",
                                          "r3  -        -", "2 reached, 2 not"]
    host.tsubo("lab", "destroy", "-t", str(failing))

    bad = tmp_path / "bad.clab.yml"
    bad.write_text(failing.read_text().replace("r2:eth2\"]", "r9:eth2\"]"))
    refused = host.tsubo("lab", "deploy", "-t", str(bad), check=False)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith('tsubo: read lab bad.clab.yml:11: endpoint "r9:eth2"')
    _nothing_left(host)


@pytest.mark.parametrize("step", ["nodes", "links"])
def test_sigkill_mid_deploy_then_gc_leaves_nothing(lab_host: LabHost, busybox_rootfs: Path,
                                                   tmp_path: Path, step: str) -> None:
    """Killed while it starts the nodes, or once it records the host-side link ends."""
    host = lab_host
    topology = _line_file(tmp_path, busybox_rootfs, "", nodes=8)
    # a last step that takes a while, so the kill always lands before the deploy ends
    topology.write_text(topology.read_text().replace("    r8: {}", '    r8: {exec: ["sleep 5"]}'))
    record = host.root / "labs" / "l3.json"
    deploy = subprocess.Popen([*host.prefix(), str(engine_binary()), "--root", str(host.root),
                               "lab", "deploy", "-t", str(topology)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def half_way() -> bool:
            try:
                state = json.loads(record.read_text())
            except (OSError, ValueError):
                return False
            return bool(state["host_links"]) if step == "links" \
                else len(state["containers"]) >= 3

        assert wait_for(half_way, 60, 0.005)
    finally:
        os.kill(deploy.pid, signal.SIGKILL)  # our own child, by its pid
        deploy.wait()
    state = json.loads(record.read_text())
    assert state["state"] == "deploying"
    assert "br9" in state["bridges"]
    assert "br9" in host.links()
    collected = host.tsubo("system", "gc").stdout
    assert "destroyed lab l3 (its deploy did not finish)" in collected
    deadline = time.monotonic() + 10
    while host.links() and time.monotonic() < deadline:  # netns cleanup is asynchronous
        time.sleep(0.05)
    _nothing_left(host)


def test_capture_writes_a_pcap_with_the_expected_icmp(lab_host: LabHost, busybox_rootfs: Path,
                                                      tmp_path: Path) -> None:
    host = lab_host
    topology = tmp_path / "two.clab.yml"
    topology.write_text(textwrap.dedent(f"""\
        name: two
        mgmt: {{network: none}}
        topology:
          defaults: {{tsubo: {{rootfs: {busybox_rootfs}}}, cmd: sleep 600}}
          nodes: {{r1: {{}}, r2: {{}}}}
          links: [{{endpoints: ["r1:eth1", "r2:eth1"]}}]
        tsubo:
          addresses: {{r1:eth1: 10.1.0.1/30, r2:eth1: 10.1.0.2/30}}
        """))
    host.tsubo("lab", "deploy", "-t", str(topology))
    pcap = tmp_path / "r2.pcap"
    capture = subprocess.Popen(
        [*host.prefix(), str(engine_binary()), "--root", str(host.root), "lab", "capture",
         "-t", str(topology), "r2:eth1", "icmp", "-c", "2", "-w", str(pcap),
         "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # ping until the capture has its two packets (the first may come before tcpdump
        # listens): one echo request and its reply
        deadline = time.monotonic() + 20
        while capture.poll() is None and time.monotonic() < deadline:
            host.host("ip", "netns", "exec", "clab-two-r1", "busybox", "ping", "-c", "1",
                      "-W", "1", "10.1.0.2")
            time.sleep(0.1)
        out, err = capture.communicate(timeout=30)
    finally:
        if capture.poll() is None:
            os.kill(capture.pid, signal.SIGKILL)  # our own child, by its pid
            capture.wait()
    assert capture.returncode == 0, err
    assert "2 packets captured" in out
    read = host.host("tcpdump", "-r", str(pcap), "-n").stdout.splitlines()
    assert len(read) == 2
    assert "IP 10.1.0.1 > 10.1.0.2: ICMP echo request" in read[0]
    assert "IP 10.1.0.2 > 10.1.0.1: ICMP echo reply" in read[1]
    picture = host.tsubo("lab", "graph", "-t", str(topology), "--format", "svg").stdout
    assert picture.lstrip().startswith("<?xml") and "r1 (linux)" in picture
    host.tsubo("lab", "destroy", "-t", str(topology))
    _nothing_left(host)


def _wiring_state(host: LabHost, namespaces: list[str]) -> dict[str, Any]:
    """What the wiring made, without what differs by nature (MACs, ifindexes)."""

    def interfaces(prefix: list[str]) -> dict[str, Any]:
        found = {}
        links = json.loads(host.host("ip", *prefix, "-j", "-d", "link").stdout)
        addresses = {entry["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}"
                                             for a in entry.get("addr_info", [])
                                             if a.get("family") == "inet")
                     for entry in json.loads(host.host("ip", *prefix, "-j", "addr").stdout)}
        for link in links:
            found[link["ifname"]] = (link["mtu"], "UP" in link["flags"], link.get("master"),
                                     link.get("linkinfo", {}).get("info_kind"),
                                     addresses.get(link["ifname"], []))
        return found

    def routes(prefix: list[str]) -> list[tuple[str, str, str]]:
        return sorted((route["dst"], route.get("gateway", ""), route["dev"])
                      for route in json.loads(host.host("ip", *prefix, "-j", "route").stdout))

    state: dict[str, Any] = {"host": interfaces([]), "host routes": routes([])}
    for name in namespaces:
        state[name] = interfaces(["-n", name])
        state[f"{name} routes"] = routes(["-n", name])
        state[f"{name} forwarding"] = host.host(
            "ip", "netns", "exec", name, "cat", "/proc/sys/net/ipv4/ip_forward").stdout
    return state


def test_explain_prints_commands_that_wire_the_lab_as_deploy_does(
        lab_host: LabHost, busybox_rootfs: Path, tmp_path: Path) -> None:
    """--explain comes from the plan the deploy applies: its commands, replayed by hand in
    the same fresh namespace, give the same links, addresses, routes and sysctls."""
    host = lab_host
    topology = tmp_path / "x.clab.yml"
    topology.write_text(textwrap.dedent(f"""\
        name: x
        mgmt: {{network: none}}
        topology:
          defaults: {{tsubo: {{rootfs: {busybox_rootfs}}}, cmd: sleep 600}}
          nodes:
            r1: {{}}
            r2: {{sysctls: {{net.ipv4.ip_forward: 1}}}}
            r3: {{}}
            br9: {{kind: bridge}}
          links:
            - endpoints: ["r1:eth1", "r2:eth1"]
            - {{type: veth, mtu: 1500, endpoints: [{{node: r2, interface: eth2}},
                                                   {{node: r3, interface: eth1}}]}}
            - endpoints: ["r1:eth3", "br9:br9-r1"]
            - endpoints: ["host:veth9", "br9:br9-host"]
        tsubo:
          addresses:
            r1:eth1: 10.0.12.1/24
            r2:eth1: 10.0.12.2/24
            r2:eth2: 10.0.23.2/24
            r3:eth1: 10.0.23.3/24
            r1:eth3: 10.0.9.1/24
            host:veth9: 10.0.9.100/24
          routes:
            r1: ["10.0.23.0/24 via 10.0.12.2"]
            r3: ["10.0.12.0/24 via 10.0.23.2"]
        """))
    namespaces = ["clab-x-r1", "clab-x-r2", "clab-x-r3"]
    commands = host.tsubo("lab", "deploy", "--explain", "-t", str(topology)).stdout
    assert not (host.root / "labs" / "x.json").exists()  # --explain deploys nothing
    assert "ip link add name eth1 netns clab-x-r1 mtu 9500 type veth peer name eth1 " \
        "netns clab-x-r2 mtu 9500" in commands
    replay = host.host("bash", "-e", "-c", commands)
    assert replay.returncode == 0, replay.stderr
    by_hand = _wiring_state(host, namespaces)
    for name in namespaces:
        host.host("ip", "netns", "del", name)
    host.host("ip", "link", "del", "br9")
    host.host("ip", "link", "del", "veth9")
    assert wait_for(lambda: host.links() == [], 10)

    host.tsubo("lab", "deploy", "-t", str(topology))
    deployed = _wiring_state(host, namespaces)
    host.tsubo("lab", "destroy", "-t", str(topology))
    assert deployed == by_hand
    assert deployed["clab-x-r2"]["eth2"][0] == 1500 and "br9" in deployed["host"]
    _nothing_left(host)


def test_apply_changes_a_running_lab_without_restarting_the_others(
        lab_host: LabHost, busybox_rootfs: Path, tmp_path: Path) -> None:
    """Version 2 of a file drops node r1 (and its link), adds node r4 with two links, and
    changes the MTU of the r2-r3 link: r2 and r3 keep running (same container, same init);
    the new links carry traffic; applying it again does nothing."""
    host = lab_host
    head = textwrap.dedent(f"""\
        name: ap
        mgmt: {{network: none}}
        topology:
          defaults: {{tsubo: {{rootfs: {busybox_rootfs}}}, cmd: sleep 600}}
        """)
    first = tmp_path / "ap1.clab.yml"
    first.write_text(head + textwrap.dedent("""\
          nodes: {r1: {}, r2: {}, r3: {}}
          links:
            - endpoints: ["r1:eth1", "r2:eth1"]
            - endpoints: ["r2:eth2", "r3:eth1"]
        tsubo:
          addresses: {r1:eth1: 10.1.0.1/30, r2:eth1: 10.1.0.2/30,
                      r2:eth2: 10.2.0.1/30, r3:eth1: 10.2.0.2/30}
        """))
    second = tmp_path / "ap2.clab.yml"
    second.write_text(head + textwrap.dedent("""\
          nodes: {r2: {}, r3: {}, r4: {}}
          links:
            - {endpoints: ["r2:eth2", "r3:eth1"], mtu: 1400}
            - endpoints: ["r3:eth2", "r4:eth1"]
            - endpoints: ["r2:eth3", "r4:eth2"]
        tsubo:
          addresses: {r2:eth2: 10.2.0.1/30, r3:eth1: 10.2.0.2/30, r3:eth2: 10.3.0.1/30,
                      r4:eth1: 10.3.0.2/30, r2:eth3: 10.4.0.1/30, r4:eth2: 10.4.0.2/30}
          checks:
            - {from: r2, to: r3:eth1}
            - {from: r3, to: r4:eth1}
            - {from: r2, to: r4:eth2}
        """))
    host.tsubo("lab", "deploy", "-t", str(first))

    def inits() -> dict[str, tuple[str, int]]:
        nodes = json.loads(host.tsubo("lab", "inspect", "--name", "ap", "--format",
                                      "json").stdout)[0]["nodes"]
        found = {}
        for node in nodes:
            record = json.loads(host.tsubo("inspect", node["name"]).stdout)[0]
            found[node["node"]] = (record["Id"], record["State"]["Pid"])
        return found

    before = inits()
    changes = host.tsubo("lab", "apply", "-t", str(second)).stdout.splitlines()
    assert changes == ["removed link r1:eth1 - r2:eth1", "removed node r1", "added node r4",
                       "changed link r2:eth2 - r3:eth1 (mtu 1400)",
                       "added link r3:eth2 - r4:eth1 (mtu 9500)",
                       "added link r2:eth3 - r4:eth2 (mtu 9500)"]
    after = inits()
    assert sorted(after) == ["r2", "r3", "r4"]
    assert after["r2"] == before["r2"] and after["r3"] == before["r3"]  # not restarted
    assert not Path("/run/netns/clab-ap-r1").exists()
    r2_links = json.loads(host.host("ip", "-n", "clab-ap-r2", "-j", "link").stdout)
    assert {link["ifname"]: link["mtu"] for link in r2_links} == \
        {"lo": 65536, "eth2": 1400, "eth3": 9500}
    validated = host.tsubo("lab", "validate", "-t", str(second))
    assert validated.stdout.splitlines()[-1] == "3 passed, 0 failed"
    assert host.tsubo("lab", "apply", "-t", str(second)).stdout == "nothing to change\n"

    # version 3: another address on a link that stays, a route, a sysctl: set in place
    third = tmp_path / "ap3.clab.yml"
    third.write_text(second.read_text()
                     .replace("r3:eth2: 10.3.0.1/30", "r3:eth2: 10.3.0.5/29")
                     .replace("r4:eth1: 10.3.0.2/30", "r4:eth1: 10.3.0.6/29")
                     .replace("nodes: {r2: {}, r3: {}, r4: {}}",
                              "nodes: {r2: {}, r3: {sysctls: {net.ipv4.ip_forward: 1}}, "
                              "r4: {}}")
                     .replace("  checks:", "  routes: {r2: [\"10.3.0.0/29 via 10.2.0.2\"], "
                              "r4: [\"10.2.0.0/30 via 10.3.0.5\"]}\n  checks:")
                     .replace("{from: r3, to: r4:eth1}", "{from: r2, to: r4:eth1}"))
    assert host.tsubo("lab", "apply", "-t", str(third)).stdout.splitlines() == [
        "addresses of r3:eth2: 10.3.0.5/29", "addresses of r4:eth1: 10.3.0.6/29",
        "routes of r2: 10.3.0.0/29 via 10.2.0.2", "routes of r4: 10.2.0.0/30 via 10.3.0.5",
        "sysctls of r3: net.ipv4.ip_forward=1"]
    assert inits() == after  # nobody restarted
    r3_eth2 = json.loads(host.host("ip", "-n", "clab-ap-r3", "-j", "-4", "addr", "show",
                                   "eth2").stdout)
    assert [a["local"] for a in r3_eth2[0]["addr_info"]] == ["10.3.0.5"]
    validated = host.tsubo("lab", "validate", "-t", str(third))  # r2 -> r3 -> r4
    assert validated.stdout.splitlines()[-1] == "3 passed, 0 failed"
    host.tsubo("lab", "destroy", "-t", str(third))
    _nothing_left(host)


def test_a_containerlab_file_deploys_unchanged(lab_host: LabHost, rootfs_tar: Path) -> None:
    """tests/data/containerlab-doc.clab.yml (containerlab's documented form: kinds, env,
    labels, cmd, exec, both link forms, a custom management network) with its image
    alpine:3 standing for busybox's rootfs imported under that name."""
    host = lab_host
    host.tsubo("import", "-c", 'CMD ["sleep", "600"]', str(rootfs_tar), "alpine:3")
    topology = str(Path(__file__).resolve().parents[1] / "data" / "containerlab-doc.clab.yml")
    host.tsubo("lab", "deploy", "-t", topology)
    info = json.loads(host.tsubo("lab", "inspect", "-t", topology, "--format",
                                 "json").stdout)[0]
    assert [node["name"] for node in info["nodes"]] == ["clab-srl02-n1", "clab-srl02-n2"]
    assert all(node["ipv4_address"].startswith("172.100.100.") for node in info["nodes"])
    # exec ran after the links existed
    eth1 = json.loads(host.host("ip", "-n", "clab-srl02-n2", "-j", "-4", "addr", "show",
                                "eth1").stdout)
    assert [a["local"] for a in eth1[0]["addr_info"]] == ["192.168.0.2"]
    eth2 = json.loads(host.host("ip", "-n", "clab-srl02-n1", "-j", "link", "show",
                                "eth2").stdout)
    assert eth2[0]["mtu"] == 1500
    mine = host.tsubo("lab", "exec", "-t", topology, "--label", "owner=me", "--cmd", "env")
    assert mine.stdout.startswith("--- clab-srl02-n1 (exit 0)\n") and "ENV1=VAL1" in mine.stdout
    # the engine's live networks, drawn as a lab is
    drawn = host.tsubo("network", "graph", "--format", "dot").stdout
    assert '"clab-srl02-n2" -- "custom_mgmt (172.100.100.0/24)"' in drawn
    host.tsubo("lab", "destroy", "-t", topology)
    host.tsubo("rmi", "alpine:3")
    _nothing_left(host)


def test_a_failing_deploy_leaves_nothing(lab_host: LabHost, busybox_rootfs: Path,
                                         tmp_path: Path) -> None:
    """The last node's exec fails after everything else was made: one line names it, and
    the nodes, bridge, host links, netns pins, management network and record are gone."""
    host = lab_host
    topology = tmp_path / "fail.clab.yml"
    topology.write_text(textwrap.dedent(f"""\
        name: fail
        topology:
          defaults: {{tsubo: {{rootfs: {busybox_rootfs}}}, cmd: sleep 600}}
          nodes:
            r1: {{network-mode: none}}
            r2: {{exec: ["sh -c 'echo no such thing >&2; exit 3'"]}}
            br5: {{kind: bridge}}
          links:
            - endpoints: ["r1:eth1", "r2:eth1"]
            - endpoints: ["r2:eth2", "br5:br5-r2"]
            - endpoints: ["host:h5", "br5:br5-h"]
        """))
    failed = host.tsubo("lab", "deploy", "-t", str(topology), check=False)
    assert failed.returncode == 1
    assert failed.stderr == ('tsubo: deploy lab fail: exec "sh -c \'echo no such thing >&2; '
                             'exit 3\'" on node r2 exited 3: no such thing\n')
    _nothing_left(host)
