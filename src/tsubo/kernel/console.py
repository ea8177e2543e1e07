"""Container terminals: a new pty inside the container, its master sent to a console socket.

The OCI ``--console-socket`` protocol (runc, crun, conmon, containerd): the runtime connects
to the caller's AF_UNIX socket, creates the pty from the container's own devpts instance
(so the slave belongs to the container), and sends the master fd with SCM_RIGHTS. The slave
becomes the init's controlling terminal and stdio, and is bound onto /dev/console.

:func:`connect` runs before pivot_root (the socket path is a host path, and the ``socket``
module is imported here, never later); :meth:`ConsoleSocket.attach_new_pty` runs after.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from tsubo.errors import TsuboError
from tsubo.kernel import syscalls
from tsubo.kernel.flags import MS_BIND

_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414


class ConsoleSocket:
    """A connected console socket, ready to receive the pty master."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as error:
            self.sock.close()
            raise TsuboError.from_os_error("connect to console socket", path, error) from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def attach_new_pty(self, size: tuple[int, int] | None) -> None:
        """Open a pty in the container, send its master, make the slave our terminal."""
        try:
            master, slave = os.openpty()
            if size:
                fcntl.ioctl(slave, _TIOCSWINSZ,
                            struct.pack("HHHH", size[0], size[1], 0, 0))
            socket.send_fds(self.sock, [b"/dev/ptmx"], [master])
            os.close(master)
            self.sock.close()
            fcntl.ioctl(slave, _TIOCSCTTY, 0)
            for target in (0, 1, 2):
                os.dup2(slave, target)
            self._bind_console(slave)
            os.close(slave)
        except OSError as error:
            raise TsuboError.from_os_error("set up terminal via", self.path, error) from None

    @staticmethod
    def _bind_console(slave: int) -> None:
        try:
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except OSError:
            return  # read-only /dev: no /dev/console, as runc does when it cannot create it
        syscalls.mount(f"/proc/self/fd/{slave}", "/dev/console", None, MS_BIND)
