"""Thin, typed wrappers for the Linux system calls Python 3.11's ``os`` lacks.

This is the only module that calls into libc directly. Each wrapper raises ``OSError`` with
the kernel's errno (callers add the operation and object when they wrap it in a
:class:`tsubo.errors.TsuboError`). The flag constants live in :mod:`tsubo.kernel.flags`;
syscall numbers differ per architecture and are looked up per machine.

Why ``_ctypes`` and not ``ctypes``: this module is on the path of every container start, and
``import ctypes`` costs ~2.8 ms here (its ``__init__`` builds ~30 classes and imports
``ctypes._endian``, ``struct`` and ``types``) — a tenth of a whole ``runc run``. We need four
things from it: ``dlopen``, a function-pointer type that records errno, a C ``long`` for the
variadic ``syscall(2)``, and ``get_errno``; ``_ctypes`` (the C core ``ctypes`` is written on,
an API unchanged since Python 2.5) provides them directly for ~0.4 ms. Every argument is a
``bytes`` path (passed as ``char *``), ``None`` (``NULL``), a small ``int`` (``int``) or a
:class:`_Long`; the kernel structs we pass (cap header/data, ``open_how``) are only read by
the kernel, so packed ``bytes`` serve as their buffers.
"""

from __future__ import annotations

import _ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_KEYCTL_JOIN_SESSION_KEYRING = 1
_AT_FDCWD = -100
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

# Syscall numbers that glibc 2.36 has no wrapper for (or whose wrapper we avoid).
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "openat2": 437, "keyctl": 250,
               "open_tree": 428, "move_mount": 429},
    "aarch64": {"pivot_root": 41, "capset": 91, "openat2": 437, "keyctl": 219,
                "open_tree": 428, "move_mount": 429},
}


class _Long(_ctypes._SimpleCData):  # type: ignore[type-arg]
    """C ``long``: what ``syscall(2)`` reads its variadic arguments as."""

    _type_ = "l"


class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]
    """C ``int``: what the libc functions but ``syscall`` return."""

    _type_ = "i"


class _LibcFunction(_ctypes.CFuncPtr):
    """A libc function returning ``long``; errno is saved for :func:`_ctypes.get_errno`."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


class _LibcIntFunction(_ctypes.CFuncPtr):
    """One returning ``int``: read as ``long``, glibc's umount2 -1 came back as 2**32 - 1
    (the upper half of the register is not set), and its failures went unseen."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Libc:
    """The process's own symbol table (libc is already loaded)."""

    _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]


def _function(name: str) -> _LibcIntFunction:
    return _LibcIntFunction((name, _Libc))  # type: ignore[arg-type]


_numbers = _SYSCALL_NUMBERS.get(os.uname().machine, _SYSCALL_NUMBERS["x86_64"])
_syscall = _LibcFunction(("syscall", _Libc))  # type: ignore[arg-type]
_mount = _function("mount")
_umount2 = _function("umount2")
_unshare = _function("unshare")
_setns = _function("setns")
_sethostname = _function("sethostname")
_setdomainname = _function("setdomainname")
_prctl = _function("prctl")
_socket = _function("socket")
_ioctl = _function("ioctl")
_tee = _LibcFunction(("tee", _Libc))  # type: ignore[arg-type]  # returns ssize_t

_AF_INET = 2
_SOCK_DGRAM_CLOEXEC = 2 | 0o2000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def _check(result: int) -> int:
    if result < 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _encode(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _call_syscall(name: str, *args: object) -> int:
    return _check(_syscall(_Long(_numbers[name]), *args))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(_mount(_encode(source), _encode(target), _encode(fstype), _Long(flags),
                  _encode(data)))


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_umount2(_encode(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2), which glibc does not wrap."""
    _call_syscall("pivot_root", _encode(new_root), _encode(put_old))


def open_tree(path: str, flags: int) -> int:
    """open_tree(2) relative to the cwd (Linux 5.2): an fd of the mount at *path*, or with
    ``OPEN_TREE_CLONE`` of a detached copy of it."""
    return _call_syscall("open_tree", _Long(_AT_FDCWD), _encode(path), _Long(flags))


def move_mount_fd(fd: int, target: str) -> None:
    """move_mount(2) of the mount *fd* refers to (an ``open_tree`` clone) onto *target*."""
    _call_syscall("move_mount", _Long(fd), b"", _Long(_AT_FDCWD), _encode(target),
                  _Long(_MOVE_MOUNT_F_EMPTY_PATH))


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_unshare(flags))


def in_own_thread(work: Callable[[], object]) -> None:
    """Run WORK in a short-lived thread of its own and wait for it; what it raises is raised
    here. For a per-thread ``unshare`` (cwd, network namespace) that must never touch the
    caller's thread: it goes with the thread. ``_thread``, not ``threading`` (~4 ms to
    import); ~0.1 ms a call."""
    import _thread

    errors: list[BaseException] = []
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            work()
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    done.acquire()
    if errors:
        raise errors[0]


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace *fd* refers to."""
    _check(_setns(fd, nstype))


def sethostname(name: str) -> None:
    """sethostname(2) (the ``socket`` module has it too, but costs ~10 ms to import)."""
    raw = name.encode()
    _check(_sethostname(raw, _Long(len(raw))))


def setdomainname(name: str) -> None:
    """setdomainname(2)."""
    raw = name.encode()
    _check(_setdomainname(raw, _Long(len(raw))))


def loopback_up() -> None:
    """Bring ``lo`` of the calling process's network namespace up (what runc does in a new
    one: ``ping 127.0.0.1`` works): SIOCSIFFLAGS on a datagram socket, no netlink library.
    A new namespace's ``lo`` has no other changeable flag set, so the flags written are
    exactly up + loopback (the kernel keeps non-changeable bits as they are anyway)."""
    fd = _check(_socket(_AF_INET, _SOCK_DGRAM_CLOEXEC, 0))
    try:
        ifreq = struct.pack("16sh22x", b"lo", _IFF_UP | _IFF_LOOPBACK)
        _check(_ioctl(fd, _Long(_SIOCSIFFLAGS), ifreq))
    finally:
        os.close(fd)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _check(_prctl(option, _Long(arg2), _Long(arg3), _Long(arg4), _Long(arg5)))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, with 64-bit masks (version 3 ABI: two
    ``{effective, permitted, inheritable}`` u32 triples, low words first)."""
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    low, high = 0xFFFFFFFF, 32
    data = struct.pack("6I", effective & low, permitted & low, inheritable & low,
                       effective >> high, permitted >> high, inheritable >> high)
    _call_syscall("capset", header, data)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open *path* relative to *dirfd* under the *resolve* restrictions.

    With ``RESOLVE_IN_ROOT`` every ``..`` and absolute symlink is clamped to *dirfd*, which
    is how paths inside a container root are opened safely (an image can plant symlinks).
    """
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)
    return _call_syscall("openat2", dirfd, os.fsencode(path), how, _Long(len(how)))


def join_session_keyring(name: str) -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring, so the container cannot
    reach the caller's keys (what runc does unless --no-new-keyring)."""
    _call_syscall("keyctl", _Long(_KEYCTL_JOIN_SESSION_KEYRING), name.encode())


def set_thread_name(name: bytes) -> None:
    """prctl(PR_SET_NAME): the name ``/proc/PID/comm`` shows (at most 15 bytes kept)."""
    _check(_prctl(15, name[:15], _Long(0), _Long(0), _Long(0)))


def write_own_memory(address: int, data: bytes) -> None:
    """Copy *data* to *address* in this process (memcpy): for the argv area only."""
    _memcpy(_Long(address), data, _Long(len(data)))


_memcpy = _function("memcpy")


_inotify_init1 = _function("inotify_init1")
_inotify_add_watch = _function("inotify_add_watch")


def tee(fd_in: int, fd_out: int, length: int, flags: int = 0) -> int:
    """tee(2): up to *length* bytes of pipe *fd_in* copied into pipe *fd_out*, not taken
    from *fd_in*; the count (0: *fd_in* is empty and has no writer left)."""
    return _check(_tee(fd_in, fd_out, _Long(length), flags))


def inotify_init1(flags: int) -> int:
    """inotify_init1(2): a new inotify fd."""
    return _check(_inotify_init1(flags))


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    """inotify_add_watch(2): watch *path* for the events in *mask*; the watch descriptor."""
    return _check(_inotify_add_watch(fd, os.fsencode(path), _Long(mask)))
