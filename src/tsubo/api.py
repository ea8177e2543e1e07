"""The Python API: what ``import tsubo`` gives, and what the ``tsubo`` CLI is a shell over.

    import tsubo

    with tsubo.Engine(root="/tmp/tsubo-demo") as engine:
        with engine.run(rootfs="/srv/busybox", command=["sleep", "60"], memory="64m") as c:
            result = c.exec(["sh", "-c", "echo hello from $(hostname)"])
            print(result.exit_code, result.stdout)      # 0 b'hello from 3f2a...\\n'
        # leaving the block removed the container (force)

``Engine.run`` starts a container detached and returns a :class:`Container` once it runs;
``Container.wait()`` gives its exit code, ``.logs()`` its output, ``.stop()`` escalates to
SIGKILL after the stop timeout, ``.remove()`` deletes every trace. Errors are
:class:`tsubo.errors.TsuboError` subclasses with ``operation``, ``object``, ``errno`` and
``hint`` fields.
"""

from __future__ import annotations

import os

from tsubo.engine.containers import Engine as _EngineCore
from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType
    from typing import Any

    from tsubo.engine.options import RunOptions
    from tsubo.image.store import Image, ImageStore
    from tsubo.state.db import ContainerRow


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

    def _row(self) -> ContainerRow:
        return self._engine.core.refresh(self._engine.core.db.get_container(self.id))

    @property
    def name(self) -> str:
        return self._row().name

    @property
    def status(self) -> str:
        """created, starting, running, paused, restarting or exited."""
        return self._row().state

    @property
    def exit_code(self) -> int | None:
        return self._row().exit_code

    @property
    def pid(self) -> int:
        return self._row().pid

    def exec(self, command: Sequence[str], *, env: Sequence[str] = (), workdir: str = "",
             user: str = "") -> ExecResult:
        """Run *command* in the container and collect its output."""
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            saved = [os.dup(fd) for fd in (0, 1, 2)]
            null = os.open("/dev/null", os.O_RDONLY)
            try:
                os.dup2(null, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                code = self._engine.core.exec(self.id, list(command), env=list(env),
                                              workdir=workdir, user=user)
            finally:
                for fd, copy in enumerate(saved):
                    os.dup2(copy, fd)
                    os.close(copy)
                os.close(null)
            out.seek(0)
            err.seek(0)
            return ExecResult(code, out.read(), err.read())

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None
             ) -> bytes:
        """Everything the container printed (both streams interleaved by default)."""
        wanted = {name for name, on in (("stdout", stdout), ("stderr", stderr)) if on}
        return b"".join(data for stream, data in self._engine.core.logs(self.id, tail=tail)
                        if stream in wanted)

    def wait(self, timeout: float | None = None) -> int:
        return self._engine.core.wait(self.id, timeout)

    def stop(self, timeout: float | None = None) -> None:
        self._engine.core.stop(self.id, timeout)

    def kill(self, signal: int = 9) -> None:
        self._engine.core.kill(self.id, signal)

    def pause(self) -> None:
        self._engine.core.pause(self.id)

    def unpause(self) -> None:
        self._engine.core.unpause(self.id)

    def restart(self, timeout: float | None = None) -> None:
        self._engine.core.restart(self.id, timeout)

    def remove(self, *, force: bool = False, volumes: bool = False) -> None:
        self._engine.core.remove(self.id, force=force, volumes=volumes)

    def inspect(self) -> dict[str, Any]:
        return self._engine.core.inspect(self.id)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        from tsubo.errors import NotFound

        try:
            self.remove(force=True, volumes=True)
        except NotFound:
            pass

    def __repr__(self) -> str:
        return f"Container({self.id[:12]})"


class Engine:
    """All containers under one data root (default ``/var/lib/tsubo`` or ``$TSUBO_ROOT``)."""

    def __init__(self, root: str | None = None) -> None:
        self.core = _EngineCore(root)

    def create(self, *, rootfs: str = "", image: str = "", command: Sequence[str] = (),
               name: str | None = None, **options: Any) -> Container:
        """Create a container without starting it; *options* are :class:`RunOptions`
        fields (``env``, ``memory`` ("64m" or bytes), ``cpus``, ``pids_limit``, ...)."""
        row = self.core.create(_options(rootfs, image, command, options), name=name)
        return Container(self, row.id)

    def run(self, *, rootfs: str = "", image: str = "", command: Sequence[str] = (),
            name: str | None = None, remove: bool = False, **options: Any) -> Container:
        """Create and start a container in the background; returns once it runs."""
        run_options = _options(rootfs, image, command, options)
        run_options.remove = remove
        row = self.core.run_detached(run_options, name=name)
        return Container(self, row.id)

    def container(self, ref: str) -> Container:
        """By full ID, name or unique ID prefix."""
        return Container(self, self.core.db.resolve_container(ref).id)

    def containers(self, *, all: bool = False) -> list[Container]:
        return [Container(self, row.id) for row in self.core.containers(all_states=all)]

    # --- images ---------------------------------------------------------------------------

    @property
    def image_store(self) -> ImageStore:
        from tsubo.image.store import ImageStore

        return ImageStore(self.core.db, self.core.paths.data)

    def pull(self, reference: str, *, platform: str = "", tls_verify: bool = True,
             authfile: str = "") -> Image:
        """Pull *reference* from its registry (``tsubo pull``); returns the local image."""
        from tsubo.image.pull import pull

        return pull(self.image_store, reference, platform=platform, tls_verify=tls_verify,
                    authfile=authfile).image

    def push(self, image: str, destination: str = "", *, tls_verify: bool = True,
             authfile: str = "") -> str:
        """Push a local image (as *destination*, default its own name); returns the
        manifest digest."""
        from tsubo.image.push import push

        return push(self.image_store, image, destination, tls_verify=tls_verify,
                    authfile=authfile).digest

    def import_image(self, tarball: str, reference: str, changes: Sequence[str] = ()
                     ) -> Image:
        """A one-layer image from a root filesystem tarball (``tsubo import``)."""
        return self.image_store.import_tarball(tarball, reference, list(changes))

    def image(self, reference: str) -> Image:
        """By name, ID or unique ID prefix; ``.inspect()`` gives Docker's JSON shape."""
        return self.image_store.get(reference)

    def images(self) -> list[Image]:
        return self.image_store.images()

    def remove_image(self, reference: str, *, force: bool = False) -> None:
        self.image_store.remove(reference, force=force)

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _options(rootfs: str, image: str, command: Sequence[str], extra: dict[str, Any]
             ) -> RunOptions:
    from tsubo.engine import options as opts

    run = opts.RunOptions()
    run.rootfs = rootfs
    run.image = image
    run.command = list(command)
    for key, given in extra.items():
        if key not in opts.RunOptions.__slots__:
            raise InvalidArgument("create container", key, detail="unknown option")
        value = given
        if key in ("memory", "memory_swap") and isinstance(given, str):
            value = opts.parse_size(given, f"--{key.replace('_', '-')}")
        elif key == "restart" and isinstance(given, str):
            value = opts.parse_restart(given)
        setattr(run, key, value)
    return run
