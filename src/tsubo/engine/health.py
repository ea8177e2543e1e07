"""Health checks: Docker's HEALTHCHECK and ``--health-*``, run by the monitor.

The monitor owns the schedule: a container with a health check (``RunOptions.healthcheck``,
the flags over the image's, ``core.effective_healthcheck``) is probed every ``Interval``
after it starts; a probe is the check's command exec'd into the container (``CMD-SHELL``:
through ``/bin/sh -c``) in a worker thread, its stdout and stderr in a memfd (a chatty
check cannot block), killed after ``Timeout``. The loop takes the result: exit 0 is
healthy and clears the failing streak; anything else adds to it, except during the
``StartPeriod`` while still "starting", and ``Retries`` failures in a row are unhealthy.
The last five results are kept, as Docker keeps them.

The state is a file the monitor writes whole and renames in, ``<container dir>/health.json``
(``{"Status", "FailingStreak", "Log"}``, Docker's ``State.Health``): ``inspect``, ``ps``
and ``wait --condition healthy`` read it without asking the monitor.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.paths import EnginePaths
    from tsubo.runtime.container import Runtime

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
FILE_NAME = "health.json"
#: results kept in the log, and bytes of output kept per result (Docker's)
KEPT_RESULTS = 5
OUTPUT_LIMIT = 4096


class ProbeResult:
    __slots__ = ("end", "exit_code", "output", "start")

    def __init__(self, start: str, end: str, exit_code: int, output: str) -> None:
        self.start = start
        self.end = end
        self.exit_code = exit_code
        self.output = output


class HealthState:
    """One container's health as the monitor tracks it."""

    __slots__ = ("config", "failing_streak", "log", "next_at", "path", "probing",
                 "started_at", "status")

    def __init__(self, config: dict[str, Any], path: str) -> None:
        now = time.monotonic()
        self.config = config
        self.path = path
        self.status = STARTING
        self.failing_streak = 0
        self.log: list[dict[str, Any]] = []
        self.started_at = now
        self.next_at = now + seconds(config, "Interval")
        self.probing = False

    def record(self, result: ProbeResult) -> bool:
        """Take a probe's result (Docker's rules); True when the status changed."""
        before = self.status
        self.log = [*self.log, {"Start": result.start, "End": result.end,
                                "ExitCode": result.exit_code, "Output": result.output}]
        self.log = self.log[-KEPT_RESULTS:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and time.monotonic() - self.started_at
                  < seconds(self.config, "StartPeriod")):
            self.failing_streak += 1
            if self.failing_streak >= int(self.config.get("Retries") or 0):
                self.status = UNHEALTHY
        self.next_at = time.monotonic() + seconds(self.config, "Interval")
        return self.status != before

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": self.log}

    def save(self) -> None:
        """Written whole under a temporary name, then renamed in (readers never see half)."""
        from tsubo import jsonwire

        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as state_file:
            state_file.write(jsonwire.dumps(self.to_json()))
        os.replace(temporary, self.path)


def seconds(config: dict[str, Any], field: str) -> float:
    value = config.get(field) or 0
    return float(value) / 1e9 if isinstance(value, (int, float)) else 0.0


def health_path(paths: EnginePaths, container_id: str) -> str:
    return f"{paths.container_dir(container_id)}/{FILE_NAME}"


def read_health(paths: EnginePaths, container_id: str) -> dict[str, Any] | None:
    """The container's last health state (Docker's ``State.Health``), or None."""
    from tsubo import jsonwire

    try:
        with open(health_path(paths, container_id), "rb") as state_file:
            value = jsonwire.loads(state_file.read(), FILE_NAME)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def probe(runtime: Runtime, container_id: str, config: dict[str, Any]) -> ProbeResult:
    """Run the check once in the container (in a worker thread: it blocks until the
    command ends or its timeout kills it)."""
    import tempfile
    import threading

    from tsubo.errors import TsuboError
    from tsubo.state.clock import now_rfc3339

    test = [str(word) for word in config.get("Test") or []]
    args = ["/bin/sh", "-c", test[1]] if test[:1] == ["CMD-SHELL"] and len(test) > 1 \
        else test[1:]
    timeout = seconds(config, "Timeout")
    start = now_rfc3339()
    output_fd = os.memfd_create("tsubo-health", os.MFD_CLOEXEC)
    null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    folder = tempfile.mkdtemp(prefix="tsubo-health-")
    pid_file = f"{folder}/pid"
    timed_out = threading.Event()

    def kill() -> None:
        try:
            with open(pid_file, encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            return
        if pid > 0:
            timed_out.set()
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    timer = threading.Timer(timeout, kill) if timeout > 0 else None
    try:
        record = runtime.store.load(container_id)
        process: dict[str, Any] = dict(record.config.get("process") or {})
        process.update(args=args, terminal=False)
        if timer is not None:
            timer.start()
        try:
            info = runtime.exec(container_id, process, pid_file=pid_file,
                                stdio=(null_fd, output_fd, output_fd), forward_signals=False)
            code = info.exit_code
        except TsuboError as error:
            os.write(output_fd, error.message().encode())
            code = -1
    except TsuboError as error:
        os.write(output_fd, error.message().encode())
        code = -1
    finally:
        if timer is not None:
            timer.cancel()
        os.close(null_fd)
        try:
            os.unlink(pid_file)
        except OSError:
            pass
        os.rmdir(folder)
    os.lseek(output_fd, 0, os.SEEK_SET)
    output = os.read(output_fd, OUTPUT_LIMIT).decode("utf-8", "replace")
    os.close(output_fd)
    if timed_out.is_set():
        code, output = -1, f"Health check exceeded timeout ({timeout:g}s)"
    return ProbeResult(start, now_rfc3339(), code, output)
