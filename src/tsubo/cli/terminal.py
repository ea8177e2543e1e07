"""``tsubo exec -t``: a pseudo-terminal for a process started in a running container.

We listen on a console socket (a filesystem socket, mode 0600, in a private 0700 folder),
the runtime hands us the pty master from inside the container, and a relay thread copies
it to our terminal (raw mode, our window size) while the main thread runs the exec and
waits for the process — signal handlers, which the runtime installs to forward signals,
only work in the main thread.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.api import Engine


def exec_with_tty(engine: Engine, ref: str, command: list[str], *, env: list[str],
                  workdir: str, user: str, stdin: bool) -> int:
    import socket
    import tempfile
    import threading

    folder = tempfile.mkdtemp(prefix="tsubo-console-")
    path = f"{folder}/console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(1)
    finished = threading.Event()
    relay = threading.Thread(target=_relay, args=(listener, stdin, finished), daemon=True)
    relay.start()
    try:
        code = engine.exec(ref, command, env=env, workdir=workdir, user=user,
                           console_socket=path)
    finally:
        finished.set()
        relay.join(5)
        listener.close()
        os.unlink(path)
        os.rmdir(folder)
    return code


def _relay(listener: Any, stdin: bool, finished: Any) -> None:
    import select
    import socket


    listener.settimeout(30)
    try:
        connection, _ = listener.accept()
    except OSError:
        return
    _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
    connection.close()
    if not fds:
        return
    master = fds[0]
    _copy_window_size(master)
    state = _raw(0) if stdin and os.isatty(0) else None
    try:
        while True:
            watched = [master, 0] if stdin else [master]
            readable, _, _ = select.select(watched, [], [], 0.1)
            if master in readable:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                _write_all(1, data)
            elif finished.is_set():
                break
            if 0 in readable:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    stdin = False
    finally:
        if state is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, state)
        os.close(master)


def _raw(fd: int) -> list[Any]:
    import termios
    import tty

    state = termios.tcgetattr(fd)
    tty.setraw(fd)
    return state


def _copy_window_size(master: int) -> None:
    import fcntl
    import struct

    try:
        size = os.get_terminal_size(1)
    except OSError:
        return
    fcntl.ioctl(master, 0x5414, struct.pack("HHHH", size.lines, size.columns, 0, 0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
