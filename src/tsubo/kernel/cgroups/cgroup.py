"""One container's cgroup: a directory in every mounted hierarchy, and what is done with it.

What it owns
    :class:`Cgroup` — create (``mkdir -p`` per hierarchy, undone on failure), apply
    resources (``plan.py`` plans, ``common.apply_writes`` writes), join, list processes,
    freeze and thaw, OOM and memory readings, destroy, and the mounts that make up a
    container's ``/sys/fs/cgroup``.

A :class:`Cgroup` gets one directory per hierarchy (``paths``), including the v2 mount on
hybrid hosts (key ``"unified"``) and named hierarchies such as ``name=systemd``, like runc's
cgroupfs driver does, so that every view of the process agrees. The absolute directories
are recorded (:meth:`Cgroup.to_json`) so ``delete``, run from another cgroup, removes exactly
the same directories.

Speed: this runs on every container create, so the modules on that path import only ``os``,
``errno`` and tsubo's errors and procfs; every write is a bare ``open``/``write``/``close``.
"""

from __future__ import annotations

import errno
import os

from tsubo.errors import InvalidArgument, TeardownErrors, TsuboError, Unsupported
from tsubo.kernel.cgroups.common import (
    HOST,
    OP,
    UNIFIED,
    CgroupLayout,
    Route,
    apply_writes,
    keyed_value,
    normalize_path,
    own_cgroups,
    read,
    read_or_raise,
    write,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.kernel.cgroups.common import CgroupWrite, HostFiles
    from tsubo.kernel.cgroups.resources import ResourcesSpec

# mount(2) flags (linux/mount.h); repeated here so that importing this module does not pull
# in ctypes through tsubo.kernel.syscalls.
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_RELATIME = 1 << 21
_MS_SAFE = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC

# v1 memory limits read back as PAGE_COUNTER_MAX * PAGE_SIZE when unlimited; anything this
# large means "no limit" whatever the page size.
_V1_UNLIMITED = 1 << 62

_FREEZE_TIMEOUT = 2.0  # seconds before freeze() gives up and thaws again
_RMDIR_TIMEOUT = 1.0  # seconds destroy() retries EBUSY (processes still exiting)


class Cgroup:
    """One container's cgroup: a directory in every mounted hierarchy.

    ``path`` is absolute (``/tsubo/abc``, placed under each hierarchy's mount point) or
    relative (placed under this process's own cgroup in each hierarchy; see
    :func:`resolve_cgroup_path`). ``paths`` maps each layout key to its directory; keys of
    co-mounted controllers share one directory, which is created, joined and removed once.
    """

    __slots__ = ("layout", "path", "paths")

    def __init__(self, layout: CgroupLayout, path: str, *, with_unified: bool = True) -> None:
        """*with_unified* False leaves a hybrid host's v2 tree out (see :meth:`join_self`)."""
        normalized = normalize_path(path, path)
        if normalized in ("", "/"):
            raise InvalidArgument(OP, path, detail="refusing the root cgroup")
        if not layout.hierarchies:
            raise Unsupported(OP, path, detail="no cgroup filesystem is mounted")
        self.layout = layout
        self.path = normalized
        self.paths: dict[str, str] = {}
        own = own_cgroups() if not normalized.startswith("/") else {}
        for key, mount_point in layout.hierarchies.items():
            if key == UNIFIED and not with_unified and layout.kind == "hybrid":
                continue
            if normalized.startswith("/"):
                self.paths[key] = mount_point.rstrip("/") + normalized
                continue
            base = own.get(key, "/")
            root = layout.mount_roots.get(key, "/")
            if root != "/" and (base == root or base.startswith(root + "/")):
                base = base[len(root) :]
            self.paths[key] = mount_point.rstrip("/") + base.rstrip("/") + "/" + normalized

    def __repr__(self) -> str:
        return f"Cgroup({self.path!r})"

    # --- state ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, str]:
        """``{"path": <cgroup path>, <key>: <absolute dir>, ...}`` for state.json."""
        data = {"path": self.path}
        data.update(self.paths)
        return data

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Cgroup:
        """Rebuild from :meth:`to_json` output, keeping the recorded directories exactly."""
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            raise InvalidArgument("load cgroup state", "", detail="expected {'path': ...}")
        paths: dict[str, str] = {}
        for key, value in data.items():
            if key == "path":
                continue
            if not isinstance(value, str) or not value.startswith("/") or ".." in value.split("/"):
                raise InvalidArgument("load cgroup state", key, detail=f"bad path {value!r}")
            paths[key] = value
        cgroup = cls.__new__(cls)
        cgroup.layout = CgroupLayout.detect()
        cgroup.path = data["path"]
        cgroup.paths = paths
        return cgroup

    def _dirs(self) -> list[tuple[str, str]]:
        """``(key, dir)`` once per distinct directory, in layout order."""
        seen: set[str] = set()
        out = []
        for key, directory in self.paths.items():
            if directory not in seen:
                seen.add(directory)
                out.append((key, directory))
        return out

    def _require(self, controller: str, what: str) -> tuple[str, int]:
        """``(dir, version)`` of the hierarchy holding *controller* (Unsupported if none)."""
        return Route(self.paths, self.layout).require(controller, what)

    @property
    def devices_enforced(self) -> bool:
        """Whether :meth:`apply` enforces device rules (only a v1 ``devices`` hierarchy)."""
        return "devices" in self.paths

    # --- create --------------------------------------------------------------------------

    def create(self) -> None:
        """``mkdir -p`` in every hierarchy; undo what this call made if any step fails.

        v1 ``cpuset``: a new level starts with empty ``cpus``/``mems`` (joining it would
        fail with ENOSPC), so each new level copies them from its parent. v2: the
        controllers the v2 hierarchy holds are enabled in every ancestor's
        ``cgroup.subtree_control`` (left enabled on undo: others may rely on them).
        """
        created: list[str] = []
        try:
            for key, directory in self._dirs():
                # a directory restored from state.json whose hierarchy is no longer mounted
                # gets only its leaf made (never parents outside a known mount)
                mount_point = self.layout.hierarchies.get(key) or directory.rsplit("/", 1)[0]
                new = _mkdir_p(directory, mount_point, created)
                if key == "cpuset":
                    for level in new:
                        _fill_cpuset(level)
                elif key == UNIFIED:
                    self._enable_v2_controllers(mount_point, directory)
        except BaseException as error:
            for directory in reversed(created):
                try:
                    os.rmdir(directory)
                except OSError:
                    continue  # best effort: the original error is what matters
            if isinstance(error, OSError):
                raise TsuboError.from_os_error(
                    "create cgroup", error.filename or self.path, error
                ) from None
            raise

    def _enable_v2_controllers(self, mount_point: str, directory: str) -> None:
        wanted = self.layout.unified_controllers
        if not wanted:
            return
        level = mount_point.rstrip("/")
        for part in directory[len(level) :].strip("/").split("/")[:-1]:
            _enable_subtree(level, wanted)
            level += "/" + part
        _enable_subtree(level, wanted)

    # --- apply ---------------------------------------------------------------------------

    def apply(self, resources: ResourcesSpec) -> None:
        """Write a validated ``linux.resources`` into the cgroup files (see ``plan.py``:
        each field goes to the hierarchy that holds its controller; fields this host cannot
        honour raise ``Unsupported`` before anything is written)."""
        apply_writes(self.plan(resources))

    def plan(self, resources: ResourcesSpec, host: HostFiles = HOST) -> tuple[CgroupWrite, ...]:
        """The writes :meth:`apply` makes, without making them."""
        from tsubo.kernel.cgroups.plan import plan_resources

        return plan_resources(resources, self.paths, self.layout, host)

    # --- processes -----------------------------------------------------------------------

    def join(self, pid: int) -> None:
        """Move process ``pid`` (0: the caller) into the cgroup in every hierarchy."""
        value = str(pid)
        for _, directory in self._dirs():
            write(directory + "/cgroup.procs", value)

    def join_self(self) -> None:
        """Move the calling, single-threaded process into the cgroup in every hierarchy.

        In v1 hierarchies it writes "0" to ``tasks``: moving only the calling thread skips
        the kernel's global ``cgroup_threadgroup_rwsem`` write lock, whose first taker
        waits a full RCU grace period (~20 ms measured here; runc pays it on every
        container). For a single-threaded process the thread is the whole process. A v2
        move has no such form: it goes through ``cgroup.procs`` and pays the wait (which
        is why a hybrid host's hugetlb-only v2 tree is joined only when it is needed).
        """
        for key, directory in self._dirs():
            write(directory + ("/cgroup.procs" if key == UNIFIED else "/tasks"), "0")

    def _process_dir(self) -> str:
        if self.layout.kind == "v2" and UNIFIED in self.paths:
            return self.paths[UNIFIED]
        for key in ("pids", "memory"):
            if key in self.paths:
                return self.paths[key]
        for key, directory in self.paths.items():
            if key != UNIFIED:
                return directory
        return self.paths[UNIFIED]

    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups (each pid once)."""
        found: list[int] = []
        seen: set[int] = set()
        for directory in _walk(self._process_dir()):
            try:
                text = read(directory + "/cgroup.procs")
            except FileNotFoundError:
                continue
            except OSError as error:
                raise TsuboError.from_os_error("list cgroup processes", directory, error) from None
            for word in text.split():
                pid = int(word)
                if pid not in seen:
                    seen.add(pid)
                    found.append(pid)
        return found

    # --- freezer -------------------------------------------------------------------------

    def _freezer(self) -> tuple[str, int]:
        """v1 ``freezer.state``, else v2 ``cgroup.freeze`` (a core file of every v2 group)."""
        if "freezer" in self.paths:
            return self.paths["freezer"], 1
        if UNIFIED in self.paths:
            return self.paths[UNIFIED], 2
        raise Unsupported("freeze cgroup", self.path, detail="no freezer on this host")

    def freeze(self) -> None:
        """Freeze every process and wait until the kernel reports the cgroup frozen."""
        import time

        directory, version = self._freezer()
        state_file = directory + ("/freezer.state" if version == 1 else "/cgroup.freeze")
        freeze_value = "FROZEN" if version == 1 else "1"
        write(state_file, freeze_value)
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        delay = 0.0001
        attempt = 0
        while not self.is_frozen():
            if time.monotonic() > deadline:
                self.thaw()
                raise TsuboError(
                    "freeze cgroup",
                    directory,
                    errno=errno.EBUSY,
                    detail="the cgroup did not reach the frozen state",
                    hint="a process may be stuck in uninterruptible sleep (D state)",
                )
            attempt += 1
            if version == 1 and attempt % 25 == 0:
                # v1 can stay FREEZING when tasks race with fork; writing again retries
                write(state_file, freeze_value)
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def thaw(self) -> None:
        """Let the processes run again."""
        directory, version = self._freezer()
        if version == 1:
            write(directory + "/freezer.state", "THAWED")
        else:
            write(directory + "/cgroup.freeze", "0")

    def is_frozen(self) -> bool:
        """True once every process is frozen (v1 ``FROZEN``, v2 ``frozen 1``)."""
        directory, version = self._freezer()
        if version == 1:
            return read_or_raise(directory + "/freezer.state").strip() == "FROZEN"
        return keyed_value(read_or_raise(directory + "/cgroup.events"), "frozen") == 1

    # --- memory readings -----------------------------------------------------------------

    def oom_kill_count(self) -> int:
        """How many processes the OOM killer killed in this cgroup."""
        directory, version = self._require("memory", self.path)
        if version == 1:
            text = read_or_raise(directory + "/memory.oom_control")
        else:
            text = read_or_raise(directory + "/memory.events")
        return keyed_value(text, "oom_kill")

    def memory_limit(self) -> int | None:
        """The memory limit in bytes, or None when unlimited."""
        directory, version = self._require("memory", self.path)
        if version == 1:
            value = int(read_or_raise(directory + "/memory.limit_in_bytes"))
            return None if value >= _V1_UNLIMITED else value
        text = read_or_raise(directory + "/memory.max").strip()
        return None if text == "max" else int(text)

    # --- destroy -------------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove the cgroup (and sub-cgroups, deepest first) from every hierarchy.

        Already gone counts as success. EBUSY is retried for about a second (exiting
        processes leave the cgroup a moment after the kill). Failures do not stop the
        others; they are raised together as ``TeardownErrors``. Only this cgroup's own
        directory and what lies below it are removed, never the shared parent.
        """
        pending: list[str] = []
        errors: list[BaseException] = []
        for _, directory in self._dirs():
            try:
                pending.extend(_walk(directory, deepest_first=True))
            except TsuboError as error:
                errors.append(error)
        deadline = 0.0
        delay = 0.001
        while pending:
            busy: list[str] = []
            for directory in pending:
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    if error.errno == errno.EBUSY:
                        busy.append(directory)
                    else:
                        errors.append(TsuboError.from_os_error("remove cgroup", directory, error))
            if not busy:
                break
            import time

            now = time.monotonic()
            if not deadline:
                deadline = now + _RMDIR_TIMEOUT
            if now > deadline:
                errors.extend(
                    TsuboError(
                        "remove cgroup",
                        directory,
                        errno=errno.EBUSY,
                        hint="processes are still in the cgroup",
                    )
                    for directory in busy
                )
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            pending = busy
        if errors:
            raise TeardownErrors("destroy cgroup", self.path, errors)

    # --- mounts --------------------------------------------------------------------------

    def mount_plan(
        self, cgroupns: bool, *, read_only: bool = True
    ) -> list[tuple[str, str, str, int, str]]:
        """The mounts that make up a container's ``/sys/fs/cgroup``, in order.

        Each entry is the argument list of one ``mount(2)`` call:
        ``(source, target, fstype, flags, data)``, where ``target`` is relative to the
        cgroup mount destination (``""`` is the destination itself). The caller creates
        each target directory before mounting it and applies the entries in order.

        * v2: one ``cgroup2`` mount when ``cgroupns`` (the container's namespace root is its
          cgroup), else a bind of the container's own v2 directory.
        * v1 / hybrid: a ``tmpfs`` (mode 755) at the destination; then per hierarchy key
          (``cpu``, ``memory``, ``systemd`` for ``name=systemd``, ``unified`` for the v2
          mount ...) a ``cgroup`` mount with the hierarchy's controllers as data when
          ``cgroupns``, else a bind of our own directory; finally the tmpfs is remounted
          read-only.

        Read-only (the default): fresh ``cgroup``/``cgroup2`` mounts carry ``MS_RDONLY``;
        a bind is followed by its own ``MS_REMOUNT|MS_BIND|MS_RDONLY`` entry (a bind
        cannot be made read-only in one call).
        """
        rdonly = _MS_RDONLY if read_only else 0
        plan: list[tuple[str, str, str, int, str]] = []

        def bind(source: str, target: str) -> None:
            plan.append((source, target, "", _MS_BIND | _MS_REC, ""))
            if read_only:
                plan.append(("", target, "", _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_SAFE, ""))

        if self.layout.kind == "v2":
            if cgroupns:
                plan.append(("cgroup2", "", "cgroup2", _MS_SAFE | _MS_RELATIME | rdonly, ""))
            else:
                bind(self.paths[UNIFIED], "")
            return plan
        plan.append(("tmpfs", "", "tmpfs", _MS_SAFE | _MS_RELATIME, "mode=755"))
        for key, directory in self.paths.items():
            target = key[5:] if key.startswith("name=") else key
            if key == UNIFIED:
                if cgroupns:
                    plan.append(
                        ("cgroup2", target, "cgroup2", _MS_SAFE | _MS_RELATIME | rdonly, "")
                    )
                else:
                    bind(directory, target)
                continue
            if cgroupns:
                data = self.layout.mount_options.get(key, key)
                plan.append(("cgroup", target, "cgroup", _MS_SAFE | _MS_RELATIME | rdonly, data))
            else:
                bind(directory, target)
        if read_only:
            plan.append(
                (
                    "tmpfs",
                    "",
                    "tmpfs",
                    _MS_REMOUNT | _MS_SAFE | _MS_RELATIME | _MS_RDONLY,
                    "mode=755",
                )
            )
        return plan


# --------------------------------------------------------------------------------------
# Helpers for Cgroup
# --------------------------------------------------------------------------------------


def _mkdir_p(directory: str, stop: str, created: list[str]) -> list[str]:
    """Make ``directory`` and missing parents below ``stop``; returns the new ones, top first.

    Tries the leaf first: on the hot path every parent exists already (one mkdir).
    """
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        return []
    except FileNotFoundError:
        parent = directory.rsplit("/", 1)[0]
        if len(parent) <= len(stop.rstrip("/")) or not parent:
            raise
        new = _mkdir_p(parent, stop, created)
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            return new
        created.append(directory)
        new.append(directory)
        return new
    created.append(directory)
    return [directory]


def _fill_cpuset(directory: str) -> None:
    """Copy ``cpuset.cpus``/``mems`` from the parent when empty (v1 starts them empty)."""
    parent = directory.rsplit("/", 1)[0]
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read_or_raise(f"{directory}/{name}").strip():
            value = read_or_raise(f"{parent}/{name}").strip()
            if value:
                write(f"{directory}/{name}", value)


def _enable_subtree(level: str, wanted: frozenset[str]) -> None:
    """Enable in ``level``'s ``cgroup.subtree_control`` the wanted controllers it has."""
    available = set(read_or_raise(level + "/cgroup.controllers").split())
    enabled = set(read_or_raise(level + "/cgroup.subtree_control").split())
    missing = sorted((available & wanted) - enabled)
    if missing:
        write(level + "/cgroup.subtree_control", " ".join("+" + name for name in missing))


def _walk(top: str, deepest_first: bool = False) -> list[str]:
    """``top`` and every cgroup directory below it (parents first, or deepest first)."""
    out: list[str] = []

    def visit(directory: str) -> bool:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return False
        except OSError as error:
            raise TsuboError.from_os_error("list cgroup", directory, error) from None
        if not deepest_first:
            out.append(directory)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                visit(entry.path)
        if deepest_first:
            out.append(directory)
        return True

    visit(top)
    return out


