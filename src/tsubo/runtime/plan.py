"""Spec -> launch plan: every decision about *how* to build a container, made without side effects.

:func:`make_plan` turns a validated :class:`~tsubo.oci.runtime_spec.Spec` into a
:class:`LaunchPlan`: namespace flags to unshare and paths to join, mount steps with their
flags already parsed, devices, capability masks, rlimits, environment. The child process
(``runtime/init.py``) only carries the plan out, so every rule here is unit-testable
without root.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument, Unsupported
from tsubo.kernel import capabilities
from tsubo.kernel.flags import (
    CLONE_FLAGS,
    MOUNT_FLAG_OPTIONS,
    PROPAGATION_OPTIONS,
    RLIMIT_NUMBERS,
)
from tsubo.kernel.mounts import DeviceNode, MountStep

TYPE_CHECKING = False
if TYPE_CHECKING:

    from tsubo.oci.runtime_spec import Device, Hook, IDMapping, Resources, Spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: (path, type, major, minor) created in every container's /dev (OCI "default devices").
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
)

#: Device cgroup rules every container gets after its config's own (runc's AllowedDevices):
#: mknod of anything (the nodes still need to be usable), the default devices, ptys.
ALLOWED_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)

#: Symlinks in /dev (runtime spec "default devices" + what runc and crun add).
DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)

#: sysctl prefixes that are namespaced, and the namespace each needs (runc's validator).
_NAMESPACED_SYSCTLS = (
    ("kernel.msgmax", "ipc"), ("kernel.msgmnb", "ipc"), ("kernel.msgmni", "ipc"),
    ("kernel.sem", "ipc"), ("kernel.shmall", "ipc"), ("kernel.shmmax", "ipc"),
    ("kernel.shmmni", "ipc"), ("kernel.shm_rmid_forced", "ipc"), ("fs.mqueue.", "ipc"),
    ("net.", "network"), ("kernel.hostname", "uts"), ("kernel.domainname", "uts"),
)


class ProcessPlan:
    """What to exec and with which identity and privileges."""

    __slots__ = ("additional_gids", "apparmor_profile", "args", "capabilities", "console_size",
                 "cwd", "env",
                 "gid", "no_new_privileges", "oom_score_adj", "rlimits", "terminal", "uid",
                 "umask")

    def __init__(self, spec: Spec) -> None:
        process = spec.process
        if process is None:
            raise InvalidArgument("load config", "process", detail="is required to create")
        self.args = process.args
        self.env = environment(process.env)
        self.cwd = process.cwd
        self.uid = process.user.uid
        self.gid = process.user.gid
        self.additional_gids = process.user.additional_gids
        self.umask = 0o022 if process.user.umask is None else process.user.umask
        self.terminal = process.terminal
        self.console_size = process.console_size
        self.no_new_privileges = process.no_new_privileges
        self.oom_score_adj = process.oom_score_adj
        self.apparmor_profile = process.apparmor_profile
        self.rlimits: list[tuple[int, int, int]] = []
        for index, rlimit in enumerate(process.rlimits):
            number = RLIMIT_NUMBERS.get(rlimit.type)
            if number is None:
                raise InvalidArgument("load config", f"process.rlimits[{index}].type",
                                      detail=f"unknown rlimit {rlimit.type!r}")
            self.rlimits.append((number, _rlimit_value(rlimit.soft),
                                 _rlimit_value(rlimit.hard)))
        self.capabilities = capability_sets(spec)


class LaunchPlan:
    """Everything the container's init needs, decided up front."""

    __slots__ = (
        "cgroupns",
        "dev_symlinks",
        "devices",
        "domainname",
        "gid_map",
        "hooks",
        "hostname",
        "join_namespaces",
        "masked_paths",
        "mounts",
        "new_namespaces",
        "no_pivot",
        "process",
        "readonly_paths",
        "root_propagation",
        "root_readonly",
        "rootfs",
        "seccomp",
        "sysctl",
        "uid_map",
        "userns",
    )

    def __init__(self, spec: Spec, bundle: str, *, no_pivot: bool = False) -> None:
        linux = spec.linux
        self.rootfs = spec.root_path if spec.root_path.startswith("/") else (
            f"{bundle}/{spec.root_path}")
        self.root_readonly = spec.root_readonly
        self.no_pivot = no_pivot
        self.process = ProcessPlan(spec)
        self.new_namespaces = 0
        #: (namespace type, path), user namespace first: it decides what the others may do
        self.join_namespaces: list[tuple[str, str]] = []
        for kind, path in sorted(linux.namespaces, key=lambda item: item[0] != "user"):
            if path:
                self.join_namespaces.append((kind, path))
            else:
                self.new_namespaces |= CLONE_FLAGS[kind]
        self.userns = linux.namespace_path("user") is not None
        self.cgroupns = linux.namespace_path("cgroup") == ""
        if linux.namespace_path("mount") is None:
            # The runtime spec (config-linux.md, "Namespaces") says an unlisted type is
            # inherited; for "mount" that would build the container's root and pivot_root
            # in the caller's own mount namespace, changing the host for everyone (runc
            # does just that: "/" made rslave and every config mount left on the host, then
            # chroot). We refuse and say why (docs/runtime.md, "Namespaces not listed").
            raise Unsupported("load config", "linux.namespaces",
                              detail="no mount namespace: the runtime spec would have the "
                              "container inherit the runtime's, but its root would then be "
                              "mounted and pivoted in the host's mounts",
                              hint='add {"type": "mount"} to linux.namespaces')
        if self.userns and linux.namespace_path("user") == "" and not linux.uid_mappings:
            raise InvalidArgument("load config", "linux.uidMappings",
                                  detail="a new user namespace needs uid and gid mappings")
        self.uid_map = id_map_text(linux.uid_mappings)
        self.gid_map = id_map_text(linux.gid_mappings)
        self.hostname = spec.hostname
        self.domainname = spec.domainname
        if (self.hostname or self.domainname) and linux.namespace_path("uts") is None:
            raise InvalidArgument("load config", "hostname",
                                  detail="setting a hostname needs a private UTS namespace")
        self.root_propagation = root_propagation(linux.rootfs_propagation)
        self.mounts = [mount_step(m.source, m.destination, m.type, m.options, bundle,
                                  f"mounts[{i}]") for i, m in enumerate(spec.mounts)]
        self.devices = device_nodes(linux.devices)
        self.dev_symlinks = DEV_SYMLINKS
        self.masked_paths = linux.masked_paths
        self.readonly_paths = linux.readonly_paths
        self.sysctl = validate_sysctl(linux.sysctl, spec)
        self.seccomp = linux.seccomp
        if linux.time_offsets:
            raise Unsupported("load config", "linux.timeOffsets",
                              detail="time namespaces are not supported yet")
        if linux.personality:
            raise Unsupported("load config", "linux.personality",
                              detail="personality is not supported yet")
        self.hooks: dict[str, list[Hook]] = spec.hooks

    def copies_a_mount_base(self) -> bool:
        """Whether the container's mount namespace may be copied from an engine's mount
        base (``kernel.mounts.make_mount_base``) rather than the caller's: a new mount
        namespace with slave or private propagation and a pivot, no user namespace (the
        base belongs to the host's), and no shared bind, which must stay a peer of the
        caller's mount (a base's copy of it is a slave)."""
        shared = PROPAGATION_OPTIONS["shared"]
        return bool(self.new_namespaces & CLONE_FLAGS["mount"]) and not self.userns \
            and not self.no_pivot and not self.root_propagation & shared \
            and not any(flags & shared for step in self.mounts for flags in step.propagation)


def make_plan(spec: Spec, bundle: str, *, no_pivot: bool = False) -> LaunchPlan:
    """The launch plan for *spec* in *bundle* (an absolute path)."""
    return LaunchPlan(spec, bundle, no_pivot=no_pivot)


def environment(entries: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` list -> dict; later entries win, as in execve's callers."""
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        env[key] = value
    return env


def _rlimit_value(value: int) -> int:
    # The spec uses uint64 with 2**64-1 as RLIM_INFINITY; Python's resource module wants -1.
    return -1 if value < 0 or value >= 2**64 - 1 else value


def id_map_text(mappings: list[IDMapping]) -> str:
    """``/proc/PID/uid_map`` text for the mappings."""
    lines = [f"{m.container_id} {m.host_id} {m.size}" for m in mappings]
    return "\n".join(lines) + ("\n" if lines else "")


def root_propagation(name: str) -> int:
    """The flags to apply to "/" in the new mount namespace (default rslave, as runc)."""
    if not name:
        return PROPAGATION_OPTIONS["rslave"]
    flags = PROPAGATION_OPTIONS.get(name)
    if flags is None:
        raise InvalidArgument("load config", "linux.rootfsPropagation",
                              detail=f"unknown propagation {name!r}")
    return flags


def mount_step(source: str, destination: str, fstype: str, options: list[str], bundle: str,
               where: str) -> MountStep:
    """Parse one ``mounts`` entry's options into flags, propagation and fs data."""
    from tsubo.kernel.flags import MS_BIND, MS_RDONLY, MS_REC

    if not destination.startswith("/"):
        destination = "/" + destination  # runc accepts relative destinations, relative to /
    if ".." in destination.split("/"):
        raise InvalidArgument("load config", f"{where}.destination",
                              detail=f"{destination!r} must not contain '..'")
    flags = 0
    data: list[str] = []
    propagation: list[int] = []
    is_bind = fstype == "bind"
    copy_up = False
    for option in options:
        if option in ("bind", "rbind"):
            is_bind = True
            flags |= MS_BIND | (MS_REC if option == "rbind" else 0)
        elif option in MOUNT_FLAG_OPTIONS:
            clear, value = MOUNT_FLAG_OPTIONS[option]
            flags = (flags & ~value) if clear else (flags | value)
        elif option in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[option])
        elif option in ("idmap", "ridmap"):
            raise Unsupported("load config", f"{where}.options",
                              detail="id-mapped mounts are not supported")
        elif option == "tmpcopyup":
            copy_up = True
        else:
            data.append(option)
    if is_bind:
        flags |= MS_BIND
        if source and not source.startswith("/"):
            source = f"{bundle}/{source}"
    # A bind mount ignores every flag but MS_REC on the first call: the rest needs a remount.
    remount = flags & ~(MS_BIND | MS_REC) if is_bind else 0
    if is_bind and remount:
        remount |= flags & MS_RDONLY
    step = MountStep(source, destination, "" if is_bind else fstype, flags, ",".join(data),
                     propagation, is_bind, remount)
    if copy_up and fstype != "tmpfs":
        raise InvalidArgument("load config", f"{where}.options",
                              detail="tmpcopyup applies to tmpfs mounts only")
    step.copy_up = copy_up
    return step


def device_nodes(devices: list[Device]) -> list[DeviceNode]:
    """The default devices plus the config's, the config's winning on the same path."""
    listed = {device.path for device in devices}
    nodes = [DeviceNode(path, kind, major, minor, 0o666, 0, 0)
             for path, kind, major, minor in DEFAULT_DEVICES if path not in listed]
    for device in devices:
        nodes.append(DeviceNode(device.path, device.type, device.major, device.minor,
                                device.file_mode & 0o7777, device.uid, device.gid))
    return nodes


def cgroup_resources(resources: Resources, devices: list[DeviceNode]) -> Resources:
    """``linux.resources`` with the device rules completed as runc does: deny everything,
    then the config's rules, then the default devices, then an allow for each of the
    config's ``linux.devices`` that no rule of the config names (an engine's rule, such
    as Docker's ``--device /dev/x:/dev/x:r``, says what access it has)."""
    from tsubo.oci.runtime_spec import DeviceRule

    given = tuple(resources.devices or ())
    rules = [DeviceRule(False), *given]
    rules += [DeviceRule(True, kind, major, minor, access)
              for kind, major, minor, access in ALLOWED_DEVICE_RULES]
    defaults = {(path, kind, major, minor) for path, kind, major, minor in DEFAULT_DEVICES}
    named = {(rule.type, rule.major, rule.minor) for rule in given}
    rules += [DeviceRule(True, node.type, node.major, node.minor, "rwm") for node in devices
              if (node.path, node.type, node.major, node.minor) not in defaults
              and (node.type, node.major, node.minor) not in named]
    return resources.with_devices(tuple(rules))


def validate_sysctl(sysctl: dict[str, str], spec: Spec) -> dict[str, str]:
    """Only namespaced sysctls, each in a namespace the container has apart from the host's
    (runc's rule): its namespace listed in ``linux.namespaces``, new or joined by path. A
    joined network namespace must not be the runtime's own, which only the kernel can tell:
    :func:`sysctl_netns_path` names the path ``create`` checks."""
    for key in sysctl:
        needed = next((ns for prefix, ns in _NAMESPACED_SYSCTLS if key.startswith(prefix)
                       or key == prefix), None)
        if needed is None:
            raise InvalidArgument("load config", f"linux.sysctl.{key}",
                                  detail="is not namespaced: it would change the host")
        if spec.linux.namespace_path(needed) is None:
            raise InvalidArgument("load config", f"linux.sysctl.{key}",
                                  detail=f"needs a {needed} namespace of the container's own "
                                  "(new, or joined by path)")
    return sysctl


def sysctl_netns_path(plan: LaunchPlan) -> str:
    """The network namespace path a ``net.*`` sysctl would be written in, when it is joined
    by path ("" otherwise): ``create`` refuses it if it is the runtime's own (the host's,
    as runc puts it), so podman's namespace (made by podman, passed by path) is allowed."""
    if not any(key.startswith("net.") for key in plan.sysctl):
        return ""
    return next((path for kind, path in plan.join_namespaces if kind == "network"), "")


def capability_sets(spec: Spec) -> capabilities.CapabilitySets:
    """The five masks; no ``capabilities`` object means none at all, as in runc."""
    process = spec.process
    caps = process.capabilities if process is not None else None
    highest = capabilities.last_cap()
    if caps is None:
        return capabilities.CapabilitySets(0, 0, 0, 0, 0)
    where = "process.capabilities"
    return capabilities.CapabilitySets(
        capabilities.mask_of(caps.bounding, f"{where}.bounding", highest),
        capabilities.mask_of(caps.effective, f"{where}.effective", highest),
        capabilities.mask_of(caps.permitted, f"{where}.permitted", highest),
        capabilities.mask_of(caps.inheritable, f"{where}.inheritable", highest),
        capabilities.mask_of(caps.ambient, f"{where}.ambient", highest),
    )
