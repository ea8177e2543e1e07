"""The monitor: the parent and subreaper of an engine's running containers.

One monitor process serves all running containers of one engine root. It is started on
demand by the first ``tsubo run``/``start`` (forked from the CLI, twice, with a new session,
so it belongs to no terminal and survives the CLI being killed) and exits on its own once
no container runs. For each container it:

1. mounts the overlay root, wires the container's stdio to pipes (or a pty through a
   console socket), and creates + starts the container *in-process* through
   :class:`tsubo.runtime.container.Runtime` — no second interpreter, no runtime process —
   which leaves the container's init as its child;
2. records the pid in the engine database and tells the attached clients "started";
3. relays output to the bounded, rotated log file and to clients, and the clients' stdin,
   signals and window sizes to the container;
4. when the init exits: records the exit code, finish time and OOM kill, deletes the
   runtime container, tells the clients, and applies the restart policy (``on-failure[:N]``,
   ``always``, ``unless-stopped``; never after ``tsubo stop``/``kill``) with Docker's
   doubling back-off; at the end unmounts the root and removes an ``--rm`` container.

Why one process and not one per container (podman's conmon is one per container, in C):
a Python process per idle container keeps ~6 MB of private memory (measured:
``bench/engine_memory.py``), against conmon's ~0.4 MB; one monitor for N containers costs
its interpreter once. Each container's events are handled inside their own error
boundary, so a fault while serving one container is logged (``<run root>/monitor.log``)
and does not stop the others; if the monitor itself is killed, the containers keep
running and the next engine command reconciles their state.

Clients reach the monitor on ``<run root>/monitor.sock`` (a filesystem socket, mode 0600 in
a 0700 folder — never abstract: CVE-2020-15257). A connection's first frame names the
container to start (``attach.GO``); the connection then becomes that container's attach
stream (``engine/attach.py``). Starting a monitor and its idle exit are serialised by an
flock on ``monitor.lock``, so a client never connects to a monitor that is going away.
"""

from __future__ import annotations

import os

from tsubo.engine import attach

TYPE_CHECKING = False
if TYPE_CHECKING:
    import select
    from typing import Any

    from tsubo.engine.containers import Engine
    from tsubo.engine.db import ContainerRow, Database
    from tsubo.engine.logs import LogWriter
    from tsubo.engine.options import RunOptions
    from tsubo.engine.paths import EnginePaths
    from tsubo.errors import TsuboError
    from tsubo.runtime.container import Runtime

_RESTART_DELAY_START = 0.1
_RESTART_DELAY_MAX = 10.0
_IDLE_EXIT_SECONDS = 2.0
_DRAIN_SECONDS = 0.2
_SOCKET_NAME = "monitor.sock"
_LOCK_NAME = "monitor.lock"


# --- the client side: reaching (or starting) the monitor --------------------------------

def connect_monitor(paths: EnginePaths) -> int:
    """A connected socket fd to the engine's monitor, starting one if none runs."""
    import fcntl

    fd = _try_connect(paths)
    if fd >= 0:
        return fd
    os.makedirs(paths.run, mode=0o700, exist_ok=True)
    lock = os.open(f"{paths.run}/{_LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = _try_connect(paths)
        if fd >= 0:
            return fd
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        _fork_monitor(paths, ready_write)
        os.close(ready_write)
        os.read(ready_read, 1)  # the monitor listens (or has died: EOF)
        os.close(ready_read)
        fd = _try_connect(paths)
        if fd < 0:
            from tsubo.errors import TsuboError

            raise TsuboError("start monitor", f"{paths.run}/{_SOCKET_NAME}",
                             detail="the monitor did not come up",
                             hint=f"see {paths.run}/monitor.log")
        return fd
    finally:
        os.close(lock)


def _try_connect(paths: EnginePaths) -> int:
    import _socket  # the C core of ``socket``, which costs ~10 ms to import here

    from tsubo.engine.paths import socket_address

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    address, folder_fd = socket_address(f"{paths.run}/{_SOCKET_NAME}")
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return -1
    finally:
        if folder_fd >= 0:
            os.close(folder_fd)
    return int(sock.detach())


def _fork_monitor(paths: EnginePaths, ready_fd: int) -> None:
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _close_fds_except(ready_fd)
            status = MonitorService(paths).serve(ready_fd)
        except BaseException as error:  # a monitor must never unwind into the CLI's code
            _record_crash(paths, error)
        os._exit(status)
    os.waitpid(pid, 0)


def _preload() -> None:
    """Import everything starting a container needs, once, while the first client is busy
    creating its container."""
    import ctypes  # noqa: F401 - the seccomp filter loader
    import fcntl  # noqa: F401
    import select  # noqa: F401

    import tsubo.engine.containers
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


def _record_crash(paths: EnginePaths, error: BaseException, what: str = "monitor") -> None:
    """Leave a traceback in ``<run root>/monitor.log``."""
    try:
        import traceback

        os.makedirs(paths.run, mode=0o700, exist_ok=True)
        with open(f"{paths.run}/monitor.log", "a", encoding="utf-8") as log:
            log.write(f"{what} (pid {os.getpid()}) failed:\n")
            traceback.print_exception(error, file=log)
    except OSError:
        pass


# --- the monitor ----------------------------------------------------------------------------

class Supervised:
    """One container under the monitor: its process, streams, log and clients."""

    def __init__(self, container_id: str, options: RunOptions) -> None:
        self.id = container_id
        self.options = options
        self.pid = 0
        self.streams: dict[int, tuple[str, bytes]] = {}  # fd -> (log stream, frame kind)
        self.stdin_write = -1
        self.console_master = -1
        self.clients: list[int] = []
        self.exit_code: int | None = None
        self.exited_at = 0.0
        self.log: LogWriter | None = None
        self.restart_delay = _RESTART_DELAY_START
        self.restart_at = 0.0  # monotonic time of a scheduled restart (0: none)
        #: a --rm container's exit frame, sent only once it is removed: `run --rm` returns
        #: when the container is gone, so `rmi` right after it finds no user (as Docker)
        self.exit_frame = b""


class MonitorService:
    """The event loop serving every running container of one engine root."""

    def __init__(self, paths: EnginePaths) -> None:
        import select

        self.paths = paths
        self.engine: Engine  # opened in serve(), after we listen (see there)
        self.db: Database
        self.runtime: Runtime
        self.poller: select.poll = select.poll()
        self.containers: dict[str, Supervised] = {}
        self.by_pid: dict[int, Supervised] = {}
        self.by_fd: dict[int, Supervised] = {}  # container streams and attached clients
        self.pending: dict[int, attach.FrameReader] = {}  # connections before their GO
        self.readers: dict[int, attach.FrameReader] = {}
        self.listener = -1
        self.listener_sock: object = None
        #: DNS on each network's gateway: fd -> (socket, network id); relayed queries
        self.dns: dict[int, tuple[Any, str]] = {}
        self.upstream: Any = None
        self.relayed: dict[tuple[bytes, str], tuple[Any, Any]] = {}
        self.wake_read = -1

    # --- the loop -------------------------------------------------------------------------

    def serve(self, ready_fd: int) -> int:
        import _signal
        import time

        self._listen()
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        # The client that started us prepares its container now; meanwhile, load the code
        # that starting it will need (its GO waits in the socket's backlog).
        _preload()
        from tsubo.engine.containers import Engine

        self.engine = Engine(paths=self.paths)
        self.db = self.engine.db
        self.runtime = self.engine.runtime
        self.wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.signal(_signal.SIGCHLD, lambda number, frame: None)
        _signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        self.poller.register(self.wake_read, 1)
        idle_since = time.monotonic()
        while True:
            timeout = self._next_timeout(idle_since)
            for fd, _ in self.poller.poll(timeout):
                self._dispatch(fd)
            self._reap_children()
            self._run_timers()
            if self.containers or self.pending:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= _IDLE_EXIT_SECONDS and self._close_if_idle():
                return 0

    def _listen(self) -> None:
        import _socket

        path = f"{self.paths.run}/{_SOCKET_NAME}"
        if os.path.exists(path):
            os.unlink(path)  # a stale socket: connecting to it failed under the lock
        from tsubo.engine.paths import socket_address

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        address, folder_fd = socket_address(path)
        old_umask = os.umask(0o177)
        try:
            sock.bind(address)
        finally:
            os.umask(old_umask)
            if folder_fd >= 0:
                os.close(folder_fd)
        sock.listen(64)
        sock.setblocking(False)
        self.listener_sock = sock
        self.listener = sock.fileno()
        self.poller.register(self.listener, 1)

    def _next_timeout(self, idle_since: float) -> int:
        import time

        now = time.monotonic()
        deadlines = [s.restart_at for s in self.containers.values() if s.restart_at]
        deadlines += [s.exited_at + _DRAIN_SECONDS for s in self.containers.values()
                      if s.exit_code is not None and s.streams]
        if not self.containers and not self.pending:
            deadlines.append(idle_since + _IDLE_EXIT_SECONDS)
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - now) * 1000) + 1)

    def _close_if_idle(self) -> bool:
        """Exit only while holding the start lock, with no connection waiting."""
        import fcntl
        import select

        lock = os.open(f"{self.paths.run}/{_LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            waiting = select.poll()
            waiting.register(self.listener, select.POLLIN)
            if waiting.poll(0):
                return False
            os.unlink(f"{self.paths.run}/{_SOCKET_NAME}")
            self.listener_sock.close()  # type: ignore[attr-defined]
            self.db.close()
            return True
        finally:
            os.close(lock)

    def _dispatch(self, fd: int) -> None:
        if fd == self.wake_read:
            _drain(fd)
        elif fd in self.dns:
            self._dns_query(fd)
        elif self.upstream is not None and fd == self.upstream.fileno():
            self._dns_reply()
        elif fd == self.listener:
            self._accept()
        elif fd in self.pending:
            self._pending_input(fd)
        else:
            supervised = self.by_fd.get(fd)
            if supervised is None:
                return
            try:
                if fd in supervised.streams:
                    self._stream_output(supervised, fd)
                else:
                    self._client_input(supervised, fd)
            except Exception as error:
                _record_crash(self.paths, error, f"serving container {supervised.id}")

    # --- connections --------------------------------------------------------------------------

    def _accept(self) -> None:
        import _socket
        import struct

        while True:
            try:
                fd, _ = self.listener_sock._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                return
            # A client that stops reading must not stall every container for long.
            client = _socket.socket(fileno=fd)
            client.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))
            client.detach()
            self.pending[fd] = attach.FrameReader()
            self.poller.register(fd, 1)

    def _pending_input(self, fd: int) -> None:
        data = _read(fd)
        if not data:
            self._forget(fd)
            return
        for kind, payload in self.pending[fd].feed(data):
            if kind == attach.GO:
                reader = self.pending.pop(fd)
                self._start(payload.decode(), fd, reader)
                return
            if kind == attach.RUN:
                reader = self.pending.pop(fd)
                self._create_and_start(payload, fd, reader)
                return

    def _create_and_start(self, payload: bytes, client_fd: int,
                          reader: attach.FrameReader) -> None:
        """``run``: the client sent its options; create the container here (this process
        has SQLite and the engine code loaded already), then start it."""
        from tsubo.engine.options import RunOptions
        from tsubo.errors import TsuboError
        from tsubo.oci import jsonwire

        try:
            request = jsonwire.loads(payload)
            assert isinstance(request, dict)
            options = RunOptions.from_json(request["options"])
            row = self.engine.create(options, name=request.get("name"))
            self.db.update_container(row.id, state="starting", stopped_by_user=0,
                                     monitor_pid=0)
        except TsuboError as error:
            _send_quietly(client_fd, attach.error_frame(error))
            self._forget(client_fd)
            return
        except Exception as error:
            _record_crash(self.paths, error, "creating a container")
            _send_quietly(client_fd, attach.error_frame(
                TsuboError("create container", "", detail=str(error))))
            self._forget(client_fd)
            return
        self._start(row.id, client_fd, reader)

    def _forget(self, fd: int) -> None:
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass
        self.pending.pop(fd, None)
        self.by_fd.pop(fd, None)
        self.readers.pop(fd, None)
        os.close(fd)

    # --- names on networks ----------------------------------------------------------------

    def _serve_dns(self, network_id: str) -> None:
        """Listen on the network's gateway, port 53, once (``network/dns.py``)."""
        if any(owner == network_id for _, owner in self.dns.values()):
            return
        import socket

        from tsubo.network.store import NetworkStore

        gateway = NetworkStore(self.engine.db).get_network(network_id).gateway
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((gateway, 53))
        except OSError as error:
            sock.close()
            _record_crash(self.paths, error, f"serving names on {gateway}:53")
            return
        sock.setblocking(False)
        self.dns[sock.fileno()] = (sock, network_id)
        self.poller.register(sock.fileno(), 1)

    def _dns_query(self, fd: int) -> None:
        from tsubo.network import dns
        from tsubo.network.store import NetworkStore

        sock, network_id = self.dns[fd]
        try:
            packet, client = sock.recvfrom(4096)
        except OSError:
            return
        store = NetworkStore(self.db)
        reply = dns.respond(packet, lambda name: store.resolve_name(network_id, name))
        if reply is not None:
            _send_datagram(sock, reply, client)
            return
        self._relay_upstream(packet, sock, client)

    def _relay_upstream(self, packet: bytes, sock: Any, client: Any) -> None:
        """A name that is not a container's: ask the host's own nameserver."""
        import socket

        from tsubo.network.ipam import host_nameservers

        servers = [server for server in host_nameservers() if ":" not in server]
        if not servers:
            return
        if self.upstream is None:
            self.upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.upstream.setblocking(False)
            self.poller.register(self.upstream.fileno(), 1)
        self.relayed[(packet[:2], servers[0])] = (sock, client)
        _send_datagram(self.upstream, packet, (servers[0], 53))

    def _dns_reply(self) -> None:
        try:
            packet, (server, _) = self.upstream.recvfrom(4096)
        except OSError:
            return
        target = self.relayed.pop((packet[:2], server), None)
        if target is not None:
            _send_datagram(target[0], packet, target[1])

    # --- starting -----------------------------------------------------------------------------

    def _start(self, container_id: str, client_fd: int, reader: attach.FrameReader) -> None:
        from tsubo.engine.options import RunOptions
        from tsubo.errors import NotFound, TsuboError

        try:
            row = self.db.get_container(container_id)
        except NotFound as error:
            _send_quietly(client_fd, attach.encode(attach.ERROR, error.message().encode()))
            os.close(client_fd)
            return
        supervised = self.containers.get(container_id)
        if supervised is None:
            supervised = Supervised(container_id, RunOptions.from_json_text(row.options))
            self.containers[container_id] = supervised
        supervised.clients.append(client_fd)
        self.by_fd[client_fd] = supervised
        self.readers[client_fd] = reader
        self.poller.register(client_fd, 1)
        try:
            self._launch(supervised, row)
        except TsuboError as error:
            self._start_failed(supervised, error)
        except Exception as error:
            _record_crash(self.paths, error, f"starting container {container_id}")
            self._start_failed(supervised, TsuboError("start container", container_id,
                                                      detail=str(error)))

    def _launch(self, supervised: Supervised, row: ContainerRow) -> None:
        """Mount, create + start through the runtime, register the streams."""
        from tsubo.engine.db import now_rfc3339
        from tsubo.engine.logs import LogWriter
        from tsubo.engine.storage import ContainerFiles, mount_root
        from tsubo.kernel.procfs import read_stat

        files = ContainerFiles(self.paths.container_dir(supervised.id))
        me = read_stat(os.getpid())
        self.db.update_container(supervised.id, monitor_pid=os.getpid(),
                                 monitor_start_time=me.start_time if me else 0)
        mount_root(files, [row.rootfs], volatile=supervised.options.remove)
        options = supervised.options
        if options.network == "bridge":
            from tsubo.engine.networks import NetworkManager

            endpoints = NetworkManager(self.engine).attach(
                supervised.id, row.name, options.networks, requested_ip=options.ip,
                mac_address=options.mac_address)
            for endpoint in endpoints:
                self._serve_dns(endpoint.network_id)
        try:
            pid, out_read, err_read = self._create(supervised, files.bundle)
        except BaseException:
            self._detach(supervised)
            raise
        supervised.pid = pid
        supervised.exit_code = None
        supervised.streams = {out_read: ("stdout", attach.STDOUT)}
        if err_read >= 0:
            supervised.streams[err_read] = ("stderr", attach.STDERR)
        for fd in supervised.streams:
            self.by_fd[fd] = supervised
            self.poller.register(fd, 1)
        supervised.log = LogWriter(files.log)
        self.by_pid[pid] = supervised
        self.db.update_container(supervised.id, state="running", pid=pid,
                                 started_at=now_rfc3339(), exit_code=None, finished_at=None,
                                 oom_killed=0)
        self._broadcast(supervised, attach.encode(attach.STARTED,
                                                  f"{pid} {supervised.id}".encode()))

    def _create(self, supervised: Supervised, bundle: str) -> tuple[int, int, int]:
        """The runtime's create + start with our pipes (or a pty) as the container's stdio;
        (init pid, stdout fd, stderr fd or -1)."""
        options = supervised.options
        console_path = ""
        listener = None
        folder_fd = -1
        out_read = err_read = -1
        if options.tty:
            import socket

            run_dir = self.paths.container_run_dir(supervised.id)
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            console_path = f"{run_dir}/console.sock"
            if os.path.exists(console_path):
                os.unlink(console_path)
            from tsubo.engine.paths import socket_address

            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address, folder_fd = socket_address(console_path)
            listener.bind(address)
            os.chmod(console_path, 0o600)
            listener.listen(1)
            # The runtime connects in this process: the short address stays valid while
            # folder_fd is open (closed below, once the pty has arrived).
            console_path = address
        else:
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            err_read, err_write = os.pipe2(os.O_CLOEXEC)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            os.close(out_write)
            os.close(err_write)
            if options.interactive:
                in_read, supervised.stdin_write = os.pipe2(os.O_CLOEXEC)
                os.dup2(in_read, 0)
                os.close(in_read)
        try:
            record = self.runtime.create(supervised.id, bundle, console_socket=console_path,
                                         start_now=True)
        except BaseException:
            for fd in (out_read, err_read, supervised.stdin_write):
                if fd >= 0:
                    os.close(fd)
            supervised.stdin_write = -1
            if listener is not None:
                listener.close()
                os.unlink(console_path)
                if folder_fd >= 0:
                    os.close(folder_fd)
            raise
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
            if folder_fd >= 0:
                os.close(folder_fd)
            supervised.console_master = fds[0]
            out_read = fds[0]
        return record.pid, out_read, err_read

    def _start_failed(self, supervised: Supervised, error: TsuboError) -> None:
        from tsubo.engine.db import now_rfc3339

        self.db.update_container(supervised.id, state="exited", exit_code=125, pid=0,
                                 finished_at=now_rfc3339())
        self._broadcast(supervised, attach.error_frame(error))
        self._finish(supervised)

    # --- running ------------------------------------------------------------------------------

    def _stream_output(self, supervised: Supervised, fd: int) -> None:
        data = _read(fd)
        if not data:
            self._close_stream(supervised, fd)
            return
        name, kind = supervised.streams[fd]
        if supervised.log is not None:
            supervised.log.write(name, data)
        self._broadcast(supervised, attach.encode(kind, data))

    def _close_stream(self, supervised: Supervised, fd: int) -> None:
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass
        supervised.streams.pop(fd, None)
        self.by_fd.pop(fd, None)
        os.close(fd)
        if fd == supervised.console_master:
            supervised.console_master = -1
        if supervised.exit_code is not None and not supervised.streams:
            self._exited(supervised)

    def _client_input(self, supervised: Supervised, fd: int) -> None:
        data = _read(fd)
        if not data:
            self._drop_client(supervised, fd)
            return
        for kind, payload in self.readers[fd].feed(data):
            if kind == attach.STDIN and supervised.stdin_write >= 0:
                _write_quietly(supervised.stdin_write, payload)
            elif kind == attach.STDIN and supervised.console_master >= 0:
                _write_quietly(supervised.console_master, payload)
            elif kind == attach.CLOSE_STDIN and supervised.stdin_write >= 0:
                os.close(supervised.stdin_write)
                supervised.stdin_write = -1
            elif kind == attach.SIGNAL and supervised.pid and supervised.exit_code is None:
                try:
                    os.kill(supervised.pid, int(payload))
                except (ProcessLookupError, ValueError):
                    pass
            elif kind == attach.RESIZE and supervised.console_master >= 0:
                _resize(supervised.console_master, payload)

    def _broadcast(self, supervised: Supervised, frame: bytes) -> None:
        for fd in list(supervised.clients):
            try:
                attach.send_all(fd, frame)
            except OSError:
                self._drop_client(supervised, fd)

    def _drop_client(self, supervised: Supervised, fd: int) -> None:
        """Forget a client that went away: unregistered before its fd number is closed
        (and possibly reused), so no later event can be mistaken for it."""
        if fd not in supervised.clients:
            return
        supervised.clients.remove(fd)
        self._forget(fd)

    # --- exits --------------------------------------------------------------------------------

    def _reap_children(self) -> None:
        import time

        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            supervised = self.by_pid.pop(pid, None)
            if supervised is None:
                continue  # an intermediate or hook process of the runtime
            code = os.waitstatus_to_exitcode(status)
            supervised.exit_code = 128 - code if code < 0 else code
            supervised.exited_at = time.monotonic()
            if not supervised.streams:
                self._exited(supervised)

    def _exited(self, supervised: Supervised) -> None:
        """The init is gone and its output drained: record, clean, restart or finish."""
        try:
            self._record_exit(supervised)
        except Exception as error:
            _record_crash(self.paths, error, f"recording the exit of {supervised.id}")
            self._finish(supervised)

    def _record_exit(self, supervised: Supervised) -> None:
        import time

        from tsubo.engine.db import now_rfc3339
        from tsubo.errors import NotFound

        code = supervised.exit_code if supervised.exit_code is not None else 255
        try:
            oom = bool(self.runtime.state(supervised.id).get("oomKilled"))
        except Exception:
            oom = False
        try:
            self.runtime.delete(supervised.id, force=True)
        except Exception as error:
            _record_crash(self.paths, error, f"deleting runtime container {supervised.id}")
        if supervised.log is not None:
            supervised.log.close()
            supervised.log = None
        self._close_stdin(supervised)
        self._detach(supervised)
        try:
            self.db.update_container(supervised.id, state="exited", exit_code=code, pid=0,
                                     finished_at=now_rfc3339(), oom_killed=int(oom))
        except NotFound:
            pass
        frame = attach.encode(attach.EXITED, str(code).encode())
        if supervised.options.remove:
            supervised.exit_frame = frame
        else:
            self._broadcast(supervised, frame)
        try:
            row = self.db.get_container(supervised.id)
        except NotFound:  # removed meanwhile (rm -f)
            self._finish(supervised)
            return
        if _should_restart(supervised.options, row, code):
            self.db.update_container(supervised.id, state="restarting",
                                     restart_count=row.restart_count + 1)
            supervised.restart_at = time.monotonic() + supervised.restart_delay
            supervised.restart_delay = min(supervised.restart_delay * 2, _RESTART_DELAY_MAX)
            return
        self._finish(supervised)

    def _run_timers(self) -> None:
        import time

        now = time.monotonic()
        for supervised in list(self.containers.values()):
            if supervised.exit_code is not None and supervised.streams and \
                    now >= supervised.exited_at + _DRAIN_SECONDS:
                # Exited, but something else still holds its output pipes: stop waiting.
                for fd in list(supervised.streams):
                    self._close_stream(supervised, fd)
            if supervised.restart_at and now >= supervised.restart_at:
                supervised.restart_at = 0.0
                self._restart(supervised)

    def _restart(self, supervised: Supervised) -> None:
        row = self.db.get_container(supervised.id)
        if row.stopped_by_user:
            self.db.update_container(supervised.id, state="exited")
            self._finish(supervised)
            return
        try:
            self._launch(supervised, row)
        except TsuboError as error:
            self._start_failed(supervised, error)
        except Exception as error:
            _record_crash(self.paths, error, f"restarting container {supervised.id}")
            self._start_failed(supervised, TsuboError("restart container", supervised.id,
                                                      detail=str(error)))

    def _detach(self, supervised: Supervised) -> None:
        """Off its networks: netns pin (and with it the veths), leases, endpoints."""
        if supervised.options.network != "bridge":
            return
        from tsubo.engine.containers import detach_networks

        try:
            detach_networks(self.paths, self.db, supervised.id)
        except Exception as error:
            _record_crash(self.paths, error, f"detaching container {supervised.id}")

    def _close_stdin(self, supervised: Supervised) -> None:
        if supervised.stdin_write >= 0:
            os.close(supervised.stdin_write)
            supervised.stdin_write = -1

    def _finish(self, supervised: Supervised) -> None:
        """The container is done here: unmount its root, remove it for --rm, let go."""
        from tsubo.engine.storage import unmount_root

        self.containers.pop(supervised.id, None)
        for fd in list(supervised.streams):
            self._close_stream(supervised, fd)
        self._close_stdin(supervised)
        try:
            unmount_root(f"{self.paths.container_dir(supervised.id)}/merged")
            if supervised.options.remove:
                from tsubo.engine.containers import remove_container_files

                remove_container_files(self.paths, self.db, supervised.id)
        except Exception as error:
            _record_crash(self.paths, error, f"cleaning up container {supervised.id}")
        if supervised.exit_frame:
            self._broadcast(supervised, supervised.exit_frame)
        for fd in list(supervised.clients):
            self._drop_client(supervised, fd)


def _should_restart(options: RunOptions, row: ContainerRow, exit_code: int) -> bool:
    policy = options.restart
    if row.stopped_by_user or options.remove:
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure" and exit_code != 0:
        return policy.max_retries == 0 or row.restart_count < policy.max_retries
    return False


def _send_datagram(sock: Any, packet: bytes, address: Any) -> None:
    try:
        sock.sendto(packet, address)
    except OSError:
        pass  # a client or server gone away: nothing to tell


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


def _send_quietly(fd: int, frame: bytes) -> None:
    _write_quietly(fd, frame)


def _resize(master: int, payload: bytes) -> None:
    import fcntl
    import struct

    try:
        rows, cols = (int(value) for value in payload.split())
        fcntl.ioctl(master, 0x5414, struct.pack("HHHH", rows, cols, 0, 0))  # TIOCSWINSZ
    except (ValueError, OSError):
        pass


__all__ = ["MonitorService", "connect_monitor"]
