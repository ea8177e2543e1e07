"""Engine operations on named containers: create, start, run, stop, kill, restart, remove,
wait, pause, exec, logs, inspect, list, prune, gc.

State lives in SQLite (``engine/db.py``); the engine's monitor process (``engine/monitor.py``)
owns the running containers' lifetimes; the runtime is used in-process
(:class:`tsubo.runtime.container.Runtime`), never as a subprocess. Every operation reads the
container's row, refreshes it against the kernel where it matters (a dead monitor means the
container's state must be reconciled), then acts. No transaction is held across kernel work.
"""

from __future__ import annotations

import os

from tsubo.engine import status
from tsubo.engine.paths import EnginePaths
from tsubo.errors import InvalidArgument, NotFound, TsuboError, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from tsubo.engine.options import RunOptions
    from tsubo.engine.storage import ContainerFiles
    from tsubo.runtime.container import Runtime
    from tsubo.state.db import ContainerRow, Database

INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit")
#: how long ``rm -f`` lets a monitor finish starting a container before acting
_STARTING_WAIT_SECONDS = 30.0


class Engine:
    """All containers and volumes under one data root."""

    def __init__(self, root: str | None = None, *, paths: EnginePaths | None = None) -> None:
        self.paths = paths or EnginePaths(root)
        self._db: Database | None = None
        self._runtime: Runtime | None = None
        #: how a row whose monitor died is taken over: by asking the root's monitor
        #: (started if need be) to adopt it; inside the monitor, by the monitor itself
        self.reconcile: Callable[[], None] = self._reconcile_through_monitor

    @property
    def db(self) -> Database:
        """The database, opened on first use (so ``run`` can fork its monitor first)."""
        if self._db is None:
            from tsubo.state.db import Database

            self._db = Database(self.paths.database)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from tsubo.runtime.container import Runtime

            self._runtime = Runtime(self.paths.runtime_root)
        return self._runtime

    # --- create / start / run -------------------------------------------------------------

    def create(self, options: RunOptions, *, name: str | None = None,
               owner: tuple[int, int] | None = None) -> ContainerRow:
        """Create a container (not started): its row, folder, overlay dirs and bundle.
        With *owner* (the creating monitor's pid and start time, for ``run``) the row is
        born "starting" and that monitor's."""
        from tsubo import jsonwire
        from tsubo.engine.ocispec import ImageConfig, build_config
        from tsubo.engine.storage import (
            ContainerFiles,
            check_layer_count,
            check_lower_dir,
            lookup_group,
            make_passwd_lookup,
        )
        from tsubo.state import db as dbmod
        from tsubo.state import names
        from tsubo.state.names import container_name
        from tsubo.undo import UndoStack

        image_config: dict[str, Any] | None = None
        image_id = ""
        if options.rootfs:
            lower = check_lower_dir(options.rootfs)
            etc_root = lower
        elif options.image:
            from tsubo.image.store import ImageStore

            store = ImageStore(self.db, self.paths.data)
            image = store.get(options.image)
            image_id = image.id
            layers = store.lower_dirs(image)
            check_layer_count(options.image, len(layers))  # long ones mount via short links
            lower = ":".join(layers)  # overlay's lowerdir: top layer first
            etc_root = next((layer for layer in layers
                             if os.path.lexists(f"{layer}/etc/passwd")), layers[0])
            image_config = image.config.get("config") or {}
        else:
            raise InvalidArgument("create container", "", detail="no image or --rootfs given")
        _apply_image_defaults(options, image_config or {})
        container_id = names.new_container_id()
        if name is not None:
            name = container_name(name)  # the one normalisation: "/web" is "web"
        else:
            name = names.generate_name(self.db.name_in_use)
        files = ContainerFiles(self.paths.container_dir(container_id))
        netns_path = None
        nameserver = ""
        if options.network == "bridge":
            netns_path, nameserver = self._check_networks(options, name)
        elif options.network.startswith("container:"):
            netns_path = self._shared_netns(options.network[len("container:"):])
        with UndoStack("create container", name) as undo:
            row = dbmod.ContainerRow.new(container_id, name, options.to_json_text(), lower,
                                         image=image_id,
                                         labels=jsonwire.dumps(options.labels),
                                         state=status.STARTING if owner else status.CREATED,
                                         monitor_pid=owner[0] if owner else 0,
                                         monitor_start_time=owner[1] if owner else 0)
            self.db.insert_container(row)  # AlreadyExists for a taken name: nothing made yet
            undo.push(lambda: self.db.delete_container(container_id))
            files.create(etc_root)
            undo.push(files.remove)
            hostname = options.hostname or container_id[:12]
            etc_files = files.write_etc_files(hostname, nameserver=nameserver)
            volume_mounts = self._volume_mounts(container_id, options)
            self._copy_up_volumes(files, lower, options, volume_mounts)
            config = build_config(
                options, ImageConfig.from_json(image_config), container_id=container_id,
                rootfs=files.merged, etc_files=etc_files, volume_mounts=volume_mounts,
                init_path=_init_binary() if options.init else None,
                passwd_lookup=make_passwd_lookup(etc_root),
                group_lookup=lambda group: lookup_group(etc_root, group),
                host_nofile_hard=_hard_limit("RLIMIT_NOFILE"),
                host_nproc_hard=_hard_limit("RLIMIT_NPROC"),
                cgroups_path=f"/{cgroup_parent()}/{container_id}",
                netns_path=netns_path,
            )
            with open(files.config, "w", encoding="utf-8") as config_file:
                config_file.write(jsonwire.dumps(config))
            undo.commit()
        return self.db.get_container(container_id)

    def _shared_netns(self, ref: str) -> str:
        """``--network container:NAME``: join that running container's network namespace
        (its /run/netns pin when it has one, else its init's /proc/PID/ns/net)."""
        target = self.refresh(self.db.resolve_container(ref))
        status.check("join network of", target.name, target.state)
        pin = f"/run/netns/{target.name}"
        return pin if os.path.exists(pin) else f"/proc/{target.pid}/ns/net"

    def _check_networks(self, options: RunOptions, name: str) -> tuple[str, str]:
        """The networks exist (the default one is made on first use). Returns where the
        container's network namespace will be pinned (made when it starts) and its
        nameserver: the monitor's resolver on the first network's gateway."""
        from tsubo.engine.networks import DEFAULT_NETWORK, NetworkManager

        manager = NetworkManager(self)
        gateways = []
        for network in options.networks:
            found = manager.ensure_default() if network == DEFAULT_NETWORK else \
                manager.get(network)
            gateways.append(found.gateway)
        if len(name) > 200:
            raise InvalidArgument("create container", name, detail="name too long for a netns")
        return f"/run/netns/{name}", gateways[0]

    def _volume_mounts(self, container_id: str, options: RunOptions
                       ) -> list[tuple[str, str, list[str]]]:
        mounts = []
        for volume in options.volumes:
            flags = ["rbind", "rprivate", "ro" if volume.read_only else "rw"]
            if volume.is_named or not volume.source:
                flags.append("nodev")  # shared with other containers: no device nodes
                from tsubo.engine.volumes import ensure_volume

                name = ensure_volume(self, volume.source, anonymous=not volume.source)
                self.db.attach_volume(container_id, name, volume.destination)
                source = f"{self.paths.volume_dir(name)}/_data"
            else:
                source = volume.source
                if not os.path.exists(source):
                    raise NotFound("bind mount", source, detail="no such file or directory")
            mounts.append((source, volume.destination, flags))
        return mounts

    def _copy_up_volumes(self, files: ContainerFiles, lower: str, options: RunOptions,
                         mounts: list[tuple[str, str, list[str]]]) -> None:
        """Docker's copy-up: a new (empty) named or anonymous volume starts with what the
        image holds at its destination, unless ``nocopy``. The image is read through a
        temporary mount of the container's own overlay; a destination reached through a
        symlink is not copied (it could point out of the root). The volume may be shared
        with running containers, so it is written as a hostile tree
        (``kernel/untrusted.py``): fd-relative, no-follow, nothing already there replaced."""
        from tsubo.engine.storage import mount_root, unmount_root
        from tsubo.kernel.untrusted import copy_tree, open_directory_nofollow

        wanted = []
        for volume, (source, destination, _flags) in zip(options.volumes, mounts, strict=True):
            if volume.is_bind or "nocopy" in volume.options:
                continue
            if not any(os.path.isdir(f"{layer}{destination}") for layer in lower.split(":")):
                continue  # the image has nothing there: skip the mount
            with os.scandir(source) as entries:
                if next(entries, None) is None:
                    wanted.append((source, destination))
        if not wanted:
            return
        mount_root(files, [lower])
        try:
            for source, destination in wanted:
                origin_fd = open_directory_nofollow(files.merged, destination)
                if origin_fd < 0:
                    continue
                try:
                    volume_fd = open_directory_nofollow(source, "/")
                    try:
                        copy_tree(origin_fd, volume_fd)
                    finally:
                        os.close(volume_fd)
                except OSError as error:
                    raise TsuboError.from_os_error("copy image content into volume",
                                                   destination, error) from None
                finally:
                    os.close(origin_fd)
        finally:
            unmount_root(files.merged)

    def spawn_monitor(self) -> int:
        """Connect to the engine's monitor (forking one if none runs: it preloads what it
        needs while we prepare the container) and return the socket; :meth:`launch` tells
        it which container to start, and the socket becomes that container's attach
        stream. SQLite must not cross a fork (its per-process lock table would be shared
        with the child), so an open database is closed first and reopened on next use."""
        from tsubo.engine.monitor import connect_monitor

        self.close()
        return connect_monitor(self.paths)

    def launch(self, monitor_fd: int, container_id: str) -> None:
        """Hand a spawned monitor its container: it starts it and reports on the socket."""
        from tsubo.engine import attach

        if not self.db.transition_container(container_id, status.STARTABLE, state=status.STARTING,
                                            stopped_by_user=0, monitor_pid=0):
            row = self.db.get_container(container_id)
            raise WrongState("start container", row.name, detail=f"container is {row.state}")
        attach.send_all(monitor_fd, attach.encode(attach.GO, container_id.encode()))

    def start(self, ref: str) -> tuple[ContainerRow, int]:
        """Start a created or exited container under a new monitor; returns the row and
        our end of the monitor's attach socket (wait for "started" on it)."""
        row = self.refresh(self.db.resolve_container(ref))
        status.check("start", row.name, row.state)
        fd = self.spawn_monitor()
        try:
            self.launch(fd, row.id)
        except BaseException:
            os.close(fd)
            raise
        return self.db.get_container(row.id), fd

    def start_detached(self, ref: str) -> ContainerRow:
        """start, returning once the container runs (or raising why it could not)."""
        from tsubo.engine.attach import AttachClient

        row, fd = self.start(ref)
        try:
            AttachClient(fd, stdin=False, tty=False).wait_started()
        finally:
            os.close(fd)
        return self.db.get_container(row.id)

    def run_attached(self, options: RunOptions, *, name: str | None = None,
                     ) -> tuple[str, Any]:
        """create + start with the caller attached: the monitor creates the container
        (it has SQLite and the engine loaded already; we never open the database on this
        path). Returns the name asked for and an AttachClient: ``wait_started()`` (then
        ``client.container_id`` is set, or the create/start error is raised as it was),
        then ``relay()`` for the exit code."""
        from tsubo import jsonwire
        from tsubo.engine import attach

        fd = self.spawn_monitor()
        request = {"options": options.to_json(), "name": name}
        try:
            attach.send_all(fd, attach.encode(attach.RUN, jsonwire.dumps(request).encode()))
        except BaseException:
            os.close(fd)
            raise
        client = attach.AttachClient(fd, stdin=options.interactive, tty=options.tty)
        return name or "", client

    def run_detached(self, options: RunOptions, *, name: str | None = None) -> ContainerRow:
        """create + start, returning once the container runs (or raising why it could not)."""
        _, client = self.run_attached(options, name=name)
        try:
            client.wait_started()
        finally:
            os.close(client.sock_fd)
        return self.db.get_container(client.container_id)

    # --- stop / kill / restart / pause ----------------------------------------------------

    def kill(self, ref: str, signal: int = 9) -> ContainerRow:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("kill", row.name, row.state)
        self.db.update_container(row.id, stopped_by_user=1)
        self.runtime.kill(row.id, signal)
        if row.state == status.PAUSED and signal == 9:
            self.unpause(row.id)
        return row

    def stop(self, ref: str, timeout: float | None = None) -> ContainerRow:
        """Stop signal, then SIGKILL after *timeout* s (the container's --stop-timeout by
        default); waits until it has exited. Stopping a stopped container is a no-op."""
        from tsubo.engine.options import RunOptions
        from tsubo.kernel.signals import parse_signal

        row = self.refresh(self.db.resolve_container(ref))
        if row.state not in status.ACTIVE:
            return row
        options = RunOptions.from_json_text(row.options)
        self.db.update_container(row.id, stopped_by_user=1)
        wait_for = options.stop_timeout if timeout is None else timeout
        if row.state == status.RESTARTING:
            self._wait_exited(row.id, wait_for + 10)
            return self.db.get_container(row.id)
        try:
            if row.state == status.PAUSED:
                self.runtime.resume(row.id)
            self.runtime.kill(row.id, parse_signal(options.stop_signal))
        except TsuboError:
            pass  # it exited meanwhile
        if not self._wait_exited(row.id, wait_for):
            try:
                self.runtime.kill(row.id, 9)
            except TsuboError:
                pass
            self._wait_exited(row.id, 20.0)
        return self.db.get_container(row.id)

    def restart(self, ref: str, timeout: float | None = None) -> ContainerRow:
        row = self.stop(ref, timeout)
        return self.start_detached(row.id)

    def pause(self, ref: str) -> None:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("pause", row.name, row.state)
        self.runtime.pause(row.id)
        self.db.update_container(row.id, state=status.PAUSED)

    def unpause(self, ref: str) -> None:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("unpause", row.name, row.state)
        self.runtime.resume(row.id)
        self.db.update_container(row.id, state=status.RUNNING)

    # --- wait / remove --------------------------------------------------------------------

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; its exit code."""
        row = self.db.resolve_container(ref)
        done, code = self._wait_for_exit(row.id, timeout)
        if not done:
            raise TsuboError("wait for container", row.name, detail="timed out")
        return code if code is not None else -1

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        """Remove a container (``-f``: kill it first). Claimed "removing" in one database
        statement before anything is deleted, so a ``start`` racing us either wins (and we
        kill what it started) or finds the container gone: never half of each."""
        row = self.refresh(self.db.resolve_container(ref))
        container_id = row.id
        deadline = _monotonic() + _STARTING_WAIT_SECONDS
        while not self.db.transition_container(container_id, (*status.REMOVABLE, status.RESTARTING)
                                               if force else status.REMOVABLE,
                                               state=status.REMOVING, stopped_by_user=1):
            row = self.refresh(self.db.get_container(container_id))
            if row.state in status.ACTIVE and not force:
                raise WrongState("remove container", row.name,
                                 detail=f"container is {row.state}",
                                 hint="stop it first, or use -f")
            if _monotonic() >= deadline:
                raise WrongState("remove container", row.name,
                                 detail=f"container is still {row.state}")
            if row.state in (status.RUNNING, status.PAUSED):
                self.kill(row.id, 9)
                self._wait_exited(row.id, 20.0)
            elif row.state == status.STARTING:
                # its monitor is mounting and starting it: let it finish, then kill it
                _poll(lambda: self.refresh(self.db.get_container(container_id)).state
                      != status.STARTING, max(0.0, deadline - _monotonic()))
        remove_container_files(self.paths, self.db, container_id, volumes=volumes)
        return container_id

    # --- exec, logs, inspect, list -----------------------------------------------------------

    def exec(self, ref: str, command: list[str], *, env: list[str] | None = None,
             workdir: str = "", user: str = "", tty: bool = False, detach: bool = False,
             console_socket: str = "") -> int:
        """Run *command* in the running container; returns its exit code (0 when detached).
        Its stdio are ours (the caller's)."""
        from tsubo.engine.ocispec import resolve_user
        from tsubo.engine.storage import ContainerFiles, lookup_group, make_passwd_lookup

        row = self.refresh(self.db.resolve_container(ref))
        status.check("exec in", row.name, row.state)
        if not command:
            raise InvalidArgument("exec in container", row.name, detail="no command given")
        record = self.runtime.store.load(row.id)
        process: dict[str, Any] = dict(record.config.get("process") or {})
        process["args"] = command
        process["terminal"] = tty
        if env:
            process["env"] = [*process.get("env", []), *env]
        if workdir:
            process["cwd"] = workdir
        if user:
            # the running container's own view (its writes included), as docker exec -u
            root = ContainerFiles(self.paths.container_dir(row.id)).merged
            uid, gid, groups = resolve_user(user, make_passwd_lookup(root),
                                            lambda name: lookup_group(root, name))
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        info = self.runtime.exec(row.id, process, detach=detach, console_socket=console_socket)
        return info.exit_code

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False
             ) -> Iterator[tuple[str, bytes]]:
        from tsubo.engine import logs
        from tsubo.engine.storage import ContainerFiles

        row = self.db.resolve_container(ref)
        path = ContainerFiles(self.paths.container_dir(row.id)).log
        if not follow:
            return logs.read_logs(path, tail=tail, since=since, timestamps=timestamps)

        def is_running() -> bool:
            return self.refresh(self.db.get_container(row.id)).state in status.ACTIVE

        return logs.follow_logs(path, is_running=is_running, tail=tail, since=since,
                                timestamps=timestamps)

    def containers(self, *, all_states: bool = False) -> list[ContainerRow]:
        rows = []
        for listed in self.db.list_containers(True):
            try:
                rows.append(self.refresh(listed))
            except NotFound:
                continue  # an --rm container whose dead monitor's successor removed it
        if all_states:
            return rows
        return [row for row in rows if row.state in status.ACTIVE]

    def inspect(self, ref: str) -> dict[str, Any]:
        from tsubo.engine.inspect import inspect_container

        row = self.refresh(self.db.resolve_container(ref))
        return inspect_container(self, row)

    def prune(self) -> list[str]:
        """Remove every stopped container; their IDs."""
        removed = []
        for row in self.containers(all_states=True):
            if self.db.transition_container(row.id, status.REMOVABLE, state=status.REMOVING):
                remove_container_files(self.paths, self.db, row.id)
                removed.append(row.id)
        return removed

    def gc(self) -> list[str]:
        """Remove what crashed engine commands or monitors left behind, exactly: objects
        recorded in the network ledger whose owner no longer runs, runtime containers
        without an engine row, overlay roots of stopped containers, short layer links
        whose layer was removed. Returns what it did."""
        from tsubo.engine.storage import LINKS_DIR, prune_layer_links, unmount_root
        from tsubo.network import bridge
        from tsubo.network.store import NetworkStore

        done: list[str] = []
        rows = {row.id: self.refresh(row) for row in self.db.list_containers(True)}
        live = {cid for cid, row in rows.items()
                if row.state in status.MONITORED}
        store = NetworkStore(self.db)
        network_ids = {network.id for network in store.list_networks()}
        for entry in store.ledger_entries():
            if entry.owner in live or entry.owner in network_ids:
                continue
            if entry.kind == "netns":
                bridge.delete_netns(entry.name)
            elif entry.kind == "link":
                bridge.apply_endpoint_detach(bridge.plan_endpoint_detach(entry.name))
            store.forget(entry.kind, entry.name)
            done.append(f"removed {entry.kind} {entry.name}")
        for container_id in list(rows):
            if container_id not in live and store.container_endpoints(container_id):
                store.forget_container(container_id)
                done.append(f"released the addresses of {container_id[:12]}")
        for container_id in self.runtime.store.ids():
            if container_id not in rows:
                self.runtime.delete(container_id, force=True)
                done.append(f"deleted runtime container {container_id[:12]}")
        for container_id, row in rows.items():
            merged = f"{self.paths.container_dir(container_id)}/merged"
            if container_id not in live and os.path.ismount(merged):
                unmount_root(merged)
                done.append(f"unmounted the root of {row.name}")
        done += self._remove_unrecorded_folders(set(rows))
        for name in prune_layer_links(f"{self.paths.data}/{LINKS_DIR}"):
            done.append(f"removed the link {LINKS_DIR}/{name} of a removed layer")
        return done

    def _remove_unrecorded_folders(self, known: set[str]) -> list[str]:
        """Container folders (and their overlay mounts, run folders) that no row names:
        what a process killed between removing a row and its folder left. A row is always
        written before its folder is made, so a folder without one is never in use."""
        import shutil

        from tsubo.engine.storage import ContainerFiles

        done = []
        short = {container_id[:12] for container_id in known}
        for folder, names_known, has_root in ((f"{self.paths.data}/containers", known, True),
                                              (f"{self.paths.run}/containers", short, False)):
            try:
                entries = [entry for entry in os.scandir(folder)
                           if entry.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name in names_known:
                    continue
                if has_root:
                    ContainerFiles(entry.path).remove()  # unmounts its root first
                else:
                    shutil.rmtree(entry.path, ignore_errors=True)
                done.append(f"removed the folder of unrecorded container {entry.name[:12]}")
        return done

    # --- reconciling -------------------------------------------------------------------------

    def refresh(self, row: ContainerRow) -> ContainerRow:
        """The row, current: one whose state says a monitor owns it, but whose monitor is
        gone (killed, or a crash), is adopted by a live monitor first (:attr:`reconcile`):
        a running container is never taken for dead. NotFound when adopting removed it
        (an ``--rm`` container that had ended)."""
        from tsubo.kernel.procfs import is_alive

        if row.state not in status.MONITORED:
            return row
        if row.monitor_pid and is_alive(row.monitor_pid, row.monitor_start_time):
            return row
        if row.state == status.STARTING and not row.monitor_pid:
            return row  # a monitor that has not registered itself yet
        current = self.db.get_container(row.id)
        if current.monitor_pid and is_alive(current.monitor_pid, current.monitor_start_time):
            return current
        self.reconcile()
        return self.db.get_container(row.id)

    def _reconcile_through_monitor(self) -> None:
        """Ask the root's monitor (starting one if none runs) to adopt every container
        whose monitor is gone; returns once it has."""
        from tsubo.engine import attach
        from tsubo.engine.monitor import connect_monitor

        self.close()  # SQLite must not cross the fork of a keeper
        fd = connect_monitor(self.paths)
        try:
            attach.send_all(fd, attach.encode(attach.RECONCILE))
            reader = attach.FrameReader()
            while data := os.read(fd, 4096):
                if any(kind == attach.RECONCILED for kind, _ in reader.feed(data)):
                    return
        finally:
            os.close(fd)

    def _wait_exited(self, container_id: str, timeout: float | None) -> bool:
        return self._wait_for_exit(container_id, timeout)[0]

    def _wait_for_exit(self, container_id: str, timeout: float | None
                       ) -> tuple[bool, int | None]:
        """Wait until the container is done (not running, restarting or starting): woken
        by its monitor's answer to a ``WAIT`` frame, not by polling. (done, exit code);
        done is False on timeout, the exit code None for a container removed meanwhile."""
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            try:
                row = self.refresh(self.db.get_container(container_id))
            except NotFound:
                return True, None
            if row.state not in status.MONITORED:
                return True, row.exit_code
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return False, None
            answer = self._ask_monitor_to_wait(container_id, remaining)
            if answer is not None:
                return True, answer
            # not (or no longer, or not yet) the monitor's: look at the row again
            _sleep(0.01 if remaining is None else min(0.01, remaining))

    def _ask_monitor_to_wait(self, container_id: str, timeout: float | None) -> int | None:
        """The exit code the monitor reports for the container once it is done; None when
        it does not run it, dies meanwhile, or *timeout* passes."""
        import select

        from tsubo.engine import attach

        fd = self.spawn_monitor()
        try:
            attach.send_all(fd, attach.encode(attach.WAIT, container_id.encode()))
            waiting = select.poll()
            waiting.register(fd, select.POLLIN)
            reader = attach.FrameReader()
            deadline = None if timeout is None else _monotonic() + timeout
            while True:
                left = -1 if deadline is None else max(0, int((deadline - _monotonic()) * 1000))
                if not waiting.poll(left):
                    return None
                data = os.read(fd, 4096)
                if not data:
                    return None
                for kind, payload in reader.feed(data):
                    if kind == attach.EXITED:
                        return int(payload) if payload.lstrip(b"-").isdigit() else None
        finally:
            os.close(fd)


def _apply_image_defaults(options: RunOptions, image_config: dict[str, Any]) -> None:
    """What the image config decides unless the user did: the stop signal, and an
    anonymous volume for each ``Volumes`` path no ``-v`` covers (as Docker)."""
    from tsubo.engine.options import VolumeSpec, parse_signal_name

    if not options.stop_signal:
        declared = image_config.get("StopSignal")
        options.stop_signal = parse_signal_name(declared) if isinstance(declared, str) \
            and declared else "SIGTERM"
    declared_volumes = image_config.get("Volumes")
    if isinstance(declared_volumes, dict):
        taken = {os.path.normpath(volume.destination) for volume in options.volumes}
        for path in sorted(declared_volumes):
            if isinstance(path, str) and path.startswith("/") \
                    and os.path.normpath(path) not in taken:
                options.volumes.append(VolumeSpec("", os.path.normpath(path)))


def remove_container_files(paths: EnginePaths, db: Database, container_id: str, *,
                           volumes: bool = True) -> None:
    """Remove a stopped container's runtime state, root mount, folder, anonymous volumes
    and row (each "already gone" is fine)."""
    from tsubo.engine.storage import ContainerFiles
    from tsubo.runtime.container import Runtime

    try:
        Runtime(paths.runtime_root).delete(container_id, force=True)
    except NotFound:
        pass
    detach_networks(paths, db, container_id)
    ContainerFiles(paths.container_dir(container_id)).remove()
    anonymous = db.anonymous_volumes_of(container_id) if volumes else []
    db.delete_container(container_id)
    for name in anonymous:
        from tsubo.engine.volumes import remove_volume_files

        db.delete_volume(name)
        remove_volume_files(paths, name)


def detach_networks(paths: EnginePaths, db: Database, container_id: str) -> None:
    """Take a container off its networks (netns pin, veths, leases), if it has any."""
    from tsubo.network.store import NetworkStore

    store = NetworkStore(db)
    pinned = [entry.name for entry in store.ledger_entries("netns", owner=container_id)]
    if not pinned and not store.container_endpoints(container_id):
        return
    from tsubo.network import bridge

    for name in pinned:
        bridge.delete_netns(name)
        store.forget("netns", name)
    for endpoint in store.forget_container(container_id):
        store.forget("link", endpoint.host_ifname)


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _monotonic() -> float:
    import time

    return time.monotonic()


def _poll(condition: Callable[[], bool], timeout: float | None) -> bool:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while not condition():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    return True


def cgroup_parent() -> str:
    """The cgroup every container of this engine goes under: ``tsubo``, or
    ``$TSUBO_CGROUP_PARENT`` (Docker's ``--cgroup-parent`` as an engine setting; the test
    suite uses it to keep its cgroups apart and remove them afterwards)."""
    parent = os.environ.get("TSUBO_CGROUP_PARENT", "tsubo").strip("/")
    if not parent or any(part in ("", ".", "..") for part in parent.split("/")):
        raise InvalidArgument("use cgroup parent", parent, detail="must be a relative path "
                              "without . or .. (set by $TSUBO_CGROUP_PARENT)")
    return parent


def _init_binary() -> str:
    for path in INIT_BINARIES:
        if os.access(path, os.X_OK):
            return path
    raise NotFound("find init", INIT_BINARIES[0],
                   detail="--init needs Debian's tini (tini-static) or catatonit")


def _hard_limit(name: str) -> int:
    import resource

    return int(resource.getrlimit(getattr(resource, name))[1])
