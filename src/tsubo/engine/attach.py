"""The attach stream between a container's monitor and a client (the CLI or the API).

One socket, framed messages: a kind byte, a 4-byte big-endian length, the payload.

monitor -> client: ``o`` stdout bytes, ``e`` stderr bytes, ``s`` started (payload: "PID ID"),
``x`` exited (payload: exit code), ``!`` error (payload: a one-line message).
client -> monitor: ``g`` the container to start, ``r`` one to create and start, or ``a``
adopt the containers whose monitor died (answered ``d`` when done), or ``W`` wait until
this container is done (answered ``x`` with its exit code, ``-`` if we do not run it) —
sent once, first;
``i`` stdin bytes,
``c`` close stdin, ``k`` signal (payload: number),
``w`` window size (payload: "rows cols").

:class:`AttachClient` is the client side: it relays our stdin/stdout/stderr (in raw mode
for a TTY, with window-size changes), forwards INT/TERM/HUP to the container as Docker's
sig-proxy does, and returns the exit code. Killing the client never touches the
container: the monitor simply loses a reader.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tsubo.errors import TsuboError

STDIN = b"i"
STDOUT = b"o"
STDERR = b"e"
CLOSE_STDIN = b"c"
SIGNAL = b"k"
RESIZE = b"w"
STARTED = b"s"
EXITED = b"x"
ERROR = b"!"
GO = b"g"  # client -> monitor, first: the container to start (payload: its ID)
RUN = b"r"  # client -> monitor, first: create and start (payload: {"options", "name"})
RECONCILE = b"a"  # client -> monitor, first: adopt containers whose monitor is gone
RECONCILED = b"d"  # monitor -> client: done (then the connection closes)
WAIT = b"W"  # client -> monitor, first: tell me when this container is done (payload: ID)
ATTACH = b"A"  # client -> monitor, first: attach to this running container (payload: ID)

#: Docker's default detach sequence on a TTY: ctrl-p ctrl-q
DETACH_KEYS = b"\x10\x11"
#: ``ctrl-X`` words other than letters (moby/term ``keyMap``)
_CONTROL_SYMBOLS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """``--detach-keys``, Docker's grammar (moby/term ``ToBytes``): comma-separated keys,
    each one character or ``ctrl-X`` (X a letter, or one of ``@ [ \\ ] ^ _``; case does not
    matter); "" is Docker's default, ctrl-p,ctrl-q."""
    from tsubo.errors import InvalidArgument

    if not text:
        return DETACH_KEYS
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
            continue
        prefix, symbol = key[:5].lower(), key[5:].lower()
        if prefix == "ctrl-" and len(symbol) == 1 and "a" <= symbol <= "z":
            codes.append(ord(symbol) - ord("a") + 1)
        elif prefix == "ctrl-" and symbol in _CONTROL_SYMBOLS:
            codes.append(_CONTROL_SYMBOLS[symbol])
        else:
            raise InvalidArgument("parse --detach-keys", text,
                                  detail=f"unknown character: '{key}'",
                                  hint="keys like a or ctrl-a, comma-separated: ctrl-p,ctrl-q")
    return bytes(codes)

_HEADER = 5


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def error_frame(error: TsuboError) -> bytes:
    """An ``!`` frame carrying the error's fields, so the client re-raises it whole
    (its errno decides between Docker's exit codes 126 and 127)."""
    from tsubo import jsonwire

    fields = {"type": type(error).__name__, "operation": error.operation,
              "object": error.object, "errno": error.errno, "detail": error.detail,
              "hint": error.hint}
    return encode(ERROR, jsonwire.dumps(fields).encode())


def raise_error_frame(payload: bytes) -> None:
    """Re-raise the monitor's error as the same TsuboError subclass with the same fields."""
    from tsubo import errors, jsonwire

    try:
        fields = jsonwire.loads(payload)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise errors.ChildFailed("start container", "",
                                 detail=payload.decode("utf-8", "replace"))
    kind = getattr(errors, str(fields.get("type")), errors.ChildFailed)
    if not (isinstance(kind, type) and issubclass(kind, errors.TsuboError)) or \
            kind is errors.TeardownErrors:
        kind = errors.ChildFailed
    raise kind(str(fields.get("operation") or "start container"),
               str(fields.get("object") or ""), errno=int(fields.get("errno") or 0),
               detail=str(fields.get("detail") or ""), hint=str(fields.get("hint") or ""))


class FrameReader:
    """Reassembles frames from a byte stream."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER:
            length = int.from_bytes(self._buffer[1:_HEADER], "big")
            if len(self._buffer) < _HEADER + length:
                break
            frames.append((self._buffer[:1], self._buffer[_HEADER:_HEADER + length]))
            self._buffer = self._buffer[_HEADER + length:]
        return frames


def send_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class AttachClient:
    """Relay between our stdio and a monitor's attach socket until the container exits."""

    def __init__(self, sock_fd: int, *, stdin: bool, tty: bool, sig_proxy: bool = True,
                 detach_keys: bytes = DETACH_KEYS) -> None:
        self.sock_fd = sock_fd
        self.stdin = stdin
        self.tty = tty
        #: forward the signals we get to the container (Docker's --sig-proxy)
        self.sig_proxy = sig_proxy
        #: the key sequence that detaches on a terminal (:func:`parse_detach_keys`)
        self.detach_keys = detach_keys
        #: the streams shown (``run -a``): STDOUT and STDERR frames, by default both
        self.shown: tuple[bytes, ...] = (STDOUT, STDERR)
        self.started_pid = 0
        #: the container's ID, as the monitor reports it with "started"
        self.container_id = ""
        self._reader = FrameReader()
        self._last_input = b""
        #: the user pressed the detach keys (the container keeps running)
        self.detached = False
        #: frames that arrived together with "started"
        self._backlog: list[tuple[bytes, bytes]] = []
        #: called once the container started, before any of its output is relayed (the
        #: API's warnings about it)
        self.on_started: Callable[[], object] | None = None

    def only(self, streams: list[str]) -> None:
        """``run -a``: relay only these of ``stdin``, ``stdout`` and ``stderr``."""
        self.stdin = self.stdin and "stdin" in streams
        self.shown = tuple(kind for name, kind in (("stdout", STDOUT), ("stderr", STDERR))
                           if name in streams)

    def wait_started(self) -> int:
        """Block until the monitor reports the container started (its pid); raises the
        monitor's error if it could not start it."""
        from tsubo.errors import TsuboError

        reader = FrameReader()
        while True:
            try:
                data = os.read(self.sock_fd, 65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise TsuboError("start container", "", detail="the monitor exited early",
                                 hint="its log is monitor.log in the run root")
            frames = reader.feed(data)
            for index, (kind, payload) in enumerate(frames):
                if kind == STARTED:
                    pid_text, _, self.container_id = payload.decode().partition(" ")
                    self.started_pid = int(pid_text)
                    self._reader = reader
                    self._backlog = frames[index + 1:]
                    if self.on_started is not None:
                        self.on_started()
                    return self.started_pid
                if kind == ERROR:
                    raise_error_frame(payload)
                if kind == EXITED:
                    raise TsuboError("start container", "", detail="exited before starting")

    def relay(self) -> int | None:
        """Relay until the container exits; returns its exit code (None: monitor gone, or
        the user detached)."""
        import select

        with _ForwardedSignals(self.tty, forward=self.sig_proxy) as signals:
            terminal_state = _enter_raw_mode(0) if self.tty and os.isatty(0) else None
            poller = select.poll()
            poller.register(self.sock_fd, select.POLLIN)
            poller.register(signals.wake_read, select.POLLIN)
            if self.stdin:
                poller.register(0, select.POLLIN)
            if self.tty:
                self._send_window_size()
            try:
                code = self._output(self._backlog)
                while code is None:
                    for fd, _ in poller.poll():
                        if fd == signals.wake_read:
                            self._forward(signals.take())
                        elif fd == 0:
                            if not self._input(poller):
                                return None  # detached
                        else:
                            data = os.read(self.sock_fd, 65536)
                            if not data:
                                return None
                            code = self._output(self._reader.feed(data))
                            if code is not None:
                                break
                return code
            finally:
                if terminal_state is not None:
                    _restore_mode(0, terminal_state)

    def _forward(self, numbers: list[int]) -> None:
        """Signals we caught: window sizes, or for the container (sig-proxy)."""
        import _signal

        for number in numbers:
            if number == _signal.SIGWINCH:
                self._send_window_size()
            else:
                send_all(self.sock_fd, encode(SIGNAL, str(number).encode()))

    def _input(self, poller: Any) -> bool:
        """What we read on stdin, to the container (its end: close its stdin); False when
        the user typed the detach keys."""
        data = os.read(0, 65536)
        if self.tty and self.detach_keys and self.detach_keys in self._last_input + data:
            # Docker's ctrl-p ctrl-q (or --detach-keys): leave, the container runs on.
            self.detached = True
            return False
        self._last_input = (self._last_input + data)[-(len(self.detach_keys) - 1):] \
            if len(self.detach_keys) > 1 else b""
        if data:
            send_all(self.sock_fd, encode(STDIN, data))
        else:
            send_all(self.sock_fd, encode(CLOSE_STDIN))
            poller.unregister(0)
        return True

    def _output(self, frames: list[tuple[bytes, bytes]]) -> int | None:
        """Write output frames to our stdout/stderr; the exit code once it arrives."""
        for kind, payload in frames:
            if kind == STDOUT and STDOUT in self.shown:
                send_all(1, payload)
            elif kind == STDERR and STDERR in self.shown:
                send_all(2, payload)
            elif kind == EXITED:
                return int(payload)
        return None

    def _send_window_size(self) -> None:
        try:
            size = os.get_terminal_size(1)
        except OSError:
            return
        send_all(self.sock_fd, encode(RESIZE, f"{size.lines} {size.columns}".encode()))


class _ForwardedSignals:
    """While relaying: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM (the
    usual ones of what docker/cli's ForwardAllSignals passes on: every catchable signal
    but SIGCHLD, SIGPIPE and SIGURG), and SIGWINCH on a terminal, are caught, noted and
    made to wake the relay's poll (``wake_read``); the previous handlers come back on
    exit."""

    _FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")

    def __init__(self, tty: bool, *, forward: bool = True) -> None:
        self.tty = tty
        self.forward = forward  # False: --sig-proxy=false (only SIGWINCH is caught)
        self.pending: list[int] = []
        self.wake_read = self.wake_write = -1
        self.previous: dict[int, Any] = {}
        self.old_wakeup = -1

    def __enter__(self) -> _ForwardedSignals:
        import _signal

        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        numbers = [getattr(_signal, name) for name in self._FORWARDED] if self.forward else []
        if self.tty:
            numbers.append(_signal.SIGWINCH)
        for number in numbers:
            self.previous[number] = _signal.signal(number, self._caught)
        self.old_wakeup = _signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        return self

    def _caught(self, number: int, frame: object) -> None:
        self.pending.append(number)

    def take(self) -> list[int]:
        """The signals caught since the last call (the wake-up pipe drained)."""
        from tsubo.kernel.signals import drain

        drain(self.wake_read)
        taken, self.pending = self.pending, []
        return taken

    def __exit__(self, *_: object) -> None:
        import _signal

        _signal.set_wakeup_fd(self.old_wakeup)
        for number, handler in self.previous.items():
            _signal.signal(number, handler)
        os.close(self.wake_read)
        os.close(self.wake_write)


def _enter_raw_mode(fd: int) -> list[Any]:
    import termios
    import tty

    state = termios.tcgetattr(fd)
    tty.setraw(fd)
    return state


def _restore_mode(fd: int, state: list[Any]) -> None:
    import termios

    termios.tcsetattr(fd, termios.TCSADRAIN, state)
