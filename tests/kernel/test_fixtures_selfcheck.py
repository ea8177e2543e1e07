"""Self-checks of the test fixtures (tests/conftest.py, tests/leakcheck.py, the probe).

Run with runc as the stand-in runtime:
    TSUBO_TEST_RUNTIME=runc .venv/bin/python -m pytest tests/kernel/test_fixtures_selfcheck.py
Tests needing a runtime skip when the one chosen does not exist.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests import leakcheck
from tests.bundles import CGROUP_PREFIX, RUNC_SPEC_CAPS
from tests.conftest import MakeBundle, RuntimeCLI
from tests.probe import caps, fds, mounts, one, parse_probe


def test_busybox_rootfs_layout(busybox_rootfs: Path) -> None:
    assert (busybox_rootfs / "bin" / "busybox").is_file()
    assert os.readlink(busybox_rootfs / "bin" / "sh") == "busybox"
    assert (busybox_rootfs / "probe").stat().st_mode & 0o777 == 0o755
    assert (busybox_rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (busybox_rootfs / "home" / "tsubotest").stat().st_uid == 1000
    assert "wheel:x:10:tsubotest" in (busybox_rootfs / "etc" / "group").read_text()


def test_make_bundle_overrides(make_bundle: MakeBundle, test_tag: str) -> None:
    b = make_bundle(["/probe"], process={"user": {"uid": 1000, "gid": 1000}}, hostname="h1")
    cfg = json.loads((b.path / "config.json").read_text())
    assert cfg["process"]["user"] == {"uid": 1000, "gid": 1000}
    assert cfg["process"]["args"] == ["/probe"]
    assert cfg["process"]["terminal"] is False
    assert cfg["hostname"] == "h1"
    assert cfg["process"]["cwd"] == "/"  # untouched siblings survive the merge
    assert cfg["linux"]["cgroupsPath"].startswith(f"/tsubo-test-{test_tag}/")
    assert [n["type"] for n in cfg["linux"]["namespaces"]] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
    ]
    assert (b.rootfs / "probe").is_file()
    b.config["process"]["args"] = ["/bin/true"]
    b.write()
    assert json.loads((b.path / "config.json").read_text())["process"]["args"] == ["/bin/true"]
    b2 = make_bundle(["true"])
    assert b2.path != b.path and b2.cgroups_path != b.cgroups_path


def test_probe_under_runtime(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    hostname = f"tsubo-h-{secrets.token_hex(3)}"
    b = make_bundle(["/probe"], hostname=hostname)
    cid = runtime.container_id()
    proc = runtime.run("run", "--bundle", str(b.path), cid)
    assert proc.returncode == 0, proc.stderr
    facts = parse_probe(proc.stdout)
    assert one(facts, "probe.done") == "1", proc.stdout
    assert one(facts, "pid") == "1"
    assert one(facts, "nprocs") == "1"
    assert one(facts, "hostname") == hostname
    assert one(facts, "uid") == "0"
    for which in ("CapEff", "CapPrm", "CapBnd"):
        assert caps(facts, which) == set(RUNC_SPEC_CAPS), which
    assert caps(facts, "CapInh") == set()
    assert caps(facts, "CapAmb") == set()  # ambient needs inheritable, which is empty
    assert one(facts, "NoNewPrivs") == "1"
    assert ("/proc", "proc") in mounts(facts)
    assert one(facts, "shm.mode") == "1777"
    assert one(facts, "masked./proc/keys") == "empty"
    assert one(facts, "masked./sys/firmware") == "empty"
    for path in ("/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"):
        assert one(facts, f"rofs.{path}") == "yes", path
    # some kernels (like this VM's) have no sysrq
    assert one(facts, "rofs./proc/sysrq-trigger") in ("yes", "missing")
    assert one(facts, "rlimit.RLIMIT_NOFILE") == "1024 1024"
    assert one(facts, "env.TERM") == "xterm"
    assert sorted(fds(facts)) == [0, 1, 2]
    assert one(facts, "fd.script").endswith("/probe")
    assert runtime.list_ids() == []


def test_probe_as_user(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(
        ["/probe"], process={"user": {"uid": 1000, "gid": 1000, "additionalGids": [10]}}
    )
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert proc.returncode == 0, proc.stderr
    facts = parse_probe(proc.stdout)
    assert one(facts, "uid") == "1000"
    assert one(facts, "gid") == "1000"
    assert "10" in facts["group"]


def test_create_start_orphan_is_reaped(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """`create` leaves the container's init orphaned: the subreaper makes it our child, and the
    runtime fixture's `delete --force` + leak_check's reaping leave nothing behind."""
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    created = runtime.run("create", "--bundle", str(b.path), cid)
    assert created.returncode == 0, created.stderr
    state = json.loads(runtime.run("state", cid, check=True).stdout)
    assert state["status"] == "created"
    pid = int(state["pid"])
    assert pid in leakcheck.child_processes(), "subreaper did not adopt the container init"
    assert runtime.run("start", cid).returncode == 0
    assert json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "running"
    assert runtime.list_ids() == [cid]
    # left running on purpose: the runtime fixture's teardown must delete it


def test_kill_then_state_stopped(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "300"])
    cid = runtime.container_id()
    assert runtime.run("run", "--detach", "--bundle", str(b.path), cid).returncode == 0
    assert runtime.run("kill", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 10
    status = ""
    while time.monotonic() < deadline:
        status = json.loads(runtime.run("state", cid, check=True).stdout)["status"]
        if status == "stopped":
            break
        time.sleep(0.05)
    assert status == "stopped"
    assert runtime.run("delete", cid).returncode == 0
    assert runtime.list_ids() == []


def test_leakcheck_catches_dummy_link() -> None:
    name = f"tsubo-t-{secrets.token_hex(3)}"
    before = leakcheck.snapshot()
    add = subprocess.run(["ip", "link", "add", name, "type", "dummy"], check=False)
    if add.returncode != 0:  # no dummy driver in this kernel: any single link will do
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        after = leakcheck.snapshot()
        diff = leakcheck.compare(before, after)
        assert diff
        assert diff.added == {"links": [name]}, str(diff)
        assert name in str(diff)
    finally:
        subprocess.run(["ip", "link", "delete", name], check=True)
    assert not leakcheck.compare(before, leakcheck.snapshot())


def test_leakcheck_catches_child_fd_and_netns() -> None:
    before = leakcheck.snapshot()
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    fd = os.open("/dev/null", os.O_RDONLY)
    ns = f"tsubo-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        diff = leakcheck.compare(before, leakcheck.snapshot())
        assert diff.added["processes"] == [f"pid {child.pid}: sleep (S)"], str(diff)
        assert diff.added["fds"] == [f"{fd} -> /dev/null"], str(diff)
        assert diff.added["netns"] == [ns], str(diff)
        assert any(f"/run/netns/{ns}" in m for m in diff.added["mounts"]), str(diff)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=True)
        os.close(fd)
        assert leakcheck.kill_pids([child.pid]) == []
    assert child.pid not in leakcheck.child_processes()
    assert not leakcheck.compare(before, leakcheck.snapshot())


def test_leakcheck_catches_cgroup(test_tag: str) -> None:
    """A cgroup made under the test's own parent is seen (other sessions' cgroups may come
    and go meanwhile: only ours is asserted), and removed whatever the assertions say (the
    parent is the test's own, so the per-test leak check removes what a failure left)."""
    hiers = leakcheck.cgroup_hierarchies()
    if not hiers:
        pytest.skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
    name = f"{CGROUP_PREFIX}{test_tag}"
    made = hiers[0] / name / "leaf"
    cg = leakcheck._hier_name(hiers[0])
    before = leakcheck.snapshot()
    made.mkdir(parents=True)
    try:
        diff = leakcheck.compare(before, leakcheck.snapshot(), ignore_cgroups=[f"{cg}/{name}"])
        ours = [c for c in diff.added.get("cgroups", []) if c.startswith(f"{cg}/{name}/")]
        assert ours == [f"{cg}/{name}/leaf"], str(diff)
    finally:
        assert leakcheck.remove_cgroups([f"{cg}/{name}", f"{cg}/{name}/leaf"]) == []
    assert not made.parent.exists()


def test_netns_fixture(netns: object) -> None:
    from tests.conftest import NetNS

    assert isinstance(netns, NetNS)
    assert netns.name in leakcheck.named_netns()
    out = netns.run("ip", "-o", "link").stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
