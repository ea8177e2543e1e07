"""The parent side of the fork chain: start the container's init and see it ready.

:func:`spawn` forks the intermediate process (``runtime/init.py`` has the child side),
answers its requests over the handshake (uid/gid maps, createRuntime hooks) and returns
once the init reports "ready" — set up and blocked on the exec fifo — or raises the
child's own error. On failure nothing it started survives: the init is killed and reaped.
"""

from __future__ import annotations

import os

from tsubo.errors import TsuboError
from tsubo.kernel import procfs, syscalls
from tsubo.kernel.flags import PR_SET_CHILD_SUBREAPER
from tsubo.runtime import handshake, init

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tsubo.runtime.plan import LaunchPlan


class Spawned:
    """The init process of a container that is set up and waiting."""

    __slots__ = ("channel", "pid", "start_fd")

    def __init__(self, pid: int, start_fd: int = -1,
                 channel: handshake.Channel | None = None) -> None:
        self.pid = pid
        #: the handshake, kept open when the init waits for START (``run``), else unused
        self.start_fd = start_fd
        self.channel = channel

    def start(self) -> None:
        """Tell an init that waits on the handshake to exec, and return once it has: its
        end of the pipe is O_CLOEXEC, so EOF means execve happened (or the init died);
        an error frame means a startContainer hook or the exec itself failed."""
        assert self.channel is not None
        try:
            handshake.send(self.start_fd, handshake.START)
            os.close(self.start_fd)
            self.start_fd = -1
            message = self.channel.receive()
            if message is not None:
                raise TsuboError("start container", self.channel.peer,
                                 detail=f"unexpected message {message[0]!r} from the init")
        finally:
            self.close()

    def close(self) -> None:
        if self.start_fd >= 0:
            os.close(self.start_fd)
            self.start_fd = -1
        if self.channel is not None:
            os.close(self.channel.read_fd)
            self.channel = None


def spawn(plan: LaunchPlan, context: init.SetupContext, container_id: str,
          on_hooks_due: Callable[[int], str],
          child_main: Callable[[LaunchPlan, init.SetupContext], int] | None = None) -> Spawned:
    """Fork the chain and wait until the container's init is ready.

    *on_hooks_due(pid)* runs the runtime-side hooks and returns the state JSON handed to the
    in-container ones. The caller becomes a child subreaper so the init, orphaned when the
    intermediate exits, is re-parented to it (and can be waited for by ``run``).
    """
    init.load_host_code(plan, context)
    become_subreaper()
    child_read, child_write = os.pipe2(os.O_CLOEXEC)
    parent_read, parent_write = os.pipe2(os.O_CLOEXEC)
    context.child_to_parent = child_write
    context.parent_to_child = parent_read
    intermediate = os.fork()
    if intermediate == 0:
        os.close(child_read)
        os.close(parent_write)
        os._exit(init.run_intermediate(plan, context, child_main))
    os.close(child_write)
    os.close(parent_read)
    channel = handshake.Channel(child_read, container_id)
    init_pid = 0
    ready = False
    try:
        # The intermediate's "pid" always comes first (the init waits for it to be sent),
        # so a failure reported by the init can always be followed by kill and reap.
        while not (ready and init_pid):
            message = channel.receive()
            if message is None:
                raise TsuboError("create container", container_id,
                                 detail="the container's init exited during setup")
            kind, fields = message
            if kind == handshake.USERNS_READY:
                write_id_maps(intermediate, plan)
                handshake.send(parent_write, handshake.MAPPED)
            elif kind == handshake.PID:
                init_pid = int(fields[0])
                _reap(intermediate)
            elif kind == handshake.HOOKS_DUE:
                state_json = on_hooks_due(init_pid)
                handshake.send(parent_write, handshake.RESUME, state_json)
            elif kind == handshake.READY:
                ready = True
            else:
                raise TsuboError("create container", container_id,
                                 detail=f"unexpected message {kind!r} from the container")
        if context.start_by_handshake:
            spawned = Spawned(init_pid, parent_write, channel)
            parent_write = child_read = -1  # handed over: closed by Spawned.start/close
            return spawned
        return Spawned(init_pid)
    except BaseException:
        if init_pid:
            _kill(init_pid)
        _reap(intermediate)  # after this the init is our child (we are its subreaper)
        if init_pid:
            _reap(init_pid)
        raise
    finally:
        if child_read >= 0:
            os.close(child_read)
        if parent_write >= 0:
            os.close(parent_write)


#: the process that made itself a child subreaper (a fork is not one: see below)
_subreaper = [0]


def become_subreaper() -> None:
    """Make this process a child subreaper, once: prctl(PR_SET_CHILD_SUBREAPER) walks
    every descendant of the caller each time (the kernel marks them), and a monitor's
    descendants are all its running containers. A forked child is not a subreaper (the
    flag is not inherited): the pid tells."""
    if _subreaper[0] != os.getpid():
        syscalls.prctl(PR_SET_CHILD_SUBREAPER, 1)
        _subreaper[0] = os.getpid()


def write_id_maps(pid: int, plan: LaunchPlan) -> None:
    """Write the user namespace's uid and gid maps for the intermediate process *pid*."""
    for name, text in (("uid_map", plan.uid_map), ("gid_map", plan.gid_map)):
        procfs.write(f"/proc/{pid}/{name}", text,
                     hint="check linux.uidMappings/gidMappings")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
