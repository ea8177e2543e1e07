"""What ``docker run`` flags mean: parsed, validated, and kept as :class:`RunOptions`.

Every parser takes the flag's text and returns a plain value, or raises
:class:`~tsubo.errors.InvalidArgument` naming the flag and the bad value in one line
(``parse --memory abc: expected a size like 512m or 2g``). The rules are Docker's (docker/cli
``opts/``, go-units, moby ``volume/mounts/linux_parser.go``, ``daemon/daemon_unix.go``); where
tsubo differs, the function says so.

:class:`RunOptions` is what the engine stores (``to_json``/``from_json``) and what
:mod:`tsubo.engine.ocispec` turns into a ``config.json``.

Hot path: no typing/re/json/dataclasses imports (see ``docs/runtime.md``).
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, TsuboError
from tsubo.state.names import volume_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from tsubo.network.ports import PortSpec

#: Docker's minimum --memory (daemon/daemon_unix.go linuxMinMemory)
MIN_MEMORY = 6 * 1024 * 1024

#: docker --ulimit names (go-units ulimit.go) -> OCI rlimit type
ULIMIT_NAMES = {
    name: "RLIMIT_" + name.upper()
    for name in ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                 "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
}

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")

#: engine setting: the network of a container given no ``--network`` (unset or empty: the
#: default network ``bridge``, as Docker's; ``none``, ``host`` or a network's name
#: otherwise, like dockerd's ``"bridge": "none"``). See docs/network.md, "The default
#: network".
DEFAULT_NETWORK_ENV = "TSUBO_DEFAULT_NETWORK"

#: -v mode words (moby volume/mounts/linux_parser.go)
_ACCESS_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_PROPAGATION_MODES = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")  # macOS-only; Docker ignores them
DEFAULT_PROPAGATION = "rprivate"

#: tmpfs flag words: (key, word); a later word with the same key replaces an earlier one
#: (moby/sys/mount MergeTmpfsOptions: "exec" cancels the default "noexec")
_TMPFS_FLAGS = {
    "ro": "rdonly", "rw": "rdonly", "nosuid": "suid", "suid": "suid", "nodev": "dev",
    "dev": "dev", "noexec": "exec", "exec": "exec", "sync": "sync", "async": "sync",
    "dirsync": "dirsync", "noatime": "atime", "atime": "atime", "nodiratime": "diratime",
    "diratime": "diratime", "relatime": "relatime", "norelatime": "relatime",
    "strictatime": "strictatime", "nostrictatime": "strictatime",
    "private": "propagation", "rprivate": "propagation", "shared": "propagation",
    "rshared": "propagation", "slave": "propagation", "rslave": "propagation",
    "unbindable": "propagation", "runbindable": "propagation",
}
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")
#: what Docker gives every --tmpfs before the user's options
TMPFS_DEFAULT_OPTIONS = ("noexec", "nosuid", "nodev", DEFAULT_PROPAGATION)

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def _bad(flag: str, text: str, detail: str, hint: str = "") -> InvalidArgument:
    return InvalidArgument(f"parse {flag}", text if text else '""', detail=detail, hint=hint)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


# --- sizes and resources ------------------------------------------------------------------


def parse_size(text: str, flag: str) -> int:
    """Bytes in ``512m``, ``1g``, ``1.5g``, ``100k``, ``1024``, ``2GiB`` (binary units b, k, m,
    g, t, p; case-insensitive; an optional ``b``/``ib`` suffix), as go-units RAMInBytes."""
    detail = "expected a size like 512m or 2g"
    word = text.strip().lower()
    if word.endswith("b"):
        word = word[:-1]
        if word.endswith("i"):
            word = word[:-1]
    unit = ""
    if word and word[-1] in _SIZE_UNITS:
        unit = word[-1]
        word = word[:-1].rstrip(" ")
    whole, dot, fraction = word.partition(".")
    if not _is_digits(whole) or (dot and not _is_digits(fraction)):
        raise _bad(flag, text, detail)
    multiplier = _SIZE_UNITS[unit]
    size = int(whole) * multiplier
    if fraction:
        size += int(fraction) * multiplier // 10 ** len(fraction)
    return size


def parse_memory(text: str) -> int:
    """``--memory``: a size of at least 6 MiB (Docker's minimum)."""
    size = parse_size(text, "--memory")
    if size < MIN_MEMORY:
        raise _bad("--memory", text, "Minimum memory limit allowed is 6MB")
    return size


def parse_memory_swap(text: str, memory: int | None) -> int:
    """``--memory-swap`` (memory plus swap, Docker's meaning): ``-1`` is unlimited (-1),
    ``0`` is unset (0: the engine then uses twice ``--memory``, as Docker); otherwise a size
    of at least ``--memory``, which must be set."""
    if text.strip() == "-1":
        return -1
    size = parse_size(text, "--memory-swap")
    if size == 0:
        return 0
    if memory is None:
        raise _bad("--memory-swap", text, "needs --memory as well",
                   hint="--memory-swap is memory plus swap, e.g. --memory 1g --memory-swap 2g")
    if size < memory:
        raise _bad("--memory-swap", text, f"must be at least --memory ({memory} bytes)")
    return size


def available_cpus() -> int:
    """CPUs this process may run on (Docker's sysinfo.NumCPU: the affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover - only without /proc
        return os.cpu_count() or 1


def parse_cpus(text: str) -> float:
    """``--cpus``: a decimal number of CPUs from 0.01 to the number available (Docker's
    range; tsubo refuses ``0`` rather than reading it as "no limit")."""
    word = text.strip()
    whole, dot, fraction = word.partition(".")
    if not (_is_digits(whole) or (dot and not whole)) or (dot and not _is_digits(fraction)):
        raise _bad("--cpus", text, "expected a number of CPUs like 1.5")
    cpus = float(word)
    limit = available_cpus()
    if not 0.01 <= cpus <= limit:
        raise _bad("--cpus", text, f"must be from 0.01 to {limit} (the CPUs available)")
    return cpus


def parse_cpu_shares(text: str) -> int:
    """``--cpu-shares``: a relative weight from 2 to 262144 (the cgroup v1 range runc uses)."""
    word = text.strip()
    if not _is_digits(word) or not 2 <= int(word) <= 262144:
        raise _bad("--cpu-shares", text, "expected a weight from 2 to 262144 (default 1024)")
    return int(word)


def parse_pids_limit(text: str) -> int | None:
    """``--pids-limit``: a positive number of tasks; ``0`` or ``-1`` mean unlimited (None)."""
    word = text.strip()
    if word == "-1":
        return None
    if not _is_digits(word):
        raise _bad("--pids-limit", text, "expected a number of processes, or -1 for no limit")
    return int(word) or None


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """``nofile=1024:2048`` -> ``("RLIMIT_NOFILE", 1024, 2048)``; ``nproc=512`` sets soft and
    hard; ``-1`` is unlimited. The names are Docker's (``ULIMIT_NAMES``)."""
    name, equals, values = text.partition("=")
    if not equals:
        raise _bad("--ulimit", text, "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    rlimit = ULIMIT_NAMES.get(name.strip().lower())
    if rlimit is None:
        raise _bad("--ulimit", text, f"unknown ulimit {name!r}",
                   hint="one of " + ", ".join(ULIMIT_NAMES))
    soft_text, colon, hard_text = values.partition(":")
    limits = []
    for value in (soft_text, hard_text if colon else soft_text):
        word = value.strip()
        if word == "-1":
            limits.append(-1)
        elif _is_digits(word):
            limits.append(int(word))
        else:
            raise _bad("--ulimit", text, "limits must be whole numbers or -1 (unlimited)")
    soft, hard = limits
    if hard != -1 and (soft == -1 or soft > hard):
        raise _bad("--ulimit", text, "the soft limit must not exceed the hard limit")
    return rlimit, soft, hard


# --- lifecycle ----------------------------------------------------------------------------


class RestartPolicy:
    """``--restart``: ``no``, ``always``, ``unless-stopped`` or ``on-failure[:N]`` (N = 0 is
    no maximum)."""

    __slots__ = ("max_retries", "name")

    def __init__(self, name: str = "no", max_retries: int = 0) -> None:
        self.name = name
        self.max_retries = max_retries

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RestartPolicy) and self.name == other.name
                and self.max_retries == other.max_retries)

    def __hash__(self) -> int:
        return hash((self.name, self.max_retries))

    def __repr__(self) -> str:
        return f"RestartPolicy({self.name!r}, {self.max_retries})"

    def __str__(self) -> str:
        if self.name == "on-failure" and self.max_retries:
            return f"on-failure:{self.max_retries}"
        return self.name


def parse_restart(text: str) -> RestartPolicy:
    """``--restart``; a maximum retry count only with ``on-failure`` (Docker's rule)."""
    name, colon, count = text.strip().partition(":")
    if not name:
        name = "no"
    if name not in RESTART_POLICIES:
        raise _bad("--restart", text, f"unknown restart policy {name!r}",
                   hint="one of no, always, unless-stopped, on-failure[:N]")
    if not colon:
        return RestartPolicy(name, 0)
    if name != "on-failure":
        raise _bad("--restart", text,
                   f"a maximum retry count cannot be used with restart policy {name!r}")
    if not _is_digits(count):
        raise _bad("--restart", text, "the maximum retry count must be a whole number >= 0")
    return RestartPolicy(name, int(count))


def parse_signal_name(text: str, flag: str = "--stop-signal") -> str:
    """``TERM``, ``sigterm``, ``15`` -> ``SIGTERM`` (``RTMIN+3`` stays numeric)."""
    from tsubo.kernel.signals import parse_signal, signal_name

    try:
        return signal_name(parse_signal(text.strip()))
    except InvalidArgument as error:
        raise _bad(flag, text, error.detail) from None


# --- security -----------------------------------------------------------------------------


def parse_capability(name: str) -> str:
    """``NET_ADMIN``, ``net_admin``, ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; ``ALL`` stays."""
    from tsubo.kernel.capabilities import CAPABILITY_NUMBERS

    word = name.strip().upper()
    if word == "ALL":
        return word
    if not word.startswith("CAP_"):
        word = "CAP_" + word
    if word not in CAPABILITY_NUMBERS:
        raise _bad("--cap-add/--cap-drop", name, f"unknown capability {word}",
                   hint="see capabilities(7); ALL means every capability")
    return word


def parse_security_opt(text: str) -> tuple[str, str]:
    """``--security-opt`` -> ``(key, value)``:

    - ``no-new-privileges[:true|false]`` (or ``=``) -> ``("no-new-privileges", "true"|"false")``
    - ``seccomp=unconfined`` / ``seccomp=PATH`` -> ``("seccomp", "unconfined"|PATH)``
    - ``apparmor=...``, ``label=...`` -> returned as is; AppArmor and SELinux are off on
      the hosts tsubo supports, and Docker ignores them there too.
    """
    word = text.strip()
    key, sep, value = word.partition("=")
    if not sep:
        key, sep, value = word.partition(":")
    if key == "no-new-privileges":
        value = value or "true"
        if value not in ("true", "false"):
            raise _bad("--security-opt", text, "no-new-privileges takes true or false")
        return key, value
    if key == "seccomp" and value:
        if value != "unconfined" and not value.startswith("/"):
            value = os.path.abspath(value)
        return key, value
    if key in ("apparmor", "label") and value:
        return key, value
    raise _bad("--security-opt", text, "unknown security option",
               hint="no-new-privileges, seccomp=unconfined|PROFILE.json, apparmor=, label=")


# --- environment and labels ---------------------------------------------------------------


def parse_env(entries: list[str]) -> list[str]:
    """``-e KEY=VAL`` as is; ``-e KEY`` takes ``KEY``'s value from this process's environment,
    and is left out when it has none."""
    env = []
    for entry in entries:
        name, equals, _ = entry.partition("=")
        if not name:
            raise _bad("--env", entry, "expected KEY=VALUE or KEY")
        if equals:
            env.append(entry)
        elif name in os.environ:
            env.append(f"{name}={os.environ[name]}")
    return env


def parse_env_file(path: str) -> list[str]:
    """Docker's env-file format: ``KEY=VALUE`` lines taken literally (no quotes, no
    expansion), ``#`` comment lines and blank lines skipped, a bare ``KEY`` takes its value
    from this process's environment (left out when unset)."""
    return _read_key_values(path, "--env-file", from_environment=True)


def parse_label_file(path: str) -> list[str]:
    """``--label-file``: the env-file format, a bare ``KEY`` being a label with an empty
    value (Docker's ``ReadKVStrings`` without an environment)."""
    return _read_key_values(path, "--label-file", from_environment=False)


def _read_key_values(path: str, flag: str, *, from_environment: bool) -> list[str]:
    try:
        with open(path, "rb") as env_file:
            data = env_file.read()
    except OSError as error:
        raise TsuboError.from_os_error(f"read {flag}", path, error) from None
    env = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"read {flag}", path,
                                  detail=f"line {number} is not valid UTF-8") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        line = line.rstrip("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not name:
            raise InvalidArgument(f"read {flag}", path,
                                  detail=f"line {number} has no variable name")
        if any(char.isspace() for char in name):
            raise InvalidArgument(f"read {flag}", path,
                                  detail=f"line {number}: variable {name!r} contains "
                                  "whitespace")
        if equals:
            env.append(f"{name}={value}")
        elif not from_environment:
            env.append(name)
        elif name in os.environ:
            env.append(f"{name}={os.environ[name]}")
    return env


def parse_labels(entries: list[str]) -> dict[str, str]:
    """``--label k=v`` (``--label k`` is ``k=""``); a later label wins."""
    labels = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key.strip():
            raise _bad("--label", entry, "expected KEY=VALUE")
        labels[key] = value
    return labels


# --- names and resolver ---------------------------------------------------------------------

#: ``--add-host NAME:host-gateway``: the gateway of the container's first network
HOST_GATEWAY = "host-gateway"


def _ip_address(text: str) -> bool:
    import _socket

    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, text)
        except OSError:
            continue
        return True
    return False


def _dns_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return 0 < len(text) <= 253 and all(
        0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in label)
        for label in labels)


def parse_add_host(text: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME=IP``; IPv6 as is, or in brackets; ``IP`` may be
    ``host-gateway``) -> (name, address)."""
    separator = "=" if "=" in text else ":"
    name, _, address = text.partition(separator)
    address = address.removeprefix("[").removesuffix("]")
    if not _dns_name(name):
        raise _bad("--add-host", text, f"invalid hostname {name!r}")
    if address != HOST_GATEWAY and not _ip_address(address):
        raise _bad("--add-host", text, f"invalid IP address {address!r} (expected "
                   f"NAME:IP or NAME:{HOST_GATEWAY})")
    return name, address


def parse_dns_server(text: str) -> str:
    """``--dns IP``."""
    if not _ip_address(text):
        raise _bad("--dns", text, "not an IP address")
    return text


def parse_dns_search(text: str) -> str:
    """``--dns-search DOMAIN`` (``.`` clears the search list, as in Docker)."""
    if text != "." and not _dns_name(text):
        raise _bad("--dns-search", text, "not a domain name")
    return text


def parse_dns_option(text: str) -> str:
    """``--dns-option OPT`` (resolv.conf(5) ``options``: one word, like ``ndots:2``)."""
    if not text or any(c.isspace() for c in text):
        raise _bad("--dns-option", text, "expected one resolv.conf option (e.g. ndots:2)")
    return text


def parse_network_alias(text: str) -> str:
    """``--network-alias NAME``: another name the container answers to on its networks."""
    if not _dns_name(text):
        raise _bad("--network-alias", text, "not a valid DNS name")
    return text


# --- volumes and tmpfs --------------------------------------------------------------------


def _container_path(path: str, flag: str, text: str) -> str:
    """An absolute path in the container without ``..``, cleaned (``//`` and ``.``)."""
    if not path.startswith("/"):
        raise _bad(flag, text, f"the container path {path!r} must be absolute")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _bad(flag, text, f"the container path {path!r} must not contain '..'")
    if not parts:
        raise _bad(flag, text, "the container path cannot be '/'")
    return "/" + "/".join(parts)


class VolumeSpec:
    """One ``-v``: a bind mount (``source`` is an absolute host path), a named volume
    (``is_named``), or an anonymous volume (no source; the engine makes one)."""

    __slots__ = ("destination", "is_named", "options", "propagation", "read_only", "source")

    def __init__(self, source: str, destination: str, *, read_only: bool = False,
                 is_named: bool = False, propagation: str = DEFAULT_PROPAGATION,
                 options: list[str] | None = None) -> None:
        self.source = source
        self.destination = destination
        self.read_only = read_only
        self.is_named = is_named
        self.propagation = propagation
        #: the mode words as given (``ro``, ``z``, ``nocopy``, ...), validated
        self.options = list(options or [])

    @property
    def is_anonymous(self) -> bool:
        return not self.source

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")

    def mount_options(self) -> list[str]:
        """OCI mount options for the bind of the host directory, as Docker writes them."""
        return ["rbind", *(["ro"] if self.read_only else []), self.propagation]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination,
                "read_only": self.read_only, "is_named": self.is_named,
                "propagation": self.propagation, "options": list(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeSpec:
        return cls(str(data["source"]), str(data["destination"]),
                   read_only=bool(data.get("read_only")), is_named=bool(data.get("is_named")),
                   propagation=str(data.get("propagation") or DEFAULT_PROPAGATION),
                   options=[str(o) for o in data.get("options") or []])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VolumeSpec) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"VolumeSpec({self.source!r} -> {self.destination!r}, {self.options})"


def parse_volume(text: str) -> VolumeSpec:
    """``-v``: ``/host:/ctr[:MODE]``, ``NAME:/ctr[:MODE]``, ``/ctr`` (anonymous volume).

    MODE is comma-separated: ``ro``/``rw``, a propagation (``rprivate`` default, ``shared``,
    ``slave``, ...; bind mounts only), ``nocopy`` (named volumes only), ``z``/``Z`` (SELinux
    relabelling: accepted and ignored, as Docker does with SELinux off), and Docker Desktop's
    ``consistent``/``cached``/``delegated`` (ignored). A relative host path is refused: a
    bare word is a volume name.
    """
    parts = text.split(":")
    if len(parts) > 3 or not all(parts):
        raise _bad("--volume", text, "expected [SOURCE:]CONTAINER_PATH[:MODE]")
    mode = ""
    if len(parts) == 1:
        source, destination = "", parts[0]
    elif len(parts) == 2:
        source, destination = parts
    else:
        source, destination, mode = parts
    if len(parts) == 2 and not destination.startswith("/") and _is_mode(destination):
        raise _bad("--volume", text, "an anonymous volume takes no mode")
    destination = _container_path(destination, "--volume", text)
    is_named = False
    if source.startswith("/"):
        if ".." in source.split("/"):
            raise _bad("--volume", text, f"the host path {source!r} must not contain '..'")
        source = "/" + "/".join(p for p in source.split("/") if p not in ("", "."))
    elif source:
        try:
            volume_name(source)  # a bare word is a volume name: Docker's rule and words
        except InvalidArgument as error:
            raise _bad("--volume", text, error.detail) from None
        is_named = True
    options = mode.split(",") if mode else []
    read_only = False
    propagation = ""
    seen: set[str] = set()
    for option in options:
        group = _mode_group(option)
        if group is None:
            raise _bad("--volume", text, f"unknown mode {option!r}",
                       hint="ro, rw, z, Z, nocopy, or a propagation such as rslave")
        if group in seen:
            raise _bad("--volume", text, f"conflicting modes in {mode!r}")
        seen.add(group)
        if group == "access":
            read_only = option == "ro"
        elif group == "propagation":
            propagation = option
        elif group == "nocopy" and not is_named:
            raise _bad("--volume", text, "nocopy is only for named volumes")
    if propagation and not source.startswith("/"):
        raise _bad("--volume", text, "a propagation mode is only for host directories")
    return VolumeSpec(source, destination, read_only=read_only, is_named=is_named,
                      propagation=propagation or DEFAULT_PROPAGATION, options=options)


def _mode_group(option: str) -> str | None:
    if option in _ACCESS_MODES:
        return "access"
    if option in _LABEL_MODES:
        return "label"
    if option in _PROPAGATION_MODES:
        return "propagation"
    if option in _CONSISTENCY_MODES:
        return "consistency"
    if option == "nocopy":
        return "nocopy"
    return None


def _is_mode(text: str) -> bool:
    return all(_mode_group(option) is not None for option in text.split(","))


class TmpfsSpec:
    """One ``--tmpfs PATH[:OPTIONS]``; ``options`` are the user's, validated."""

    __slots__ = ("destination", "options")

    def __init__(self, destination: str, options: list[str] | None = None) -> None:
        self.destination = destination
        self.options = list(options or [])

    def mount_options(self) -> list[str]:
        """Docker's defaults (noexec, nosuid, nodev, rprivate) merged with the user's
        options: a later word of the same kind wins (``exec`` cancels ``noexec``)."""
        return merge_tmpfs_options([*TMPFS_DEFAULT_OPTIONS, *self.options])

    def to_json(self) -> dict[str, Any]:
        return {"destination": self.destination, "options": list(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TmpfsSpec:
        return cls(str(data["destination"]), [str(o) for o in data.get("options") or []])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TmpfsSpec) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TmpfsSpec({self.destination!r}, {self.options})"


_MOUNT_KEYS = {"type": "type", "source": "source", "src": "source", "destination": "target",
               "dst": "target", "target": "target", "readonly": "readonly",
               "ro": "readonly", "bind-propagation": "bind-propagation",
               "volume-nocopy": "volume-nocopy", "tmpfs-size": "tmpfs-size",
               "tmpfs-mode": "tmpfs-mode", "consistency": "consistency"}


def parse_mount(text: str, base: str = "/") -> VolumeSpec | TmpfsSpec:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]`` (Docker's
    keys and their short forms), checked by the same rules as ``-v`` and ``--tmpfs``; a
    relative bind source is the caller's (*base*)."""
    fields: dict[str, str] = {}
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        key, equals, value = part.partition("=")
        canonical = _MOUNT_KEYS.get(key.lower())
        if canonical is None:
            raise _bad("--mount", text, f"unexpected key {key!r}")
        if not equals and canonical not in ("readonly", "volume-nocopy"):
            raise _bad("--mount", text, f"invalid field {part!r}: must be a key=value pair")
        fields[canonical] = value if equals else "true"
    kind = fields.get("type", "volume")
    target = fields.get("target", "")
    if not target:
        raise _bad("--mount", text, "target is required")
    flags = {}
    for key in ("readonly", "volume-nocopy"):
        value = fields.get(key, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise _bad("--mount", text, f"{key} takes true or false")
        flags[key] = value in ("true", "1")
    source = fields.get("source", "")
    if kind == "tmpfs":
        if source:
            raise _bad("--mount", text, "a tmpfs mount takes no source")
        options = [f"size={fields['tmpfs-size']}"] if "tmpfs-size" in fields else []
        options += [f"mode={fields['tmpfs-mode']}"] if "tmpfs-mode" in fields else []
        return _as_mount(text, parse_tmpfs, f"{target}:{','.join(options)}" if options
                         else target)
    mode = ["ro"] if flags["readonly"] else []
    if kind == "bind":
        if not source:
            raise _bad("--mount", text, "a bind mount needs a source")
        if "bind-propagation" in fields:
            mode.append(fields["bind-propagation"])
        source = os.path.normpath(os.path.join(base, source))
    elif kind == "volume":
        if "bind-propagation" in fields:
            raise _bad("--mount", text, "bind-propagation is for bind mounts")
        if flags["volume-nocopy"]:
            mode.append("nocopy")
        if source.startswith("/") or source.startswith("."):
            raise _bad("--mount", text, "a volume's source is a volume name",
                       hint="type=bind mounts a host path")
    else:
        raise _bad("--mount", text, f"unknown type {kind!r}: expected bind, volume or tmpfs")
    spec = f"{source}:{target}" if source else target
    return _as_mount(text, parse_volume, f"{spec}:{','.join(mode)}" if mode else spec)


def _as_mount(text: str, parse: Callable[[str], VolumeSpec | TmpfsSpec], spec: str
              ) -> VolumeSpec | TmpfsSpec:
    """*spec* checked by the ``-v``/``--tmpfs`` parser, its error naming ``--mount``."""
    try:
        return parse(spec)
    except InvalidArgument as error:
        raise _bad("--mount", text, error.detail, error.hint) from None


def parse_tmpfs(text: str) -> TmpfsSpec:
    """``--tmpfs /run`` or ``--tmpfs /run:rw,size=64m,mode=1777``."""
    path, _, option_text = text.partition(":")
    destination = _container_path(path, "--tmpfs", text)
    options = [option.strip() for option in option_text.split(",") if option.strip()]
    for option in options:
        key, equals, value = option.partition("=")
        if equals:
            if key not in _TMPFS_DATA or not value:
                raise _bad("--tmpfs", text, f"unknown tmpfs option {option!r}",
                           hint="size=64m, mode=1777, uid=, gid=, nr_inodes=, or a flag")
            if key == "mode" and not (_is_digits(value) and set(value) <= set("01234567")):
                raise _bad("--tmpfs", text, f"mode {value!r} must be octal, e.g. 1777")
            if key == "size" and not _is_tmpfs_size(value):
                raise _bad("--tmpfs", text, f"size {value!r} must be like 64m or 50%")
        elif option not in _TMPFS_FLAGS and option != "defaults":
            raise _bad("--tmpfs", text, f"unknown tmpfs option {option!r}",
                       hint="size=64m, mode=1777, uid=, gid=, nr_inodes=, or a flag")
    return TmpfsSpec(destination, options)


def _is_tmpfs_size(value: str) -> bool:
    number = value[:-1] if value[-1:].lower() in ("k", "m", "g", "%") else value
    return _is_digits(number)


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """moby/sys/mount MergeTmpfsOptions: keep the last word of each kind, in order."""
    seen: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        key = _TMPFS_FLAGS.get(option) or "data:" + option.partition("=")[0]
        if key in seen:
            continue
        seen.add(key)
        merged.append(option)
    merged.reverse()
    return merged


# --- the whole request --------------------------------------------------------------------


class RunOptions:
    """Everything ``tsubo create/run`` was asked for (Docker's flags), validated.

    ``entrypoint`` None means the image's; ``[]`` means cleared (``--entrypoint ""``).
    ``memory_swap`` is Docker's memory+swap total: None or 0 unset, -1 unlimited.
    ``seccomp`` is ``"default"``, ``"unconfined"`` or the path of a JSON profile.
    """

    __slots__ = ("add_hosts", "cap_add", "cap_drop", "command", "cpu_shares", "cpus",
                 "cpuset_cpus", "devices", "dns", "dns_options", "dns_search", "domainname",
                 "entrypoint", "env", "expose", "healthcheck", "hostname", "image", "init",
                 "interactive", "ip", "ip6", "ipc_mode", "labels", "log_driver",
                 "mac_address", "memory", "memory_swap", "network", "network_aliases",
                 "networks", "no_new_privileges", "pid_mode", "pids_limit", "platform",
                 "privileged", "publish", "publish_all", "pull", "read_only", "remove",
                 "restart", "rootfs", "seccomp", "shm_size", "stop_signal", "stop_timeout",
                 "sysctls", "tmpfs", "tty", "ulimits", "user", "uts_mode", "volumes",
                 "volumes_from", "workdir")

    def __init__(
        self,
        *,
        image: str = "",
        rootfs: str = "",
        command: list[str] | None = None,
        entrypoint: list[str] | None = None,
        env: list[str] | None = None,
        workdir: str = "",
        user: str = "",
        hostname: str = "",
        read_only: bool = False,
        tmpfs: list[TmpfsSpec] | None = None,
        volumes: list[VolumeSpec] | None = None,
        memory: int | None = None,
        memory_swap: int | None = None,
        cpus: float | None = None,
        cpu_shares: int | None = None,
        pids_limit: int | None = None,
        ulimits: list[tuple[str, int, int]] | None = None,
        cap_add: list[str] | None = None,
        cap_drop: list[str] | None = None,
        no_new_privileges: bool = False,
        seccomp: str = "default",
        init: bool = False,
        tty: bool = False,
        interactive: bool = False,
        labels: dict[str, str] | None = None,
        stop_signal: str = "",  # "": the image's StopSignal, else SIGTERM (at create)
        stop_timeout: int = 10,
        restart: RestartPolicy | None = None,
        network: str = "none",
        networks: list[str] | None = None,
        ip: str = "",
        ip6: str = "",
        mac_address: str = "",
        remove: bool = False,
        publish: list[PortSpec] | None = None,
        publish_all: bool = False,
        expose: list[str] | None = None,
        network_aliases: list[str] | None = None,
        add_hosts: list[list[str]] | None = None,
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
        dns_options: list[str] | None = None,
        domainname: str = "",
        healthcheck: dict[str, Any] | None = None,
        shm_size: int | None = None,
        sysctls: dict[str, str] | None = None,
        cpuset_cpus: str = "",
        pid_mode: str = "",
        ipc_mode: str = "",
        uts_mode: str = "",
        privileged: bool = False,
        devices: list[list[str]] | None = None,
        volumes_from: list[str] | None = None,
        log_driver: str = "json-file",
        pull: str = "missing",
        platform: str = "",
    ) -> None:
        self.image = image
        self.rootfs = rootfs
        self.command = list(command or [])
        self.entrypoint = None if entrypoint is None else list(entrypoint)
        self.env = list(env or [])
        self.workdir = workdir
        self.user = user
        self.hostname = hostname
        self.read_only = read_only
        self.tmpfs = list(tmpfs or [])
        self.volumes = list(volumes or [])
        self.memory = memory
        self.memory_swap = memory_swap
        self.cpus = cpus
        self.cpu_shares = cpu_shares
        self.pids_limit = pids_limit
        self.ulimits = list(ulimits or [])
        self.cap_add = list(cap_add or [])
        self.cap_drop = list(cap_drop or [])
        self.no_new_privileges = no_new_privileges
        self.seccomp = seccomp
        self.init = init
        self.tty = tty
        self.interactive = interactive
        self.labels = dict(labels or {})
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.restart = restart if restart is not None else RestartPolicy("no", 0)
        #: "none" (own netns, lo only), "host", or "bridge": attached to ``networks``. A
        #: RunOptions made by hand keeps "none"; the builder's default is the engine's
        #: default network (:func:`default_network`)
        self.network = network
        #: named networks in order (the first gives the default route)
        self.networks = list(networks or [])
        self.ip = ip
        #: ``--ip6``: the IPv6 address on the first (dual-stack) network
        self.ip6 = ip6
        self.mac_address = mac_address
        self.remove = remove
        #: published ports (``-p``; ``-P`` adds the exposed ones at create)
        self.publish = list(publish or [])
        self.publish_all = publish_all
        #: ``--expose``: ``PORT/PROTO`` texts
        self.expose = list(expose or [])
        self.network_aliases = list(network_aliases or [])
        #: ``--add-host``: [name, address] pairs (address may be ``host-gateway``)
        self.add_hosts = [list(pair) for pair in add_hosts or []]
        self.dns = list(dns or [])
        self.dns_search = list(dns_search or [])
        self.dns_options = list(dns_options or [])
        self.domainname = domainname
        #: Docker's HealthConfig (``Test``, ``Interval``/``Timeout``/``StartPeriod`` in ns,
        #: ``Retries``; ``{"Test": ["NONE"]}`` for --no-healthcheck); None: the image's
        self.healthcheck = dict(healthcheck) if healthcheck is not None else None
        self.shm_size = shm_size  # bytes of /dev/shm; None: Docker's 64 MiB
        self.sysctls = dict(sysctls or {})
        self.cpuset_cpus = cpuset_cpus
        #: "" (a namespace of its own), "host" (the host's) or "container:NAME" (that
        #: running container's)
        self.pid_mode = pid_mode
        self.ipc_mode = ipc_mode
        self.uts_mode = uts_mode
        self.privileged = privileged
        #: ``--device``: [host path, container path, cgroup permissions] triples
        self.devices = [list(device) for device in devices or []]
        #: ``--volumes-from``: ``NAME[:ro|rw]`` texts, resolved at create
        self.volumes_from = list(volumes_from or [])
        self.log_driver = log_driver  # "json-file" or "none"
        #: ``--pull``: "missing", "always" or "never" (what create does without the image)
        self.pull = pull
        self.platform = platform  # ``--platform`` as given ("" or this host's)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the engine stores in its database)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        data["command"] = list(self.command)
        data["entrypoint"] = None if self.entrypoint is None else list(self.entrypoint)
        data["env"] = list(self.env)
        data["tmpfs"] = [t.to_json() for t in self.tmpfs]
        data["volumes"] = [v.to_json() for v in self.volumes]
        data["ulimits"] = [[name, soft, hard] for name, soft, hard in self.ulimits]
        data["cap_add"] = list(self.cap_add)
        data["cap_drop"] = list(self.cap_drop)
        data["labels"] = dict(self.labels)
        data["networks"] = list(self.networks)
        data["publish"] = [spec.to_json() for spec in self.publish]
        data["expose"] = list(self.expose)
        for key in ("network_aliases", "dns", "dns_search", "dns_options"):
            data[key] = list(getattr(self, key))
        data["add_hosts"] = [list(pair) for pair in self.add_hosts]
        data["devices"] = [list(device) for device in self.devices]
        data["volumes_from"] = list(self.volumes_from)
        data["restart"] = {"name": self.restart.name, "max_retries": self.restart.max_retries}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOptions:
        """The inverse of :meth:`to_json`; missing keys take their defaults (older records),
        unknown keys are an error."""
        if not isinstance(data, dict):
            raise InvalidArgument("load run options", "", detail="expected a JSON object")
        unknown = sorted(set(data) - set(cls.__slots__))
        if unknown:
            raise InvalidArgument("load run options", ", ".join(unknown),
                                  detail="unknown field")
        fields = dict(data)
        try:
            if "tmpfs" in fields:
                fields["tmpfs"] = [TmpfsSpec.from_json(t) for t in fields["tmpfs"] or []]
            if "volumes" in fields:
                fields["volumes"] = [VolumeSpec.from_json(v) for v in fields["volumes"] or []]
            if "ulimits" in fields:
                fields["ulimits"] = [(str(n), int(s), int(h)) for n, s, h in
                                     fields["ulimits"] or []]
            if fields.get("publish"):
                from tsubo.network.ports import PortSpec

                fields["publish"] = [PortSpec.from_json(p) for p in fields["publish"] or []]
            if "restart" in fields:
                restart = fields["restart"] or {}
                fields["restart"] = RestartPolicy(str(restart.get("name") or "no"),
                                                  int(restart.get("max_retries") or 0))
            return cls(**fields)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidArgument("load run options", "",
                                  detail=f"malformed record: {error}") from None

    def to_json_text(self) -> str:
        """:meth:`to_json` serialised (compact JSON)."""
        from tsubo import jsonwire

        return jsonwire.dumps(self.to_json())

    @classmethod
    def from_json_text(cls, text: str | bytes) -> RunOptions:
        """The inverse of :meth:`to_json_text`."""
        from tsubo import jsonwire

        data = jsonwire.loads(text, "", operation="load run options")
        if not isinstance(data, dict):
            raise InvalidArgument("load run options", "", detail="expected a JSON object")
        return cls.from_json(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunOptions) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunOptions(image={self.image!r}, rootfs={self.rootfs!r}, command={self.command})"


# --- the one builder: flags (CLI) or keyword arguments (API) -> RunOptions -----------------

#: the options ``create``/``run`` take, by their canonical key (the CLI flag's name with
#: ``_`` for ``-``), with the API's plural spellings as aliases
RUN_OPTION_KEYS = frozenset((
    "image", "rootfs", "command", "entrypoint", "env", "env_file", "workdir", "user",
    "hostname", "read_only", "tty", "interactive", "tmpfs", "volume", "memory",
    "memory_swap", "cpus", "cpu_shares", "pids_limit", "ulimit", "cap_add", "cap_drop",
    "security_opt", "init", "restart", "stop_signal", "stop_timeout", "label", "label_file",
    "network", "health_cmd", "health_interval", "health_timeout", "health_start_period",
    "health_retries", "no_healthcheck", "mount", "shm_size", "sysctl", "cpuset_cpus", "pid", "ipc",
    "uts",
    "ip", "ip6", "mac_address", "rm",
    "network_alias", "add_host", "dns", "dns_search", "dns_option", "domainname",
    "publish", "publish_all", "expose",
    "privileged", "device", "volumes_from", "log_driver", "pull", "platform", "userns",
))
_ALIASES = {"volumes": "volume", "labels": "label", "ulimits": "ulimit",
            "networks": "network", "remove": "rm", "env_files": "env_file",
            "label_files": "label_file", "sysctls": "sysctl", "mounts": "mount",
            "security_opts": "security_opt", "network_aliases": "network_alias",
            "add_hosts": "add_host", "dns_options": "dns_option", "ports": "publish",
            "devices": "device"}
_FLAGS = frozenset(("read_only", "tty", "interactive", "init", "rm", "publish_all",
                    "privileged"))


def build_run_options(given: Mapping[str, object], *, cwd: str | None = None) -> RunOptions:
    """The one way to turn what ``create``/``run`` were asked for into validated
    :class:`RunOptions`, for the CLI (its flags: lists of texts, texts, booleans) and the
    Python API (keyword arguments: the same, or the natural Python types: ``memory=64 <<
    20``, ``env={"A": "1"}``, ``cpus=0.5``), with Docker's rules and messages. Both faces
    give the same error for the same bad input. Relative paths (``--rootfs``, a ``-v ./x``
    source, ``--env-file``, ``seccomp=profile.json``) are resolved against *cwd* (the
    caller's working directory, by default this process's) here, before anything reaches
    the monitor, which runs elsewhere."""
    base = os.getcwd() if cwd is None else cwd
    values: dict[str, object] = {}
    for key, value in given.items():
        canonical = _ALIASES.get(key, key)
        if canonical not in RUN_OPTION_KEYS:
            raise InvalidArgument("create container", key, detail="unknown option")
        values[canonical] = value
    run = RunOptions()
    run.rootfs = _path(_text(values, "rootfs"), base)
    run.image = _text(values, "image")
    if not run.rootfs and not run.image:
        raise InvalidArgument("run", "", detail="requires an image or --rootfs DIR",
                              hint="tsubo run [OPTIONS] IMAGE [COMMAND] [ARG...]")
    run.command = _words(values, "command")
    if "entrypoint" in values and values["entrypoint"] is not None:
        entrypoint = values["entrypoint"]
        run.entrypoint = ([entrypoint] if entrypoint else []) if isinstance(entrypoint, str) \
            else _words(values, "entrypoint")
    env: list[str] = []
    for path in _texts(values, "env_file"):
        env += parse_env_file(_path(path, base))
    run.env = env + parse_env(_env_entries(values.get("env")))
    run.workdir = _text(values, "workdir")
    run.user = _text(values, "user")
    run.hostname = _text(values, "hostname")
    for key in _FLAGS - {"rm"}:
        setattr(run, key, _flag(values, key))
    run.remove = _flag(values, "rm")
    run.tmpfs = [parse_tmpfs(text) for text in _mapping_texts(values, "tmpfs", ":")]
    run.volumes = [parse_volume(_relative_source(text, base))
                   for text in _texts(values, "volume")]
    for text in _texts(values, "mount"):
        mount = parse_mount(text, base)
        if isinstance(mount, TmpfsSpec):
            run.tmpfs.append(mount)
        else:
            run.volumes.append(mount)
    _resources(run, values)
    run.ulimits = [parse_ulimit(text) for text in _texts(values, "ulimit")]
    run.cap_add = [parse_capability(name) for name in _texts(values, "cap_add")]
    run.cap_drop = [parse_capability(name) for name in _texts(values, "cap_drop")]
    for text in _texts(values, "security_opt"):
        key, value = parse_security_opt(text)
        if key == "no-new-privileges":
            run.no_new_privileges = value == "true"
        elif key == "seccomp":
            run.seccomp = value if value == "unconfined" else _path(value, base)
    run.restart = parse_restart(_text(values, "restart") or "no")
    if _text(values, "stop_signal"):
        run.stop_signal = parse_signal_name(_text(values, "stop_signal"))
    if values.get("stop_timeout") not in (None, ""):
        run.stop_timeout = _integer(values["stop_timeout"], "--stop-timeout")
    labels = [entry for path in _texts(values, "label_file")
              for entry in parse_label_file(_path(path, base))]
    run.labels = parse_labels(labels + _mapping_texts(values, "label", "="))
    run.healthcheck = _healthcheck(values)
    _namespaces(run, values)
    _daily(run, values)
    _networks(run, values)
    _names_and_resolver(run, values)
    run.sysctls = parse_sysctls(_mapping_texts(values, "sysctl", "="), run)
    _ports(run, values)
    if run.remove and run.restart.name != "no":
        raise InvalidArgument("run", "--rm", detail="conflicts with --restart")
    return run


#: the sysctls a container may set (moby's ValidateSysctl: namespaced ones only)
_SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_sysctls(entries: list[str], run: RunOptions) -> dict[str, str]:
    """``--sysctl KEY=VALUE``: Docker's namespaced sysctls (IPC ones, ``fs.mqueue.*``,
    ``net.*``), refused where the namespace is the host's (``--ipc host``,
    ``--network host``: they would change the host)."""
    sysctls = {}
    for entry in entries:
        key, equals, value = entry.partition("=")
        if not equals or not key:
            raise _bad("--sysctl", entry, "expected KEY=VALUE")
        ipc = key in _SYSCTL_IPC or key.startswith("fs.mqueue.")
        if not ipc and not key.startswith("net."):
            raise _bad("--sysctl", entry, f"sysctl {key!r} is not allowed (not namespaced)")
        if ipc and run.ipc_mode == "host":
            raise _bad("--sysctl", entry, "not allowed with --ipc host: it would change "
                       "the host")
        if key.startswith("net.") and run.network == "host":
            raise _bad("--sysctl", entry, "not allowed with --network host: it would "
                       "change the host")
        sysctls[key] = value
    return sysctls


def _namespaces(run: RunOptions, values: dict[str, object]) -> None:
    """``--pid/--ipc/--uts host``, ``--shm-size``, ``--cpuset-cpus``."""
    for key, allowed in (("pid", ("", "host")), ("ipc", ("", "host", "private", "shareable")),
                         ("uts", ("", "host"))):
        mode = _text(values, key)
        joined = mode.startswith("container:")
        if joined and not mode.partition(":")[2]:
            raise _bad(f"--{key}", mode, "expected container:NAME (a running container)")
        if mode not in allowed and not joined:
            words = " or ".join(a for a in allowed if a)
            raise _bad(f"--{key}", mode, f"expected {words} or container:NAME")
        setattr(run, f"{key}_mode", mode if joined or mode == "host" else "")
    if run.uts_mode and run.hostname:
        raise InvalidArgument("create container", "--hostname",
                              detail="conflicting options: hostname and the UTS mode")
    shm = values.get("shm_size")
    if shm not in (None, ""):
        run.shm_size = shm if isinstance(shm, int) and not isinstance(shm, bool) \
            else parse_size(_text(values, "shm_size"), "--shm-size")
        if run.shm_size <= 0:
            raise _bad("--shm-size", _text(values, "shm_size"), "must be greater than 0")
    cpus = _text(values, "cpuset_cpus")
    if cpus:
        import re  # only then: `re` costs a `run` ~5 ms of imports

        if re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpus) is None:
            raise _bad("--cpuset-cpus", cpus, "expected a list such as 0-2,4")
        available = os.cpu_count() or 1
        for part in cpus.split(","):
            low, _, high = part.partition("-")
            if int(high or low) >= available or (high and int(high) < int(low)):
                raise _bad("--cpuset-cpus", cpus, f"this host has CPUs 0-{available - 1}")
    run.cpuset_cpus = cpus


PULL_POLICIES = ("missing", "always", "never")
LOG_DRIVERS = ("json-file", "none")
_DEVICE_PERMISSIONS = "rwm"


def parse_device(text: str) -> list[str]:
    """``--device HOST[:CONTAINER][:PERMISSIONS]`` -> [host, container, permissions]
    (docker/cli ``parseLinuxDevice`` and ``validateLinuxPath``): PERMISSIONS are some of
    ``r``, ``w``, ``m``, each once (default ``rwm``); a second part that is such a word is
    the permissions; the container path defaults to the host's and must be absolute. Whether
    the host path is a device is checked at create (Docker's daemon does it there)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise _bad("--device", text, "bad format: expected HOST[:CONTAINER][:PERMISSIONS]")
    host, container, permissions = parts[0], "", _DEVICE_PERMISSIONS
    if len(parts) == 3:
        container, permissions = parts[1], parts[2]
        if not _device_permissions(permissions):
            raise _bad("--device", text, f"bad mode specified: {permissions}",
                       hint="some of r, w and m (read, write, mknod)")
    elif len(parts) == 2:
        if _device_permissions(parts[1]):
            permissions = parts[1]
        else:
            container = parts[1]
    container = container or host
    if not container.startswith("/"):
        raise _bad("--device", text, f"{container} is not an absolute path")
    if not host.startswith("/"):
        raise _bad("--device", text, f"{host} is not an absolute path")
    return [os.path.normpath(host), os.path.normpath(container), permissions]


def _device_permissions(word: str) -> bool:
    return bool(word) and all(word.count(char) == 1 for char in word) and \
        set(word) <= set(_DEVICE_PERMISSIONS)


def parse_volumes_from(text: str) -> str:
    """``--volumes-from NAME[:ro|rw]`` (Docker's modes; the container is looked up at
    create)."""
    name, colon, mode = text.partition(":")
    if not name or (colon and mode not in ("ro", "rw")):
        raise _bad("--volumes-from", text, "expected CONTAINER[:ro|rw]")
    return text


def parse_platform_option(text: str) -> str:
    """``--platform`` of ``run``/``create``: this host's platform is accepted (tsubo does not
    emulate another architecture); anything else is refused in one line."""
    from tsubo.image.pull import host_platform, parse_platform

    try:
        wanted = parse_platform(text)
    except InvalidArgument as error:
        raise _bad("--platform", text, error.detail) from None
    host = host_platform()
    if wanted[:2] != host[:2] or (wanted[2] and host[2] and wanted[2] != host[2]):
        shown = "/".join(part for part in host if part)
        raise _bad("--platform", text, f"this host runs {shown} containers only (tsubo does "
                   "not emulate other platforms)")
    return text


def _daily(run: RunOptions, values: dict[str, object]) -> None:
    """``--privileged``, ``--device``, ``--volumes-from``, ``--log-driver``, ``--pull``,
    ``--platform``, ``--userns``."""
    run.devices = [parse_device(text) for text in _texts(values, "device")]
    run.volumes_from = [parse_volumes_from(text) for text in _texts(values, "volumes_from")]
    run.log_driver = _text(values, "log_driver") or "json-file"
    if run.log_driver not in LOG_DRIVERS:
        raise _bad("--log-driver", run.log_driver, "expected json-file or none (the log "
                   "drivers tsubo has)")
    run.pull = _text(values, "pull") or "missing"
    if run.pull not in PULL_POLICIES:
        raise InvalidArgument("parse --pull", run.pull, detail='invalid pull option: must be '
                              'one of "always", "missing" or "never"')
    platform = _text(values, "platform")
    run.platform = parse_platform_option(platform) if platform else ""
    userns = _text(values, "userns")
    if userns not in ("", "host"):
        raise _bad("--userns", userns, "only host is supported (containers share the host's "
                   "user namespace, as Docker's without userns-remap)")


#: Go's time.ParseDuration units, in nanoseconds
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}
_HEALTH_DURATIONS = (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                     ("health_start_period", "StartPeriod"))


def parse_duration(text: str, flag: str) -> int:
    """Go's ``time.ParseDuration`` (``30s``, ``1m30s``, ``500ms``, ``1.5h``; ``0``) in
    nanoseconds; negative durations are refused."""
    import re

    rest = text.strip()
    if rest == "0":
        return 0
    total = 0.0
    if not rest:
        raise _bad(flag, text, "expected a duration such as 30s, 1m30s or 500ms")
    for number, unit, in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", rest):
        total += float(number) * _DURATION_UNITS[unit]
    if re.fullmatch(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+", rest) is None:
        raise _bad(flag, text, "expected a duration such as 30s, 1m30s or 500ms")
    return int(total)


def _healthcheck(values: dict[str, object]) -> dict[str, Any] | None:
    """Docker's ``--health-*`` flags and ``--no-healthcheck`` as a HealthConfig (zero
    durations: the image's, else Docker's defaults, decided at create); None when none
    was given (the image's own HEALTHCHECK then applies)."""
    given = [key for key in ("health_cmd", "health_retries", *(k for k, _ in _HEALTH_DURATIONS))
             if values.get(key) not in (None, "")]
    if _flag(values, "no_healthcheck"):
        if given:
            raise InvalidArgument("create container", "--no-healthcheck",
                                  detail="conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    config: dict[str, Any] = {}
    command = _text(values, "health_cmd")
    if command:
        config["Test"] = ["CMD-SHELL", command]
    for key, field in _HEALTH_DURATIONS:
        value = values.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # API: seconds
            nanos = int(value * 1_000_000_000)
        else:
            nanos = parse_duration(_text(values, key), _flag_name(key))
        if nanos < 0 or 0 < nanos < 1_000_000:
            raise _bad(_flag_name(key), _text(values, key),
                       "must be at least 1ms (or 0 for the default)")
        config[field] = nanos
    if values.get("health_retries") not in (None, ""):
        retries = _integer(values["health_retries"], "--health-retries")
        if retries < 0:
            raise _bad("--health-retries", str(retries), "cannot be negative")
        config["Retries"] = retries
    return config


def _resources(run: RunOptions, values: dict[str, object]) -> None:
    memory = values.get("memory")
    if memory not in (None, ""):
        run.memory = _at_least_minimum(memory) if isinstance(memory, int) \
            and not isinstance(memory, bool) else parse_memory(_text(values, "memory"))
    swap = values.get("memory_swap")
    if swap not in (None, ""):
        run.memory_swap = parse_memory_swap(str(swap), run.memory)
    cpus = values.get("cpus")
    if cpus not in (None, ""):
        if isinstance(cpus, bool) or not isinstance(cpus, (str, int, float)):
            raise _wrong_type("cpus", "a number of CPUs (e.g. 0.5, or \"1.5\")")
        run.cpus = parse_cpus(str(cpus))
    if values.get("cpu_shares") not in (None, ""):
        run.cpu_shares = parse_cpu_shares(_number_text(values["cpu_shares"], "cpu_shares"))
    if values.get("pids_limit") not in (None, ""):
        run.pids_limit = parse_pids_limit(_number_text(values["pids_limit"], "pids_limit"))


def default_network() -> str:
    """The network of a container given no ``--network``: the engine setting
    :data:`DEFAULT_NETWORK_ENV` when set, else ``bridge`` (the default network, made on
    first use: ``engine/networks.py``)."""
    return os.environ.get(DEFAULT_NETWORK_ENV, "").strip() or "bridge"


def _networks(run: RunOptions, values: dict[str, object]) -> None:
    networks = _texts(values, "network") or [default_network()]
    if any(name in ("none", "host") or name.startswith("container:") for name in networks):
        if len(networks) > 1:
            raise InvalidArgument("parse --network", ",".join(networks),
                                  detail="none, host and container:NAME cannot be combined "
                                  "with networks")
        run.network = networks[0]
    else:
        run.network = "bridge"
        run.networks = networks
    run.ip = _text(values, "ip")
    run.ip6 = _text(values, "ip6")
    if run.ip6:
        from tsubo.network.ipam import parse_ip6

        run.ip6 = parse_ip6(run.ip6)
        if run.network != "bridge":
            raise InvalidArgument("parse --ip6", run.ip6,
                                  detail="--ip6 needs a network (--network NAME)")
    run.mac_address = _text(values, "mac_address")
    if (run.ip or run.mac_address) and run.network != "bridge":
        raise InvalidArgument("parse --ip", run.ip or run.mac_address,
                              detail="--ip and --mac-address need a network (--network NAME)")


def _names_and_resolver(run: RunOptions, values: dict[str, object]) -> None:
    run.network_aliases = [parse_network_alias(text) for text in _texts(values,
                                                                         "network_alias")]
    if run.network_aliases and run.network != "bridge":
        raise InvalidArgument("parse --network-alias", run.network_aliases[0],
                              detail="network-scoped aliases need a network (--network NAME)")
    run.add_hosts = [list(parse_add_host(text)) for text in _mapping_texts(values, "add_host",
                                                                           ":")]
    if any(address == HOST_GATEWAY for _, address in run.add_hosts) and \
            run.network != "bridge":
        raise InvalidArgument("parse --add-host", HOST_GATEWAY,
                              detail="host-gateway is the gateway of the container's network: "
                              "it needs one (--network NAME)")
    run.dns = [parse_dns_server(text) for text in _texts(values, "dns")]
    run.dns_search = [parse_dns_search(text) for text in _texts(values, "dns_search")]
    run.dns_options = [parse_dns_option(text) for text in _texts(values, "dns_option")]
    run.domainname = _text(values, "domainname")
    if run.domainname and not _dns_name(run.domainname):
        raise _bad("--domainname", run.domainname, "not a domain name")


def _ports(run: RunOptions, values: dict[str, object]) -> None:
    """``-p``, ``-P``, ``--expose`` (``network/ports.py`` has the grammar). Publishing needs
    a network to forward to: Docker's "conflicting options" otherwise."""
    if not (values.get("publish") or values.get("expose") or run.publish_all):
        return  # the usual case: nothing imported (``docs/runtime.md``, hot path)
    from tsubo.network.ports import parse_expose, parse_publish

    for text in _texts(values, "publish"):
        run.publish += parse_publish(text)
    for text in _texts(values, "expose"):
        run.expose += [f"{port}/{protocol}" for port, protocol in parse_expose(text)]
    if (run.publish or run.publish_all) and run.network != "bridge":
        flag = "--publish" if run.publish else "--publish-all"
        raise InvalidArgument(f"parse {flag}", run.network,
                              detail="conflicting options: port publishing and the "
                              f"{run.network} network mode",
                              hint="publish on a network: --network bridge (or a network "
                              "of yours)")


def _at_least_minimum(size: int) -> int:
    if size < MIN_MEMORY:
        raise _bad("--memory", str(size), "Minimum memory limit allowed is 6MB")
    return size


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def _wrong_type(key: str, expected: str) -> InvalidArgument:
    return InvalidArgument("create container", _flag_name(key), detail=f"expected {expected}")


def _text(values: dict[str, object], key: str) -> str:
    value = values.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _wrong_type(key, "a string")
    return str(value)


def _flag(values: dict[str, object], key: str) -> bool:
    value = values.get(key, False)
    if not isinstance(value, bool):
        raise _wrong_type(key, "True or False")
    return value


def _integer(value: object, flag: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if isinstance(value, str) and (_is_digits(text.lstrip("-")) and text.count("-") <= 1
                                   and not text.endswith("-")):
        return int(text)
    raise _bad(flag, str(value), "expected an integer")


def _number_text(value: object, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _wrong_type(key, "a whole number")
    return str(value)


def _words(values: dict[str, object], key: str) -> list[str]:
    value = values.get(key)
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(word, str) for word in value):
        raise _wrong_type(key, "a list of strings")
    return list(value)


def _texts(values: dict[str, object], key: str) -> list[str]:
    """A repeatable flag: a list of strings (one string is one item)."""
    value = values.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise _wrong_type(key, "a list of strings")
    return list(value)


def _mapping_texts(values: dict[str, object], key: str, separator: str) -> list[str]:
    """A repeatable KEY<sep>VALUE flag: a list of texts, or a dict (``labels={"a": "1"}``)."""
    value = values.get(key)
    if isinstance(value, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise _wrong_type(key, "a dict of strings to strings")
        return [f"{k}{separator}{v}" if v or separator == "=" else k for k, v in value.items()]
    return _texts(values, key)


def _env_entries(value: object) -> list[str]:
    if isinstance(value, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise _wrong_type("env", "a dict of strings to strings, or a list of KEY=VALUE")
        return [f"{k}={v}" for k, v in value.items()]
    return _texts({"env": value}, "env")


def _path(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, path)) if path else ""


def _relative_source(text: str, base: str) -> str:
    """``-v ./data:/data``: a source starting with ``.`` is a host directory relative to the
    caller's working directory (Docker 23+); anything else is left to :func:`parse_volume`."""
    source, colon, rest = text.partition(":")
    if colon and (source == "." or source.startswith(("./", "../")) or source == ".."):
        return f"{os.path.normpath(os.path.join(base, source))}:{rest}"
    return text
