"""Host-state snapshots for leak checking (used by the autouse `leak_check` fixture).

    before = snapshot()
    ...                      # the test
    reap_zombie_children()
    after = snapshot()
    diff = compare(before, after)
    if diff: pytest.fail(str(diff))

What a snapshot holds (all of the current process's view):
  links     names of network links in the current netns (`ip -o link`)
  netns     named network namespaces (`ip netns list`)
  mounts    (mount point, fstype) of /proc/self/mountinfo, as a multiset
  cgroups   "<hierarchy>/<path>" of every cgroup directory whose name, or a parent's name,
            contains "tsubo", under every hierarchy mounted in /sys/fs/cgroup (depth <= 4)
  nft       "<family> <name>" of nft tables whose name contains "tsubo" (empty if no nft)
  children  live (non-zombie) child processes of this process: pid -> "comm (state)"
  fds       this process's open fds: fd -> readlink target

Nothing here kills or removes anything by name; `kill_pids` and `remove_cgroups` act on the
exact pids / directories they are given.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_WALK_DEPTH = 4
PR_SET_CHILD_SUBREAPER = 36

# iproute2 turns /run/netns into a shared bind mount of itself the first time any named netns
# is made, and never undoes it: that one mount is not a leak.
IGNORED_MOUNTPOINTS = frozenset({"/run/netns"})

# A regex; diff items matching it are not leaks (see compare()).
IGNORE_ENV = "TSUBO_LEAKCHECK_IGNORE"


@dataclass(frozen=True)
class Snapshot:
    links: frozenset[str]
    netns: frozenset[str]
    mounts: tuple[tuple[str, str], ...]
    cgroups: frozenset[str]
    nft: frozenset[str]
    children: dict[int, str]
    fds: dict[int, str]


@dataclass
class LeakDiff:
    """Per category: what appeared (`added`) and what disappeared (`removed`)."""

    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.added.values()) or any(self.removed.values())

    def lines(self) -> list[str]:
        out: list[str] = []
        for cat in sorted(set(self.added) | set(self.removed)):
            out += [f"  {cat}: + {item}" for item in self.added.get(cat, [])]
            out += [f"  {cat}: - {item}" for item in self.removed.get(cat, [])]
        return out

    def mentions(self, text: str) -> bool:
        return any(text in line for line in self.lines())

    def __str__(self) -> str:
        return "\n".join(self.lines())


# ---------------------------------------------------------------------------------------------
# collectors


def _run(argv: list[str]) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=20, check=False, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def links() -> frozenset[str]:
    names = set()
    for line in _run(["ip", "-o", "link", "show"]).splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@", 1)[0])
    return frozenset(names)


def named_netns() -> frozenset[str]:
    return frozenset(
        line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()
    )


def mounts() -> tuple[tuple[str, str], ...]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        out.append((fields[4], fields[sep + 1]))
    return tuple(out)


def cgroup_hierarchies() -> list[Path]:
    """Every cgroup hierarchy mount under /sys/fs/cgroup (v1 controllers, named, unified)."""
    roots = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        mountpoint = Path(fields[4])
        if fields[sep + 1] in ("cgroup", "cgroup2") and (
            mountpoint == CGROUP_ROOT or CGROUP_ROOT in mountpoint.parents
        ):
            roots.append(mountpoint)
    return sorted(set(roots))


def tsubo_cgroups(depth: int = CGROUP_WALK_DEPTH) -> frozenset[str]:
    found: set[str] = set()

    def walk(root: Path, rel: str, level: int) -> None:
        if level > depth:
            return
        try:
            entries = list(os.scandir(root / rel if rel else root))
        except OSError:
            return
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if "tsubo" in sub:  # the dir or one of its parents is tsubo's
                found.add(f"{_hier_name(root)}/{sub}")
            walk(root, sub, level + 1)

    for hier in cgroup_hierarchies():
        walk(hier, "", 1)
    return frozenset(found)


def _hier_name(hier: Path) -> str:
    return str(hier.relative_to(CGROUP_ROOT)) if hier != CGROUP_ROOT else "."


def cgroup_path(name: str) -> Path:
    """A snapshot's cgroup name ("<hierarchy>/<path>") -> the directory."""
    hier, _, rel = name.partition("/")
    return (CGROUP_ROOT if hier == "." else CGROUP_ROOT / hier) / rel


def nft_tables() -> frozenset[str]:
    if shutil.which("nft") is None:
        return frozenset()
    tables = set()
    for line in _run(["nft", "list", "tables"]).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "table" and "tsubo" in parts[-1]:
            tables.add(f"{parts[1]} {parts[2]}")
    return frozenset(tables)


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return comm, rest[0], int(rest[1])


def child_processes(parent: int | None = None) -> dict[int, tuple[str, str]]:
    """All children of `parent` (default: this process): pid -> (comm, state)."""
    parent = os.getpid() if parent is None else parent
    out: dict[int, tuple[str, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None and st[2] == parent:
            out[int(name)] = (st[0], st[1])
    return out


def live_children() -> dict[int, str]:
    return {
        pid: f"{comm} ({state})" for pid, (comm, state) in child_processes().items() if state != "Z"
    }


def open_fds() -> dict[int, str]:
    out = {}
    # The listing's own directory fd appears in it and is closed right after; readlink of it
    # then fails, so it drops out.
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return out


def snapshot() -> Snapshot:
    return Snapshot(
        links=links(),
        netns=named_netns(),
        mounts=mounts(),
        cgroups=tsubo_cgroups(),
        nft=nft_tables(),
        children=live_children(),
        fds=open_fds(),
    )


# ---------------------------------------------------------------------------------------------
# comparison


def _set_diff(a: Iterable[str], b: Iterable[str]) -> tuple[list[str], list[str]]:
    sa, sb = set(a), set(b)
    return sorted(sb - sa), sorted(sa - sb)


def ignore_pattern_from_env() -> re.Pattern[str] | None:
    """$TSUBO_LEAKCHECK_IGNORE as a regex (searched in each diff item), or None."""
    raw = os.environ.get(IGNORE_ENV, "")
    return re.compile(raw) if raw else None


def compare(
    before: Snapshot,
    after: Snapshot,
    *,
    ignore_cgroups: Iterable[str] = (),
    ignore: re.Pattern[str] | None = None,
) -> LeakDiff:
    """What differs between two snapshots.

    `ignore_cgroups`: cgroup names (as in a snapshot) that may appear without counting as a
    leak. `ignore`: items (as rendered in the diff) matching this regex are dropped -- for
    hosts where other test sessions run at the same time; empty by default."""
    diff = LeakDiff()

    def put(cat: str, added: list[str], removed: list[str]) -> None:
        if ignore is not None:
            added = [i for i in added if not ignore.search(i)]
            removed = [i for i in removed if not ignore.search(i)]
        if added:
            diff.added[cat] = added
        if removed:
            diff.removed[cat] = removed

    put("links", *_set_diff(before.links, after.links))
    put("netns", *_set_diff(before.netns, after.netns))

    mb = collections.Counter(m for m in before.mounts if m[0] not in IGNORED_MOUNTPOINTS)
    ma = collections.Counter(m for m in after.mounts if m[0] not in IGNORED_MOUNTPOINTS)
    put(
        "mounts",
        [f"{mp} ({fs})" for (mp, fs), n in sorted((ma - mb).items()) for _ in range(n)],
        [f"{mp} ({fs})" for (mp, fs), n in sorted((mb - ma).items()) for _ in range(n)],
    )

    ignored = set(ignore_cgroups)
    added_cg, removed_cg = _set_diff(before.cgroups, after.cgroups)
    put("cgroups", [c for c in added_cg if c not in ignored], removed_cg)
    put("nft tables", *_set_diff(before.nft, after.nft))
    put(
        "processes",
        [
            f"pid {p}: {after.children[p]}"
            for p in sorted(set(after.children) - set(before.children))
        ],
        [],
    )
    put(
        "fds",
        [
            f"{fd} -> {after.fds[fd]}"
            for fd in sorted(after.fds)
            if before.fds.get(fd) != after.fds[fd]
        ],
        [f"{fd} -> {before.fds[fd]}" for fd in sorted(before.fds) if fd not in after.fds],
    )
    return diff


# ---------------------------------------------------------------------------------------------
# actions (exact pids / paths only)


def set_child_subreaper() -> None:
    """Make this process the subreaper of its descendants (orphans are reparented to us)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def reap_zombie_children() -> dict[int, int]:
    """waitpid(WNOHANG) every child of ours that /proc shows as a zombie: {pid: wait status}."""
    reaped = {}
    for pid, (_comm, state) in child_processes().items():
        if state != "Z":
            continue
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if got == pid:
            reaped[pid] = status
    return reaped


def kill_pids(pids: Iterable[int], timeout: float = 5.0) -> list[str]:
    """SIGKILL exactly these pids (only if still our children), then reap them.

    Returns problems (pids that would not go away)."""
    mine = set(pids) & set(child_processes())
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    pending = set(mine)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                got, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got = pid
            if got == pid:
                pending.discard(pid)
        if pending:
            time.sleep(0.02)
    return [f"pid {pid} did not exit after SIGKILL" for pid in sorted(pending)]


def remove_cgroups(names: Iterable[str], timeout: float = 5.0) -> list[str]:
    """rmdir these cgroups (snapshot names), deepest first; retried briefly while killed
    processes drain. Returns problems."""
    todo = sorted(set(names), key=lambda n: (n.count("/"), n), reverse=True)
    problems = []
    for name in todo:
        path = cgroup_path(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    problems.append(f"rmdir {path}: {e.strerror}")
                    break
                time.sleep(0.05)
    return problems
