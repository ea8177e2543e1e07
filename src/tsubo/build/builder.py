"""Building an image from a Dockerfile: stages, steps, layers, the cache, cleanup.

Each stage starts from an image of the store, an earlier stage or ``scratch`` and carries
an image config, its layers and a cache key. Metadata instructions (ENV, CMD, LABEL, ...)
change the config only (``empty_layer`` in history). Each RUN, COPY and ADD makes one layer,
buildah's way: the step's changes land in a fresh overlay upper directory, and
``image/layerdiff.py`` turns that directory into the layer tar that the image store keeps.

- RUN runs in a real engine container on the stage's layers (the network is ``--network``,
  default none); its image is a step image registered for the container's life and then
  forgotten (its layers stay).
- COPY and ADD mount an overlay of the stage's layers on a scratch folder under
  ``<data root>/build/`` and copy into it (``build/context.py``: fd-relative, no-follow).

The cache: a step's key is the SHA-256 of its parent's key, the instruction (after
substitution), the variables in scope and, for COPY/ADD, a content hash of what it reads;
``build/cache.py`` keeps which layer each key made. A hit needs that layer still in the
store. A build that fails removes every layer it made that no image uses,
its step images, containers and mounts: nothing is half-registered.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import time
from contextlib import contextmanager

from tsubo.build import dockerfile
from tsubo.build.cache import BuildCache
from tsubo.build.context import IgnoreRules, Source, decompressed, is_archive
from tsubo.errors import InvalidArgument, NotFound, TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from typing import Any, BinaryIO, ClassVar

    from tsubo.build.context import CopyOptions
    from tsubo.build.dockerfile import Instruction
    from tsubo.engine.containers import Engine
    from tsubo.engine.options import RunOptions
    from tsubo.image.store import Image, ImageStore

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Docker's predefined build args, usable without an ARG line
PREDEFINED_ARGS = frozenset(("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                             "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                             "all_proxy"))
SCRATCH_DIR = "build"


class BuildOptions:
    """What ``tsubo build`` was asked (the API's keyword arguments)."""

    def __init__(self, context: str, *, dockerfile_path: str = "",
                 dockerfile_text: str | None = None, tags: list[str] | None = None,
                 build_args: dict[str, str] | None = None, target: str = "",
                 no_cache: bool = False, network: str = "none", quiet: bool = False,
                 labels: dict[str, str] | None = None, timestamp: int | None = None,
                 pull: bool = False, context_stream: BinaryIO | None = None,
                 platform: str = "") -> None:
        self.context = context
        self.platform = platform
        #: a tar of the context (plain or compressed; ``build -``), instead of a directory
        self.context_stream = context_stream
        self.dockerfile_path = dockerfile_path
        self.dockerfile_text = dockerfile_text
        self.tags = list(tags or [])
        self.build_args = dict(build_args or {})
        self.target = target
        self.no_cache = no_cache
        self.network = network
        self.quiet = quiet
        self.labels = dict(labels or {})
        self.timestamp = timestamp
        self.pull = pull


class Stage:
    """One stage's state while it is built."""

    def __init__(self, index: int, name: str, config: dict[str, Any],
                 layers: list[tuple[str, str]], key: str) -> None:
        self.index = index
        self.name = name
        self.config = config
        #: (blob digest, media type) per layer, bottom first
        self.layers = layers
        self.key = key
        self.args: dict[str, str] = {}
        self.shell = list(DEFAULT_SHELL)
        self.cmd_set = False
        #: when the stage last changed: its base's time, then each layer step's
        self.created = str(config.get("created") or "1970-01-01T00:00:00Z")

    @property
    def image_config(self) -> dict[str, Any]:
        value = self.config.setdefault("config", {})
        assert isinstance(value, dict)
        return value

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        return list(rootfs["diff_ids"])

    def env(self) -> dict[str, str]:
        """Variables for substitution: the stage's ARGs, then its ENV (ENV wins)."""
        values = dict(self.args)
        for item in self.image_config.get("Env") or []:
            key, _, value = str(item).partition("=")
            values[key] = value
        return values

    def run_env(self) -> list[str]:
        env = [str(item) for item in self.image_config.get("Env") or []]
        names = {item.partition("=")[0] for item in env}
        env += [f"{key}={value}" for key, value in self.args.items() if key not in names]
        if "PATH" not in names:
            env.append(DEFAULT_PATH)
        return env


class BuildFailed(TsuboError):
    """A step failed: which one, its command and why."""


class Builder:
    """Builds one Dockerfile with *engine* (see the module docstring)."""

    def __init__(self, engine: Engine, options: BuildOptions,
                 say: Callable[[str], None], output: Callable[[bytes], None]) -> None:
        self.engine = engine
        self.options = options
        self.say = (lambda text: None) if options.quiet else say
        self.output = (lambda data: None) if options.quiet else output
        self.made_layers: set[str] = set()
        self.cache = BuildCache(engine.paths.data)
        #: ARGs of the global scope: Docker's automatic platform ones, then those
        #: declared before the first FROM
        self.global_args: dict[str, str] = platform_args()
        self.used_args: set[str] = set()
        self.stages: list[Stage] = []
        self.escape = "\\"
        self.filename = "Dockerfile"
        self.source: Source | None = None
        #: every time in the image with --timestamp, else each step's own (a cached
        #: step keeps the time it was made, so a cached rebuild gives the same image)
        self.fixed_time = _rfc3339(options.timestamp) if options.timestamp is not None \
            else ""

    @property
    def store(self) -> ImageStore:
        """The image store, on the engine's current database connection (starting a
        container reopens it)."""
        from tsubo.image.store import ImageStore

        return ImageStore(self.engine.db, self.engine.paths.data)

    # --- the whole build ----------------------------------------------------------------------

    def build(self) -> Image:
        if self.options.context_stream is None:
            return self._build()
        import shutil

        from tsubo.image.unpack import unpack_layer
        from tsubo.oci.image_spec import OCI_LAYER

        scratch = os.path.join(self.engine.paths.data, SCRATCH_DIR, os.urandom(8).hex())
        os.makedirs(scratch, mode=0o700)
        try:
            spool = os.path.join(scratch, "context")
            with open(spool, "xb") as out:
                while chunk := self.options.context_stream.read(1 << 20):
                    out.write(chunk)
            # untrusted input: unpacked as a layer is, never by tarfile's extraction
            unpacked = unpack_layer(decompressed(spool, scratch), OCI_LAYER, scratch,
                                    "the build context (stdin)")
            self.options.context = unpacked.path
            return self._build()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _build(self) -> Image:
        from tsubo.image.reference import parse_reference

        check_platform(self.options.platform, "--platform")
        names = [str(parse_reference(tag)) for tag in self.options.tags]  # bad ones: now
        if not os.path.isdir(self.options.context):
            raise NotFound("build", self.options.context,
                           detail="the build context is not a directory")
        text, self.filename = self._dockerfile()
        parsed = dockerfile.parse(text, self.filename)
        self.escape = parsed.escape
        for note in parsed.notes:
            self.say(f"note: {note}")
        context = os.path.abspath(self.options.context)
        self.source = Source(context, IgnoreRules(_read_ignore(context)), "the build context")
        stages = self._split_stages(parsed.instructions)
        needed = self._needed_stages(stages, self._target_index(stages))
        total = sum(len(stages[index][1]) for index in needed)
        with self.store.adding():  # no blob or layer of ours is pruned before it is used
            try:
                number = 0
                for index in needed:
                    number = self._build_stage(index, stages[index][1], number, total)
                image = self._commit(self.stages[-1], names)
            except BaseException:
                self._discard()
                raise
        unused = sorted(set(self.options.build_args) - self.used_args - PREDEFINED_ARGS)
        if unused:
            self.say(f"[Warning] one or more build-args {unused} were not consumed")
        return image

    def _build_stage(self, index: int, instructions: list[Instruction], number: int,
                     total: int) -> int:
        """Run one stage's instructions (numbered from *number* + 1); the last number."""
        stage: Stage | None = None
        for instruction in instructions:
            number += 1
            self.say(f"STEP {number}/{total}: {instruction.original}")
            try:
                if instruction.keyword == "FROM":
                    stage = self._from(index, instruction)
                    self.stages.append(stage)
                    self._onbuild_triggers(stage)
                else:
                    assert stage is not None
                    self._step(stage, instruction)
            except TsuboError as error:
                inner = error.detail if error.operation in ("build", "parse Dockerfile") \
                    else error.message()
                raise BuildFailed("build", f"step {number}/{total} "
                                  f"({instruction.where(self.filename)}) "
                                  f"{instruction.original}", detail=inner,
                                  hint=error.hint) from error
        return number

    def _onbuild_triggers(self, stage: Stage) -> None:
        """The base image's ONBUILD instructions, run right after its FROM (and not
        passed on to the image built here), as Docker runs them."""
        triggers = stage.image_config.pop("OnBuild", None) or []
        for trigger in triggers:
            self.say(f"--> ONBUILD {trigger}")
            [instruction] = dockerfile.parse(str(trigger), "ONBUILD").instructions
            self._step(stage, instruction)

    def _needed_stages(self, stages: list[tuple[str, list[Instruction]]], target: int
                       ) -> list[int]:
        """The stages the target needs (its base stages and ``COPY --from`` ones, and
        theirs), in file order: the others are not built, as BuildKit skips them."""
        names = {name: index for index, (name, _instructions) in enumerate(stages) if name}

        def stage_named(text: str, before: int) -> int | None:
            text = dockerfile.expand(text, self.global_args, self.escape).lower()
            found = names.get(text, int(text) if text.isdigit() else None)
            return found if found is not None and found < before else None

        needed: set[int] = set()
        pending = [target]
        while pending:
            index = pending.pop()
            if index in needed:
                continue
            needed.add(index)
            for instruction in stages[index][1]:
                reference = instruction.args.split()[0] if instruction.keyword == "FROM" \
                    else instruction.flags.get("from", "")
                if reference:
                    found = stage_named(reference, index)
                    if found is not None:
                        pending.append(found)
        return sorted(needed)

    def _dockerfile(self) -> tuple[str, str]:
        if self.options.dockerfile_text is not None:
            return self.options.dockerfile_text, "Dockerfile"
        path = self.options.dockerfile_path or os.path.join(self.options.context,
                                                            "Dockerfile")
        try:
            with open(path, encoding="utf-8") as source:
                return source.read(), os.path.basename(path)
        except FileNotFoundError:
            raise NotFound("build", path, detail="no such Dockerfile") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidArgument("build", path, detail=f"cannot read: {error}") from None

    def _split_stages(self, instructions: list[Instruction]
                      ) -> list[tuple[str, list[Instruction]]]:
        stages: list[tuple[str, list[Instruction]]] = []
        for instruction in instructions:
            if instruction.keyword == "FROM":
                words = instruction.args.split()
                name = words[2].lower() if len(words) == 3 and words[1].upper() == "AS" \
                    else ""
                if len(words) not in (1, 3) or (len(words) == 3 and not name):
                    raise dockerfile.error(instruction.where(self.filename),
                                           "FROM needs IMAGE [AS NAME]")
                stages.append((name, [instruction]))
            elif not stages:
                if instruction.keyword != "ARG":
                    raise dockerfile.error(instruction.where(self.filename),
                                           f"{instruction.keyword} before the first FROM "
                                           "(only ARG may come first)")
                self._global_arg(instruction)
            else:
                stages[-1][1].append(instruction)
        if not stages:
            raise dockerfile.error(self.filename, "no FROM instruction")
        return stages

    def _target_index(self, stages: list[tuple[str, list[Instruction]]]) -> int:
        if not self.options.target:
            return len(stages) - 1
        for index, (name, _instructions) in enumerate(stages):
            if name == self.options.target.lower():
                return index
        raise NotFound("build", self.options.target, detail="no stage of that name "
                       "(--target)")

    def _global_arg(self, instruction: Instruction) -> None:
        for name, default in self._arg_words(instruction, dict(self.global_args)):
            given = self.options.build_args.get(name)
            if given is not None:
                self.used_args.add(name)
            self.global_args[name] = given if given is not None else (default or "")

    def _arg_words(self, instruction: Instruction, env: dict[str, str]
                   ) -> list[tuple[str, str | None]]:
        where = instruction.where(self.filename)
        words = dockerfile.split_words(instruction.args, env, self.escape, where)
        if not words:
            raise dockerfile.error(where, "ARG needs a NAME[=DEFAULT]")
        found: list[tuple[str, str | None]] = []
        for word in words:
            name, sep, default = word.partition("=")
            if not name.replace("_", "a").isalnum():
                raise dockerfile.error(where, f"bad ARG name {name!r}")
            found.append((name, default if sep else None))
        return found

    # --- FROM ---------------------------------------------------------------------------------

    def _from(self, index: int, instruction: Instruction) -> Stage:
        from tsubo.image.store import _architecture

        where = instruction.where(self.filename)
        words = instruction.args.split()
        base = dockerfile.expand(words[0], self.global_args, self.escape, where)
        self.used_args |= {name for name in self.options.build_args
                           if name in self.global_args}
        name = words[2].lower() if len(words) == 3 else ""
        if "platform" in instruction.flags:
            check_platform(dockerfile.expand(instruction.flags["platform"],
                                             self.global_args, self.escape, where), where)
        for stage in self.stages:
            if stage.name and stage.name == base.lower():
                import copy

                return Stage(index, name, copy.deepcopy(stage.config), list(stage.layers),
                             stage.key)
        if base == "scratch":
            config: dict[str, Any] = {"architecture": _architecture(), "os": "linux",
                                      "config": {"Env": [DEFAULT_PATH]},
                                      "rootfs": {"type": "layers", "diff_ids": []}}
            return Stage(index, name, config, [], _hash("scratch"))
        image = self._base_image(base)
        store = self.store
        layers = [store.layer_blob(diff_id)[:2] for diff_id in image.layers]
        import copy

        config = copy.deepcopy(image.config)
        config.setdefault("created", image.created_at)
        history = list(config.get("history") or [])
        missing = len(image.layers) - sum(1 for entry in history
                                          if not entry.get("empty_layer"))
        if missing > 0:  # an imported image has none: one entry a layer, as Docker keeps
            config["history"] = [*({"created": config["created"], "created_by": "",
                                    "comment": "base layer"} for _ in range(missing)),
                                 *history]
        env = config.setdefault("config", {}).get("Env") or []
        if not any(str(item).startswith("PATH=") for item in env):
            config["config"]["Env"] = [DEFAULT_PATH, *env]  # as buildah and BuildKit
        return Stage(index, name, config, layers, _hash(f"image\0{image.id}"))

    def _base_image(self, reference: str) -> Image:
        """The image of the store by that name, else (and always with ``--pull``) pulled."""
        from tsubo.image.pull import pull

        if not self.options.pull:
            try:
                return self.store.get(reference)
            except NotFound:
                pass
        self.say(f"Trying to pull {reference}...")
        return pull(self.store, reference).image

    # --- the other instructions ------------------------------------------------------------------

    def _step(self, stage: Stage, instruction: Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "RUN":
            self._run(stage, instruction)
            return
        if keyword in ("COPY", "ADD"):
            self._copy(stage, instruction)
            return
        where = instruction.where(self.filename)
        env = stage.env()
        args = instruction.args
        if keyword in dockerfile.SUBSTITUTED and keyword not in ("ENV", "LABEL", "ONBUILD"):
            args = dockerfile.expand(args, env, self.escape, where)
        handler = self._METADATA.get(keyword)
        if handler is None:
            raise dockerfile.error(where, f"{keyword} is not supported")
        created_by = handler(self, stage, instruction, args, env, where)
        if created_by is None:
            return  # the step made a layer (and its history entry)
        stage.key = _hash(f"{stage.key}\0{created_by}\0{sorted(stage.args.items())}")
        self._history(stage, created_by, empty=True)

    # Each metadata instruction: changes the stage's config; returns its history's
    # created_by, or None when it made a layer instead.

    def _arg(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
             where: str) -> str | None:
        for name, default in self._arg_words(instruction, env):
            given = self.options.build_args.get(name)
            if given is not None:
                self.used_args.add(name)
                stage.args[name] = given
            else:
                stage.args[name] = default if default is not None \
                    else self.global_args.get(name, "")
        return instruction.original

    def _env(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
             where: str) -> str | None:
        pairs = dockerfile.key_values(args, env, self.escape, where, "ENV")
        current = [str(item) for item in stage.image_config.get("Env") or []]
        for key, value in pairs:
            current = [item for item in current if item.partition("=")[0] != key]
            current.append(f"{key}={value}")
        stage.image_config["Env"] = current
        return "ENV " + " ".join(f"{key}={value}" for key, value in pairs)

    def _label(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
               where: str) -> str | None:
        pairs = dockerfile.key_values(args, env, self.escape, where, "LABEL")
        stage.image_config["Labels"] = {**(stage.image_config.get("Labels") or {}),
                                        **dict(pairs)}
        return "LABEL " + " ".join(f"{key}={value}" for key, value in pairs)

    def _workdir(self, stage: Stage, instruction: Instruction, args: str,
                 env: dict[str, str], where: str) -> str | None:
        path = args.strip()
        if not path:
            raise dockerfile.error(where, "WORKDIR needs a path")
        if not path.startswith("/"):
            path = os.path.join(stage.image_config.get("WorkingDir") or "/", path)
        stage.image_config["WorkingDir"] = os.path.normpath(path)
        if self._workdir_layer(stage, stage.image_config["WorkingDir"], f"WORKDIR {path}"):
            return None
        return instruction.original

    def _command(self, stage: Stage, instruction: Instruction, args: str,
                 env: dict[str, str], where: str) -> str | None:
        """CMD and ENTRYPOINT; an ENTRYPOINT drops a CMD this stage did not set itself."""
        words = instruction.json if instruction.json is not None \
            else [*stage.shell, instruction.args]
        if instruction.keyword == "CMD":
            stage.image_config["Cmd"] = words
            stage.cmd_set = True
        else:
            stage.image_config["Entrypoint"] = words
            if not stage.cmd_set:
                stage.image_config["Cmd"] = None
        return instruction.original

    def _shell(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
               where: str) -> str | None:
        if not instruction.json:
            raise dockerfile.error(where, "SHELL needs at least the executable")
        stage.shell = list(instruction.json)
        stage.image_config["Shell"] = list(instruction.json)
        return instruction.original

    def _expose(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
                where: str) -> str | None:
        ports = dict(stage.image_config.get("ExposedPorts") or {})
        for word in args.split():
            ports[dockerfile.parse_port(word, where)] = {}
        stage.image_config["ExposedPorts"] = ports
        return instruction.original

    def _volume(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
                where: str) -> str | None:
        paths = args.split() if instruction.json is None else \
            [dockerfile.expand(path, env, self.escape, where) for path in instruction.json]
        if not paths:
            raise dockerfile.error(where, "VOLUME needs a path")
        stage.image_config["Volumes"] = {**(stage.image_config.get("Volumes") or {}),
                                         **{path: {} for path in paths}}
        return instruction.original

    def _simple(self, stage: Stage, instruction: Instruction, args: str, env: dict[str, str],
                where: str) -> str | None:
        """USER, STOPSIGNAL, MAINTAINER, HEALTHCHECK, ONBUILD: one config field each."""
        keyword, value = instruction.keyword, args.strip()
        if not value:
            raise dockerfile.error(where, f"{keyword} needs an argument")
        if keyword == "USER":
            stage.image_config["User"] = value
        elif keyword == "STOPSIGNAL":
            stage.image_config["StopSignal"] = value
        elif keyword == "MAINTAINER":
            stage.config["author"] = value
        elif keyword == "HEALTHCHECK":
            stage.image_config["Healthcheck"] = dockerfile.parse_healthcheck(instruction, where)
        else:  # ONBUILD
            if value.split(" ", 1)[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
                raise dockerfile.error(where, f"ONBUILD cannot trigger {value!r}")
            stage.image_config["OnBuild"] = [*(stage.image_config.get("OnBuild") or []),
                                             value]
        return instruction.original

    _METADATA: ClassVar[dict[str, Callable[[Builder, Stage, Instruction, str, dict[str, str], str],
                                  str | None]]] = {
        "ARG": _arg, "ENV": _env, "LABEL": _label, "WORKDIR": _workdir, "CMD": _command,
        "ENTRYPOINT": _command, "SHELL": _shell, "EXPOSE": _expose, "VOLUME": _volume,
        "USER": _simple, "STOPSIGNAL": _simple, "MAINTAINER": _simple,
        "HEALTHCHECK": _simple, "ONBUILD": _simple,
    }

    def _workdir_layer(self, stage: Stage, path: str, created_by: str) -> bool:
        """WORKDIR makes its directory when the stage lacks it (BuildKit's way: one layer
        then, none otherwise); whether it made one."""
        from tsubo.build.context import open_destination
        from tsubo.image.layerdiff import in_lower, store_layer, write_upper_layer

        store = self.store
        lower = [store.layer_path(diff_id) for diff_id in reversed(stage.diff_ids)]
        if path == "/" or in_lower(lower, path.strip("/")):
            return False
        key = _hash(f"{stage.key}\0{created_by}\0{sorted(stage.args.items())}")
        cached = self._cached(key)
        if cached is None:
            with self._scratch_root(stage.diff_ids) as (merged, upper):
                os.close(open_destination(merged, path, None))
                diff_id = store_layer(self.store, lambda out: write_upper_layer(
                    upper, out, timestamp=self.options.timestamp))
            if diff_id not in stage.diff_ids:
                self.made_layers.add(diff_id)
            cached = self._remember(key, diff_id)
        self._add_layer(stage, cached, created_by, key)
        return True

    def _history(self, stage: Stage, created_by: str, *, empty: bool) -> None:
        entry: dict[str, Any] = {"created": self.fixed_time or stage.created,
                                 "created_by": created_by,
                                 "comment": "tsubo build"}
        if empty:
            entry["empty_layer"] = True
        stage.config["history"] = [*(stage.config.get("history") or []), entry]

    # --- RUN ----------------------------------------------------------------------------------

    def _run(self, stage: Stage, instruction: Instruction) -> None:
        where = instruction.where(self.filename)
        if "mount" in instruction.flags or "security" in instruction.flags:
            raise Unsupported("build", where, detail="RUN --mount and --security are not "
                              "supported")
        network = instruction.flags.get("network", self.options.network)
        if instruction.json is not None:
            argv = list(instruction.json)
            shown = shlex.join(argv)
        elif instruction.heredocs and re.fullmatch(
                r"<<-?\s*['\"]?" + re.escape(instruction.heredocs[0].name) + r"['\"]?",
                instruction.args.strip()):
            argv = [*stage.shell, instruction.heredocs[0].content]
            shown = " ".join(argv)
        else:
            script = instruction.args
            for heredoc in instruction.heredocs:
                script += f"\n{heredoc.content}{heredoc.name}"
            argv = [*stage.shell, script]
            shown = " ".join(argv)
        args_shown = sorted(stage.args.items())
        prefix = f"|{len(args_shown)} " + " ".join(f"{k}={v}" for k, v in args_shown) + " " \
            if args_shown else ""
        created_by = f"RUN {prefix}{shown}"
        key = _hash(f"{stage.key}\0{created_by}\0{stage.run_env()}\0"
                    f"{stage.image_config.get('WorkingDir', '')}\0"
                    f"{stage.image_config.get('User', '')}\0{network}")
        cached = self._cached(key)
        if cached is None:
            diff_id = self._run_container(stage, argv, network, where, instruction.original)
            cached = self._remember(key, diff_id)
        self._add_layer(stage, cached, created_by, key)

    def _run_container(self, stage: Stage, argv: list[str], network: str, where: str,
                       shown: str) -> str:
        from tsubo import jsonwire
        from tsubo.engine.commit import mount_point_filter
        from tsubo.engine.options import build_run_options
        from tsubo.image.layerdiff import store_layer, write_upper_layer

        config = dict(stage.config)
        config["config"] = {key: value for key, value in stage.image_config.items()
                            if key not in ("Volumes", "Healthcheck", "OnBuild")}
        config["created"] = _now()
        config["comment"] = f"tsubo build step image {os.urandom(8).hex()}"
        store = self.store
        config_bytes = jsonwire.dumps(config).encode()
        image = store.add_image(config_bytes, list(stage.layers), [])
        started: list[str] = []
        try:
            options = build_run_options({
                "image": image.id, "command": argv, "entrypoint": "",
                "env": stage.run_env(), "workdir": stage.image_config.get("WorkingDir") or "",
                "user": stage.image_config.get("User") or "", "network": [network],
                "label": [f"tsubo.build={where}"]})
            code = self._attached(options, started.append)
            container_id = started[0] if started else ""
            if code is None:
                raise TsuboError("build", where, detail="the container's monitor exited early")
            if code != 0:
                raise TsuboError("build", shown, detail=f"exit code {code}")
            files = f"{self.engine.paths.container_dir(container_id)}"
            lower_dirs = self.store.lower_dirs(image)
            upper = f"{files}/upper"
            skip = mount_point_filter(f"{files}/config.json", upper, lower_dirs)
            diff_id = store_layer(self.store, lambda out: write_upper_layer(
                upper, out, timestamp=self.options.timestamp, skip=skip))
            if diff_id not in stage.diff_ids:
                self.made_layers.add(diff_id)
            return diff_id
        finally:
            for container_id in started:
                try:
                    self.engine.remove(container_id, force=True, volumes=True)
                except NotFound:
                    pass
            self.store.forget_image(image.id)

    def _attached(self, options: RunOptions, on_started: Callable[[str], None]
                  ) -> int | None:
        """Create and start a container with *options* on the engine's monitor, stream
        its output to :attr:`output` frame by frame, and return its exit code (None: the
        monitor went away); *on_started* gets its ID as soon as it is known."""
        from tsubo.engine import attach

        _name, client = self.engine.run_attached(options)
        reader = attach.FrameReader()
        try:
            while True:
                data = os.read(client.sock_fd, 65536)
                if not data:
                    return None
                for kind, payload in reader.feed(data):
                    if kind == attach.STARTED:
                        on_started(payload.decode().partition(" ")[2])
                    elif kind in (attach.STDOUT, attach.STDERR):
                        self.output(payload)
                    elif kind == attach.ERROR:
                        attach.raise_error_frame(payload)
                    elif kind == attach.EXITED:
                        return int(payload)
        finally:
            os.close(client.sock_fd)

    # --- COPY / ADD ---------------------------------------------------------------------------

    def _copy(self, stage: Stage, instruction: Instruction) -> None:
        import hashlib

        from tsubo.build.context import content_hash

        where = instruction.where(self.filename)
        env = stage.env()
        keyword = instruction.keyword
        for flag in ("link", "parents", "exclude", "checksum", "keep-git-dir"):
            if flag in instruction.flags:
                raise Unsupported("build", where, detail=f"{keyword} --{flag} is not "
                                  "supported")
        if instruction.json is not None:
            words = [dockerfile.expand(word, env, self.escape, where)
                     for word in instruction.json]
        else:
            words = dockerfile.split_words(instruction.args, env, self.escape, where)
        heredocs = {f"<<{h.name}": h for h in instruction.heredocs}
        heredocs.update({f"<<-{h.name}": h for h in instruction.heredocs})
        if len(words) < 2:
            raise dockerfile.error(where, f"{keyword} needs SOURCE... DEST")
        *sources, destination = words
        from_stage = instruction.flags.get("from", "")
        if from_stage and keyword == "ADD":
            raise dockerfile.error(where, "ADD does not take --from")
        chmod = dockerfile.parse_chmod(instruction.flags.get("chmod", ""), where)
        chown = dockerfile.expand(instruction.flags.get("chown", ""), env, self.escape, where)
        hasher = hashlib.sha256()
        hasher.update(f"{stage.key}\0{instruction.original}\0{sorted(env.items())}\0"
                      f"{stage.image_config.get('WorkingDir', '')}".encode())
        inline = [heredocs[word] for word in sources if word in heredocs]
        inline = [heredoc if heredoc.quoted else dockerfile.Heredoc(
            heredoc.name, dockerfile.substitute(heredoc.content, env, self.escape, where),
            heredoc.quoted) for heredoc in inline]
        for heredoc in inline:
            hasher.update(heredoc.content.encode())
        files = [word for word in sources if word not in heredocs]
        with self._source(from_stage, where) as source:
            chosen = [(path, source.follow(path, where))
                      for path in (source.resolve(files, where) if files else [])]
            content_hash(source, [followed for _path, followed in chosen], where, hasher)
            key = hasher.hexdigest()
            cached = self._cached(key)
            if cached is None:
                diff_id = self._copy_layer(stage, source, chosen, inline, destination, chown,
                                           chmod, where, add=keyword == "ADD",
                                           many=len(sources) > 1)
                cached = self._remember(key, diff_id)
        self._add_layer(stage, cached, instruction.original, key)

    def _source(self, from_stage: str, where: str) -> AbstractContextManager[Source]:
        import contextlib

        assert self.source is not None
        if not from_stage:
            return contextlib.nullcontext(self.source)
        for stage in self.stages:
            if stage.name == from_stage.lower() or str(stage.index) == from_stage:
                return self._mounted_source(stage.diff_ids, f"stage {from_stage}")
        try:
            image = self.store.get(from_stage)
        except NotFound:
            raise NotFound("build", where, detail=f"--from={from_stage}: no such stage or "
                           "image") from None
        return self._mounted_source(image.layers, f"image {from_stage}")

    @contextmanager
    def _mounted_source(self, diff_ids: list[str], label: str) -> Iterator[Source]:
        with self._scratch_root(diff_ids) as (merged, _upper):
            yield Source(merged, None, label)

    @contextmanager
    def _scratch_root(self, diff_ids: list[str]) -> Iterator[tuple[str, str]]:
        """An overlay of *diff_ids* (bottom first) on a fresh upper directory, mounted
        under ``<data root>/build/``; unmounted and removed afterwards."""
        import shutil

        from tsubo.image.snapshots import mount_root, unmount_root

        folder = _ScratchFolder(os.path.join(self.engine.paths.data, SCRATCH_DIR,
                                             os.urandom(8).hex()))
        os.makedirs(folder.directory, mode=0o700)
        try:
            for sub in ("upper", "work", "merged", "empty"):
                os.mkdir(f"{folder.directory}/{sub}", 0o755 if sub != "work" else 0o700)
            store = self.store
            lower = [store.layer_path(diff_id) for diff_id in reversed(diff_ids)]
            if lower:
                info = os.stat(lower[0])
                os.chmod(f"{folder.directory}/upper", info.st_mode & 0o7777)
            mount_root(folder, [":".join(lower or [f"{folder.directory}/empty"])])
            try:
                yield folder.merged, f"{folder.directory}/upper"
            finally:
                unmount_root(folder.merged)
        finally:
            shutil.rmtree(folder.directory, ignore_errors=True)

    def _copy_layer(self, stage: Stage, source: Source, chosen: list[tuple[str, str]],
                    inline: list[dockerfile.Heredoc], destination: str, chown: str,
                    chmod: int | None, where: str, *, add: bool, many: bool) -> str:
        from tsubo.build.context import CopyOptions, is_directory, open_destination, write_file
        from tsubo.image.layerdiff import store_layer, write_upper_layer

        workdir = stage.image_config.get("WorkingDir") or "/"
        target = destination if destination.startswith("/") else \
            os.path.join(workdir, destination)
        as_directory = destination.endswith("/") or destination in (".", "./")
        if many and not as_directory:
            raise dockerfile.error(where, "with more than one source, the destination "
                                   "must be a directory and end with /")
        with self._scratch_root(stage.diff_ids) as (merged, upper):
            owner = _owner(chown, merged, where) if chown else None
            with CopyOptions(owner if owner is not None else (0, 0), chmod) as options:
                target = os.path.normpath(target)
                into_directory = as_directory or many or is_directory(merged, target)
                for named, path in chosen:
                    self._copy_source(source, named, path, merged, target, into_directory,
                                      options, owner, add=add, where=where)
                for heredoc in inline:
                    parent = target if into_directory else os.path.dirname(target)
                    name = heredoc.name if into_directory else os.path.basename(target)
                    dest_fd = open_destination(merged, parent, owner)
                    try:
                        write_file(dest_fd, name, heredoc.content.encode(), options)
                    finally:
                        os.close(dest_fd)
            diff_id = store_layer(self.store, lambda out: write_upper_layer(
                upper, out, timestamp=self.options.timestamp))
        if diff_id not in stage.diff_ids:
            self.made_layers.add(diff_id)
        return diff_id

    def _copy_source(self, source: Source, named: str, path: str, merged: str, target: str,
                     into_directory: bool, options: CopyOptions,
                     owner: tuple[int, int] | None, *, add: bool, where: str) -> None:
        """One source of a COPY/ADD (*named* as given, *path* after a symlink) into the
        mounted root *merged*: a directory's content into *target*, a file into it or as
        it, a local archive of an ADD unpacked into it (owned by *owner*, ``--chown``, if
        given, else as the archive says)."""
        from tsubo.build.context import copy_entry, open_destination

        info = source.lstat(path, where)
        assert info is not None
        is_dir = stat.S_ISDIR(info.st_mode)
        if add and stat.S_ISREG(info.st_mode) and is_archive(source, path, where):
            self._extract(source, path, merged, target, owner, where)
            return
        parent = target if (is_dir or into_directory) else os.path.dirname(target)
        name = os.path.basename(named) if into_directory else os.path.basename(target)
        dest_fd = open_destination(merged, parent, owner)
        try:
            parent_fd, leaf = source.open_parent(path, where)
            try:
                copy_entry(source, parent_fd, leaf, path, dest_fd, name, options,
                           contents_only=is_dir)
            finally:
                os.close(parent_fd)
        finally:
            os.close(dest_fd)

    def _extract(self, source: Source, path: str, merged: str, target: str,
                 owner: tuple[int, int] | None, where: str) -> None:
        """ADD of a local archive: unpacked with the layer unpacker (safe, never
        tarfile's extraction), then copied in (owners kept unless --chown)."""
        import shutil

        from tsubo.build.context import CopyOptions, copy_entry, open_destination
        from tsubo.image.unpack import unpack_layer
        from tsubo.oci.image_spec import OCI_LAYER

        scratch = os.path.join(self.engine.paths.data, SCRATCH_DIR, os.urandom(8).hex())
        os.makedirs(scratch, mode=0o700)
        try:
            fd, leaf = source.open_parent(path, where)
            try:
                archive = decompressed(f"/proc/self/fd/{fd}/{leaf}", scratch)
                result = unpack_layer(archive, OCI_LAYER, scratch, f"ADD {path}")
            finally:
                os.close(fd)
            tree = Source(result.path, None, f"archive {path}")
            dest_fd = open_destination(merged, target, owner)
            try:
                root_fd, name = tree.open_parent("", where)
                try:
                    copy_entry(tree, root_fd, name, "", dest_fd, ".",
                               CopyOptions(owner, None), contents_only=True)
                finally:
                    os.close(root_fd)
            finally:
                os.close(dest_fd)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # --- layers, cache, commit ------------------------------------------------------------------

    def _add_layer(self, stage: Stage, made: tuple[str, str], created_by: str, key: str
                   ) -> None:
        from tsubo.oci.image_spec import OCI_LAYER

        diff_id, stage.created = made
        blob = self.store.layer_blob(diff_id)
        stage.layers.append((blob[0], blob[1] or OCI_LAYER))
        rootfs = stage.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = [*rootfs["diff_ids"], diff_id]
        stage.key = key
        self._history(stage, created_by, empty=False)

    def _cached(self, key: str) -> tuple[str, str] | None:
        """(diff_id, time made) of the step with *key*, when its layer is still here."""
        if self.options.no_cache:
            return None
        found = self.cache.lookup(key)
        if found is None or not self.store.has_layer(found[0]):
            return None
        self.say(f"--> Using cache {found[0].removeprefix('sha256:')}")
        return found

    def _remember(self, key: str, diff_id: str) -> tuple[str, str]:
        created = _now()
        self.cache.record(key, diff_id, created)
        self.say(f"--> {diff_id.removeprefix('sha256:')[:12]}")
        return diff_id, created

    def _commit(self, stage: Stage, names: list[str]) -> Image:
        from tsubo import jsonwire

        config = stage.config
        config["created"] = self.fixed_time or stage.created
        if self.options.labels:
            image_config = stage.image_config
            image_config["Labels"] = {**(image_config.get("Labels") or {}),
                                      **self.options.labels}
        for key in [key for key, value in stage.image_config.items() if value is None]:
            del stage.image_config[key]
        config.pop("comment", None)
        shown = self.options.tags[0] if self.options.tags else ""
        self.say(f"COMMIT {shown}".rstrip())
        image = self.store.add_image(jsonwire.dumps(config).encode(), list(stage.layers),
                                     list(self.options.tags))
        self.say(f"--> {image.id[:12]}")
        for name in names:
            self.say(f"Successfully tagged {name}")
        return image

    def _discard(self) -> None:
        """After a failure: the layers this build made that no image uses, their cache
        entries, the scratch folders."""
        self.cache.forget_recorded()
        if self.made_layers:
            self.store.remove_unused_layers(set(self.made_layers))


class _ScratchFolder:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    @property
    def merged(self) -> str:
        return f"{self.directory}/merged"


def platform_args() -> dict[str, str]:
    """Docker's automatic platform ARGs (this machine's: tsubo builds for it alone)."""
    from tsubo.image.store import _architecture

    arch = _architecture()
    return {f"{role}{part}": value for role in ("TARGET", "BUILD") for part, value in (
        ("PLATFORM", f"linux/{arch}"), ("OS", "linux"), ("ARCH", arch), ("VARIANT", ""))}


def check_platform(platform: str, where: str) -> None:
    """Only this machine's platform (``linux/ARCH``) can be built; "" means it."""
    from tsubo.image.store import _architecture

    if platform and platform.split("/")[:2] != ["linux", _architecture()]:
        raise Unsupported("build", where, detail=f"platform {platform}: only "
                          f"linux/{_architecture()} images can be built here")


def _read_ignore(context: str) -> str:
    try:
        with open(os.path.join(context, ".dockerignore"), encoding="utf-8") as source:
            return source.read()
    except FileNotFoundError:
        return ""


def _owner(chown: str, merged: str, where: str) -> tuple[int, int]:
    """``--chown=user[:group]`` by name or number, names from the image's own files."""
    from tsubo.engine.storage import lookup_group, make_passwd_lookup

    user, _, group = chown.partition(":")
    try:
        if user.isdigit():
            uid, gid = int(user), int(user)
        else:
            uid, gid, _groups = make_passwd_lookup(merged)(user)
        if group:
            gid = int(group) if group.isdigit() else lookup_group(merged, group)
    except (TsuboError, OSError) as error:
        raise InvalidArgument("build", where, detail=f"--chown={chown}: "
                              f"{getattr(error, 'detail', '') or error}") from None
    return uid, gid


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    from tsubo.state.clock import now_rfc3339

    return now_rfc3339()


def _rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def build(engine: Engine, options: BuildOptions, say: Callable[[str], None],
          output: Callable[[bytes], None]) -> Image:
    """Build the Dockerfile of *options*; *say* gets the progress lines, *output* what
    RUN steps print. The image, registered (tagged with ``options.tags``)."""
    return Builder(engine, options, say, output).build()
