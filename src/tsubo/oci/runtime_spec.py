"""The OCI runtime spec's ``config.json`` (1.0.x-1.2.x), parsed and validated into typed objects.

Pure: no file system access beyond reading the given text, no side effects. Every
validation error is an :class:`InvalidArgument` naming the JSON path of the bad field
(``process.user.uid``), so a user can find it. Settings that are valid but that this
runtime cannot honour raise :class:`Unsupported` rather than being ignored.

Classes are plain ``__slots__`` classes, not dataclasses: ``import dataclasses`` costs ~20 ms
on our reference machine and this module is on the ``create`` hot path.
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


def _fail(path: str, problem: str) -> InvalidArgument:
    return InvalidArgument("load config", path, detail=problem)


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
        self.resources = _obj(data.get("resources"), "linux.resources")
        self.rootfs_propagation = _str(data.get("rootfsPropagation"), "linux.rootfsPropagation")
        self.masked_paths = _str_list(data.get("maskedPaths"), "linux.maskedPaths")
        self.readonly_paths = _str_list(data.get("readonlyPaths"), "linux.readonlyPaths")
        sysctl = _obj(data.get("sysctl"), "linux.sysctl")
        for key, value in sysctl.items():
            if not isinstance(value, str):
                raise _fail(f"linux.sysctl.{key}", "must be a string")
        self.sysctl: dict[str, str] = sysctl
        seccomp = data.get("seccomp")
        self.seccomp = None if seccomp is None else _obj(seccomp, "linux.seccomp")
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
