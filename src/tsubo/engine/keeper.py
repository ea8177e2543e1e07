"""The keeper: the small parent that lets running containers outlive their monitor.

One keeper per engine root, forked (setsid, double fork) by the command that needs a monitor
when none runs, is the monitor's parent and, like it, a child subreaper. It does almost
nothing, so it has almost nothing that can fail:

- it holds a duplicate of each running container's stdio fds (the read ends of its output
  pipes, its pty master, the write end of its stdin pipe), sent by the monitor with
  ``SCM_RIGHTS``: a dead monitor's pipes keep a reader, so a container that writes does not
  get ``SIGPIPE``, it blocks once the pipe buffer is full, and nothing it wrote is lost;
- when the monitor dies, the containers (the monitor's children) are re-parented to the
  keeper, which reaps them and keeps their exit status;
- it starts a new monitor at once (then with a doubling delay if monitors keep dying
  young) and hands it every kept container, with its fds and, for one that exited
  meanwhile, its exit status; it forwards the exit status of those it reaps later;
- it exits with the monitor when the monitor leaves idle (``BYE``).

The design, and what is lost when the keeper itself is killed, is in docs/engine.md.

The wire between the two is a ``SOCK_SEQPACKET`` socket pair: one message a packet, words
separated by spaces, fds attached:

    monitor -> keeper   KEEP ID PID NAMES  +fds   (replaces what was kept for ID)
                        DROP ID                    BYE
    keeper -> monitor   ADOPT ID PID STATUS NAMES +fds ... ADOPTED   (to a new monitor)
                        EXIT ID STATUS             (a container the keeper reaped)

NAMES is ``stdout,stderr,stdin,console`` in any subset (``-`` for none), STATUS a wait
status (``-`` while running).
"""

from __future__ import annotations

import os

from tsubo.engine.background import raise_open_files_limit, record_crash

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tsubo.engine.paths import EnginePaths

    #: (paths, ready fd, keeper socket fd, adopting) -> exit status
    MonitorMain = Callable[[EnginePaths, int, int, bool], int]

KEEP = "KEEP"
DROP = "DROP"
BYE = "BYE"
ADOPT = "ADOPT"
ADOPTED = "ADOPTED"
EXIT = "EXIT"

PID_FILE = "keeper.pid"
LOCK_NAME = "monitor.lock"
#: a message carries at most this many fds (a container has at most four)
_MAX_FDS = 8
_MESSAGE_MAX = 4096
#: a monitor that dies sooner than this after its start is restarted with a doubling delay
_YOUNG_SECONDS = 10.0
_RESPAWN_DELAY_MAX = 8.0
#: how long a new monitor may take to come up before it is killed and tried again
_READY_TIMEOUT_MS = 60_000


# --- the wire --------------------------------------------------------------------------------

def send(sock: object, words: list[str], fds: Sequence[int] = ()) -> bool:
    """Send one message; False when the peer is gone."""
    import _socket
    import struct

    ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                  struct.pack(f"{len(fds)}i", *fds))] if fds else []
    try:
        sock.sendmsg([" ".join(words).encode()], ancillary)  # type: ignore[attr-defined]
    except OSError:
        return False
    return True


def receive(sock: object) -> tuple[list[str], list[int]] | None:
    """One message (words, fds); None at EOF; BlockingIOError when none waits."""
    import _socket
    import struct

    data, ancillary, _, _ = sock.recvmsg(  # type: ignore[attr-defined]
        _MESSAGE_MAX, _socket.CMSG_SPACE(_MAX_FDS * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += struct.unpack(f"{usable // 4}i", payload[:usable])
    if not data and not fds:
        return None
    for fd in fds:
        os.set_inheritable(fd, False)
    return data.decode().split(), fds


def names_field(names: list[str]) -> str:
    return ",".join(names) or "-"


def parse_names(field: str) -> list[str]:
    return [] if field == "-" else field.split(",")


# --- the keeper process -------------------------------------------------------------------------

class _Kept:
    """One container the keeper holds: its init's pid, its stdio fds, its exit status."""

    __slots__ = ("fds", "names", "pid", "status")

    def __init__(self, pid: int, names: list[str], fds: list[int]) -> None:
        self.pid = pid
        self.names = names
        self.fds = fds
        self.status: int | None = None

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Keeper:
    """The keeper's loop (see the module docstring)."""

    def __init__(self, paths: EnginePaths, monitor_main: MonitorMain) -> None:
        import select

        self.paths = paths
        #: what a forked monitor runs (``engine.monitor.run_monitor``)
        self.monitor_main = monitor_main
        self.kept: dict[str, _Kept] = {}
        self.monitor_pid = 0
        self.monitor_started = 0.0
        self.link: object = None
        self.link_fd = -1
        self.said_bye = False
        self.respawn_delay = 0.0
        self.respawn_at = 0.0
        self.poller = select.poll()

    def run(self, ready_fd: int) -> int:
        import _signal

        from tsubo.kernel import signals, syscalls
        from tsubo.kernel.flags import PR_SET_CHILD_SUBREAPER
        from tsubo.kernel.procfs import read_stat, set_process_title

        syscalls.prctl(PR_SET_CHILD_SUBREAPER, 1)
        raise_open_files_limit()  # for the monitor too (its child)
        set_process_title(f"tsubo-keeper {self.paths.data}")
        me = read_stat(os.getpid())
        _write_pid_file(self.paths, f"{os.getpid()} {me.start_time if me else 0}\n")
        wake_read = signals.wake_on(_signal.SIGCHLD)
        self.poller.register(wake_read, 1)
        try:
            self._spawn(ready_fd, adopting=False)
            os.close(ready_fd)
            while True:
                for fd, _ in self.poller.poll(self._timeout()):
                    if fd == wake_read:
                        signals.drain(wake_read)
                    elif fd == self.link_fd:
                        self._from_monitor()
                self._reap()
                if self.monitor_pid:
                    continue
                if self.said_bye or not self.kept:
                    return 0
                if _now() >= self.respawn_at:
                    self._respawn()
        except BaseException as error:
            record_crash(self.paths, error, "keeper")
            return 1
        finally:
            _remove_pid_file(self.paths)

    def _timeout(self) -> int:
        if self.monitor_pid or not self.kept or self.said_bye:
            return -1
        return max(0, int((self.respawn_at - _now()) * 1000) + 1)

    # --- the monitor --------------------------------------------------------------------------

    def _spawn(self, ready_fd: int, *, adopting: bool) -> None:
        """Fork a monitor with a fresh socket pair; when *adopting*, queue every kept
        container for it before it reads anything."""
        import _socket

        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            exit_status = 1
            try:
                ours.close()
                exit_status = self.monitor_main(self.paths, ready_fd, theirs.detach(),
                                                adopting)
            except BaseException as error:
                record_crash(self.paths, error)
            os._exit(exit_status)
        theirs.close()
        self.monitor_pid = pid
        self.monitor_started = _now()
        self.said_bye = False
        if adopting:
            for container_id, kept in self.kept.items():
                status = "-" if kept.status is None else str(kept.status)
                send(ours, [ADOPT, container_id, str(kept.pid), status,
                            names_field(kept.names)], kept.fds)
            send(ours, [ADOPTED])
        ours.setblocking(False)
        self.link = ours
        self.link_fd = ours.fileno()
        self.poller.register(self.link_fd, 1)

    def _respawn(self) -> None:
        """A new monitor for the kept containers, under the monitor lock (as a CLI starts
        one), waiting until it listens."""
        import fcntl
        import select

        lock = os.open(f"{self.paths.run}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
            try:
                self._spawn(ready_write, adopting=True)
            finally:
                os.close(ready_write)
            waiting = select.poll()
            waiting.register(ready_read, select.POLLIN)
            waiting.register(self.link_fd, select.POLLIN)
            deadline = _now() + _READY_TIMEOUT_MS / 1000
            ready = False
            while not ready and self.link is not None and (left := deadline - _now()) > 0:
                for fd, _ in waiting.poll(int(left * 1000) + 1):
                    if fd == ready_read:
                        ready = True
                    else:  # what it says while it starts is read: it never waits on us
                        self._from_monitor()
            if not ready and self.link is not None:
                os.kill(self.monitor_pid, 9)  # hung while starting: ours, by pid
            os.close(ready_read)
        finally:
            os.close(lock)

    def _from_monitor(self) -> None:
        while self.link is not None:
            try:
                message = receive(self.link)
            except BlockingIOError:
                return
            except OSError:
                message = None
            if message is None:
                self._close_link()
                return
            words, fds = message
            self._handle(words, fds)

    def _handle(self, words: list[str], fds: list[int]) -> None:
        kind = words[0] if words else ""
        if kind == KEEP and len(words) == 4:
            old = self.kept.pop(words[1], None)
            if old is not None:
                old.close()
            self.kept[words[1]] = _Kept(int(words[2]), parse_names(words[3]), fds)
            return
        for fd in fds:
            os.close(fd)
        if kind == DROP and len(words) == 2:
            dropped = self.kept.pop(words[1], None)
            if dropped is not None:
                dropped.close()
        elif kind == BYE:
            self.said_bye = True

    def _close_link(self) -> None:
        if self.link is not None:
            self.poller.unregister(self.link_fd)
            self.link.close()  # type: ignore[attr-defined]
            self.link = None
            self.link_fd = -1

    def _reap(self) -> None:
        from tsubo.kernel.procfs import reap_children

        for pid, status in reap_children():
            if pid == self.monitor_pid:
                self._monitor_gone(status)
                continue
            for container_id, kept in self.kept.items():
                if kept.pid == pid:
                    kept.status = status
                    if self.link is not None and self.monitor_pid:
                        send(self.link, [EXIT, container_id, str(status)])
                    break

    def _monitor_gone(self, wait_status: int) -> None:
        self._from_monitor()  # what it said before it died (a BYE, its last KEEPs)
        self._close_link()
        if not self.said_bye:
            code = os.waitstatus_to_exitcode(wait_status)
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            record_crash(self.paths, RuntimeError(f"the monitor (pid {self.monitor_pid}) "
                                                  f"ended unexpectedly: {how}"), "keeper")
        self.monitor_pid = 0
        if _now() - self.monitor_started < _YOUNG_SECONDS:
            self.respawn_delay = min(max(self.respawn_delay * 2, 0.1), _RESPAWN_DELAY_MAX)
        else:
            self.respawn_delay = 0.0
        self.respawn_at = _now() + self.respawn_delay


def keeper_alive(paths: EnginePaths) -> bool:
    """Whether this root's keeper runs (its pid file names a live process)."""
    from tsubo.kernel.procfs import is_alive

    try:
        with open(f"{paths.run}/{PID_FILE}", "rb") as pid_file:
            pid, start_time = (int(field) for field in pid_file.read(64).split())
    except (OSError, ValueError):
        return False
    return is_alive(pid, start_time)


def _write_pid_file(paths: EnginePaths, text: str) -> None:
    temporary = f"{paths.run}/{PID_FILE}.{os.getpid()}"
    with open(temporary, "w", encoding="ascii") as pid_file:
        pid_file.write(text)
    os.rename(temporary, f"{paths.run}/{PID_FILE}")


def _remove_pid_file(paths: EnginePaths) -> None:
    try:
        os.unlink(f"{paths.run}/{PID_FILE}")
    except OSError:
        pass


def _now() -> float:
    import time

    return time.monotonic()
