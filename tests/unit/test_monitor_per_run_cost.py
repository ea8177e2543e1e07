"""What a start costs the monitor must not grow with the containers already running (issue
10: the 200th container starts as fast as the 10th; docs/performance.md, "The Nth
container"). Each of these was a walk over every running container, paid on each start:

- the loop's wait: poll(2) looked at every fd (two output pipes per container) each turn;
  the epoll set reports the ready ones only;
- the timers: each turn looked at every container for a deadline; now only at those that
  may have one (a restart, an exited one's output to drain, a health check);
- prctl(PR_SET_CHILD_SUBREAPER), called by each start, walks every descendant of the
  caller in the kernel: the monitor makes itself a subreaper once.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import pytest

from tsubo.engine.monitor import MonitorService, Supervised, _Poller
from tsubo.engine.options import RunOptions
from tsubo.engine.paths import EnginePaths
from tsubo.kernel import syscalls
from tsubo.kernel.flags import PR_SET_CHILD_SUBREAPER
from tsubo.runtime import spawn

PR_GET_CHILD_SUBREAPER = 37


def test_poller_reports_only_the_ready_fd_among_hundreds() -> None:
    poller = _Poller()
    pipes = [os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK) for _ in range(300)]
    try:
        for read_fd, _ in pipes:
            poller.register(read_fd, 1)
        poller.register(pipes[7][0], 1)  # twice: kept, as poll's register
        assert poller.poll(0) == []
        os.write(pipes[123][1], b"x")
        assert [fd for fd, _ in poller.poll(0)] == [pipes[123][0]]
        poller.unregister(pipes[123][0])
        assert poller.poll(0) == []
        with pytest.raises(KeyError):  # unknown: KeyError, as poll's unregister
            poller.unregister(pipes[123][0])
        os.close(pipes[9][1])  # a hang-up is reported without being asked for
        assert [fd for fd, _ in poller.poll(0)] == [pipes[9][0]]
        started = time.monotonic()
        assert poller.poll(50) == [(pipes[9][0], poller.poll(0)[0][1])]
        assert time.monotonic() - started < 0.05  # ready: no wait
    finally:
        for read_fd, write_fd in pipes:
            os.close(read_fd)
            if read_fd != pipes[9][0]:
                os.close(write_fd)


class _Idle(Supervised):
    """A running container without any deadline: the timers must not look at it."""

    def __getattribute__(self, name: str) -> object:
        if name in ("restart_at", "exit_code", "health", "streams", "exited_at"):
            raise AssertionError(f"a turn of the loop looked at an idle container ({name})")
        return super().__getattribute__(name)


def test_a_turn_of_the_loop_looks_only_at_containers_with_a_deadline(tmp_path: Path) -> None:
    service = MonitorService(EnginePaths(str(tmp_path)))
    options = RunOptions()
    for number in range(500):
        service.containers[f"idle{number}"] = _Idle(f"idle{number}", options)
    assert service._next_timeout(time.monotonic()) == -1  # no deadline, none looked at
    service._run_timers()
    restarting = Supervised("restarting", options)
    restarting.restart_at = time.monotonic() + 5
    service.containers[restarting.id] = restarting
    service.timed.add(restarting)
    assert 4000 < service._next_timeout(time.monotonic()) <= 5001
    restarting.restart_at = 0.0  # its restart ran: no deadline any more, forgotten
    assert service._next_timeout(time.monotonic()) == -1
    assert service.timed == set()


def test_the_monitor_becomes_a_subreaper_once() -> None:
    """In a forked child (the test process stays as it is): two starts, one prctl."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            calls: list[int] = []
            real = syscalls.prctl

            def counting(option: int, *args: int) -> int:
                calls.append(option)
                return int(real(option, *args))

            setattr(syscalls, "prctl", counting)  # noqa: B010 - what spawn calls
            spawn.become_subreaper()
            spawn.become_subreaper()
            flag = ctypes.c_int(0)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
            status = 0 if calls == [PR_SET_CHILD_SUBREAPER] and flag.value == 1 else 2
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0


def test_what_the_monitor_keeps_per_container_lives_above_select_range() -> None:
    """libnftables waits with select(2) on a socket at the lowest free fd: the monitor ran
    ``nft`` as a process (~3 ms more a start) once its log files and pipes, three per
    container, had used up the numbers below 1024 (~300 containers)."""
    import fcntl
    import resource

    from tsubo.engine.background import SELECT_FD_LIMIT, above_select_range, raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        raise_open_files_limit()  # a login shell's 1024 would leave no room up there
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        read_end, write_end = os.pipe()
        high = above_select_range(read_end)
        assert high >= SELECT_FD_LIMIT
        assert fcntl.fcntl(high, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with pytest.raises(OSError):
            os.fstat(read_end)  # the low number is free again
        os.write(write_end, b"x")
        assert os.read(high, 1) == b"x"  # the same pipe
        os.close(high)
        # where the limit leaves no number up there, the fd stays where it is
        resource.setrlimit(resource.RLIMIT_NOFILE, (SELECT_FD_LIMIT, hard))
        assert above_select_range(write_end) == write_end
        os.close(write_end)
        assert above_select_range(-1) == -1  # no stdin pipe: nothing to move
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
