"""Control groups: the only module that touches cgroupfs (v1, v2 and hybrid hosts).

What it owns
    Creating, configuring, joining, freezing and removing one container's cgroup in every
    mounted hierarchy, and turning the OCI runtime-spec ``linux.resources`` object into
    cgroupfs file writes.

Host layouts
    * **v2** — one ``cgroup2`` mount (usually ``/sys/fs/cgroup``) holds every controller.
    * **v1** — one ``cgroup`` mount per hierarchy (``cpu``, ``memory``, ``name=systemd`` ...).
    * **hybrid** — v1 hierarchies *plus* a ``cgroup2`` mount (systemd puts it at
      ``/sys/fs/cgroup/unified``). A controller lives in v2 only when no v1 hierarchy has it
      bound; the kernel lists those in the v2 root's ``cgroup.controllers`` (on the machine
      this was written on: only ``hugetlb``). crun refuses such hosts; we route each
      controller to the version that holds it.

    :class:`CgroupLayout` is read once per process from ``/proc/self/mountinfo``.
    A :class:`Cgroup` gets one directory per hierarchy (``paths``), including the v2 mount
    on hybrid hosts (key ``"unified"``) and named hierarchies such as ``name=systemd``, like
    runc's cgroupfs driver does, so that every view of the process agrees.

Decisions (see also the docstrings below)
    * Relative ``cgroupsPath`` values follow runc's cgroupfs driver: relative to the cgroup
      of the *calling* process, per hierarchy (read from ``/proc/self/cgroup``). The absolute
      directories are recorded (:meth:`Cgroup.to_json`) so ``delete``, run from another
      cgroup, removes exactly the same directories. The systemd form ``slice:prefix:name``
      is rejected (no systemd driver).
    * Devices: on v1 the ``devices`` controller enforces the rules. cgroup v2 has no device
      files (it needs an eBPF program, which tsubo does not load): :meth:`Cgroup.apply`
      does not touch devices there, and :attr:`Cgroup.devices_enforced` is ``False``. The
      runtime must then confine devices by other means (a minimal ``/dev`` of only the
      allowed nodes, no ``CAP_MKNOD`` unless asked). Access is never widened: nothing is
      written at all.
    * Kernel memory: v1 ``kernel`` is written to ``memory.kmem.limit_in_bytes`` when the
      file exists, and ignored when it does not or the kernel answers EOPNOTSUPP (modern
      kernels deprecated it and charge kernel memory to the memory limit anyway);
      ``kernelTCP`` must be honoured (Unsupported when absent). On v2 both are Unsupported
      (values 0 and -1 are treated as "unset").
    * ``0`` for memory ``limit``/``swap``/``reservation``, cpu ``shares``/``quota``/
      ``period`` means "unset" (as runc); ``-1`` means unlimited.

Errors: every failed write raises :class:`~tsubo.errors.TsuboError` (or ``Unsupported`` /
``InvalidArgument``) with operation ``"set cgroup"``, the file as object, and the errno.

Speed: this runs on every container create, so the module imports only ``os``, ``errno``
and ``tsubo.errors``; every write is a bare ``os.open``/``os.write``/``os.close``.
"""

from __future__ import annotations

import errno
import os

from tsubo.errors import InvalidArgument, TeardownErrors, TsuboError, Unsupported
from tsubo.kernel import procfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "Cgroup",
    "CgroupLayout",
    "blkio_weight_to_io_weight",
    "cpu_max",
    "device_rules",
    "memory_swap_v2",
    "memsw_first",
    "pids_max",
    "resolve_cgroup_path",
    "shares_to_weight",
]

_OP = "set cgroup"
_UNIFIED = "unified"

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

_FREEZE_TIMEOUT = 2.0  # seconds before freeze() gives up and thaws again
_RMDIR_TIMEOUT = 1.0  # seconds destroy() retries EBUSY (processes still exiting)


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
            mountinfo = _read_or_raise("/proc/self/mountinfo", "detect cgroups")
            try:
                known: frozenset[str] | None = _parse_proc_cgroups(_read("/proc/cgroups"))
            except OSError:
                known = None
            layout = cls.from_mountinfo(mountinfo, known)
            unified = layout.hierarchies.get(_UNIFIED)
            if unified is not None:
                try:
                    text = _read(unified + "/cgroup.controllers")
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
                if _UNIFIED not in hierarchies:
                    hierarchies[_UNIFIED] = mount_point
                    roots[_UNIFIED] = root
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
        has_v1 = any(key != _UNIFIED for key in hierarchies)
        if not hierarchies:
            kind = "none"
        elif _UNIFIED in hierarchies:
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


def _own_cgroups() -> dict[str, str]:
    """The calling process's cgroup per key (``unified`` for the v2 line ``0::/...``)."""
    own: dict[str, str] = {}
    for line in _read_or_raise("/proc/self/cgroup", "detect cgroups").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own[_UNIFIED] = parts[2]
        else:
            for key in parts[1].split(","):
                own[key] = parts[2]
    return own


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


def _normalize_path(path: str, what: str) -> str:
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
    path = _normalize_path(cgroups_path, cgroups_path)
    if path in ("", "/"):
        raise InvalidArgument(
            "resolve cgroup path", cgroups_path, detail="refusing the root cgroup"
        )
    return path


# --------------------------------------------------------------------------------------
# Pure conversions (OCI values -> cgroupfs strings)
# --------------------------------------------------------------------------------------


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` (2..262144) -> v2 ``cpu.weight`` (1..10000), as runc and crun do."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 ``blkio.weight`` (10..1000) -> v2 ``io.weight`` (1..10000), as runc does."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def cpu_max(quota: int | None, period: int | None, current_quota: str = "max") -> str | None:
    """The v2 ``cpu.max`` line: ``"<quota|max> [<period>]"``, or None when nothing is set.

    ``quota`` -1 (any negative) is unlimited (``max``); 0/None means unset. Without a period
    the kernel keeps the current one; without a quota we keep ``current_quota`` (the first
    field of the current ``cpu.max``) rather than silently lifting the limit.
    """
    if not quota:
        quota = None
    if not period:
        period = None
    if quota is None and period is None:
        return None
    quota_text = current_quota if quota is None else ("max" if quota < 0 else str(quota))
    return quota_text if period is None else f"{quota_text} {period}"


def memory_swap_v2(limit: int | None, swap: int | None) -> str | None:
    """v2 ``memory.swap.max`` from OCI values (``swap`` is memory+swap, as in v1 memsw).

    Returns None when nothing is to be written, ``"max"`` for unlimited, else
    ``swap - limit``. ``limit`` -1 with no swap makes swap unlimited too (runc's rule).
    """
    limit = limit or None
    swap = swap or None
    if swap is None:
        return "max" if limit == -1 else None
    if swap == -1:
        return "max"
    if limit is None or limit == -1:
        raise InvalidArgument(
            _OP, "linux.resources.memory.swap", detail="a swap limit needs a memory limit"
        )
    if swap < limit:
        raise InvalidArgument(
            _OP,
            "linux.resources.memory.swap",
            detail=f"memory+swap limit {swap} is below the memory limit {limit}",
        )
    return str(swap - limit)


def memsw_first(current_limit: int, swap: int) -> bool:
    """Whether v1 ``memory.memsw.limit_in_bytes`` must be written before the memory limit.

    The kernel keeps memsw >= limit at every step: when the new memsw is above the current
    memory limit (or unlimited), raise memsw first; otherwise lower the limit first.
    """
    return swap == -1 or current_limit < swap


def pids_max(limit: int) -> str:
    """``pids.max``: a positive limit, or ``max`` for 0 and below (OCI: unlimited)."""
    return str(limit) if limit > 0 else "max"


def _v2_limit(value: int) -> str:
    return "max" if value < 0 else str(value)


def device_rules(devices: list[object]) -> list[tuple[str, str]]:
    """v1 device-cgroup writes for the OCI ``linux.resources.devices`` list, in order.

    Returns ``(file, line)`` pairs, starting with ``("devices.deny", "a")`` so that only the
    listed rules apply. A missing or -1 major/minor is ``*``, a missing type is ``a`` (all),
    missing access is ``rwm``. The kernel treats any line starting with ``a`` as "all
    devices, all access", so an ``a`` rule with partial access is spelt as ``c`` and ``b``
    wildcard rules instead (never widening what was asked).
    """
    writes = [("devices.deny", "a")]
    for index, item in enumerate(devices):
        where = f"linux.resources.devices[{index}]"
        if not isinstance(item, dict):
            raise InvalidArgument(_OP, where, detail="expected an object")
        allow = item.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(_OP, where + ".allow", detail="expected a boolean")
        dev_type = item.get("type") or "a"
        if dev_type not in ("a", "b", "c", "u", "p"):
            raise InvalidArgument(_OP, where + ".type", detail=f"unknown type {dev_type!r}")
        if dev_type in ("u", "p"):
            # the device cgroup knows only a/b/c; 'u' is a character device, a fifo needs none
            if dev_type == "p":
                continue
            dev_type = "c"
        access = item.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise InvalidArgument(_OP, where + ".access", detail=f"bad access {access!r}")
        access = "".join(c for c in "rwm" if c in access)
        major = _device_number(item.get("major"), where + ".major")
        minor = _device_number(item.get("minor"), where + ".minor")
        target = "devices.allow" if allow else "devices.deny"
        if dev_type == "a":
            if access == "rwm" and major == "*" and minor == "*":
                writes.append((target, "a"))
                continue
            for kind in ("c", "b"):
                writes.append((target, f"{kind} {major}:{minor} {access}"))
            continue
        writes.append((target, f"{dev_type} {major}:{minor} {access}"))
    return writes


def _device_number(value: object, where: str) -> str:
    if value is None or value == -1:
        return "*"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(_OP, where, detail="expected a device number or -1")
    return str(value)


# --------------------------------------------------------------------------------------
# Spec access helpers (config.json is untyped JSON)
# --------------------------------------------------------------------------------------


def _section(resources: dict[str, object], key: str) -> dict[str, object] | None:
    value = resources.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(_OP, "linux.resources." + key, detail="expected an object")
    return value


def _int(section: dict[str, object], key: str, where: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(_OP, f"{where}.{key}", detail="expected an integer")
    if value < -1:
        raise InvalidArgument(_OP, f"{where}.{key}", detail=f"invalid value {value}")
    return value


def _str(section: dict[str, object], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\n" in value:
        raise InvalidArgument(_OP, f"{where}.{key}", detail="expected a string")
    return value


def _list(section: dict[str, object], key: str, where: str) -> list[object]:
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(_OP, f"{where}.{key}", detail="expected a list")
    return value


# --------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------


def _read(path: str) -> str:
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


def _read_or_raise(path: str, operation: str = "read cgroup") -> str:
    try:
        return _read(path)
    except OSError as error:
        raise TsuboError.from_os_error(operation, path, error) from None


def _exists(path: str) -> bool:
    return os.access(path, os.F_OK)


_HINTS = {
    errno.EACCES: "needs root with write access to cgroupfs",
    errno.EPERM: "needs root with write access to cgroupfs (or a delegated subtree)",
    errno.EROFS: "cgroupfs is mounted read-only here",
}


def _write_error(path: str, value: str, error: OSError) -> TsuboError:
    code = error.errno or 0
    name = path.rsplit("/", 1)[-1]
    hint = _HINTS.get(code, "")
    if code == errno.ENOENT:
        return Unsupported(
            _OP,
            path,
            errno=code,
            detail=f"write {value!r}",
            hint="the controller is not enabled for this cgroup or the kernel lacks this file",
        )
    if code == errno.EOPNOTSUPP:
        return Unsupported(_OP, path, errno=code, detail=f"write {value!r}")
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
    return TsuboError(_OP, path, errno=code, detail=f"write {value!r}", hint=hint)


def _write(path: str, value: str) -> None:
    """One ``write(2)`` of ``value`` to a cgroupfs file (the kernel parses per write)."""
    procfs.write(path, value, wrap=_write_error)


def _unsupported(what: str, detail: str) -> Unsupported:
    return Unsupported(_OP, what, detail=detail)


# --------------------------------------------------------------------------------------
# The cgroup
# --------------------------------------------------------------------------------------


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
        normalized = _normalize_path(path, path)
        if normalized in ("", "/"):
            raise InvalidArgument(_OP, path, detail="refusing the root cgroup")
        if not layout.hierarchies:
            raise Unsupported(_OP, path, detail="no cgroup filesystem is mounted")
        self.layout = layout
        self.path = normalized
        self.paths: dict[str, str] = {}
        own = _own_cgroups() if not normalized.startswith("/") else {}
        for key, mount_point in layout.hierarchies.items():
            if key == _UNIFIED and not with_unified and layout.kind == "hybrid":
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

    def _target(self, controller: str) -> tuple[str, int] | None:
        """``(dir, version)`` of the hierarchy holding ``controller``, or None."""
        directory = self.paths.get(controller)
        if directory is not None and controller != _UNIFIED:
            return directory, 1
        unified = self.paths.get(_UNIFIED)
        if unified is not None and controller in self.layout.unified_controllers:
            return unified, 2
        return None

    def _require(self, controller: str, what: str) -> tuple[str, int]:
        target = self._target(controller)
        if target is None:
            raise _unsupported(
                what, f"no {controller} controller on this host ({self.layout.kind} cgroups)"
            )
        return target

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
                elif key == _UNIFIED:
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

    def apply(self, resources: dict[str, object]) -> None:
        """Write the OCI ``linux.resources`` object into the cgroup files.

        Each field goes to the hierarchy that holds its controller (v1 or v2, so hybrid
        hosts work). Fields this host cannot honour raise ``Unsupported`` naming the field
        or file; nothing is skipped silently except as documented in the module docstring
        (v2 device rules, v1 kernel memory where the kernel dropped it). Returns None.
        """
        if not resources:
            return
        if not isinstance(resources, dict):
            raise InvalidArgument(_OP, "linux.resources", detail="expected an object")
        cpu = _section(resources, "cpu")
        if cpu is not None:
            self._apply_cpuset(cpu)
        memory = _section(resources, "memory")
        if memory is not None:
            self._apply_memory(memory)
        if cpu is not None:
            self._apply_cpu(cpu)
        pids = _section(resources, "pids")
        if pids is not None:
            limit = _int(pids, "limit", "linux.resources.pids")
            if limit is not None:
                directory, _ = self._require("pids", "linux.resources.pids")
                _write(directory + "/pids.max", pids_max(limit))
        block_io = _section(resources, "blockIO")
        if block_io is not None:
            self._apply_block_io(block_io)
        hugepages = _list(resources, "hugepageLimits", "linux.resources")
        if hugepages:
            self._apply_hugepages(hugepages)
        network = _section(resources, "network")
        if network is not None:
            self._apply_network(network)
        rdma = _section(resources, "rdma")
        if rdma:
            self._apply_rdma(rdma)
        devices = resources.get("devices")
        if devices is not None:
            if not isinstance(devices, list):
                raise InvalidArgument(_OP, "linux.resources.devices", detail="expected a list")
            writes = device_rules(devices)  # validate on every host
            directory_or_none = self.paths.get("devices")
            if directory_or_none is not None:
                for name, line in writes:
                    _write(directory_or_none + "/" + name, line)
        unified = _section(resources, "unified")
        if unified:
            self._apply_unified(unified)

    def _apply_cpuset(self, cpu: dict[str, object]) -> None:
        where = "linux.resources.cpu"
        cpus = _str(cpu, "cpus", where)
        mems = _str(cpu, "mems", where)
        if cpus or mems:
            directory, _ = self._require("cpuset", where + ".cpus")
            if cpus:
                _write(directory + "/cpuset.cpus", cpus)
            if mems:
                _write(directory + "/cpuset.mems", mems)

    def _apply_memory(self, memory: dict[str, object]) -> None:
        where = "linux.resources.memory"
        limit = _int(memory, "limit", where) or None
        swap = _int(memory, "swap", where) or None
        reservation = _int(memory, "reservation", where) or None
        kernel = _int(memory, "kernel", where) or None
        kernel_tcp = _int(memory, "kernelTCP", where) or None
        swappiness = _int(memory, "swappiness", where)
        if swappiness == -1:  # Docker's "unset"
            swappiness = None
        if swappiness is not None and swappiness > 100:
            raise InvalidArgument(_OP, where + ".swappiness", detail="must be 0..100")
        disable_oom = memory.get("disableOOMKiller") is True
        check = memory.get("checkBeforeUpdate") is True
        if (
            limit is None
            and swap is None
            and reservation is None
            and kernel is None
            and kernel_tcp is None
            and swappiness is None
            and not disable_oom
        ):
            return
        directory, version = self._require("memory", where)
        if version == 2:
            self._apply_memory_v2(
                directory,
                limit,
                swap,
                reservation,
                kernel,
                kernel_tcp,
                swappiness,
                disable_oom,
                check,
            )
            return
        if swap is not None and swap != -1 and limit is not None and limit != -1 and swap < limit:
            raise InvalidArgument(
                _OP,
                where + ".swap",
                detail=f"memory+swap limit {swap} is below the memory limit {limit}",
            )
        limit_file = directory + "/memory.limit_in_bytes"
        memsw_file = directory + "/memory.memsw.limit_in_bytes"
        has_memsw = _exists(memsw_file)
        if limit == -1 and swap is None and has_memsw:
            swap = -1
        if swap is not None and not has_memsw:
            if swap != -1:
                raise Unsupported(
                    _OP,
                    memsw_file,
                    errno=errno.ENOENT,
                    detail="swap accounting is not available",
                    hint="boot the kernel with swapaccount=1",
                )
            swap = None
        if check and limit is not None and limit != -1:
            usage = int(_read_or_raise(directory + "/memory.usage_in_bytes"))
            if limit < usage:
                raise InvalidArgument(
                    _OP,
                    limit_file,
                    detail=f"limit {limit} is below current usage {usage}",
                )
        if limit is not None and swap is not None:
            current = int(_read_or_raise(limit_file))
            if memsw_first(current, swap):
                _write(memsw_file, str(swap))
                _write(limit_file, str(limit))
            else:
                _write(limit_file, str(limit))
                _write(memsw_file, str(swap))
        elif limit is not None:
            _write(limit_file, str(limit))
        elif swap is not None:
            _write(memsw_file, str(swap))
        if reservation is not None:
            _write(directory + "/memory.soft_limit_in_bytes", str(reservation))
        if kernel is not None:
            kmem_file = directory + "/memory.kmem.limit_in_bytes"
            try:
                _write(kmem_file, str(kernel))
            except Unsupported as error:
                # absent or EOPNOTSUPP: deprecated, charged to the memory limit anyway
                if error.errno not in (errno.ENOENT, errno.EOPNOTSUPP):
                    raise
        if kernel_tcp is not None:
            _write(directory + "/memory.kmem.tcp.limit_in_bytes", str(kernel_tcp))
        if swappiness is not None:
            _write(directory + "/memory.swappiness", str(swappiness))
        if disable_oom:
            _write(directory + "/memory.oom_control", "1")

    def _apply_memory_v2(
        self,
        directory: str,
        limit: int | None,
        swap: int | None,
        reservation: int | None,
        kernel: int | None,
        kernel_tcp: int | None,
        swappiness: int | None,
        disable_oom: bool,
        check: bool,
    ) -> None:
        where = "linux.resources.memory"
        for name, value in (("kernel", kernel), ("kernelTCP", kernel_tcp)):
            if value is not None and value > 0:
                raise _unsupported(
                    f"{where}.{name}", "kernel memory limits do not exist in cgroup v2"
                )
        if swappiness is not None:
            raise _unsupported(f"{where}.swappiness", "cgroup v2 has no per-cgroup swappiness")
        if disable_oom:
            raise _unsupported(
                f"{where}.disableOOMKiller", "cgroup v2 cannot disable the OOM killer"
            )
        swap_value = memory_swap_v2(limit, swap)
        if check and limit is not None and limit != -1:
            usage = int(_read_or_raise(directory + "/memory.current"))
            if limit < usage:
                raise InvalidArgument(
                    _OP,
                    directory + "/memory.max",
                    detail=f"limit {limit} is below current usage {usage}",
                )
        if limit is not None:
            _write(directory + "/memory.max", _v2_limit(limit))
        if swap_value is not None:
            swap_file = directory + "/memory.swap.max"
            if _exists(swap_file):
                _write(swap_file, swap_value)
            elif swap_value not in ("max", "0"):
                raise Unsupported(
                    _OP,
                    swap_file,
                    errno=errno.ENOENT,
                    detail="swap accounting is not available",
                    hint="boot the kernel with swapaccount=1",
                )
        if reservation is not None:
            _write(directory + "/memory.low", _v2_limit(reservation))

    def _apply_cpu(self, cpu: dict[str, object]) -> None:
        where = "linux.resources.cpu"
        shares = _int(cpu, "shares", where) or None
        quota = _int(cpu, "quota", where) or None
        period = _int(cpu, "period", where) or None
        burst = _int(cpu, "burst", where)
        rt_runtime = _int(cpu, "realtimeRuntime", where) or None
        rt_period = _int(cpu, "realtimePeriod", where) or None
        idle = _int(cpu, "idle", where)
        if period == -1:
            raise InvalidArgument(_OP, where + ".period", detail="must be positive")
        if (
            shares is None
            and quota is None
            and period is None
            and burst is None
            and rt_runtime is None
            and rt_period is None
            and idle is None
        ):
            return
        directory, version = self._require("cpu", where)
        if version == 1:
            if shares is not None:
                _write(directory + "/cpu.shares", str(shares))
            self._cpu_quota_v1(directory, quota, period)
            if burst is not None:
                _write(directory + "/cpu.cfs_burst_us", str(burst))
            if rt_period is not None:
                _write(directory + "/cpu.rt_period_us", str(rt_period))
            if rt_runtime is not None:
                _write(directory + "/cpu.rt_runtime_us", str(rt_runtime))
        else:
            if rt_runtime is not None or rt_period is not None:
                raise _unsupported(
                    where + ".realtimeRuntime", "cgroup v2 has no real-time cpu limits"
                )
            if shares is not None:
                _write(directory + "/cpu.weight", str(shares_to_weight(shares)))
            current = "max"
            if quota is None and period is not None:
                current = _read_or_raise(directory + "/cpu.max").split()[0]
            line = cpu_max(quota, period, current)
            if line is not None:
                _write(directory + "/cpu.max", line)
            if burst is not None:
                _write(directory + "/cpu.max.burst", str(burst))
        if idle is not None:
            _write(directory + "/cpu.idle", str(idle))

    @staticmethod
    def _cpu_quota_v1(directory: str, quota: int | None, period: int | None) -> None:
        quota_file = directory + "/cpu.cfs_quota_us"
        period_file = directory + "/cpu.cfs_period_us"
        if period is None:
            if quota is not None:
                _write(quota_file, str(quota))
            return
        try:
            _write(period_file, str(period))
        except TsuboError as error:
            # A shorter period can break the current quota's bandwidth rule against the
            # parent; runc retries with the quota first.
            if error.errno != errno.EINVAL or quota is None:
                raise
            _write(quota_file, str(quota))
            _write(period_file, str(period))
            return
        if quota is not None:
            _write(quota_file, str(quota))

    def _apply_block_io(self, block_io: dict[str, object]) -> None:
        where = "linux.resources.blockIO"
        weight = _int(block_io, "weight", where)
        leaf_weight = _int(block_io, "leafWeight", where)
        weight_devices = _list(block_io, "weightDevice", where)
        throttles = [
            (key, _list(block_io, key, where))
            for key in (
                "throttleReadBpsDevice",
                "throttleWriteBpsDevice",
                "throttleReadIOPSDevice",
                "throttleWriteIOPSDevice",
            )
        ]
        if (
            weight is None
            and leaf_weight is None
            and not weight_devices
            and not any(entries for _, entries in throttles)
        ):
            return
        directory, version = self._require("blkio" if self._target("blkio") else "io", where)
        if version == 1:
            if weight is not None:
                _write(
                    _first_existing(
                        directory, ("blkio.weight", "blkio.bfq.weight"), where + ".weight"
                    ),
                    str(weight),
                )
            if leaf_weight is not None:
                _write(
                    _first_existing(directory, ("blkio.leaf_weight",), where + ".leafWeight"),
                    str(leaf_weight),
                )
            for index, entry in enumerate(weight_devices):
                number, dev_weight, dev_leaf = _weight_device(entry, f"{where}.weightDevice", index)
                if dev_weight is not None:
                    weight_file = _first_existing(
                        directory,
                        ("blkio.weight_device", "blkio.bfq.weight_device"),
                        f"{where}.weightDevice[{index}]",
                    )
                    _write(weight_file, f"{number} {dev_weight}")
                if dev_leaf is not None:
                    _write(
                        _first_existing(
                            directory,
                            ("blkio.leaf_weight_device",),
                            f"{where}.weightDevice[{index}].leafWeight",
                        ),
                        f"{number} {dev_leaf}",
                    )
            files = {
                "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
                "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
                "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
                "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
            }
            for key, entries in throttles:
                for index, entry in enumerate(entries):
                    number, rate = _throttle_device(entry, f"{where}.{key}", index)
                    _write(directory + "/" + files[key], f"{number} {rate}")
            return
        # cgroup v2: io.bfq.weight takes blkio's 1..1000 scale, io.weight its own 1..10000
        if leaf_weight is not None:
            raise _unsupported(where + ".leafWeight", "cgroup v2 has no leaf weights")
        bfq = _exists(directory + "/io.bfq.weight")
        if weight is not None:
            if bfq:
                _write(directory + "/io.bfq.weight", str(weight))
            else:
                _write(
                    _first_existing(directory, ("io.weight",), where + ".weight"),
                    f"default {blkio_weight_to_io_weight(weight)}",
                )
        for index, entry in enumerate(weight_devices):
            number, dev_weight, dev_leaf = _weight_device(entry, f"{where}.weightDevice", index)
            if dev_leaf is not None:
                raise _unsupported(
                    f"{where}.weightDevice[{index}].leafWeight", "cgroup v2 has no leaf weights"
                )
            if dev_weight is not None:
                if bfq:
                    _write(directory + "/io.bfq.weight", f"{number} {dev_weight}")
                else:
                    _write(
                        directory + "/io.weight",
                        f"{number} {blkio_weight_to_io_weight(dev_weight)}",
                    )
        keys = {
            "throttleReadBpsDevice": "rbps",
            "throttleWriteBpsDevice": "wbps",
            "throttleReadIOPSDevice": "riops",
            "throttleWriteIOPSDevice": "wiops",
        }
        for key, entries in throttles:
            for index, entry in enumerate(entries):
                number, rate = _throttle_device(entry, f"{where}.{key}", index)
                _write(directory + "/io.max", f"{number} {keys[key]}={rate or 'max'}")

    def _apply_hugepages(self, limits: list[object]) -> None:
        where = "linux.resources.hugepageLimits"
        directory, version = self._require("hugetlb", where)
        for index, item in enumerate(limits):
            if not isinstance(item, dict):
                raise InvalidArgument(_OP, f"{where}[{index}]", detail="expected an object")
            size = _str(item, "pageSize", f"{where}[{index}]")
            limit = _int(item, "limit", f"{where}[{index}]")
            if not size or not size.isalnum() or limit is None:
                raise InvalidArgument(
                    _OP, f"{where}[{index}]", detail="needs pageSize (like 2MB) and limit"
                )
            suffix = "limit_in_bytes" if version == 1 else "max"
            value = str(limit) if version == 1 else _v2_limit(limit)
            limit_file = f"{directory}/hugetlb.{size}.{suffix}"
            if not _exists(limit_file):
                raise Unsupported(
                    _OP,
                    limit_file,
                    errno=errno.ENOENT,
                    detail=f"no {size} huge pages on this host",
                )
            _write(limit_file, value)
            # the reservation counter (kernel >= 5.7) gets the same limit, as runc does
            rsvd_file = f"{directory}/hugetlb.{size}.rsvd.{suffix}"
            if _exists(rsvd_file):
                _write(rsvd_file, value)

    def _apply_network(self, network: dict[str, object]) -> None:
        where = "linux.resources.network"
        class_id = _int(network, "classID", where)
        priorities = _list(network, "priorities", where)
        if class_id is not None:
            directory = self.paths.get("net_cls")
            if directory is None:
                raise _unsupported(where + ".classID", "no v1 net_cls controller mounted")
            _write(directory + "/net_cls.classid", str(class_id))
        if priorities:
            directory = self.paths.get("net_prio")
            if directory is None:
                raise _unsupported(where + ".priorities", "no v1 net_prio controller mounted")
            for index, item in enumerate(priorities):
                if not isinstance(item, dict):
                    raise InvalidArgument(
                        _OP, f"{where}.priorities[{index}]", detail="expected an object"
                    )
                name = _str(item, "name", f"{where}.priorities[{index}]")
                priority = _int(item, "priority", f"{where}.priorities[{index}]")
                if not name or " " in name or priority is None:
                    raise InvalidArgument(
                        _OP, f"{where}.priorities[{index}]", detail="needs name and priority"
                    )
                _write(directory + "/net_prio.ifpriomap", f"{name} {priority}")

    def _apply_rdma(self, rdma: dict[str, object]) -> None:
        where = "linux.resources.rdma"
        directory, _ = self._require("rdma", where)
        for device, limits in rdma.items():
            if not isinstance(limits, dict) or not device or " " in device:
                raise InvalidArgument(_OP, f"{where}.{device}", detail="expected an object")
            handles = _int(limits, "hcaHandles", f"{where}.{device}")
            objects = _int(limits, "hcaObjects", f"{where}.{device}")
            parts = [device]
            if handles is not None:
                parts.append(f"hca_handle={_v2_limit(handles)}")
            if objects is not None:
                parts.append(f"hca_object={_v2_limit(objects)}")
            if len(parts) > 1:
                _write(directory + "/rdma.max", " ".join(parts))

    def _apply_unified(self, unified: dict[str, object]) -> None:
        directory = self.paths.get(_UNIFIED)
        for key, value in unified.items():
            where = f"linux.resources.unified.{key}"
            if not isinstance(value, str):
                raise InvalidArgument(_OP, where, detail="expected a string value")
            if not key or "/" in key or key.startswith(".") or "." not in key:
                raise InvalidArgument(_OP, where, detail="not a cgroup v2 file name")
            controller = key.split(".", 1)[0]
            if directory is None or (
                controller != "cgroup" and controller not in self.layout.unified_controllers
            ):
                raise _unsupported(
                    key,
                    f"no cgroup v2 hierarchy holds the {controller} controller here "
                    f"({self.layout.kind} cgroups)",
                )
            _write(directory + "/" + key, value)

    # --- processes -----------------------------------------------------------------------

    def join(self, pid: int) -> None:
        """Move process ``pid`` (0: the caller) into the cgroup in every hierarchy."""
        value = str(pid)
        for _, directory in self._dirs():
            _write(directory + "/cgroup.procs", value)

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
            _write(directory + ("/cgroup.procs" if key == _UNIFIED else "/tasks"), "0")

    def _process_dir(self) -> str:
        if self.layout.kind == "v2" and _UNIFIED in self.paths:
            return self.paths[_UNIFIED]
        for key in ("pids", "memory"):
            if key in self.paths:
                return self.paths[key]
        for key, directory in self.paths.items():
            if key != _UNIFIED:
                return directory
        return self.paths[_UNIFIED]

    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups (each pid once)."""
        found: list[int] = []
        seen: set[int] = set()
        for directory in _walk(self._process_dir()):
            try:
                text = _read(directory + "/cgroup.procs")
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
        if _UNIFIED in self.paths:
            return self.paths[_UNIFIED], 2
        raise Unsupported("freeze cgroup", self.path, detail="no freezer on this host")

    def freeze(self) -> None:
        """Freeze every process and wait until the kernel reports the cgroup frozen."""
        import time

        directory, version = self._freezer()
        state_file = directory + ("/freezer.state" if version == 1 else "/cgroup.freeze")
        freeze_value = "FROZEN" if version == 1 else "1"
        _write(state_file, freeze_value)
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
                _write(state_file, freeze_value)
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def thaw(self) -> None:
        """Let the processes run again."""
        directory, version = self._freezer()
        if version == 1:
            _write(directory + "/freezer.state", "THAWED")
        else:
            _write(directory + "/cgroup.freeze", "0")

    def is_frozen(self) -> bool:
        """True once every process is frozen (v1 ``FROZEN``, v2 ``frozen 1``)."""
        directory, version = self._freezer()
        if version == 1:
            return _read_or_raise(directory + "/freezer.state").strip() == "FROZEN"
        return _keyed_value(_read_or_raise(directory + "/cgroup.events"), "frozen") == 1

    # --- memory readings -----------------------------------------------------------------

    def oom_kill_count(self) -> int:
        """How many processes the OOM killer killed in this cgroup."""
        directory, version = self._require("memory", self.path)
        if version == 1:
            text = _read_or_raise(directory + "/memory.oom_control")
        else:
            text = _read_or_raise(directory + "/memory.events")
        return _keyed_value(text, "oom_kill")

    def memory_limit(self) -> int | None:
        """The memory limit in bytes, or None when unlimited."""
        directory, version = self._require("memory", self.path)
        if version == 1:
            value = int(_read_or_raise(directory + "/memory.limit_in_bytes"))
            return None if value >= _V1_UNLIMITED else value
        text = _read_or_raise(directory + "/memory.max").strip()
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
                bind(self.paths[_UNIFIED], "")
            return plan
        plan.append(("tmpfs", "", "tmpfs", _MS_SAFE | _MS_RELATIME, "mode=755"))
        for key, directory in self.paths.items():
            target = key[5:] if key.startswith("name=") else key
            if key == _UNIFIED:
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
        if not _read_or_raise(f"{directory}/{name}").strip():
            value = _read_or_raise(f"{parent}/{name}").strip()
            if value:
                _write(f"{directory}/{name}", value)


def _enable_subtree(level: str, wanted: frozenset[str]) -> None:
    """Enable in ``level``'s ``cgroup.subtree_control`` the wanted controllers it has."""
    available = set(_read_or_raise(level + "/cgroup.controllers").split())
    enabled = set(_read_or_raise(level + "/cgroup.subtree_control").split())
    missing = sorted((available & wanted) - enabled)
    if missing:
        _write(level + "/cgroup.subtree_control", " ".join("+" + name for name in missing))


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


def _keyed_value(text: str, key: str) -> int:
    """The number after ``key`` in a flat-keyed file (``memory.events``, ``oom_control``)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _first_existing(directory: str, names: Iterable[str], what: str) -> str:
    for name in names:
        path = f"{directory}/{name}"
        if _exists(path):
            return path
    raise _unsupported(what, f"none of {', '.join(names)} exists in {directory}")


def _device_number_pair(item: dict[str, object], where: str) -> str:
    major = item.get("major")
    minor = item.get("minor")
    if (
        isinstance(major, bool)
        or isinstance(minor, bool)
        or not isinstance(major, int)
        or not isinstance(minor, int)
        or major < 0
        or minor < 0
    ):
        raise InvalidArgument(_OP, where, detail="needs major and minor numbers")
    return f"{major}:{minor}"


def _weight_device(entry: object, where: str, index: int) -> tuple[str, int | None, int | None]:
    item_where = f"{where}[{index}]"
    if not isinstance(entry, dict):
        raise InvalidArgument(_OP, item_where, detail="expected an object")
    number = _device_number_pair(entry, item_where)
    return number, _int(entry, "weight", item_where), _int(entry, "leafWeight", item_where)


def _throttle_device(entry: object, where: str, index: int) -> tuple[str, int]:
    item_where = f"{where}[{index}]"
    if not isinstance(entry, dict):
        raise InvalidArgument(_OP, item_where, detail="expected an object")
    number = _device_number_pair(entry, item_where)
    rate = _int(entry, "rate", item_where)
    if rate is None or rate < 0:
        raise InvalidArgument(_OP, item_where + ".rate", detail="needs a rate")
    return number, rate
