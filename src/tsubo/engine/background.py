"""What the engine's background processes (the keeper and the monitor, forked from a
command) share: where the monitor listens, how a fork drops what it inherited, where their
long-lived fds live, and the crash log (``<run root>/monitor.log``), the only place they
report to."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EnginePaths

SOCKET_NAME = "monitor.sock"
#: select(2)'s FD_SETSIZE: a library that waits with select aborts the process on an fd
#: numbered this or more (glibc's fortified FD_SET)
SELECT_FD_LIMIT = 1024


def raise_open_files_limit() -> None:
    """The soft RLIMIT_NOFILE raised to the hard one (as containerd's unit does): the keeper
    and the monitor hold a few fds per running container, and a soft limit of 1024 (a login
    shell's default) would stop them at a few hundred containers. Containers are not
    affected: their limits are always in their config."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


def above_select_range(fd: int) -> int:
    """*fd* renumbered to SELECT_FD_LIMIT or more (a close-on-exec duplicate; *fd* closed),
    or *fd* itself where it cannot be (the limit allows no such number; -1, no fd). What
    the monitor keeps for each running container lives up there, so the low numbers stay
    free however many containers run: libnftables waits with select(2) on the netlink
    socket it opens at the lowest free number (kernel/nftables.py), and ran as a process
    (~3 ms more a start) once a few hundred containers had used them up."""
    import fcntl

    if fd < 0:
        return fd
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, SELECT_FD_LIMIT)
    except OSError:
        return fd
    os.close(fd)
    return high


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
