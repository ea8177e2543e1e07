"""The OCI runtime spec's ``config.json`` (any 1.x), parsed and validated into typed objects.

Pure: no file system access beyond reading the given text, no side effects. Every
validation error is an :class:`InvalidArgument` naming the JSON path of the bad field
(``process.user.uid``), so a user can find it. Settings that are valid but that this
runtime cannot honour raise :class:`Unsupported` rather than being ignored.

Classes are plain ``__slots__`` classes, not dataclasses: ``import dataclasses`` costs ~20 ms
on our reference machine and this module is on the ``create`` hot path.

``linux.resources`` and ``linux.seccomp`` are parsed into frozen values (:class:`Resources`
with its :class:`DeviceRule` items here, the other parts in ``oci/resources.py``;
``Seccomp`` in ``oci/seccomp.py``, each imported only when a config has that part), validated
once, here, so ``kernel/cgroups`` and ``kernel/seccomp`` only turn them into cgroupfs writes
and a libseccomp filter. They keep the config's values and vocabulary (``0`` for "unset",
``-1`` for "unlimited", ``SCMP_ACT_*`` names); what a value means on a given host is the
kernel code's business. kernel/ never imports oci/: it declares the attributes it reads as
protocols of its own, and mypy checks these classes against them where the runtime hands
one to the other.
"""

from __future__ import annotations

from tsubo.errors import Unsupported
from tsubo.oci import (
    Frozen,
    as_bool,
    as_int,
    as_list,
    as_object,
    as_str,
    as_str_list,
    fail,
    objects_at,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.oci import JSONObject
    from tsubo.oci.resources import (
        BlockIO,
        CpuResources,
        HugepageLimit,
        MemoryResources,
        NetworkResources,
        RdmaLimit,
    )
    from tsubo.oci.seccomp import Seccomp

#: every 1.x: minor versions of the runtime spec only add optional fields (its versioning
#: rule), so a config from a newer client (runtime-tools writes 1.3.0) is one we can read;
#: what it asks that we cannot do is refused field by field. runc refuses no 1.x either.
SUPPORTED_MAJOR = "1."
#: config.json's size limit: runc has none; a config with Docker's seccomp profile is
#: ~30 KB, so this is hundreds of times any real one
MAX_CONFIG_BYTES = 16 << 20
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


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
        self.bounding = as_str_list(data.get("bounding"), f"{path}.bounding")
        self.effective = as_str_list(data.get("effective"), f"{path}.effective")
        self.inheritable = as_str_list(data.get("inheritable"), f"{path}.inheritable")
        self.permitted = as_str_list(data.get("permitted"), f"{path}.permitted")
        self.ambient = as_str_list(data.get("ambient"), f"{path}.ambient")


class Process:
    """``process``: what runs in the container, as whom, with which privileges."""

    __slots__ = ("apparmor_profile", "args", "capabilities", "console_size", "cwd", "env",
                 "no_new_privileges", "oom_score_adj", "rlimits", "selinux_label",
                 "terminal", "user")

    def __init__(self, data: JSONObject, path: str = "process") -> None:
        self.terminal = as_bool(data.get("terminal"), f"{path}.terminal")
        size = as_object(data.get("consoleSize"), f"{path}.consoleSize")
        self.console_size = (
            (as_int(size.get("height"), f"{path}.consoleSize.height", minimum=0),
             as_int(size.get("width"), f"{path}.consoleSize.width", minimum=0))
            if size else None
        )
        self.args = as_str_list(data.get("args"), f"{path}.args")
        if not self.args:
            raise fail(f"{path}.args", "must name the program to run")
        if data.get("commandLine"):
            raise Unsupported("load config", f"{path}.commandLine",
                              detail="commandLine is for Windows containers")
        self.env = as_str_list(data.get("env"), f"{path}.env")
        for index, entry in enumerate(self.env):
            if "=" not in entry:
                raise fail(f"{path}.env[{index}]", f"{entry!r} is not KEY=VALUE")
        self.cwd = as_str(data.get("cwd"), f"{path}.cwd", "/")
        if not self.cwd.startswith("/"):
            raise fail(f"{path}.cwd", f"{self.cwd!r} must be an absolute path")
        user = as_object(data.get("user"), f"{path}.user")
        gids = as_list(user.get("additionalGids"), f"{path}.user.additionalGids")
        self.user = User(
            as_int(user.get("uid"), f"{path}.user.uid", minimum=0),
            as_int(user.get("gid"), f"{path}.user.gid", minimum=0),
            [as_int(g, f"{path}.user.additionalGids[{i}]", minimum=0) for i, g in enumerate(gids)],
            as_int(user["umask"], f"{path}.user.umask", minimum=0)
            if user.get("umask") is not None else None,
        )
        if user.get("username"):
            raise Unsupported("load config", f"{path}.user.username",
                              detail="username is for Windows containers")
        self.rlimits = []
        seen: set[str] = set()
        for index, item in enumerate(as_list(data.get("rlimits"), f"{path}.rlimits")):
            where = f"{path}.rlimits[{index}]"
            rlimit = as_object(item, where)
            kind = as_str(rlimit.get("type"), f"{where}.type")
            if kind in seen:
                raise fail(f"{where}.type", f"duplicate rlimit {kind}")
            seen.add(kind)
            self.rlimits.append(Rlimit(kind, as_int(rlimit.get("hard"), f"{where}.hard"),
                                       as_int(rlimit.get("soft"), f"{where}.soft")))
        caps = data.get("capabilities")
        self.capabilities = (
            Capabilities(as_object(caps, f"{path}.capabilities"), f"{path}.capabilities")
            if caps is not None else None
        )
        self.no_new_privileges = as_bool(data.get("noNewPrivileges"), f"{path}.noNewPrivileges")
        oom = data.get("oomScoreAdj")
        self.oom_score_adj = None if oom is None else as_int(oom, f"{path}.oomScoreAdj")
        if self.oom_score_adj is not None and not -1000 <= self.oom_score_adj <= 1000:
            raise fail(f"{path}.oomScoreAdj", "must be between -1000 and 1000")
        self.apparmor_profile = as_str(data.get("apparmorProfile"), f"{path}.apparmorProfile")
        self.selinux_label = as_str(data.get("selinuxLabel"), f"{path}.selinuxLabel")
        for unsupported in ("scheduler", "ioPriority", "execCPUAffinity"):
            if data.get(unsupported):
                raise Unsupported("load config", f"{path}.{unsupported}",
                                  detail="not supported by tsubo-runtime yet")


class Mount:
    __slots__ = ("destination", "options", "source", "type")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.destination = as_str(data.get("destination"), f"{path}.destination")
        if not self.destination:
            raise fail(f"{path}.destination", "is required")
        self.type = as_str(data.get("type"), f"{path}.type")
        self.source = as_str(data.get("source"), f"{path}.source")
        self.options = as_str_list(data.get("options"), f"{path}.options")
        if data.get("uidMappings") or data.get("gidMappings"):
            raise Unsupported("load config", path, detail="id-mapped mounts are not supported")


class Hook:
    __slots__ = ("args", "env", "path", "timeout")

    def __init__(self, data: JSONObject, where: str) -> None:
        self.path = as_str(data.get("path"), f"{where}.path")
        if not self.path.startswith("/"):
            raise fail(f"{where}.path", "must be an absolute path")
        self.args = as_str_list(data.get("args"), f"{where}.args") or [self.path]
        self.env = as_str_list(data.get("env"), f"{where}.env")
        timeout = data.get("timeout")
        self.timeout = None if timeout is None else as_int(timeout, f"{where}.timeout", minimum=1)


class IDMapping:
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.container_id = as_int(data.get("containerID"), f"{path}.containerID", minimum=0)
        self.host_id = as_int(data.get("hostID"), f"{path}.hostID", minimum=0)
        self.size = as_int(data.get("size"), f"{path}.size", minimum=1)


class Device:
    __slots__ = ("file_mode", "gid", "major", "minor", "path", "type", "uid")

    def __init__(self, data: JSONObject, path: str) -> None:
        self.path = as_str(data.get("path"), f"{path}.path")
        if not self.path.startswith("/dev/"):
            raise fail(f"{path}.path", f"{self.path!r} must be under /dev/")
        self.type = as_str(data.get("type"), f"{path}.type")
        if self.type not in ("c", "b", "u", "p"):
            raise fail(f"{path}.type", f"{self.type!r} is not one of c, b, u, p")
        self.major = as_int(data.get("major"), f"{path}.major")
        self.minor = as_int(data.get("minor"), f"{path}.minor")
        mode = data.get("fileMode")
        self.file_mode = 0o666 if mode is None else as_int(mode, f"{path}.fileMode")
        self.uid = as_int(data.get("uid"), f"{path}.uid")
        self.gid = as_int(data.get("gid"), f"{path}.gid")


class Linux:
    """``linux``: namespaces, id mappings, devices, cgroups, security settings."""

    __slots__ = ("cgroups_path", "devices", "gid_mappings", "masked_paths", "namespaces",
                 "personality", "readonly_paths", "resources", "rootfs_propagation",
                 "seccomp", "sysctl", "time_offsets", "uid_mappings")

    def __init__(self, data: JSONObject) -> None:
        self.namespaces: list[tuple[str, str]] = []
        for index, item in enumerate(as_list(data.get("namespaces"), "linux.namespaces")):
            where = f"linux.namespaces[{index}]"
            entry = as_object(item, where)
            kind = as_str(entry.get("type"), f"{where}.type")
            if kind not in NAMESPACE_TYPES:
                raise fail(f"{where}.type", f"unknown namespace type {kind!r}")
            if any(kind == seen for seen, _ in self.namespaces):
                raise fail(f"{where}.type", f"duplicate namespace {kind}")
            self.namespaces.append((kind, as_str(entry.get("path"), f"{where}.path")))
        self.uid_mappings = [IDMapping(as_object(m, f"linux.uidMappings[{i}]"),
                                       f"linux.uidMappings[{i}]")
                             for i, m in enumerate(as_list(data.get("uidMappings"),
                                                         "linux.uidMappings"))]
        self.gid_mappings = [IDMapping(as_object(m, f"linux.gidMappings[{i}]"),
                                       f"linux.gidMappings[{i}]")
                             for i, m in enumerate(as_list(data.get("gidMappings"),
                                                         "linux.gidMappings"))]
        self.devices = [Device(as_object(d, f"linux.devices[{i}]"), f"linux.devices[{i}]")
                        for i, d in enumerate(as_list(data.get("devices"), "linux.devices"))]
        self.cgroups_path = as_str(data.get("cgroupsPath"), "linux.cgroupsPath")
        self.resources = parse_resources(data.get("resources"))
        self.rootfs_propagation = as_str(data.get("rootfsPropagation"), "linux.rootfsPropagation")
        self.masked_paths = as_str_list(data.get("maskedPaths"), "linux.maskedPaths")
        self.readonly_paths = as_str_list(data.get("readonlyPaths"), "linux.readonlyPaths")
        sysctl = as_object(data.get("sysctl"), "linux.sysctl")
        for key, value in sysctl.items():
            if not isinstance(value, str):
                raise fail(f"linux.sysctl.{key}", "must be a string")
        self.sysctl: dict[str, str] = sysctl
        seccomp = data.get("seccomp")
        self.seccomp: Seccomp | None = None
        if seccomp is not None:
            from tsubo.oci.seccomp import parse_seccomp

            self.seccomp = parse_seccomp(seccomp)
        self.time_offsets = as_object(data.get("timeOffsets"), "linux.timeOffsets")
        personality = as_object(data.get("personality"), "linux.personality")
        self.personality = as_str(personality.get("domain"), "linux.personality.domain")
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
        self.oci_version = as_str(data.get("ociVersion"), "ociVersion")
        if not self.oci_version.startswith(SUPPORTED_MAJOR):
            raise fail("ociVersion", f"{self.oci_version!r} is not a supported version (1.x)")
        root = as_object(data.get("root"), "root")
        self.root_path = as_str(root.get("path"), "root.path")
        if not self.root_path:
            raise fail("root.path", "is required")
        self.root_readonly = as_bool(root.get("readonly"), "root.readonly")
        process = data.get("process")
        self.process = None if process is None else Process(as_object(process, "process"))
        self.hostname = as_str(data.get("hostname"), "hostname")
        self.domainname = as_str(data.get("domainname"), "domainname")
        self.mounts = [Mount(as_object(m, f"mounts[{i}]"), f"mounts[{i}]")
                       for i, m in enumerate(as_list(data.get("mounts"), "mounts"))]
        hooks = as_object(data.get("hooks"), "hooks")
        self.hooks: dict[str, list[Hook]] = {}
        for name, entries in hooks.items():
            if name not in HOOK_NAMES:
                raise fail(f"hooks.{name}", "unknown hook")
            self.hooks[name] = [Hook(as_object(h, f"hooks.{name}[{i}]"), f"hooks.{name}[{i}]")
                                for i, h in enumerate(as_list(entries, f"hooks.{name}"))]
        annotations = as_object(data.get("annotations"), "annotations")
        for key, value in annotations.items():
            if not isinstance(value, str):
                raise fail(f"annotations.{key}", "must be a string")
        self.annotations: dict[str, str] = annotations
        linux = data.get("linux")
        self.linux = Linux(as_object(linux, "linux") if linux is not None else {})


def parse_spec(text: str | bytes) -> Spec:
    """Parse and validate the text of a config.json (at most :data:`MAX_CONFIG_BYTES`,
    nested at most :data:`tsubo.jsonwire.MAX_DEPTH` deep)."""
    from tsubo import jsonwire

    data = jsonwire.loads(text, "config.json", operation="load config",
                          max_bytes=MAX_CONFIG_BYTES)
    return Spec(as_object(data, "config.json"))


# --- linux.resources: the frozen values, device rules here (see oci/resources.py) ------

_init = object.__setattr__


class DeviceRule(Frozen):
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
        raise fail(f"{path}.allow", "must be true or false")
    kind = data.get("type") or "a"
    if kind not in ("a", "b", "c", "u", "p"):
        raise fail(f"{path}.type", f"unknown type {kind!r}")
    access = data.get("access") or "rwm"
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise fail(f"{path}.access", f"bad access {access!r}: must be made of r, w, m")
    return DeviceRule(allow, kind, _device_number(data.get("major"), f"{path}.major"),
                      _device_number(data.get("minor"), f"{path}.minor"), access)


def _device_number(value: object, path: str) -> int | None:
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(path, "must be a device number or -1")
    return value


class Resources(Frozen):
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
        raise fail(path, "must be an object")
    devices = None
    if data.get("devices") is not None:
        devices = tuple(_device_rule(item, where)
                        for item, where in objects_at(data, "devices", path))
    if not data.keys() - {"devices"}:
        return _NO_RESOURCES if devices is None else Resources(devices)
    from tsubo.oci.resources import parse_sections

    return Resources(devices, *parse_sections(data, path))


_NO_RESOURCES = Resources()
