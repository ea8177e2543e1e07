"""The default ``config.json`` that ``tsubo-runtime spec`` writes (runc's, as a template).

Pure data: a container with its own pid, network, ipc, uts and mount namespaces, the usual
/proc, /dev, /sys mounts, runc's three default capabilities, masked and read-only paths,
and a deny-all device cgroup (the runtime adds the default devices itself).
"""

from __future__ import annotations

from tsubo.version import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(args: list[str] | None = None, *, terminal: bool = True,
                 rootless_uid: int | None = None, rootless_gid: int | None = None
                 ) -> dict[str, Any]:
    """A runc-style default config; *rootless_uid* adds a user namespace mapping root in the
    container to that host uid (and a bind-mounted /sys, as a rootless process cannot mount
    sysfs)."""
    caps = list(DEFAULT_CAPABILITIES)
    namespaces = [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if rootless_uid is not None:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": rootless_uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": rootless_gid or 0, "size": 1}]
        del linux["resources"]
        mounts = [m for m in mounts if m["destination"] not in ("/sys", "/sys/fs/cgroup",
                                                               "/dev/mqueue")]
        mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {name: list(caps) for name in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "tsubo",
        "mounts": mounts,
        "linux": linux,
    }
