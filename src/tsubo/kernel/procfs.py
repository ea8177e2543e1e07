"""/proc and /sys: reading processes, and the one writer of kernel settings files.

The sockets tables (``/proc/net/{tcp,udp}*``, ``/proc/net/sctp/eps``) and the fd links of
processes are read to name the holder of a host port a container wants to publish
(:func:`bound_sockets`, :func:`socket_holder`; ``kernel/sockets.py`` asks first).

A container's status is never trusted from its state file alone: the recorded pid is
checked against /proc, and the recorded start time (field 22 of ``/proc/PID/stat``, in
clock ticks since boot) must match, so a reused pid reads as stopped, as does a zombie.

Every write to a /proc or /sys file — sysctls (the container's, and per-netns ones of the
network code), cgroupfs files, uid/gid maps, ``oom_score_adj``, the AppArmor exec
attribute — goes through :func:`write` (or :func:`write_each`: several settings through
one open): one ``write(2)`` of each whole value (these files parse each write on its own),
``O_NOFOLLOW`` (none of them is a symlink; a container can plant one in its own /proc
view), and an OSError becomes a :class:`~tsubo.errors.TsuboError` naming the file.
"""

from __future__ import annotations

import os

from tsubo.errors import TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

_WRITE_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW


class ProcessStat:
    """The parts of ``/proc/PID/stat`` we use."""

    __slots__ = ("pid", "ppid", "start_time", "state")

    def __init__(self, pid: int, state: str, ppid: int, start_time: int) -> None:
        self.pid = pid
        self.state = state
        self.ppid = ppid
        self.start_time = start_time

    @property
    def is_dead(self) -> bool:
        """Zombie or dead: the process has exited even if nobody reaped it."""
        return self.state in ("Z", "X", "x")


def read_stat(pid: int, proc: str = "/proc") -> ProcessStat | None:
    """Parse ``/proc/PID/stat``; None when there is no such process."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as stat_file:
            raw = stat_file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2:].split()
    return ProcessStat(pid, fields[0].decode(), int(fields[1]), int(fields[19]))


def is_alive(pid: int, start_time: int) -> bool:
    """True when *pid* is running (not a zombie) and is the process started at *start_time*."""
    if pid <= 0:
        return False
    stat = read_stat(pid)
    return stat is not None and not stat.is_dead and stat.start_time == start_time


def wait_until_gone(pid: int, start_time: int, timeout: float) -> bool:
    """Poll until *pid* is dead (or a zombie) for at most *timeout* seconds."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.0005
    while is_alive(pid, start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def reap_if_child(pid: int) -> int | None:
    """Reap *pid* if it is our exited child; returns its wait status or None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if reaped == pid else None


def set_process_title(title: str) -> None:
    """Name this process ``title`` in ``ps`` (``/proc/self/cmdline``) and ``/proc/self/comm``.

    A process forked from a CLI keeps that CLI's argv (``tsubo run -d --name web ...``) long
    after the command ended. The kernel shows cmdline from the argv area of the process's
    own memory (``arg_start``..``arg_end``, fields 48-49 of ``/proc/self/stat``), so the
    title is written there (what setproctitle does, without its C code): cut to the area,
    NUL-terminated, and the area's last byte made non-NUL, which tells the kernel to show
    the area only up to that first NUL (fs/proc/base.c, ``get_mm_proctitle``)."""
    from tsubo.kernel import syscalls

    raw = title.encode()
    syscalls.set_thread_name(raw.split(b" ", 1)[0])
    with open("/proc/self/stat", "rb") as stat_file:
        stat_fields = stat_file.read()
    fields = stat_fields[stat_fields.rindex(b")") + 2:].split()
    arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48 and 49
    size = arg_end - arg_start
    if size < 3:
        return
    shown = raw[:size - 2] + b"\0"
    syscalls.write_own_memory(arg_start, shown + b" " * (size - len(shown)))


def reap_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has exited, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def write(path: str, value: str, *, operation: str = "write", hint: str = "",
          wrap: Callable[[str, str, OSError], TsuboError] | None = None) -> None:
    """Write *value* to the /proc or /sys file *path* in one ``write(2)``.

    An OSError becomes ``TsuboError(operation, path, errno, hint)``, or whatever *wrap*
    makes of ``(path, value, error)`` (cgroupfs: a hint per file and errno)."""
    write_each(path, (value,), operation=operation, hint=hint, wrap=wrap)


def write_each(path: str, values: Sequence[str], *, operation: str = "write", hint: str = "",
               wrap: Callable[[str, str, OSError], TsuboError] | None = None) -> None:
    """:func:`write` of each of *values* in turn, through one open of *path*: these files
    take one setting per ``write(2)`` whatever the file offset (a device cgroup's dozen
    ``devices.allow`` rules are one open instead of twelve). The error names the value that
    failed; the ones before it were written."""
    value = values[0]
    try:
        fd = os.open(path, _WRITE_FLAGS)
        try:
            for value in values:
                os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as error:
        if wrap is not None:
            raise wrap(path, value, error) from None
        raise TsuboError.from_os_error(operation, path, error, hint=hint) from None


def write_sysctl(key: str, value: str, *, operation: str = "write sysctl") -> None:
    """Write ``/proc/sys/KEY``; *key* in the slash form (``net/ipv4/conf/eth0/arp_notify``:
    an interface name may hold dots). ``/proc/sys/net`` shows the network namespace of the
    thread that opens it: write inside :class:`~tsubo.kernel.iproute.InNetns` to reach a
    container's."""
    write("/proc/sys/" + key, value, operation=operation)


def ensure_sysctl(key: str, value: str, *, operation: str = "write sysctl") -> None:
    """:func:`write_sysctl` unless KEY reads VALUE already: a read is cheaper than a write,
    which may make the kernel do more (``route_localnet``'s flushes the namespace's route
    cache)."""
    try:
        fd = os.open("/proc/sys/" + key, os.O_RDONLY | os.O_CLOEXEC)
        try:
            current = os.read(fd, 64).strip()
        finally:
            os.close(fd)
    except OSError:
        current = b""  # the write names what is wrong
    if current != value.encode():
        write_sysctl(key, value, operation=operation)


def is_own_namespace(path: str, name: str) -> bool:
    """Whether the namespace file *path* is this process's own namespace *name* (``net``,
    ``ipc``...): the same nsfs inode as ``/proc/self/ns/<name>``. A path that cannot be
    read is not ours (joining it fails later with its own error)."""
    try:
        theirs = os.stat(path)
        ours = os.stat(f"/proc/self/ns/{name}")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def unescape_mountinfo(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\ooo`` octal."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


# --- sockets (published ports: is a host port in use, and by whom) ---------------------------

#: /proc/net/{tcp,udp}* ``st`` values that hold a port: TCP_LISTEN; UDP's unconnected 07
_HOLDING_STATES = {"tcp": ("0A",), "udp": ("07",)}


def _hex_address(text: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; a 32-digit IPv6 field -> its text (host byte order per
    32-bit word, as the kernel prints them)."""
    import socket

    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return socket.inet_ntop(socket.AF_INET, words)
    address = socket.inet_ntop(socket.AF_INET6, words)
    if address.startswith("::ffff:") and "." in address:
        return address[7:]  # a v4-mapped bind holds the IPv4 address
    return address


def bound_sockets(protocol: str) -> list[tuple[str, int, int]]:
    """(address, port, inode) of the sockets of this network namespace that hold a
    *protocol* (``tcp``: listening; ``udp``: bound, unconnected) port, IPv4 and IPv6, from
    ``/proc/net/PROTO`` and ``PROTO6`` (the reader's network namespace). ``sctp``: the
    endpoints of ``/proc/net/sctp/eps`` (IPv4 and IPv6 alike, listed by port)."""
    if protocol == "sctp":
        return _sctp_endpoints()
    found = []
    for path in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
        try:
            with open(path, encoding="ascii") as table:
                lines = table.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] not in _HOLDING_STATES.get(protocol, ()):
                continue
            address, _, port = fields[1].partition(":")
            found.append((_hex_address(address), int(port, 16), int(fields[9])))
    return found


def _sctp_endpoints() -> list[tuple[str, int, int]]:
    try:
        with open("/proc/net/sctp/eps", encoding="ascii") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return []
    found = []
    for line in lines:  # ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS
        fields = line.split()
        if len(fields) >= 9:
            found.append((fields[8] if len(fields) == 9 else "0.0.0.0", int(fields[5]),
                          int(fields[7])))
    return found


def socket_holder(inode: int, proc: str = "/proc") -> tuple[int, str] | None:
    """(pid, command name) of a process with socket INODE open; None if none is found.
    Walks every process's fd table: call it only to name the holder of a conflict."""
    target = f"socket:[{inode}]"
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"{entry.path}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{entry.path}/fd/{fd}") == target:
                    with open(f"{entry.path}/comm", encoding="utf-8",
                              errors="replace") as comm:
                        return int(entry.name), comm.read().strip()
            except OSError:
                continue
    return None


def ipv4_forwarding() -> bool | None:
    """Whether this network namespace forwards IPv4 (``net.ipv4.ip_forward``); None when
    there is no /proc to ask. Read from ``/proc/net/snmp`` (``Ip: Forwarding``, RFC 1213:
    1 forwarding, 2 not), the same kernel value: a path under ``/proc/sys/net/ipv4`` costs a
    lookup that grows with the network namespaces made since ours (each one that looked
    into its own ``/proc/sys/net/ipv4``, as every container's does, adds a same-named
    dentry the walk compares with: ~0.5 ms at 400 containers), ``/proc/net`` does not."""
    try:
        fd = os.open("/proc/net/snmp", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        head = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    names, _, rest = head.partition(b"\n")
    values = rest.partition(b"\n")[0].split()
    try:
        return values[names.split().index(b"Forwarding")] == b"1"
    except (ValueError, IndexError):
        return None


def local_port_range() -> tuple[int, int]:
    """``net.ipv4.ip_local_port_range`` of this network namespace: where ephemeral published
    ports are taken from, as Docker does (read only when one is asked for: the path is
    under ``/proc/sys/net/ipv4``, see :func:`ipv4_forwarding`)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as setting:
            low, high = (int(word) for word in setting.read().split())
    except (OSError, ValueError):
        return 32768, 60999  # the kernel's default
    return low, high
