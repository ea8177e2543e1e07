"""The one clock of records: RFC 3339 UTC times with nanoseconds (imports only ``time``)."""

from __future__ import annotations

import time


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with nanoseconds, fixed width (so text sorts as time),
    the form Docker and runc write (``2026-01-02T03:04:05.123456789Z``)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
