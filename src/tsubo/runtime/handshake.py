"""Typed messages between the runtime (parent) and the container's setup processes.

Two pipes connect them: the child writes to ``child_to_parent``, the parent to
``parent_to_child``. A message is one line, ``KIND<US>field<US>field...\\n`` (US is the
ASCII unit separator; fields never hold newlines), small enough that a single write(2) is
atomic on a pipe, so the intermediate process and the container's init can share the pipe.

A failing child sends ``error`` with errno, operation, object, detail, hint and kind; the
parent's receiver re-raises it as :class:`tsubo.errors.ChildFailed` (kind ``exec``: its
subclass :class:`tsubo.errors.ExecFailed`, whose line is runc's), so the user sees exactly
which step failed inside the container ("mount proc on /proc: EPERM"). Receivers are named for
what they wait for and fail with "expected X, received Y".
"""

from __future__ import annotations

import os

from tsubo.errors import ChildFailed, ExecFailed, TsuboError

_SEPARATOR = "\x1f"

# Message kinds (child -> parent)
PID = "pid"  # the intermediate process reports the container init's host pid
USERNS_READY = "userns"  # the new user namespace exists: write uid_map/gid_map now
HOOKS_DUE = "hooks"  # namespaces and mounts are ready: run createRuntime hooks now
READY = "ready"  # set up, waiting on the exec fifo
ERROR = "error"
# Message kinds (parent -> child)
MAPPED = "mapped"
RESUME = "resume"
START = "start"  # `run` only: exec now (create + start without the exec fifo)


def send(fd: int, kind: str, *fields: str) -> None:
    """Write one message to *fd*."""
    text = _SEPARATOR.join((kind, *fields)).replace("\n", " ") + "\n"
    os.write(fd, text.encode("utf-8", "replace"))


def send_error(fd: int, error: BaseException) -> None:
    """Report *error* to the parent; never raises (the child is about to exit)."""
    if isinstance(error, TsuboError):
        fields = (str(error.errno), error.operation, error.object, error.detail, error.hint,
                  "exec" if isinstance(error, ExecFailed) else "")
    elif isinstance(error, OSError):
        fields = (str(error.errno or 0), "container setup", str(error.filename or ""), "", "",
                  "")
    else:
        fields = ("0", "container setup", "", f"{type(error).__name__}: {error}", "", "")
    try:
        send(fd, ERROR, *fields)
    except OSError:
        pass


class Channel:
    """The parent's reading end: buffers partial reads, yields whole messages."""

    def __init__(self, read_fd: int, peer: str) -> None:
        self.read_fd = read_fd
        self.peer = peer
        self._buffer = b""

    def receive(self) -> tuple[str, list[str]] | None:
        """Next message, or None at end of file (every writer closed or exited)."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        kind, *fields = line.decode("utf-8", "replace").split(_SEPARATOR)
        if kind == ERROR:
            raise _child_error(fields)
        return kind, fields

    def expect(self, kind: str, waiting_for: str) -> list[str]:
        """Receive a message that must be *kind*."""
        message = self.receive()
        if message is None:
            raise ChildFailed("create container", self.peer,
                              detail=f"{waiting_for}: the container's setup process exited "
                              f"before sending {kind!r}")
        if message[0] != kind:
            raise ChildFailed("create container", self.peer,
                              detail=f"{waiting_for}: expected {kind!r}, received "
                              f"{message[0]!r}")
        return message[1]


def _child_error(fields: list[str]) -> ChildFailed:
    fields = [*fields, "", "", "", "", "", ""]
    errno_text, operation, obj, detail, hint, kind = fields[:6]
    error_class = ExecFailed if kind == "exec" else ChildFailed
    return error_class(operation or "container setup", obj, errno=int(errno_text or 0),
                       detail=detail, hint=hint)


def wait_for_resume(read_fd: int, kind: str) -> list[str]:
    """In the child: block until the parent sends *kind* (or dies)."""
    buffer = b""
    while b"\n" not in buffer:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            raise TsuboError("container setup", "", detail=f"the runtime exited before "
                             f"sending {kind!r}")
        buffer += chunk
    got, *fields = buffer.split(b"\n", 1)[0].decode().split(_SEPARATOR)
    if got != kind:
        raise TsuboError("container setup", "", detail=f"expected {kind!r}, received {got!r}")
    return fields
