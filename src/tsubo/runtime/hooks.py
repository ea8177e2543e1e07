"""OCI lifecycle hooks: run a hook program with the container's state on its stdin.

Used from the runtime (prestart, createRuntime, poststart, poststop) and from inside the
container before exec (createContainer, startContainer), so it forks and execs by hand
instead of importing :mod:`subprocess` (~10 ms here, and no imports may happen after
pivot_root). A hook that fails or exceeds its timeout fails the operation, naming the hook
and its exit status; a poststop hook's failure is only reported (the spec's rule).
"""

from __future__ import annotations

import os
import time

from tsubo.errors import TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.oci.runtime_spec import Hook


def run_hooks(name: str, hooks: list[Hook], state_json: str) -> None:
    """Run each hook of the *name* phase in order; the first failure raises."""
    for index, hook in enumerate(hooks):
        run_hook(f"{name}[{index}]", hook, state_json)


def run_hook(label: str, hook: Hook, state_json: str) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the hook process
        try:
            os.close(write_end)
            os.dup2(read_end, 0)
            env = dict(entry.partition("=")[::2] for entry in hook.env)
            os.execve(hook.path, hook.args, env)
        finally:
            os._exit(127)
    os.close(read_end)
    try:
        os.write(write_end, state_json.encode())
    except BrokenPipeError:
        pass  # the hook need not read its stdin
    finally:
        os.close(write_end)
    status = _wait(pid, hook.timeout)
    if status is None:
        raise TsuboError("run hook", label, detail=f"{hook.path} timed out after "
                         f"{hook.timeout} s and was killed")
    if status != 0:
        raise TsuboError("run hook", label, detail=f"{hook.path} {_describe(status)}")


def _wait(pid: int, timeout: int | None) -> int | None:
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
