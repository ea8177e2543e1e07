"""The engine's commands that need its monitor: start, run, stop, restart, wait, remove.

:class:`Engine` is :class:`tsubo.engine.core.EngineCore` plus the client side of the
monitor (``engine/client.py``): the monitor owns the running containers' lifetimes, so
starting one hands it over, and stopping, waiting and removing wait for the monitor's word
(a ``WAIT`` frame's answer), not for a row to change. A row whose monitor died is adopted
by a live monitor before it is trusted.
"""

from __future__ import annotations

import os

from tsubo.engine import status
from tsubo.engine.core import EngineCore
from tsubo.engine.teardown import remove_container_files
from tsubo.errors import NotFound, TsuboError, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tsubo.engine.options import RunOptions
    from tsubo.engine.paths import EnginePaths
    from tsubo.state.db import ContainerRow

#: how long ``rm -f`` lets a monitor finish starting a container before acting
_STARTING_WAIT_SECONDS = 30.0


class Engine(EngineCore):
    """All containers and volumes under one data root, with their monitor."""

    def __init__(self, root: str | None = None, *, paths: EnginePaths | None = None) -> None:
        super().__init__(root, paths=paths)
        self.reconcile = self._reconcile_through_monitor

    def __enter__(self) -> Engine:
        return self

    # --- start / run --------------------------------------------------------------------------

    def spawn_monitor(self) -> int:
        """Connect to the engine's monitor (forking one if none runs: it preloads what it
        needs while we prepare the container) and return the socket; :meth:`launch` tells
        it which container to start, and the socket becomes that container's attach
        stream. SQLite must not cross a fork (its per-process lock table would be shared
        with the child), so an open database is closed first and reopened on next use."""
        from tsubo.engine.client import connect_monitor

        self.close()
        return connect_monitor(self.paths)

    def launch(self, monitor_fd: int, container_id: str) -> None:
        """Hand a spawned monitor its container: it starts it and reports on the socket."""
        from tsubo.engine import attach

        if not self.db.transition_container(container_id, status.STARTABLE, state=status.STARTING,
                                            stopped_by_user=0, monitor_pid=0):
            row = self.db.get_container(container_id)
            raise WrongState("start container", row.name, detail=f"container is {row.state}")
        attach.send_all(monitor_fd, attach.encode(attach.GO, container_id.encode()))

    def start(self, ref: str) -> tuple[ContainerRow, int]:
        """Start a created or exited container under a new monitor; returns the row and
        our end of the monitor's attach socket (wait for "started" on it)."""
        row = self.refresh(self.db.resolve_container(ref))
        status.check("start", row.name, row.state)
        fd = self.spawn_monitor()
        try:
            self.launch(fd, row.id)
        except BaseException:
            os.close(fd)
            raise
        return self.db.get_container(row.id), fd

    def start_detached(self, ref: str) -> ContainerRow:
        """start, returning once the container runs (or raising why it could not)."""
        from tsubo.engine.attach import AttachClient

        row, fd = self.start(ref)
        try:
            AttachClient(fd, stdin=False, tty=False).wait_started()
        finally:
            os.close(fd)
        return self.db.get_container(row.id)

    def attach(self, ref: str) -> tuple[ContainerRow, int]:
        """Attach to a running container through its monitor: the row and our end of the
        attach socket (``AttachClient``: ``wait_started()``, then ``relay()``)."""
        from tsubo.engine import attach

        row = self.refresh(self.db.resolve_container(ref))
        if row.state not in (status.RUNNING, status.PAUSED):
            raise WrongState("attach to container", row.name, detail="you cannot attach to "
                             "a stopped container, start it first")
        fd = self.spawn_monitor()
        try:
            attach.send_all(fd, attach.encode(attach.ATTACH, row.id.encode()))
        except BaseException:
            os.close(fd)
            raise
        return row, fd

    def run_attached(self, options: RunOptions, *, name: str | None = None,
                     ) -> tuple[str, Any]:
        """create + start with the caller attached: the monitor creates the container
        (it has SQLite and the engine loaded already; we never open the database on this
        path). Returns the name asked for and an AttachClient: ``wait_started()`` (then
        ``client.container_id`` is set, or the create/start error is raised as it was),
        then ``relay()`` for the exit code."""
        from tsubo import jsonwire
        from tsubo.engine import attach

        fd = self.spawn_monitor()
        request = {"options": options.to_json(), "name": name}
        try:
            attach.send_all(fd, attach.encode(attach.RUN, jsonwire.dumps(request).encode()))
        except BaseException:
            os.close(fd)
            raise
        client = attach.AttachClient(fd, stdin=options.interactive, tty=options.tty)
        return name or "", client

    def run_detached(self, options: RunOptions, *, name: str | None = None) -> ContainerRow:
        """create + start, returning once the container runs (or raising why it could not)."""
        from tsubo.state.db import ContainerRow

        _, client = self.run_attached(options, name=name)
        try:
            client.wait_started()
        finally:
            os.close(client.sock_fd)
        try:
            return self.db.get_container(client.container_id)
        except NotFound:
            # an --rm container that ended, and was removed, before we looked: it ran, as
            # asked (Docker prints its ID all the same)
            return ContainerRow.new(client.container_id, name or "", options.to_json(),
                                    options.rootfs, image=options.image, state=status.EXITED)

    # --- stop / restart / wait / remove -------------------------------------------------------

    def stop(self, ref: str, timeout: float | None = None) -> ContainerRow:
        """Stop signal, then SIGKILL after *timeout* s (the container's --stop-timeout by
        default); waits until it has exited. Stopping a stopped container is a no-op."""
        from tsubo.engine.options import RunOptions
        from tsubo.kernel.signals import parse_signal

        row = self.refresh(self.db.resolve_container(ref))
        if row.state not in status.ACTIVE:
            return row
        options = RunOptions.from_json_text(row.options)
        self.db.update_container(row.id, stopped_by_user=1)
        wait_for = options.stop_timeout if timeout is None else timeout
        if row.state == status.RESTARTING:
            self._wait_exited(row.id, wait_for + 10)
            return self.db.get_container(row.id)
        try:
            if row.state == status.PAUSED:
                self.runtime.resume(row.id)
            self.event(row.id, "kill", name=row.name,  # before its "die"
                       signal=str(parse_signal(options.stop_signal)))
            self.runtime.kill(row.id, parse_signal(options.stop_signal))
        except TsuboError:
            pass  # it exited meanwhile
        if not self._wait_exited(row.id, wait_for):
            try:
                self.runtime.kill(row.id, 9)
            except TsuboError:
                pass
            self._wait_exited(row.id, 20.0)
        self.event(row.id, "stop", name=row.name)
        return self.db.get_container(row.id)

    def restart(self, ref: str, timeout: float | None = None) -> ContainerRow:
        row = self.stop(ref, timeout)
        return self.start_detached(row.id)

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; its exit code."""
        row = self.db.resolve_container(ref)
        done, code = self._wait_for_exit(row.id, timeout)
        if not done:
            raise TsuboError("wait for container", row.name, detail="timed out")
        return code if code is not None else -1

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        """Remove a container (``-f``: kill it first). Claimed "removing" in one database
        statement before anything is deleted, so a ``start`` racing us either wins (and we
        kill what it started) or finds the container gone: never half of each."""
        row = self.refresh(self.db.resolve_container(ref))
        container_id = row.id
        deadline = _monotonic() + _STARTING_WAIT_SECONDS
        while not self.db.transition_container(container_id, (*status.REMOVABLE, status.RESTARTING)
                                               if force else status.REMOVABLE,
                                               state=status.REMOVING, stopped_by_user=1):
            try:
                row = self.refresh(self.db.get_container(container_id))
            except NotFound:
                if force:  # an --rm container its monitor removed as it ended: gone
                    return container_id
                raise
            if row.state in status.ACTIVE and not force:
                raise WrongState("remove container", row.name,
                                 detail=f"container is {row.state}",
                                 hint="stop it first, or use -f")
            if _monotonic() >= deadline:
                raise WrongState("remove container", row.name,
                                 detail=f"container is still {row.state}")
            if row.state in (status.RUNNING, status.PAUSED):
                try:
                    self.kill(row.id, 9)
                except TsuboError:
                    pass  # it exited meanwhile: the next round sees it so
                self._wait_exited(row.id, 20.0)
            elif row.state == status.STARTING:
                # its monitor is mounting and starting it: let it finish, then kill it
                _poll(lambda: self.refresh(self.db.get_container(container_id)).state
                      != status.STARTING, max(0.0, deadline - _monotonic()))
        remove_container_files(self.paths, self.db, container_id, volumes=volumes)
        return container_id

    def _reconcile_through_monitor(self) -> None:
        """Ask the root's monitor (starting one if none runs) to adopt every container
        whose monitor is gone; returns once it has."""
        from tsubo.engine import attach
        from tsubo.engine.client import connect_monitor

        self.close()  # SQLite must not cross the fork of a keeper
        fd = connect_monitor(self.paths)
        try:
            attach.send_all(fd, attach.encode(attach.RECONCILE))
            reader = attach.FrameReader()
            while data := os.read(fd, 4096):
                if any(kind == attach.RECONCILED for kind, _ in reader.feed(data)):
                    return
        finally:
            os.close(fd)

    def _wait_exited(self, container_id: str, timeout: float | None) -> bool:
        return self._wait_for_exit(container_id, timeout)[0]

    def _wait_for_exit(self, container_id: str, timeout: float | None
                       ) -> tuple[bool, int | None]:
        """Wait until the container is done (not running, restarting or starting): woken
        by its monitor's answer to a ``WAIT`` frame, not by polling. (done, exit code);
        done is False on timeout, the exit code None for a container removed meanwhile."""
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            try:
                row = self.refresh(self.db.get_container(container_id))
            except NotFound:
                return True, None
            if row.state not in status.MONITORED:
                return True, row.exit_code
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return False, None
            answer = self._ask_monitor_to_wait(container_id, remaining)
            if answer is not None:
                return True, answer
            # not (or no longer, or not yet) the monitor's: look at the row again
            _sleep(0.01 if remaining is None else min(0.01, remaining))

    def _ask_monitor_to_wait(self, container_id: str, timeout: float | None) -> int | None:
        """The exit code the monitor reports for the container once it is done; None when
        it does not run it, dies meanwhile, or *timeout* passes."""
        import select

        from tsubo.engine import attach

        fd = self.spawn_monitor()
        try:
            attach.send_all(fd, attach.encode(attach.WAIT, container_id.encode()))
            waiting = select.poll()
            waiting.register(fd, select.POLLIN)
            reader = attach.FrameReader()
            deadline = None if timeout is None else _monotonic() + timeout
            while True:
                left = -1 if deadline is None else max(0, int((deadline - _monotonic()) * 1000))
                if not waiting.poll(left):
                    return None
                data = os.read(fd, 4096)
                if not data:
                    return None
                for kind, payload in reader.feed(data):
                    if kind == attach.EXITED:
                        return int(payload) if payload.lstrip(b"-").isdigit() else None
        finally:
            os.close(fd)


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _monotonic() -> float:
    import time

    return time.monotonic()


def _poll(condition: Callable[[], bool], timeout: float | None) -> bool:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while not condition():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    return True
