"""Thin, typed ctypes wrappers for the Linux system calls Python 3.11's ``os`` lacks.

This is the only module that loads libc through ctypes. Each wrapper raises ``OSError``
with the kernel's errno (callers add the operation and object when they wrap it in a
:class:`tsubo.errors.TsuboError`). The flag constants live in :mod:`tsubo.kernel.flags`;
syscall numbers differ per architecture and are looked up per machine.

ctypes costs ~4 ms to import, so callers import this module only on paths that change
namespaces or mounts (create, exec), never for ``state``/``list``/``kill``.
"""

from __future__ import annotations

import ctypes
import os

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Syscall numbers that glibc 2.36 has no wrapper for (or whose wrapper we avoid).
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "openat2": 437},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "openat2": 437},
}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_numbers = _SYSCALL_NUMBERS.get(os.uname().machine, _SYSCALL_NUMBERS["x86_64"])


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _encode(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(_mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)))


_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_umount2(_encode(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2), which glibc does not wrap."""
    _check(_syscall(ctypes.c_long(_numbers["pivot_root"]), _encode(new_root),
                    _encode(put_old)))


_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_unshare(flags))


_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace *fd* refers to."""
    _check(_setns(fd, nstype))


_sethostname = _libc.sethostname
_sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_setdomainname = _libc.setdomainname
_setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def sethostname(name: str) -> None:
    """sethostname(2) (the ``socket`` module has it too, but costs ~10 ms to import)."""
    raw = name.encode()
    _check(_sethostname(raw, len(raw)))


def setdomainname(name: str) -> None:
    """setdomainname(2)."""
    raw = name.encode()
    _check(_setdomainname(raw, len(raw)))


_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                   ctypes.c_ulong]


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _check(_prctl(option, arg2, arg3, arg4, arg5))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, with 64-bit masks (version 3 ABI)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in (0, 1):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_syscall(ctypes.c_long(_numbers["capset"]), ctypes.byref(header), data))


def capget() -> tuple[int, int, int]:
    """capget(2): (effective, permitted, inheritable) of the calling thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_syscall(ctypes.c_long(_numbers["capget"]), ctypes.byref(header), data))
    eff = data[0].effective | (data[1].effective << 32)
    prm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, prm, inh


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open *path* relative to *dirfd* under the *resolve* restrictions.

    With ``RESOLVE_IN_ROOT`` every ``..`` and absolute symlink is clamped to *dirfd*, which
    is how paths inside a container root are opened safely (an image can plant symlinks).
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_syscall(ctypes.c_long(_numbers["openat2"]), ctypes.c_int(dirfd),
                           os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)))
