"""OCI bundle configs for tests.

`default_config` mirrors what `runc spec` (runc 1.1.5, spec 1.0.2-dev) prints on this machine,
with these deliberate differences:

* `process.terminal` is false (tests capture stdout/stderr through pipes);
* `process.args` is the caller's;
* `linux.cgroupsPath` is set, unique per bundle (`/tsubo-test-<hex>/<leaf>`), so a cgroup left
  behind can be traced back to the test that made it.

Everything else (3 capabilities in every set including ambient, RLIMIT_NOFILE 1024,
noNewPrivileges, read-only root, the 7 mounts, device deny-all, the 5 namespaces pid, network,
ipc, uts, mount, masked and read-only paths) is copied as `runc spec` has it.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from typing import Any

# The capability set `runc spec` puts in every set (bounding/effective/permitted/ambient).
RUNC_SPEC_CAPS: tuple[str, ...] = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")

DEFAULT_HOSTNAME = "runc"

DEFAULT_ENV: tuple[str, ...] = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

NAMESPACES: tuple[str, ...] = ("pid", "network", "ipc", "uts", "mount")

CGROUP_PREFIX = "tsubo-test-"


def unique_cgroups_path(tag: str | None = None, leaf: str | None = None) -> str:
    """`/tsubo-test-<tag>/<leaf>`; random hex for whatever is not given."""
    tag = tag or secrets.token_hex(6)
    leaf = leaf or f"c-{secrets.token_hex(4)}"
    return f"/{CGROUP_PREFIX}{tag}/{leaf}"


def default_config(
    args: list[str],
    rootfs: str = "rootfs",
    *,
    cgroups_path: str | None = None,
) -> dict[str, Any]:
    """A fresh (never shared) OCI runtime config dict, as `runc spec` makes it (see module doc)."""
    caps = list(RUNC_SPEC_CAPS)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {
                "bounding": list(caps),
                "effective": list(caps),
                "permitted": list(caps),
                "ambient": list(caps),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": DEFAULT_HOSTNAME,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": cgroups_path or unique_cgroups_path(),
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `base` with `overrides` merged in recursively.

    Dicts merge key by key; any other value (lists included) replaces the base value. A value
    of `None` in `overrides` deletes the key. Neither input is modified.
    """
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
