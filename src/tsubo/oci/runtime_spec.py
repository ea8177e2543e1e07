"""The OCI runtime spec's ``config.json`` (1.0.x-1.2.x), parsed and validated into typed objects.

Pure: no file system access beyond reading the given text, no side effects. Every
validation error is an :class:`InvalidArgument` naming the JSON path of the bad field
(``process.user.uid``), so a user can find it. Settings that are valid but that this
runtime cannot honour raise :class:`Unsupported` rather than being ignored.

Classes are plain ``__slots__`` classes, not dataclasses: ``import dataclasses`` costs ~20 ms
on our reference machine and this module is on the ``create`` hot path.

``linux.resources`` and ``linux.seccomp`` are parsed into frozen value objects
(:class:`Resources`, :class:`Seccomp` and their parts; setting an attribute raises), validated
here once, so ``kernel/cgroups`` and ``kernel/seccomp`` only turn them into cgroupfs writes
and a libseccomp filter. They keep the config's values and vocabulary (``0`` for "unset",
``-1`` for "unlimited", ``SCMP_ACT_*`` names); what a value means on a given host is the
kernel code's business. kernel/ never imports this module: it declares the attributes it
reads as protocols of its own, and mypy checks these classes against them where the
runtime hands one to the other.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    JSONObject = dict[str, Any]

SUPPORTED_VERSIONS = ("1.0.", "1.1.", "1.2.")
#: config.json's size limit: runc has none; a config with Docker's seccomp profile is
#: ~30 KB, so this is hundreds of times any real one
MAX_CONFIG_BYTES = 16 << 20
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def _fail(path: str, problem: str, hint: str = "") -> InvalidArgument:
    return InvalidArgument("load config", path, detail=problem, hint=hint)


def _obj(value: object, path: str) -> JSONObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, "must be an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, "must be an array")
    return value


def _str(value: object, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise _fail(path, "must be a string")
    return value


def _int(value: object, path: str, default: int = 0, minimum: int | None = None) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, "must be an integer")
    if minimum is not None and value < minimum:
        raise _fail(path, f"must be >= {minimum}")
    return value


def _bool(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(path, "must be true or false")
    return value


def _str_list(value: object, path: str) -> list[str]:
    items = _list(value, path)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise _fail(f"{path}[{index}]", "must be a string")
    return items


class User:
    __slots__ = ("additional_gids", "gid", "uid", "umask")

    def __init__(self, uid: int, gid: int, additional_gids: list[int], umask: int | None):
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.umask = umask


class Rlimit:
    __slots__ = ("hard", "soft", "type")

    def __init__(self, type_: str, hard: int, soft: int) -> None:
        self.type = type_
        self.hard = hard
        self.soft = soft


class Capabilities:
    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.bounding = _str_list(data.get("bounding"), f"{path}.bounding")
        self.effective = _str_list(data.get("effective"), f"{path}.effective")
        self.inheritable = _str_list(data.get("inheritable"), f"{path}.inheritable")
        self.permitted = _str_list(data.get("permitted"), f"{path}.permitted")
        self.ambient = _str_list(data.get("ambient"), f"{path}.ambient")


class Process:
    """``process``: what runs in the container, as whom, with which privileges."""

    __slots__ = ("apparmor_profile", "args", "capabilities", "console_size", "cwd", "env",
                 "no_new_privileges", "oom_score_adj", "rlimits", "selinux_label",
                 "terminal", "user")

    def __init__(self, data: JSONObject, path: str = "process") -> None:
        self.terminal = _bool(data.get("terminal"), f"{path}.terminal")
        size = _obj(data.get("consoleSize"), f"{path}.consoleSize")
        self.console_size = (
            (_int(size.get("height"), f"{path}.consoleSize.height", minimum=0),
             _int(size.get("width"), f"{path}.consoleSize.width", minimum=0))
            if size else None
        )
        self.args = _str_list(data.get("args"), f"{path}.args")
        if not self.args:
            raise _fail(f"{path}.args", "must name the program to run")
        if data.get("commandLine"):
            raise Unsupported("load config", f"{path}.commandLine",
                              detail="commandLine is for Windows containers")
        self.env = _str_list(data.get("env"), f"{path}.env")
        for index, entry in enumerate(self.env):
            if "=" not in entry:
                raise _fail(f"{path}.env[{index}]", f"{entry!r} is not KEY=VALUE")
        self.cwd = _str(data.get("cwd"), f"{path}.cwd", "/")
        if not self.cwd.startswith("/"):
            raise _fail(f"{path}.cwd", f"{self.cwd!r} must be an absolute path")
        user = _obj(data.get("user"), f"{path}.user")
        gids = _list(user.get("additionalGids"), f"{path}.user.additionalGids")
        self.user = User(
            _int(user.get("uid"), f"{path}.user.uid", minimum=0),
            _int(user.get("gid"), f"{path}.user.gid", minimum=0),
            [_int(g, f"{path}.user.additionalGids[{i}]", minimum=0) for i, g in enumerate(gids)],
            _int(user["umask"], f"{path}.user.umask", minimum=0)
            if user.get("umask") is not None else None,
        )
        if user.get("username"):
            raise Unsupported("load config", f"{path}.user.username",
                              detail="username is for Windows containers")
        self.rlimits = []
        seen: set[str] = set()
        for index, item in enumerate(_list(data.get("rlimits"), f"{path}.rlimits")):
            where = f"{path}.rlimits[{index}]"
            rlimit = _obj(item, where)
            kind = _str(rlimit.get("type"), f"{where}.type")
            if kind in seen:
                raise _fail(f"{where}.type", f"duplicate rlimit {kind}")
            seen.add(kind)
            self.rlimits.append(Rlimit(kind, _int(rlimit.get("hard"), f"{where}.hard"),
                                       _int(rlimit.get("soft"), f"{where}.soft")))
        caps = data.get("capabilities")
        self.capabilities = (
            Capabilities(_obj(caps, f"{path}.capabilities"), f"{path}.capabilities")
            if caps is not None else None
        )
        self.no_new_privileges = _bool(data.get("noNewPrivileges"), f"{path}.noNewPrivileges")
        oom = data.get("oomScoreAdj")
        self.oom_score_adj = None if oom is None else _int(oom, f"{path}.oomScoreAdj")
        if self.oom_score_adj is not None and not -1000 <= self.oom_score_adj <= 1000:
            raise _fail(f"{path}.oomScoreAdj", "must be between -1000 and 1000")
        self.apparmor_profile = _str(data.get("apparmorProfile"), f"{path}.apparmorProfile")
        self.selinux_label = _str(data.get("selinuxLabel"), f"{path}.selinuxLabel")
        for unsupported in ("scheduler", "ioPriority", "execCPUAffinity"):
            if data.get(unsupported):
                raise Unsupported("load config", f"{path}.{unsupported}",
                                  detail="not supported by tsubo-runtime yet")


class Mount:
    __slots__ = ("destination", "options", "source", "type")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.destination = _str(data.get("destination"), f"{path}.destination")
        if not self.destination:
            raise _fail(f"{path}.destination", "is required")
        self.type = _str(data.get("type"), f"{path}.type")
        self.source = _str(data.get("source"), f"{path}.source")
        self.options = _str_list(data.get("options"), f"{path}.options")
        if data.get("uidMappings") or data.get("gidMappings"):
            raise Unsupported("load config", path, detail="id-mapped mounts are not supported")


class Hook:
    __slots__ = ("args", "env", "path", "timeout")

    def __init__(self, data: JSONObject, where: str) -> None:
        self.path = _str(data.get("path"), f"{where}.path")
        if not self.path.startswith("/"):
            raise _fail(f"{where}.path", "must be an absolute path")
        self.args = _str_list(data.get("args"), f"{where}.args") or [self.path]
        self.env = _str_list(data.get("env"), f"{where}.env")
        timeout = data.get("timeout")
        self.timeout = None if timeout is None else _int(timeout, f"{where}.timeout", minimum=1)


class IDMapping:
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.container_id = _int(data.get("containerID"), f"{path}.containerID", minimum=0)
        self.host_id = _int(data.get("hostID"), f"{path}.hostID", minimum=0)
        self.size = _int(data.get("size"), f"{path}.size", minimum=1)


class Device:
    __slots__ = ("file_mode", "gid", "major", "minor", "path", "type", "uid")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.path = _str(data.get("path"), f"{path}.path")
        if not self.path.startswith("/dev/"):
            raise _fail(f"{path}.path", f"{self.path!r} must be under /dev/")
        self.type = _str(data.get("type"), f"{path}.type")
        if self.type not in ("c", "b", "u", "p"):
            raise _fail(f"{path}.type", f"{self.type!r} is not one of c, b, u, p")
        self.major = _int(data.get("major"), f"{path}.major")
        self.minor = _int(data.get("minor"), f"{path}.minor")
        mode = data.get("fileMode")
        self.file_mode = 0o666 if mode is None else _int(mode, f"{path}.fileMode")
        self.uid = _int(data.get("uid"), f"{path}.uid")
        self.gid = _int(data.get("gid"), f"{path}.gid")


class Linux:
    """``linux``: namespaces, id mappings, devices, cgroups, security settings."""

    __slots__ = ("cgroups_path", "devices", "gid_mappings", "masked_paths", "namespaces",
                 "personality", "readonly_paths", "resources", "rootfs_propagation",
                 "seccomp", "sysctl", "time_offsets", "uid_mappings")

    def __init__(self, data: JSONObject) -> None:
        self.namespaces: list[tuple[str, str]] = []
        for index, item in enumerate(_list(data.get("namespaces"), "linux.namespaces")):
            where = f"linux.namespaces[{index}]"
            entry = _obj(item, where)
            kind = _str(entry.get("type"), f"{where}.type")
            if kind not in NAMESPACE_TYPES:
                raise _fail(f"{where}.type", f"unknown namespace type {kind!r}")
            if any(kind == seen for seen, _ in self.namespaces):
                raise _fail(f"{where}.type", f"duplicate namespace {kind}")
            self.namespaces.append((kind, _str(entry.get("path"), f"{where}.path")))
        self.uid_mappings = [IDMapping(_obj(m, f"linux.uidMappings[{i}]"),
                                       f"linux.uidMappings[{i}]")
                             for i, m in enumerate(_list(data.get("uidMappings"),
                                                         "linux.uidMappings"))]
        self.gid_mappings = [IDMapping(_obj(m, f"linux.gidMappings[{i}]"),
                                       f"linux.gidMappings[{i}]")
                             for i, m in enumerate(_list(data.get("gidMappings"),
                                                         "linux.gidMappings"))]
        self.devices = [Device(_obj(d, f"linux.devices[{i}]"), f"linux.devices[{i}]")
                        for i, d in enumerate(_list(data.get("devices"), "linux.devices"))]
        self.cgroups_path = _str(data.get("cgroupsPath"), "linux.cgroupsPath")
        self.resources = parse_resources(data.get("resources"))
        self.rootfs_propagation = _str(data.get("rootfsPropagation"), "linux.rootfsPropagation")
        self.masked_paths = _str_list(data.get("maskedPaths"), "linux.maskedPaths")
        self.readonly_paths = _str_list(data.get("readonlyPaths"), "linux.readonlyPaths")
        sysctl = _obj(data.get("sysctl"), "linux.sysctl")
        for key, value in sysctl.items():
            if not isinstance(value, str):
                raise _fail(f"linux.sysctl.{key}", "must be a string")
        self.sysctl: dict[str, str] = sysctl
        seccomp = data.get("seccomp")
        self.seccomp = None if seccomp is None else parse_seccomp(seccomp)
        self.time_offsets = _obj(data.get("timeOffsets"), "linux.timeOffsets")
        personality = _obj(data.get("personality"), "linux.personality")
        self.personality = _str(personality.get("domain"), "linux.personality.domain")
        for unsupported in ("intelRdt", "memoryPolicy", "netDevices"):
            if data.get(unsupported):
                raise Unsupported("load config", f"linux.{unsupported}",
                                  detail="not supported by tsubo-runtime yet")
        if data.get("mountLabel"):
            raise Unsupported("load config", "linux.mountLabel",
                              detail="SELinux labels are not supported (SELinux is off here)")

    def namespace_path(self, kind: str) -> str | None:
        """The join path for *kind*; "" for a new namespace; None when not listed."""
        for listed, path in self.namespaces:
            if listed == kind:
                return path
        return None


class Spec:
    """A whole ``config.json``."""

    __slots__ = ("annotations", "domainname", "hooks", "hostname", "linux", "mounts",
                 "oci_version", "process", "raw", "root_path", "root_readonly")

    def __init__(self, data: JSONObject) -> None:
        self.raw = data
        self.oci_version = _str(data.get("ociVersion"), "ociVersion")
        if not self.oci_version.startswith(SUPPORTED_VERSIONS):
            raise _fail("ociVersion", f"{self.oci_version!r} is not a supported version "
                        "(1.0.x-1.2.x)")
        root = _obj(data.get("root"), "root")
        self.root_path = _str(root.get("path"), "root.path")
        if not self.root_path:
            raise _fail("root.path", "is required")
        self.root_readonly = _bool(root.get("readonly"), "root.readonly")
        process = data.get("process")
        self.process = None if process is None else Process(_obj(process, "process"))
        self.hostname = _str(data.get("hostname"), "hostname")
        self.domainname = _str(data.get("domainname"), "domainname")
        self.mounts = [Mount(_obj(m, f"mounts[{i}]"), f"mounts[{i}]")
                       for i, m in enumerate(_list(data.get("mounts"), "mounts"))]
        hooks = _obj(data.get("hooks"), "hooks")
        self.hooks: dict[str, list[Hook]] = {}
        for name, entries in hooks.items():
            if name not in HOOK_NAMES:
                raise _fail(f"hooks.{name}", "unknown hook")
            self.hooks[name] = [Hook(_obj(h, f"hooks.{name}[{i}]"), f"hooks.{name}[{i}]")
                                for i, h in enumerate(_list(entries, f"hooks.{name}"))]
        annotations = _obj(data.get("annotations"), "annotations")
        for key, value in annotations.items():
            if not isinstance(value, str):
                raise _fail(f"annotations.{key}", "must be a string")
        self.annotations: dict[str, str] = annotations
        linux = data.get("linux")
        self.linux = Linux(_obj(linux, "linux") if linux is not None else {})


def parse_spec(text: str | bytes) -> Spec:
    """Parse and validate the text of a config.json (at most :data:`MAX_CONFIG_BYTES`,
    nested at most :data:`tsubo.jsonwire.MAX_DEPTH` deep)."""
    from tsubo import jsonwire

    data = jsonwire.loads(text, "config.json", operation="load config",
                          max_bytes=MAX_CONFIG_BYTES)
    return Spec(_obj(data, "config.json"))


# --- frozen values: linux.resources and linux.seccomp -----------------------------------------


class _Frozen:
    """Attributes are set once, in ``__init__`` (through :func:`_init`); then read-only."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[object, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(names, self._values(),
                                                                      strict=True))
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and type(other) is type(self) \
            and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())


_init = object.__setattr__


def _section(data: JSONObject, key: str, path: str) -> JSONObject | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"{path}.{key}", "must be an object")
    return value


def _limit(data: JSONObject, key: str, path: str) -> int | None:
    """An optional integer of ``linux.resources``: -1 (unlimited) or more."""
    value = data.get(key)
    return None if value is None else _int(value, f"{path}.{key}", minimum=-1)


def _text(data: JSONObject, key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\n" in value:
        raise _fail(f"{path}.{key}", "must be a string (one line)")
    return value


def _objects(data: JSONObject, key: str, path: str) -> list[tuple[JSONObject, str]]:
    """Each object of the array ``data[key]``, with its JSON path."""
    items = []
    for index, item in enumerate(_list(data.get(key), f"{path}.{key}")):
        where = f"{path}.{key}[{index}]"
        if not isinstance(item, dict):
            raise _fail(where, "must be an object")
        items.append((item, where))
    return items


class DeviceRule(_Frozen):
    """One device cgroup rule (``linux.resources.devices[]``). ``type`` is ``a`` (all, also
    when unset), ``b``, ``c``, ``u`` or ``p``; ``major``/``minor`` None match any (unset or
    -1 in the config); ``access`` is made of ``r``, ``w``, ``m`` (``rwm`` when unset)."""

    __slots__ = ("access", "allow", "major", "minor", "type")
    allow: bool
    type: str
    major: int | None
    minor: int | None
    access: str

    def __init__(self, allow: bool, type_: str = "a", major: int | None = None,
                 minor: int | None = None, access: str = "rwm") -> None:
        _init(self, "allow", allow)
        _init(self, "type", type_)
        _init(self, "major", major)
        _init(self, "minor", minor)
        _init(self, "access", access)


def _device_rule(data: JSONObject, path: str) -> DeviceRule:
    allow = data.get("allow")
    if not isinstance(allow, bool):
        raise _fail(f"{path}.allow", "must be true or false")
    kind = data.get("type") or "a"
    if kind not in ("a", "b", "c", "u", "p"):
        raise _fail(f"{path}.type", f"unknown type {kind!r}")
    access = data.get("access") or "rwm"
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise _fail(f"{path}.access", f"bad access {access!r}: must be made of r, w, m")
    return DeviceRule(allow, kind, _device_number(data.get("major"), f"{path}.major"),
                      _device_number(data.get("minor"), f"{path}.minor"), access)


def _device_number(value: object, path: str) -> int | None:
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, "must be a device number or -1")
    return value


class MemoryResources(_Frozen):
    """``linux.resources.memory``, as given (0: unset, -1: unlimited); ``swap`` is memory
    plus swap, as in cgroup v1; ``swappiness`` None when unset (Docker writes -1)."""

    __slots__ = ("check_before_update", "disable_oom_killer", "kernel", "kernel_tcp",
                 "limit", "reservation", "swap", "swappiness")
    limit: int | None
    reservation: int | None
    swap: int | None
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool
    check_before_update: bool

    def __init__(self, data: JSONObject, path: str = "linux.resources.memory") -> None:
        _init(self, "limit", _limit(data, "limit", path))
        _init(self, "reservation", _limit(data, "reservation", path))
        _init(self, "swap", _limit(data, "swap", path))
        _init(self, "kernel", _limit(data, "kernel", path))
        _init(self, "kernel_tcp", _limit(data, "kernelTCP", path))
        swappiness = _limit(data, "swappiness", path)
        if swappiness is not None and swappiness > 100:
            raise _fail(f"{path}.swappiness", "must be 0..100")
        _init(self, "swappiness", None if swappiness == -1 else swappiness)
        _init(self, "disable_oom_killer",
              _bool(data.get("disableOOMKiller"), f"{path}.disableOOMKiller"))
        _init(self, "check_before_update",
              _bool(data.get("checkBeforeUpdate"), f"{path}.checkBeforeUpdate"))
        limit, swap = self.limit or -1, self.swap or -1
        if swap != -1 and limit != -1 and swap < limit:
            raise _fail(f"{path}.swap",
                        f"memory+swap limit {swap} is below the memory limit {limit}")


class CpuResources(_Frozen):
    """``linux.resources.cpu``, as given (0 or unset: None after the kernel code's rules)."""

    __slots__ = ("burst", "cpus", "idle", "mems", "period", "quota", "realtime_period",
                 "realtime_runtime", "shares")
    shares: int | None
    quota: int | None
    burst: int | None
    period: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str | None
    mems: str | None
    idle: int | None

    def __init__(self, data: JSONObject, path: str = "linux.resources.cpu") -> None:
        _init(self, "shares", _limit(data, "shares", path))
        _init(self, "quota", _limit(data, "quota", path))
        _init(self, "burst", _limit(data, "burst", path))
        period = _limit(data, "period", path)
        if period == -1:
            raise _fail(f"{path}.period", "must be positive")
        _init(self, "period", period)
        _init(self, "realtime_runtime", _limit(data, "realtimeRuntime", path))
        _init(self, "realtime_period", _limit(data, "realtimePeriod", path))
        _init(self, "cpus", _text(data, "cpus", path))
        _init(self, "mems", _text(data, "mems", path))
        _init(self, "idle", _limit(data, "idle", path))


def _block_device(data: JSONObject, path: str) -> tuple[int, int]:
    major = _int(data.get("major"), f"{path}.major", -1, minimum=0)
    minor = _int(data.get("minor"), f"{path}.minor", -1, minimum=0)
    if major < 0 or minor < 0:
        raise _fail(path, "needs major and minor numbers")
    return major, minor


class DeviceWeight(_Frozen):
    """``blockIO.weightDevice[]``: a block device's weight and leaf weight."""

    __slots__ = ("leaf_weight", "major", "minor", "weight")
    major: int
    minor: int
    weight: int | None
    leaf_weight: int | None

    def __init__(self, data: JSONObject, path: str) -> None:
        major, minor = _block_device(data, path)
        _init(self, "major", major)
        _init(self, "minor", minor)
        _init(self, "weight", _limit(data, "weight", path))
        _init(self, "leaf_weight", _limit(data, "leafWeight", path))


class DeviceRate(_Frozen):
    """``blockIO.throttle*Device[]``: a block device's bytes or I/O operations per second."""

    __slots__ = ("major", "minor", "rate")
    major: int
    minor: int
    rate: int

    def __init__(self, data: JSONObject, path: str) -> None:
        major, minor = _block_device(data, path)
        _init(self, "major", major)
        _init(self, "minor", minor)
        rate = data.get("rate")
        if rate is None:
            raise _fail(f"{path}.rate", "is required")
        _init(self, "rate", _int(rate, f"{path}.rate", minimum=0))


#: ``blockIO`` throttle lists -> attribute names
_THROTTLE_KEYS = (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
                 ("throttleReadIOPSDevice", "read_iops"),
                 ("throttleWriteIOPSDevice", "write_iops"))


class BlockIO(_Frozen):
    """``linux.resources.blockIO``."""

    __slots__ = ("leaf_weight", "read_bps", "read_iops", "weight", "weight_devices",
                 "write_bps", "write_iops")
    weight: int | None
    leaf_weight: int | None
    weight_devices: tuple[DeviceWeight, ...]
    read_bps: tuple[DeviceRate, ...]
    write_bps: tuple[DeviceRate, ...]
    read_iops: tuple[DeviceRate, ...]
    write_iops: tuple[DeviceRate, ...]

    def __init__(self, data: JSONObject, path: str = "linux.resources.blockIO") -> None:
        _init(self, "weight", _limit(data, "weight", path))
        _init(self, "leaf_weight", _limit(data, "leafWeight", path))
        _init(self, "weight_devices", tuple(
            DeviceWeight(item, where) for item, where in _objects(data, "weightDevice", path)))
        for key, name in _THROTTLE_KEYS:
            _init(self, name, tuple(DeviceRate(item, where)
                                    for item, where in _objects(data, key, path)))


class HugepageLimit(_Frozen):
    """``linux.resources.hugepageLimits[]``: ``page_size`` like ``2MB``, ``limit`` in bytes."""

    __slots__ = ("limit", "page_size")
    page_size: str
    limit: int

    def __init__(self, data: JSONObject, path: str) -> None:
        size = _text(data, "pageSize", path)
        limit = _limit(data, "limit", path)
        if not size or not size.isalnum() or limit is None:
            raise _fail(path, "needs pageSize (like 2MB) and limit")
        _init(self, "page_size", size)
        _init(self, "limit", limit)


class InterfacePriority(_Frozen):
    """``linux.resources.network.priorities[]``."""

    __slots__ = ("name", "priority")
    name: str
    priority: int

    def __init__(self, data: JSONObject, path: str) -> None:
        name = _text(data, "name", path)
        priority = _limit(data, "priority", path)
        if not name or " " in name or priority is None:
            raise _fail(path, "needs name and priority")
        _init(self, "name", name)
        _init(self, "priority", priority)


class NetworkResources(_Frozen):
    """``linux.resources.network`` (cgroup v1's net_cls and net_prio)."""

    __slots__ = ("class_id", "priorities")
    class_id: int | None
    priorities: tuple[InterfacePriority, ...]

    def __init__(self, data: JSONObject, path: str = "linux.resources.network") -> None:
        _init(self, "class_id", _limit(data, "classID", path))
        _init(self, "priorities", tuple(InterfacePriority(item, where)
                                        for item, where in _objects(data, "priorities", path)))


class RdmaLimit(_Frozen):
    """One device of ``linux.resources.rdma``."""

    __slots__ = ("device", "hca_handles", "hca_objects")
    device: str
    hca_handles: int | None
    hca_objects: int | None

    def __init__(self, device: str, data: object, path: str) -> None:
        if not isinstance(data, dict) or not device or " " in device:
            raise _fail(f"{path}.{device}", "must be an object named by a device")
        _init(self, "device", device)
        _init(self, "hca_handles", _limit(data, "hcaHandles", f"{path}.{device}"))
        _init(self, "hca_objects", _limit(data, "hcaObjects", f"{path}.{device}"))


class Resources(_Frozen):
    """``linux.resources``: each part None (or empty) when the config leaves it out.
    ``devices`` None means "not given" (no device rule is written), ``()`` "deny all"."""

    __slots__ = ("block_io", "cpu", "devices", "hugepage_limits", "memory", "network",
                 "pids_limit", "rdma", "unified")
    devices: tuple[DeviceRule, ...] | None
    memory: MemoryResources | None
    cpu: CpuResources | None
    pids_limit: int | None
    block_io: BlockIO | None
    hugepage_limits: tuple[HugepageLimit, ...]
    network: NetworkResources | None
    rdma: tuple[RdmaLimit, ...]
    unified: tuple[tuple[str, str], ...]

    def __init__(self, devices: tuple[DeviceRule, ...] | None = None,
                 memory: MemoryResources | None = None, cpu: CpuResources | None = None,
                 pids_limit: int | None = None, block_io: BlockIO | None = None,
                 hugepage_limits: tuple[HugepageLimit, ...] = (),
                 network: NetworkResources | None = None, rdma: tuple[RdmaLimit, ...] = (),
                 unified: tuple[tuple[str, str], ...] = ()) -> None:
        _init(self, "devices", devices)
        _init(self, "memory", memory)
        _init(self, "cpu", cpu)
        _init(self, "pids_limit", pids_limit)
        _init(self, "block_io", block_io)
        _init(self, "hugepage_limits", hugepage_limits)
        _init(self, "network", network)
        _init(self, "rdma", rdma)
        _init(self, "unified", unified)

    def with_devices(self, devices: tuple[DeviceRule, ...]) -> Resources:
        """The same resources with *devices* as the device rules."""
        return Resources(devices, self.memory, self.cpu, self.pids_limit, self.block_io,
                         self.hugepage_limits, self.network, self.rdma, self.unified)


def parse_resources(data: object, path: str = "linux.resources") -> Resources:
    """Validate a ``linux.resources`` object (None: no resources) into :class:`Resources`."""
    if data is None:
        return _NO_RESOURCES
    if not isinstance(data, dict):
        raise _fail(path, "must be an object")
    if not data:
        return _NO_RESOURCES
    devices = None
    if data.get("devices") is not None:
        devices = tuple(_device_rule(item, where)
                        for item, where in _objects(data, "devices", path))
    memory = _section(data, "memory", path)
    cpu = _section(data, "cpu", path)
    pids = _section(data, "pids", path)
    block_io = _section(data, "blockIO", path)
    network = _section(data, "network", path)
    rdma = _section(data, "rdma", path) or {}
    unified = _section(data, "unified", path) or {}
    for key, value in unified.items():
        where = f"{path}.unified.{key}"
        if not isinstance(value, str):
            raise _fail(where, "must be a string")
        if not key or "/" in key or key.startswith(".") or "." not in key:
            raise _fail(where, "not a cgroup v2 file name")
    return Resources(
        devices,
        None if memory is None else MemoryResources(memory, f"{path}.memory"),
        None if cpu is None else CpuResources(cpu, f"{path}.cpu"),
        None if pids is None else _limit(pids, "limit", f"{path}.pids"),
        None if block_io is None else BlockIO(block_io, f"{path}.blockIO"),
        tuple(HugepageLimit(item, where)
              for item, where in _objects(data, "hugepageLimits", path)),
        None if network is None else NetworkResources(network, f"{path}.network"),
        tuple(RdmaLimit(device, limits, f"{path}.rdma") for device, limits in rdma.items()),
        tuple(unified.items()),
    )


_NO_RESOURCES = Resources()

#: the runtime spec's seccomp vocabulary (config-linux.md#seccomp)
SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
#: the only actions that carry an errno (the spec: a runtime MUST fail on errnoRet for others)
SECCOMP_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                     "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
#: the spec's list (as of libseccomp 2.5.0) plus the architectures libseccomp 2.6 added; one
#: the installed libseccomp cannot resolve is Unsupported when the filter is built
SECCOMP_ARCHITECTURES = frozenset(
    "SCMP_ARCH_" + name
    for name in (
        *("X86", "X86_64", "X32", "ARM", "AARCH64"),
        *("MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64", "MIPSEL64N32"),
        *("PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64", "RISCV64"),
        *("LOONGARCH64", "M68K", "SH", "SHEB"),
    )
)
#: seccomp(2) filter flags tsubo honours
SECCOMP_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
#: known flags it cannot honour: only meaningful with SCMP_ACT_NOTIFY, and libseccomp 2.5 has
#: no attribute for it (SCMP_FLTATR_CTL_WAITKILL arrived in 2.6)
SECCOMP_UNSUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)
_SECCOMP_KEYS = frozenset(("defaultAction", "defaultErrnoRet", "architectures", "flags",
                           "listenerPath", "listenerMetadata", "syscalls"))
_SYSCALL_KEYS = frozenset(("names", "action", "errnoRet", "args", "comment"))
_ARG_KEYS = frozenset(("index", "value", "valueTwo", "op"))
#: keys of Docker's profile format, which is not the runtime-spec format: they change which
#: rules apply, so a profile carrying them must be converted first (Docker does that)
_DOCKER_PROFILE_KEYS = frozenset(("archMap", "includes", "excludes"))
_MAX_SYSCALL_ARGS = 6  # struct seccomp_data.args[6]
_UINT64_MAX = (1 << 64) - 1
_ERRNO_MAX = 0xFFFF  # the kernel keeps 16 bits of errno (SECCOMP_RET_DATA)


class SeccompArg(_Frozen):
    """One condition of a rule: ``args[index] OP value`` (``value_two``: MASKED_EQ's value)."""

    __slots__ = ("index", "op", "value", "value_two")
    index: int
    value: int
    value_two: int
    op: str

    def __init__(self, index: int, value: int, value_two: int, op: str) -> None:
        _init(self, "index", index)
        _init(self, "value", value)
        _init(self, "value_two", value_two)
        _init(self, "op", op)


class SeccompRule(_Frozen):
    """One ``syscalls[]`` entry: ``errno_ret`` None when unset (ERRNO and TRACE: EPERM)."""

    __slots__ = ("action", "args", "errno_ret", "names")
    names: tuple[str, ...]
    action: str
    errno_ret: int | None
    args: tuple[SeccompArg, ...]

    def __init__(self, names: tuple[str, ...], action: str, errno_ret: int | None = None,
                 args: tuple[SeccompArg, ...] = ()) -> None:
        _init(self, "names", names)
        _init(self, "action", action)
        _init(self, "errno_ret", errno_ret)
        _init(self, "args", args)


class Seccomp(_Frozen):
    """``linux.seccomp``: names as in the spec (``SCMP_ARCH_X86_64``, ``SCMP_ACT_ERRNO``)."""

    __slots__ = ("architectures", "default_action", "default_errno_ret", "flags", "syscalls")
    default_action: str
    default_errno_ret: int | None
    architectures: tuple[str, ...]
    flags: tuple[str, ...]
    syscalls: tuple[SeccompRule, ...]

    def __init__(self, default_action: str, default_errno_ret: int | None = None,
                 architectures: tuple[str, ...] = (), flags: tuple[str, ...] = (),
                 syscalls: tuple[SeccompRule, ...] = ()) -> None:
        _init(self, "default_action", default_action)
        _init(self, "default_errno_ret", default_errno_ret)
        _init(self, "architectures", architectures)
        _init(self, "flags", flags)
        _init(self, "syscalls", syscalls)


def parse_seccomp(data: object, path: str = "linux.seccomp") -> Seccomp:
    """Validate a ``linux.seccomp`` object into :class:`Seccomp`. Nothing is ignored
    silently: unknown keys, actions, operators, architectures and flags are InvalidArgument
    naming the JSON path; seccomp agents (``SCMP_ACT_NOTIFY``, ``listenerPath``,
    ``listenerMetadata``) are Unsupported."""
    if not isinstance(data, dict):
        raise _fail(path, f"expected an object, got {_type_name(data)}")
    _check_keys(data, _SECCOMP_KEYS, path)
    for key in ("listenerPath", "listenerMetadata"):
        if data.get(key) not in (None, ""):
            raise Unsupported("load config", f"{path}.{key}", detail="seccomp agents "
                              "(SCMP_ACT_NOTIFY listeners) are not supported yet")
    if "defaultAction" not in data:
        raise _fail(f"{path}.defaultAction", "missing (it is required)")
    default_action, default_errno = _seccomp_action(
        data["defaultAction"], data.get("defaultErrnoRet"), f"{path}.defaultAction",
        f"{path}.defaultErrnoRet")
    architectures = []
    for index, arch in enumerate(_array(data.get("architectures"), f"{path}.architectures")):
        if arch not in SECCOMP_ARCHITECTURES:
            raise _fail(f"{path}.architectures[{index}]",
                        f"unknown architecture {_quote(arch)}", hint="e.g. SCMP_ARCH_X86_64")
        architectures.append(str(arch))
    flags = []
    for index, flag in enumerate(_array(data.get("flags"), f"{path}.flags")):
        where = f"{path}.flags[{index}]"
        if flag in SECCOMP_UNSUPPORTED_FLAGS:
            raise Unsupported("load config", where, detail=f"flag {flag} is not supported")
        if flag not in SECCOMP_FLAGS:
            raise _fail(where, f"unknown flag {_quote(flag)}",
                        hint="one of " + ", ".join(SECCOMP_FLAGS))
        flags.append(str(flag))
    rules = tuple(_seccomp_rule(entry, f"{path}.syscalls[{index}]")
                  for index, entry in enumerate(_array(data.get("syscalls"),
                                                       f"{path}.syscalls")))
    return Seccomp(default_action, default_errno, tuple(architectures), tuple(flags), rules)


def _seccomp_rule(entry: object, path: str) -> SeccompRule:
    if not isinstance(entry, dict):
        raise _fail(path, f"expected an object, got {_type_name(entry)}")
    _check_keys(entry, _SYSCALL_KEYS, path)
    names = _array(entry.get("names"), f"{path}.names")
    if not names:
        raise _fail(f"{path}.names", "must list at least one syscall")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise _fail(f"{path}.names[{index}]", f"expected a syscall name, got {_quote(name)}")
    if "action" not in entry:
        raise _fail(f"{path}.action", "missing (it is required)")
    action, errno_ret = _seccomp_action(entry["action"], entry.get("errnoRet"),
                                        f"{path}.action", f"{path}.errnoRet")
    args = []
    for index, arg in enumerate(_array(entry.get("args"), f"{path}.args")):
        where = f"{path}.args[{index}]"
        if not isinstance(arg, dict):
            raise _fail(where, f"expected an object, got {_type_name(arg)}")
        _check_keys(arg, _ARG_KEYS, where)
        op = arg.get("op")
        if op not in SECCOMP_OPERATORS:
            raise _fail(f"{where}.op", f"unknown operator {_quote(op)}",
                        hint="one of " + ", ".join(SECCOMP_OPERATORS))
        args.append(SeccompArg(
            _uint(arg.get("index"), f"{where}.index", _MAX_SYSCALL_ARGS - 1, required=True),
            _uint(arg.get("value"), f"{where}.value", _UINT64_MAX, required=True),
            _uint(arg.get("valueTwo"), f"{where}.valueTwo", _UINT64_MAX), str(op)))
    return SeccompRule(tuple(names), action, errno_ret, tuple(args))


def _seccomp_action(name: object, errno_ret: object, where: str,
                    errno_where: str) -> tuple[str, int | None]:
    if name not in SECCOMP_ACTIONS:
        raise _fail(where, f"unknown action {_quote(name)}",
                    hint="one of " + ", ".join(SECCOMP_ACTIONS))
    if name == "SCMP_ACT_NOTIFY":
        raise Unsupported("load config", where, detail="SCMP_ACT_NOTIFY needs a seccomp "
                          "agent, which is not supported yet")
    if errno_ret is None:
        return str(name), None
    if name not in SECCOMP_ERRNO_ACTIONS:
        raise _fail(errno_where,
                    f"{name} returns no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    return str(name), _uint(errno_ret, errno_where, _ERRNO_MAX)


def _uint(value: object, where: str, maximum: int, *, required: bool = False) -> int:
    if value is None:
        if required:
            raise _fail(where, "missing (it is required)")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _fail(where, f"expected an integer from 0 to {maximum}, got {_quote(value)}")
    return value


def _array(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, f"expected an array, got {_type_name(value)}")
    return value


def _check_keys(data: JSONObject, known: frozenset[str], where: str) -> None:
    for key in data:
        if key not in known:
            hint = ("this is Docker's profile format; convert it to the runtime-spec format "
                    "first") if key in _DOCKER_PROFILE_KEYS else ""
            raise _fail(f"{where}.{key}", "unknown key", hint=hint)


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return repr(value)
