"""``exec``: start another process inside a running container.

The new process joins every namespace of the container's init (through
``/proc/PID/ns/*``, skipping ones we already share: setns(2) into our own user namespace
is EINVAL), joins its cgroup, and takes the process settings (user, capabilities, rlimits,
no_new_privs, the container's seccomp filter) from the given ``process`` object. The fork
chain and handshake are the ones ``create`` uses, without building a root.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument
from tsubo.kernel.flags import NAMESPACE_FILES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.kernel.cgroups import Cgroup
    from tsubo.runtime.store import ContainerRecord


class ExecPlan:
    """The subset of a launch plan that exec uses: joins and a process."""

    def __init__(self, record: ContainerRecord, process: dict[str, Any]) -> None:
        from tsubo.oci.runtime_spec import Spec
        from tsubo.runtime.plan import ProcessPlan

        spec = Spec({**record.config, "process": process})
        self.process = ProcessPlan(spec)
        self.join_namespaces = container_namespaces(record.pid, spec)
        self.new_namespaces = 0
        self.uid_map = self.gid_map = ""
        self.seccomp = spec.linux.seccomp
        self.hooks: dict[str, Any] = {}
        self.mounts: list[Any] = []
        self.sysctl: dict[str, str] = {}
        self.masked_paths: list[str] = []
        self.readonly_paths: list[str] = []
        self.root_readonly = False
        self.root_propagation = 0  # the container's mounts are already as they should be


def container_namespaces(pid: int, spec: Any) -> list[tuple[str, str]]:
    """(type, /proc/PID/ns/X) for each namespace the container has and we don't share."""
    joins = []
    for kind, _ in sorted(spec.linux.namespaces, key=lambda item: item[0] != "user"):
        path = f"/proc/{pid}/ns/{NAMESPACE_FILES[kind]}"
        try:
            theirs = os.stat(path)
            ours = os.stat(f"/proc/self/ns/{NAMESPACE_FILES[kind]}")
        except FileNotFoundError:
            continue
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            joins.append((kind, path))
    return joins


def exec_in_container(record: ContainerRecord, cgroup: Cgroup, process: dict[str, Any], *,
                      console_socket: str = "", preserve_fds: int = 0,
                      seccomp_cache: str = "", stdio: tuple[int, int, int] | None = None
                      ) -> int:
    """Start *process* in the container; returns its host pid once it is about to exec.
    Its stdin, stdout and stderr are *stdio* (default: ours)."""
    from tsubo.runtime import init
    from tsubo.runtime.spawn import spawn

    plan = ExecPlan(record, process)
    if plan.process.terminal and not console_socket:
        raise InvalidArgument("exec", record.id, detail="a terminal needs --console-socket")
    context = init.SetupContext(-1, -1, cgroup, -1, console_socket, preserve_fds)
    context.seccomp_cache = seccomp_cache
    context.stdio = stdio
    spawned = spawn(plan, context, record.id,  # type: ignore[arg-type]
                    lambda pid: "", child_main=init.run_exec_init)
    return spawned.pid


def process_from_flags(config: dict[str, Any], args: list[str], *, env: list[str],
                       cwd: str, user: str, tty: bool, caps: list[str],
                       no_new_privs: bool) -> dict[str, Any]:
    """runc's inline ``exec`` form: the container's process object with these changes."""
    process: dict[str, Any] = dict(config.get("process") or {})
    process["args"] = args
    process["terminal"] = tty
    if env:
        process["env"] = [*process.get("env", []), *env]
    if cwd:
        process["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument("exec", f"--user {user}",
                                  detail="must be UID[:GID] (numbers)") from None
    if caps:
        sets = dict(process.get("capabilities") or {})
        for name in ("bounding", "effective", "permitted", "ambient"):
            sets[name] = [*sets.get(name, []), *caps]
        process["capabilities"] = sets
    if no_new_privs:
        process["noNewPrivileges"] = True
    return process
