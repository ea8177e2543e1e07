"""The client side of the engine's monitor: reaching it, or starting it (with its keeper).

A command connects to ``<run root>/monitor.sock`` (a filesystem socket, mode 0600 in a 0700
folder — never abstract: CVE-2020-15257). When none answers it takes ``monitor.lock`` and,
unless the root's keeper lives (it is starting a new monitor itself), forks a keeper, which
forks the monitor (``docs/engine.md``).
"""

from __future__ import annotations

import os

from tsubo.engine.background import SOCKET_NAME, close_fds_except, record_crash

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.engine.paths import EnginePaths

#: how long a command waits for a living keeper's new monitor to come up
_KEEPER_WAIT_SECONDS = 20.0


def connect_monitor(paths: EnginePaths) -> int:
    """A connected socket fd to the engine's monitor, starting one (with its keeper) if
    none runs. While a keeper lives it starts the monitors itself (a new one is on its
    way): we wait for it rather than start a second keeper."""
    fd = _try_connect(paths)
    if fd >= 0:  # the usual case: nothing below is imported (the keeper's module is 20 KB)
        return fd
    import fcntl
    import time

    from tsubo.engine.keeper import LOCK_NAME, keeper_alive

    try:
        os.makedirs(paths.run, mode=0o700, exist_ok=True)
        lock = os.open(f"{paths.run}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
    except OSError as error:  # a root that cannot hold it: one line, not a traceback
        from tsubo.errors import TsuboError

        if isinstance(error, FileExistsError):  # makedirs under a file
            error = NotADirectoryError(20, "not a directory")
        raise TsuboError.from_os_error("prepare the run root", paths.run, error,
                                       hint="--root or $TSUBO_ROOT (and $TSUBO_RUNROOT) "
                                       "name writable folders") from None
    deadline = time.monotonic() + _KEEPER_WAIT_SECONDS
    try:
        while True:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = _try_connect(paths)
            if fd >= 0:
                return fd
            if not keeper_alive(paths):
                break
            fcntl.flock(lock, fcntl.LOCK_UN)
            if time.monotonic() >= deadline:
                _monitor_did_not_come_up(paths)
            time.sleep(0.05)
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        _fork_keeper(paths, ready_write)
        os.close(ready_write)
        os.read(ready_read, 1)  # the monitor listens (or has died: EOF)
        os.close(ready_read)
        fd = _try_connect(paths)
        if fd < 0:
            _monitor_did_not_come_up(paths)
        return fd
    finally:
        os.close(lock)


def _monitor_did_not_come_up(paths: EnginePaths) -> None:
    from tsubo.errors import TsuboError

    raise TsuboError("start monitor", f"{paths.run}/{SOCKET_NAME}",
                     detail="the monitor did not come up", hint=f"see {paths.run}/monitor.log")


def _try_connect(paths: EnginePaths) -> int:
    import _socket  # the C core of ``socket``, which costs ~10 ms to import here

    from tsubo.engine.paths import socket_address

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    address, folder_fd = socket_address(f"{paths.run}/{SOCKET_NAME}")
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return -1
    finally:
        if folder_fd >= 0:
            os.close(folder_fd)
    return int(sock.detach())


def _fork_keeper(paths: EnginePaths, ready_fd: int) -> None:
    """Fork the root's keeper (twice, with a new session: it belongs to no terminal and
    survives us); it forks the monitor, which writes to *ready_fd* once it listens."""
    pid = os.fork()
    if pid == 0:
        exit_status = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            close_fds_except(ready_fd)
            from tsubo.engine.keeper import Keeper
            from tsubo.engine.monitor import run_monitor

            exit_status = Keeper(paths, run_monitor).run(ready_fd)
        except BaseException as error:  # a keeper must never unwind into the CLI's code
            record_crash(paths, error, "keeper")
        os._exit(exit_status)
    os.waitpid(pid, 0)
