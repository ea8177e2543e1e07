"""The monitor: one process per running container, its parent and subreaper (like conmon).

:func:`spawn_monitor` forks it off the engine process (twice, with a new session, so it
belongs to no terminal and survives the CLI being killed). The monitor:

1. mounts the container's overlay root, wires the container's stdio to pipes (or a pty
   through a console socket), and creates + starts the container *in-process* through
   :class:`tsubo.runtime.container.Runtime` — no second interpreter, no runtime process —
   which leaves the container's init as its child;
2. records the pid in the engine database and tells the attached client (if any) "started";
3. relays output to the bounded, rotated log file and to the client, and the client's
   stdin, signals and window size to the container;
4. when the init exits: records the exit code, finish time and OOM kill, deletes the
   runtime container, tells the client, and applies the restart policy (``on-failure[:N]``,
   ``always``, ``unless-stopped``; never after ``tsubo stop``/``kill``) with Docker's
   doubling back-off;
5. at the end unmounts the root, removes an ``--rm`` container entirely, and exits.

Failures before "started" are sent to the client as one error line and recorded.
"""

from __future__ import annotations

import os

from tsubo.engine import attach

TYPE_CHECKING = False
if TYPE_CHECKING:
    import select

    from tsubo.engine.db import ContainerRow, Database
    from tsubo.engine.options import RunOptions
    from tsubo.engine.paths import EnginePaths
    from tsubo.runtime.container import Runtime

_RESTART_DELAY_START = 0.1
_RESTART_DELAY_MAX = 10.0


def spawn_monitor(paths: EnginePaths, client_fd: int) -> None:
    """Fork a monitor whose first client is *client_fd*; it preloads its code, then waits
    on the socket for the container to start (``attach.GO``). Returns in the caller once
    the intermediate fork has exited."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _close_fds_except(client_fd)
            _preload()
            container_id = _wait_for_go(client_fd)
            status = Monitor(paths, container_id, client_fd).run() if container_id else 0
        except BaseException as error:  # a monitor must never unwind into the CLI's code
            _record_crash(paths, error)
            status = 1
        os._exit(status)
    os.waitpid(pid, 0)


def _record_crash(paths: EnginePaths, error: BaseException) -> None:
    """A monitor that fails unexpectedly leaves its traceback in ``<run root>/monitor.log``
    (the container itself is reconciled by the next engine command)."""
    try:
        import traceback

        os.makedirs(paths.run, mode=0o700, exist_ok=True)
        with open(f"{paths.run}/monitor.log", "a", encoding="utf-8") as log:
            log.write(f"monitor {os.getpid()} failed:\n")
            traceback.print_exception(error, file=log)
    except OSError:
        pass


def _preload() -> None:
    """Import what starting a container needs while the engine is still preparing it."""
    import ctypes  # noqa: F401 - the seccomp filter loader
    import select  # noqa: F401

    import tsubo.engine.db
    import tsubo.engine.logs
    import tsubo.engine.options
    import tsubo.engine.storage
    import tsubo.kernel.cgroups
    import tsubo.kernel.seccomp
    import tsubo.oci.runtime_spec
    import tsubo.runtime.container
    import tsubo.runtime.plan
    import tsubo.runtime.spawn  # noqa: F401


def _wait_for_go(client_fd: int) -> str:
    """The container ID the engine sends, or "" if it gave up (closed the socket)."""
    reader = attach.FrameReader()
    while True:
        data = os.read(client_fd, 4096)
        if not data:
            return ""
        for kind, payload in reader.feed(data):
            if kind == attach.GO:
                return payload.decode()


def _close_fds_except(keep: int) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        if target != null:
            os.dup2(null, target)
    low = 3
    for fd in sorted({keep, null} - {0, 1, 2, -1}):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, 1 << 16)
    if null > 2 and null != keep:
        os.close(null)


class Monitor:
    def __init__(self, paths: EnginePaths, container_id: str, client_fd: int) -> None:
        from tsubo.engine.db import Database
        from tsubo.engine.storage import ContainerFiles
        from tsubo.runtime.container import Runtime

        self.paths = paths
        self.id = container_id
        self.clients: list[int] = [client_fd] if client_fd >= 0 else []
        self.db: Database = Database(paths.database)
        self.files = ContainerFiles(paths.container_dir(container_id))
        self.runtime: Runtime = Runtime(paths.runtime_root)
        self.stdin_write = -1
        self.console_master = -1
        self.poller: select.poll | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        from tsubo.engine.options import RunOptions
        from tsubo.kernel.procfs import read_stat

        me = read_stat(os.getpid())
        self.db.update_container(self.id, monitor_pid=os.getpid(),
                                 monitor_start_time=me.start_time if me else 0)
        row = self.db.get_container(self.id)
        options = RunOptions.from_json(_loads(row.options))
        delay = _RESTART_DELAY_START
        try:
            while True:
                exit_code = self._run_once(row, options)
                row = self.db.get_container(self.id)
                if exit_code is None or not _should_restart(options, row, exit_code):
                    break
                self.db.update_container(self.id, state="restarting",
                                         restart_count=row.restart_count + 1)
                import time

                time.sleep(delay)
                delay = min(delay * 2, _RESTART_DELAY_MAX)
                row = self.db.get_container(self.id)
                if row.stopped_by_user:
                    self.db.update_container(self.id, state="exited")
                    break
        finally:
            self._finish(options)
        return 0

    def _run_once(self, row: ContainerRow, options: RunOptions) -> int | None:
        """Start the container once and relay until it exits; its exit code, or None when
        it could not be started (the error went to the client and the database)."""
        from tsubo.engine.db import now_rfc3339
        from tsubo.engine.storage import mount_root
        from tsubo.errors import TsuboError

        try:
            mount_root(self.files, [row.rootfs], volatile=options.remove)
            pid, out_read, err_read = self._start_container(options)
        except TsuboError as error:
            self.db.update_container(self.id, state="exited", exit_code=125,
                                     finished_at=now_rfc3339(), pid=0)
            self._broadcast(attach.encode(attach.ERROR, error.message().encode()))
            return None
        self.db.update_container(self.id, state="running", pid=pid,
                                 started_at=now_rfc3339(), exit_code=None,
                                 finished_at=None, oom_killed=0)
        self._broadcast(attach.encode(attach.STARTED, str(pid).encode()))
        exit_code = self._relay(pid, out_read, err_read, options)
        oom = bool(self._final_state().get("oomKilled"))
        self._delete_runtime_container()
        self.db.update_container(self.id, state="exited", exit_code=exit_code, pid=0,
                                 finished_at=now_rfc3339(), oom_killed=int(oom))
        self._broadcast(attach.encode(attach.EXITED, str(exit_code).encode()))
        return exit_code

    def _start_container(self, options: RunOptions) -> tuple[int, int, int]:
        """Create + start through the runtime with our pipes (or a pty) as its stdio;
        (init pid, stdout fd, stderr fd or -1)."""
        console_path = ""
        listener = None
        if options.tty:
            import socket

            run_dir = self.paths.container_run_dir(self.id)
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            console_path = f"{run_dir}/console.sock"
            if os.path.exists(console_path):
                os.unlink(console_path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(console_path)
            os.chmod(console_path, 0o600)
            listener.listen(1)
            out_read = err_read = -1
        else:
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            err_read, err_write = os.pipe2(os.O_CLOEXEC)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            os.close(out_write)
            os.close(err_write)
            if options.interactive:
                in_read, self.stdin_write = os.pipe2(os.O_CLOEXEC)
                os.dup2(in_read, 0)
                os.close(in_read)
        try:
            record = self.runtime.create(self.id, self.files.bundle,
                                         console_socket=console_path, start_now=True)
        finally:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            for target in (0, 1, 2):
                os.dup2(null, target)
            os.close(null)
        if listener is not None:
            import socket

            connection, _ = listener.accept()
            _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
            connection.close()
            listener.close()
            os.unlink(console_path)
            self.console_master = fds[0]
            out_read = self.console_master
        return record.pid, out_read, err_read

    def _relay(self, pid: int, out_read: int, err_read: int, options: RunOptions) -> int:
        """Move bytes until the init has exited and its output is drained."""
        import _signal
        import select

        from tsubo.engine.logs import LogWriter

        log = LogWriter(self.files.log)
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.signal(_signal.SIGCHLD, lambda number, frame: None)
        _signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        poller = select.poll()
        streams = {out_read: ("stdout", attach.STDOUT)}
        if err_read >= 0:
            streams[err_read] = ("stderr", attach.STDERR)
        for fd in (*streams, wake_read, *self.clients):
            poller.register(fd, select.POLLIN)
        self.poller = poller
        readers = {fd: attach.FrameReader() for fd in self.clients}
        exit_code: int | None = None
        open_streams = set(streams)
        try:
            while True:
                if exit_code is None:
                    exit_code = _reap(pid)
                if exit_code is not None and not open_streams:
                    break
                # Once the init is gone, its output normally ends at once; if something
                # else still holds a pipe, give it a moment, then stop waiting.
                events = poller.poll(-1 if exit_code is None else 200)
                if not events and exit_code is not None:
                    break  # exited, and its output went quiet: something else holds a pipe
                for fd, _ in events:
                    if fd == wake_read:
                        _drain(wake_read)
                    elif fd in streams and fd in open_streams:
                        data = _read(fd)
                        if not data:
                            poller.unregister(fd)
                            open_streams.discard(fd)
                            continue
                        name, kind = streams[fd]
                        log.write(name, data)
                        self._broadcast(attach.encode(kind, data))
                    elif fd in self.clients:
                        self._client_input(fd, readers, pid)
        finally:
            self.poller = None
            log.close()
            _signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)
            for fd in streams:
                os.close(fd)
            if self.stdin_write >= 0:
                os.close(self.stdin_write)
                self.stdin_write = -1
            self.console_master = -1
        return exit_code

    def _client_input(self, fd: int, readers: dict[int, attach.FrameReader], pid: int) -> None:
        data = _read(fd)
        if not data:
            self._drop_client(fd)
            return
        for kind, payload in readers[fd].feed(data):
            if kind == attach.STDIN and self.stdin_write >= 0:
                _write_quietly(self.stdin_write, payload)
            elif kind == attach.STDIN and self.console_master >= 0:
                _write_quietly(self.console_master, payload)
            elif kind == attach.CLOSE_STDIN and self.stdin_write >= 0:
                os.close(self.stdin_write)
                self.stdin_write = -1
            elif kind == attach.SIGNAL:
                try:
                    os.kill(pid, int(payload))
                except (ProcessLookupError, ValueError):
                    pass
            elif kind == attach.RESIZE and self.console_master >= 0:
                _resize(self.console_master, payload)

    def _broadcast(self, frame: bytes) -> None:
        for fd in list(self.clients):
            try:
                attach.send_all(fd, frame)
            except OSError:
                self._drop_client(fd)

    def _drop_client(self, fd: int) -> None:
        """Forget a client that went away: unregistered before its fd number is closed
        (and possibly reused), so no later event can be mistaken for it."""
        if fd not in self.clients:
            return
        if self.poller is not None:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        self.clients.remove(fd)
        os.close(fd)

    def _final_state(self) -> dict[str, object]:
        try:
            return self.runtime.state(self.id)
        except Exception:
            return {}

    def _delete_runtime_container(self) -> None:
        try:
            self.runtime.delete(self.id, force=True)
        except Exception:
            pass

    def _finish(self, options: RunOptions) -> None:
        from tsubo.engine.storage import unmount_root

        try:
            unmount_root(self.files.merged)
        finally:
            if options.remove:
                from tsubo.engine.containers import remove_container_files

                remove_container_files(self.paths, self.db, self.id)
            for fd in self.clients:
                os.close(fd)
            self.db.close()


def _should_restart(options: RunOptions, row: ContainerRow, exit_code: int) -> bool:
    policy = options.restart
    if row.stopped_by_user or options.remove:
        return False
    if policy.name in {"always", "unless-stopped"}:
        return True
    if policy.name == "on-failure" and exit_code != 0:
        return policy.max_retries == 0 or row.restart_count < policy.max_retries
    return False


def _reap(pid: int) -> int | None:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 255
    if reaped != pid:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO from a pty whose last slave closed
        return b""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _write_quietly(fd: int, data: bytes) -> None:
    try:
        attach.send_all(fd, data)
    except OSError:
        pass


def _resize(master: int, payload: bytes) -> None:
    import fcntl
    import struct

    try:
        rows, cols = (int(value) for value in payload.split())
        fcntl.ioctl(master, 0x5414, struct.pack("HHHH", rows, cols, 0, 0))  # TIOCSWINSZ
    except (ValueError, OSError):
        pass


def _loads(text: str) -> dict[str, object]:
    from tsubo.oci import jsonwire

    value = jsonwire.loads(text)
    assert isinstance(value, dict)
    return value
