"""iproute2 in batch mode: the only module that runs ``ip``.

What it owns
    Running ``ip [-n NETNS] [-force] -batch -`` with a list of lines (one process for a whole
    setup, never one per step), ``ip -j ...`` queries, entering a named network namespace
    with the calling thread (:class:`InNetns`, in which :func:`tsubo.kernel.procfs.write_sysctl`
    reaches that namespace's ``/proc/sys/net``), removing a netns pin, and a link's MTU
    (:func:`link_mtu`: an ``ioctl``, ~10 µs, where an ``ip`` process costs ~1.5 ms).

Decisions
    * ``ip`` runs through :func:`tsubo.kernel.helpers.run` (posix_spawn, memfds, no
      :mod:`subprocess`; see there), one process per batch.
    * ``ip -j`` output is parsed with :func:`tsubo.jsonwire.loads`, the one bounded JSON
      reader, which sits below every layer (as :mod:`tsubo.errors` does): kernel/ imports no
      other part of tsubo to read it.
    * ``LC_ALL=C`` for ``ip``: error texts end in ``strerror()`` strings, which we map back to
      errno (``RTNETLINK answers: File exists`` -> EEXIST) for callers that match on it,
      e.g. teardown treating ENODEV/ENOENT as "already gone".
    * ``ip -batch`` stops at the first failing line and reports ``Command failed -:N``
      after the error text; :class:`IpError` maps N back to the line we sent. A line ip
      cannot even parse (``master BR`` of a missing device) makes it exit at once without
      that report: the line is then found by the argument the message quotes. ``-force``
      (``keep_going=True``) runs every line and reports each failure: teardown uses it to
      remove everything it can in one process and still report all that failed.
    * :class:`InNetns` uses ``setns(2)`` on the calling *thread* only (network namespaces
      are per-thread). A child spawned inside inherits that namespace, so
      ``with InNetns(ns): procfs.write_sysctl(...); run_batch(...)`` configures a container's
      namespace with one ``ip`` process (a bit cheaper than ``ip -n``, which also unshares a
      mount namespace and remounts /sys) *and* lets us write per-netns sysctls, which ip
      has no command for.
"""

from __future__ import annotations

import os

from tsubo.errors import TsuboError
from tsubo.kernel import helpers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_MNT_DETACH = 2
_ENOENT = 2
_EINVAL = 22
_FAILED_PREFIX = "Command failed -:"
# messages of ip that carry no strerror() text
_KNOWN_MESSAGES = (("Cannot find device", "ENODEV"), ("Device does not exist", "ENODEV"))

_strerror_map: dict[str, int] | None = None


class IpError(helpers.HelperError):
    """``ip`` failed. ``object`` is the batch line that failed (the command when the failure
    is not tied to a line), ``detail`` what ip printed for it; ``errno`` is recovered from
    that text when possible, unless given (:mod:`tsubo.kernel.rtnetlink` has it from the
    kernel and reports its requests' failures as this, named by their ip lines)."""

    def __init__(self, line: str, detail: str, *, lineno: int = 0, status: int = 0,
                 netns: str | None = None, hint: str = "", errno: int | None = None) -> None:
        self.line = line
        self.lineno = lineno
        self.netns = netns
        where = f" (in netns {netns})" if netns else ""
        super().__init__("ip", f'"{line}"{where}', program="ip", status=status,
                         stderr_line=detail,
                         errno=errno_of_message(detail) if errno is None else errno,
                         detail=detail or f"exit status {status}", hint=hint)


def spawn_ip(args: Sequence[str], stdin: bytes = b"", *,
             timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """Run ``ip ARGS...`` with *stdin*; returns (exit code, stdout, stderr)."""
    result = helpers.run(["ip", *args], stdin=stdin, timeout=timeout, operation="ip")
    if result.timed_out:
        raise result.error()
    return result.exit_code, result.stdout, result.stderr


def _netns_args(netns: str | None) -> list[str]:
    return ["-n", netns] if netns else []


def run_batch(lines: Sequence[str], *, netns: str | None = None,
              keep_going: bool = False) -> list[IpError]:
    """``ip [-n NETNS] -batch -`` fed *lines*.

    Default: stop at the first failing line and raise its :class:`IpError`.
    ``keep_going=True`` (``-force``): run every line and return one IpError per failed
    line (empty when all succeeded). Either way a failure not tied to a line (e.g. the netns
    does not exist) raises.
    """
    if not lines:
        return []
    args = [*_netns_args(netns), *(["-force"] if keep_going else []), "-batch", "-"]
    status, _, err = spawn_ip(args, ("\n".join(lines) + "\n").encode())
    if status == 0:
        return []
    stderr = err.decode(errors="replace")
    failures = parse_batch_errors(stderr)
    if not failures:
        # ip exits at once, without "Command failed", when it cannot parse a line (e.g.
        # `master BR` names a missing device): find the line by the argument it quotes.
        lineno = _line_of_bad_argument(stderr, lines)
        if not lineno:
            raise IpError(" ".join(["ip", *args]), _squash(stderr), status=status, netns=netns)
        failures = [(lineno, _squash(stderr))]
    errors = []
    for lineno, message in failures:
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else f"line {lineno}"
        errors.append(IpError(line, message, lineno=lineno, status=status, netns=netns))
    if not keep_going:
        raise errors[0]
    return errors


def parse_batch_errors(stderr: str) -> list[tuple[int, str]]:
    """``(line number, message)`` for each ``Command failed -:N`` in ip's stderr; the
    message is what ip printed since the previous failure (lines joined with ``; ``)."""
    failures: list[tuple[int, str]] = []
    pending: list[str] = []
    for raw in stderr.splitlines():
        text = raw.strip()
        if text.startswith(_FAILED_PREFIX):
            try:
                lineno = int(text[len(_FAILED_PREFIX):])
            except ValueError:
                lineno = 0
            failures.append((lineno, "; ".join(pending) or "failed"))
            pending = []
        elif text:
            pending.append(text)
    return failures


def _line_of_bad_argument(stderr: str, lines: Sequence[str]) -> int:
    """Number of the first line holding the argument ip complains about
    (``Error: argument "X" is wrong: ...``, ``Error: "X" is not a valid ...``); 0 if none."""
    for part in stderr.split('"')[1::2]:
        for number, line in enumerate(lines, 1):
            if part in line.split():
                return number
    return 0


def _squash(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def errno_of_message(message: str) -> int:
    """The errno whose ``strerror()`` text ends one of ip's messages; 0 when none does."""
    global _strerror_map
    if not message:
        return 0
    import errno as errno_module

    for text, name in _KNOWN_MESSAGES:
        if text in message:
            return int(getattr(errno_module, name))
    if _strerror_map is None:
        _strerror_map = {os.strerror(n): n for n in sorted(errno_module.errorcode, reverse=True)}
    for part in reversed(message.split("; ")):
        tail = part.rstrip(".").rsplit(": ", 1)[-1]
        if tail in _strerror_map:
            return _strerror_map[tail]
    return 0


def query(args: Sequence[str], *, netns: str | None = None) -> object:
    """``ip [-n NETNS] -j ARGS...`` parsed as JSON (``[]`` when ip prints nothing)."""
    from tsubo import jsonwire

    text = query_text(args, netns=netns)
    return jsonwire.loads(text) if text.strip() else []


def query_text(args: Sequence[str], *, netns: str | None = None,
               timeout: float | None = None, hint: str = "") -> str:
    """``ip [-n NETNS] -j ARGS...``'s output, not parsed (IpError, with *hint*, on failure)."""
    argv = [*_netns_args(netns), "-j", *args]
    status, out, err = spawn_ip(argv, timeout=timeout)
    if status != 0:
        raise IpError(" ".join(["ip", *argv]), _squash(err.decode(errors="replace")),
                      status=status, netns=netns, hint=hint)
    return out.decode()


class InNetns:
    """``with InNetns("c1"):`` the calling thread is in the network namespace pinned at
    ``/run/netns/c1`` and returns to its own on exit, also on errors. ``InNetns(None)`` does
    nothing. Not re-entrant; other threads are unaffected."""

    __slots__ = ("_name", "_own_fd")

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._own_fd = -1

    def __enter__(self) -> InNetns:
        if self._name is None:
            return self
        from tsubo.kernel import syscalls

        path = f"{NETNS_DIR}/{self._name}"
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise TsuboError.from_os_error("enter netns", path, error) from None
        try:
            self._own_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            syscalls.setns(target, _CLONE_NEWNET)
        except OSError as error:
            if self._own_fd >= 0:
                os.close(self._own_fd)
                self._own_fd = -1
            raise TsuboError.from_os_error("enter netns", path, error) from None
        finally:
            os.close(target)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._own_fd < 0:
            return
        from tsubo.kernel import syscalls

        try:
            # Must not fail silently: staying in the container's netns would make every
            # later host-side step act on the container.
            syscalls.setns(self._own_fd, _CLONE_NEWNET)
        except OSError as error:
            raise TsuboError.from_os_error("return to own netns", "/proc/thread-self/ns/net",
                                           error) from error
        finally:
            os.close(self._own_fd)
            self._own_fd = -1


def copy_netns_pin(name: str, new_name: str) -> None:
    """Pin the namespace pinned at ``/run/netns/NAME`` at ``/run/netns/NEW_NAME`` too (a
    bind mount of the pin: no process, no pid that could have been reused); the new file
    is made exclusively, and removed again if the mount fails."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import MS_BIND

    source, target = f"{NETNS_DIR}/{name}", f"{NETNS_DIR}/{new_name}"
    try:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except OSError as error:
        raise TsuboError.from_os_error("pin netns", target, error) from None
    try:
        syscalls.mount(source, target, None, MS_BIND)
    except OSError as error:
        os.unlink(target)
        raise TsuboError.from_os_error("pin netns", target, error) from None


def add_netns_pin(name: str) -> None:
    """``ip netns add NAME`` in-process (~0.1 ms instead of an ``ip`` process's ~1.5):
    ``/run/netns`` made a shared mount as ip makes it (so pins reach other mount
    namespaces), the pin file made exclusively (EEXIST: IpError, as ip's), and a new
    network namespace, made by a short-lived thread of ours, bind-mounted on it; its
    loopback stays down, as after ``ip netns add``. On failure nothing is left."""
    import _thread

    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import CLONE_NEWNET, MS_BIND, MS_REC, MS_SHARED

    target = f"{NETNS_DIR}/{name}"
    try:
        os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
        try:
            syscalls.mount(None, NETNS_DIR, "none", MS_SHARED | MS_REC)
        except OSError as error:
            if error.errno != _EINVAL:
                raise
            # not a mount point yet: ip binds it on itself first
            syscalls.mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC)
            syscalls.mount(None, NETNS_DIR, "none", MS_SHARED | MS_REC)
    except OSError as error:
        raise TsuboError.from_os_error("pin netns", NETNS_DIR, error) from None
    try:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except OSError as error:
        raise IpError(f"netns add {name}", f"Cannot create namespace file \"{target}\": "
                      f"{os.strerror(error.errno or 0)}") from None

    def make() -> None:  # the thread's new namespace outlives it on the pin
        syscalls.unshare(CLONE_NEWNET)
        syscalls.mount(f"/proc/self/task/{_thread.get_native_id()}/ns/net", target, None,
                       MS_BIND)

    try:
        syscalls.in_own_thread(make)
    except OSError as error:
        os.unlink(target)
        raise TsuboError.from_os_error("pin netns", target, error) from None


def link_mtu(name: str) -> int:
    """The MTU of link NAME in the calling thread's network namespace (``SIOCGIFMTU`` on
    a throwaway socket; ``/sys/class/net`` would show the namespace sysfs was mounted in).
    IpError (ENODEV) when there is no such link."""
    import _socket
    import fcntl

    siocgifmtu = 0x8921
    request = name.encode()[:15].ljust(40, b"\0")  # struct ifreq: name[16], then the int
    probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, 0)
    try:
        answer = fcntl.ioctl(probe.fileno(), siocgifmtu, request)
    except OSError as error:
        raise IpError(f"link show dev {name}", os.strerror(error.errno or 0)) from None
    finally:
        probe.close()
    return int.from_bytes(answer[16:20], "little", signed=True)


def remove_netns_pin(name: str) -> bool:
    """What ``ip netns del NAME`` does, without a process (~0.05 ms instead of ~1.6 ms):
    detach-unmount ``/run/netns/NAME`` and unlink it. The namespace dies with its last user,
    and its links with it (the kernel's netns cleanup runs asynchronously: the host end of a
    veth can outlive this call by a few ms). False when there was no pin."""
    from tsubo.kernel import syscalls

    path = f"{NETNS_DIR}/{name}"
    try:
        syscalls.umount2(path, _MNT_DETACH)
    except OSError as error:
        if error.errno == _ENOENT:
            return False
        if error.errno != _EINVAL:  # EINVAL: a stale file, not a mount point: unlink it
            raise TsuboError.from_os_error("unmount netns pin", path, error) from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise TsuboError.from_os_error("remove netns pin", path, error) from None
    return True

