"""``tsubo exec -t``: a pseudo-terminal for a process started in a running container.

We listen on a console socket (a filesystem socket, mode 0600, in a private 0700 folder),
the runtime hands us the pty master from inside the container, and we relay it to our own
terminal in raw mode, with window-size changes, until the process exits.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.containers import Engine


def exec_with_tty(engine: Engine, ref: str, command: list[str], *, env: list[str],
                  workdir: str, user: str, stdin: bool) -> int:
    import select
    import socket
    import tempfile
    import threading

    from tsubo.engine.attach import send_all

    folder = tempfile.mkdtemp(prefix="tsubo-console-")
    path = f"{folder}/console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(1)
    master: list[int] = []

    def receive() -> None:
        connection, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(connection, 1024, 1)
        connection.close()
        master.extend(fds)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    result: list[int] = []

    def run() -> None:
        result.append(engine.exec(ref, command, env=env, workdir=workdir, user=user, tty=True,
                                  console_socket=path))

    runner = threading.Thread(target=run, daemon=True)
    try:
        runner.start()
        receiver.join(30)
        if not master:
            runner.join()
            return result[0] if result else 1
        fd = master[0]
        _copy_window_size(fd)
        state = _raw(0) if stdin and os.isatty(0) else None
        try:
            while True:
                watched = [fd, 0] if stdin else [fd]
                readable, _, _ = select.select(watched, [], [], 0.1)
                if fd in readable:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    send_all(1, data)
                if 0 in readable:
                    data = os.read(0, 65536)
                    if data:
                        send_all(fd, data)
                    else:
                        stdin = False
                if not runner.is_alive() and fd not in readable:
                    break
        finally:
            if state is not None:
                import termios

                termios.tcsetattr(0, termios.TCSADRAIN, state)
        runner.join()
        return result[0] if result else 1
    finally:
        listener.close()
        os.unlink(path)
        os.rmdir(folder)


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
