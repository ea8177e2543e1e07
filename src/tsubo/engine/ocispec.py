"""The OCI ``config.json`` the engine hands to ``tsubo-runtime``: Docker's defaults, then the
image's config, then the user's flags.

Pure apart from reading the seccomp profile: :func:`build_config` makes every decision from
its arguments; the caller supplies what needs the file system (the container's
``/etc/passwd`` lookup, the engine-owned ``/etc`` files, volume sources, the init binary,
the host's rlimits). The rules follow moby's ``oci/defaults.go``, ``daemon/oci_linux.go``,
``daemon/commit.go`` (image/user merge), ``container/container.go`` (environment) and
``profiles/seccomp`` (the default profile and its per-container conversion).
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, TsuboError
from tsubo.version import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tsubo.engine.options import RunOptions

    #: user name -> (uid, primary gid, supplementary gids)
    PasswdLookup = Callable[[str], tuple[int, int, list[int]]]
    #: group name -> gid
    GroupLookup = Callable[[str], int]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: where ``--init`` bind-mounts the host's init (tini/catatonit) in the container
INIT_DESTINATION = "/run/tsubo-init"

#: moby oci/defaults.go
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: moby oci/defaults.go DefaultLinuxSpec mounts, in its order (/dev/shm with the default
#: --shm-size of 64 MiB)
DEFAULT_MOUNTS = (
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ("/dev/pts", "devpts", "devpts",
     ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
)
#: default mounts a read-only root leaves writable (moby WithMounts)
_WRITABLE_WITH_READONLY_ROOT = ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev")

#: what Docker sets in a container's own network namespace (moby WithCommonOptions):
#: ping without CAP_NET_RAW, ports below 1024 without CAP_NET_BIND_SERVICE
NETWORK_SYSCTLS = (
    ("net.ipv4.ping_group_range", "0 2147483647"),
    ("net.ipv4.ip_unprivileged_port_start", "0"),
)

#: RLIMIT_NOFILE the engine gives when the user sets none (dockerd's systemd unit uses
#: LimitNOFILE=1048576 and containers inherit it); capped at the host's hard limit
DEFAULT_NOFILE = 1048576
_RLIM_INFINITY = 2**64 - 1
_CPU_PERIOD = 100000
_MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" for setresuid

#: os.uname().machine -> Docker's arch name (profiles/seccomp "arches") and SCMP arch
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("x86", "SCMP_ARCH_X86"), "i386": ("x86", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
}

_default_profile: dict[str, Any] | None = None


def _image_error(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument("load image config", f"config.{field}", detail=problem)


def _image_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _image_error(key, "must be a string")
    return value


def _image_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _image_error(key, "must be a list of strings")
    return list(value)


def _image_keys(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _image_error(key, "must be an object")
    return list(value)


class ImageConfig:
    """What an image says about running it (the OCI image config's ``config`` object); an
    empty one for ``--rootfs`` containers."""

    __slots__ = ("cmd", "entrypoint", "env", "exposed_ports", "labels", "stop_signal", "user",
                 "volumes", "workdir")

    def __init__(self, *, env: list[str] | None = None, cmd: list[str] | None = None,
                 entrypoint: list[str] | None = None, workdir: str = "", user: str = "",
                 stop_signal: str = "", volumes: list[str] | None = None,
                 exposed_ports: list[str] | None = None,
                 labels: dict[str, str] | None = None) -> None:
        self.env = list(env or [])
        self.cmd = list(cmd or [])
        self.entrypoint = list(entrypoint or [])
        self.workdir = workdir
        self.user = user
        self.stop_signal = stop_signal
        #: container paths the image declares as volumes (``Volumes`` keys)
        self.volumes = list(volumes or [])
        #: ``"80/tcp"`` ... (``ExposedPorts`` keys)
        self.exposed_ports = list(exposed_ports or [])
        self.labels = dict(labels or {})

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ImageConfig:
        """From the image config's ``config`` object (None -> an empty config)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidArgument("load image config", "config", detail="must be an object")
        labels = data.get("Labels")
        if labels is None:
            labels = {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise _image_error("Labels", "must be an object of strings")
        return cls(
            env=_image_list(data, "Env"),
            cmd=_image_list(data, "Cmd"),
            entrypoint=_image_list(data, "Entrypoint"),
            workdir=_image_str(data, "WorkingDir"),
            user=_image_str(data, "User"),
            stop_signal=_image_str(data, "StopSignal"),
            volumes=_image_keys(data, "Volumes"),
            exposed_ports=_image_keys(data, "ExposedPorts"),
            labels=labels,
        )


# --- process ------------------------------------------------------------------------------


def process_args(options: RunOptions, image: ImageConfig) -> list[str]:
    """Entrypoint + command, Docker's way: ``--entrypoint`` (even ``""``) replaces the
    image's entrypoint and drops the image's CMD; a command replaces the image's CMD."""
    if options.entrypoint is None:
        entrypoint = image.entrypoint
        command = options.command or image.cmd
    else:
        entrypoint = options.entrypoint
        command = options.command
    args = [*entrypoint, *command]
    if not args:
        raise InvalidArgument("create container", "", detail="no command specified",
                              hint="give a command, or use an image with a CMD or ENTRYPOINT")
    return args


def process_env(options: RunOptions, image: ImageConfig, hostname: str) -> list[str]:
    """PATH, HOSTNAME, TERM (with a tty), then the user's and the image's variables.

    As Docker: the user's ``-e`` come first and the image's variables not overridden follow
    (daemon/commit.go merge); they then replace the defaults in place or are appended
    (ReplaceOrAppendEnvValues); a bare ``KEY`` removes ``KEY``. One entry per key: a later
    duplicate replaces an earlier one.
    """
    user_keys = {entry.partition("=")[0] for entry in options.env}
    merged = [*options.env, *(entry for entry in image.env
                              if entry.partition("=")[0] not in user_keys)]
    env: dict[str, str | None] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if options.tty:
        env["TERM"] = "xterm"
    for entry in merged:
        key, equals, value = entry.partition("=")
        if not key:
            continue
        env[key] = value if equals else None
    return [f"{key}={value}" for key, value in env.items() if value is not None]


def _numeric_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    if number > _MAX_ID:
        raise InvalidArgument("create container", text,
                              detail=f"user and group IDs must be at most {_MAX_ID}")
    return number


def resolve_user(spec: str, passwd_lookup: PasswdLookup | None,
                 group_lookup: GroupLookup | None = None) -> tuple[int, int, list[int]]:
    """``uid``, ``uid:gid``, ``name``, ``name:group``, ``uid:group`` -> (uid, gid,
    additional gids), with runc's GetExecUser rules.

    A numeric uid is used as it is, with the groups its passwd entry gives (gid 0 when it
    has none) unless a group is given; *passwd_lookup* is asked for ``#UID``. A name goes to
    *passwd_lookup* (the container's ``/etc/passwd`` and ``/etc/group``), which returns
    (uid, primary gid, supplementary gids). An explicit group replaces the primary gid and
    drops the supplementary ones; a group name goes to *group_lookup*. The additional gids
    are the primary gid followed by the supplementary ones (moby getUser).
    """
    user_text, colon, group_text = (spec or "0:0").partition(":")
    if not user_text or (colon and not group_text):
        raise InvalidArgument("create container", spec, detail="expected --user "
                              "NAME|UID[:GROUP|GID]")
    uid = _numeric_id(user_text)
    gid = 0
    groups: list[int] = []
    if uid is None:
        if passwd_lookup is None:
            raise InvalidArgument("create container", "",
                                  detail=f"unable to find user {user_text}: no matching "
                                  "entries in passwd file")
        uid, gid, groups = passwd_lookup(user_text)
    elif passwd_lookup is not None:
        # A numeric uid listed in the image's passwd takes its primary and supplementary
        # groups from there (runc's GetExecUser, so `-u 1000` matches `-u tsubotest`).
        try:
            _, gid, groups = passwd_lookup(f"#{uid}")
        except TsuboError:
            pass
    if colon:
        groups = []
        number = _numeric_id(group_text)
        if number is not None:
            gid = number
        elif group_lookup is None:
            raise InvalidArgument("create container", "",
                                  detail=f"unable to find group {group_text}: no matching "
                                  "entries in group file")
        else:
            gid = group_lookup(group_text)
    additional = [gid]
    for group in groups:
        if group not in additional:
            additional.append(group)
    return uid, gid, additional


def capability_list(cap_add: list[str], cap_drop: list[str]) -> list[str]:
    """Docker's 14 defaults tweaked by ``--cap-add``/``--cap-drop`` (moby TweakCapabilities):
    add ALL = every capability but the dropped ones; drop ALL = only the added ones; else
    drop, then add. Names must already be normalised (:func:`options.parse_capability`)."""
    from tsubo.kernel.capabilities import (
        CAPABILITY_NUMBERS,
        DOCKER_DEFAULT_CAPABILITIES,
        last_cap,
    )

    for name in (*cap_add, *cap_drop):
        if name != "ALL" and name not in CAPABILITY_NUMBERS:
            raise InvalidArgument("create container", name, detail="unknown capability")
    if "ALL" in cap_add:
        highest = last_cap()
        caps = [name for name, number in CAPABILITY_NUMBERS.items()
                if number <= highest and name not in cap_drop]
    elif "ALL" in cap_drop:
        caps = list(cap_add)
    else:
        caps = [name for name in DOCKER_DEFAULT_CAPABILITIES if name not in cap_drop]
        caps += cap_add
    unique: list[str] = []
    for name in caps:
        if name not in unique:
            unique.append(name)
    return unique


def privileged_capabilities() -> list[str]:
    """``--privileged``: every capability this engine holds in its bounding set (moby's
    GetAllCapabilities: all those available where it runs; ``--cap-add/--cap-drop`` are
    ignored, as Docker ignores them)."""
    from tsubo.kernel.capabilities import CAPABILITY_NUMBERS, bounding_set

    held = bounding_set()
    return [name for name in capability_list(["ALL"], [])
            if held >> CAPABILITY_NUMBERS[name] & 1]


def _rlimit_value(value: int) -> int:
    return _RLIM_INFINITY if value < 0 else value


def _host_limit(value: int) -> int | None:
    """None when the host's limit is infinite (RLIM_INFINITY as -1 or as 2**64-1)."""
    return None if value < 0 or value >= 2**63 else value


def process_rlimits(ulimits: list[tuple[str, int, int]], host_nofile_hard: int,
                    host_nproc_hard: int) -> list[dict[str, Any]]:
    """RLIMIT_NOFILE (1048576) and RLIMIT_NPROC (unlimited), as a container under dockerd
    inherits them, capped at this host's hard limits (the engine may lack CAP_SYS_RESOURCE,
    so a container must never ask for more); then the user's ``--ulimit``s."""
    host = {"RLIMIT_NOFILE": _host_limit(host_nofile_hard),
            "RLIMIT_NPROC": _host_limit(host_nproc_hard)}
    nofile = host["RLIMIT_NOFILE"]
    nofile = DEFAULT_NOFILE if nofile is None else min(DEFAULT_NOFILE, nofile)
    nproc = host["RLIMIT_NPROC"]
    nproc = -1 if nproc is None else nproc
    limits: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (nofile, nofile),
                                          "RLIMIT_NPROC": (nproc, nproc)}
    for kind, soft, hard in ulimits:
        ceiling = host.get(kind)
        if ceiling is not None and (hard < 0 or hard > ceiling):
            name = kind.removeprefix("RLIMIT_").lower()
            raise InvalidArgument(
                "create container", f"--ulimit {name}={soft}:{hard}",
                detail=f"the hard limit is above this host's hard limit of {ceiling}",
                hint=f"use at most {name}={ceiling}")
        limits[kind] = (soft, hard)
    return [{"type": kind, "soft": _rlimit_value(soft), "hard": _rlimit_value(hard)}
            for kind, (soft, hard) in limits.items()]


# --- mounts -------------------------------------------------------------------------------


def _depth(destination: str) -> int:
    return len([part for part in destination.split("/") if part])


def build_mounts(options: RunOptions, etc_files: dict[str, str],
                 volume_mounts: list[tuple[str, str, list[str]]],
                 init_path: str | None) -> list[dict[str, Any]]:
    """Docker's default mounts, less those the user's replace (and all of /dev's when the user
    mounts /dev), then the engine's and the user's, parents before children (moby sorts
    them by depth)."""
    user: list[dict[str, Any]] = []
    for destination, source in etc_files.items():
        user.append({"destination": destination, "type": "bind", "source": source,
                     "options": ["rbind", *(["ro"] if options.read_only else []),
                                 "rprivate"]})
    for tmpfs in options.tmpfs:
        user.append({"destination": tmpfs.destination, "type": "tmpfs", "source": "tmpfs",
                     "options": tmpfs.mount_options()})
    for source, destination, mount_options in volume_mounts:
        user.append({"destination": destination, "type": "bind", "source": source,
                     "options": list(mount_options)})
    if options.init:
        if not init_path:
            raise InvalidArgument("create container", "--init",
                                  detail="no init binary was found on this host",
                                  hint="install tini (tini-static) or catatonit")
        user.append({"destination": INIT_DESTINATION, "type": "bind", "source": init_path,
                     "options": ["bind", "ro"]})
    for mount in user:
        if not str(mount["destination"]).startswith("/"):
            raise InvalidArgument("create container", str(mount["destination"]),
                                  detail="mount destinations must be absolute")
    user.sort(key=lambda mount: _depth(mount["destination"]))
    taken = {mount["destination"] for mount in user}
    defaults = []
    for destination, fstype, source, default_options in DEFAULT_MOUNTS:
        if destination in taken or ("/dev" in taken and destination.startswith("/dev/")):
            continue
        opts = list(default_options)
        if destination == "/dev/shm" and options.shm_size:
            opts = [f"size={options.shm_size // 1024}k" if opt.startswith("size=") else opt
                    for opt in opts]
        if destination == "/dev/shm" and options.ipc_mode == "host":
            # the host's IPC namespace: its /dev/shm too, as Docker's --ipc host
            defaults.append({"destination": destination, "type": "bind", "source": "/dev/shm",
                             "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]})
            continue
        if (options.read_only and destination not in _WRITABLE_WITH_READONLY_ROOT
                and "ro" not in opts):
            opts.append("ro")
        if options.privileged and fstype in ("sysfs", "cgroup"):
            opts = [opt for opt in opts if opt != "ro"]  # writable, as Docker's

        defaults.append({"destination": destination, "type": fstype, "source": source,
                         "options": opts})
    return defaults + user


# --- resources ----------------------------------------------------------------------------


def build_resources(options: RunOptions, devices: list[dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
    """``linux.resources``: deny all devices (the runtime adds the defaults), then allow
    each ``--device`` with its permissions (``--privileged``: every device), memory, CPU,
    pids. ``--memory`` without ``--memory-swap`` allows as much swap as memory (Docker's
    default: memory+swap = twice the memory); ``--memory-swap -1`` leaves swap unlimited."""
    rules: list[dict[str, Any]] = [{"allow": options.privileged, "access": "rwm"}]
    if not options.privileged:
        rules += [{"allow": True, "type": device["type"], "major": device["major"],
                   "minor": device["minor"], "access": device["access"]}
                  for device in devices or ()]
    resources: dict[str, Any] = {"devices": rules}
    memory: dict[str, int] = {}
    if options.memory:
        memory["limit"] = options.memory
        swap = options.memory_swap
        if not swap:
            memory["swap"] = options.memory * 2
        elif swap > 0:
            memory["swap"] = swap
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if options.cpu_shares:
        cpu["shares"] = options.cpu_shares
    if options.cpus:
        cpu["quota"] = round(options.cpus * _CPU_PERIOD)
        cpu["period"] = _CPU_PERIOD
    cpu_any: dict[str, Any] = dict(cpu)
    if options.cpuset_cpus:
        cpu_any["cpus"] = options.cpuset_cpus
    cpu = cpu_any
    if cpu:
        resources["cpu"] = cpu
    if options.pids_limit:
        resources["pids"] = {"limit": options.pids_limit}
    return resources


# --- seccomp ------------------------------------------------------------------------------


def _kernel_at_least(release: str, wanted: str) -> bool:
    def version(text: str) -> tuple[int, int]:
        numbers = []
        for part in text.split(".")[:2]:
            digits = ""
            for char in part:
                if not char.isdigit():
                    break
                digits += char
            numbers.append(int(digits or 0))
        while len(numbers) < 2:
            numbers.append(0)
        return numbers[0], numbers[1]

    return version(release) >= version(wanted)


def convert_seccomp_profile(profile: dict[str, Any], capabilities: list[str], *,
                            machine: str, kernel_release: str) -> dict[str, Any]:
    """Docker's profile format -> the runtime spec's ``linux.seccomp`` for one container
    (moby profiles/seccomp setupSeccomp): ``archMap`` picks this machine's architectures;
    a rule applies only if its ``includes`` (arches, all caps in the bounding set, minimum
    kernel) hold and its ``excludes`` do not. A profile already in OCI form passes through."""
    where = "seccomp profile"
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("load seccomp profile", where,
                              detail="both 'architectures' and 'archMap' are given")
    arch, scmp_arch = _ARCHES.get(machine, (machine, ""))
    result: dict[str, Any] = {"defaultAction": profile.get("defaultAction")}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            result[key] = profile[key]
    architectures = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp_arch:
            architectures = [scmp_arch, *(entry.get("subArchitectures") or [])]
            break
    if architectures:
        result["architectures"] = architectures
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _rule_applies(rule, arch, capabilities, kernel_release):
            continue
        names = list(rule.get("names") or [])
        if rule.get("name"):
            if names:
                raise InvalidArgument("load seccomp profile", where,
                                      detail="a rule gives both 'name' and 'names'")
            names = [rule["name"]]
        converted: dict[str, Any] = {"names": names, "action": rule.get("action")}
        for key in ("errnoRet", "args", "comment"):
            if rule.get(key) is not None:
                converted[key] = rule[key]
        syscalls.append(converted)
    result["syscalls"] = syscalls
    return result


def _rule_applies(rule: dict[str, Any], arch: str, capabilities: list[str],
                  kernel_release: str) -> bool:
    """A profile rule's ``includes`` all hold and none of its ``excludes`` does."""
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if arch in (excludes.get("arches") or []) or \
            any(cap in capabilities for cap in excludes.get("caps") or []):
        return False
    if excludes.get("minKernel") and _kernel_at_least(kernel_release, excludes["minKernel"]):
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if not all(cap in capabilities for cap in includes.get("caps") or []):
        return False
    return not (includes.get("minKernel")
                and not _kernel_at_least(kernel_release, includes["minKernel"]))


def _load_profile(path: str) -> dict[str, Any]:
    from tsubo import jsonwire
    from tsubo.oci.runtime_spec import MAX_CONFIG_BYTES

    try:
        with open(path, "rb") as profile_file:
            text = profile_file.read(MAX_CONFIG_BYTES + 1)  # it ends up in config.json
    except OSError as error:
        raise TsuboError.from_os_error("load seccomp profile", path, error) from None
    data = jsonwire.loads(text, path, operation="load seccomp profile",
                          max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise InvalidArgument("load seccomp profile", path, detail="expected a JSON object")
    return data


def default_seccomp_profile() -> dict[str, Any]:
    """Docker's default profile (package data, Docker's format), loaded once."""
    global _default_profile
    if _default_profile is None:
        _default_profile = _load_profile(
            os.path.join(os.path.dirname(__file__), "data", "seccomp_default.json"))
    return _default_profile


def seccomp_config(setting: str, capabilities: list[str]) -> dict[str, Any] | None:
    """``linux.seccomp`` for ``--security-opt seccomp=...``: ``default`` (Docker's profile),
    ``unconfined`` (None: no filter) or the path of a profile (Docker's format or OCI's)."""
    if setting == "unconfined":
        return None
    profile = default_seccomp_profile() if setting in ("", "default") else _load_profile(
        setting)
    uname = os.uname()
    return convert_seccomp_profile(profile, capabilities, machine=uname.machine,
                                   kernel_release=uname.release)


# --- the whole config ---------------------------------------------------------------------


def build_config(
    options: RunOptions,
    image: ImageConfig,
    *,
    container_id: str,
    rootfs: str,
    etc_files: dict[str, str],
    volume_mounts: list[tuple[str, str, list[str]]],
    init_path: str | None,
    passwd_lookup: PasswdLookup | None,
    host_nofile_hard: int,
    host_nproc_hard: int,
    netns_path: str | None = None,
    cgroups_path: str = "",
    group_lookup: GroupLookup | None = None,
    devices: list[dict[str, Any]] | None = None,
    joined: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` for one container.

    *etc_files* maps ``/etc/hostname``-like destinations to the engine's host files;
    *volume_mounts* are ``(host source, destination, options)`` binds, already resolved
    (named and anonymous volumes to their directories); *init_path* is the host's init for
    ``--init``; *passwd_lookup* and *group_lookup* resolve user and group names in the
    container's ``/etc/passwd`` and ``/etc/group`` (see :func:`resolve_user`);
    *netns_path* is a network namespace to join (a bridge network's, or another
    container's), otherwise ``--network host`` shares the host's and anything else gets a
    new, empty one (only ``lo``); *cgroups_path* becomes ``linux.cgroupsPath``; *devices*
    are the host's device nodes given (``engine/devices.py``: ``--device``,
    ``--privileged``); *joined* maps ``pid``/``ipc``/``uts`` to the namespace of the
    container a ``container:NAME`` mode names (and ``hostname`` to its host name).
    ``--privileged`` is Docker's: every capability, no seccomp filter, no masked or
    read-only paths, every device, ``/sys`` and the cgroup tree writable.
    """
    args = process_args(options, image)
    if options.init:
        args = [INIT_DESTINATION, "--", *args]
    joined = joined or {}
    hostname = os.uname().nodename if options.uts_mode == "host" else \
        joined.get("hostname") or options.hostname or container_id[:12]
    workdir = options.workdir or image.workdir or "/"
    if not workdir.startswith("/"):
        raise InvalidArgument("check the working directory" if options.workdir
                              else "check the image's WORKDIR", workdir,
                              detail="must be an absolute path")
    uid, gid, additional_gids = resolve_user(options.user or image.user, passwd_lookup,
                                             group_lookup)
    caps = privileged_capabilities() if options.privileged else \
        capability_list(options.cap_add, options.cap_drop)

    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    sysctl: dict[str, str] = {}
    if netns_path:
        namespaces.append({"type": "network", "path": netns_path})
    elif options.network != "host":
        namespaces.append({"type": "network"})
        sysctl.update(NETWORK_SYSCTLS)
    for kind, mode in (("uts", options.uts_mode), ("pid", options.pid_mode),
                       ("ipc", options.ipc_mode)):
        if mode.startswith("container:"):
            if not joined.get(kind):
                raise InvalidArgument("create container", f"--{kind} {mode}",
                                      detail="no namespace to join was found")
            namespaces.append({"type": kind, "path": joined[kind]})
        elif mode != "host":
            namespaces.append({"type": kind})
    sysctl.update(options.sysctls)
    if _cgroup_v2_only():
        # Docker's default: a private cgroup namespace on cgroup v2 hosts, the host's on
        # v1/hybrid ones (where a private one would also cost a v2 move: docs/runtime.md).
        namespaces.append({"type": "cgroup"})

    linux: dict[str, Any] = {
        "resources": build_resources(options, devices),
        "namespaces": namespaces,
    }
    if not options.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if devices:
        linux["devices"] = [{key: value for key, value in device.items() if key != "access"}
                            for device in devices]
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if sysctl:
        linux["sysctl"] = sysctl
    seccomp = None if options.privileged else seccomp_config(options.seccomp, caps)
    if seccomp is not None:
        linux["seccomp"] = seccomp

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": options.tty,
            "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
            "args": args,
            "env": process_env(options, image, hostname),
            "cwd": workdir,
            "capabilities": {
                "bounding": list(caps), "effective": list(caps), "permitted": list(caps),
                "inheritable": [], "ambient": [],
            },
            "rlimits": process_rlimits(options.ulimits, host_nofile_hard, host_nproc_hard),
            "noNewPrivileges": options.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": options.read_only},
        "mounts": build_mounts(options, etc_files, volume_mounts, init_path),
        "linux": linux,
    }
    if not options.uts_mode:  # a host name needs a UTS namespace of its own
        config["hostname"] = hostname
    if options.domainname and not options.uts_mode:
        config["domainname"] = options.domainname
    if options.labels:
        config["annotations"] = dict(options.labels)
    return config


def _cgroup_v2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")
