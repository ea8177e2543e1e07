"""What every cgroup hierarchy version shares: the host's layout, cgroup paths, file access,
and the plan's unit — one file write — with the applier that carries a plan out.

What it owns
    * :class:`CgroupLayout` — which hierarchies are mounted where (``/proc/self/mountinfo``,
      read once per process), and :func:`resolve_cgroup_path` for ``linux.cgroupsPath``;
    * :class:`CgroupWrite` and :func:`apply_writes` — a plan (``plan.py``) is a tuple of
      writes; the applier makes each through the one /proc and /sys writer
      (:func:`tsubo.kernel.procfs.write`), turning an OSError into a
      :class:`~tsubo.errors.TsuboError` (operation ``"set cgroup"``, the file as object,
      the errno, a hint for the usual causes) or ``Unsupported`` (the file does not exist);
    * :class:`HostFiles` — what a plan may need to know of the host's cgroupfs (does a file
      exist, what does it hold); tests give a plan a fake one.

Relative ``cgroupsPath`` values follow runc's cgroupfs driver: relative to the cgroup of the
*calling* process, per hierarchy (read from ``/proc/self/cgroup``); the systemd form
``slice:prefix:name`` is refused (no systemd driver).
"""

from __future__ import annotations

import errno
import os

from tsubo.errors import InvalidArgument, TsuboError, Unsupported
from tsubo.kernel import procfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

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
            root = _unescape_mountinfo(fields[3])
            mount_point = _unescape_mountinfo(fields[4])
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


def _unescape_mountinfo(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\ooo`` octal."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


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


def apply_writes(writes: Iterable[CgroupWrite]) -> None:
    """Carry out a plan: each write in order; the first failure raises."""
    for item in writes:
        try:
            write(item.path, item.value)
        except TsuboError as error:
            if item.optional and error.errno in (errno.ENOENT, errno.EOPNOTSUPP):
                continue  # absent or refused: see CgroupWrite.optional
            if item.on_einval and error.errno == errno.EINVAL:
                apply_writes(item.on_einval)
                continue
            raise


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
