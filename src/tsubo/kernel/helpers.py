"""Running helper programs: the one way tsubo starts ``ip``, ``nft``, ``iptables``, OCI hooks.

What it owns
    :func:`run` — start a program with its stdin given as bytes and its stdout and stderr
    captured, optionally inside a named network namespace or under a timeout, and return a
    :class:`HelperResult`; :func:`which` / :func:`require` — where a program is (looked up
    once per process); :class:`HelperError` — the one error for a program that failed,
    naming the program and what its stderr said last. ``kernel/iproute.py``,
    ``kernel/nftables.py`` and ``runtime/hooks.py`` are built on it.

Decisions
    * No :mod:`subprocess`: importing it costs ~10-18 ms here (``selectors``, ``signal``,
      ``threading``...), more than a whole network endpoint setup and half a container start.
      Programs are started with :func:`os.posix_spawn` (glibc's is a ``clone(CLONE_VFORK)``:
      no copy of the interpreter's memory, and exec errors come back as an OSError).
    * stdin, stdout and stderr are memfds: the input is written before the spawn, the output
      read after the exit. Nothing can deadlock on a full pipe however much a program reads
      or writes, no poll loop is needed, and a program that leaves a daemon behind holding
      its stdout cannot hang us waiting for EOF.
    * A timeout waits on a pidfd (``poll(2)``, exact to the millisecond); on expiry the
      program is SIGKILLed and reaped, and the result says so. Without a timeout: a
      blocking ``waitpid``.
    * ``netns``: run inside a network namespace (``/run/netns/NAME``, or a path) through
      ``nsenter --net=PATH --`` with the program's absolute path. ``ip netns exec`` also
      unshares a mount namespace and remounts ``/sys`` (measured here, 100 runs of
      ``nft -j list ruleset``: nsenter 3.6 ms, ip netns exec 4.1 ms, nft alone 2.2 ms).
    * Environment: ``LC_ALL=C`` (error texts end in ``strerror()`` strings that callers map
      back to errno) and a PATH that includes the sbin directories (cron and ``sudo -E``
      environments often lack them), unless the caller gives its own (a hook gets exactly
      the ``env`` of its config).
    * Safe in a container's init after ``pivot_root`` (``startContainer`` hooks): this module
      imports only built-in modules, at load time, and a program given by absolute path is
      not looked up.
    * The error line: the last line of stderr that holds ``Error:`` (from that word on; nft
      and ip print the input they choke on and a ``^^^`` marker *after* it), else the last
      non-blank line (iptables, hooks).
"""

from __future__ import annotations

import os
import select  # built-in; for poll(2) on a pidfd
import time

from tsubo.errors import TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

NETNS_DIR = "/run/netns"
#: where programs are looked up after $PATH (cron and sudo environments often lack them)
EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
#: the package that provides a program, for the "not found" hint
_PACKAGES = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux",
             "iptables-nft": "iptables", "iptables-legacy": "iptables",
             "ip6tables-nft": "iptables", "ip6tables-legacy": "iptables"}
_SIGKILL = 9
_found: dict[str, str] = {}
_tool_env: dict[str, str] | None = None


class HelperError(TsuboError):
    """A helper program failed (or could not be started). ``program`` is its path,
    ``status`` its exit code (negative: the signal that killed it), ``stderr_line`` the line
    of its stderr that says what went wrong. The message is one line:
    ``OPERATION OBJECT: exit status 1: Error: ...``."""

    def __init__(self, operation: str, obj: str = "", *, program: str, status: int = 0,
                 stderr_line: str = "", detail: str = "", errno: int = 0,
                 hint: str = "") -> None:
        self.program = program
        self.status = status
        self.stderr_line = stderr_line
        super().__init__(operation, obj, errno=errno, detail=detail, hint=hint)


class HelperResult:
    """How one run ended: ``exit_code`` (negative: killed by that signal), the captured
    ``stdout`` and ``stderr`` (bytes), and whether the timeout killed it."""

    __slots__ = ("argv", "exit_code", "obj", "operation", "pid", "program", "stderr",
                 "stdout", "timed_out", "timeout")

    def __init__(self, argv: Sequence[str], program: str, exit_code: int, stdout: bytes,
                 stderr: bytes, *, operation: str = "run", obj: str = "",
                 timeout: float | None = None, timed_out: bool = False, pid: int = 0) -> None:
        self.argv = list(argv)
        #: the process it ran as (nftables names it in its change notifications)
        self.pid = pid
        self.program = program
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.operation = operation
        self.obj = obj
        self.timeout = timeout
        self.timed_out = timed_out

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def text(self) -> str:
        """stdout as text (undecodable bytes replaced)."""
        return self.stdout.decode(errors="replace")

    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")

    def stderr_line(self) -> str:
        """The line of stderr that says what went wrong (see the module docstring)."""
        return error_line(self.stderr_text())

    def describe(self) -> str:
        """``exit status 1``, ``killed by signal 9``, ``timed out after 5 s and was killed``."""
        if self.timed_out:
            return f"timed out after {self.timeout:g} s and was killed"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit status {self.exit_code}"

    def error(self, operation: str | None = None, obj: str | None = None, *,
              hint: str = "") -> HelperError:
        """The :class:`HelperError` for this run: ``OPERATION OBJECT: exit status N: LINE``
        (object: the command line unless given)."""
        line = self.stderr_line()
        detail = self.describe() + (f": {line}" if line else "")
        return HelperError(operation or self.operation,
                           obj if obj is not None else (self.obj or " ".join(self.argv)),
                           program=self.program, status=self.exit_code, stderr_line=line,
                           detail=detail, hint=hint)

    def check(self, *, hint: str = "") -> HelperResult:
        """This result if the program succeeded, else raise its :meth:`error`."""
        if not self.ok:
            raise self.error(hint=hint)
        return self


def error_line(stderr: str) -> str:
    """The last line holding ``Error:`` (from there on), else the last non-blank line."""
    last = ""
    for raw in reversed(stderr.splitlines()):
        line = raw.strip()
        if not line:
            continue
        if "Error:" in line:
            return line[line.index("Error:"):]
        last = last or line
    return last


def which(name: str) -> str | None:
    """Absolute path of program *name* ($PATH, then :data:`EXTRA_PATH`); a name with a
    slash is taken as it is if executable. Cached for the process."""
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    found = _found.get(name)
    if found is not None:
        return found
    for directory in (*os.environ.get("PATH", "").split(os.pathsep), *EXTRA_PATH):
        if not directory.startswith("/"):
            continue  # a relative $PATH entry would depend on our cwd
        candidate = f"{directory}/{name}"
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            _found[name] = candidate
            return candidate
    return None


def require(name: str) -> str:
    """:func:`which`, or Unsupported naming the package to install."""
    path = which(name)
    if path is None:
        base = name.rsplit("/", 1)[-1]
        raise Unsupported(f"run {base}", detail="not found on this host",
                          hint=f"install {_PACKAGES.get(base, base)}")
    return path


def tool_env() -> dict[str, str]:
    """The environment of a tool run: ``LC_ALL=C`` and $PATH plus the sbin directories."""
    global _tool_env
    if _tool_env is None:
        path = os.environ.get("PATH", "")
        _tool_env = {"LC_ALL": "C",
                     "PATH": ":".join([*(d for d in path.split(":") if d), *EXTRA_PATH])}
    return _tool_env


def run(argv: Sequence[str], *, stdin: bytes = b"", program: str | None = None,
        env: Mapping[str, str] | None = None, netns: str | None = None,
        timeout: float | None = None, operation: str = "run", obj: str = "") -> HelperResult:
    """Run ARGV (``argv[0]`` looked up unless *program* gives the path) with *stdin*, and
    return how it ended; a program that cannot be started raises :class:`HelperError`
    (errno set), one that does not exist ``Unsupported``. *operation* and *obj* name the
    errors :meth:`HelperResult.check` raises (the object defaults to the command line)."""
    path = program or require(argv[0])
    spawned = list(argv)
    executable = path
    if netns is not None:
        where = netns if "/" in netns else f"{NETNS_DIR}/{netns}"
        executable = require("nsenter")
        spawned = ["nsenter", f"--net={where}", "--", path, *argv[1:]]
    fds = [_memfd("tsubo-stdin", stdin), _memfd("tsubo-stdout"), _memfd("tsubo-stderr")]
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        try:
            pid = os.posix_spawn(executable, spawned, tool_env() if env is None else env,
                                 file_actions=actions)
        except OSError as error:
            raise HelperError(operation, obj or path, program=path,
                              errno=error.errno or 0) from None
        status, timed_out = _wait(pid, timeout)
        return HelperResult(argv, path, os.waitstatus_to_exitcode(status), _read_all(fds[1]),
                            _read_all(fds[2]), operation=operation, obj=obj, timeout=timeout,
                            timed_out=timed_out, pid=pid)
    finally:
        for fd in fds:
            os.close(fd)


def _memfd(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _wait(pid: int, timeout: float | None) -> tuple[int, bool]:
    """waitpid for *pid*; with *timeout*, SIGKILL it when the time is up. Returns the wait
    status and whether it was killed for the timeout."""
    if timeout is None:
        return os.waitpid(pid, 0)[1], False
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # ENOSYS: a kernel before 5.3 has no pidfds
        return _wait_polling(pid, timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        exited = poller.poll(max(0, int(timeout * 1000)))
    finally:
        os.close(pidfd)
    if exited:
        return os.waitpid(pid, 0)[1], False
    return _kill_and_reap(pid), True


def _wait_polling(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return status, False
        if time.monotonic() >= deadline:
            return _kill_and_reap(pid), True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _kill_and_reap(pid: int) -> int:
    try:
        os.kill(pid, _SIGKILL)  # not reaped yet: the pid cannot have been reused
    except ProcessLookupError:
        pass
    return os.waitpid(pid, 0)[1]
