"""The event log: what happened to containers, images, networks and volumes, as
``docker events`` reports it.

One append-only file of JSON lines, ``<data root>/events.log``, written by every process
of the engine (the commands, the monitor) with one ``write(2)`` per event on an
``O_APPEND`` descriptor, so concurrent writers never interleave within a line. It is
bounded: past :data:`MAX_BYTES` it is renamed to ``events.log.1`` (the previous one is
dropped), under an flock so two writers do not rotate twice. Readers read ``.1`` then the
current file, and a follower notices a rotation by the inode and finishes the old file
first. Recording an event never fails the operation it describes: a log that cannot be
written is skipped.

A record is Docker's shape: ``{"Type", "Action", "Actor": {"ID", "Attributes"}, "scope",
"time", "timeNano"}`` plus the legacy ``status``/``id``/``from`` of containers.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

FILE_NAME = "events.log"
MAX_BYTES = 4 << 20
#: the kinds of objects events are about (``--filter type=``)
TYPES = ("container", "image", "network", "volume")


def record(data_root: str, kind: str, action: str, actor: str,
           attributes: Mapping[str, str] | None = None) -> None:
    """Append one event; never raises (an event is not worth failing the operation)."""
    from tsubo import jsonwire  # the lean writer: no ``import json`` on a command's path

    now = time.time_ns()
    attributes = {key: str(value) for key, value in (attributes or {}).items()}
    event: dict[str, Any] = {}
    if kind == "container":
        event = {"status": action, "id": actor, "from": attributes.get("image", "")}
    event.update({"Type": kind, "Action": action,
                  "Actor": {"ID": actor, "Attributes": attributes}, "scope": "local",
                  "time": now // 1_000_000_000, "timeNano": now})
    line = (jsonwire.dumps(event) + "\n").encode()
    path = f"{data_root}/{FILE_NAME}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
        if os.fstat(fd).st_size > MAX_BYTES:
            _rotate(path, fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rotate(path: str, fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        current = os.stat(path)
        written = os.fstat(fd)
        # still the file we wrote to, still too big: nobody rotated it meanwhile
        if (current.st_dev, current.st_ino) == (written.st_dev, written.st_ino) \
                and current.st_size > MAX_BYTES:
            os.replace(path, f"{path}.1")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_events(data_root: str, *, since: float | None = None, until: float | None = None,
                match: Callable[[dict[str, Any]], bool] | None = None, follow: bool = False,
                wait: Callable[[float], None] | None = None) -> Iterator[dict[str, Any]]:
    """The events from *since* (seconds; None: from the start of the log) to *until*
    (None: now, or forever when *follow*), those *match* accepts. Following, *wait*
    (timeout) blocks until the log may have grown (default: a short sleep)."""
    from tsubo import jsonwire

    path = f"{data_root}/{FILE_NAME}"
    since_ns = int(since * 1e9) if since is not None else None
    until_ns = int(until * 1e9) if until is not None else None

    def wanted(raw: bytes) -> dict[str, Any] | None:
        try:
            event = jsonwire.loads(raw, "event")
        except ValueError:
            return None  # a torn last line of a crashed writer
        if not isinstance(event, dict) or not isinstance(event.get("timeNano"), int):
            return None
        stamp = event["timeNano"]
        if since_ns is not None and stamp < since_ns:
            return None
        if until_ns is not None and stamp > until_ns:
            return None
        return event if match is None or match(event) else None

    previous = _open(f"{path}.1")
    current = _open(path)
    if previous >= 0:
        try:
            for raw in _read_rest(previous).split(b"\n"):
                event = wanted(raw) if raw else None
                if event is not None:
                    yield event
        finally:
            os.close(previous)
    pending = b""
    try:
        while True:
            if current >= 0:
                lines = (pending + _read_rest(current)).split(b"\n")
                pending = lines.pop()  # a line still being written
                for raw in lines:
                    event = wanted(raw) if raw else None
                    if event is not None:
                        yield event
            if not follow or (until_ns is not None and time.time_ns() > until_ns):
                return
            newer = _open(path)
            if newer >= 0 and (current < 0 or not _same(newer, current)):
                if current >= 0:  # rotated: the rest of the old file first
                    for raw in (pending + _read_rest(current)).split(b"\n"):
                        event = wanted(raw) if raw else None
                        if event is not None:
                            yield event
                    os.close(current)
                current, pending = newer, b""
                continue
            if newer >= 0:
                os.close(newer)
            (wait or time.sleep)(0.2)
    finally:
        if current >= 0:
            os.close(current)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _same(first: int, second: int) -> bool:
    one, two = os.fstat(first), os.fstat(second)
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _read_rest(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
