"""The one exception tree of tsubo.

Every error raised by library code is a :class:`TsuboError` carrying structured fields:
the *operation* that failed ("create container"), the *object* it failed on (a path, an
ID), the *errno* when the kernel said no, and a *hint* for the user. Only ``cli/`` turns
them into text and exit codes, in one line:

    tsubo-runtime: create container "web": mount proc on /proc: EPERM (hint: ...)

This module imports nothing from tsubo (and nothing slow from the standard library): it is
imported on every hot path.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class TsuboError(Exception):
    """An operation failed; the fields say which, on what, and why."""

    #: the process exit code a CLI uses for this class of error
    exit_code = 1

    def __init__(
        self,
        operation: str,
        obj: str = "",
        *,
        errno: int = 0,
        detail: str = "",
        hint: str = "",
    ) -> None:
        self.operation = operation
        self.object = obj
        self.errno = errno
        self.detail = detail
        self.hint = hint
        super().__init__(self.message())

    def message(self, *, readable: bool = False) -> str:
        """One line: ``operation object: detail: ERRNO (hint: ...)``; *readable* spells
        the errno as the C library does (``no such file or directory``), as Docker's CLI
        prints it, instead of its name."""
        text = self.operation
        if self.object:
            text += f" {self.object}"
        if self.detail:
            text += f": {self.detail}"
        if self.errno:
            name = describe_errno_plainly if readable else errno_name
            text += f": {name(self.errno)}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    @classmethod
    def from_os_error(
        cls, operation: str, obj: str, error: OSError, hint: str = ""
    ) -> TsuboError:
        """Wrap an OSError, keeping its errno."""
        return cls(operation, obj, errno=error.errno or 0, hint=hint)


class InvalidArgument(TsuboError):
    """Bad input from the user: a malformed ID, config, flag or value."""


class InvalidJSON(InvalidArgument, ValueError):
    """A JSON document that is not valid JSON, is nested too deep or is too large
    (:func:`tsubo.jsonwire.loads`). Also a ValueError, the type JSON parsers raise, so
    code that catches ValueError around a parse keeps working; :attr:`detail` holds the
    problem alone (``nested deeper than 64 levels``) for callers that add their own
    context."""


class NotFound(TsuboError):
    """The named container, image or object does not exist."""


class AlreadyExists(TsuboError):
    """An object with that name or ID exists already (and was left untouched)."""


class WrongState(TsuboError):
    """The operation is not allowed in the object's current state."""


class Unsupported(TsuboError):
    """The request is valid but this host or this build cannot do it."""


class ChildFailed(TsuboError):
    """A step inside the container's setup failed; raised in the parent from the handshake."""


class ExecFailed(ChildFailed):
    """The container's program cannot be executed: not found, or not executable. Its
    *object* is the program, its *errno* ENOENT or EACCES, and its one line is runc's
    (``exec: "PROGRAM": DETAIL``, from Go's os/exec), which podman and containerd match to
    tell "not found" (127) from "cannot execute" (126)."""

    def message(self, *, readable: bool = False) -> str:
        text = f'{self.operation}: "{self.object}": {self.detail}'
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class TeardownErrors(TsuboError):
    """Teardown went on past failures; this lists all of them."""

    def __init__(self, operation: str, obj: str, errors: Iterable[BaseException]) -> None:
        self.errors = list(errors)
        detail = "; ".join(str(e) for e in self.errors)
        super().__init__(operation, obj, detail=detail)


def errno_name(number: int) -> str:
    """``EPERM`` for 1; falls back to the number for unknown values."""
    import errno as errno_module  # tiny C module, only needed on the error path

    return errno_module.errorcode.get(number, str(number))


def describe_errno_plainly(number: int) -> str:
    """``no such file or directory`` for ENOENT (strerror, lower-cased as Go prints it)."""
    text = os.strerror(number)
    return text[:1].lower() + text[1:]


def describe_errno(number: int) -> str:
    """``EPERM (Operation not permitted)``."""
    return f"{errno_name(number)} ({os.strerror(number)})"
