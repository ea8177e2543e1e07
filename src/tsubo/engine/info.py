"""``info``: what this engine and host are, in the shape of Docker's ``docker info``.

Counts come from the database (containers by state, images, volumes, networks); the rest
from the host: the cgroup layout (v1, v2 or hybrid, as the runtime sees it), the kernel,
CPUs and memory, whether we are rootless. Nothing here changes anything.
"""

from __future__ import annotations

import os

from tsubo.engine import status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.core import EngineCore


def engine_info(engine: EngineCore) -> dict[str, Any]:
    from tsubo.image.store import ImageStore
    from tsubo.kernel.cgroups import CgroupLayout
    from tsubo.network.store import NetworkStore
    from tsubo.version import OCI_VERSION, __version__

    rows = engine.containers(all_states=True)
    states = [row.state for row in rows]
    layout = CgroupLayout.detect()
    uname = os.uname()
    return {
        "ID": "", "Name": uname.nodename,
        "Containers": len(rows),
        "ContainersRunning": sum(state in (status.RUNNING, status.RESTARTING)
                                 for state in states),
        "ContainersPaused": states.count(status.PAUSED),
        "ContainersStopped": sum(state not in status.ACTIVE for state in states),
        "Images": len(ImageStore(engine.db, engine.paths.data).images()),
        "Volumes": len(engine.db.list_volumes()),
        "Networks": len(NetworkStore(engine.db).list_networks()),
        "Driver": "overlay",
        "DockerRootDir": engine.paths.data,
        "RunRoot": engine.paths.run,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if layout.kind == "v2" else "1",
        "CgroupLayout": layout.kind,
        "CgroupParent": _cgroup_parent(),
        "DefaultRuntime": "tsubo-runtime",
        "Runtimes": {"tsubo-runtime": {"path": "in-process", "ociVersion": OCI_VERSION}},
        "FirewallBackend": "nftables",
        "SecurityOptions": ["name=seccomp,profile=builtin",
                            *(["name=rootless"] if os.geteuid() != 0 else [])],
        "Rootless": os.geteuid() != 0,
        "KernelVersion": uname.release,
        "OperatingSystem": _os_name(),
        "OSType": uname.sysname.lower(),
        "Architecture": uname.machine,
        "NCPU": os.cpu_count() or 0,
        "MemTotal": _memory_total(),
        "ServerVersion": __version__,
    }


def _cgroup_parent() -> str:
    from tsubo.engine.core import cgroup_parent

    return cgroup_parent()


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memory_total() -> int:
    from tsubo.engine.stats import host_memory

    return host_memory()
