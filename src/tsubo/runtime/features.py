"""``features``: what this runtime supports, in the runtime spec's features.md schema.

containerd and podman read it to decide which config fields they may use.
"""

from __future__ import annotations

from tsubo.kernel.capabilities import CAPABILITY_NUMBERS
from tsubo.kernel.flags import MOUNT_FLAG_OPTIONS, PROPAGATION_OPTIONS
from tsubo.oci.runtime_spec import HOOK_NAMES
from tsubo.oci.seccomp import (
    SECCOMP_ACTIONS,
    SECCOMP_ARCHITECTURES,
    SECCOMP_FLAGS,
    SECCOMP_OPERATORS,
    SECCOMP_UNSUPPORTED_FLAGS,
)
from tsubo.version import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    from tsubo.kernel.cgroups import CgroupLayout

    layout = CgroupLayout.detect()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_NAMES),
        "mountOptions": sorted([*MOUNT_FLAG_OPTIONS, *PROPAGATION_OPTIONS, "bind", "rbind",
                                "tmpcopyup"]),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": list(CAPABILITY_NUMBERS),
            "cgroup": {"v1": layout.kind in ("v1", "hybrid"),
                       "v2": layout.kind in ("v2", "hybrid"),
                       "systemd": False, "systemdUser": False, "rdma": True},
            "seccomp": _seccomp_features(),
            "apparmor": {"enabled": True},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"io.github.tsubo.version": __version__},
    }


def _seccomp_features() -> dict[str, Any]:
    return {
        "enabled": True,
        "actions": sorted(name for name in SECCOMP_ACTIONS if name != "SCMP_ACT_NOTIFY"),
        "operators": sorted(SECCOMP_OPERATORS),
        "archs": sorted(SECCOMP_ARCHITECTURES),
        "knownFlags": sorted([*SECCOMP_FLAGS, *SECCOMP_UNSUPPORTED_FLAGS]),
        "supportedFlags": sorted(SECCOMP_FLAGS),
    }
