"""The statuses a container row can have (the ``containers.state`` column): Docker's, plus
"starting" (handed to a monitor that has not reported it running) and "removing" (claimed by
``rm``). What each status allows is the engine's business (``engine/status.py``)."""

CREATED = "created"
STARTING = "starting"
RUNNING = "running"
PAUSED = "paused"
RESTARTING = "restarting"
EXITED = "exited"
REMOVING = "removing"
DEAD = "dead"

ALL = (CREATED, STARTING, RUNNING, PAUSED, RESTARTING, EXITED, REMOVING, DEAD)
#: what ``ps`` lists without ``-a``, and what Docker calls running (State.Running)
ACTIVE = (RUNNING, PAUSED, RESTARTING)
