"""Shared fixtures for tsubo's tests.

Fixtures (see each docstring):
  busybox_rootfs  (session) Path of a busybox rootfs with users, groups and /probe
  make_bundle     factory: make_bundle(args, **overrides) -> Bundle (fresh copy + config.json)
  runtime         RuntimeCLI for the runtime under test, with a per-test --root; cleans up
  netns           a throwaway named network namespace (NetNS)
  leak_check      autouse for tests/kernel and tests/e2e: host state before == after
  test_tag        per-test hex shared by the fixtures (cgroup parent tsubo-test-<tag>)
  engine_default_network  (session, autouse) $TSUBO_DEFAULT_NETWORK=none: no default bridge

The runtime binary is `$TSUBO_TEST_RUNTIME` (a path, or a name looked up on PATH, e.g.
`runc`), default the venv's `tsubo-runtime`; tests needing it skip if it does not exist.

Tests marked `root`, and every test under tests/kernel and tests/e2e, skip unless euid 0.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

TESTS_DIR = Path(__file__).parent
# Let tests import `tsubo` from the source tree when it is not installed into the venv.
if (TESTS_DIR.parent / "src" / "tsubo").is_dir() and importlib.util.find_spec("tsubo") is None:
    sys.path.insert(0, str(TESTS_DIR.parent / "src"))

from tests import leakcheck  # noqa: E402
from tests.bundles import (  # noqa: E402
    CGROUP_PREFIX,
    deep_merge,
    default_config,
    unique_cgroups_path,
)
from tests.probe import PROBE_SCRIPT  # noqa: E402

ROOT_DIRS = ("kernel", "e2e")
BUSYBOX = Path("/bin/busybox")


# ---------------------------------------------------------------------------------------------
# markers / root gating


def _is_root_dir_test(item: pytest.Item) -> bool:
    try:
        rel = Path(item.path).resolve().relative_to(TESTS_DIR.resolve())
    except ValueError:
        return False
    return len(rel.parts) > 1 and rel.parts[0] in ROOT_DIRS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_root_dir_test(item):
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root (euid 0) and the real kernel: marked 'root' or in tests/kernel|e2e")


# ---------------------------------------------------------------------------------------------
# per-test tag


@pytest.fixture
def test_tag() -> str:
    """Per-test random hex; the test's cgroups live under /tsubo-test-<tag>/."""
    return secrets.token_hex(5)


# ---------------------------------------------------------------------------------------------
# rootfs and bundles

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
tsubotest:x:1000:1000:tsubo test user:/home/tsubotest:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
wheel:x:10:tsubotest
tsubotest:x:1000:
nogroup:x:65534:
"""


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small rootfs: /bin/busybox (Debian's busybox-static) + one symlink per applet in
    /bin, dirs proc sys dev tmp etc root home/tsubotest, /etc/passwd (root 0, tsubotest
    1000:1000, nobody 65534), /etc/group (root, wheel 10 with member tsubotest, tsubotest
    1000, nogroup 65534) and the probe at /probe (0755). Treat it as read-only: copy it
    (make_bundle does)."""
    if not BUSYBOX.is_file():
        pytest.skip(f"{BUSYBOX} missing: install Debian package busybox-static")
    if b"/ld-linux" in BUSYBOX.read_bytes()[:4096]:  # an ELF interpreter: not static
        pytest.skip(f"{BUSYBOX} is dynamically linked: install busybox-static")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()

    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    for d in ("bin", "proc", "sys", "dev", "etc", "root", "home"):
        (root / d).mkdir(mode=0o755)
    (root / "root").chmod(0o700)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    home = root / "home" / "tsubotest"
    home.mkdir(mode=0o755)
    os.chown(home, 1000, 1000)

    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    for applet in applets:
        if "/" in applet or applet == "busybox":
            continue
        (root / "bin" / applet).symlink_to("busybox")

    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "etc" / "passwd").chmod(0o644)
    (root / "etc" / "group").chmod(0o644)

    shutil.copyfile(PROBE_SCRIPT, root / "probe")
    (root / "probe").chmod(0o755)
    return root


@dataclass
class Bundle:
    """An OCI bundle: `path/config.json` + `path/rootfs`. Edit `.config`, then `.write()`."""

    path: Path
    config: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        return self.path / str(self.config["root"]["path"])

    @property
    def cgroups_path(self) -> str:
        return str(self.config["linux"]["cgroupsPath"])

    def write(self) -> None:
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(self.config, indent=2))
        tmp.replace(self.path / "config.json")


class MakeBundle(Protocol):
    def __call__(self, args: list[str], **overrides: Any) -> Bundle: ...


@pytest.fixture
def make_bundle(busybox_rootfs: Path, tmp_path: Path, test_tag: str) -> MakeBundle:
    """make_bundle(args, **overrides) -> Bundle.

    A fresh `cp -a` copy of the busybox rootfs in its own bundle dir, and config.json from
    `tests.bundles.default_config(args)` deep-merged with `overrides` (top-level config keys:
    `make_bundle(["/probe"], process={"user": {"uid": 1000}}, hostname="h1")`; dicts merge,
    lists replace, None deletes). cgroupsPath is `/tsubo-test-<test_tag>/c-<hex>`.
    """
    counter = 0

    def make(args: list[str], **overrides: Any) -> Bundle:
        nonlocal counter
        counter += 1
        path = tmp_path / f"bundle-{counter}"
        path.mkdir(mode=0o755)
        path.chmod(0o755)
        subprocess.run(["cp", "-a", str(busybox_rootfs), str(path / "rootfs")], check=True)
        config = default_config(args, cgroups_path=unique_cgroups_path(test_tag))
        bundle = Bundle(path=path, config=deep_merge(config, overrides))
        bundle.write()
        return bundle

    return make


# ---------------------------------------------------------------------------------------------
# the runtime under test


def runtime_binary() -> Path:
    """$TSUBO_TEST_RUNTIME (path or PATH name), default the venv's tsubo-runtime."""
    chosen = os.environ.get("TSUBO_TEST_RUNTIME")
    if not chosen:
        return Path(sys.executable).parent / "tsubo-runtime"
    if "/" in chosen:
        return Path(chosen)
    found = shutil.which(chosen)
    return Path(found) if found else Path(chosen)


@dataclass
class RuntimeCLI:
    """`<binary> --root <root> ARGV...`; remembers the ids it handed out."""

    binary: Path
    root: Path
    created: list[str] = field(default_factory=list)

    def run(
        self,
        *argv: str,
        input: str | None = None,
        timeout: float = 30,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run the runtime; stdout/stderr captured as text; stdin is `input` or /dev/null."""
        cmd = [str(self.binary), "--root", str(self.root), *argv]
        # stdout/stderr go to unlinked temp files, not pipes: after `create` / `run -d` the
        # container keeps the runtime's stdio, and a pipe would never reach EOF.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                cmd,
                input=None if input is None else input.encode(),
                stdin=subprocess.DEVNULL if input is None else None,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                cmd,
                proc.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check:
            result.check_returncode()
        return result

    def state(self, cid: str) -> dict[str, Any]:
        """`state CID` parsed; asserts the runtime answered."""
        proc = self.run("state", cid)
        assert proc.returncode == 0, f"state {cid}: {proc.stderr}"
        state = json.loads(proc.stdout)
        assert isinstance(state, dict)
        return state

    def wait_status(self, cid: str, want: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll `state` until the status is *want*; fails naming the last status seen."""
        deadline = time.monotonic() + timeout
        state = self.state(cid)
        while state["status"] != want and time.monotonic() < deadline:
            time.sleep(0.02)
            state = self.state(cid)
        assert state["status"] == want, f"{cid}: status {state['status']!r}, wanted {want!r}"
        return state

    def container_id(self) -> str:
        """A fresh unique container id `t-<hex>`, deleted (--force) at teardown."""
        cid = f"t-{secrets.token_hex(6)}"
        self.created.append(cid)
        return cid

    def list_ids(self) -> list[str]:
        proc = self.run("list", "-q")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def cleanup(self) -> list[str]:
        """delete --force everything listed or handed out; returns problems."""
        problems = []
        listed: list[str] = []
        try:
            listed = self.list_ids()
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"list -q failed: {e}")
        for cid in dict.fromkeys([*listed, *self.created]):
            try:
                proc = self.run("delete", "--force", cid, timeout=30)
            except subprocess.TimeoutExpired:
                problems.append(f"delete --force {cid}: timed out")
                continue
            if proc.returncode != 0 and cid in listed:
                problems.append(f"delete --force {cid} failed ({proc.returncode}): {proc.stderr}")
            leakcheck.reap_zombie_children()
        if self.root.exists():
            left = sorted(p.name for p in self.root.iterdir())
            if left:
                problems.append(f"state root {self.root} not empty after deletes: {left}")
        return problems


@pytest.fixture
def runtime(tmp_path: Path, subreaper: None) -> Iterator[RuntimeCLI]:
    """The runtime CLI under test with a fresh per-test state root.

    runtime.run(*argv, input=None, timeout=30, check=False) -> CompletedProcess[str]
    runtime.container_id() -> "t-<hex>"
    Teardown: `delete --force` every container from `list -q` plus every id handed out, reap
    zombies, then fail if the state root is not empty."""
    binary = runtime_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.skip(f"runtime under test not found: {binary} (set TSUBO_TEST_RUNTIME)")
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    cli = RuntimeCLI(binary=binary, root=root)
    yield cli
    problems = cli.cleanup()
    if problems:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail("runtime teardown:\n  " + "\n  ".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# network namespace


@dataclass(frozen=True)
class NetNS:
    name: str

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip netns exec NAME argv...`, output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            check=check,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )


@pytest.fixture
def netns() -> Iterator[NetNS]:
    """A throwaway named network namespace `tsubo-t-<hex>`, deleted after the test."""
    if os.geteuid() != 0:
        pytest.skip("netns fixture needs root")
    ns = NetNS(f"tsubo-t-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
    yield ns
    proc = subprocess.run(
        ["ip", "netns", "delete", ns.name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"ip netns delete {ns.name}: {proc.stderr.strip()}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# leak checking

_subreaper_done = False


@pytest.fixture(scope="session")
def subreaper() -> None:
    """Make the pytest process a child subreaper (once): processes orphaned by e.g.
    `runtime create` become our children, so leak_check sees and reaps them."""
    global _subreaper_done
    if not _subreaper_done and os.geteuid() == 0:
        leakcheck.set_child_subreaper()
        _subreaper_done = True


@pytest.fixture(autouse=True)
def leak_check(
    request: pytest.FixtureRequest, test_tag: str
) -> Iterator[Callable[[], leakcheck.LeakDiff] | None]:
    """For tests under tests/kernel and tests/e2e (no-op elsewhere): snapshot host state
    before and after the test (links, named netns, mounts, tsubo cgroups, tsubo nft tables,
    live child processes, our fds; see tests/leakcheck.py) and fail on any difference.

    At the end: zombie children are reaped; leaked live children are listed, then SIGKILLed by
    pid; new tsubo-test-* cgroup dirs are reported and rmdir'ed (deepest first). The parent
    dir /tsubo-test-<test_tag> alone is not a leak: runtimes (runc too) create the parents
    of cgroupsPath and remove only the leaf.
    """
    if not _is_root_dir_test(request.node):
        yield None
        return
    request.getfixturevalue("subreaper")
    before = leakcheck.snapshot()
    yield None
    leakcheck.reap_zombie_children()
    after = leakcheck.snapshot()
    own_parents = {
        f"{leakcheck._hier_name(h)}/{CGROUP_PREFIX}{test_tag}"
        for h in leakcheck.cgroup_hierarchies()
    }
    diff = leakcheck.compare(
        before, after, ignore_cgroups=own_parents, ignore=leakcheck.ignore_pattern_from_env()
    )

    notes = []
    leaked_pids = sorted(set(after.children) - set(before.children))
    if leaked_pids:
        notes.append(f"SIGKILLed leaked children: {leaked_pids}")
        notes += leakcheck.kill_pids(leaked_pids)
    # only this test's own cgroup tree: other sessions may be using tsubo-test-* too
    new_cgroups = [
        c
        for c in after.cgroups - before.cgroups
        if c.split("/", 2)[1] == f"{CGROUP_PREFIX}{test_tag}"
    ]
    if new_cgroups:
        notes += leakcheck.remove_cgroups(new_cgroups)
    leakcheck.reap_zombie_children()

    if diff:
        msg = f"host state leaked by {request.node.nodeid}:\n{diff}"
        if notes:
            msg += "\n  cleanup: " + "\n  cleanup: ".join(notes)
        if set(diff.added) | set(diff.removed) - {"processes", "fds"}:
            msg += (
                f"\n(host-wide state: another test session running at the same time shows"
                f" up here too; ${leakcheck.IGNORE_ENV}=REGEX drops matching items)"
            )
        pytest.fail(msg, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def engine_default_network() -> Iterator[None]:
    """The engine's containers given no ``--network`` stay off networks for the whole
    session (the engine setting ``$TSUBO_DEFAULT_NETWORK=none``, like dockerd's ``"bridge":
    "none"``): the suite runs in the machine's network namespace, where the default network
    would make a bridge and firewall rules. Every engine a test starts inherits it (the
    ``engine_cli``, ``engine_root``, ``cli`` fixtures, the API in-process, the lab's). Tests of
    the default network opt back in inside a throwaway netns
    (tests/e2e/test_network_default.py)."""
    previous = os.environ.get("TSUBO_DEFAULT_NETWORK")
    os.environ["TSUBO_DEFAULT_NETWORK"] = "none"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TSUBO_DEFAULT_NETWORK", None)
        else:
            os.environ["TSUBO_DEFAULT_NETWORK"] = previous


@pytest.fixture(scope="session", autouse=True)
def engine_cgroup_parent() -> Iterator[str]:
    """The engine's containers go under a cgroup parent of this session's own
    (``$TSUBO_CGROUP_PARENT``), removed from every hierarchy when the session ends, so the
    suite leaves no cgroup behind, not even the engine's shared parent."""
    parent = f"tsubo-test-session-{secrets.token_hex(4)}"
    previous = os.environ.get("TSUBO_CGROUP_PARENT")
    os.environ["TSUBO_CGROUP_PARENT"] = parent
    if os.geteuid() == 0:
        # Made now, before any test's leak-check snapshot, so no test "creates" it.
        for hierarchy in leakcheck.cgroup_hierarchies():
            with contextlib.suppress(OSError):
                (hierarchy / parent).mkdir()
                if (hierarchy / "cpuset.cpus").exists():  # v1 cpuset starts empty: fill it
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        (hierarchy / parent / name).write_text(
                            (hierarchy / name).read_text())
    try:
        yield parent
    finally:
        if previous is None:
            os.environ.pop("TSUBO_CGROUP_PARENT", None)
        else:
            os.environ["TSUBO_CGROUP_PARENT"] = previous
        for hierarchy in leakcheck.cgroup_hierarchies():
            directory = hierarchy / parent
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
