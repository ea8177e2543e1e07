"""The runtime's operations on containers: create, start, run, state, kill, delete, exec, ...

Each operation is refresh -> check -> act -> save: the record is loaded, its status
derived from /proc (``runtime/status.py``), the operation checked against it, then carried
out under the container's lock. ``create`` registers an undo for every step the moment it
succeeds, so a failure at any step leaves no state folder, cgroup or process behind.
This is the Python API behind ``tsubo-runtime`` (``cli/runtime.py`` is a thin shell).
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, TsuboError, WrongState
from tsubo.kernel import procfs
from tsubo.runtime import status as status_rules
from tsubo.runtime.store import (
    DEFAULT_ROOT,
    ContainerRecord,
    StateStore,
    problem_of,
    write_atomic,
)
from tsubo.version import OCI_VERSION

O_PATH = getattr(os, "O_PATH", 0o10000000)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.kernel.cgroups import Cgroup, CgroupUsage
    from tsubo.oci.runtime_spec import Spec
    from tsubo.runtime.init import SetupContext
    from tsubo.runtime.plan import LaunchPlan

#: how long ``start`` waits for a created container's init to answer on the exec fifo
START_TIMEOUT = 10.0
#: how long ``delete --force`` / ``kill`` wait for a killed init to go away
KILL_TIMEOUT = 10.0


class ExitInfo:
    """How a container's process ended."""

    __slots__ = ("exit_code", "oom_killed")

    def __init__(self, exit_code: int, oom_killed: bool) -> None:
        self.exit_code = exit_code
        self.oom_killed = oom_killed


class Runtime:
    """All containers under one state root (runc's ``--root``)."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.store = StateStore(root)
        #: what went wrong without failing the operation (a poststart or poststop hook);
        #: the CLI prints them as warnings
        self.warnings: list[TsuboError] = []

    # --- create / start / run -----------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, pid_file: str = "",
               console_socket: str = "", no_pivot: bool = False,
               preserve_fds: int = 0, new_keyring: bool = True,
               start_now: bool = False, stdio: tuple[int, int, int] | None = None,
               mount_base: int = -1) -> ContainerRecord:
        """Set the container up and leave its init waiting on the exec fifo; with
        *start_now* (``run``), start it right away through the handshake instead. The
        container's stdin, stdout and stderr are *stdio* (default: ours); nothing here
        touches the calling process's own fds, so threads may create containers at once.
        *mount_base* (an fd of ``kernel.mounts.make_mount_base``): copy the container's
        mount namespace from it, where the plan allows (``copies_a_mount_base``), with a
        copy of the root's mount taken here."""
        from tsubo.kernel.cgroups import Cgroup, CgroupLayout, resolve_cgroup_path
        from tsubo.kernel.cgroups.plan import plan_resources
        from tsubo.oci.runtime_spec import parse_spec
        from tsubo.runtime.init import SetupContext
        from tsubo.runtime.plan import cgroup_resources, make_plan
        from tsubo.runtime.spawn import spawn
        from tsubo.state.clock import now_rfc3339
        from tsubo.undo import UndoStack

        bundle = os.path.abspath(bundle)
        spec = parse_spec(_read_config(bundle))
        plan = make_plan(spec, bundle, no_pivot=no_pivot)
        _check_sysctl_netns(plan)
        if not os.path.isdir(plan.rootfs):
            raise NotFound("create container", container_id,
                           detail=f"root.path {plan.rootfs} is not a directory")
        if preserve_fds < 0:
            raise InvalidArgument("create container", container_id,
                                  detail="--preserve-fds must not be negative")
        with UndoStack("create container", container_id) as undo:
            self.store.reserve(container_id)
            undo.push(lambda: self.store.remove(container_id))
            cgroup = Cgroup(CgroupLayout.detect(),
                            resolve_cgroup_path(spec.linux.cgroups_path, container_id),
                            with_unified=needs_unified_cgroup(spec))
            record = ContainerRecord(container_id, bundle, plan.rootfs, spec.raw,
                                     cgroup.to_json(), now_rfc3339(), _owner())
            # Recorded before it is created: a crash from here on leaves a record that
            # ``delete --force`` can clean up exactly.
            self.store.save(record)
            cgroup.create()
            undo.push(cgroup.destroy)
            cgroup.apply(plan_resources(cgroup_resources(spec.linux.resources, plan.devices),
                                        cgroup))
            fifo_fd = -1
            if not start_now:
                fifo = self.store.fifo_path(container_id)
                os.mkfifo(fifo, 0o600)
                # The init writes to it after changing to the process's uid (runc: 0622).
                os.chmod(fifo, 0o622)
                fifo_fd = os.open(fifo, O_PATH | os.O_CLOEXEC)
                undo.push(lambda: os.close(fifo_fd))
            context = SetupContext(-1, -1, cgroup, fifo_fd, console_socket, preserve_fds)
            context.start_by_handshake = start_now
            context.seccomp_cache = self.store.seccomp_cache
            context.stdio = stdio
            if new_keyring:
                context.keyring = f"_ses.{container_id}"
            if mount_base >= 0 and plan.copies_a_mount_base():
                from tsubo.kernel.mounts import clone_mount

                context.mount_base = mount_base
                context.root_mount = clone_mount(plan.rootfs)
            try:
                spawned = spawn(plan, context, container_id,
                                lambda pid: self._run_create_hooks(spec, record, pid))
            finally:
                if context.root_mount >= 0:  # the init has its own copy of the fd
                    os.close(context.root_mount)
            undo.push(lambda: _kill_and_wait(spawned.pid))
            undo.push(spawned.close)
            stat = procfs.read_stat(spawned.pid)
            if stat is None or stat.is_dead:
                raise TsuboError("create container", container_id,
                                 detail="the container's init exited during setup")
            record.pid = spawned.pid
            record.start_time = stat.start_time
            self.store.save(record)
            if pid_file:
                _write_pid_file(pid_file, spawned.pid)
            if start_now:
                spawned.start()
            if fifo_fd >= 0:
                os.close(fifo_fd)
            undo.commit()
        if start_now:
            self.warnings += _run_runtime_hooks(
                record, "poststart", self._state_json(record, status_rules.RUNNING, record.pid))
        return record

    def _run_create_hooks(self, spec: Spec, record: ContainerRecord, pid: int) -> str:
        from tsubo.runtime import hooks

        state_json = self._state_json(record, status_rules.CREATING, pid)
        for name in ("prestart", "createRuntime"):
            entries = spec.hooks.get(name)
            if entries:
                hooks.run_hooks(name, entries, state_json)
        return state_json

    def start(self, container_id: str) -> None:
        """Let the created container's init exec the user's program."""
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            status = status_rules.current_status(self.store, record)
            status_rules.check("start", container_id, status)
            _open_exec_fifo(self.store.fifo_path(container_id), record)
            self.warnings += _run_runtime_hooks(
                record, "poststart", self._state_json(record, status_rules.RUNNING, record.pid))
        finally:
            os.close(lock)

    def run(self, container_id: str, bundle: str, *, detach: bool = False, pid_file: str = "",
            console_socket: str = "", no_pivot: bool = False, preserve_fds: int = 0,
            new_keyring: bool = True) -> ExitInfo:
        """create + start, then (unless *detach*) wait for the process, delete the
        container and return how it ended. Signals to us are forwarded to it."""
        record = self.create(container_id, bundle, pid_file=pid_file,
                             console_socket=console_socket, no_pivot=no_pivot,
                             preserve_fds=preserve_fds, new_keyring=new_keyring,
                             start_now=True)
        if detach:
            return ExitInfo(0, False)
        forwarder = _SignalForwarder(record.pid)
        try:
            wait_status = _wait_child(record.pid)
        finally:
            forwarder.restore()
        info = ExitInfo(os.waitstatus_to_exitcode(wait_status), False)
        if info.exit_code < 0:
            info.exit_code = 128 - info.exit_code
        info.oom_killed = self._oom_killed(record)
        self.delete(container_id, force=True)
        return info

    # --- inspect --------------------------------------------------------------------------

    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state of the container (plus runc's extra fields)."""
        record = self.store.load(container_id)
        status = status_rules.current_status(self.store, record)
        return self._state(record, status)

    def _state(self, record: ContainerRecord, status: str) -> dict[str, Any]:
        alive = status not in (status_rules.STOPPED, status_rules.CREATING)
        state: dict[str, Any] = {
            "ociVersion": OCI_VERSION, "id": record.id, "pid": record.pid if alive else 0,
            "status": status, "bundle": record.bundle, "rootfs": record.rootfs,
            "created": record.created, "owner": record.owner,
        }
        if record.annotations:
            state["annotations"] = record.annotations
        if status == status_rules.STOPPED and self._oom_killed(record):
            state["oomKilled"] = True
        return state

    def _state_json(self, record: ContainerRecord, status: str, pid: int) -> str:
        from tsubo import jsonwire

        state = self._state(record, status)
        state["pid"] = pid
        state["status"] = status
        return jsonwire.dumps(state)

    def states(self) -> list[dict[str, Any]]:
        """The state of every container. A record that cannot be read does not hide the
        others: it is listed with status ``unknown`` and its problem under ``error`` (its
        folder exists, so its ID is taken until ``delete --force`` removes it)."""
        states = []
        for container_id in self.store.ids():
            try:
                states.append(self.state(container_id))
            except TsuboError as error:
                states.append({"id": container_id, "pid": 0, "status": "unknown",
                               "bundle": "", "created": "", "owner": "",
                               "error": error.message()})
        return states

    def pids(self, container_id: str) -> list[int]:
        """Host pids of every process in the container's cgroup."""
        record = self.store.load(container_id)
        status = status_rules.current_status(self.store, record)
        if status in (status_rules.STOPPED, status_rules.CREATING):
            return []
        return _cgroup_of(record).pids()

    def usage(self, container_id: str) -> tuple[int, CgroupUsage]:
        """(the init's host pid, what the container's cgroup uses now)."""
        record = self.store.load(container_id)
        return record.pid, _cgroup_of(record).usage()

    # --- signals, pause, delete ---------------------------------------------------------

    def kill(self, container_id: str, signal: int, *, all_processes: bool = False) -> None:
        """Send *signal* to the init (or, with *all_processes*, to every process)."""
        record = self.store.load(container_id)
        status = status_rules.current_status(self.store, record)
        status_rules.check("kill", container_id, status)
        targets = _cgroup_of(record).pids() if all_processes else [record.pid]
        for pid in targets:
            try:
                os.kill(pid, signal)
            except ProcessLookupError:
                pass
            except OSError as error:
                raise TsuboError.from_os_error("kill", f"{container_id} pid {pid}",
                                               error) from None
        if status == status_rules.PAUSED and signal == 9:
            _cgroup_of(record).thaw()

    def pause(self, container_id: str) -> None:
        record = self.store.load(container_id)
        status_rules.check("pause", container_id,
                           status_rules.current_status(self.store, record))
        _cgroup_of(record).freeze()

    def resume(self, container_id: str) -> None:
        record = self.store.load(container_id)
        status_rules.check("resume", container_id,
                           status_rules.current_status(self.store, record))
        _cgroup_of(record).thaw()

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change the resource limits of a created, running or paused container (runc's
        ``update``): *resources* is a ``linux.resources`` object holding only what changes,
        validated as a config's is and written to the container's cgroup; the recorded
        config is updated to match, so ``state`` and later updates start from it. Device
        rules are not updated (runc ignores them too: they are the container's security
        boundary, set once at create)."""
        from tsubo.kernel.cgroups.plan import plan_resources
        from tsubo.oci.runtime_spec import Resources, parse_resources

        parsed = parse_resources(resources, "resources")
        changes = Resources(None, parsed.memory, parsed.cpu, parsed.pids_limit,
                            parsed.block_io, parsed.hugepage_limits, parsed.network,
                            parsed.rdma, parsed.unified)
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            status_rules.check("update", container_id,
                               status_rules.current_status(self.store, record))
            cgroup = _cgroup_of(record)
            cgroup.apply(plan_resources(changes, cgroup))
            linux = record.config.setdefault("linux", {})
            current = linux.get("resources")
            linux["resources"] = merge_resources(current if isinstance(current, dict) else {},
                                                 resources)
            self.store.save(record)
        finally:
            os.close(lock)

    def delete(self, container_id: str, *, force: bool = False) -> list[TsuboError]:
        """Remove every trace of the container. A running one needs *force*; a created
        one is killed (as runc does). Returns what could not be checked while the
        container was deleted all the same (``--force`` of a container whose records are
        unreadable: see :meth:`_delete_without_state`); the CLI prints them as warnings."""
        from tsubo.errors import TeardownErrors

        try:
            lock = self.store.lock(container_id)
        except NotFound:
            if force:
                return []  # runc: `delete --force` of a missing container succeeds
            raise
        except TsuboError as error:
            if not force or self.store.exists(container_id):  # a folder we cannot open
                raise
            # a symlink or a file where its folder should be: removed, never followed
            self.store.remove(container_id)
            return [error]
        try:
            try:
                record = self.store.load(container_id)
            except TsuboError as unreadable:
                if not force:
                    raise
                return self._delete_without_state(container_id, unreadable)
            status = status_rules.current_status(self.store, record)
            if status in (status_rules.RUNNING, status_rules.PAUSED) and not force:
                raise WrongState("delete container", container_id,
                                 detail=f"container is {status}",
                                 hint="stop it first, or use --force")
            errors: list[BaseException] = []
            if status in (status_rules.CREATED, status_rules.RUNNING, status_rules.PAUSED):
                cgroup = _cgroup_of(record)
                if status == status_rules.PAUSED:
                    _collect(errors, cgroup.thaw)
                _collect(errors, lambda: _kill_and_wait(record.pid, record.start_time))
            elif status == status_rules.CREATING:
                # A create that died midway: its init's pid was never recorded, but any
                # process it left is in the container's cgroup (it joined before forking).
                _collect(errors, lambda: _kill_members(_cgroup_of(record)))
            if status != status_rules.CREATING and not _own_pid_namespace(record):
                # Without a pid namespace of its own (a pod's shared one, joined by path)
                # the init's death takes none of its children with it: whatever is left
                # in its cgroup is the container's. runc kills them on delete too.
                _collect(errors, lambda: _kill_members(_cgroup_of(record)))
            _collect(errors, _cgroup_of(record).destroy)
            self.warnings += _run_runtime_hooks(
                record, "poststop", self._state_json(record, status_rules.STOPPED, 0))
            self.store.remove(container_id)
            if errors:
                raise TeardownErrors("delete container", container_id, errors)
            return []
        finally:
            os.close(lock)

    def _delete_without_state(self, container_id: str, unreadable: TsuboError
                              ) -> list[TsuboError]:
        """``delete --force`` of a container whose state file cannot be read (garbage,
        empty, a symlink, too deep, too large): its cleanup record still names the init
        (pid + start time: a reused pid is never signalled) and the cgroup, so both go
        before the folder does. Without a readable cleanup record (a container of an older
        tsubo-runtime, or both records destroyed) nothing names them any more: the folder
        goes all the same, as runc's does, and the returned warning says what may be left.
        No cleanup record and no state file at all is a create that never began: nothing
        to warn about. Poststop hooks cannot run: they were in the lost state."""
        from tsubo.errors import TeardownErrors
        from tsubo.kernel.cgroups import Cgroup

        try:
            cleanup = self.store.load_cleanup(container_id)
        except TsuboError as error:
            self.store.remove(container_id)
            return [TsuboError("delete container", container_id,
                               detail=f"{problem_of(unreadable)}; {problem_of(error)}: its "
                               "init and cgroup, if any, could not be found")]
        if cleanup is None:
            self.store.remove(container_id)
            if isinstance(unreadable, NotFound):
                return []
            return [TsuboError("delete container", container_id,
                               detail=f"{problem_of(unreadable)}, and it has no cleanup "
                               "record: its init and cgroup, if any, could not be found")]
        errors: list[BaseException] = []
        try:
            cgroup: Cgroup | None = Cgroup.from_json(cleanup.cgroup)
        except TsuboError as error:
            cgroup = None
            errors.append(error)
        if cgroup is not None and _is_frozen(cgroup):
            _collect(errors, cgroup.thaw)
        if cleanup.pid:
            _collect(errors, lambda: _kill_and_wait(cleanup.pid, cleanup.start_time))
        if cgroup is not None:
            # whatever else the container left in its cgroup (its own processes only:
            # membership, never a name); then the cgroup itself
            _collect(errors, lambda: _kill_members(cgroup))
            _collect(errors, cgroup.destroy)
        self.store.remove(container_id)
        if errors:
            raise TeardownErrors("delete container", container_id, errors)
        return []

    def _oom_killed(self, record: ContainerRecord) -> bool:
        try:
            return _cgroup_of(record).oom_kill_count() > 0
        except (OSError, TsuboError):
            return False

    # --- exec -----------------------------------------------------------------------------

    def exec(self, container_id: str, process: dict[str, Any], *, detach: bool = False,
             pid_file: str = "", console_socket: str = "", preserve_fds: int = 0,
             stdio: tuple[int, int, int] | None = None,
             forward_signals: bool = True) -> ExitInfo:
        """Run another process in the container's namespaces and cgroup, with *stdio* as
        its stdin, stdout and stderr (default: ours). While we wait for it, signals to us
        are forwarded to it, unless *forward_signals* is False (a library call, perhaps in
        a thread other than the main one, where no handler may be installed)."""
        from tsubo.runtime.exec import exec_in_container

        record = self.store.load(container_id)
        status_rules.check("exec", container_id,
                           status_rules.current_status(self.store, record))
        pid = exec_in_container(record, _cgroup_of(record), process,
                                console_socket=console_socket, preserve_fds=preserve_fds,
                                seccomp_cache=self.store.seccomp_cache, stdio=stdio)
        if pid_file:
            _write_pid_file(pid_file, pid)
        if detach:
            return ExitInfo(0, False)
        forwarder = _SignalForwarder(pid) if forward_signals else None
        try:
            wait_status = _wait_child(pid)
        finally:
            if forwarder is not None:
                forwarder.restore()
        code = os.waitstatus_to_exitcode(wait_status)
        return ExitInfo(128 - code if code < 0 else code, False)


def merge_resources(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """*current* ``linux.resources`` with *changes* laid over it: objects merge key by key,
    anything else (numbers, strings, lists) replaces; ``devices`` is never changed."""
    merged = dict(current)
    for key, value in changes.items():
        if key == "devices":
            continue
        previous = merged.get(key)
        if isinstance(value, dict) and isinstance(previous, dict):
            merged[key] = {**previous, **value}
        else:
            merged[key] = value
    return merged


def needs_unified_cgroup(spec: Spec) -> bool:
    """On a hybrid host the v2 tree holds only what v1 lacks (hugetlb here). Joining it
    costs an RCU grace period (~20 ms, see Cgroup.join_self), so a container joins it only
    when its config limits something there or asks for a cgroup namespace (whose view
    should be complete); everything else is governed by the v1 hierarchies."""
    resources = spec.linux.resources
    return bool(resources.hugepage_limits or resources.unified
                or spec.linux.namespace_path("cgroup") == "")


def _check_sysctl_netns(plan: LaunchPlan) -> None:
    """``net.*`` sysctls in a network namespace joined by path: refused only when that is
    our own namespace (the sysctl would change the host's network), as runc does."""
    from tsubo.runtime.plan import sysctl_netns_path

    path = sysctl_netns_path(plan)
    if path and procfs.is_own_namespace(path, "net"):
        key = next(key for key in plan.sysctl if key.startswith("net."))
        raise InvalidArgument("load config", f"linux.sysctl.{key}",
                              detail=f"is not allowed in the host's network namespace ({path})")


def _read_config(bundle: str) -> bytes:
    return read_caller_file(f"{bundle}/config.json", "load config",
                            missing="no config.json in the bundle")


def read_caller_file(path: str, operation: str, *, missing: str = "no such file") -> bytes:
    """A JSON file our caller hands us (the bundle's config.json, ``exec --process``): a
    regular file (a FIFO cannot hang us) of at most the config size limit. Symlinks are
    followed: these are the caller's own files, not the state we keep."""
    from tsubo.oci.runtime_spec import MAX_CONFIG_BYTES
    from tsubo.runtime.store import read_record

    try:
        return read_record(path, MAX_CONFIG_BYTES, follow_symlinks=True)
    except FileNotFoundError:
        raise NotFound(operation, path, detail=missing) from None
    except OSError as error:
        raise TsuboError.from_os_error(operation, path, error) from None
    except ValueError as error:
        raise InvalidArgument(operation, path, detail=str(error)) from None


def _owner() -> str:
    return "" if os.geteuid() == 0 else str(os.geteuid())


def _own_pid_namespace(record: ContainerRecord) -> bool:
    """Whether the container's config makes it a new pid namespace (listed, no path)."""
    linux = record.config.get("linux")
    entries = linux.get("namespaces") if isinstance(linux, dict) else None
    return any(isinstance(entry, dict) and entry.get("type") == "pid" and not entry.get("path")
               for entry in entries or ())


def _cgroup_of(record: ContainerRecord) -> Cgroup:
    from tsubo.kernel.cgroups import Cgroup

    return Cgroup.from_json(record.cgroup)


def _write_pid_file(path: str, pid: int) -> None:
    try:
        write_atomic(path, str(pid).encode(), 0o644)
    except OSError as error:
        raise TsuboError.from_os_error("write pid file", path, error) from None


def _open_exec_fifo(fifo: str, record: ContainerRecord) -> None:
    """Open the exec fifo for reading: the init, blocked opening it for writing, proceeds,
    writes one byte and execs. Polls so a dead init cannot hang us."""
    import select

    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WrongState("start container", record.id,
                         detail="container was started already") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        waited = 0.0
        while not poller.poll(100):
            waited += 0.1
            if not procfs.is_alive(record.pid, record.start_time) or waited >= START_TIMEOUT:
                raise TsuboError("start container", record.id,
                                 detail="the container's init did not answer on the exec fifo")
        if os.read(fd, 1) != b"0":
            raise TsuboError("start container", record.id,
                             detail="the container's init exited before it could start")
        # The init keeps its end open (O_CLOEXEC) until execve: EOF means the program runs
        # (or the init died), and only then may the poststart hooks run.
        while True:
            if poller.poll(100) and not os.read(fd, 64):
                break
            if not procfs.is_alive(record.pid, record.start_time):
                break
    finally:
        os.close(fd)
    os.unlink(fifo)


def _run_runtime_hooks(record: ContainerRecord, name: str, state_json: str
                       ) -> list[TsuboError]:
    """The poststart or poststop hooks of the record's config: each one runs, and each
    failure is returned as a warning (the spec's rule for these two phases)."""
    raw = (record.config.get("hooks") or {}).get(name) or []
    if not raw:
        return []
    from tsubo.oci.runtime_spec import Hook
    from tsubo.runtime import hooks

    entries = [Hook(item, f"hooks.{name}[{index}]") for index, item in enumerate(raw)]
    return hooks.run_hooks_warning_only(name, entries, state_json)


def _kill_and_wait(pid: int, start_time: int | None = None) -> None:
    """SIGKILL the init (which takes its whole pid namespace with it) and wait until it is
    gone; reaps it if it is our child."""
    if start_time is None:
        stat = procfs.read_stat(pid)
        if stat is None:
            return
        start_time = stat.start_time
    if not _kill_if_same(pid, start_time):
        procfs.reap_if_child(pid)
        return
    if procfs.reap_if_child(pid) is None and not procfs.wait_until_gone(pid, start_time,
                                                                         KILL_TIMEOUT):
        raise TsuboError("kill container init", str(pid),
                         detail=f"still alive {KILL_TIMEOUT:.0f} s after SIGKILL")
    procfs.reap_if_child(pid)


def _kill_if_same(pid: int, start_time: int) -> bool:
    """SIGKILL *pid* only if it is still the process started at *start_time*; False when
    it is gone (or a zombie, or another process now). Through a pidfd where the kernel has
    them (5.3+): the check and the kill then name the same process, so a pid reused
    between the two is never killed."""
    import _signal

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # ENOSYS: no pidfds; the check-then-kill window is microseconds
        fd = -1
    try:
        if not procfs.is_alive(pid, start_time):
            return False
        if fd >= 0:
            _signal.pidfd_send_signal(fd, _signal.SIGKILL)
        else:
            os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    return True


def _kill_members(cgroup: Cgroup) -> None:
    """SIGKILL every process in *cgroup* (each checked by its own start time)."""
    try:
        members = cgroup.pids()
    except (OSError, TsuboError):
        return
    for pid in members:
        stat = procfs.read_stat(pid)
        if stat is not None:
            _kill_and_wait(pid, stat.start_time)


def _is_frozen(cgroup: Cgroup) -> bool:
    try:
        return cgroup.is_frozen()
    except (OSError, TsuboError):
        return False


def _collect(errors: list[BaseException], step: Any) -> None:
    try:
        step()
    except Exception as error:
        errors.append(error)


def _wait_child(pid: int) -> int:
    """waitpid for our child *pid*, riding out EINTR from forwarded signals."""
    while True:
        try:
            reaped, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:
            raise TsuboError("wait for container", str(pid),
                             detail="the container's init is not our child") from None
        if reaped == pid:
            return wait_status


class _SignalForwarder:
    """While we wait for the container, signals sent to us go to its init instead."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH",
               "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU")

    def __init__(self, pid: int) -> None:
        import _signal  # builtin: ``signal`` would import enum (~5 ms) for nothing we use

        self._signal = _signal
        self.pid = pid
        self.previous: dict[int, Any] = {}
        for name in self.SIGNALS:
            number = getattr(_signal, name)
            self.previous[number] = _signal.signal(number, self._forward)

    def _forward(self, number: int, frame: object) -> None:
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for number, handler in self.previous.items():
            self._signal.signal(number, handler)


__all__ = ["ExitInfo", "LaunchPlan", "Runtime", "SetupContext"]
