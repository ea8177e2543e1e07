"""Container status: derived from the kernel, checked in one place.

The status is never read from the state file alone. It is refreshed from /proc before every
operation (youki's refresh -> check -> act -> save): the recorded init pid must be alive,
not a zombie, and have the recorded start time, else the container is "stopped" (its pid may
already belong to another process). "created" means the init still waits on the exec fifo;
"paused" means its cgroup is frozen.
"""

from __future__ import annotations

import os

from tsubo.errors import WrongState
from tsubo.kernel import procfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.runtime.store import ContainerRecord, StateStore

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def current_status(store: StateStore, record: ContainerRecord) -> str:
    """The container's status right now."""
    if record.pid == 0:
        return CREATING
    if not procfs.is_alive(record.pid, record.start_time):
        return STOPPED
    if os.path.exists(store.fifo_path(record.id)):
        return CREATED
    if _is_frozen(record):
        return PAUSED
    return RUNNING


def _is_frozen(record: ContainerRecord) -> bool:
    from tsubo.kernel.cgroups import Cgroup

    try:
        return Cgroup.from_json(record.cgroup).is_frozen()
    except OSError:
        return False


_ALLOWED = {
    "start": (CREATED,),
    "kill": (CREATED, RUNNING, PAUSED),
    "delete": (STOPPED, CREATING),
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "exec": (CREATED, RUNNING),
    "update": (CREATED, RUNNING, PAUSED),
}


def check(operation: str, container_id: str, status: str) -> None:
    """Raise WrongState unless *operation* is allowed in *status*."""
    allowed = _ALLOWED[operation]
    if status not in allowed:
        # runc's words for a kill of a stopped container: containerd's shim reads "container
        # not running" as "process already finished" and goes on stopping it (with any other
        # text the CRI's StopContainer/StopPodSandbox retry the kill until they time out).
        stopped_kill = operation == "kill" and status == STOPPED
        said = "container not running" if stopped_kill else f"container is {status}"
        raise WrongState(f"{operation} container", container_id,
                         detail=f"{said}, {operation} needs it {' or '.join(allowed)}")
