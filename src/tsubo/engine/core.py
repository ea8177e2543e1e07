"""The engine's core: containers of one data root, what can be done to them without a
monitor's help, and the container-creation path the monitor runs for ``run``.

State lives in SQLite (``state/db.py``); the runtime is used in-process
(:class:`tsubo.runtime.container.Runtime`), never as a subprocess. Every operation reads the
container's row, refreshes it (a row whose monitor died is adopted first: :meth:`refresh`),
checks its status (``engine/status.py``), then acts. No transaction is held across kernel
work. :class:`tsubo.engine.containers.Engine` adds what needs the monitor (start, stop,
wait, remove); the monitor itself works on an :class:`EngineCore`.
"""

from __future__ import annotations

import os

from tsubo.engine import status
from tsubo.engine.paths import EnginePaths
from tsubo.engine.teardown import remove_container_files
from tsubo.errors import InvalidArgument, NotFound, TsuboError, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from tsubo.engine.options import RunOptions
    from tsubo.engine.storage import ContainerFiles, ResolverSettings
    from tsubo.runtime.container import Runtime
    from tsubo.state.db import ContainerRow, Database

INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit")
#: how long a failed exec waits for an exiting init to be gone (seconds)
_EXITING_GRACE = 0.2


class EngineCore:
    """All containers and volumes under one data root."""

    def __init__(self, root: str | None = None, *, paths: EnginePaths | None = None) -> None:
        self.paths = paths or EnginePaths(root)
        self._db: Database | None = None
        self._runtime: Runtime | None = None
        #: how a row whose monitor died is taken over: the monitor adopts it itself; a
        #: command asks the root's monitor (``Engine``)
        self.reconcile: Callable[[], None] = lambda: None

    @property
    def db(self) -> Database:
        """The database, opened on first use (so ``run`` can fork its monitor first)."""
        if self._db is None:
            import sqlite3

            from tsubo.state.db import Database

            try:
                self._db = Database(self.paths.database)
            except OSError as error:  # a root that cannot hold it: one line, not a traceback
                if isinstance(error, FileExistsError):  # makedirs of a root that is a file
                    error = NotADirectoryError(20, "not a directory")
                raise TsuboError.from_os_error("open the engine database",
                                               self.paths.database, error,
                                               hint="--root or $TSUBO_ROOT names a "
                                               "writable folder") from None
            except sqlite3.Error as error:
                raise TsuboError("open the engine database", self.paths.database,
                                 detail=str(error)) from None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> EngineCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from tsubo.runtime.container import Runtime

            self._runtime = Runtime(self.paths.runtime_root)
        return self._runtime

    # --- create -------------------------------------------------------------------------

    def create(self, options: RunOptions, *, name: str | None = None,
               owner: tuple[int, int] | None = None) -> ContainerRow:
        """Create a container (not started): its row, folder, overlay dirs and bundle.
        With *owner* (the creating monitor's pid and start time, for ``run``) the row is
        born "starting" and that monitor's."""
        from tsubo import jsonwire
        from tsubo.engine.ocispec import ImageConfig, build_config
        from tsubo.engine.storage import (
            ContainerFiles,
            check_lower_dir,
            lookup_group,
            make_passwd_lookup,
        )
        from tsubo.image.snapshots import check_layer_count
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
        if options.publish:  # a fixed host port in use: refused before anything is made
            from tsubo.engine.networks import NetworkManager

            NetworkManager(self).check_ports(options.publish, name or "",
                                             options.networks[:1])
        container_id = names.new_container_id()
        if name is not None:
            name = container_name(name)  # the one normalisation: "/web" is "web"
        else:
            name = names.generate_name(self.db.name_in_use)
        files = ContainerFiles(self.paths.container_dir(container_id))
        devices = self._devices(options)
        joined = self._joined_namespaces(options)
        self._add_volumes_from(options)
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
            hostname = os.uname().nodename if options.uts_mode == "host" else \
                joined.get("hostname") or options.hostname or container_id[:12]
            etc_files = files.write_etc_files(hostname, nameserver=nameserver,
                                              resolver=_resolver_settings(options, nameserver))
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
                netns_path=netns_path, devices=devices, joined=joined,
            )
            with open(files.config, "w", encoding="utf-8") as config_file:
                config_file.write(jsonwire.dumps(config))
            undo.commit()
        self.event(container_id, "create", name=name, image=options.image or options.rootfs)
        return self.db.get_container(container_id)

    def event(self, container_id: str, action: str, **attributes: str) -> None:
        """Record a container event (``state/events.py``; never fails)."""
        from tsubo.state import events

        events.record(self.paths.data, "container", action, container_id, attributes)

    def _devices(self, options: RunOptions) -> list[dict[str, Any]]:
        """The host's device nodes ``--privileged`` and ``--device`` give."""
        if not options.privileged and not options.devices:
            return []
        from tsubo.engine.devices import device_entries, host_devices

        found = host_devices() if options.privileged else []
        for host, container, permissions in options.devices:
            found += device_entries(host, container, permissions)
        return found

    def _joined_namespaces(self, options: RunOptions) -> dict[str, str]:
        """``--pid/--ipc/--uts container:NAME``: that running container's namespaces
        (``/proc/PID/ns/*``), and its host name for ``uts``. (Docker also binds a
        shareable container's ``/dev/shm``, which Docker keeps on the host; tsubo's lives
        in the container's own mount namespace, which cannot be bound from.)"""
        joined: dict[str, str] = {}
        for kind, mode in (("pid", options.pid_mode), ("ipc", options.ipc_mode),
                           ("uts", options.uts_mode)):
            if not mode.startswith("container:"):
                continue
            target = self.refresh(self.db.resolve_container(mode.partition(":")[2]))
            if target.state not in (status.RUNNING, status.PAUSED):
                raise WrongState(f"join {kind} namespace of", target.name,
                                 detail=f"container {target.name} is not running")
            joined[kind] = f"/proc/{target.pid}/ns/{kind}"
            if kind == "uts":
                joined["hostname"] = self.runtime.store.load(target.id).config.get(
                    "hostname") or target.id[:12]
        return joined

    def rejoin_namespaces(self, container_id: str, options: RunOptions) -> None:
        """Before a container made with ``--pid/--ipc/--uts container:NAME`` starts again:
        point its config at that container's namespaces *now* (the pid it was created
        with may be gone, or another process's), or refuse if it is not running."""
        joined = self._joined_namespaces(options)
        if not joined:
            return
        from tsubo import jsonwire
        from tsubo.engine.storage import ContainerFiles

        path = ContainerFiles(self.paths.container_dir(container_id)).config
        with open(path, "rb") as config_file:
            config = jsonwire.loads(config_file.read(), path)
        assert isinstance(config, dict)  # written by create
        for namespace in config["linux"]["namespaces"]:
            if namespace["type"] in joined:
                namespace["path"] = joined[namespace["type"]]
        with open(f"{path}.new", "w", encoding="utf-8") as config_file:
            config_file.write(jsonwire.dumps(config))
        os.replace(f"{path}.new", path)

    def _add_volumes_from(self, options: RunOptions) -> None:
        """``--volumes-from NAME[:ro|rw]``: that container's volumes and bind mounts at the
        same paths (read-only if it had them so, unless a mode is given), except where
        this container mounts something itself (Docker's rule)."""
        from tsubo.engine.options import RunOptions as Options
        from tsubo.engine.options import VolumeSpec

        taken = {volume.destination for volume in options.volumes} | \
            {tmpfs.destination for tmpfs in options.tmpfs}
        for text in options.volumes_from:
            ref, _, mode = text.partition(":")
            source = self.db.resolve_container(ref)
            attached = {destination: name
                        for name, destination in self.db.container_volumes(source.id)}
            for volume in Options.from_json_text(source.options).volumes:
                if volume.destination in taken:
                    continue
                name = volume.source if volume.is_bind else \
                    attached.get(volume.destination, volume.source)
                if not name:
                    continue
                read_only = volume.read_only if not mode else mode == "ro"
                options.volumes.append(VolumeSpec(
                    name, volume.destination, read_only=read_only,
                    is_named=not volume.is_bind, propagation=volume.propagation,
                    options=[option for option in volume.options if option != "nocopy"]
                    + ["nocopy"] * (not volume.is_bind)))
                taken.add(volume.destination)

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
        from tsubo.engine.networks import NetworkManager

        manager = NetworkManager(self)
        gateways = [manager.get_or_make_default(network).gateway
                    for network in options.networks]
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
        from tsubo.image.snapshots import mount_root, unmount_root
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

    # --- kill / pause / exec / logs / list ------------------------------------------------

    def kill(self, ref: str, signal: int = 9) -> ContainerRow:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("kill", row.name, row.state)
        self.db.update_container(row.id, stopped_by_user=1)
        self.event(row.id, "kill", name=row.name, signal=str(signal))  # before its "die"
        self.runtime.kill(row.id, signal)
        if row.state == status.PAUSED and signal == 9:
            self.unpause(row.id)
        return row

    def pause(self, ref: str) -> None:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("pause", row.name, row.state)
        self.runtime.pause(row.id)
        self.db.update_container(row.id, state=status.PAUSED)
        self.event(row.id, "pause", name=row.name)

    def unpause(self, ref: str) -> None:
        row = self.refresh(self.db.resolve_container(ref))
        status.check("unpause", row.name, row.state)
        self.runtime.resume(row.id)
        self.db.update_container(row.id, state=status.RUNNING)
        self.event(row.id, "unpause", name=row.name)

    def exec(self, ref: str, command: list[str], *, env: list[str] | None = None,
             workdir: str = "", user: str = "", tty: bool = False, detach: bool = False,
             console_socket: str = "", stdio: tuple[int, int, int] | None = None,
             forward_signals: bool = True) -> int:
        """Run *command* in the running container; returns its exit code (0 when detached).
        Its stdin, stdout and stderr are *stdio* (default: the caller's own 0, 1, 2);
        *forward_signals* (main thread only) relays our signals to it while we wait."""
        from tsubo.engine.ocispec import resolve_user
        from tsubo.engine.storage import ContainerFiles, lookup_group, make_passwd_lookup

        row = self.refresh(self.db.resolve_container(ref))
        status.check("exec in", row.name, row.state)
        if not command:
            raise InvalidArgument("exec in container", row.name, detail="no command given")
        try:
            record = self.runtime.store.load(row.id)
        except TsuboError:  # the monitor deleted it: the container has just exited
            self._raise_if_exited(row)
            raise
        process: dict[str, Any] = dict(record.config.get("process") or {})
        process["args"] = command
        process["terminal"] = tty
        # as Docker's exec: TERM=xterm with a terminal, then the caller's variables, each
        # replacing the container's of the same name
        extra = [*(["TERM=xterm"] if tty else []), *(env or [])]
        if extra:
            process["env"] = _replace_or_append(list(process.get("env", [])), extra)
        if workdir:
            process["cwd"] = workdir
        if user:
            # the running container's own view (its writes included), as docker exec -u
            root = ContainerFiles(self.paths.container_dir(row.id)).merged
            uid, gid, groups = resolve_user(user, make_passwd_lookup(root),
                                            lambda name: lookup_group(root, name))
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        self.event(row.id, f"exec_start: {' '.join(command)}", name=row.name)
        try:
            info = self.runtime.exec(row.id, process, detach=detach,
                                     console_socket=console_socket, stdio=stdio,
                                     forward_signals=forward_signals)
        except TsuboError as error:
            if error.operation == "exec" and error.errno in (2, 8, 13, 21):
                raise  # the command itself: not found or not executable (127, 126)
            self._raise_if_exited(row)
            raise
        return info.exit_code

    def _raise_if_exited(self, row: ContainerRow) -> None:
        """Docker's "container X is not running" when the container exited while we
        exec'd into it (which fails somewhere in the runtime's internals: its state
        deleted, its cgroup or namespaces gone), rather than those internals."""
        if not self._still_running(row.id):
            raise WrongState("exec in container", row.name,
                             detail=f"container {row.name} is not running") from None

    def _still_running(self, container_id: str) -> bool:
        """Whether the container runs, asked after an exec failed in the runtime's
        internals: an init in the middle of exiting (its namespaces already going, not yet
        a zombie) is given a moment to finish, so that race too reads as "not running"."""
        from tsubo.kernel.procfs import wait_until_gone

        try:
            row = self.refresh(self.db.get_container(container_id))
            record = self.runtime.store.load(container_id)
        except TsuboError:
            return False
        return row.state in (status.RUNNING, status.PAUSED) and \
            not wait_until_gone(record.pid, record.start_time, _EXITING_GRACE)

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False,
             until: float | None = None) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) of the container's log; *until* (an end) reads what is there
        up to that time and does not follow."""
        from tsubo.engine import logs
        from tsubo.engine.storage import ContainerFiles

        row = self.db.resolve_container(ref)
        from tsubo.engine.options import RunOptions

        if RunOptions.from_json_text(row.options).log_driver == "none":
            raise InvalidArgument("logs", row.name, detail="configured logging driver does "
                                  "not support reading")
        path = ContainerFiles(self.paths.container_dir(row.id)).log
        if not follow or until is not None:
            return logs.read_logs(path, tail=tail, since=since, until=until,
                                  timestamps=timestamps)

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
        from tsubo.engine.lab.records import live_owners
        from tsubo.image.snapshots import LINKS_DIR, prune_layer_links, unmount_root
        from tsubo.network import bridge
        from tsubo.network.store import NetworkStore

        done: list[str] = []
        rows = {row.id: self.refresh(row) for row in self.db.list_containers(True)}
        live = {cid for cid, row in rows.items()
                if row.state in status.MONITORED}
        store = NetworkStore(self.db)
        network_ids = {network.id for network in store.list_networks()}
        labs = live_owners(self.paths)  # a lab's bridges and host links live with its record
        for entry in store.ledger_entries():
            if entry.owner in live or entry.owner in network_ids or entry.owner in labs:
                continue
            if entry.kind == "netns":
                bridge.delete_netns(entry.name)
            elif entry.kind == "link":
                bridge.apply_endpoint_detach(bridge.plan_endpoint_detach(entry.name))
            elif entry.kind == "nft-chain":  # a container's published ports
                from tsubo.engine.networks import unpublish

                unpublish(store, entry.owner)
            if store.forget(entry.kind, entry.name) or entry.kind == "nft-chain":
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


def _replace_or_append(env: list[str], changes: list[str]) -> list[str]:
    """*env* with each ``KEY=VALUE`` of *changes* replacing *KEY*'s entry, or appended."""
    for change in changes:
        key = change.partition("=")[0] + "="
        for index, entry in enumerate(env):
            if entry.startswith(key):
                env[index] = change
                break
        else:
            env.append(change)
    return env


def _apply_image_defaults(options: RunOptions, image_config: dict[str, Any]) -> None:
    """What the image config decides unless the user did: the stop signal, an anonymous
    volume for each ``Volumes`` path no ``-v`` covers (as Docker), and for ``-P`` an
    ephemeral published port for each exposed port no ``-p`` names."""
    from tsubo.engine.options import VolumeSpec, parse_signal_name

    if not options.stop_signal:
        declared = image_config.get("StopSignal")
        options.stop_signal = parse_signal_name(declared) if isinstance(declared, str) \
            and declared else "SIGTERM"
    if options.publish_all:  # -P: every exposed port (--expose, the image's EXPOSE)
        from tsubo.network.ports import parse_expose, publish_all

        exposed = [pair for text in options.expose for pair in parse_expose(text)]
        declared_ports = image_config.get("ExposedPorts")
        if isinstance(declared_ports, dict):
            exposed += [pair for key in declared_ports if isinstance(key, str)
                        for pair in parse_expose(key, "EXPOSE")]
        options.publish = publish_all(options.publish, exposed)
    options.healthcheck = effective_healthcheck(options.healthcheck,
                                                image_config.get("Healthcheck"))
    declared_volumes = image_config.get("Volumes")
    if isinstance(declared_volumes, dict):
        taken = {os.path.normpath(volume.destination) for volume in options.volumes}
        for path in sorted(declared_volumes):
            if isinstance(path, str) and path.startswith("/") \
                    and os.path.normpath(path) not in taken:
                options.volumes.append(VolumeSpec("", os.path.normpath(path)))


#: Docker's defaults for what a HEALTHCHECK leaves out (ns; retries)
HEALTH_DEFAULTS = {"Interval": 30_000_000_000, "Timeout": 30_000_000_000, "StartPeriod": 0,
                   "Retries": 3}


def effective_healthcheck(given: dict[str, Any] | None, declared: object
                          ) -> dict[str, Any] | None:
    """The health check a container runs: the ``--health-*`` flags over the image's
    HEALTHCHECK (a field left out or zero is the image's, then Docker's default); None
    when there is none or ``--no-healthcheck``/``HEALTHCHECK NONE`` turned it off."""
    image = declared if isinstance(declared, dict) else {}
    merged = dict(image) if given is None else dict(given)
    if given is not None and not merged.get("Test"):
        merged["Test"] = image.get("Test") or []
    test = merged.get("Test")
    if not isinstance(test, list) or not test or test[0] == "NONE":
        return None
    for field, default in HEALTH_DEFAULTS.items():
        if not merged.get(field):
            merged[field] = image.get(field) or default
    return merged


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


def _resolver_settings(options: RunOptions, gateway: str) -> ResolverSettings:
    """The /etc/hosts and resolv.conf settings of *options*; ``host-gateway`` is *gateway*
    (the first network's, which the options builder made sure exists)."""
    from tsubo.engine.options import HOST_GATEWAY
    from tsubo.engine.storage import ResolverSettings

    hosts = [(name, gateway if address == HOST_GATEWAY else address)
             for name, address in options.add_hosts]
    return ResolverSettings(hosts=hosts, nameservers=options.dns, search=options.dns_search,
                            options=options.dns_options, domainname=options.domainname)
