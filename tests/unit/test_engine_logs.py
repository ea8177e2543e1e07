"""tsubo.engine.logs: json-file writing, rotation, reading, following, --since parsing."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable

import pytest

from tests.unit.test_state_db import assert_cheap_imports
from tsubo.engine import logs
from tsubo.engine.logs import LogWriter, follow_logs, parse_since, read_logs
from tsubo.errors import InvalidArgument


@pytest.fixture
def log_path(tmp_path):
    return str(tmp_path / "container-json.log")


def records(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as log_file:
        return [json.loads(line) for line in log_file]


def texts(items: Iterable[tuple[str, bytes]]) -> list[bytes]:
    return [data for _, data in items]


def write_lines(path: str, count: int, max_size: int = 10 * 1024 * 1024,
                max_files: int = 2, stream: str = "stdout") -> None:
    with LogWriter(path, max_size=max_size, max_files=max_files) as writer:
        for index in range(count):
            writer.write(stream, f"line {index}\n".encode())


def rotated_files(path: str) -> list[str]:
    directory, base = os.path.split(path)
    return sorted(name for name in os.listdir(directory) if name.startswith(base))


# --- writing -------------------------------------------------------------------------------


def test_format_is_docker_json_file(log_path):
    with LogWriter(log_path) as writer:
        writer.write("stdout", b"hello\n")
        writer.write("stderr", b"oops\n")
    with open(log_path, encoding="utf-8") as log_file:
        raw = log_file.read().splitlines()
    assert raw[0].startswith('{"log":"hello\\n","stream":"stdout","time":"')
    first, second = records(log_path)
    assert first["log"] == "hello\n" and first["stream"] == "stdout"
    assert second == {"log": "oops\n", "stream": "stderr", "time": second["time"]}
    stamp = first["time"]
    assert len(stamp) == 30 and stamp[10] == "T" and stamp[19] == "." and stamp[-1] == "Z"
    assert abs(parse_since(stamp, 0) - time.time()) < 5


def test_lines_split_across_writes(log_path):
    with LogWriter(log_path) as writer:
        writer.write("stdout", b"hel")
        writer.write("stderr", b"err ")
        writer.write("stdout", b"lo\nwor")
        writer.write("stdout", b"ld\n\nlast")
        writer.write("stderr", b"line\n")
        assert [r["log"] for r in records(log_path)] == ["hello\n", "world\n", "\n",
                                                         "err line\n"]
    # close() flushes the pending partial line, without a newline
    assert records(log_path)[-1] == {"log": "last", "stream": "stdout",
                                     "time": records(log_path)[-1]["time"]}


def test_long_partial_line_is_emitted_in_pieces(log_path):
    with LogWriter(log_path) as writer:
        writer.write("stdout", b"x" * (logs.PARTIAL_LINE_MAX * 2 + 10))
        assert [len(r["log"]) for r in records(log_path)] == [logs.PARTIAL_LINE_MAX] * 2
        writer.write("stdout", b"yy\n")
    assert [r["log"] for r in records(log_path)][-1] == "x" * 10 + "yy\n"


def test_partial_split_keeps_utf8_characters_whole(log_path):
    data = b"a" * (logs.PARTIAL_LINE_MAX - 1) + "\u00e9".encode() + b"tail\n"
    with LogWriter(log_path) as writer:
        writer.write("stdout", data)
    assert "".join(r["log"] for r in records(log_path)) == data.decode()
    assert all("\ufffd" not in r["log"] for r in records(log_path))


def test_invalid_utf8_is_replaced(log_path):
    with LogWriter(log_path) as writer:
        writer.write("stdout", b"bad \xff\xfe bytes\n")
        writer.write("stdout", b"\xe2\x82\n")  # truncated sequence
        writer.write("stdout", b"ctl \x00\x1b[0m\n")
    logged = [r["log"] for r in records(log_path)]
    assert logged == ["bad \ufffd\ufffd bytes\n", "\ufffd\n", "ctl \x00\x1b[0m\n"]
    assert texts(read_logs(log_path))[0] == "bad \ufffd\ufffd bytes\n".encode()


def test_unknown_stream_and_closed_writer(log_path):
    writer = LogWriter(log_path)
    with pytest.raises(ValueError, match="stream"):
        writer.write("stdin", b"x\n")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write("stdout", b"x\n")
    with pytest.raises(ValueError):
        LogWriter(log_path, max_size=0)


def test_appends_to_existing_log(log_path):
    write_lines(log_path, 2)
    write_lines(log_path, 2)
    assert len(records(log_path)) == 4


def test_rotation_bounds_disk_use(log_path):
    max_size, max_files = 4096, 3
    line = b"0123456789" * 10 + b"\n"
    with LogWriter(log_path, max_size=max_size, max_files=max_files) as writer:
        written = 0
        while written < 10 * max_size:
            writer.write("stdout", line * 3)
            written += len(line) * 3
    names = rotated_files(log_path)
    assert names == sorted([os.path.basename(log_path), os.path.basename(log_path) + ".1",
                            os.path.basename(log_path) + ".2"])
    directory = os.path.dirname(log_path)
    sizes = [os.path.getsize(os.path.join(directory, name)) for name in names]
    assert all(size <= max_size for size in sizes)
    assert sum(sizes) <= max_files * max_size
    # every file holds whole records, and the newest lines are all there, in order
    for name in names:
        records(os.path.join(directory, name))
    lines = texts(read_logs(log_path))
    assert set(lines) == {line}
    assert len(lines) * 150 > (max_files - 1) * max_size


def test_rotation_with_one_file_truncates(log_path):
    with LogWriter(log_path, max_size=1000, max_files=1) as writer:
        for index in range(100):
            writer.write("stdout", f"line {index}\n".encode())
    assert rotated_files(log_path) == [os.path.basename(log_path)]
    assert os.path.getsize(log_path) <= 1000
    assert texts(read_logs(log_path))[-1] == b"line 99\n"


def test_record_bigger_than_max_size_is_still_written(log_path):
    with LogWriter(log_path, max_size=100, max_files=2) as writer:
        writer.write("stdout", b"y" * 500 + b"\n")
        writer.write("stdout", b"small\n")
    assert texts(read_logs(log_path)) == [b"y" * 500 + b"\n", b"small\n"]


# --- reading -------------------------------------------------------------------------------


def test_read_missing_log_is_empty(tmp_path):
    assert list(read_logs(str(tmp_path / "none" / "x.log"))) == []


def test_read_all_across_rotated_files_oldest_first(log_path):
    write_lines(log_path, 300, max_size=2000, max_files=5)
    assert len(rotated_files(log_path)) == 5
    lines = texts(read_logs(log_path))
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], 300))


def test_tail_across_rotated_files(log_path):
    write_lines(log_path, 300, max_size=2000, max_files=5)
    current = len(records(log_path))
    tail = current + 7  # reaches into log.1
    assert texts(read_logs(log_path, tail=tail)) == \
        [f"line {i}\n".encode() for i in range(300 - tail, 300)]
    assert texts(read_logs(log_path, tail=3)) == [b"line 297\n", b"line 298\n", b"line 299\n"]
    assert list(read_logs(log_path, tail=0)) == []
    assert len(list(read_logs(log_path, tail=-1))) == len(list(read_logs(log_path)))
    assert len(list(read_logs(log_path, tail=10_000))) == len(list(read_logs(log_path)))


def test_tail_of_a_large_file(log_path):
    write_lines(log_path, 20_000)
    assert texts(read_logs(log_path, tail=2)) == [b"line 19998\n", b"line 19999\n"]


def test_tail_applies_after_stream_filter(log_path):
    with LogWriter(log_path) as writer:
        for index in range(10):
            writer.write("stdout", f"out {index}\n".encode())
            writer.write("stderr", f"err {index}\n".encode())
    assert list(read_logs(log_path, tail=2, streams=("stderr",))) == \
        [("stderr", b"err 8\n"), ("stderr", b"err 9\n")]
    assert list(read_logs(log_path, tail=2)) == [("stdout", b"out 9\n"), ("stderr", b"err 9\n")]


def write_at(path: str, entries: list[tuple[str, str, str]]) -> None:
    with open(path, "a", encoding="utf-8") as log_file:
        for stream, text, stamp in entries:
            log_file.write(json.dumps({"log": text, "stream": stream, "time": stamp}) + "\n")


def test_since_and_until(log_path):
    write_at(log_path, [
        ("stdout", "a\n", "2026-01-02T03:04:05.000000000Z"),
        ("stdout", "b\n", "2026-01-02T03:04:06.500000000Z"),
        ("stderr", "c\n", "2026-01-02T03:04:07.000000001Z"),
        ("stdout", "d\n", "2026-01-02T04:00:00Z"),  # Docker trims zeros: not fixed-width
    ])
    base = parse_since("2026-01-02T03:04:05Z", 0)
    assert texts(read_logs(log_path, since=base)) == [b"a\n", b"b\n", b"c\n", b"d\n"]
    assert texts(read_logs(log_path, since=base + 1.5)) == [b"b\n", b"c\n", b"d\n"]
    assert texts(read_logs(log_path, since=base + 1.6)) == [b"c\n", b"d\n"]
    assert texts(read_logs(log_path, since=base + 3)) == [b"d\n"]
    assert texts(read_logs(log_path, since=base + 3355)) == [b"d\n"]  # 04:00:00
    assert texts(read_logs(log_path, since=base + 3355.001)) == []
    assert texts(read_logs(log_path, until=base + 2)) == [b"a\n", b"b\n"]
    assert texts(read_logs(log_path, since=base + 1, until=base + 1.9)) == [b"b\n"]
    assert texts(read_logs(log_path, since=base, tail=1, streams=("stdout",))) == [b"d\n"]


def test_timestamps_prefix(log_path):
    write_at(log_path, [("stdout", "hello\n", "2026-01-02T03:04:05.123456789Z")])
    assert list(read_logs(log_path, timestamps=True)) == \
        [("stdout", b"2026-01-02T03:04:05.123456789Z hello\n")]


def test_damaged_lines_are_skipped(log_path):
    write_lines(log_path, 2)
    with open(log_path, "ab") as log_file:
        log_file.write(b"not json\n[1]\n{\"log\": 1}\n\xff\xfe\n")
    write_lines(log_path, 1)
    with open(log_path, "ab") as log_file:
        log_file.write(b'{"log":"half')  # a record being written: not read yet
    assert texts(read_logs(log_path)) == [b"line 0\n", b"line 1\n", b"line 0\n"]


# --- following -----------------------------------------------------------------------------


def test_follow_picks_up_appended_lines_and_stops(log_path):
    write_lines(log_path, 3)
    running = threading.Event()
    running.set()
    writer = LogWriter(log_path)

    def produce() -> None:
        for index in range(3, 10):
            time.sleep(0.01)
            writer.write("stdout", f"line {index}\n".encode())
        writer.write("stderr", b"bye")  # partial line, written on close
        writer.close()
        running.clear()

    thread = threading.Thread(target=produce)
    thread.start()
    got = list(follow_logs(log_path, is_running=running.is_set, poll_interval=0.005))
    thread.join()
    assert got == [("stdout", f"line {i}\n".encode()) for i in range(10)] + \
        [("stderr", b"bye")]


def test_follow_respects_tail_since_and_timestamps(log_path):
    write_lines(log_path, 5)
    got = list(follow_logs(log_path, is_running=lambda: False, tail=2))
    assert texts(got) == [b"line 3\n", b"line 4\n"]
    got = list(follow_logs(log_path, is_running=lambda: False, since=time.time() + 60))
    assert got == []
    got = list(follow_logs(log_path, is_running=lambda: False, tail=1, timestamps=True))
    assert got[0][1].endswith(b"Z line 4\n")


def test_follow_survives_rotation(log_path):
    total = 400
    running = threading.Event()
    running.set()

    def produce() -> None:
        with LogWriter(log_path, max_size=1500, max_files=3) as writer:
            for index in range(total):
                writer.write("stdout", f"line {index}\n".encode())
                if index % 20 == 0:
                    time.sleep(0.005)
        running.clear()

    write_lines(log_path, 1, max_size=1500, max_files=3)  # "line 0" before following
    thread = threading.Thread(target=produce)
    thread.start()
    got = list(follow_logs(log_path, is_running=running.is_set, poll_interval=0.002))
    thread.join()
    numbers = [int(line.split()[1]) for line in texts(got)]
    assert numbers == [0, *range(total)]
    assert len(rotated_files(log_path)) == 3


def test_follow_reads_files_rotated_within_one_poll(log_path):
    # Between two polls the writer rotates twice: the file in between must not be lost.
    write_lines(log_path, 1, max_size=2000, max_files=4)
    calls = {"n": 0}

    def is_running() -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            write_lines(log_path, 120, max_size=2000, max_files=4)  # several rotations
            return True
        return False

    got = list(follow_logs(log_path, is_running=is_running, poll_interval=0.001))
    numbers = [int(line.split()[1]) for line in texts(got)]
    assert numbers == [0, *range(120)]


def test_follow_handles_truncation(log_path):
    write_lines(log_path, 50)
    state = {"step": 0}

    def is_running() -> bool:
        state["step"] += 1
        if state["step"] == 2:
            os.truncate(log_path, 0)
            write_lines(log_path, 1)
        return state["step"] < 4

    got = list(follow_logs(log_path, is_running=is_running, poll_interval=0.001))
    assert texts(got) == [f"line {i}\n".encode() for i in range(50)] + [b"line 0\n"]


def test_follow_waits_for_the_file(log_path):
    running = threading.Event()
    running.set()

    def produce() -> None:
        time.sleep(0.05)
        write_lines(log_path, 2)
        running.clear()

    thread = threading.Thread(target=produce)
    thread.start()
    got = list(follow_logs(log_path, is_running=running.is_set, poll_interval=0.005))
    thread.join()
    assert texts(got) == [b"line 0\n", b"line 1\n"]


def test_follow_closes_files_when_abandoned(log_path):
    write_lines(log_path, 5)
    before = len(os.listdir("/proc/self/fd"))
    follower = follow_logs(log_path, is_running=lambda: True, poll_interval=0.001)
    assert next(follower) == ("stdout", b"line 0\n")
    follower.close()
    assert len(os.listdir("/proc/self/fd")) == before


# --- parse_since ---------------------------------------------------------------------------

NOW = 1_767_323_045.0  # 2026-01-02T03:04:05Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-02T03:04:05Z", NOW),
    ("2026-01-02T03:04:05.5Z", NOW + 0.5),
    ("2026-01-02T03:04:05.123456789Z", NOW + 0.123456789),
    ("2026-01-02T04:04:05+01:00", NOW),
    ("2026-01-02T01:04:05.25-02:00", NOW + 0.25),
    ("2026-01-02T03:04Z", NOW - 5),
    ("2026-01-02Z", NOW - 3 * 3600 - 4 * 60 - 5),
    ("1970-01-01T00:00:00Z", 0.0),
    ("2000-02-29T00:00:00Z", 951_782_400.0),
    ("1700000000", 1_700_000_000.0),
    ("1700000000.5", 1_700_000_000.5),
    ("0", 0.0),
    ("10m", NOW - 600),
    ("45s", NOW - 45),
    ("2h", NOW - 7200),
    ("1h30m", NOW - 5400),
    ("1.5h", NOW - 5400),
    ("500ms", NOW - 0.5),
    ("-10m", NOW + 600),
])
def test_parse_since(text, expected):
    assert parse_since(text, NOW) == pytest.approx(expected, abs=1e-6)


def test_parse_since_without_zone_is_local_time():
    stamp = parse_since("2026-01-02T03:04:05", NOW)
    assert stamp == time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
    assert parse_since("2026-01-02", NOW) == time.mktime((2026, 1, 2, 0, 0, 0, 0, 0, -1))


@pytest.mark.parametrize("text", ["", "yesterday", "10x", "1h30", "2026-13-01T00:00:00Z",
                                  "2026-02-30T00:00:00Z", "2026-01-02T25:00:00Z",
                                  "2026-01-02 03:04:05Z", "2026-01-02T03:04:05.Z", "1.2.3",
                                  "1e9", "m", "2026-1-2"])
def test_parse_since_rejects(text):
    with pytest.raises(InvalidArgument) as caught:
        parse_since(text, NOW)
    assert repr(text) in str(caught.value)


def test_module_imports_are_cheap():
    assert_cheap_imports("tsubo.engine.logs")
