"""What the engine's background processes (the keeper and the monitor, forked from a
command) share: where the monitor listens, how a fork drops what it inherited, and the crash
log (``<run root>/monitor.log``), the only place they report to."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EnginePaths

SOCKET_NAME = "monitor.sock"


def record_crash(paths: EnginePaths, error: BaseException, what: str = "monitor") -> None:
    """Leave a traceback in ``<run root>/monitor.log``."""
    try:
        import traceback

        os.makedirs(paths.run, mode=0o700, exist_ok=True)
        with open(f"{paths.run}/monitor.log", "a", encoding="utf-8") as log:
            log.write(f"{what} (pid {os.getpid()}) failed:\n")
            traceback.print_exception(error, file=log)
    except OSError:
        pass


def record_event(paths: EnginePaths, line: str) -> None:
    """One line, with the time, in ``<run root>/monitor.log``: what the monitor did on its
    own that an operator may want to know (a firewall restored)."""
    try:
        import time

        os.makedirs(paths.run, mode=0o700, exist_ok=True)
        with open(f"{paths.run}/monitor.log", "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} monitor (pid {os.getpid()}): "
                      f"{line}\n")
    except OSError:
        pass


def close_fds_except(*keep: int) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        if target != null:
            os.dup2(null, target)
    low = 3
    for fd in sorted({*keep, null} - {0, 1, 2, -1}):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, 1 << 16)
    if null > 2 and null not in keep:
        os.close(null)
