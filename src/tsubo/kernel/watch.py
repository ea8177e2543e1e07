"""Waiting for a folder to change, without polling: an inotify(7) watch.

``FolderWatch(path).wait(timeout)`` returns as soon as a file in the folder is written,
created, moved in or out or deleted (or *timeout* passes): what ``logs -f`` waits on instead
of sleeping between reads, so a line reaches the reader within microseconds of being
written rather than within a polling interval.
"""

from __future__ import annotations

import os

from tsubo.kernel import syscalls

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_IN_MODIFY = 0x002
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_EVENTS = _IN_MODIFY | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE


class FolderWatch:
    """An inotify watch on one folder; ``close()`` when done."""

    __slots__ = ("fd",)

    def __init__(self, folder: str) -> None:
        self.fd = syscalls.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        try:
            syscalls.inotify_add_watch(self.fd, folder, _EVENTS)
        except OSError:
            os.close(self.fd)
            raise

    def wait(self, timeout: float) -> None:
        """Return once something in the folder changed, or after *timeout* seconds."""
        import select

        waiting = select.poll()
        waiting.register(self.fd, select.POLLIN)
        if waiting.poll(max(0, int(timeout * 1000))):
            try:
                while os.read(self.fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
