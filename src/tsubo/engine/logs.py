"""Container logs: written bounded and rotated, read back, followed.

The format is Docker's json-file driver, one JSON object a line::

    {"log":"text\\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}

so tools that read Docker's logs read ours. The monitor owns the writer (:class:`LogWriter`,
one a container, the only process writing its files); ``tsubo logs`` reads with
:func:`read_logs` / :func:`follow_logs` from any process, without locks: records are
appended whole with one ``write(2)`` each batch, and readers only take lines up to the last
newline they see.

Rotation keeps disk use bounded: when the next record would push ``path`` past
``max_size`` it is renamed to ``path.1`` (``path.1`` to ``path.2``, ..., the rename onto
the oldest slot deleting it) and a fresh ``path`` is opened, so a container uses at most
``max_files * max_size`` bytes (plus one record). With ``max_files=1`` the file is
truncated instead, as Docker does.

Times are handled without :mod:`datetime` / :mod:`time.strptime` (which import ``re`` and
locale machinery): the writer formats with ``time.strftime`` once a second, and RFC 3339 is
parsed by hand (:func:`parse_since`).
"""

from __future__ import annotations

import os
import time

from tsubo import jsonwire
from tsubo.engine.background import above_select_range
from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from types import TracebackType

STREAMS = ("stdout", "stderr")
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 2
#: A line longer than this is written in pieces of this size (Docker's partial messages).
PARTIAL_LINE_MAX = 16 * 1024

_NS = 1_000_000_000
_READ_CHUNK = 64 * 1024
_SCAN_CHUNK = 4096
_FIXED_TIME_LENGTH = len("2026-01-02T03:04:05.123456789Z")


class LogWriter:
    """Appends one container's output to *path* in json-file format, rotating it.

    ``write(stream, data)`` takes raw bytes as they come from the container's pipes or
    terminal; a line split across writes is joined (one pending partial line a stream).
    """

    __slots__ = ("_fd", "_partial", "_second", "_second_text", "_size", "max_files",
                 "max_size", "path")

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE,
                 max_files: int = DEFAULT_MAX_FILES) -> None:
        if max_size < 1 or max_files < 1:
            raise ValueError(f"max_size ({max_size}) and max_files ({max_files}) "
                             "must be at least 1")
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self._partial: dict[str, bytes] = {}
        self._second = -1
        self._second_text = ""
        self._fd = self._open(truncate=False)
        self._size = os.fstat(self._fd).st_size

    def _open(self, truncate: bool) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        if truncate:
            flags |= os.O_TRUNC
        try:
            return above_select_range(os.open(self.path, flags, 0o640))
        except OSError as error:
            raise TsuboError.from_os_error("open log", self.path, error) from None

    def write(self, stream: str, data: bytes) -> None:
        """Append the complete lines of *data* (with what was pending on *stream*)."""
        if stream not in STREAMS:
            raise ValueError(f"unknown log stream {stream!r}")
        if self._fd < 0:
            raise ValueError(f"write to closed log {self.path}")
        pending = self._partial.pop(stream, b"") + data
        stamp = self._timestamp()
        records: list[bytes] = []
        start = 0
        while (newline := pending.find(b"\n", start)) >= 0:
            records.append(_record(stream, pending[start:newline + 1], stamp))
            start = newline + 1
        rest = pending[start:]
        while len(rest) >= PARTIAL_LINE_MAX:
            cut = _utf8_boundary(rest, PARTIAL_LINE_MAX)
            records.append(_record(stream, rest[:cut], stamp))
            rest = rest[cut:]
        if rest:
            self._partial[stream] = rest
        self._append(records)

    def close(self) -> None:
        """Write the pending partial lines (without a newline, as Docker does) and close."""
        if self._fd < 0:
            return
        try:
            if self._partial:
                stamp = self._timestamp()
                records = [_record(stream, rest, stamp)
                           for stream, rest in self._partial.items()]
                self._partial.clear()
                self._append(records)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _timestamp(self) -> str:
        seconds, nanos = divmod(time.time_ns(), _NS)
        if seconds != self._second:  # strftime once a second, not once a write
            self._second = seconds
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{self._second_text}.{nanos:09d}Z"

    def _append(self, records: list[bytes]) -> None:
        """Write *records* in as few writes as rotation allows."""
        batch: list[bytes] = []
        for record in records:
            if self._size and self._size + len(record) > self.max_size:
                self._write_all(b"".join(batch))
                batch.clear()
                self._rotate()
            batch.append(record)
            self._size += len(record)
        if batch:
            self._write_all(b"".join(batch))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            self._size = os.fstat(self._fd).st_size  # what really reached the file
            raise TsuboError.from_os_error("write log", self.path, error) from None

    def _rotate(self) -> None:
        """``path`` → ``path.1`` → ... → ``path.<max_files-1>``; then a fresh ``path``."""
        old = self._fd
        self._fd = -1
        try:
            if self.max_files == 1:
                self._fd = self._open(truncate=True)
            else:
                # Oldest first, so each rename lands on a free slot, except the first: it
                # replaces (deletes) the oldest file in one atomic step.
                for index in range(self.max_files - 1, 0, -1):
                    source = self.path if index == 1 else f"{self.path}.{index - 1}"
                    try:
                        os.rename(source, f"{self.path}.{index}")
                    except FileNotFoundError:
                        pass
                    except OSError as error:
                        raise TsuboError.from_os_error("rotate log", source, error) from None
                self._fd = self._open(truncate=False)
        finally:
            os.close(old)
        self._size = os.fstat(self._fd).st_size


def _record(stream: str, line: bytes, stamp: str) -> bytes:
    # "replace": a container may print anything; the log must stay valid JSON.
    text = line.decode("utf-8", "replace")
    return (jsonwire.dumps({"log": text, "stream": stream, "time": stamp}) + "\n").encode()


def _utf8_boundary(data: bytes, limit: int) -> int:
    """*limit*, moved back (by up to 3 bytes) so as not to split a UTF-8 character."""
    if len(data) <= limit:
        return limit
    cut = limit
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if data[cut] & 0xC0 != 0x80 else limit


# --- reading -------------------------------------------------------------------------------


class _Selector:
    """Decodes one stored line and applies the stream and time filters."""

    __slots__ = ("since_key", "since_ns", "streams", "timestamps", "until_key", "until_ns")

    def __init__(self, since: float | None, until: float | None, timestamps: bool,
                 streams: tuple[str, ...]) -> None:
        self.since_ns = None if since is None else _seconds_to_ns(since)
        self.until_ns = None if until is None else _seconds_to_ns(until)
        # Our own times are fixed-width UTC, so they compare as text (the fast path).
        self.since_key = None if self.since_ns is None else _format_ns(self.since_ns)
        self.until_key = None if self.until_ns is None else _format_ns(self.until_ns)
        self.timestamps = timestamps
        self.streams = frozenset(streams)

    def select(self, line: bytes) -> tuple[str, bytes] | None:
        try:
            record = jsonwire.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None  # not a record (a foreign or damaged line): skip it
        if not isinstance(record, dict):
            return None
        stream, text, when = record.get("stream"), record.get("log"), record.get("time")
        if stream not in self.streams or not isinstance(text, str) \
                or not isinstance(when, str):
            return None
        if (self.since_key is not None or self.until_key is not None) \
                and not self._in_window(when):
            return None
        if self.timestamps:
            text = f"{when} {text}"
        return stream, text.encode("utf-8", "replace")

    def _in_window(self, when: str) -> bool:
        if len(when) == _FIXED_TIME_LENGTH and when[19] == "." and when[-1] == "Z":
            return (self.since_key is None or when >= self.since_key) \
                and (self.until_key is None or when <= self.until_key)
        try:
            stamp = _seconds_to_ns(_parse_timestamp(when))
        except ValueError:
            return False
        return (self.since_ns is None or stamp >= self.since_ns) \
            and (self.until_ns is None or stamp <= self.until_ns)


def read_logs(path: str, *, tail: int | None = None, since: float | None = None,
              until: float | None = None, timestamps: bool = False,
              streams: tuple[str, ...] = STREAMS) -> Generator[tuple[str, bytes], None, None]:
    """``(stream, line)`` for each stored line, oldest first, across rotated files.

    *since* / *until* (unix seconds, inclusive) and *streams* filter first; *tail* then
    keeps the last N of what is left (None or negative: all; read backwards, so a short
    tail of a large log is cheap). With *timestamps* each line starts with its RFC 3339
    time and a space, as ``docker logs -t``. A missing log reads as empty.
    """
    selector = _Selector(since, until, timestamps, streams)
    files = _open_files(path)
    try:
        yield from _select_existing(files, selector, tail)
    finally:
        for fd, _ in files:
            os.close(fd)


def follow_logs(path: str, *, is_running: Callable[[], bool], poll_interval: float = 1.0,
                tail: int | None = None, since: float | None = None,
                until: float | None = None, timestamps: bool = False,
                streams: tuple[str, ...] = STREAMS) -> Generator[tuple[str, bytes], None, None]:
    """What :func:`read_logs` yields, then the lines appended later, as they are written
    (an inotify watch on the log's folder wakes us; ``is_running()`` is asked again at
    least every *poll_interval* seconds); ends once ``is_running()`` is False and all is
    read (a missing file is waited for while it is True). *tail* limits only the lines already
    there; the filters apply throughout. ``close()`` the generator to stop early.

    Rotation is noticed as ``path`` naming another inode: the old file is read to its end
    (our fd keeps it readable even once deleted), then every file rotated in after it
    (``path.N`` scanned upwards until the old file: renames only move files upwards, so
    none is skipped), then the new ``path`` from its start. Truncation (``max_files=1``)
    is noticed as the size dropping below our offset; polling cannot notice a truncation
    followed, within one interval, by more output than was there before.
    """
    from tsubo.kernel.watch import FolderWatch

    selector = _Selector(since, until, timestamps, streams)
    watch = FolderWatch(os.path.dirname(path) or ".")
    files = _open_files(path)
    followed = _Followed(path, *(files.pop() if files else (-1, 0)))
    try:
        try:
            yield from _select_existing(
                [*files, (followed.fd, followed.position)] if followed.fd >= 0 else files,
                selector, tail)
        finally:
            for fd, _ in files:
                os.close(fd)
        while True:
            # Asked first: output written before the container stopped is then on disk
            # by the time we read below, so stopping after an idle read loses nothing.
            running = is_running()
            if (yield from followed.advance(selector)):
                continue
            if not running:
                return
            watch.wait(poll_interval)
    finally:
        watch.close()
        followed.close()


class _Followed:
    """The newest log file, being followed: its fd (-1: not there yet) and where its
    unread lines start."""

    def __init__(self, path: str, fd: int, position: int) -> None:
        self.path = path
        self.fd = fd
        self.position = position

    def advance(self, selector: _Selector) -> Generator[tuple[str, bytes], None, bool]:
        """Yield what was appended (and what rotation moved); True if anything was read."""
        if self.fd < 0:
            self.fd = _open_or_none(self.path)
            self.position = 0
            if self.fd < 0:
                return False
        progressed = False
        # Looked at before draining: if the writer has moved on, the old file is complete
        # once drained.
        rotated = not _same_file(self.fd, self.path)
        size = os.fstat(self.fd).st_size
        if size < self.position:  # truncated
            self.position = 0
        end = _complete_end(self.fd, size)
        if end > self.position:
            for line in _forward_lines(self.fd, self.position, end):
                item = selector.select(line)
                if item is not None:
                    yield item
            self.position = end
            progressed = True
        newest = _open_or_none(self.path) if rotated else -1
        if newest >= 0:
            old, self.fd, self.position = self.fd, newest, 0
            try:
                newer = _rotated_since(self.path, old, newest)
            finally:
                os.close(old)
            try:
                yield from _select_existing(newer, selector, None)
            finally:
                for fd, _ in newer:
                    os.close(fd)
            progressed = True
        return progressed

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _select_existing(files: list[tuple[int, int]], selector: _Selector,
                     tail: int | None) -> Iterator[tuple[str, bytes]]:
    """Selected lines of *files* (``(fd, end)``, oldest first), or only the last *tail*."""
    if tail is None or tail < 0:
        for fd, end in files:
            for line in _forward_lines(fd, 0, end):
                item = selector.select(line)
                if item is not None:
                    yield item
        return
    picked: list[tuple[str, bytes]] = []
    for fd, end in reversed(files):
        if len(picked) >= tail:
            break
        for line in _backward_lines(fd, end):
            item = selector.select(line)
            if item is not None:
                picked.append(item)
                if len(picked) >= tail:
                    break
    yield from reversed(picked)


def _rotated_indices(path: str) -> list[int]:
    """The N of each existing ``path.N``, ascending (newest first)."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    prefix = base + "."
    return sorted(int(name[len(prefix):]) for name in names
                  if name.startswith(prefix) and name[len(prefix):].isascii()
                  and name[len(prefix):].isdigit())


def _open_files(path: str) -> list[tuple[int, int]]:
    """``(fd, end of the last complete line)`` of ``path`` and its rotated files, oldest
    first. Opened newest first and de-duplicated by inode: a rotation while we open shows
    one file under two names, never hides one (except, at worst, the oldest)."""
    candidates = [path] + [f"{path}.{index}" for index in _rotated_indices(path)]
    return _open_unique(candidates, set())


def _open_unique(candidates: list[str], seen: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Open *candidates* (newest first) skipping missing files and inodes in *seen*;
    returned oldest first."""
    opened: list[tuple[int, int]] = []
    try:
        for candidate in candidates:
            fd = _open_or_none(candidate)
            if fd < 0:
                continue
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) in seen:
                os.close(fd)
                continue
            seen.add((stat.st_dev, stat.st_ino))
            opened.append((fd, _complete_end(fd, stat.st_size)))
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    opened.reverse()
    return opened


def _rotated_since(path: str, old: int, newest: int) -> list[tuple[int, int]]:
    """The rotated files newer than the one open as *old* and older than the one open as
    *newest*, oldest first: ``path.1``, ``path.2``, ... up to *old* (all of them if *old*
    was rotated out of existence). Scanned upwards, as rotation moves files, and compared
    by the opened file's inode, so a concurrent rotation shows a file twice (skipped),
    never hides one."""
    old_stat, newest_stat = os.fstat(old), os.fstat(newest)
    old_key = (old_stat.st_dev, old_stat.st_ino)
    seen = {(newest_stat.st_dev, newest_stat.st_ino)}
    indices = _rotated_indices(path)
    opened: list[tuple[int, int]] = []
    try:
        for index in range(1, (indices[-1] if indices else 0) + 2):
            fd = _open_or_none(f"{path}.{index}")
            if fd < 0:
                continue
            stat = os.fstat(fd)
            key = (stat.st_dev, stat.st_ino)
            if key == old_key or key in seen:
                os.close(fd)
                if key == old_key:
                    break
                continue
            seen.add(key)
            opened.append((fd, _complete_end(fd, stat.st_size)))
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    opened.reverse()
    return opened


def _open_or_none(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    except OSError as error:
        raise TsuboError.from_os_error("open log", path, error) from None


def _same_file(fd: int, path: str) -> bool:
    """Whether *path* still names the file open as *fd* (True while *path* is missing: a
    rotation is half-way, and the new file will show up)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return True
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _complete_end(fd: int, size: int) -> int:
    """The offset just past the last newline before *size* (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _SCAN_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _forward_lines(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The non-empty lines (without newline) between offsets *start* and *end*."""
    carry = b""
    position = start
    while position < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - position), position)
        if not chunk:  # truncated under us
            break
        position += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        yield from (line for line in lines if line)
    if carry:
        yield carry


def _backward_lines(fd: int, end: int) -> Iterator[bytes]:
    """The non-empty lines before offset *end*, last first."""
    carry = b""
    position = end
    while position > 0:
        start = max(0, position - _READ_CHUNK)
        chunk = os.pread(fd, position - start, start)
        position = start
        lines = (chunk + carry).split(b"\n")
        carry = lines[0]
        yield from (line for line in reversed(lines[1:]) if line)
    if carry:
        yield carry


# --- times ---------------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3,
                   "s": 1.0, "m": 60.0, "h": 3600.0}
_DECIMAL = frozenset("0123456789.")


def parse_since(text: str, now: float) -> float:
    """Unix seconds for Docker's ``--since`` / ``--until`` value *text*, relative to *now*.

    Accepted, as Docker's ``GetTimestamp``: a Go duration meaning that long before *now*
    (``45s``, ``10m``, ``1h30m``, ``1.5h``); an RFC 3339 time, optionally with fractional
    seconds and a ``Z`` or ``±hh:mm`` zone (without a zone it is local time; the date
    alone, or with ``Thh`` / ``Thh:mm``, also works); unix seconds (``1700000000``,
    ``1700000000.5``).
    """
    value = text.strip()
    if value and value != "0":  # Docker reads a lone "0" as the epoch, not a duration
        duration = _parse_duration(value)
        if duration is not None:
            return now - duration
    try:
        if "-" in value[1:] or "T" in value or ":" in value:
            return _parse_timestamp(value)
        if value and _DECIMAL.issuperset(value) and value.count(".") <= 1 \
                and value.strip(".") == value:
            return float(value)
    except ValueError:
        pass
    raise InvalidArgument("parse time", repr(text),
                          detail="expected an RFC 3339 time, unix seconds or a duration",
                          hint='e.g. "2026-01-02T15:04:05Z", "1700000000" or "10m"')


def _parse_duration(value: str) -> float | None:
    """Seconds in a Go duration (``1h30m``, ``-2.5s``), or None if *value* is not one."""
    sign = 1.0
    if value[0] in "+-":
        sign = -1.0 if value[0] == "-" else 1.0
        value = value[1:]
    if not value:
        return None
    total = 0.0
    index = 0
    while index < len(value):
        number_end = index
        while number_end < len(value) and value[number_end] in _DECIMAL:
            number_end += 1
        unit_end = number_end
        while unit_end < len(value) and value[unit_end] not in _DECIMAL:
            unit_end += 1
        number, unit = value[index:number_end], value[number_end:unit_end]
        if unit not in _DURATION_UNITS or not number.strip(".") or number.count(".") > 1:
            return None
        total += float(number) * _DURATION_UNITS[unit]
        index = unit_end
    return sign * total


def _parse_timestamp(value: str) -> float:
    """Unix seconds of ``YYYY-MM-DD[Thh[:mm[:ss[.frac]]]][Z|±hh:mm]``; ValueError if not."""
    offset: int | None = None  # seconds east of UTC; None: local time
    rest = value
    if rest[-1:] in ("Z", "z"):
        offset, rest = 0, rest[:-1]
    elif len(rest) >= 16 and rest[-6] in "+-" and rest[-3] == ":":
        hours, minutes = _digits(rest[-5:-3], 0, 23), _digits(rest[-2:], 0, 59)
        offset = (hours * 3600 + minutes * 60) * (-1 if rest[-6] == "-" else 1)
        rest = rest[:-6]
    if len(rest) < 10 or rest[4] != "-" or rest[7] != "-":
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    year, month = _digits(rest[0:4], 0, 9999, width=4), _digits(rest[5:7], 1, 12)
    day = _digits(rest[8:10], 1, _days_in_month(year, month))
    hour = minute = second = 0
    fraction = 0.0
    clock = rest[10:]
    if clock:
        if clock[0] != "T":
            raise ValueError(f"not an RFC 3339 time: {value!r}")
        whole, dot, digits = clock[1:].partition(".")
        if dot:
            if not digits or not digits.isascii() or not digits.isdigit():
                raise ValueError(f"bad fractional seconds in {value!r}")
            fraction = float("0." + digits)
        parts = whole.split(":")
        if len(parts) > 3 or (dot and len(parts) != 3):
            raise ValueError(f"not an RFC 3339 time: {value!r}")
        hour = _digits(parts[0], 0, 23)
        minute = _digits(parts[1], 0, 59) if len(parts) > 1 else 0
        second = _digits(parts[2], 0, 59) if len(parts) > 2 else 0
    if offset is None:
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1)) + fraction
    days = _days_from_civil(year, month, day)
    return days * 86400 + hour * 3600 + minute * 60 + second - offset + fraction


def _digits(text: str, low: int, high: int, width: int = 2) -> int:
    if len(text) != width or not text.isascii() or not text.isdigit():
        raise ValueError(f"expected digits, got {text!r}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{number} is out of range {low}..{high}")
    return number


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _seconds_to_ns(seconds: float) -> int:
    whole = int(seconds // 1)
    return whole * _NS + round((seconds - whole) * _NS)


def _format_ns(stamp: int) -> str:
    seconds, nanos = divmod(stamp, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
