"""A container's output is taken from its pipe only once it is logged: a monitor killed
in between (``kill -9``) leaves it for the next one, which the keeper hands the pipe to
(issue 15's "no log line lost"; the whole path in tests/e2e/test_engine_survival.py)."""

from __future__ import annotations

import fcntl
import os
import termios
from pathlib import Path

from tsubo.engine import attach
from tsubo.engine.logs import LogWriter
from tsubo.engine.monitor import MonitorService, Supervised
from tsubo.engine.options import RunOptions
from tsubo.engine.paths import EnginePaths


def _pending(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def _supervised(tmp_path: Path, fd: int) -> Supervised:
    supervised = Supervised("c1", RunOptions())
    supervised.log = LogWriter(str(tmp_path / "container.log"))
    supervised.streams = {fd: ("stdout", attach.STDOUT)}
    return supervised


def test_output_stays_in_the_pipe_until_it_is_logged(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"one\ntwo\n")
        dying = MonitorService(EnginePaths(str(tmp_path)))
        data, copied = dying._copy_output(read_end)  # and killed before it logs them
        assert (data, copied) == (b"one\ntwo\n", True)
        assert _pending(read_end) == 8  # still there for the next monitor
        successor = MonitorService(EnginePaths(str(tmp_path)))
        supervised = _supervised(tmp_path, read_end)
        successor._stream_output(supervised, read_end)
        assert _pending(read_end) == 0  # logged, then taken
        os.write(write_end, b"three\n")
        successor._stream_output(supervised, read_end)
        logged = (tmp_path / "container.log").read_text()
        assert [line for line in ("one", "two", "three") if f'"{line}\\n"' in logged] == [
            "one", "two", "three"]
        assert logged.count('"one\\n"') == 1
        os.close(write_end)
        write_end = -1
        successor._stream_output(supervised, read_end)  # the end: the stream is closed
        assert supervised.streams == {}
        read_end = -1
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


def test_a_terminal_is_read_as_it_is(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        os.write(slave, b"hello\n")
        service = MonitorService(EnginePaths(str(tmp_path)))
        data, copied = service._copy_output(master)  # tee(2) takes pipes only
        assert copied is False and data is not None and b"hello" in data
    finally:
        os.close(master)
        os.close(slave)
