"""The Python API: what ``import tsubo`` gives, and all the ``tsubo`` and ``tsubo-runtime``
command lines are shells over (``cli/`` imports nothing else of tsubo).

    import tsubo

    with tsubo.Engine(root="/tmp/tsubo-demo") as engine:
        with engine.run(rootfs="/srv/busybox", command=["sleep", "60"], memory="64m") as c:
            result = c.exec(["sh", "-c", "echo hello from $(hostname)"])
            print(result.exit_code, result.stdout)      # 0 b'hello from 3f2a...\\n'
        # leaving the block removed the container (force)

:class:`Engine` is one data root: containers (``create``, ``run``, ``start``, ``stop``,
``exec``, ``logs``, ...), volumes, images (``pull``, ``push``, ``save``, ``load``, ...),
networks and registry credentials. Options are Docker's ``run`` flags as keyword arguments
(``memory="64m"`` or ``memory=64 << 20``, ``env={"A": "1"}`` or ``["A=1"]``,
``volumes=["./data:/data"]``): one builder (``engine/options.build_run_options``) serves this
API and the CLI, so both give the same answer, and the same error, to the same input;
relative paths are the caller's. Nothing here touches the calling process's stdin, stdout or
stderr unless asked to (the attach helpers the CLI uses), and two threads may run and exec
containers at once. Errors are :class:`tsubo.errors.TsuboError` subclasses with
``operation``, ``object``, ``errno`` and ``hint`` fields.

The module imports nothing heavy itself: the engine, the runtime and the image code are
loaded on first use, so ``tsubo-runtime``'s hot path pays only for the runtime. The names of
the lower layers a caller needs as values or types (``Image``, ``ContainerRecord``,
``Runtime``, ``parse_reference``, ...) are re-exported from here, loaded on first access.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType
    from typing import Any, BinaryIO, TypeVar

    _T = TypeVar("_T")
    #: pulls (reference, platform, was it missing) for ``--pull`` (``Engine.with_image``)
    Puller = Callable[[str, str, bool], object]

    from tsubo.engine.attach import AttachClient, parse_detach_keys
    from tsubo.engine.containers import Engine as EngineCommands
    from tsubo.engine.diskusage import DiskUsage, PruneResult, layer_sizes
    from tsubo.engine.lab.checks import CheckResult
    from tsubo.engine.lab.topology import Topology
    from tsubo.engine.logs import parse_since
    from tsubo.engine.options import RunOptions, parse_size
    from tsubo.engine.stats import ContainerStats, StatsSampler
    from tsubo.image.archive import LoadedImage, iter_loaded_lines
    from tsubo.image.auth import normalise_key
    from tsubo.image.pull import PullResult, parse_platform
    from tsubo.image.push import PushResult, destination_reference
    from tsubo.image.reference import Reference, parse_reference
    from tsubo.image.store import Image, ImageStore
    from tsubo.kernel.signals import parse_signal, signal_name
    from tsubo.network.models import Endpoint, Network
    from tsubo.network.ports import PublishedPort, port_lines, ports_column
    from tsubo.oci.default_spec import default_spec
    from tsubo.runtime.container import Runtime, read_caller_file
    from tsubo.runtime.exec import process_from_flags
    from tsubo.runtime.features import features
    from tsubo.state.clock import now_rfc3339
    from tsubo.state.db import ContainerRow as ContainerRecord
    from tsubo.state.db import VolumeRow as VolumeRecord

#: name -> (module, attribute): what this module re-exports, loaded on first access
_REEXPORTS = {
    "AttachClient": ("tsubo.engine.attach", "AttachClient"),
    "CheckResult": ("tsubo.engine.lab.checks", "CheckResult"),
    "Topology": ("tsubo.engine.lab.topology", "Topology"),
    "ContainerRecord": ("tsubo.state.db", "ContainerRow"),
    "ContainerStats": ("tsubo.engine.stats", "ContainerStats"),
    "DiskUsage": ("tsubo.engine.diskusage", "DiskUsage"),
    "Endpoint": ("tsubo.network.models", "Endpoint"),
    "Image": ("tsubo.image.store", "Image"),
    "LoadedImage": ("tsubo.image.archive", "LoadedImage"),
    "Network": ("tsubo.network.models", "Network"),
    "PruneResult": ("tsubo.engine.diskusage", "PruneResult"),
    "PublishedPort": ("tsubo.network.ports", "PublishedPort"),
    "PullResult": ("tsubo.image.pull", "PullResult"),
    "PushResult": ("tsubo.image.push", "PushResult"),
    "Reference": ("tsubo.image.reference", "Reference"),
    "RunOptions": ("tsubo.engine.options", "RunOptions"),
    "Runtime": ("tsubo.runtime.container", "Runtime"),
    "VolumeRecord": ("tsubo.state.db", "VolumeRow"),
    "default_spec": ("tsubo.oci.default_spec", "default_spec"),
    "destination_reference": ("tsubo.image.push", "destination_reference"),
    "features": ("tsubo.runtime.features", "features"),
    "iter_loaded_lines": ("tsubo.image.archive", "iter_loaded_lines"),
    "normalise_key": ("tsubo.image.auth", "normalise_key"),
    "now_rfc3339": ("tsubo.state.clock", "now_rfc3339"),
    "parse_platform": ("tsubo.image.pull", "parse_platform"),
    "parse_reference": ("tsubo.image.reference", "parse_reference"),
    "parse_signal": ("tsubo.kernel.signals", "parse_signal"),
    "parse_size": ("tsubo.engine.options", "parse_size"),
    "parse_since": ("tsubo.engine.logs", "parse_since"),
    "parse_detach_keys": ("tsubo.engine.attach", "parse_detach_keys"),
    "port_lines": ("tsubo.network.ports", "port_lines"),
    "ports_column": ("tsubo.network.ports", "ports_column"),
    "process_from_flags": ("tsubo.runtime.exec", "process_from_flags"),
    "read_caller_file": ("tsubo.runtime.container", "read_caller_file"),
    "signal_name": ("tsubo.kernel.signals", "signal_name"),
    "layer_sizes": ("tsubo.engine.diskusage", "layer_sizes"),
}


def __getattr__(name: str) -> object:
    found = _REEXPORTS.get(name)
    if found is None:
        raise AttributeError(f"module 'tsubo.api' has no attribute {name!r}")
    value = getattr(__import__(found[0], fromlist=[found[1]]), found[1])
    globals()[name] = value
    return value


def build_run_options(given: dict[str, Any], *, cwd: str | None = None) -> RunOptions:
    """Docker's ``create``/``run`` options, validated (see the module docstring)."""
    from tsubo.engine.options import build_run_options as build

    return build(given, cwd=cwd)


class ExecResult:
    """How an exec'd command ended, and what it printed."""

    __slots__ = ("exit_code", "stderr", "stdout")

    def __init__(self, exit_code: int, stdout: bytes, stderr: bytes) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"ExecResult(exit_code={self.exit_code}, stdout={self.stdout!r})"


class Container:
    """A handle on one container; every property reads the current state."""

    def __init__(self, engine: Engine, container_id: str) -> None:
        self._engine = engine
        self.id = container_id

    @property
    def record(self) -> ContainerRecord:
        """Its row, refreshed (a container whose monitor died is adopted first)."""
        core = self._engine.core
        return core.refresh(core.db.get_container(self.id))

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def status(self) -> str:
        """created, starting, running, paused, restarting, exited or removing."""
        return self.record.state

    @property
    def exit_code(self) -> int | None:
        return self.record.exit_code

    @property
    def pid(self) -> int:
        return self.record.pid

    def exec(self, command: Sequence[str], *, env: Sequence[str] = (), workdir: str = "",
             user: str = "", stdin: bytes | None = None) -> ExecResult:
        """Run *command* in the container and collect its output (*stdin*: bytes it reads,
        else nothing). Our own stdio are never touched."""
        import tempfile

        with tempfile.TemporaryFile() as given, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:
            if stdin:
                given.write(stdin)
                given.flush()
                given.seek(0)
            code = self._engine.core.exec(self.id, list(command), env=list(env),
                                          workdir=workdir, user=user,
                                          stdio=(given.fileno(), out.fileno(), err.fileno()),
                                          forward_signals=False)
            out.seek(0)
            err.seek(0)
            return ExecResult(code, out.read(), err.read())

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None,
             since: float | None = None) -> bytes:
        """Everything the container printed (both streams interleaved by default)."""
        return b"".join(self.stream_logs(stdout=stdout, stderr=stderr, tail=tail,
                                         since=since, follow=False))

    def stream_logs(self, *, stdout: bool = True, stderr: bool = True,
                    tail: int | None = None, since: float | None = None,
                    follow: bool = True) -> Iterator[bytes]:
        """What the container prints, chunk by chunk, as it prints it (``logs -f``): the
        iterator ends when the container does."""
        wanted = {name for name, on in (("stdout", stdout), ("stderr", stderr)) if on}
        return (data for stream, data in self._engine.logs(self.id, follow=follow, tail=tail,
                                                           since=since)
                if stream in wanted)

    def wait(self, timeout: float | None = None) -> int:
        return self._engine.wait(self.id, timeout)

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Return once its health check says healthy (see :meth:`Engine.wait_healthy`)."""
        self._engine.wait_healthy(self.id, timeout)

    @property
    def health(self) -> str:
        """``starting``, ``healthy``, ``unhealthy``, or ``""`` (no check, not running)."""
        return self._engine.health_status(self.id)

    def stop(self, timeout: float | None = None) -> None:
        self._engine.stop(self.id, timeout)

    def kill(self, signal: int | str = 9) -> None:
        self._engine.kill(self.id, signal)

    def pause(self) -> None:
        self._engine.pause(self.id)

    def unpause(self) -> None:
        self._engine.unpause(self.id)

    def restart(self, timeout: float | None = None) -> None:
        self._engine.restart(self.id, timeout)

    def remove(self, *, force: bool = False, volumes: bool = False) -> None:
        self._engine.remove(self.id, force=force, volumes=volumes)

    def inspect(self) -> dict[str, Any]:
        return self._engine.inspect_container(self.id)

    @property
    def ports(self) -> list[PublishedPort]:
        """The host ports published to it while it runs (``docker port``)."""
        return self._engine.published_ports(self.id).get(self.id, [])

    def rename(self, name: str) -> None:
        self._engine.rename(self.id, name)

    def update(self, **changes: Any) -> None:
        """See :meth:`Engine.update`."""
        self._engine.update(self.id, **changes)

    def copy_from(self, path: str, destination: str = "", *, stream: BinaryIO | None = None,
                  follow: bool = False, archive: bool = False) -> None:
        """``docker cp CONTAINER:PATH DESTINATION`` (or a tar archive to *stream*)."""
        self._engine.copy_from(self.id, path, destination, stream=stream, follow=follow,
                               archive=archive)

    def copy_to(self, source: str, path: str, *, stream: BinaryIO | None = None,
                follow: bool = False, archive: bool = False) -> None:
        """``docker cp SOURCE CONTAINER:PATH`` (``source=""``: a tar archive from *stream*)."""
        self._engine.copy_to(self.id, source, path, stream=stream, follow=follow,
                             archive=archive)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Remove it, whatever state it reached (it may have just exited): an error here
        never replaces the one that ended the block."""
        try:
            self.remove(force=True, volumes=True)
        except NotFound:
            pass
        except Exception:
            if exc is None:
                raise

    def __repr__(self) -> str:
        return f"Container({self.id[:12]})"


class Engine:
    """All containers, volumes, images and networks under one data root (default
    ``/var/lib/tsubo`` or ``$TSUBO_ROOT``). One per thread: its database connection is."""

    def __init__(self, root: str | None = None) -> None:
        from tsubo.engine.containers import Engine as EngineCommands

        self.core: EngineCommands = EngineCommands(root)
        #: what is done with a warning about a container being made (Docker's
        #: ``Warnings``: the host does not forward IPv4): a Python ``RuntimeWarning``;
        #: the CLI prints ``WARNING: ...`` on stderr instead
        self.on_warning: Callable[[str], object] = _runtime_warning

    @property
    def root(self) -> str:
        return self.core.paths.data

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- containers ---------------------------------------------------------------------------

    def create(self, image: str = "", *, rootfs: str = "", command: Sequence[str] = (),
               name: str | None = None, cwd: str | None = None,
               puller: Puller | None = None, **options: Any) -> Container:
        """Create a container without starting it; *options* are ``docker run``'s flags
        (``env``, ``memory``, ``cpus``, ``volumes``, ``network``, ``pull``, ...). A missing
        image is pulled first (``pull="missing"``, Docker's default; see
        :meth:`with_image`)."""
        run_options = _options(image, rootfs, command, options, cwd)
        row = self.with_image(run_options, lambda: self.core.create(run_options, name=name),
                              puller)
        container = Container(self, row.id)
        self._warn(run_options)
        return container

    def run(self, image: str = "", *, rootfs: str = "", command: Sequence[str] = (),
            name: str | None = None, remove: bool = False, cwd: str | None = None,
            puller: Puller | None = None, **options: Any) -> Container:
        """Create and start a container in the background; returns once it runs (a
        missing image pulled first, as :meth:`create`)."""
        extra = dict(options)
        if remove or "rm" not in extra:  # the CLI's values carry ``rm`` itself (run -d --rm)
            extra["rm"] = remove
        run_options = _options(image, rootfs, command, extra, cwd)
        row = self.with_image(run_options,
                              lambda: self.core.run_detached(run_options, name=name), puller)
        container = Container(self, row.id)
        self._warn(run_options)
        return container

    def with_image(self, options: RunOptions, attempt: Callable[[], _T],
                   puller: Puller | None = None) -> _T:
        """*attempt* (a create or run of *options*) with Docker's ``--pull`` policy:
        ``always`` pulls the image first; ``missing`` (the default) pulls it when
        *attempt* finds no such image, then tries again; ``never`` does not pull.
        *puller* (reference, platform, missing) pulls, showing what it likes (the CLI:
        "Unable to find image 'X' locally" and the progress, on stderr); by default the
        pull is silent. Nothing is looked up ahead of *attempt* (``run`` stays fast)."""
        if not options.image or options.rootfs:
            return attempt()

        def pull(missing: bool) -> None:
            if puller is not None:
                puller(options.image, options.platform, missing)
            else:
                self.pull(options.image, platform=options.platform)

        if options.pull == "always":
            pull(False)
            return attempt()
        try:
            return attempt()
        except NotFound as error:
            if options.pull == "never" or error.operation != "find image":
                raise
        pull(True)
        return attempt()

    def run_attached(self, options: RunOptions, *, name: str | None = None) -> AttachClient:
        """Create and start a container with this process attached to it (the CLI's
        foreground ``run``): ``wait_started()``, then ``relay()`` copies our stdio."""
        client: AttachClient = self.core.run_attached(options, name=name)[1]
        client.on_started = lambda: self._warn(options)
        return client

    def _warn(self, options: RunOptions) -> None:
        """Tell :attr:`on_warning` what will not work for a container just made (after
        it was, as Docker's warnings come with a created container: a failure is one
        line)."""
        if options.network == "bridge":
            from tsubo.engine.networks import forwarding_warning

            warning = forwarding_warning()
            if warning:
                self.on_warning(warning)

    def start(self, ref: str) -> Container:
        """Start a created or exited container; returns once it runs."""
        return Container(self, self.core.start_detached(ref).id)

    def start_attached(self, ref: str, *, stdin: bool = False) -> AttachClient:
        """Start a container with this process attached to it (``start -a``)."""
        from tsubo.engine.attach import AttachClient
        from tsubo.engine.options import RunOptions

        row, fd = self.core.start(ref)
        tty = RunOptions.from_json_text(row.options).tty
        return AttachClient(fd, stdin=stdin, tty=tty)

    def attach(self, ref: str, *, stdin: bool = True, sig_proxy: bool = True) -> AttachClient:
        """Attach this process's stdio to a running container (``docker attach``):
        ``wait_started()``, then ``relay()`` until it exits (its exit code) or the detach
        keys (ctrl-p ctrl-q on a terminal) are typed. Its stdin is only sent when it was
        started with ``interactive`` and *stdin* is true."""
        from tsubo.engine.attach import AttachClient
        from tsubo.engine.options import RunOptions

        row, fd = self.core.attach(ref)
        options = RunOptions.from_json_text(row.options)
        return AttachClient(fd, stdin=stdin and options.interactive, tty=options.tty,
                            sig_proxy=sig_proxy)

    def stop(self, ref: str, timeout: float | None = None) -> None:
        self.core.stop(ref, timeout)

    def restart(self, ref: str, timeout: float | None = None) -> None:
        self.core.restart(ref, timeout)

    def kill(self, ref: str, signal: int | str = 9) -> None:
        if isinstance(signal, str):
            from tsubo.kernel.signals import parse_signal

            signal = parse_signal(signal)
        self.core.kill(ref, signal)

    def pause(self, ref: str) -> None:
        self.core.pause(ref)

    def unpause(self, ref: str) -> None:
        self.core.unpause(ref)

    def wait(self, ref: str, timeout: float | None = None) -> int:
        return self.core.wait(ref, timeout)

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        """Remove a container; its ID."""
        return self.core.remove(ref, force=force, volumes=volumes)

    def exec(self, ref: str, command: Sequence[str], *, env: Sequence[str] = (),
             workdir: str = "", user: str = "", detach: bool = False,
             stdio: tuple[int, int, int] | None = None, console_socket: str = "",
             forward_signals: bool = True) -> int:
        """Run *command* in a running container with *stdio* as its stdin, stdout and
        stderr (None: this process's own, as the CLI wants); its exit code (0 detached).
        With *console_socket*, it gets a terminal sent there (``exec -t``)."""
        from tsubo.engine.options import parse_env

        return self.core.exec(ref, list(command), env=parse_env(list(env)), workdir=workdir,
                              user=user, tty=bool(console_socket), detach=detach,
                              console_socket=console_socket, stdio=stdio,
                              forward_signals=forward_signals)

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False,
             until: float | None = None) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) as the container wrote them, from *since* to *until* (unix
        seconds); *follow* waits for more until it is done."""
        return self.core.logs(ref, follow=follow, tail=tail, since=since,
                              timestamps=timestamps, until=until)

    def rename(self, ref: str, name: str) -> Container:
        """Give a container another name (a stopped one, if it is on a bridge network)."""
        from tsubo.engine.rename import rename_container

        return Container(self, rename_container(self.core, ref, name).id)

    def copy_from(self, ref: str, path: str, destination: str = "", *,
                  stream: BinaryIO | None = None, follow: bool = False,
                  archive: bool = False) -> None:
        """Copy *path* of a container to the host path *destination* (relative: the
        caller's), or as a tar archive to *stream*. Paths resolve inside the container's
        root and never follow a symlink out of it."""
        from tsubo.engine.copy import copy_from_container

        copy_from_container(self.core, ref, path, destination=destination, stream=stream,
                            follow=follow, archive=archive)

    def copy_to(self, ref: str, source: str, path: str, *, stream: BinaryIO | None = None,
                follow: bool = False, archive: bool = False) -> None:
        """Copy the host path *source* (or, when it is ``""``, the tar archive read from
        *stream*) to *path* in a container."""
        from tsubo.engine.copy import copy_to_container

        copy_to_container(self.core, ref, path, source=source, stream=stream, follow=follow,
                          archive=archive)

    def top(self, ref: str, ps_args: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
        """The container's processes as the host's ``ps`` (default ``-ef``) shows them:
        (column titles, rows)."""
        from tsubo.engine.stats import top

        return top(self.core, ref, list(ps_args))

    def stats_sampler(self) -> StatsSampler:
        """Successive readings of containers' use (``sample(records)``), CPU % between
        two readings."""
        from tsubo.engine.stats import StatsSampler

        return StatsSampler(self.core)

    def stats(self, refs: Sequence[str] = (), *, all: bool = False, interval: float = 0.5
              ) -> list[ContainerStats]:
        """One reading of the named containers (default: the running ones; *all*: every
        one), CPU % over *interval* seconds."""
        import time

        rows = [self.core.refresh(self.core.db.resolve_container(ref)) for ref in refs] \
            if refs else self.core.containers(all_states=all)
        sampler = self.stats_sampler()
        sampler.sample(rows)
        time.sleep(interval)
        return sampler.sample(rows)

    def info(self) -> dict[str, Any]:
        """What this engine and host are, as ``docker info`` says it."""
        from tsubo.engine.info import engine_info

        return engine_info(self.core)

    def update(self, ref: str, **changes: Any) -> Container:
        """Change a container's resources (``memory``, ``memory_swap``, ``cpus``,
        ``cpu_shares``, ``pids_limit``, ``cpuset_cpus``; applied at once to a running one)
        and restart policy (``restart="on-failure:3"``), as ``docker update``."""
        from tsubo.engine.update import update_container

        return Container(self, update_container(self.core, ref, changes).id)

    def health_status(self, ref: str) -> str:
        """``starting``, ``healthy`` or ``unhealthy`` for a running container with a health
        check; ``""`` otherwise."""
        from tsubo.engine.health import read_health

        row = self.core.db.resolve_container(ref)
        if row.state != "running":
            return ""
        health = read_health(self.core.paths, row.id)
        status = health.get("Status") if health else ""
        return status if isinstance(status, str) else ""

    def wait_healthy(self, ref: str, timeout: float | None = None) -> None:
        """Return once the container is healthy; WrongState if it stops running first (or
        has no health check), TsuboError after *timeout* seconds."""
        import time

        from tsubo.errors import TsuboError, WrongState

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.core.refresh(self.core.db.resolve_container(ref))
            status = self.health_status(row.id)
            if status == "healthy":
                return
            if row.state not in ("running", "starting", "restarting") or \
                    (row.state == "running" and not status):
                raise WrongState("wait for container", row.name,
                                 detail=f"container is {row.state}" if row.state != "running"
                                 else "the container has no health check")
            if deadline is not None and time.monotonic() >= deadline:
                raise TsuboError("wait for container", row.name,
                                 detail=f"not healthy after {timeout:g}s (it is {status})")
            time.sleep(0.05)

    def inspect_container(self, ref: str) -> dict[str, Any]:
        return self.core.inspect(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        """A container by that name or ID, else an image (as ``docker inspect``)."""
        try:
            return self.core.inspect(ref)
        except NotFound as container_missing:
            try:
                return self.image(ref).inspect()
            except NotFound:
                raise container_missing from None

    def container(self, ref: str) -> Container:
        """By full ID, name or unique ID prefix."""
        return Container(self, self.core.db.resolve_container(ref).id)

    def containers(self, *, all: bool = False) -> list[Container]:
        return [Container(self, row.id) for row in self.core.containers(all_states=all)]

    def published_ports(self, ref: str | None = None) -> dict[str, list[PublishedPort]]:
        """Published host ports by container ID (of the container *ref* if given); a
        container has some only while it runs."""
        from tsubo.engine.networks import NetworkManager

        container_id = None if ref is None else self.core.db.resolve_container(ref).id
        return NetworkManager(self.core).published(container_id)

    def container_records(self, *, all: bool = False) -> list[ContainerRecord]:
        """The rows ``ps`` lists (refreshed)."""
        return self.core.containers(all_states=all)

    def container_sizes(self, records: Sequence[ContainerRecord]
                        ) -> dict[str, tuple[int, int]]:
        """(writable, virtual) bytes of each container (``ps -s``), by ID."""
        from tsubo.engine.diskusage import container_sizes

        return container_sizes(self.core, list(records))

    def container_networks(self, record: ContainerRecord) -> set[str]:
        """The names and IDs of the networks a container is on (``ps --filter
        network=``): those it was created with (``host``, ``none`` or named ones) and those
        it was connected to."""
        from tsubo.engine.networks import NetworkManager
        from tsubo.engine.options import RunOptions

        options = RunOptions.from_json_text(record.options)
        found = set(options.networks) if options.network == "bridge" else {options.network}
        for _, network in NetworkManager(self.core).networks_of(record.id):
            found |= {network.name, network.id}
        return found

    def prune_containers(self) -> list[str]:
        """Remove every stopped container; their IDs."""
        return self.core.prune()

    def gc(self) -> list[str]:
        """Remove what crashed commands or monitors left behind; what was done (labs whose
        deploy died half-way are torn down first)."""
        from tsubo.engine.lab.manager import gc_labs

        return [*gc_labs(self.core), *self.core.gc()]

    # --- volumes -----------------------------------------------------------------------------

    def create_volume(self, name: str = "", *, labels: dict[str, str] | None = None) -> str:
        """A named volume (``""``: a generated name), made if missing; its name."""
        from tsubo.engine.volumes import ensure_volume
        from tsubo.state.names import new_container_id

        name = ensure_volume(self.core, name or new_container_id(), labels=labels)
        self._event("volume", "create", name, driver="local")
        return name

    def volumes(self) -> list[VolumeRecord]:
        return self.core.db.list_volumes()

    def inspect_volume(self, name: str) -> dict[str, Any]:
        from tsubo.engine.volumes import inspect_volume

        return inspect_volume(self.core, name)

    def remove_volume(self, name: str) -> None:
        from tsubo.engine.volumes import remove_volume

        remove_volume(self.core, name)
        self._event("volume", "destroy", name, driver="local")

    def prune_volumes(self, *, all: bool = False) -> list[tuple[str, int]]:
        """Remove the anonymous volumes no container uses (*all*: named ones too);
        (name, bytes freed) of each."""
        from tsubo.engine.volumes import prune_volumes

        removed = prune_volumes(self.core, all_volumes=all)
        for name, _ in removed:
            self._event("volume", "destroy", name, driver="local")
        return removed

    # --- images --------------------------------------------------------------------------------

    @property
    def image_store(self) -> ImageStore:
        from tsubo.image.store import ImageStore

        return ImageStore(self.core.db, self.core.paths.data)

    def pull(self, reference: str, *, platform: str = "", tls_verify: bool = True,
             authfile: str = "", events: Any = None) -> PullResult:
        """Pull *reference* from its registry (``tsubo pull``); *events* receives progress
        (``cli/progress.ProgressView`` is one)."""
        from tsubo.image.pull import pull

        result = pull(self.image_store, reference, platform=platform, tls_verify=tls_verify,
                      authfile=authfile, events=events)
        self._event("image", "pull", reference, name=reference)
        return result

    def push(self, image: str, destination: str = "", *, tls_verify: bool = True,
             authfile: str = "", events: Any = None) -> PushResult:
        """Push a local image (as *destination*, default its own name)."""
        from tsubo.image.push import push

        store = self.image_store
        store.get(image)  # a missing image fails before anything is sent
        return push(store, image, destination or image, tls_verify=tls_verify,
                    authfile=authfile, events=events)

    def import_image(self, tarball: str, reference: str, changes: Sequence[str] = (), *,
                     stream: BinaryIO | None = None) -> Image:
        """A one-layer image from a root filesystem tarball (``tsubo import``), or from
        *stream* (``import -``: spooled to a file under the data root first, as the
        import reads it twice: once for its digest, once into the blob store)."""
        if stream is not None:
            import tempfile

            self.core.db  # noqa: B018 (the root exists, or one error says why)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".import-") as spool:
                while chunk := stream.read(1 << 20):
                    spool.write(chunk)
                spool.flush()
                return self.import_image(spool.name, reference, changes)
        image = self.image_store.import_tarball(tarball, reference, list(changes))
        self._event("image", "import", f"sha256:{image.id}", name=reference)
        return image

    def image(self, reference: str) -> Image:
        """By name, ID or unique ID prefix; ``.inspect()`` gives Docker's JSON shape."""
        return self.image_store.get(reference)

    def images(self) -> list[Image]:
        return self.image_store.images()

    def image_digests(self) -> dict[tuple[str, str], str]:
        """(repository, image ID) -> the manifest digest it was pulled by."""
        rows = self.core.db.connection.execute(
            "SELECT name, image_id, digest FROM image_digests ORDER BY digest").fetchall()
        return {(str(name), str(image_id)): str(digest) for name, image_id, digest in rows}

    def layer_sizes(self) -> dict[str, int]:
        from tsubo.engine.diskusage import layer_sizes

        return layer_sizes(self.core.db)

    def tag(self, source: str, target: str) -> Image:
        image = self.image_store.tag(source, target)
        self._event("image", "tag", f"sha256:{image.id}", name=target)
        return image

    def remove_image(self, reference: str, *, force: bool = False) -> Image:
        image = self.image_store.remove(reference, force=force)
        self._event("image", "delete", f"sha256:{image.id}", name=reference)
        return image

    def prune_images(self, *, all_images: bool = False) -> PruneResult:
        from tsubo.engine.diskusage import prune_images

        return prune_images(self.core, all_images=all_images)

    def save(self, references: Sequence[str], *, format: str = "docker-archive",
             output: str = "", stream: BinaryIO | None = None) -> None:
        """Write images to *output* (a file, or a folder for ``oci-dir``) or *stream*."""
        from tsubo.image.archive import save_images

        save_images(self.image_store, list(references), format, output, stream)

    def load(self, source: str = "", stream: BinaryIO | None = None) -> list[LoadedImage]:
        """Load images from an archive or OCI layout at *source*, or from *stream*."""
        from tsubo.image.archive import load_images

        return load_images(self.image_store, source, stream)

    # --- building images -------------------------------------------------------------------

    def build(self, context: str, *, dockerfile: str = "", dockerfile_text: str | None = None,
              tags: Sequence[str] = (), build_args: dict[str, str] | None = None,
              target: str = "", no_cache: bool = False, network: str = "bridge",
              quiet: bool = False, labels: dict[str, str] | None = None,
              timestamp: int | None = None, pull: bool = False,
              say: Callable[[str], None] | None = None,
              output: Callable[[bytes], None] | None = None,
              context_stream: BinaryIO | None = None, platform: str = "") -> Image:
        """Build an image from a Dockerfile (``tsubo build``): *dockerfile* is its path
        (default ``CONTEXT/Dockerfile``) or *dockerfile_text* its text; *context_stream* a
        tar of the context (plain, gzip, zstd, xz or bzip2) instead of the directory
        *context* (``build -``); *platform* only this machine's (``linux/amd64`` here);
        *say* receives the
        progress lines (``STEP 2/5: RUN ...``), *output* what RUN steps print. *timestamp*
        (default ``$SOURCE_DATE_EPOCH``) fixes every time in the image."""
        from tsubo.build.builder import BuildOptions, build

        if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH", "").strip():
            timestamp = _epoch(os.environ["SOURCE_DATE_EPOCH"], "SOURCE_DATE_EPOCH")
        options = BuildOptions(
            os.path.abspath(context) if context_stream is None else "",
            context_stream=context_stream, dockerfile_path=os.path.abspath(dockerfile)
            if dockerfile else "", dockerfile_text=dockerfile_text, tags=list(tags),
            build_args=build_args, target=target, no_cache=no_cache, network=network,
            quiet=quiet, labels=labels, timestamp=timestamp, pull=pull, platform=platform)
        return build(self.core, options, say or (lambda text: None),
                     output or (lambda data: None))

    def prune_build_cache(self) -> tuple[int, int]:
        """Forget the build cache and remove the layers only it kept (``builder prune``):
        (cache entries, bytes freed)."""
        from tsubo.build.cache import prune

        return prune(self.core)

    def diff(self, ref: str) -> list[tuple[str, str]]:
        """``docker diff``: ``(A|C|D, /path)`` for each change of the container's files."""
        from tsubo.engine.commit import container_changes

        return container_changes(self.core, ref)

    def commit(self, ref: str, reference: str = "", *, changes: Sequence[str] = (),
               message: str = "", author: str = "", pause: bool = True) -> Image:
        """A new image from a container's changes (``docker commit``)."""
        from tsubo.engine.commit import commit_container

        return commit_container(self.core, ref, reference, changes=list(changes),
                                message=message, author=author, pause=pause)

    def export(self, ref: str, *, output: str = "", stream: BinaryIO | None = None) -> None:
        """A container's whole file system as a tar, to the file *output* (complete or
        not at all) or to *stream*."""
        from tsubo.engine.commit import export_container

        if stream is not None:
            export_container(self.core, ref, stream)
            return
        if not output:
            raise InvalidArgument("export", ref, detail="no output file or stream given")
        from tsubo.errors import TsuboError

        target = os.path.abspath(output)
        temp = f"{target}.tsubo-{os.getpid()}.tmp"
        try:
            with open(temp, "xb") as out:
                export_container(self.core, ref, out)
            os.rename(temp, target)
        except BaseException as error:
            if os.path.lexists(temp):
                os.unlink(temp)
            if isinstance(error, OSError):
                raise TsuboError.from_os_error("export to", target, error) from None
            raise

    def disk_usage(self) -> DiskUsage:
        from tsubo.engine.diskusage import disk_usage

        return disk_usage(self.core)

    # --- registries ----------------------------------------------------------------------------

    def login(self, registry: str, username: str, password: str, *, tls_verify: bool = True,
              authfile: str = "") -> None:
        """Check the credentials against the registry, then store them."""
        from tsubo.image import auth
        from tsubo.image.registry import RegistryClient

        client = RegistryClient(registry, tls_verify=tls_verify,
                                credentials=(username, password))
        try:
            client.check_login()
        finally:
            client.close()
        auth.store(registry, username, password, authfile)

    def logout(self, registry: str, *, authfile: str = "") -> None:
        from tsubo.image import auth

        if not auth.remove(registry, authfile):
            raise NotFound("logout", registry, detail="not logged in (in "
                           f"{auth.write_path(authfile)})")

    # --- networks ------------------------------------------------------------------------------

    def create_network(self, name: str, *, subnet: str | Sequence[str] = "",
                       gateway: str | Sequence[str] = "", ip_range: str = "",
                       internal: bool = False, mtu: int | str = 0, bridge_name: str = "",
                       labels: dict[str, str] | Sequence[str] = (), ipv6: bool = False
                       ) -> Network:
        """``network create``: SUBNET and GATEWAY once per family (a text or a list);
        IPV6 makes the network dual stack (an IPv6 subnet from the ULA pool when none is
        given)."""
        from tsubo.engine.networks import NetworkManager
        from tsubo.engine.options import parse_labels
        from tsubo.network.ipam import split_families

        if isinstance(mtu, str):
            text = mtu
            try:
                mtu = int(text or 0)
            except ValueError:
                raise InvalidArgument("parse --mtu", text, detail="expected an integer") \
                    from None
        label_map = dict(labels) if isinstance(labels, dict) else parse_labels(list(labels))
        subnet4, gateway4, subnet6, gateway6 = split_families(
            [subnet] if isinstance(subnet, str) else list(subnet),
            [gateway] if isinstance(gateway, str) else list(gateway))
        network = NetworkManager(self.core).create(
            name, subnet=subnet4, gateway=gateway4, ip_range=ip_range, internal=internal,
            mtu=mtu, bridge_name=bridge_name, labels=label_map, ipv6=ipv6, subnet6=subnet6,
            gateway6=gateway6)
        self._event("network", "create", network.id, name=network.name, type="bridge")
        return network

    def networks(self) -> list[Network]:
        from tsubo.engine.networks import NetworkManager

        return NetworkManager(self.core).store.list_networks()

    def inspect_network(self, ref: str) -> dict[str, Any]:
        from tsubo.engine.networks import NetworkManager

        return NetworkManager(self.core).inspect(ref)

    def remove_network(self, ref: str) -> Network:
        from tsubo.engine.networks import NetworkManager

        network = NetworkManager(self.core).remove(ref)
        self._event("network", "destroy", network.id, name=network.name, type="bridge")
        return network

    def prune_networks(self) -> list[Network]:
        """Remove every network no container is on; the removed ones."""
        from tsubo.engine.networks import NetworkManager

        removed = NetworkManager(self.core).prune()
        for network in removed:
            self._event("network", "destroy", network.id, name=network.name, type="bridge")
        return removed

    def connect(self, network: str, container: str, *, ip: str = "", ip6: str = "") -> None:
        from tsubo.engine.networks import NetworkManager

        row = self._running_on_a_network(container, "connect")
        NetworkManager(self.core).connect(row.id, row.name, network, requested_ip=ip,
                                          requested_ip6=ip6)
        self._event("network", "connect", network, container=row.id, name=network)

    def disconnect(self, network: str, container: str) -> None:
        from tsubo.engine.networks import NetworkManager

        row = self._running_on_a_network(container, "disconnect")
        NetworkManager(self.core).disconnect(row.id, network)
        self._event("network", "disconnect", network, container=row.id, name=network)

    def network_graph(self, format: str = "dot") -> str:
        """The engine's networks and their containers, drawn as ``lab graph`` draws a
        topology (``dot``, ``mermaid``, ``svg``, ``text``)."""
        from tsubo.engine.lab.graph import live_topology, render

        return render(live_topology(self.core), format)

    def reload_networks(self) -> int:
        """Write every network's firewall rules again (after a host firewall flush); how
        many networks there are."""
        from tsubo.engine.networks import NetworkManager

        return NetworkManager(self.core).reload()

    # --- labs ------------------------------------------------------------------------------

    def read_lab(self, path: str) -> Topology:
        """Read and check a topology file (containerlab's ``*.clab.yml``)."""
        from tsubo.engine.lab.topology import read_topology

        return read_topology(path)

    def deploy_lab(self, topology: str | Topology) -> bool:
        """Deploy a lab from a file or a read topology; False when it already ran as
        asked (``deploy`` is idempotent)."""
        from tsubo.engine.lab.manager import LabManager

        topology = self.read_lab(topology) if isinstance(topology, str) else topology
        return LabManager(self.core).deploy(topology)[1]

    def apply_lab(self, topology: str | Topology) -> list[str]:
        """Change a deployed lab in place to match a new version of its file (nodes and
        links added or removed, link MTUs, addresses, routes, sysctls); nodes that did not
        change keep running. What was done, one line each (empty: nothing to do)."""
        from tsubo.engine.lab.manager import LabManager

        topology = self.read_lab(topology) if isinstance(topology, str) else topology
        return LabManager(self.core).apply(topology)

    def explain_lab(self, topology: str | Topology) -> list[str]:
        """The ``ip`` and ``sysctl`` commands that wire the lab as ``deploy_lab`` does, in
        its order, runnable by hand (from the same plan the deploy applies)."""
        from tsubo.engine.lab.plan import explain
        from tsubo.errors import NotFound

        topology = self.read_lab(topology) if isinstance(topology, str) else topology
        bridge = topology.mgmt.bridge or "MGMT_BRIDGE"
        try:
            bridge = self.inspect_network(topology.mgmt.network)["Options"]["bridge"]
        except NotFound:
            pass
        return explain(topology, bridge)

    def destroy_lab(self, name: str, *, cleanup: bool = False) -> None:
        """Remove the lab's containers, links, bridges (and its management network when it
        made it, or with *cleanup* when nothing else uses it)."""
        from tsubo.engine.lab.manager import LabManager

        LabManager(self.core).destroy(name, cleanup=cleanup)

    def labs(self) -> list[str]:
        """The names of the deployed labs."""
        from tsubo.engine.lab.manager import LabManager

        return LabManager(self.core).names()

    def inspect_lab(self, name: str) -> dict[str, Any]:
        from tsubo.engine.lab.manager import LabManager

        return LabManager(self.core).inspect(name)

    def validate_lab(self, topology: str | Topology, *, matrix: bool = False
                     ) -> list[CheckResult]:
        """Run the topology's checks on the deployed lab (``.passed``, ``.describe()``);
        *matrix*: every node to every other node's addresses instead."""
        from tsubo.engine.lab.manager import LabManager

        topology = self.read_lab(topology) if isinstance(topology, str) else topology
        return LabManager(self.core).validate(topology, matrix=matrix)

    def lab_exec(self, name: str, command: Sequence[str], *,
                 labels: Sequence[tuple[str, str]] = ()) -> list[tuple[str, ExecResult]]:
        """Run *command* in each of the lab's containers carrying all of *labels*
        (``clab-node-name=r1``); (container name, result) each, stdout and stderr
        together."""
        from tsubo.engine.lab.manager import LabManager

        manager = LabManager(self.core)
        results = []
        for container in manager.containers_matching(name, labels):
            code, output = manager.run_captured(container, command)
            results.append((container, ExecResult(code, output, b"")))
        return results

    def lab_capture(self, name: str, endpoint: str, *, write: str = "", count: int = 0,
                    timeout: float | None = None, expression: Sequence[str] = ()) -> str:
        """tcpdump on *endpoint* (``node:iface``) of a deployed lab, in the node's
        namespace, for *count* packets or *timeout* seconds (default 10), of the packets
        matching the filter *expression* (``["icmp"]``): into the pcap file *write*,
        else its decoded packets are returned."""
        from tsubo.engine.lab.capture import capture
        from tsubo.engine.lab.manager import LabManager

        return capture(LabManager(self.core).record(name), endpoint, write=write,
                       count=count, timeout=timeout, expression=expression)

    def lab_graph(self, topology: str | Topology, format: str = "dot") -> str:
        """A picture of the topology (``dot``, ``mermaid``, ``svg`` through Graphviz, or
        ``text``), without deploying it."""
        from tsubo.engine.lab.graph import render

        topology = self.read_lab(topology) if isinstance(topology, str) else topology
        return render(topology, format)

    # --- events ----------------------------------------------------------------------------------

    def events(self, *, since: float | None = None, until: float | None = None,
               filters: Sequence[str] = (), follow: bool = False) -> Iterator[dict[str, Any]]:
        """The engine's events (``docker events``) from *since* to *until* (seconds since
        the epoch), those every ``KEY=VALUE`` of *filters* accepts (type, event, container,
        image, network, volume, label; a key given twice accepts either value); *follow*
        waits for new ones (until *until*, if given)."""
        from tsubo.engine.events import stream_events

        self.core.db  # noqa: B018 (opens the root, or says in one error why it cannot)
        return stream_events(self.core.paths.data, since=since, until=until,
                             filters=list(filters), follow=follow)

    def _event(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        from tsubo.state import events

        events.record(self.core.paths.data, kind, action, actor, attributes)

    def _running_on_a_network(self, ref: str, verb: str) -> ContainerRecord:
        from tsubo.engine import status
        from tsubo.errors import TsuboError

        row = self.core.refresh(self.core.db.resolve_container(ref))
        status.check("connect", row.name, row.state)
        if not os.path.exists(f"/run/netns/{row.name}"):
            raise TsuboError(f"network {verb}", row.name,
                             detail="the container was not started on a network "
                             "(--network NAME); its namespace has no pin to attach to")
        return row


def _epoch(text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise InvalidArgument(f"read {what}", text, detail="expected seconds since the "
                              "epoch") from None
    if value < 0:
        raise InvalidArgument(f"read {what}", text, detail="negative")
    return value
class Lab:
    """A lab built in code; leaving the ``with`` block destroys it::

        with tsubo.Lab("two", root="/tmp/tsubo-lab", rootfs="/srv/busybox") as lab:
            lab.node("r1", cmd="sleep 600")
            lab.node("r2", cmd="sleep 600")
            lab.link("r1:eth1", "r2:eth1", "10.0.0.1/30", "10.0.0.2/30")
            lab.deploy()
            assert lab.check_reachable("r1", "r2:eth1")

    The same schema and checks as a ``*.clab.yml`` file (the lab is written as one and
    read back through the one reader, so both give the same errors). Nodes get no
    management network unless *mgmt* is true. *rootfs* / *image*: the default of every
    node.
    """

    def __init__(self, name: str, *, engine: Engine | None = None, root: str | None = None,
                 rootfs: str = "", image: str = "", mgmt: bool = False) -> None:
        self.name = name
        self._own_engine = engine is None
        self.engine = engine if engine is not None else Engine(root)
        self._defaults: dict[str, Any] = {}
        if rootfs:
            self._defaults["tsubo"] = {"rootfs": os.path.abspath(rootfs)}
        if image:
            self._defaults["image"] = image
        self._mgmt = mgmt
        self._nodes: dict[str, dict[str, Any]] = {}
        self._links: list[dict[str, Any]] = []
        self._addresses: dict[str, list[str]] = {}
        self._routes: dict[str, list[str]] = {}
        self._deployed: Topology | None = None

    def node(self, name: str, *, kind: str = "linux", **keys: Any) -> Lab:
        """A node with containerlab's keys (``cmd``, ``env``, ``sysctls``, ``exec``, ...;
        ``cap_add``, ``network_mode`` ... with ``_`` for ``-``); ``rootfs=`` a directory."""
        spec: dict[str, Any] = {"kind": kind}
        for key, value in keys.items():
            if key == "rootfs":
                spec["tsubo"] = {"rootfs": os.path.abspath(value)}
            else:
                spec[key.replace("_", "-")] = value
        self._nodes[name] = spec
        return self

    def link(self, a: str, b: str, a_address: str = "", b_address: str = "", *,
             mtu: int = 0) -> Lab:
        """A veth pair between endpoints ``node:iface`` (``host:veth1`` for the host's
        namespace), with an address for either end."""
        self._links.append({"endpoints": [a, b], **({"mtu": mtu} if mtu else {})})
        for end, address in ((a, a_address), (b, b_address)):
            if address:
                self._addresses.setdefault(end, []).append(address)
        return self

    def route(self, node: str, destination: str, via: str) -> Lab:
        self._routes.setdefault(node, []).append(f"{destination} via {via}")
        return self

    def topology(self) -> Topology:
        """The lab as read back by the topology reader (InvalidArgument on a mistake)."""
        import yaml

        from tsubo.engine.lab.topology import parse_topology

        document: dict[str, Any] = {"name": self.name, "topology": {
            "defaults": self._defaults, "nodes": self._nodes, "links": self._links}}
        if not self._mgmt:
            document["mgmt"] = {"network": "none"}
        extension = {key: value for key, value in (("addresses", self._addresses),
                                                   ("routes", self._routes)) if value}
        if extension:
            document["tsubo"] = extension
        return parse_topology(yaml.safe_dump(document, sort_keys=False),
                              os.path.join(os.getcwd(), f"{self.name}.clab.yml"))

    def deploy(self) -> None:
        topology = self.topology()
        self.engine.deploy_lab(topology)
        self._deployed = topology

    def destroy(self) -> None:
        from tsubo.errors import NotFound

        try:
            self.engine.destroy_lab(self.name)
        except NotFound:
            pass
        self._deployed = None

    def _check(self, source: str, target: str, reachable: bool, tcp: int,
               timeout: float) -> bool:
        from tsubo.engine.lab.checks import run_check
        from tsubo.engine.lab.topology import Check
        from tsubo.errors import WrongState

        if self._deployed is None:
            raise WrongState("check lab", self.name, detail="not deployed")
        result = run_check(self._deployed, Check(source, target, reachable, tcp, timeout, 0))
        return result.passed

    def check_reachable(self, source: str, target: str, *, tcp: int = 0,
                        timeout: float = 1.0) -> bool:
        """Does *source* (``node`` or ``node:iface``) reach *target* (an address,
        ``node:iface`` or ``node``) over the lab's links, now?"""
        return self._check(source, target, True, tcp, timeout)

    def check_unreachable(self, source: str, target: str, *, tcp: int = 0,
                          timeout: float = 1.0) -> bool:
        return self._check(source, target, False, tcp, timeout)

    def exec(self, node: str, command: Sequence[str]) -> ExecResult:
        if self._deployed is None:
            from tsubo.errors import WrongState

            raise WrongState("exec in lab", self.name, detail="not deployed")
        return self.engine.container(self._deployed.container_name(node)).exec(command)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Destroy the lab (an error here never replaces the one that ended the block)."""
        try:
            if self._deployed is not None:  # never another's lab of the same name
                self.destroy()
        except Exception:
            if exc is None:
                raise
        finally:
            if self._own_engine:
                self.engine.close()


def _runtime_warning(text: str) -> None:
    import warnings

    warnings.warn(text, RuntimeWarning, stacklevel=4)  # at the caller of Engine.run/create


def _options(image: str, rootfs: str, command: Sequence[str], extra: dict[str, Any],
             cwd: str | None) -> RunOptions:
    from tsubo.engine.options import build_run_options as build

    return build({**extra, "image": image, "rootfs": rootfs, "command": list(command)},
                 cwd=cwd)


__all__ = [
    "AttachClient", "CheckResult", "Container", "ContainerRecord", "ContainerStats",
    "DiskUsage", "Endpoint", "Engine", "ExecResult", "Image", "Lab", "LoadedImage", "Network",
    "PruneResult", "PublishedPort", "PullResult", "PushResult", "Reference", "RunOptions",
    "Runtime", "Topology", "VolumeRecord", "build_run_options", "default_spec",
    "destination_reference", "features", "iter_loaded_lines", "layer_sizes", "normalise_key",
    "now_rfc3339", "parse_detach_keys", "parse_platform", "parse_reference", "parse_signal",
    "parse_since",
    "parse_size", "port_lines", "ports_column", "process_from_flags", "read_caller_file",
    "signal_name",
]

# names used only in type annotations above (kept visible to type checkers)
if TYPE_CHECKING:
    _TYPES = (Callable, EngineCommands, default_spec, destination_reference, features,
              iter_loaded_lines, layer_sizes, normalise_key, now_rfc3339, parse_platform,
              port_lines, ports_column,
              parse_reference, parse_signal, parse_since, parse_size, process_from_flags,
              parse_detach_keys,
              read_caller_file, signal_name, Endpoint, Reference, Runtime)
