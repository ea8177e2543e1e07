"""The monitor: the parent and subreaper of an engine's running containers.

One monitor process serves all running containers of one engine root. It is started on
demand by the first ``tsubo run``/``start`` (by the root's keeper, which that command forks:
``engine/client.py``) and exits on its own once no container runs. For each container it:

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

One monitor for N containers costs its interpreter once (a Python process per idle
container would keep ~6 MB; docs/engine.md). Each container's events, and every other
event of the loop, run inside an error boundary: a fault is logged
(``<run root>/monitor.log``) and the loop goes on. The monitor's parent is the root's
keeper (``engine/keeper.py``), which holds each container's stdio fds and starts a new
monitor when this one dies; the new one adopts the running containers (:meth:`serve`).

Clients reach the monitor on ``<run root>/monitor.sock`` (``engine/client.py``). A
connection's first frame says what it wants (``engine/attach.py``): a container to start
(``GO``) or create and start (``RUN``), after which it is that container's attach stream; a
container to wait for (``WAIT``); or the adoption of containers whose monitor died
(``RECONCILE``). Starting a monitor and its idle exit are serialised by an flock on
``monitor.lock``, so a client never connects to a monitor that is going away.
"""

from __future__ import annotations

import _thread
import collections
import errno
import os

from tsubo.engine import attach, status
from tsubo.engine.background import (
    SOCKET_NAME,
    above_select_range,
    close_fds_except,
    record_crash,
)
from tsubo.kernel import syscalls  # the monitor's every turn: tee(2) of container output
from tsubo.kernel.flags import SPLICE_F_NONBLOCK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from tsubo.engine.core import EngineCore
    from tsubo.engine.health import HealthState, ProbeResult
    from tsubo.engine.logs import LogWriter
    from tsubo.engine.networks import PortPublication
    from tsubo.engine.options import RunOptions
    from tsubo.engine.paths import EnginePaths
    from tsubo.errors import TsuboError
    from tsubo.kernel.nftwatch import RulesetWatch
    from tsubo.network import dns
    from tsubo.runtime.container import Runtime
    from tsubo.state.db import ContainerRow, Database

_RESTART_DELAY_START = 0.1
_RESTART_DELAY_MAX = 10.0
_IDLE_EXIT_SECONDS = 2.0
_DRAIN_SECONDS = 0.2
_READ_SIZE = 65536  # a pipe's whole default capacity
#: State.Error of a container that exited while no monitor watched it
UNKNOWN_EXIT = ("exit status unknown: it exited while neither the engine's monitor nor "
                "its keeper was there to see it")


def run_monitor(paths: EnginePaths, ready_fd: int, keeper_fd: int, adopting: bool) -> int:
    """The monitor process's main, in the keeper's freshly forked child."""
    import _signal

    _signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    close_fds_except(ready_fd, keeper_fd)
    from tsubo.kernel.procfs import set_process_title

    set_process_title(f"tsubo-monitor {paths.data}")
    return MonitorService(paths, keeper_fd).serve(ready_fd, adopting=adopting)


def _preload() -> None:
    """Import everything starting a container needs, once, while the first client is busy
    creating its container."""
    import ctypes  # noqa: F401 - the seccomp filter loader
    import fcntl  # noqa: F401
    import select  # noqa: F401



# --- the monitor ----------------------------------------------------------------------------

class _Poller:
    """The loop's fds in an epoll(7) set, with poll's interface (register twice: kept;
    unregister an unknown fd: KeyError; timeouts in ms). A turn of the loop costs the same
    with 10 or 500 containers: poll(2) looked at every fd each turn, two output pipes and
    more per running container (docs/performance.md, "The Nth container"). The same rule
    holds as with poll: an fd is unregistered before it is closed (epoll would otherwise
    keep the registration while another process, the keeper, holds the file)."""

    __slots__ = ("epoll", "fds")

    def __init__(self) -> None:
        import select

        self.epoll = select.epoll()
        self.fds: set[int] = set()

    def register(self, fd: int, _events: int = 1) -> None:
        if fd not in self.fds:
            self.epoll.register(fd, 1)  # EPOLLIN, level-triggered; HUP and ERR come anyway
            self.fds.add(fd)

    def unregister(self, fd: int) -> None:
        self.fds.remove(fd)  # KeyError, as poll's
        self.epoll.unregister(fd)

    def poll(self, timeout_ms: int) -> list[tuple[int, int]]:
        return self.epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)


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
        #: why the exit code is not the container's own (State.Error), if it is not
        self.exit_error = ""
        self.exited_at = 0.0
        self.log: LogWriter | None = None
        self.restart_delay = _RESTART_DELAY_START
        self.restart_at = 0.0  # monotonic time of a scheduled restart (0: none)
        #: a --rm container's exit frame, sent only once it is removed: `run --rm` returns
        #: when the container is gone, so `rmi` right after it finds no user (as Docker)
        self.exit_frame = b""
        #: adopted from a dead monitor: its init is the keeper's child, not ours (the
        #: keeper reports its exit); -1, or a pidfd when no keeper held it either
        self.pidfd = -1
        #: connections waiting for it to be done (``wait``, ``stop``): told its exit code
        self.waiters: list[int] = []
        #: its health check's state, when it has one (``engine/health.py``)
        self.health: HealthState | None = None

    def stdio_fds(self) -> tuple[list[str], list[int]]:
        """The fds the keeper must hold for this container: (names, fds)."""
        names, fds = [], []
        for fd, (stream, _) in self.streams.items():
            names.append("console" if fd == self.console_master else stream)
            fds.append(fd)
        if self.stdin_write >= 0:
            names.append("stdin")
            fds.append(self.stdin_write)
        return names, fds


class MonitorService:
    """The event loop serving every running container of one engine root."""

    def __init__(self, paths: EnginePaths, keeper_fd: int = -1) -> None:
        self.paths = paths
        self.engine: EngineCore  # opened in serve(), after we listen (see there)
        self.db: Database
        self.runtime: Runtime
        self.poller = _Poller()
        self.containers: dict[str, Supervised] = {}
        self.by_pid: dict[int, Supervised] = {}
        self.by_fd: dict[int, Supervised] = {}  # container streams and attached clients
        self.pending: dict[int, attach.FrameReader] = {}  # connections before their GO
        self.readers: dict[int, attach.FrameReader] = {}
        self.pidfds: dict[int, Supervised] = {}
        self.waiting: dict[int, Supervised] = {}  # clients of `wait` and `stop`
        #: the pipe containers' output is copied into before it is logged (read, write)
        self.output_copy: tuple[int, int] = (-1, -1)
        #: starts in worker threads (``_submit``): the pool, the finished jobs and the pipe
        #: that tells the loop about them, how many are in flight, which containers
        self.to_prepare: collections.deque[_StartJob] = collections.deque()
        self.queued: collections.deque[_StartJob] = collections.deque()
        self.workers = 0  # worker threads running a start
        self.done: collections.deque[_StartJob] = collections.deque()
        #: finished health probes: (container ID, result), handed over as starts are
        self.probes_done: collections.deque[tuple[str, ProbeResult]] = collections.deque()
        self.done_read = self.done_write = -1
        self.jobs = 0
        self.starting: set[str] = set()
        #: the firewall's self-healing (``_firewall_*``): the nftables watch while a container
        #: on a bridge network runs, when to look next, the recent repairs, the back-off
        self.firewall_watch: RulesetWatch | None = None
        self.firewall_check_at = 0.0
        self.firewall_repairs: list[float] = []
        self.firewall_backoff = 0.0
        #: who committed the changes heard since the last look (0: unknown; lost:
        #: notifications dropped): a look after only our own transactions (those of
        #: ``nftables.committed_here``: ports published and unpublished) is skipped
        self.firewall_committers: list[int] = []
        self.firewall_unknown = False
        self.listener = -1
        self.listener_sock: object = None
        #: DNS on each network's gateway: fd -> (socket, network id); relayed queries
        #: what serves each of the engine's own fds (``_watch``)
        self.handlers: dict[int, Callable[[int], object]] = {}
        self.dns: dict[int, tuple[Any, str]] = {}
        #: DNS over TCP on each gateway: listeners fd -> (socket, network id); connections
        #: fd -> (socket, network id, what arrived so far)
        self.dns_tcp: dict[int, tuple[Any, str]] = {}
        self.dns_conns: dict[int, tuple[Any, str, bytearray]] = {}
        self.dns_relaying = [0]  # relays over TCP in flight (their threads count down)
        self.upstream: Any = None
        self.relayed: dict[tuple[bytes, str], tuple[Any, Any]] = {}
        self.wake_read = -1
        #: a SIGCHLD arrived since the last reaping (each turn looked at every known init
        #: before: a cost that grew with the number of containers)
        self.child_exited = False
        #: the earliest deadline :meth:`_next_timeout` found: no timer is due before it
        self.timers_due = 0.0
        #: the containers that may have a deadline (a restart, the drain of an exited
        #: one's output, a health check): what the timers look at, not every container
        #: (each turn of the loop walked them all before)
        self.timed: set[Supervised] = set()
        #: the mount namespace base (``_mount_base``): None until the first start
        self.mount_base: int | None = None
        self.mount_base_lock = _thread.allocate_lock()
        self.keeper: Any = None
        if keeper_fd >= 0:
            import _socket

            self.keeper = _socket.socket(fileno=keeper_fd)
        self.me = (os.getpid(), 0)

    # --- the loop -------------------------------------------------------------------------

    def serve(self, ready_fd: int, *, adopting: bool = False) -> int:
        """Listen, tell *ready_fd*, and serve until idle. A monitor started by a command
        listens first and loads the engine while that command prepares its container. A
        monitor the keeper starts after its predecessor died (*adopting*) first takes over
        the kept containers and reconciles the rest, so no command ever sees a container
        whose monitor is gone."""
        import _signal
        import time

        from tsubo.kernel import signals
        from tsubo.kernel.procfs import read_stat

        me = read_stat(os.getpid())
        self.me = (os.getpid(), me.start_time if me else 0)
        if adopting:
            self._open_engine()
            self._adopt_kept()
            self._guard("reconciling containers", self.reconcile, True)
        self._listen()
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        if not adopting:
            # The client that started us prepares its container now; meanwhile, load the
            # code that starting it will need (its GO waits in the socket's backlog).
            self._open_engine()
        if self.keeper is not None:
            self.keeper.setblocking(False)
            self._watch(self.keeper.fileno(), lambda _: self._from_keeper())
        self.wake_read = signals.wake_on(_signal.SIGCHLD)
        self._watch(self.wake_read, self._child_signal)
        idle_since = time.monotonic()
        while True:
            timeout = self._next_timeout(idle_since)
            for fd, _ in self.poller.poll(timeout):
                self._guard("handling an event", self._dispatch, fd)
            if self.child_exited:
                self._guard("reaping", self._reap_children)
            if time.monotonic() >= self.timers_due:
                self._guard("running timers", self._run_timers)
            if self.to_prepare:
                self._guard("starting a container", self._prepare_next)
            if self.containers or self.pending or self.jobs:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= _IDLE_EXIT_SECONDS and self._close_if_idle():
                return 0

    def _open_engine(self) -> None:
        _preload()
        from tsubo.engine.core import EngineCore

        self.engine = EngineCore(paths=self.paths)
        self.engine.reconcile = lambda: self.reconcile(False)
        self.db = self.engine.db
        self.runtime = self.engine.runtime

    def _guard(self, what: str, action: Callable[..., object], *args: Any) -> None:
        """The error boundary around every event: a bug is logged, never the end of us."""
        try:
            action(*args)
        except Exception as error:
            record_crash(self.paths, error, what)

    def _listen(self) -> None:
        import _socket

        path = f"{self.paths.run}/{SOCKET_NAME}"
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
        self._watch(self.listener, lambda _: self._accept())

    def _next_timeout(self, idle_since: float) -> int:
        import time

        now = time.monotonic()
        deadlines = [self.firewall_check_at] if self.firewall_check_at else []
        for supervised in list(self.timed):  # this runs every turn
            if self.containers.get(supervised.id) is not supervised:
                self.timed.discard(supervised)
                continue
            timed = False
            if supervised.restart_at:
                deadlines.append(supervised.restart_at)
                timed = True
            if supervised.exit_code is not None:
                if supervised.streams:
                    deadlines.append(supervised.exited_at + _DRAIN_SECONDS)
                    timed = True
            elif supervised.health is not None:
                timed = True
                if not supervised.health.probing:
                    deadlines.append(supervised.health.next_at)
            if not timed:  # added again when it gets a deadline
                self.timed.discard(supervised)
        if not self.containers and not self.pending and not self.jobs:
            deadlines.append(idle_since + _IDLE_EXIT_SECONDS)
        self.timers_due = min(deadlines, default=float("inf"))
        if self.to_prepare:
            return 0  # a start waits its turn: look at the other events, then take it
        if not deadlines:
            return -1
        return max(0, int((self.timers_due - now) * 1000) + 1)

    def _close_if_idle(self) -> bool:
        """Exit only while holding the start lock, with no connection waiting."""
        import fcntl
        import select

        from tsubo.engine.keeper import LOCK_NAME

        lock = os.open(f"{self.paths.run}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            waiting = select.poll()
            waiting.register(self.listener, select.POLLIN)
            if waiting.poll(0):
                return False
            try:
                os.unlink(f"{self.paths.run}/{SOCKET_NAME}")
            except FileNotFoundError:
                pass  # removed by hand: ours to close all the same
            self.listener_sock.close()  # type: ignore[attr-defined]
            self.db.close()
            if self.keeper is not None:
                from tsubo.engine import keeper

                keeper.send(self.keeper, [keeper.BYE])  # it leaves with us
            return True
        finally:
            os.close(lock)

    def _watch(self, fd: int, handler: Callable[[int], object]) -> None:
        """Poll *fd*; *handler(fd)* serves it (the engine's own fds: signals, listeners,
        the keeper, DNS, the firewall watch, finished starts)."""
        self.handlers[fd] = handler
        self.poller.register(fd, 1)

    def _unwatch(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        self.poller.unregister(fd)

    def _dispatch(self, fd: int) -> None:
        handler = self.handlers.get(fd)
        if handler is not None:
            handler(fd)
        elif fd in self.pending:
            self._pending_input(fd)
        elif fd in self.pidfds:
            self._adopted_exited(self.pidfds[fd], None)
        elif fd in self.waiting:
            if not _read(fd):  # a waiter says nothing: this is its going away
                self._drop_waiter(self.waiting[fd], fd)
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
                record_crash(self.paths, error, f"serving container {supervised.id}")

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
            if kind == attach.WAIT:
                self._add_waiter(payload.decode(), fd)
                return
            if kind == attach.ATTACH:
                self._attach_client(payload.decode(), fd, self.pending.pop(fd))
                return
            if kind == attach.RECONCILE:
                self.reconcile(False)
                _send_quietly(fd, attach.encode(attach.RECONCILED))
                self._forget(fd)
                return

    def _attach_client(self, container_id: str, fd: int, reader: attach.FrameReader) -> None:
        """``attach``: one more client of a running container (its output from now on,
        its stdin, signals and window size), told "started" at once."""
        from tsubo.errors import WrongState

        supervised = self.containers.get(container_id)
        if supervised is None or supervised.exit_code is not None or not supervised.pid:
            _send_quietly(fd, attach.error_frame(WrongState(
                "attach to container", container_id[:12],
                detail="you cannot attach to a stopped container, start it first")))
            self._forget(fd)
            return
        supervised.clients.append(fd)
        self.by_fd[fd] = supervised
        self.readers[fd] = reader
        _send_quietly(fd, attach.encode(attach.STARTED,
                                        f"{supervised.pid} {supervised.id}".encode()))

    def _create_and_start(self, payload: bytes, client_fd: int,
                          reader: attach.FrameReader) -> None:
        """``run``: the client sent its options; a worker creates the container (this
        process has SQLite and the engine code loaded already) and starts it."""
        from tsubo import jsonwire
        from tsubo.engine.options import RunOptions
        from tsubo.errors import TsuboError

        try:
            request = jsonwire.loads(payload)
            if not isinstance(request, dict):
                raise TsuboError("create container", "", detail="malformed request")
            options = RunOptions.from_json(request["options"])
        except TsuboError as error:
            _send_quietly(client_fd, attach.error_frame(error))
            self._forget(client_fd)
            return
        name = request.get("name")
        self._submit(_StartJob(client_fd, reader, "", options, name if isinstance(name, str)
                               else None))

    def _forget(self, fd: int) -> None:
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass
        self.pending.pop(fd, None)
        self.by_fd.pop(fd, None)
        self.readers.pop(fd, None)
        os.close(fd)

    def _add_waiter(self, container_id: str, fd: int) -> None:
        """A ``wait``/``stop`` client: answered when the container is done here."""
        self.pending.pop(fd, None)
        supervised = self.containers.get(container_id)
        if supervised is None:
            _send_quietly(fd, attach.encode(attach.EXITED, b"-"))
            self._forget(fd)
            return
        supervised.waiters.append(fd)
        self.waiting[fd] = supervised

    def _drop_waiter(self, supervised: Supervised, fd: int) -> None:
        if fd in supervised.waiters:
            supervised.waiters.remove(fd)
        self.waiting.pop(fd, None)
        self._forget(fd)

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
            record_crash(self.paths, error, f"serving names on {gateway}:53")
            return
        sock.setblocking(False)
        self.dns[sock.fileno()] = (sock, network_id)
        self._watch(sock.fileno(), self._dns_query)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((gateway, 53))
            listener.listen(16)
        except OSError as error:
            listener.close()
            record_crash(self.paths, error, f"serving names over TCP on {gateway}:53")
            return
        listener.setblocking(False)
        self.dns_tcp[listener.fileno()] = (listener, network_id)
        self._watch(listener.fileno(), self._dns_accept)

    def _dns_query(self, fd: int) -> None:
        sock, network_id = self.dns[fd]
        try:
            packet, client = sock.recvfrom(4096)
        except OSError:
            return
        # an error here (the network gone, say) ends in the event guard: nothing is sent
        decision, upstreams = self._dns_decide(packet, network_id, client[0])
        if decision.reply:
            _send_datagram(sock, decision.reply, client)
        elif decision.relay:
            self._relay_upstream(packet, sock, client, upstreams)

    def _dns_decide(self, packet: bytes, network_id: str,
                    client_address: str) -> tuple[dns.Decision, list[str]]:
        """What to do with a query from *client_address* on *network_id*, and the asking
        container's own upstreams (its ``--dns``; empty: the engine's)."""
        from tsubo.network import dns
        from tsubo.network.store import NetworkStore

        store = NetworkStore(self.db)
        decision = dns.decide(packet, internal=store.get_network(network_id).internal,
                              lookup=lambda name: store.resolve_name(network_id, name),
                              engine_name=store.container_name_taken,
                              lookup6=lambda name: store.resolve_name(network_id, name,
                                                                      ipv6=True))
        return decision, store.upstreams_of(network_id, client_address) if decision.relay \
            else []

    # DNS over TCP (RFC 7766), for answers that do not fit a datagram: a resolver that got
    # a truncated answer asks again over TCP. Each message is preceded by its length (two
    # bytes). Our own answers are written at once (small); a relayed query goes to the
    # upstream over TCP in a thread of its own (blocking, bounded by a timeout), which
    # owns the client's connection from then on. One query per connection.

    def _dns_accept(self, fd: int) -> None:
        listener, network_id = self.dns_tcp[fd]
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        if len(self.dns_conns) + self.dns_relaying[0] >= _DNS_TCP_CONNECTIONS:
            conn.close()  # a flood: the oldest keep their turn
            return
        conn.setblocking(False)
        self.dns_conns[conn.fileno()] = (conn, network_id, bytearray())
        self._watch(conn.fileno(), self._dns_stream)

    def _dns_stream(self, fd: int) -> None:
        conn, network_id, buffer = self.dns_conns[fd]
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buffer += data
        size = int.from_bytes(buffer[:2], "big") if len(buffer) >= 2 else -1
        if data and (size < 0 or len(buffer) < 2 + size):
            return  # more to come
        self._unwatch(fd)
        del self.dns_conns[fd]
        if not data and (size < 0 or len(buffer) < 2 + size):
            conn.close()  # gone before its query was complete
            return
        packet = bytes(buffer[2:2 + size])
        try:
            decision, upstreams = self._dns_decide(packet, network_id, conn.getpeername()[0])
        except BaseException:
            conn.close()
            raise
        if decision.reply:
            _send_quietly_stream(conn, decision.reply)
            conn.close()
        elif decision.relay:
            from tsubo.network.ipam import dns_upstreams

            servers = [server for server in upstreams or dns_upstreams() if ":" not in server]
            self.dns_relaying[0] += 1
            _thread.start_new_thread(_relay_tcp, (conn, packet, servers, self.dns_relaying))
        else:
            conn.close()

    def _relay_upstream(self, packet: bytes, sock: Any, client: Any,
                        own: list[str]) -> None:
        """A name that is not a container's: ask the upstream nameserver (the asking
        container's ``--dns``, *own*; else the host's, unless the engine setting
        ``$TSUBO_DNS_UPSTREAM`` names others)."""
        import socket

        from tsubo.network.ipam import dns_upstreams

        servers = [server for server in own or dns_upstreams() if ":" not in server]
        if not servers:
            return
        if self.upstream is None:
            self.upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.upstream.setblocking(False)
            self._watch(self.upstream.fileno(), lambda _: self._dns_reply())
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
        """``start``: a worker mounts and starts the container."""
        from tsubo.engine.options import RunOptions
        from tsubo.errors import NotFound

        try:
            row = self.db.get_container(container_id)
        except NotFound as error:
            _send_quietly(client_fd, attach.error_frame(error))
            self._forget(client_fd)
            return
        options = self.containers[container_id].options if container_id in self.containers \
            else RunOptions.from_json_text(row.options)
        self._submit(_StartJob(client_fd, reader, container_id, options, None))

    # --- starting, off the loop -----------------------------------------------------------------
    #
    # Creating a container's row, mounting its root and attaching it to its networks stay on
    # the loop (one SQLite connection, used by one thread: a few milliseconds). The runtime's
    # fork chain (tens of milliseconds, mostly waiting on its children) runs in a worker
    # thread, so the loop keeps relaying every other container's output meanwhile. A worker
    # touches no monitor state and no database: what it started comes back to the loop
    # through a wake-up pipe, and the loop registers it.

    def _submit(self, job: _StartJob) -> None:
        """Start *job*: prepared on the loop, one per turn of it (``_prepare_next``), so the
        output of running containers is relayed between two starts; the loop hears of the
        outcome through ``done_read``, never at once (the caller may be walking the
        containers)."""
        self._ensure_done_pipe()
        self.jobs += 1
        if job.container_id:
            self.starting.add(job.container_id)
        self.to_prepare.append(job)

    def _prepare_next(self) -> None:
        job = self.to_prepare.popleft()
        self._prepare(job)
        if job.error is not None:
            self._job_done(job)
            return
        self.starting.add(job.container_id)
        self.queued.append(job)
        self._spawn_queued()

    def _spawn_queued(self) -> None:
        """Up to ``_START_WORKERS`` threads at a time, each for one start (``_thread``, not a
        pool: concurrent.futures costs the monitor 2.5 MB of memory). While one runs, the
        loop gets the interpreter back within 1 ms instead of the default 5 (the workers'
        Python would otherwise hold it for a switch interval at a time)."""
        import _thread
        import sys

        sys.setswitchinterval(_SWITCH_INTERVAL)

        while self.queued and self.workers < _START_WORKERS:
            self.workers += 1
            _thread.start_new_thread(self._spawn, (self.queued.popleft(),))

    def _ensure_done_pipe(self) -> None:
        """The pipe through which worker threads wake the loop (made on first use)."""
        if self.done_read < 0:
            self.done_read, self.done_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._watch(self.done_read, lambda _: self._finish_jobs())

    # --- health checks (engine/health.py): each probe runs in a thread of its own, as a
    # start's runtime work does; while one runs, ``jobs`` keeps the loop from reaping any
    # child but our inits

    def _probe(self, supervised: Supervised) -> None:
        assert supervised.health is not None
        supervised.health.probing = True
        self._ensure_done_pipe()
        self.jobs += 1
        _thread.start_new_thread(self._run_probe, (supervised.id, supervised.health.config))

    def _run_probe(self, container_id: str, config: dict[str, Any]) -> None:
        """In a worker: one probe; the result goes to the loop."""
        from tsubo.engine.health import ProbeResult, probe
        from tsubo.state.clock import now_rfc3339

        try:
            result = probe(self.runtime, container_id, config)
        except Exception as error:
            stamp = now_rfc3339()
            result = ProbeResult(stamp, stamp, -1, f"health check failed: {error}")
        self.probes_done.append((container_id, result))
        try:
            os.write(self.done_write, b"x")
        except OSError:
            pass

    def _probed(self, container_id: str, result: ProbeResult) -> None:
        """On the loop: a probe's result changes the container's health."""
        supervised = self.containers.get(container_id)
        if supervised is None or supervised.health is None or supervised.exit_code is not None:
            return
        health = supervised.health
        health.probing = False
        if health.record(result):
            self.engine.event(container_id, f"health_status: {health.status}")
        health.save()

    def _start_health(self, supervised: Supervised) -> None:
        """A container just started: its health is "starting" (a new state each run)."""
        from tsubo.engine.health import HealthState, health_path

        config = supervised.options.healthcheck
        supervised.health = None
        if config and (config.get("Test") or ["NONE"])[0] != "NONE":
            supervised.health = HealthState(config, health_path(self.paths, supervised.id))
            self.timed.add(supervised)
            supervised.health.save()

    def _spawn(self, job: _StartJob) -> None:
        """In a worker: the runtime's create + start; the outcome is left on *job*."""
        from tsubo.engine.storage import ContainerFiles

        try:
            files = ContainerFiles(self.paths.container_dir(job.container_id))
            publishing = _Publishing(job.publication) if job.publication else None
            try:  # its nft transaction runs while the runtime starts the container
                job.started = _spawn_container(self.runtime, self.paths, job.container_id,
                                               job.options, files.bundle, self._mount_base())
            finally:
                published = publishing.wait() if publishing else None
            if published is not None:  # started, but its ports are not: take it down
                _unspawn(self.runtime, job.container_id, job.started)
                job.started = None
                raise published
        except Exception as error:
            job.error = error
        finally:
            job.spawned = True
            self._job_done(job)

    def _mount_base(self) -> int:
        """(in a worker) The mount namespace new containers are copied from, made at the
        first start (``kernel.mounts.make_mount_base``): without the engine's own mounts,
        the containers' roots and netns pins. -1 when it could not be made: containers are
        then copied from ours, as the runtime does by default."""
        with self.mount_base_lock:
            if self.mount_base is None:
                from tsubo.kernel.iproute import NETNS_DIR
                from tsubo.kernel.mounts import make_mount_base

                try:
                    self.mount_base = make_mount_base([self.paths.data, NETNS_DIR])
                except Exception as error:
                    record_crash(self.paths, error, "making the mount namespace base")
                    self.mount_base = -1
            return self.mount_base

    def _job_done(self, job: _StartJob) -> None:
        """Hand a finished start to the loop (from any thread)."""
        self.done.append(job)
        try:
            os.write(self.done_write, b"x")
        except OSError:
            pass  # the pipe is full: the loop has wake-ups enough

    def _prepare(self, job: _StartJob) -> None:
        """On the loop: create the container (``run``), mount it and attach it to its
        networks; an error is left on *job*."""
        from tsubo.engine.storage import ContainerFiles
        from tsubo.image.snapshots import mount_root

        fresh = not job.container_id  # `run`: create's check just asked about the ports
        try:
            if not job.container_id:
                # born "starting" and ours: if we die half-way, our successor knows it for
                # a failed start (and removes it, for --rm)
                job.row = self.engine.create(job.options, name=job.name, owner=self.me)
                job.container_id = job.row.id
            else:
                job.row = self.db.get_container(job.container_id)
                self.engine.rejoin_namespaces(job.container_id, job.options)
            self.db.update_container(job.container_id, monitor_pid=self.me[0],
                                     monitor_start_time=self.me[1])
            files = ContainerFiles(self.paths.container_dir(job.container_id))
            mount_root(files, [job.row.rootfs], volatile=job.options.remove)
            if job.options.network == "bridge":
                from tsubo.engine.networks import NetworkManager

                manager = NetworkManager(self.engine)
                endpoints = manager.attach(
                    job.container_id, job.row.name, job.options.networks,
                    requested_ip=job.options.ip, mac_address=job.options.mac_address,
                    requested_ip6=job.options.ip6)
                job.network_ids = [endpoint.network_id for endpoint in endpoints]
                if job.options.publish:  # undone with the attach if anything fails
                    job.publication = manager.claim_ports(job.container_id, job.row.name,
                                                          job.options.publish, probed=fresh)
        except Exception as error:
            job.error = error

    def _finish_jobs(self) -> None:
        """The loop's half of each finished start: register the container or its error."""
        from tsubo.kernel.signals import drain

        drain(self.done_read)
        while self.probes_done:
            container_id, result = self.probes_done.popleft()
            self.jobs -= 1
            self._guard(f"recording a health check of {container_id}", self._probed,
                        container_id, result)
        while self.done:
            job = self.done.popleft()
            self.jobs -= 1
            if job.spawned:
                self.workers -= 1
            self.starting.discard(job.container_id)
            self._guard(f"starting container {job.container_id or '(new)'}",
                        self._started, job)
        self._spawn_queued()
        self._reap_children()  # an init that exited before we knew its pid

    def _started(self, job: _StartJob) -> None:
        from tsubo.errors import TsuboError

        if job.error is not None and job.row is None:  # `run`: nothing was created
            error = job.error if isinstance(job.error, TsuboError) else \
                TsuboError("create container", "", detail=str(job.error))
            if not isinstance(job.error, TsuboError):
                record_crash(self.paths, job.error, "creating a container")
            if job.client_fd >= 0:
                _send_quietly(job.client_fd, attach.error_frame(error))
                self._forget(job.client_fd)
            return
        supervised = self.containers.get(job.container_id)
        if supervised is None:
            supervised = Supervised(job.container_id, job.options)
            self.containers[job.container_id] = supervised
        if job.client_fd >= 0:
            supervised.clients.append(job.client_fd)
            self.by_fd[job.client_fd] = supervised
            self.readers[job.client_fd] = job.reader
            self.poller.register(job.client_fd, 1)
        if job.error is not None:
            if job.network_ids:  # attached, then the runtime failed
                self._detach(supervised)
            error = job.error if isinstance(job.error, TsuboError) else \
                TsuboError("start container", job.container_id, detail=str(job.error))
            if not isinstance(job.error, TsuboError):
                record_crash(self.paths, job.error, f"starting container {job.container_id}")
            self._start_failed(supervised, error)
            return
        assert job.started is not None and job.row is not None
        for network_id in job.network_ids:
            self._serve_dns(network_id)
        if job.network_ids:
            self._guard("watching the firewall", self._firewall_watch)
        self._register(supervised, job.row, job.started)

    def _register(self, supervised: Supervised, row: ContainerRow, started: _Started) -> None:
        """A container the runtime has started: its streams, its log, its row."""
        from tsubo.engine.logs import LogWriter
        from tsubo.engine.storage import ContainerFiles
        from tsubo.errors import NotFound, TsuboError
        from tsubo.state.clock import now_rfc3339

        supervised.pid = started.pid
        supervised.exit_code = None
        supervised.exit_error = ""
        supervised.stdin_write = started.stdin_write
        supervised.console_master = started.console_master
        supervised.streams = {started.out_read: ("stdout", attach.STDOUT)}
        if started.err_read >= 0:
            supervised.streams[started.err_read] = ("stderr", attach.STDERR)
        for fd in supervised.streams:
            self.by_fd[fd] = supervised
            self.poller.register(fd, 1)
        self.by_pid[started.pid] = supervised
        self._keep(supervised)
        if supervised.options.log_driver != "none":  # --log-driver none: no log kept
            supervised.log = LogWriter(ContainerFiles(
                self.paths.container_dir(supervised.id)).log)
        try:
            self.db.update_container(supervised.id, state=status.RUNNING, pid=started.pid,
                                     started_at=now_rfc3339(), exit_code=None,
                                     finished_at=None, oom_killed=0, error="")
        except NotFound:
            # removed while we started it (rm -f raced us): it must not outlive its row;
            # its exit is then handled as any other (and finds no row to update)
            self.runtime.kill(supervised.id, 9)
            self._broadcast(supervised, attach.error_frame(TsuboError(
                "start container", row.name, detail="the container was removed meanwhile")))
            return
        self.engine.event(supervised.id, "start", name=row.name)
        self._guard(f"starting the health checks of {supervised.id}", self._start_health,
                    supervised)
        self._broadcast(supervised, attach.encode(attach.STARTED,
                                                  f"{started.pid} {supervised.id}".encode()))

    def _keep(self, supervised: Supervised) -> None:
        """Tell the keeper what to hold for this container (replacing what it held)."""
        if self.keeper is not None:
            from tsubo.engine import keeper

            names, fds = supervised.stdio_fds()
            keeper.send(self.keeper, [keeper.KEEP, supervised.id, str(supervised.pid),
                                      keeper.names_field(names)], fds)

    def _start_failed(self, supervised: Supervised, error: TsuboError) -> None:
        from tsubo.state.clock import now_rfc3339

        # Docker's: 127 the command was not found, 126 it could not be executed, 125 any
        # other failure to start (the CLI exits with the same status)
        code = 125
        if error.operation == "exec" and error.errno == 2:
            code = 127
        elif error.operation == "exec" and error.errno in (8, 13, 21):
            code = 126
        self._update(supervised.id, state=status.EXITED, exit_code=code, pid=0,
                     finished_at=now_rfc3339(), error=error.message())
        self._broadcast(supervised, attach.error_frame(error))
        self._finish(supervised)

    def _update(self, container_id: str, **fields: Any) -> bool:
        """Update a container's row; False when it was removed meanwhile (``rm -f``)."""
        from tsubo.errors import NotFound

        try:
            self.db.update_container(container_id, **fields)
        except NotFound:
            return False
        return True

    # --- running ------------------------------------------------------------------------------

    def _stream_output(self, supervised: Supervised, fd: int) -> None:
        """A container's output: logged and sent to its clients, and only then taken from
        the pipe (docs/engine.md, the keeper: a monitor killed meanwhile loses none)."""
        data, copied = self._copy_output(fd)
        if data is None:
            return
        if not data:
            self._close_stream(supervised, fd)
            return
        name, kind = supervised.streams[fd]
        try:
            if supervised.log is not None:
                supervised.log.write(name, data)
            self._broadcast(supervised, attach.encode(kind, data))
        finally:
            if copied:
                _read(fd, len(data))

    def _copy_output(self, fd: int) -> tuple[bytes | None, bool]:
        """(what the pipe *fd* holds, copied and left there: True), b"" at its end, None
        when it holds nothing after all; from a terminal (not a pipe) what a read takes."""
        if self.output_copy[0] < 0:
            self.output_copy = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            count = syscalls.tee(fd, self.output_copy[1], _READ_SIZE, SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return None, False
        except OSError as error:
            if error.errno != errno.EINVAL:  # EINVAL: a terminal, not a pipe
                raise
            return _read(fd), False
        if not count:
            return b"", False
        return os.read(self.output_copy[0], count), True

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
                self._close_stdin(supervised)
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

    def _child_signal(self, fd: int) -> None:
        from tsubo.kernel.signals import drain

        drain(fd)
        self.child_exited = True

    def _reap_children(self) -> None:
        """Reap the inits that exited. While a worker is starting a container, only our
        known inits are reaped: a wait for any child could take the runtime's own
        intermediate process from under the worker."""
        import time

        from tsubo.kernel.procfs import reap_children

        self.child_exited = False
        for pid, wait_status in (reap_children() if not self.jobs
                                 else _reap_known(self.by_pid)):
            supervised = self.by_pid.pop(pid, None)
            if supervised is None:
                continue  # an intermediate or hook process of the runtime
            code = os.waitstatus_to_exitcode(wait_status)
            supervised.exit_code = 128 - code if code < 0 else code
            supervised.exited_at = time.monotonic()
            self.timed.add(supervised)
            if not supervised.streams:
                self._exited(supervised)

    def _exited(self, supervised: Supervised) -> None:
        """The init is gone and its output drained: record, clean, restart or finish."""
        try:
            self._record_exit(supervised)
        except Exception as error:
            record_crash(self.paths, error, f"recording the exit of {supervised.id}")
            self._finish(supervised)

    def _record_exit(self, supervised: Supervised) -> None:
        import time

        from tsubo.engine.options import RunOptions
        from tsubo.errors import NotFound
        from tsubo.state.clock import now_rfc3339

        code = supervised.exit_code if supervised.exit_code is not None else 255
        try:
            oom = bool(self.runtime.state(supervised.id).get("oomKilled"))
        except Exception:
            oom = False
        try:
            self.runtime.delete(supervised.id, force=True)
        except NotFound:
            pass
        except Exception as error:
            record_crash(self.paths, error, f"deleting runtime container {supervised.id}")
        if supervised.log is not None:
            supervised.log.close()
            supervised.log = None
        self._close_stdin(supervised)
        self._forget_pidfd(supervised)
        self._detach(supervised)
        self._update(supervised.id, state=status.EXITED, exit_code=code, pid=0,
                     finished_at=now_rfc3339(), oom_killed=int(oom),
                     error=supervised.exit_error)
        if oom:
            self.engine.event(supervised.id, "oom")
        self.engine.event(supervised.id, "die", exitCode=str(code))
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
        # the row's options: `update --restart` may have changed the policy since the start
        supervised.options = RunOptions.from_json_text(row.options)
        if _should_restart(supervised.options, row, code) and \
                self.db.transition_container(supervised.id, (status.EXITED,),
                                             state=status.RESTARTING,
                                             restart_count=row.restart_count + 1):
            supervised.restart_at = time.monotonic() + supervised.restart_delay
            self.timed.add(supervised)
            supervised.restart_delay = min(supervised.restart_delay * 2, _RESTART_DELAY_MAX)
            return
        self._finish(supervised)

    def _run_timers(self) -> None:
        import time

        now = time.monotonic()
        for supervised in list(self.timed):
            if self.containers.get(supervised.id) is not supervised:
                continue
            if supervised.exit_code is not None and supervised.streams and \
                    now >= supervised.exited_at + _DRAIN_SECONDS:
                # Exited, but something else still holds its output pipes: stop waiting.
                for fd in list(supervised.streams):
                    self._close_stream(supervised, fd)
            health = supervised.health
            if health is not None and not health.probing and supervised.exit_code is None \
                    and now >= health.next_at:
                self._guard(f"health check of {supervised.id}", self._probe, supervised)
            if supervised.restart_at and now >= supervised.restart_at:
                supervised.restart_at = 0.0
                self._guard(f"restarting container {supervised.id}", self._restart,
                            supervised)
        if self.firewall_check_at and now >= self.firewall_check_at:
            self.firewall_check_at = 0.0
            self._guard("restoring the firewall", self._firewall_repair)

    def _restart(self, supervised: Supervised) -> None:
        from tsubo.errors import NotFound

        try:
            row = self.db.get_container(supervised.id)
        except NotFound:
            self._finish(supervised)
            return
        if row.stopped_by_user or not self.db.transition_container(
                supervised.id, (status.RESTARTING,), state=status.STARTING):
            self.db.transition_container(supervised.id, (status.RESTARTING,),
                                         state=status.EXITED)
            self._finish(supervised)  # stopped, or being removed (rm -f claimed it)
            return
        self._submit(_StartJob(-1, attach.FrameReader(), supervised.id, supervised.options,
                               None))

    def _detach(self, supervised: Supervised) -> None:
        """Off its networks: netns pin (and with it the veths), leases, endpoints."""
        if supervised.options.network != "bridge":
            return
        from tsubo.engine.teardown import detach_networks

        try:
            detach_networks(self.paths, self.db, supervised.id)
        except Exception as error:
            record_crash(self.paths, error, f"detaching container {supervised.id}")

    def _close_stdin(self, supervised: Supervised) -> None:
        if supervised.stdin_write >= 0:
            os.close(supervised.stdin_write)
            supervised.stdin_write = -1
            self._keep(supervised)  # the keeper's copy would keep the container's stdin open

    def _finish(self, supervised: Supervised) -> None:
        """The container is done here: unmount its root, remove it for --rm, let go."""
        from tsubo.image.snapshots import unmount_root

        self.containers.pop(supervised.id, None)
        if self.firewall_watch is not None and not any(
                other.options.network == "bridge" for other in self.containers.values()):
            self._firewall_unwatch()
        for fd in list(supervised.streams):
            self._close_stream(supervised, fd)
        self._close_stdin(supervised)
        self._forget_pidfd(supervised)
        if self.by_pid.get(supervised.pid) is supervised:
            del self.by_pid[supervised.pid]
        if self.keeper is not None:
            from tsubo.engine import keeper

            keeper.send(self.keeper, [keeper.DROP, supervised.id])
        try:
            unmount_root(f"{self.paths.container_dir(supervised.id)}/merged")
            if supervised.options.remove:
                from tsubo.engine.teardown import remove_container_files

                remove_container_files(self.paths, self.db, supervised.id)
        except Exception as error:
            record_crash(self.paths, error, f"cleaning up container {supervised.id}")
        if supervised.exit_frame:
            self._broadcast(supervised, supervised.exit_frame)
        for fd in list(supervised.clients):
            self._drop_client(supervised, fd)
        done = attach.encode(attach.EXITED, str(supervised.exit_code
                                                if supervised.exit_code is not None else 255
                                                ).encode())
        for fd in list(supervised.waiters):
            _send_quietly(fd, done)
            self._drop_waiter(supervised, fd)

    # --- the firewall that heals itself -------------------------------------------------------
    #
    # While a container on a bridge network runs, every nftables change in our network
    # namespace (anyone's: nft, iptables-nft, firewalld, ufw) wakes us; a moment later (a
    # tool's changes come in bursts) we look at what of tsubo's firewall is missing and
    # restore it in one transaction. Our own restoring wakes us too, and then finds nothing
    # missing. If something keeps undoing it, we back off (doubling, up to a minute) and say
    # so in monitor.log once per back-off, rather than fight.

    def _firewall_watch(self) -> None:
        if self.firewall_watch is None:
            from tsubo.kernel.nftwatch import RulesetWatch

            self.firewall_watch = RulesetWatch()
            self._watch(self.firewall_watch.fd, lambda _: self._firewall_changed())

    def _firewall_unwatch(self) -> None:
        if self.firewall_watch is not None:
            self._unwatch(self.firewall_watch.fd)
            self.firewall_watch.close()
            self.firewall_watch = None
            self.firewall_check_at = 0.0

    def _firewall_changed(self) -> None:
        import time

        assert self.firewall_watch is not None
        watch = self.firewall_watch
        watch.drain()
        # who committed what, for the look: our own port publishing needs none
        self.firewall_committers += watch.committed or [0]
        self.firewall_unknown = self.firewall_unknown or watch.lost
        watch.committed, watch.lost = [], False
        if not self.firewall_check_at:
            self.firewall_check_at = time.monotonic() + _FIREWALL_SETTLE_SECONDS \
                + self.firewall_backoff

    def _firewall_repair(self) -> None:
        import time

        from tsubo.engine.background import record_event
        from tsubo.engine.networks import NetworkManager
        from tsubo.kernel.nftables import committed_here

        committers, self.firewall_committers = self.firewall_committers, []
        unknown, self.firewall_unknown = self.firewall_unknown, False
        if not unknown and all(pid and pid in committed_here for pid in committers):
            # only our own transactions since the last look: nothing to check
            return
        missing = NetworkManager(self.engine).repair()
        now = time.monotonic()
        if not missing:
            if self.firewall_repairs and now - self.firewall_repairs[-1] > _FIREWALL_WINDOW:
                self.firewall_repairs.clear()
                self.firewall_backoff = 0.0
            return
        self.firewall_repairs = [t for t in self.firewall_repairs
                                 if now - t <= _FIREWALL_WINDOW] + [now]
        record_event(self.paths, "firewall restored: " + "; ".join(missing))
        if len(self.firewall_repairs) >= _FIREWALL_REPAIRS_BEFORE_BACKOFF:
            self.firewall_backoff = min(max(self.firewall_backoff * 2, 1.0),
                                        _FIREWALL_BACKOFF_MAX)
            record_event(self.paths, f"the firewall keeps changing: restored "
                         f"{len(self.firewall_repairs)} times in {_FIREWALL_WINDOW:.0f} s; "
                         f"next look {self.firewall_backoff:.0f} s after a change")

    # --- adopting: containers whose monitor died ----------------------------------------------

    def _from_keeper(self) -> None:
        """Exit statuses of adopted containers, which the keeper reaps."""
        from tsubo.engine import keeper

        while True:
            try:
                message = keeper.receive(self.keeper)
            except BlockingIOError:
                return
            except OSError:
                message = None
            if message is None:  # the keeper is gone: we go on without one
                self._unwatch(self.keeper.fileno())
                self.keeper.close()
                self.keeper = None
                return
            words, fds = message
            for fd in fds:
                os.close(fd)
            if len(words) == 3 and words[0] == keeper.EXIT:
                supervised = self.containers.get(words[1])
                if supervised is not None:
                    self._adopted_exited(supervised, int(words[2]))

    def _adopt_kept(self) -> None:
        """Take over what the keeper held for our dead predecessor: its ADOPT messages
        wait in our socket, up to ADOPTED (read blocking: nothing else runs yet)."""
        from tsubo.engine import keeper

        if self.keeper is None:
            return
        while True:
            message = keeper.receive(self.keeper)
            if message is None or message[0] == [keeper.ADOPTED]:
                return
            words, fds = message
            if len(words) != 5 or words[0] != keeper.ADOPT:
                for fd in fds:
                    os.close(fd)
                continue
            _, container_id, pid, wait_status, names = words
            self._guard(f"adopting container {container_id}", self._adopt, container_id,
                        int(pid), None if wait_status == "-" else int(wait_status),
                        dict(zip(keeper.parse_names(names),
                                 map(above_select_range, fds), strict=False)))

    def _adopt(self, container_id: str, pid: int, wait_status: int | None,
               fds: dict[str, int]) -> None:
        """Supervise a running (or just exited) container started by a dead monitor, with
        the stdio fds the keeper kept for it."""
        from tsubo.engine.logs import LogWriter
        from tsubo.engine.options import RunOptions
        from tsubo.engine.storage import ContainerFiles
        from tsubo.errors import NotFound

        try:
            row = self.db.get_container(container_id)
        except NotFound:
            for fd in fds.values():
                os.close(fd)
            return
        supervised = Supervised(container_id, RunOptions.from_json_text(row.options))
        self.containers[container_id] = supervised
        supervised.pid = pid
        if supervised.options.network == "bridge":
            from tsubo.engine.networks import NetworkManager

            for endpoint, _ in NetworkManager(self.engine).networks_of(container_id):
                self._guard("serving DNS", self._serve_dns, endpoint.network_id)
            self._guard("watching the firewall", self._firewall_watch)
        for name, kind in (("stdout", attach.STDOUT), ("stderr", attach.STDERR),
                           ("console", attach.STDOUT)):
            if name in fds:
                fd = fds[name]
                supervised.streams[fd] = ("stdout" if name == "console" else name, kind)
                self.by_fd[fd] = supervised
                self.poller.register(fd, 1)
        supervised.console_master = fds.get("console", -1)
        supervised.stdin_write = fds.get("stdin", -1)
        if supervised.options.log_driver != "none":
            supervised.log = LogWriter(ContainerFiles(self.paths.container_dir(container_id)).log)
        self._update(container_id, monitor_pid=self.me[0], monitor_start_time=self.me[1])
        # no KEEP back: the keeper holds these fds already (it sent them). Telling it while
        # it still sends ADOPTs deadlocked both once the socket's buffers were full (a few
        # hundred containers): each blocked in sendmsg, waiting for the other to read.
        if not pid or row.state not in (status.RUNNING, status.PAUSED):
            self._adopt_row(supervised, row)
        elif wait_status is not None:
            self._adopted_exited(supervised, wait_status)
        else:  # probed again from "starting", as Docker's after a daemon restart
            self._guard(f"starting the health checks of {container_id}", self._start_health,
                        supervised)

    def _adopted_exited(self, supervised: Supervised, wait_status: int | None) -> None:
        """An adopted container's init ended: *wait_status* as the keeper reaped it, or None
        when nobody could (its exit code is then unknown, and said so)."""
        import time

        if supervised.exit_code is not None:
            return
        if wait_status is None:
            supervised.exit_code = 255
            supervised.exit_error = UNKNOWN_EXIT
        else:
            code = os.waitstatus_to_exitcode(wait_status)
            supervised.exit_code = 128 - code if code < 0 else code
        supervised.exited_at = time.monotonic()
        self.timed.add(supervised)
        self._forget_pidfd(supervised)
        if self.by_pid.get(supervised.pid) is supervised:
            del self.by_pid[supervised.pid]
        if not supervised.streams:
            self._exited(supervised)

    def _forget_pidfd(self, supervised: Supervised) -> None:
        if supervised.pidfd >= 0:
            self.poller.unregister(supervised.pidfd)
            self.pidfds.pop(supervised.pidfd, None)
            os.close(supervised.pidfd)
            supervised.pidfd = -1

    def reconcile(self, at_startup: bool) -> None:
        """Adopt every container whose row says a monitor owns it but whose monitor is
        dead (and that the keeper did not hand us): a running one is watched through a
        pidfd (its output pipes died with its monitor, and its exit code will be unknown);
        one that ended unseen is recorded as exited, exit status unknown; a failed start
        (a monitor that died creating or starting it) is recorded as such, or removed for
        ``--rm``; a restarting one is restarted. At startup, no "starting" row is ours."""
        from tsubo.engine.options import RunOptions
        from tsubo.kernel.procfs import is_alive

        for row in self.db.list_containers(True):
            if row.state not in status.MONITORED or row.id in self.containers or \
                    row.id in self.starting:
                continue
            if row.monitor_pid and (row.monitor_pid, row.monitor_start_time) != self.me and \
                    is_alive(row.monitor_pid, row.monitor_start_time):
                continue  # another monitor's (one going away, or a test's)
            if row.state == status.STARTING and not row.monitor_pid and not at_startup:
                continue  # its GO may still wait in our backlog
            supervised = Supervised(row.id, RunOptions.from_json_text(row.options))
            self.containers[row.id] = supervised
            supervised.pid = row.pid
            self._update(row.id, monitor_pid=self.me[0], monitor_start_time=self.me[1])
            self._guard(f"adopting container {row.id}", self._adopt_row, supervised, row)

    def _adopt_row(self, supervised: Supervised, row: ContainerRow) -> None:
        import time

        from tsubo.errors import TsuboError

        if row.state == status.STARTING or (row.state == status.RESTARTING and not row.pid and
                                       supervised.options.remove):
            self._start_failed(supervised, TsuboError(
                "start container", row.name, detail="its monitor died while starting it"))
            return
        if row.state == status.RESTARTING:
            supervised.restart_at = time.monotonic()
            self.timed.add(supervised)
            return
        pidfd = self._pidfd_if_running(row)
        if pidfd < 0:
            self._adopted_exited(supervised, None)
            return
        supervised.pidfd = pidfd
        self.pidfds[pidfd] = supervised
        self.poller.register(pidfd, 1)

    def _pidfd_if_running(self, row: ContainerRow) -> int:
        """A pidfd of the container's init when it still runs (pid and start time as the
        runtime recorded them), else -1."""
        from tsubo.errors import TsuboError

        try:
            state = self.runtime.state(row.id)
        except TsuboError:
            return -1
        pid = int(state.get("pid") or 0)
        if state.get("status") not in ("running", "paused", "created") or pid <= 0:
            return -1
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return -1
        try:
            state = self.runtime.state(row.id)  # the pidfd names the process checked
        except TsuboError:
            state = {}
        if state.get("status") not in ("running", "paused", "created"):
            os.close(pidfd)
            return -1
        return pidfd


#: the firewall's self-healing: how long a burst of changes may take before we look; the
#: window in which repeated repairs mean someone keeps undoing ours, and the back-off then
_FIREWALL_SETTLE_SECONDS = 0.1
_FIREWALL_WINDOW = 10.0
_FIREWALL_REPAIRS_BEFORE_BACKOFF = 5
_FIREWALL_BACKOFF_MAX = 60.0

#: the interpreter's switch interval while workers run (seconds; Python's default 0.005)
_SWITCH_INTERVAL = 0.001

#: how many containers are created and started at once, off the loop
_START_WORKERS = 2


class _StartJob:
    """A container to create (``run``: no ID yet) or start, handed to a worker thread; the
    worker fills in the row, what it started, or the error."""

    __slots__ = ("client_fd", "container_id", "error", "name", "network_ids", "options",
                 "publication", "reader", "row", "spawned", "started")

    def __init__(self, client_fd: int, reader: attach.FrameReader, container_id: str,
                 options: RunOptions, name: str | None) -> None:
        self.client_fd = client_fd
        self.reader = reader
        self.container_id = container_id
        self.options = options
        self.name = name
        self.row: ContainerRow | None = None
        self.network_ids: list[str] = []
        self.started: _Started | None = None
        self.error: Exception | None = None
        self.spawned = False  # a worker ran it (and is done)
        #: claimed ports whose nft transaction the worker runs beside the runtime's start
        self.publication: PortPublication | None = None


class _Publishing:
    """A published-port transaction (``PortPublication.apply``) in a thread of its own.
    A bare ``_thread`` and a lock, not :class:`threading.Thread`: its ``start`` waits
    until the new thread runs, which then holds the interpreter for a switch interval
    while the start's worker waits; this way the worker goes on to the runtime, and the
    transaction runs while the worker waits on the runtime's children."""

    def __init__(self, publication: PortPublication) -> None:
        self.publication = publication
        self.error: Exception | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()
        _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        try:
            self.publication.apply()
        except Exception as error:  # handed to the worker that waits
            self.error = error
        finally:
            self.done.release()

    def wait(self) -> Exception | None:
        self.done.acquire()
        return self.error


def _unspawn(runtime: Runtime, container_id: str, started: _Started | None) -> None:
    """Kill and delete what the runtime started, and close our ends of its stdio."""
    from tsubo.errors import TsuboError

    try:
        runtime.delete(container_id, force=True)
    except TsuboError:
        pass  # gone already
    if started is not None:
        for fd in {started.out_read, started.err_read, started.stdin_write,
                   started.console_master} - {-1}:
            os.close(fd)


class _Started:
    """A container's init as the runtime started it, with our ends of its stdio."""

    __slots__ = ("console_master", "err_read", "out_read", "pid", "stdin_write")

    def __init__(self, pid: int, out_read: int, err_read: int, stdin_write: int,
                 console_master: int) -> None:
        self.pid = pid
        self.out_read = out_read
        self.err_read = err_read
        self.stdin_write = stdin_write
        self.console_master = console_master


def _spawn_container(runtime: Runtime, paths: EnginePaths, container_id: str,
                     options: RunOptions, bundle: str, mount_base: int) -> _Started:
    """The runtime's create + start (in a worker thread) with new pipes (or a pty) as the
    container's stdio, its mount namespace copied from *mount_base*; what the loop needs
    to serve it."""
    stdin_write = -1
    console_path = ""
    listener = None
    folder_fd = -1
    out_read = err_read = -1
    if options.tty:
        import socket

        run_dir = paths.container_run_dir(container_id)
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
    stdio: tuple[int, int, int] | None = None
    ends: list[int] = []  # the container's ends of its pipes: closed once it has them
    if listener is None:
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        if options.interactive:
            in_read, stdin_write = os.pipe2(os.O_CLOEXEC)
        else:
            in_read = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        ends = [in_read, out_write, err_write]
        stdio = (in_read, out_write, err_write)
    try:
        record = runtime.create(container_id, bundle, console_socket=console_path,
                                start_now=True, stdio=stdio, mount_base=mount_base)
    except BaseException:
        for fd in (out_read, err_read, stdin_write):
            if fd >= 0:
                os.close(fd)
        if listener is not None:
            listener.close()
            os.unlink(console_path)
            if folder_fd >= 0:
                os.close(folder_fd)
        raise
    finally:
        for fd in ends:
            os.close(fd)
    if listener is not None:
        import socket

        connection, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
        connection.close()
        listener.close()
        os.unlink(console_path)
        if folder_fd >= 0:
            os.close(folder_fd)
        console = above_select_range(fds[0])
        return _Started(record.pid, console, -1, -1, console)
    return _Started(record.pid, above_select_range(out_read), above_select_range(err_read),
                    above_select_range(stdin_write), -1)


def _should_restart(options: RunOptions, row: ContainerRow, exit_code: int) -> bool:
    policy = options.restart
    if row.stopped_by_user or options.remove:
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure" and exit_code != 0:
        return policy.max_retries == 0 or row.restart_count < policy.max_retries
    return False


def _reap_known(known: Mapping[int, object]) -> Iterator[tuple[int, int]]:
    """(pid, wait status) of those of the *known* pids that have exited. The first child
    that can be waited for is looked at without reaping it (``WNOWAIT``): ours is reaped
    and the next looked at; none is the common answer, found in one call however many
    containers run. Only behind a child of someone else's (a runtime's intermediate
    process, its worker's to reap) is every known pid asked in turn."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    while True:
        try:
            child = os.waitid(os.P_ALL, 0, flags)
        except ChildProcessError:
            return
        if child is None:
            return
        if child.si_pid not in known:
            break
        reaped, wait_status = os.waitpid(child.si_pid, os.WNOHANG)
        if not reaped:
            return  # not a process that can be waited for after all (raced): next SIGCHLD
        yield reaped, wait_status
    for pid in list(known):
        try:
            reaped, wait_status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if reaped:
            yield reaped, wait_status


#: DNS over TCP: connections served at once, and how long a relayed query may take
_DNS_TCP_CONNECTIONS = 64
_DNS_TCP_TIMEOUT = 5.0


def _send_quietly_stream(conn: Any, message: bytes) -> None:
    """One DNS message on a TCP connection; a client gone is no error."""
    from tsubo.network.dns import tcp_frame

    try:
        conn.setblocking(True)
        conn.settimeout(_DNS_TCP_TIMEOUT)
        conn.sendall(tcp_frame(message))
    except OSError:
        pass


def _relay_tcp(conn: Any, packet: bytes, servers: list[str], in_flight: list[int]) -> None:
    """In a thread: ask the first upstream that answers over TCP, pass its answer back,
    close the client's connection, and count itself out of *in_flight*."""
    import socket

    from tsubo.network.dns import read_tcp_message, tcp_frame

    try:
        for server in servers:
            try:
                with socket.create_connection((server, 53), timeout=_DNS_TCP_TIMEOUT) as up:
                    up.sendall(tcp_frame(packet))
                    answer = read_tcp_message(up)
            except OSError:
                continue
            if answer is not None:
                _send_quietly_stream(conn, answer)
                return
    finally:
        conn.close()
        in_flight[0] -= 1


def _send_datagram(sock: Any, packet: bytes, address: Any) -> None:
    try:
        sock.sendto(packet, address)
    except OSError:
        pass  # a client or server gone away: nothing to tell


def _read(fd: int, size: int = _READ_SIZE) -> bytes:
    try:
        return os.read(fd, size)
    except OSError:  # EIO from a pty whose last slave closed
        return b""


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


__all__ = ["MonitorService", "run_monitor"]
