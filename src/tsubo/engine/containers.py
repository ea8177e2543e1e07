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

from tsubo.engine.paths import EnginePaths
from tsubo.errors import InvalidArgument, NotFound, TsuboError, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from tsubo.engine.db import ContainerRow, Database
    from tsubo.engine.options import RunOptions
    from tsubo.engine.storage import ContainerFiles
    from tsubo.runtime.container import Runtime

INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit")
RUNNING_STATES = ("running", "paused", "restarting")


class Engine:
    """All containers and volumes under one data root."""

    def __init__(self, root: str | None = None, *, paths: EnginePaths | None = None) -> None:
        self.paths = paths or EnginePaths(root)
        self._db: Database | None = None
        self._runtime: Runtime | None = None

    @property
    def db(self) -> Database:
        """The database, opened on first use (so ``run`` can fork its monitor first)."""
        if self._db is None:
            from tsubo.engine.db import Database

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

    def create(self, options: RunOptions, *, name: str | None = None) -> ContainerRow:
        """Create a container (not started): its row, folder, overlay dirs and bundle."""
        from tsubo.engine import db as dbmod
        from tsubo.engine.names import container_name
        from tsubo.engine.ocispec import ImageConfig, build_config
        from tsubo.engine.storage import (
            ContainerFiles,
            check_layer_count,
            check_lower_dir,
            lookup_group,
            make_passwd_lookup,
        )
        from tsubo.oci import jsonwire
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
        container_id = dbmod.new_container_id()
        if name is not None:
            name = container_name(name)  # the one normalisation: "/web" is "web"
        else:
            name = dbmod.generate_name(self.db.name_in_use)
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
                                         labels=jsonwire.dumps(options.labels))
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
        if target.state not in ("running", "paused"):
            raise WrongState("join network of", target.name,
                             detail=f"container {target.name} is not running")
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
        symlink is not copied (it could point out of the root)."""
        from tsubo.engine.storage import mount_root, unmount_root

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
                origin = _directory_in_root(files.merged, destination)
                if origin:
                    _copy_tree(origin, source)
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

        self.db.update_container(container_id, state="starting", stopped_by_user=0,
                                 monitor_pid=0)
        attach.send_all(monitor_fd, attach.encode(attach.GO, container_id.encode()))

    def start(self, ref: str) -> tuple[ContainerRow, int]:
        """Start a created or exited container under a new monitor; returns the row and
        our end of the monitor's attach socket (wait for "started" on it)."""
        row = self.refresh(self.db.resolve_container(ref))
        if row.state in RUNNING_STATES or row.state == "starting":
            raise WrongState("start container", row.name, detail=f"container is {row.state}")
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
        from tsubo.engine import attach
        from tsubo.oci import jsonwire

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
        if row.state not in ("running", "paused"):
            raise WrongState("kill container", row.name,
                             detail=f"container {row.name} is not running")
        self.db.update_container(row.id, stopped_by_user=1)
        self.runtime.kill(row.id, signal)
        if row.state == "paused" and signal == 9:
            self.unpause(row.id)
        return row

    def stop(self, ref: str, timeout: float | None = None) -> ContainerRow:
        """Stop signal, then SIGKILL after *timeout* s (the container's --stop-timeout by
        default); waits until it has exited. Stopping a stopped container is a no-op."""
        from tsubo.engine.options import RunOptions
        from tsubo.kernel.signals import parse_signal

        row = self.refresh(self.db.resolve_container(ref))
        if row.state not in RUNNING_STATES:
            return row
        options = RunOptions.from_json_text(row.options)
        self.db.update_container(row.id, stopped_by_user=1)
        wait_for = options.stop_timeout if timeout is None else timeout
        if row.state == "restarting":
            self._wait_exited(row.id, wait_for + 10)
            return self.db.get_container(row.id)
        try:
            if row.state == "paused":
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
        if row.state != "running":
            raise WrongState("pause container", row.name, detail=f"container is {row.state}")
        self.runtime.pause(row.id)
        self.db.update_container(row.id, state="paused")

    def unpause(self, ref: str) -> None:
        row = self.refresh(self.db.resolve_container(ref))
        if row.state != "paused":
            raise WrongState("unpause container", row.name,
                             detail=f"container is {row.state}, not paused")
        self.runtime.resume(row.id)
        self.db.update_container(row.id, state="running")

    # --- wait / remove --------------------------------------------------------------------

    def wait(self, ref: str, timeout: float | None = None) -> int:
        """Block until the container is not running; its exit code."""
        row = self.db.resolve_container(ref)
        if not self._wait_exited(row.id, timeout):
            raise TsuboError("wait for container", row.name, detail="timed out")
        final = self.db.get_container(row.id)
        return final.exit_code if final.exit_code is not None else -1

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        row = self.refresh(self.db.resolve_container(ref))
        if row.state in RUNNING_STATES:
            if not force:
                raise WrongState("remove container", row.name,
                                 detail=f"container is {row.state}",
                                 hint="stop it first, or use -f")
            self.kill(row.id, 9)
            self._wait_exited(row.id, 20.0)
        remove_container_files(self.paths, self.db, row.id, volumes=volumes)
        return row.id

    # --- exec, logs, inspect, list -----------------------------------------------------------

    def exec(self, ref: str, command: list[str], *, env: list[str] | None = None,
             workdir: str = "", user: str = "", tty: bool = False, detach: bool = False,
             console_socket: str = "") -> int:
        """Run *command* in the running container; returns its exit code (0 when detached).
        Its stdio are ours (the caller's)."""
        from tsubo.engine.ocispec import resolve_user
        from tsubo.engine.storage import ContainerFiles, lookup_group, make_passwd_lookup

        row = self.refresh(self.db.resolve_container(ref))
        if row.state not in ("running",):
            raise WrongState("exec in container", row.name,
                             detail=f"container {row.name} is not running")
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
            return self.refresh(self.db.get_container(row.id)).state in RUNNING_STATES

        return logs.follow_logs(path, is_running=is_running, tail=tail, since=since,
                                timestamps=timestamps)

    def containers(self, *, all_states: bool = False) -> list[ContainerRow]:
        rows = [self.refresh(row) for row in self.db.list_containers(True)]
        if all_states:
            return rows
        return [row for row in rows if row.state in RUNNING_STATES]

    def inspect(self, ref: str) -> dict[str, Any]:
        from tsubo.engine.inspect import inspect_container

        row = self.refresh(self.db.resolve_container(ref))
        return inspect_container(self, row)

    def prune(self) -> list[str]:
        """Remove every stopped container; their IDs."""
        removed = []
        for row in self.containers(all_states=True):
            if row.state not in RUNNING_STATES and row.state != "starting":
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
                if row.state in (*RUNNING_STATES, "starting")}
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
        for name in prune_layer_links(f"{self.paths.data}/{LINKS_DIR}"):
            done.append(f"removed the link {LINKS_DIR}/{name} of a removed layer")
        return done

    # --- reconciling -------------------------------------------------------------------------

    def refresh(self, row: ContainerRow) -> ContainerRow:
        """A row whose state says a monitor owns it, but whose monitor is gone (killed, or a
        crash), is reconciled with the runtime: exited, and its leftovers cleaned."""
        from tsubo.kernel.procfs import is_alive

        if row.state not in (*RUNNING_STATES, "starting"):
            return row
        if row.monitor_pid and is_alive(row.monitor_pid, row.monitor_start_time):
            return row
        if row.state == "starting" and not row.monitor_pid:
            return row  # a monitor that has not registered itself yet
        from tsubo.engine.db import now_rfc3339
        from tsubo.engine.storage import unmount_root

        try:
            self.runtime.delete(row.id, force=True)
        except NotFound:
            pass
        detach_networks(self.paths, self.db, row.id)
        unmount_root(f"{self.paths.container_dir(row.id)}/merged")
        self.db.update_container(row.id, state="exited", pid=0, monitor_pid=0,
                                 exit_code=row.exit_code if row.exit_code is not None else 255,
                                 finished_at=row.finished_at or now_rfc3339())
        return self.db.get_container(row.id)

    def _wait_exited(self, container_id: str, timeout: float | None) -> bool:
        return _poll(lambda: self.refresh(self.db.get_container(container_id)).state
                     not in (*RUNNING_STATES, "starting"), timeout)


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


def _directory_in_root(root: str, path: str) -> str:
    """``root + path`` when every component is a real directory (no symlink), else ""."""
    import stat

    current = root
    for part in path.strip("/").split("/"):
        if part in ("", ".", ".."):
            return ""
        current = f"{current}/{part}"
        try:
            info = os.lstat(current)
        except OSError:
            return ""
        if not stat.S_ISDIR(info.st_mode):
            return ""
    return current


def _copy_tree(source: str, target: str) -> None:
    """``cp -a source/. target``: owners, modes, links, devices and xattrs kept."""
    import subprocess

    proc = subprocess.run(["cp", "-a", "--", f"{source}/.", target], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise TsuboError("copy image content into volume", target,
                         detail=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                         else f"cp exited {proc.returncode}")


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
