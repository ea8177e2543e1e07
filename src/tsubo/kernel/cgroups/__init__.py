"""Control groups: the only package that touches cgroupfs (v1, v2 and hybrid hosts).

What it owns
    Creating, configuring, joining, freezing and removing one container's cgroup in every
    mounted hierarchy, and turning a validated ``linux.resources`` into cgroupfs writes.

Host layouts
    * **v2** — one ``cgroup2`` mount (usually ``/sys/fs/cgroup``) holds every controller.
    * **v1** — one ``cgroup`` mount per hierarchy (``cpu``, ``memory``, ``name=systemd`` ...).
    * **hybrid** — v1 hierarchies *plus* a ``cgroup2`` mount (systemd puts it at
      ``/sys/fs/cgroup/unified``). A controller lives in v2 only when no v1 hierarchy has it
      bound; the kernel lists those in the v2 root's ``cgroup.controllers``. Each controller
      is routed to the version that holds it (``plan.py``).

Plan, then apply (as the network code does)
    ``plan.py`` turns the resources, the container's directories and the host's layout into
    a tuple of :class:`CgroupWrite` (pure but for what it asks the host's cgroupfs through
    :class:`HostFiles`: which files exist, the current memory limit); :meth:`Cgroup.apply`
    makes each write through the one /proc and /sys writer (:func:`tsubo.kernel.procfs.write`).
    ``v1.py`` and ``v2.py`` hold each version's files, order and value conversions;
    ``resources.py`` the attributes read of ``linux.resources`` (protocols: the values are
    oci/'s, validated there). This module is the common part: the host's layout
    (:class:`CgroupLayout`, read once per process), cgroup paths
    (:func:`resolve_cgroup_path`: relative paths follow runc's cgroupfs driver, relative to
    the caller's own cgroup per hierarchy; the systemd ``slice:prefix:name`` form is
    refused), file access and the errors of failed writes, and the :class:`Cgroup` object.
    The decisions (joining without the global lock, hybrid routing, devices, OOM) are in
    docs/runtime.md.

A :class:`Cgroup` gets one directory per hierarchy (``paths``), including the v2 mount on
hybrid hosts (key ``"unified"``) and named hierarchies such as ``name=systemd``, like runc's
cgroupfs driver does, so that every view of the process agrees. The absolute directories
are recorded (:meth:`Cgroup.to_json`) so ``delete``, run from another cgroup, removes exactly
the same directories.

Speed: this runs on every container create, so the modules on that path import only ``os``,
``errno`` and tsubo's errors and procfs; every write is a bare ``open``/``write``/``close``.
The common part lives in this module rather than a ``common.py`` because each module on the
create path costs ~0.1 ms (of a ~20 ms ``run``; measured); ``v2.py`` is imported only on
hosts that route a controller to it.

Errors: every failed write raises :class:`~tsubo.errors.TsuboError` (or ``Unsupported``)
with operation ``"set cgroup"``, the file as object, and the errno.
"""

from __future__ import annotations

import errno
import os

from tsubo.errors import InvalidArgument, TeardownErrors, TsuboError, Unsupported
from tsubo.kernel import procfs

__all__ = ["HOST", "Cgroup", "CgroupLayout", "CgroupWrite", "HostFiles", "resolve_cgroup_path"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

OP = "set cgroup"
#: the layout key of the cgroup2 mount (hybrid: systemd mounts it at .../unified)
UNIFIED = "unified"

# Superblock options of a v1 cgroup mount that are not controller names (cgroups(7)); only
# used when /proc/cgroups cannot be read.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {
        "rw",
        "ro",
        "none",
        "xattr",
        "noprefix",
        "clone_children",
        "cpuset_v2_mode",
        "favordynmods",
        "nofavordynmods",
    }
)


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------


class CgroupLayout:
    """Which cgroup hierarchies are mounted where, read from ``/proc/self/mountinfo``.

    ``kind`` is ``"v1"``, ``"v2"`` or ``"hybrid"``. ``hierarchies`` maps a key to a mount
    point: v1 controller names as mounted (``cpu``, ``cpuacct``, ``memory``,
    ``name=systemd`` ...; co-mounted controllers each get a key to the same mount point) and
    ``"unified"`` for the cgroup2 mount. ``unified_controllers`` lists the controllers the v2
    hierarchy holds (its root ``cgroup.controllers``); ``mount_roots`` is each mount's root
    within its hierarchy (``/`` unless the mount is a bind or made in a cgroup namespace);
    ``mount_options`` is the controller list to pass as mount data for each v1 key.
    """

    __slots__ = ("hierarchies", "kind", "mount_options", "mount_roots", "unified_controllers")

    def __init__(
        self,
        kind: str,
        hierarchies: dict[str, str],
        unified_controllers: frozenset[str] = frozenset(),
        mount_roots: dict[str, str] | None = None,
        mount_options: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.hierarchies = hierarchies
        self.unified_controllers = unified_controllers
        self.mount_roots = mount_roots if mount_roots is not None else {}
        self.mount_options = mount_options if mount_options is not None else {}

    def __repr__(self) -> str:
        return f"CgroupLayout(kind={self.kind!r}, hierarchies={self.hierarchies!r})"

    @classmethod
    def detect(cls) -> CgroupLayout:
        """The layout of this host, read once per process (mounts do not move under us)."""
        global _LAYOUT
        if _LAYOUT is None:
            mountinfo = read_or_raise("/proc/self/mountinfo", "detect cgroups")
            try:
                known: frozenset[str] | None = _parse_proc_cgroups(read("/proc/cgroups"))
            except OSError:
                known = None
            layout = cls.from_mountinfo(mountinfo, known)
            unified = layout.hierarchies.get(UNIFIED)
            if unified is not None:
                try:
                    text = read(unified + "/cgroup.controllers")
                except OSError:
                    text = ""
                layout.unified_controllers = frozenset(text.split())
            _LAYOUT = layout
        return _LAYOUT

    @classmethod
    def from_mountinfo(
        cls,
        mountinfo: str,
        known_controllers: frozenset[str] | None = None,
        unified_controllers: frozenset[str] = frozenset(),
    ) -> CgroupLayout:
        """Parse ``/proc/self/mountinfo`` text (pure; :meth:`detect` adds the file reads).

        The first mount of each hierarchy wins (later ones are binds, e.g. in containers).
        ``known_controllers`` comes from ``/proc/cgroups``; without it, superblock options
        that are known not to be controllers are skipped.
        """
        hierarchies: dict[str, str] = {}
        roots: dict[str, str] = {}
        options: dict[str, str] = {}
        for line in mountinfo.splitlines():
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fs = right.split(" ")
            if len(fs) < 3 or fs[0] not in ("cgroup", "cgroup2"):
                continue
            fields = left.split(" ")
            if len(fields) < 5:
                continue
            root = procfs.unescape_mountinfo(fields[3])
            mount_point = procfs.unescape_mountinfo(fields[4])
            if fs[0] == "cgroup2":
                if UNIFIED not in hierarchies:
                    hierarchies[UNIFIED] = mount_point
                    roots[UNIFIED] = root
                continue
            controllers = [
                opt
                for opt in fs[2].split(",")
                if opt.startswith("name=")
                or (
                    opt in known_controllers
                    if known_controllers is not None
                    else opt not in _V1_NON_CONTROLLER_OPTIONS and "=" not in opt
                )
            ]
            data = ",".join(controllers)
            for key in controllers:
                if key not in hierarchies:
                    hierarchies[key] = mount_point
                    roots[key] = root
                    options[key] = data
        has_v1 = any(key != UNIFIED for key in hierarchies)
        if not hierarchies:
            kind = "none"
        elif UNIFIED in hierarchies:
            kind = "hybrid" if has_v1 else "v2"
        else:
            kind = "v1"
        return cls(kind, hierarchies, unified_controllers, roots, options)


_LAYOUT: CgroupLayout | None = None


def _parse_proc_cgroups(text: str) -> frozenset[str]:
    """Controller names from ``/proc/cgroups`` (``#subsys_name hierarchy num enabled``)."""
    return frozenset(
        line.split("\t", 1)[0] for line in text.splitlines() if line and line[0] != "#"
    )


def own_cgroups() -> dict[str, str]:
    """The calling process's cgroup per key (``unified`` for the v2 line ``0::/...``)."""
    own: dict[str, str] = {}
    for line in read_or_raise("/proc/self/cgroup", "detect cgroups").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own[UNIFIED] = parts[2]
        else:
            for key in parts[1].split(","):
                own[key] = parts[2]
    return own


class Route:
    """Which directory (and hierarchy version) holds each controller of one cgroup: its v1
    hierarchy when one has it mounted, else the v2 one when that holds it."""

    __slots__ = ("layout", "paths")

    def __init__(self, paths: Mapping[str, str], layout: CgroupLayout) -> None:
        self.paths = paths
        self.layout = layout

    def target(self, controller: str) -> tuple[str, int] | None:
        """``(dir, version)`` of the hierarchy holding ``controller``, or None."""
        directory = self.paths.get(controller)
        if directory is not None and controller != UNIFIED:
            return directory, 1
        unified = self.paths.get(UNIFIED)
        if unified is not None and controller in self.layout.unified_controllers:
            return unified, 2
        return None

    def require(self, controller: str, what: str) -> tuple[str, int]:
        """:meth:`target`, or Unsupported naming *what* (the field that needs it)."""
        target = self.target(controller)
        if target is None:
            raise unsupported(
                what, f"no {controller} controller on this host ({self.layout.kind} cgroups)"
            )
        return target


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


def normalize_path(path: str, what: str) -> str:
    """Collapse ``//`` and ``/.``; refuse ``..`` (a cgroup path must stay below its base)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise InvalidArgument("resolve cgroup path", what, detail="'..' components are not allowed")
    for part in parts:
        if "\n" in part or "\0" in part:
            raise InvalidArgument("resolve cgroup path", what, detail="invalid character")
    joined = "/".join(parts)
    return "/" + joined if path.startswith("/") else joined


def resolve_cgroup_path(cgroups_path: str | None, container_id: str) -> str:
    """The cgroup path for a container, from the spec's ``linux.cgroupsPath``.

    * ``None`` or ``""`` -> ``/tsubo/<id>`` (the shared parent ``/tsubo`` marks ownership);
    * absolute -> normalised, as is;
    * relative -> normalised and still relative: :class:`Cgroup` puts it below the
      *calling process's own cgroup* in each hierarchy, as runc's cgroupfs driver does.

    ``..`` components and the systemd driver's ``slice:prefix:name`` form are refused with
    :class:`~tsubo.errors.InvalidArgument`.
    """
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(
                "resolve cgroup path", container_id, detail="invalid container id"
            )
        return "/tsubo/" + container_id
    if "/" not in cgroups_path and cgroups_path.count(":") == 2:
        raise InvalidArgument(
            "resolve cgroup path",
            cgroups_path,
            detail="systemd 'slice:prefix:name' paths need the systemd cgroup driver",
            hint="use a cgroupfs path such as /tsubo/<id>",
        )
    path = normalize_path(cgroups_path, cgroups_path)
    if path in ("", "/"):
        raise InvalidArgument(
            "resolve cgroup path", cgroups_path, detail="refusing the root cgroup"
        )
    return path


# --------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------


def read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_or_raise(path: str, operation: str = "read cgroup") -> str:
    try:
        return read(path)
    except OSError as error:
        raise TsuboError.from_os_error(operation, path, error) from None


def exists(path: str) -> bool:
    return os.access(path, os.F_OK)


class CgroupUsage:
    """One reading of a cgroup's use (:meth:`Cgroup.usage`)."""

    __slots__ = ("block_read", "block_write", "cpu_ns", "memory", "memory_limit", "pids")

    def __init__(self) -> None:
        self.cpu_ns = 0
        self.memory = 0
        self.memory_limit: int | None = None
        self.pids = 0
        self.block_read = 0
        self.block_write = 0


def _text_file(path: str) -> str:
    try:
        return read(path)
    except OSError:
        return ""


def _int_file(path: str) -> int:
    text = _text_file(path).strip()
    return int(text) if text.isdigit() else 0


def _keyed(path: str, key: str) -> int:
    return keyed_value(_text_file(path), key)


def keyed_value(text: str, key: str) -> int:
    """The number after ``key`` in a flat-keyed file (``memory.events``, ``oom_control``)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class HostFiles:
    """What planning may ask of the host's cgroupfs: whether a file exists (``memsw``,
    ``io.bfq.weight``, a huge page size), what a file holds (the current memory limit,
    for the order of two writes). This one reads the real files."""

    __slots__ = ()

    def exists(self, path: str) -> bool:
        return exists(path)

    def read(self, path: str) -> str:
        return read_or_raise(path)


HOST = HostFiles()


# --------------------------------------------------------------------------------------
# Writes: the unit of a plan, and the applier
# --------------------------------------------------------------------------------------


class CgroupWrite:
    """One ``write(2)`` of ``value`` to the cgroupfs file ``path``.

    ``optional``: the file may be missing or refused with EOPNOTSUPP (v1 kernel memory,
    which modern kernels dropped); nothing else is skipped. ``on_einval``: the writes to
    make instead when the kernel answers EINVAL (v1 ``cpu.cfs_period_us``: a shorter period
    can break the current quota against the parent; runc then writes the quota first).
    Read-only once made."""

    __slots__ = ("on_einval", "optional", "path", "value")
    path: str
    value: str
    optional: bool
    on_einval: tuple[CgroupWrite, ...]

    def __init__(self, path: str, value: str, *, optional: bool = False,
                 on_einval: tuple[CgroupWrite, ...] = ()) -> None:
        _init(self, "path", path)
        _init(self, "value", value)
        _init(self, "optional", optional)
        _init(self, "on_einval", on_einval)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CgroupWrite is read-only")

    def _key(self) -> tuple[str, str, bool, tuple[CgroupWrite, ...]]:
        return self.path, self.value, self.optional, self.on_einval

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CgroupWrite) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        extra = ", optional" if self.optional else ""
        extra += f", on_einval={self.on_einval!r}" if self.on_einval else ""
        return f"CgroupWrite({self.path!r}, {self.value!r}{extra})"


_init = object.__setattr__


def apply_writes(writes: Sequence[CgroupWrite]) -> None:
    """Carry out a plan: each write in order; the first failure raises. Consecutive plain
    writes to one file (the device rules) go through one open of it."""
    index = 0
    while index < len(writes):
        item = writes[index]
        if item.optional or item.on_einval:
            try:
                write(item.path, item.value)
            except TsuboError as error:
                if item.optional and error.errno in (errno.ENOENT, errno.EOPNOTSUPP):
                    pass  # absent or refused: see CgroupWrite.optional
                elif item.on_einval and error.errno == errno.EINVAL:
                    apply_writes(item.on_einval)
                else:
                    raise
            index += 1
            continue
        end = index + 1
        while (end < len(writes) and writes[end].path == item.path
               and not writes[end].optional and not writes[end].on_einval):
            end += 1
        procfs.write_each(item.path, [w.value for w in writes[index:end]], wrap=write_error)
        index = end


def write(path: str, value: str) -> None:
    """One ``write(2)`` of ``value`` to a cgroupfs file (the kernel parses per write)."""
    procfs.write(path, value, wrap=write_error)


_HINTS = {
    errno.EACCES: "needs root with write access to cgroupfs",
    errno.EPERM: "needs root with write access to cgroupfs (or a delegated subtree)",
    errno.EROFS: "cgroupfs is mounted read-only here",
}


def write_error(path: str, value: str, error: OSError) -> TsuboError:
    """The error for a failed cgroupfs write: Unsupported when the file is missing or the
    kernel refuses the operation, else TsuboError with a hint for the usual causes."""
    code = error.errno or 0
    name = path.rsplit("/", 1)[-1]
    hint = _HINTS.get(code, "")
    if code == errno.ENOENT:
        return Unsupported(
            OP,
            path,
            errno=code,
            detail=f"write {value!r}",
            hint="the controller is not enabled for this cgroup or the kernel lacks this file",
        )
    if code == errno.EOPNOTSUPP:
        return Unsupported(OP, path, errno=code, detail=f"write {value!r}")
    if name.startswith("memory.") and code in (errno.EBUSY, errno.EINVAL, errno.EPERM):
        if "memsw" in name:
            hint = "memory+swap must stay >= the memory limit and above current usage"
        else:
            hint = "the new limit may be below current usage, or above memory+swap"
    elif name == "cgroup.procs" and code == errno.ENOSPC:
        hint = "cpuset.cpus or cpuset.mems of the cgroup is empty"
    elif name == "cgroup.procs" and code == errno.EOPNOTSUPP:
        hint = "cgroup v2 'no internal processes': the cgroup has enabled sub-controllers"
    elif name == "cgroup.subtree_control" and code == errno.EBUSY:
        hint = "cgroup v2 'no internal processes': the parent cgroup has processes in it"
    elif name.startswith("cpu.rt_") and code == errno.EINVAL:
        hint = "real-time runtime exceeds what the parent cgroup has left"
    elif name.startswith("cpuset.") and code == errno.EINVAL:
        hint = "cpus/mems must be a subset of the parent's"
    elif code == errno.EBUSY:
        hint = "the cgroup is in use"
    return TsuboError(OP, path, errno=code, detail=f"write {value!r}", hint=hint)


def unsupported(what: str, detail: str) -> Unsupported:
    return Unsupported(OP, what, detail=detail)


def first_existing(host: HostFiles, directory: str, names: Iterable[str], what: str) -> str:
    """The first of *names* that exists in *directory* (kernels and I/O schedulers name
    some files differently); Unsupported naming *what* when none does."""
    names = tuple(names)
    for name in names:
        path = f"{directory}/{name}"
        if host.exists(path):
            return path
    raise unsupported(what, f"none of {', '.join(names)} exists in {directory}")


def limit_text(value: int) -> str:
    """A v2 limit file's value: ``max`` for -1 (unlimited)."""
    return "max" if value < 0 else str(value)


# --------------------------------------------------------------------------------------
# The cgroup
# --------------------------------------------------------------------------------------

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

    __slots__ = ("_layout", "path", "paths")

    def __init__(self, layout: CgroupLayout, path: str, *, with_unified: bool = True) -> None:
        """*with_unified* False leaves a hybrid host's v2 tree out (see :meth:`join_self`)."""
        normalized = normalize_path(path, path)
        if normalized in ("", "/"):
            raise InvalidArgument(OP, path, detail="refusing the root cgroup")
        if not layout.hierarchies:
            raise Unsupported(OP, path, detail="no cgroup filesystem is mounted")
        self._layout: CgroupLayout | None = layout
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

    @property
    def layout(self) -> CgroupLayout:
        """The host's layout; a cgroup rebuilt by :meth:`from_json` reads it (mountinfo) only
        when an operation needs it: ``state``, ``kill`` and ``delete`` do not."""
        if self._layout is None:
            self._layout = CgroupLayout.detect()
        return self._layout

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
        cgroup._layout = None
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

    def apply(self, writes: Sequence[CgroupWrite]) -> None:
        """Carry out a plan of writes (``plan.plan_resources`` makes one from a validated
        ``linux.resources``): each in order; the first failure raises."""
        apply_writes(writes)

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

    # --- usage readings (``tsubo stats``) ------------------------------------------------

    def usage(self) -> CgroupUsage:
        """What the cgroup uses now, read from its files (what a controller that is not
        mounted would say reads as 0): CPU time, memory as Docker counts it (usage less
        the inactive file cache), the memory limit, processes, bytes read and written."""
        usage = CgroupUsage()
        route = Route(self.paths, self.layout)
        found = route.target("cpuacct") or route.target("cpu")
        if found is not None:
            directory, version = found
            if version == 1:
                usage.cpu_ns = _int_file(directory + "/cpuacct.usage")
            else:
                usage.cpu_ns = _keyed(directory + "/cpu.stat", "usage_usec") * 1000
        found = route.target("memory")
        if found is not None:
            directory, version = found
            if version == 1:
                used = _int_file(directory + "/memory.usage_in_bytes")
                inactive = _keyed(directory + "/memory.stat", "total_inactive_file")
                limit = _int_file(directory + "/memory.limit_in_bytes")
                usage.memory_limit = None if limit >= _V1_UNLIMITED else limit
            else:
                used = _int_file(directory + "/memory.current")
                inactive = _keyed(directory + "/memory.stat", "inactive_file")
                text = _text_file(directory + "/memory.max").strip()
                usage.memory_limit = None if text in ("max", "") else int(text)
            usage.memory = max(0, used - inactive) if inactive < used else used
        found = route.target("pids")
        if found is not None:
            usage.pids = _int_file(found[0] + "/pids.current")
        found = route.target("blkio") or route.target("io")
        if found is not None:
            directory, version = found
            if version == 1:
                for line in _text_file(
                        directory + "/blkio.throttle.io_service_bytes_recursive").splitlines():
                    words = line.split()
                    if len(words) == 3 and words[1] == "Read":
                        usage.block_read += int(words[2])
                    elif len(words) == 3 and words[1] == "Write":
                        usage.block_write += int(words[2])
            else:
                for line in _text_file(directory + "/io.stat").splitlines():
                    for word in line.split()[1:]:
                        key, _, value = word.partition("=")
                        if key == "rbytes":
                            usage.block_read += int(value)
                        elif key == "wbytes":
                            usage.block_write += int(value)
        return usage

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
            # Usually empty: one rmdir. Only when it is busy (sub-cgroups, or processes
            # still leaving) is the tree listed, deepest first (a cgroupfs directory lists
            # dozens of control files: ~10 us each, for ten hierarchies on every delete).
            try:
                os.rmdir(directory)
                continue
            except FileNotFoundError:
                continue
            except OSError as error:
                if error.errno != errno.EBUSY:
                    errors.append(TsuboError.from_os_error("remove cgroup", directory, error))
                    continue
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
          ``cgroupns``, else a bind of our own directory. The tmpfs itself stays writable,
          as runc leaves it (it is the container's own, empty but for the hierarchies'
          mount points; tools such as systemd create symlinks in it).

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


