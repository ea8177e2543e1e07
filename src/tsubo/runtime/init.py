"""Inside the fork chain: the intermediate process and the container's init.

Process chain (``runtime/spawn.py`` starts it)::

    runtime (parent)                      stays a child subreaper while it waits
     └─ intermediate  joins the cgroup and namespaces by path, unshares the new ones
         └─ init      PID 1 of the new pid namespace: builds the root, pivots, drops
                      privileges, reports "ready", waits on the exec fifo, execs

The intermediate exists because a new pid namespace applies to children only: after
unshare(CLONE_NEWPID) it forks the init and exits; the init is re-parented to the runtime
(a child subreaper) or, after ``create`` returns, to the caller's subreaper.

Both run single-threaded in a forked copy of the runtime, so every module they need is
imported before the fork; nothing is imported, and no user or host lookup is made, after
pivot_root (an image must never be able to supply code or NSS modules to this process:
CVE-2019-14271 class). Errors go back to the parent through the handshake and the process
exits with status 1 — it never returns into the runtime's own code.
"""

from __future__ import annotations

import _signal  # builtin; ``signal`` would pull in enum (~5 ms) for the same two calls
import os
import resource
import stat

from tsubo.errors import ExecFailed, TsuboError
from tsubo.kernel import capabilities, mounts, procfs, syscalls
from tsubo.kernel.flags import (
    CLONE_FLAGS,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    MS_RDONLY,
    NAMESPACE_FILES,
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    RLIMIT_NUMBERS,
)
from tsubo.runtime import handshake
from tsubo.runtime.plan import DEFAULT_PATH

O_PATH = getattr(os, "O_PATH", 0o10000000)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tsubo.kernel.cgroups import Cgroup
    from tsubo.kernel.console import ConsoleSocket
    from tsubo.kernel.seccomp import BpfFilter, SeccompFilter
    from tsubo.runtime.plan import LaunchPlan


class SetupContext:
    """What the children get from the runtime besides the plan: fds and paths."""

    __slots__ = ("cgroup", "child_to_parent", "console", "console_socket", "fifo_fd", "keyring",
                 "mount_base", "parent_to_child", "preserve_fds", "root_mount", "seccomp_cache",
                 "seccomp_filter", "start_by_handshake", "state_json", "stdio")

    def __init__(self, child_to_parent: int, parent_to_child: int, cgroup: Cgroup | None,
                 fifo_fd: int, console_socket: str, preserve_fds: int) -> None:
        self.child_to_parent = child_to_parent
        self.parent_to_child = parent_to_child
        self.cgroup = cgroup
        #: O_PATH fd of the exec fifo, opened by the runtime (a user namespace's root may
        #: not be able to reach the state folder); -1: none (exec, or `run`)
        self.fifo_fd = fifo_fd
        #: with no fifo: wait for START on the handshake (run) instead of exec'ing at once
        self.start_by_handshake = False
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.state_json = ""
        #: compiled / connected by :func:`load_host_code` in the runtime, before any fork
        self.seccomp_filter: SeccompFilter | BpfFilter | None = None
        #: where generated seccomp BPF is cached ("" = no cache)
        self.seccomp_cache = ""
        self.console: ConsoleSocket | None = None
        #: name of the new session keyring to join ("" keeps the caller's: --no-new-keyring)
        self.keyring = ""
        #: the fds to give the container as its stdin, stdout and stderr (None: the
        #: caller's own 0/1/2); set in the forked intermediate, never in the caller
        self.stdio: tuple[int, int, int] | None = None
        #: the mount namespace to copy the container's from (``kernel.mounts.make_mount_base``)
        #: and a detached copy of the root's mount to mount at ``root.path`` in it; -1: the
        #: caller's namespace, where the root is mounted already
        self.mount_base = -1
        self.root_mount = -1


def run_intermediate(plan: LaunchPlan, context: SetupContext,
                     child_main: Callable[[LaunchPlan, SetupContext], int] | None = None) -> int:
    """The intermediate process: join, unshare, fork the init (or, for exec, the new
    process: *child_main*), report its pid. Returns the exit status for ``os._exit``."""
    try:
        # Never dumpable: a process in the container must not reach our /proc/PID/exe, the
        # host's Python interpreter (CVE-2019-5736).
        syscalls.prctl(PR_SET_DUMPABLE, 0)
        if context.stdio is not None:
            take_stdio(context.stdio)
        if context.cgroup is not None:
            context.cgroup.join_self()
        join_namespaces(plan.join_namespaces)
        if context.mount_base >= 0:  # after the joins: their paths are the caller's
            try:
                syscalls.setns(context.mount_base, CLONE_NEWNS)
            except OSError as error:
                raise TsuboError.from_os_error("join", "the engine's mount namespace base",
                                               error) from None
        new = plan.new_namespaces
        if new & CLONE_NEWUSER:
            syscalls.unshare(CLONE_NEWUSER)
            handshake.send(context.child_to_parent, handshake.USERNS_READY)
            handshake.wait_for_resume(context.parent_to_child, handshake.MAPPED)
            become_root_in_userns()
        if new & ~CLONE_NEWUSER:
            try:
                syscalls.unshare(new & ~CLONE_NEWUSER)
            except OSError as error:
                raise TsuboError.from_os_error("unshare namespaces", _names(new), error) from None
        if new & CLONE_NEWNET:
            try:
                syscalls.loopback_up()
            except OSError as error:
                raise TsuboError.from_os_error("bring up", "lo", error) from None
        # The child waits until its pid has been reported, so the runtime always learns it
        # first and can kill and reap the child whatever happens next.
        gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(gate_write)
            reported = os.read(gate_read, 1)
            os.close(gate_read)
            os._exit((child_main or run_init)(plan, context) if reported else 1)
        os.close(gate_read)
        handshake.send(context.child_to_parent, handshake.PID, str(pid))
        os.write(gate_write, b"1")
        return 0
    except BaseException as error:
        handshake.send_error(context.child_to_parent, error)
        return 1


def _names(flags: int) -> str:
    return ",".join(name for name, flag in CLONE_FLAGS.items() if flags & flag)


def join_namespaces(joins: list[tuple[str, str]]) -> None:
    """setns(2) into each (type, path); every fd is opened first, while the paths still
    resolve in our own mount namespace, and the user namespace is joined first."""
    opened: list[tuple[str, str, int]] = []
    try:
        for kind, path in joins:
            try:
                opened.append((kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as error:
                raise TsuboError.from_os_error(f"open {kind} namespace", path, error) from None
        for kind, path, fd in opened:
            try:
                syscalls.setns(fd, CLONE_FLAGS[kind])
            except OSError as error:
                raise TsuboError.from_os_error(f"join {kind} namespace", path, error,
                                               hint="is it a namespace of that type?") from None
    finally:
        for _, _, fd in opened:
            os.close(fd)


def become_root_in_userns() -> None:
    """After the maps are written: take uid/gid 0 of the new user namespace."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as error:
        raise TsuboError.from_os_error("become root in", "user namespace", error,
                                       hint="do uidMappings/gidMappings map id 0?") from None


def run_init(plan: LaunchPlan, context: SetupContext) -> int:
    """The container's init until execve. Returns an exit status only on failure."""
    write_fd = context.child_to_parent
    try:
        os.setsid()
        if context.keyring:
            join_keyring(context.keyring)
        seccomp_filter = context.seccomp_filter
        keep = close_inherited_fds(context)
        fifo_fd = context.fifo_fd
        setup_root(plan, context)
        executable = setup_process(plan, seccomp_filter, context.console)
        handshake.send(write_fd, handshake.READY)
        if context.start_by_handshake:
            # `run`: the runtime starts us through the handshake, not the exec fifo, and
            # keeps reading it: our end is O_CLOEXEC, so its EOF tells the runtime that we
            # exec'd (poststart hooks wait for that), and a failing hook is reported on it.
            handshake.wait_for_resume(context.parent_to_child, handshake.START)
            os.close(context.parent_to_child)
        else:
            os.close(write_fd)
            os.close(context.parent_to_child)
            write_fd = -1  # nobody reads the handshake any more: report on our stderr
            wait_for_start(fifo_fd)
        del keep
        run_in_container_hooks(plan, "startContainer", context)
        if seccomp_filter is not None and plan.process.no_new_privileges:
            # As late as possible, so our own few remaining syscalls are not filtered.
            seccomp_filter.load()
        exec_process(executable, plan.process.args, plan.process.env)
    except BaseException as error:
        report_failure(write_fd, error)
        return 1
    return 1  # not reached: exec_process does not return


def run_exec_init(plan: LaunchPlan, context: SetupContext) -> int:
    """``exec``: the new process, already in the container's namespaces and cgroup."""
    write_fd = context.child_to_parent
    try:
        if plan.process.terminal:
            os.setsid()
        seccomp_filter = context.seccomp_filter
        close_inherited_fds(context)
        executable = setup_process(plan, seccomp_filter, context.console)
        handshake.send(write_fd, handshake.READY)
        os.close(write_fd)
        os.close(context.parent_to_child)
        write_fd = -1
        if seccomp_filter is not None and plan.process.no_new_privileges:
            seccomp_filter.load()
        exec_process(executable, plan.process.args, plan.process.env)
    except BaseException as error:
        report_failure(write_fd, error)
    return 1


def report_failure(fd: int, error: BaseException) -> None:
    """To the parent through the handshake (*fd*); once that is closed (-1), on stderr."""
    if fd >= 0:
        handshake.send_error(fd, error)
        return
    text = error.message() if isinstance(error, TsuboError) else str(error)
    try:
        os.write(2, f"tsubo-runtime: {text}\n".encode())
    except OSError:
        pass


def join_keyring(name: str) -> None:
    try:
        syscalls.join_session_keyring(name)
    except OSError as error:
        if error.errno != 38:  # ENOSYS: a kernel without keys; nothing to isolate
            raise TsuboError.from_os_error("join session keyring", name, error,
                                           hint="--no-new-keyring skips it") from None


def load_host_code(plan: LaunchPlan, context: SetupContext) -> None:
    """In the runtime, before anything forks: load all the host code and host objects the
    children need beyond this module's imports — the seccomp filter (compiled through
    libseccomp), the console module (``socket``) and the connection to the console socket
    (a host path), the hook runner when the container has in-container hooks, the tree
    copier when a mount asks for ``tmpcopyup``. After the fork the children change
    namespaces (``exec`` joins the container's mount namespace before its process is set
    up); an import, dlopen or path lookup there would reach into the container's image from
    a privileged process. (What most containers never need is loaded only here, when they
    do: each module is ~0.1 ms of every ``create``.)"""
    if plan.hooks.get("createContainer") or plan.hooks.get("startContainer"):
        import tsubo.runtime.hooks  # run_in_container_hooks
    if any(step.copy_up for step in plan.mounts):
        import tsubo.kernel.untrusted  # noqa: F401 - mounts.mount_step's tmpcopyup
    if plan.seccomp is not None:
        from tsubo.kernel import seccomp

        if context.seccomp_cache:
            context.seccomp_filter = seccomp.compile_filter_cached(plan.seccomp,
                                                                   context.seccomp_cache)
        else:
            context.seccomp_filter = seccomp.compile_filter(plan.seccomp)
    if plan.process.terminal:
        if not context.console_socket:
            raise TsuboError("set up terminal", "process.terminal",
                             detail="a terminal needs --console-socket")
        from tsubo.kernel.console import ConsoleSocket

        context.console = ConsoleSocket(context.console_socket)


def take_stdio(stdio: tuple[int, int, int]) -> None:
    """Make *stdio* this process's fds 0, 1 and 2 (through copies first, so a source that is
    itself 0, 1 or 2 is not overwritten before it is used)."""
    copies = [os.dup(fd) for fd in stdio]
    for target, copy in enumerate(copies):
        os.dup2(copy, target)
        os.close(copy)


def close_inherited_fds(context: SetupContext) -> set[int]:
    """Close every fd but stdio, the preserved ones and our two pipes, so nothing of the
    host is reachable from the container (CVE-2016-9962, CVE-2024-21626). Uses
    close_range(2) over the gaps (``os.closerange``), no /proc listing."""
    keep = {0, 1, 2, context.child_to_parent, context.parent_to_child}
    if context.fifo_fd >= 0:
        keep.add(context.fifo_fd)
    if context.console is not None:
        keep.add(context.console.fileno())
    if context.root_mount >= 0:
        keep.add(context.root_mount)
    keep.update(range(3, 3 + context.preserve_fds))
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())
    return keep


def _max_fd() -> int:
    """An upper bound on open fds: the larger RLIMIT_NOFILE value (an fd opened before the
    soft limit was lowered may lie above it), capped at the kernel's nr_open default."""
    limit = max(resource.getrlimit(resource.RLIMIT_NOFILE))
    return limit if 0 < limit < 1 << 20 else 1 << 20


def setup_root(plan: LaunchPlan, context: SetupContext) -> None:
    """Build the container's file system view and switch into it."""
    mounts.prepare_root(plan.rootfs, plan.root_propagation, context.root_mount)
    root_fd = os.open(plan.rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        for step in plan.mounts:
            if step.fstype == "cgroup" and context.cgroup is not None:
                # A v1-style "cgroup" entry becomes the per-hierarchy tree of this host.
                entries = context.cgroup.mount_plan(plan.cgroupns,
                                                    read_only=bool(step.flags & MS_RDONLY))
                mounts.mount_entries(root_fd, step.destination, entries)
            else:
                mounts.mount_step(root_fd, step)
        bind_devices = plan.userns
        for node in plan.devices:
            mounts.create_device(root_fd, node, bind_devices)
        for target, link in plan.dev_symlinks:
            mounts.create_symlink(root_fd, target, link)
    finally:
        os.close(root_fd)
    if any(plan.hooks.get(name) for name in ("prestart", "createRuntime", "createContainer",
                                             "startContainer")):
        handshake.send(context.child_to_parent, handshake.HOOKS_DUE)
        fields = handshake.wait_for_resume(context.parent_to_child, handshake.RESUME)
        context.state_json = fields[0] if fields else ""
        run_in_container_hooks(plan, "createContainer", context)
    if plan.hostname:
        syscalls.sethostname(plan.hostname)
    if plan.domainname:
        syscalls.setdomainname(plan.domainname)
    if plan.no_pivot:
        mounts.chroot_into(plan.rootfs)
    else:
        mounts.pivot_into(plan.rootfs)


def setup_process(plan: LaunchPlan, seccomp_filter: SeccompFilter | BpfFilter | None,
                  console: ConsoleSocket | None) -> str:
    """Everything after pivot_root, in the order the kernel needs it: sysctls and masks
    while we still hold CAP_SYS_ADMIN, then identity, capabilities and no_new_privs."""
    process = plan.process
    for key, value in plan.sysctl.items():
        procfs.write_sysctl(key.replace(".", "/"), value, operation=f"sysctl {key}")
    if console is not None:
        console.attach_new_pty(process.console_size)
    for path in plan.masked_paths:
        mounts.mask_path(path)
    for path in plan.readonly_paths:
        mounts.make_readonly(path)
    if plan.root_readonly:
        mounts.make_root_readonly()
    # last of the mounts: masking binds /dev/null, which an unbindable tree would refuse
    mounts.propagate_new_root(plan.root_propagation)
    if process.oom_score_adj is not None:
        procfs.write("/proc/self/oom_score_adj", str(process.oom_score_adj),
                     operation="set oomScoreAdj",
                     hint="lowering it needs CAP_SYS_RESOURCE, which this host's root may lack")
    if process.apparmor_profile:
        procfs.write("/proc/self/attr/apparmor/exec", f"exec {process.apparmor_profile}",
                     operation="set apparmor profile")
    for number, soft, hard in process.rlimits:
        try:
            resource.setrlimit(number, (soft, hard))
        except (OSError, ValueError) as error:
            raise TsuboError("set rlimit", _rlimit_name(number),
                             errno=getattr(error, "errno", 0) or 1,
                             detail=f"soft {soft}, hard {hard}",
                             hint="raising a hard limit needs CAP_SYS_RESOURCE, which this "
                             "host's root lacks") from None
    caps = process.capabilities
    highest = capabilities.last_cap()
    if seccomp_filter is not None and not process.no_new_privileges:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the
        # capabilities are dropped (runc's order).
        seccomp_filter.load()
    _step("drop bounding capabilities", "", capabilities.drop_bounding, caps.bounding, highest)
    syscalls.prctl(PR_SET_KEEPCAPS, 1)
    _step("set additional groups", str(process.additional_gids), os.setgroups,
          process.additional_gids)
    _step("set gid", str(process.gid), os.setresgid, process.gid, process.gid, process.gid)
    _step("set uid", str(process.uid), os.setresuid, process.uid, process.uid, process.uid)
    syscalls.prctl(PR_SET_KEEPCAPS, 0)
    _step("set capabilities", "", capabilities.set_process_capabilities, caps)
    os.umask(process.umask)
    if process.no_new_privileges:
        syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
    try:
        os.chdir(process.cwd)
    except OSError as error:
        raise TsuboError.from_os_error("change to working directory", process.cwd,
                                       error) from None
    if not cwd_inside_root():
        raise TsuboError("change to working directory", process.cwd,
                         detail="it is outside the container root")
    return resolve_executable(plan.process.args[0], plan.process.env)


def cwd_inside_root() -> bool:
    """Whether our working directory is inside our root (CVE-2024-21626: a cwd reached
    through a leaked host fd is not). getcwd(2) says "(unreachable)" for one outside; if a
    seccomp filter denies getcwd (already loaded when noNewPrivileges is false), walk ".."
    from the cwd instead: inside the root the walk meets "/" (the kernel stops ".." there),
    outside it ends at a directory that is its own parent without meeting it."""
    try:
        return not os.getcwd().startswith("(unreachable)")
    except OSError:
        pass
    root = os.stat("/")
    fd = os.open(".", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _depth in range(4096):
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) == (root.st_dev, root.st_ino):
                return True
            parent = os.open("..", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = parent
            above = os.fstat(fd)
            if (above.st_dev, above.st_ino) == (here.st_dev, here.st_ino):
                return False
        return False
    finally:
        os.close(fd)


def _step(operation: str, obj: str, function: Callable[..., object], *args: object) -> None:
    try:
        function(*args)
    except OSError as error:
        raise TsuboError.from_os_error(operation, obj, error) from None


def _rlimit_name(number: int) -> str:
    return next((name for name, value in RLIMIT_NUMBERS.items() if value == number),
                str(number))


def resolve_executable(program: str, env: dict[str, str]) -> str:
    """Find *program* on the container's PATH now, so a missing program fails ``create``
    (as in runc), with the words podman and containerd look for."""
    if "/" in program:
        candidates = [program]
    else:
        path = env.get("PATH") or DEFAULT_PATH
        candidates = [f"{directory or '.'}/{program}" for directory in path.split(":")]
    denied = False
    for candidate in candidates:
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):
            return candidate
        denied = True
    # runc's words (Go's exec.LookPath and os.Stat): see errors.ExecFailed
    if denied:
        raise ExecFailed("exec", program, errno=13, detail="permission denied")
    if "/" in program:
        detail = f"stat {program}: no such file or directory"
    else:
        detail = "executable file not found in $PATH"
    raise ExecFailed("exec", program, errno=2, detail=detail)


def wait_for_start(fifo_fd: int) -> None:
    """Block until ``start`` opens the exec fifo, then tell it we are going. The write end
    stays open (O_CLOEXEC) until execve closes it: ``start`` reads to EOF before it runs
    the poststart hooks, which the spec orders after the program has been executed."""
    fd = os.open(mounts.fd_path(fifo_fd), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fifo_fd)  # `fd` itself is left open on purpose (see above)


def run_in_container_hooks(plan: LaunchPlan, name: str, context: SetupContext) -> None:
    """Run createContainer / startContainer hooks from inside the container's namespaces."""
    entries = plan.hooks.get(name)
    if entries:
        # loaded before the fork by load_host_code: no file is looked up here
        from tsubo.runtime import hooks

        hooks.run_hooks(name, entries, context.state_json)


def exec_process(executable: str, args: list[str], env: dict[str, str]) -> None:
    """Replace this process with the container's program."""
    restore_default_signals()
    try:
        os.execve(executable, args, env)
    except OSError as error:
        raise TsuboError.from_os_error("exec", executable, error) from None


def restore_default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve, so put them back
    to their defaults or the container's program would inherit them."""
    for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(number, _signal.SIG_DFL)


def namespace_file(pid: int, kind: str) -> str:
    """/proc/PID/ns/<name> for an OCI namespace type."""
    return f"/proc/{pid}/ns/{NAMESPACE_FILES[kind]}"


