"""What each container status allows (the statuses themselves: ``state/statuses.py``).

The row's status is refreshed before it is trusted
(``Engine.refresh``: a row whose monitor died is adopted first), then checked here, then
acted on; a status change that races another command is a compare-and-set
(``Database.transition_container``), from the sets below.
"""

from __future__ import annotations

from tsubo.errors import WrongState
from tsubo.state.statuses import (
    ACTIVE,
    ALL,
    CREATED,
    DEAD,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    STARTING,
)

__all__ = ["ACTIVE", "ALL", "CREATED", "DEAD", "EXITED", "MONITORED", "PAUSED", "REMOVABLE",
           "REMOVING", "RESTARTING", "RUNNING", "STARTABLE", "STARTING", "check"]

#: a monitor owns the container in these: its death must be reconciled
MONITORED = (*ACTIVE, STARTING)
#: ``start`` takes a container from these to STARTING
STARTABLE = (CREATED, EXITED)
#: removed without stopping anything (REMOVING: an interrupted removal is taken up again)
REMOVABLE = (CREATED, EXITED, DEAD, REMOVING)

_ALLOWED = {
    "start": STARTABLE,
    "kill": (RUNNING, PAUSED),
    "pause": (RUNNING,),
    "unpause": (PAUSED,),
    "exec in": (RUNNING,),
    "top": (RUNNING, PAUSED),
    "join network of": (RUNNING, PAUSED),
    "connect": (RUNNING, PAUSED),
}


def check(operation: str, name: str, status: str) -> None:
    """WrongState unless *operation* is allowed on a container in *status*, worded as
    Docker words it ("container web is not running")."""
    allowed = _ALLOWED[operation]
    if status in allowed:
        return
    if RUNNING in allowed and status not in ACTIVE:
        detail = f"container {name} is not running"
    elif len(allowed) == 1:
        detail = f"container {name} is not {allowed[0]}"
    else:
        detail = f"container {name} is {status}"
    raise WrongState(f"{operation} container", name, detail=detail)
