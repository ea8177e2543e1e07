"""Compile an OCI ``linux.seccomp`` profile into a libseccomp filter, and load it.

This module owns the container's seccomp filter. It works in two steps, the way the
runtime's child needs them:

1. :func:`compile_filter` builds a libseccomp filter context from the profile, already
   validated by ``oci/seccomp.py`` (:class:`~tsubo.oci.seccomp.Seccomp`: every
   mistake in the config is reported there, with its JSON path, before any kernel work;
   this module only declares, as :class:`SeccompProfile`, the attributes it reads). It runs
   before ``pivot_root``, while the host's ``libseccomp.so.2`` can still be loaded.
2. :meth:`SeccompFilter.load` hands the filter to the kernel just before ``execve``. It
   makes one call through a function pointer bound at compile time: no import, no file
   access, so it is safe inside the container's root.

libseccomp is bound with ctypes in :class:`_LibSeccomp` (small typed wrappers, one per C
function we use); nothing else in tsubo talks to it. Every constant below is copied from
``/usr/include/seccomp.h`` of libseccomp 2.5.4 (Debian 12, package ``libseccomp-dev``),
not guessed. libseccomp reports failure as a negative errno *return value*, never through
``errno``; we raise :class:`~tsubo.errors.TsuboError` with ``operation="seccomp <function>"``.

Behaviour follows runc (``libcontainer/seccomp/seccomp_linux.go``) and crun
(``src/libcrun/seccomp.c``):

- a syscall name libseccomp does not know for any architecture in the filter is skipped
  (Docker's default profile names syscalls newer than the library); the names are kept in
  :attr:`SeccompFilter.skipped_syscalls` for debug logs;
- a rule whose action equals the default action is skipped (libseccomp rejects it);
- when two conditions of one rule test the same argument, each condition becomes a rule
  of its own (runc's "old behaviour"): libseccomp can only AND conditions on *different*
  arguments;
- ``SCMP_FLTATR_CTL_NNP`` is off: the runtime sets no_new_privs itself when
  ``process.noNewPrivileges`` asks, so loading needs CAP_SYS_ADMIN otherwise;
- more than 32 rules switch on libseccomp's binary-tree layout (what runc does);
- an architecture the installed libseccomp does not know is
  :class:`~tsubo.errors.Unsupported`, naming its JSON path.

Not done (see runc's ``patchbpf``): runc patches the generated BPF so that syscalls newer
than every one the profile names return ENOSYS instead of the default errno, which helps
old profiles with new libcs. Profiles should list such syscalls (Docker's lists ``clone3``
with ``errnoRet`` 38).
"""

from __future__ import annotations

import ctypes
import os
import struct

from tsubo.errors import InvalidArgument, TsuboError, Unsupported, WrongState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from ctypes import _FuncPointer
    from typing import Protocol

    class SeccompCondition(Protocol):
        """What this module reads of a rule's condition (``args[]``)."""

        @property
        def index(self) -> int: ...
        @property
        def value(self) -> int: ...
        @property
        def value_two(self) -> int: ...
        @property
        def op(self) -> str: ...

    class SeccompRuleSpec(Protocol):
        """What this module reads of a ``syscalls[]`` entry."""

        @property
        def names(self) -> Sequence[str]: ...
        @property
        def action(self) -> str: ...
        @property
        def errno_ret(self) -> int | None: ...
        @property
        def args(self) -> Sequence[SeccompCondition]: ...

    class SeccompProfile(Protocol):
        """What this module reads of a validated ``linux.seccomp`` (spec names, e.g.
        ``SCMP_ACT_ERRNO``, ``SCMP_ARCH_X86_64``): oci.seccomp.Seccomp has it."""

        @property
        def default_action(self) -> str: ...
        @property
        def default_errno_ret(self) -> int | None: ...
        @property
        def architectures(self) -> Sequence[str]: ...
        @property
        def flags(self) -> Sequence[str]: ...
        @property
        def syscalls(self) -> Sequence[SeccompRuleSpec]: ...

# --- libseccomp 2.5.4, /usr/include/seccomp.h -------------------------------------------
# Actions ("seccomp actions" block). ERRNO and TRACE carry 16 bits of data:
# SCMP_ACT_ERRNO(x) = 0x00050000U | ((x) & 0x0000ffffU), SCMP_ACT_TRACE(x) likewise.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_ACTION_DATA_MASK = 0x0000FFFF

# enum scmp_compare
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# enum scmp_filter_attr
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9
_ATTRIBUTE_NAMES = {
    SCMP_FLTATR_CTL_NNP: "SCMP_FLTATR_CTL_NNP",
    SCMP_FLTATR_CTL_TSYNC: "SCMP_FLTATR_CTL_TSYNC",
    SCMP_FLTATR_CTL_LOG: "SCMP_FLTATR_CTL_LOG",
    SCMP_FLTATR_CTL_SSB: "SCMP_FLTATR_CTL_SSB",
    SCMP_FLTATR_CTL_OPTIMIZE: "SCMP_FLTATR_CTL_OPTIMIZE",
    SCMP_FLTATR_API_SYSRAWRC: "SCMP_FLTATR_API_SYSRAWRC",
}

# seccomp_syscall_resolve_name*() return __NR_SCMP_ERROR for a name libseccomp does not
# know at all; a name it knows but the architecture lacks resolves to a negative pseudo
# number (__PNR_*, <= -10000) that seccomp_rule_add*() translates per architecture.
NR_SCMP_ERROR = -1  # __NR_SCMP_ERROR

# Above this many rules, ask libseccomp for a binary tree sorted by syscall number instead
# of a linear list (runc's threshold; libseccomp <= 2.5.4 misbehaves with 0 rules).
_BINARY_TREE_MIN_RULES = 32

_ERRNO_EPERM = 1
_ERRNO_EACCES = 13
_ERRNO_EEXIST = 17

# --- the runtime-spec names (validated by oci/seccomp.py) -> libseccomp values ------------
ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
}
# Only these actions carry an errno (SCMP_ACT_ERRNO(x), SCMP_ACT_TRACE(x)); EPERM if unset.
_ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

OPERATORS = {
    "SCMP_CMP_NE": SCMP_CMP_NE,
    "SCMP_CMP_LT": SCMP_CMP_LT,
    "SCMP_CMP_LE": SCMP_CMP_LE,
    "SCMP_CMP_EQ": SCMP_CMP_EQ,
    "SCMP_CMP_GE": SCMP_CMP_GE,
    "SCMP_CMP_GT": SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
}

# seccomp(2) filter flags -> the libseccomp attribute that sets them at load time.
FLAG_ATTRIBUTES = {
    "SECCOMP_FILTER_FLAG_TSYNC": SCMP_FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SCMP_FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SCMP_FLTATR_CTL_SSB,
}

_SPEC_PATH = "linux.seccomp"
_COMPILE = "compile seccomp filter"


class SeccompFilter:
    """A compiled filter: built before pivot_root (libseccomp is loaded from the host),
    loaded just before execve."""

    __slots__ = ("_ctx", "_lib", "_load", "rule_count", "skipped_syscalls")

    def __init__(
        self, lib: _LibSeccomp, ctx: int, rule_count: int, skipped_syscalls: tuple[str, ...]
    ) -> None:
        self._lib = lib
        self._ctx: int | None = ctx
        # Bound now so that load() does no attribute lookup or symbol resolution later.
        self._load = lib.load
        #: how many libseccomp rules were added
        self.rule_count = rule_count
        #: syscall names skipped because libseccomp does not know them, in spec order
        self.skipped_syscalls = skipped_syscalls

    def load(self) -> None:
        """Install the filter on the calling thread (all threads with TSYNC): seccomp_load.

        Imports nothing and touches no file, so it can run after pivot_root. Without
        no_new_privs set, the caller needs CAP_SYS_ADMIN (seccomp(2)).
        """
        ctx = self._ctx
        if ctx is None:
            raise WrongState("seccomp load", detail="the filter was released")
        rc = self._load(ctx)
        if rc < 0:
            # (TsuboError names the errno through the built-in errno module: no file read.)
            hint = ""
            if -rc in (_ERRNO_EPERM, _ERRNO_EACCES):
                hint = "set no_new_privs first, or keep CAP_SYS_ADMIN until the filter is loaded"
            raise TsuboError("seccomp load", errno=-rc, hint=hint)

    def export_bpf(self) -> bytes:
        """The BPF program as the kernel would get it (``struct sock_filter`` array)."""
        ctx = self._require_ctx("seccomp export_bpf")
        fd = os.memfd_create("tsubo-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = self._lib.export_bpf(ctx, fd)
            if rc < 0:
                raise TsuboError("seccomp export_bpf", errno=-rc)
            return _read_all(fd)
        finally:
            os.close(fd)

    def export_pfc(self) -> str:
        """The filter as libseccomp's human-readable pseudo filter code (for debugging)."""
        ctx = self._require_ctx("seccomp export_pfc")
        fd = os.memfd_create("tsubo-seccomp-pfc", os.MFD_CLOEXEC)
        try:
            rc = self._lib.export_pfc(ctx, fd)
            if rc < 0:
                raise TsuboError("seccomp export_pfc", errno=-rc)
            return _read_all(fd).decode()
        finally:
            os.close(fd)

    def release(self) -> None:
        """Free the libseccomp context (seccomp_release); calling it twice is harmless."""
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._lib.release(ctx)

    def _require_ctx(self, operation: str) -> int:
        if self._ctx is None:
            raise WrongState(operation, detail="the filter was released")
        return self._ctx


def compile_filter(profile: SeccompProfile) -> SeccompFilter:
    """Build the filter of a validated ``linux.seccomp`` profile.

    Raises Unsupported for settings the installed libseccomp cannot honour, TsuboError for
    libseccomp failures.
    """
    return _build(_libseccomp(), profile)


def _action(name: str, errno_ret: int | None) -> int:
    """The libseccomp action value for a spec action name and its errnoRet."""
    action = ACTIONS[name]
    if name in _ACTIONS_WITH_ERRNO:
        return action | (_ERRNO_EPERM if errno_ret is None else errno_ret & _ACTION_DATA_MASK)
    return action


# --- step 2: the libseccomp context --------------------------------------------------------


def _build(lib: _LibSeccomp, profile: SeccompProfile) -> SeccompFilter:
    default_action = _action(profile.default_action, profile.default_errno_ret)
    ctx = lib.init(default_action)
    if ctx is None:
        # seccomp_init returns NULL without a reason: a bad action or no memory.
        raise TsuboError(
            "seccomp init",
            detail=f"libseccomp refused default action {default_action:#010x}",
        )
    try:
        # The runtime sets no_new_privs itself, only when process.noNewPrivileges says so.
        _attr_set(lib, ctx, SCMP_FLTATR_CTL_NNP, 0)
        # Make seccomp_load report the kernel's errno instead of ECANCELED.
        _attr_set(lib, ctx, SCMP_FLTATR_API_SYSRAWRC, 1)
        for flag in profile.flags:
            _attr_set(lib, ctx, FLAG_ATTRIBUTES[flag], 1)

        tokens = []
        for i, spec_arch in enumerate(profile.architectures):
            arch = spec_arch[len("SCMP_ARCH_"):].lower()  # libseccomp's name: "x86_64"
            token = lib.arch_resolve_name(arch)
            if token == 0:
                raise Unsupported(
                    _COMPILE,
                    f"{_SPEC_PATH}.architectures[{i}]",
                    detail=f"the installed libseccomp does not know architecture {arch}",
                )
            rc = lib.arch_add(ctx, token)
            if rc < 0 and rc != -_ERRNO_EEXIST:  # the native architecture is always there
                raise TsuboError("seccomp arch_add", arch, errno=-rc)
            tokens.append(token)

        resolve = _Resolver(lib, tokens)
        skipped: dict[str, None] = {}  # ordered set
        rule_count = 0
        for index, rule in enumerate(profile.syscalls):
            action = _action(rule.action, rule.errno_ret)
            if action == default_action:
                continue  # redundant, and libseccomp rejects it
            args = tuple((arg.index, OPERATORS[arg.op], arg.value, arg.value_two)
                         for arg in rule.args)
            for name in rule.names:
                number = resolve(name)
                if number is None:
                    skipped[name] = None
                    continue
                for conditions in _condition_sets(args):
                    rc = lib.rule_add_array(ctx, action, number, conditions)
                    if rc < 0:
                        raise TsuboError("seccomp rule_add_array",
                                         f'"{name}" ({_SPEC_PATH}.syscalls[{index}])',
                                         errno=-rc)
                    rule_count += 1

        if rule_count > _BINARY_TREE_MIN_RULES:
            # Only the BPF layout changes; an old libseccomp without it still works.
            lib.attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
    except BaseException:
        lib.release(ctx)
        raise
    return SeccompFilter(lib, ctx, rule_count, tuple(skipped))


def _attr_set(lib: _LibSeccomp, ctx: int, attribute: int, value: int) -> None:
    rc = lib.attr_set(ctx, attribute, value)
    if rc < 0:
        name = _ATTRIBUTE_NAMES.get(attribute, str(attribute))
        raise TsuboError("seccomp attr_set", f"{name}={value}", errno=-rc)


def _condition_sets(
    args: tuple[tuple[int, int, int, int], ...],
) -> list[ctypes.Array[_ArgCmp] | None]:
    """The argument arrays to add one rule each for.

    libseccomp ANDs the conditions of one rule only when they test different arguments;
    like runc, when two test the same one we add every condition as a rule of its own.
    """
    if not args:
        return [None]
    indices = [index for index, _, _, _ in args]
    if len(set(indices)) == len(indices):
        return [(_ArgCmp * len(args))(*(_ArgCmp(*arg) for arg in args))]
    return [(_ArgCmp * 1)(_ArgCmp(*arg)) for arg in args]


class _Resolver:
    """Syscall name -> number for rule_add, or None when no filter architecture has it."""

    __slots__ = ("_cache", "_lib", "_tokens")

    def __init__(self, lib: _LibSeccomp, tokens: Sequence[int]) -> None:
        self._lib = lib
        self._tokens = tokens
        self._cache: dict[str, int | None] = {}

    def __call__(self, name: str) -> int | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        raw = name.encode()
        number: int | None = self._lib.syscall_resolve_name(raw)
        if number == NR_SCMP_ERROR:
            number = None  # unknown to this libseccomp on every architecture
        elif number is not None and number < 0 and not self._on_added_architecture(raw):
            number = None
        self._cache[name] = number
        return number

    def _on_added_architecture(self, raw_name: bytes) -> bool:
        """For a pseudo number (the native architecture lacks the syscall): does an added
        architecture have it? libseccomp translates the pseudo number there."""
        return any(self._lib.syscall_resolve_name_arch(t, raw_name) >= 0 for t in self._tokens)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# --- ctypes binding --------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp (seccomp.h): argument index, comparison, two 64-bit data."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _LibSeccomp:
    """Typed wrappers over the libseccomp functions we use; each returns what C returns."""

    __slots__ = (
        "_arch_add",
        "_arch_resolve_name",
        "_attr_set",
        "_export_bpf",
        "_export_pfc",
        "_init",
        "_load",
        "_release",
        "_resolve_name",
        "_resolve_name_arch",
        "_rule_add_array",
    )

    def __init__(self, lib: ctypes.CDLL) -> None:
        ctx, u32, c_int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        self._init = _bind(lib.seccomp_init, ctx, [u32])
        self._release = _bind(lib.seccomp_release, None, [ctx])
        self._arch_resolve_name = _bind(lib.seccomp_arch_resolve_name, u32, [ctypes.c_char_p])
        self._arch_add = _bind(lib.seccomp_arch_add, c_int, [ctx, u32])
        self._attr_set = _bind(lib.seccomp_attr_set, c_int, [ctx, c_int, u32])
        self._resolve_name = _bind(lib.seccomp_syscall_resolve_name, c_int, [ctypes.c_char_p])
        self._resolve_name_arch = _bind(
            lib.seccomp_syscall_resolve_name_arch, c_int, [u32, ctypes.c_char_p]
        )
        self._rule_add_array = _bind(
            lib.seccomp_rule_add_array, c_int, [ctx, u32, c_int, ctypes.c_uint, ctypes.c_void_p]
        )
        self._load = _bind(lib.seccomp_load, c_int, [ctx])
        self._export_bpf = _bind(lib.seccomp_export_bpf, c_int, [ctx, c_int])
        self._export_pfc = _bind(lib.seccomp_export_pfc, c_int, [ctx, c_int])

    def init(self, default_action: int) -> int | None:
        """seccomp_init: a filter context, or None."""
        ctx: int | None = self._init(default_action)
        return ctx

    def release(self, ctx: int) -> None:
        self._release(ctx)

    def arch_resolve_name(self, name: str) -> int:
        """seccomp_arch_resolve_name: the SCMP_ARCH_* token for "x86_64", or 0."""
        token: int = self._arch_resolve_name(name.encode())
        return token

    def arch_add(self, ctx: int, token: int) -> int:
        rc: int = self._arch_add(ctx, token)
        return rc

    def attr_set(self, ctx: int, attribute: int, value: int) -> int:
        rc: int = self._attr_set(ctx, attribute, value)
        return rc

    def syscall_resolve_name(self, name: bytes) -> int:
        number: int = self._resolve_name(name)
        return number

    def syscall_resolve_name_arch(self, token: int, name: bytes) -> int:
        number: int = self._resolve_name_arch(token, name)
        return number

    def rule_add_array(
        self, ctx: int, action: int, syscall: int, conditions: ctypes.Array[_ArgCmp] | None
    ) -> int:
        count = 0 if conditions is None else len(conditions)
        rc: int = self._rule_add_array(ctx, action, syscall, count, conditions)
        return rc

    @property
    def load(self) -> _FuncPointer:
        """seccomp_load itself (int (*)(ctx)), so SeccompFilter.load calls it directly."""
        return self._load

    def export_bpf(self, ctx: int, fd: int) -> int:
        rc: int = self._export_bpf(ctx, fd)
        return rc

    def export_pfc(self, ctx: int, fd: int) -> int:
        rc: int = self._export_pfc(ctx, fd)
        return rc


def _bind(function: _FuncPointer, restype: type | None, argtypes: list[type]) -> _FuncPointer:
    function.restype = restype
    function.argtypes = argtypes
    return function


_library: _LibSeccomp | None = None


def _libseccomp() -> _LibSeccomp:
    """Load libseccomp.so.2 once (about 1 ms); Unsupported when it is not installed."""
    global _library
    if _library is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
            _library = _LibSeccomp(lib)
        except (OSError, AttributeError) as error:
            raise Unsupported(
                "load libseccomp",
                "libseccomp.so.2",
                detail=str(error),
                hint="install libseccomp2 (>= 2.5)",
            ) from error
    return _library


# --- compiled-filter cache -----------------------------------------------------------------
#
# libseccomp 2.5 turns rules into BPF inside seccomp_load: 10-13 ms for a Docker-style
# three-architecture profile, on every container start. The BPF depends only on the profile
# and the library version, so it is generated once, stored (root-owned folder, atomic
# rename) under a SHA-256 of both, and later loaded with seccomp(2) directly.

_SECCOMP_SET_MODE_FILTER = 1
_FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
_SECCOMP_SYSCALL = {"x86_64": 317, "aarch64": 277}


class BpfFilter:
    """A generated BPF program, installed with seccomp(2) (no libseccomp involved)."""

    __slots__ = ("_fprog", "_program", "_syscall", "flags")

    def __init__(self, program: bytes, flags: int) -> None:
        if not program or len(program) % 8:
            raise InvalidArgument("load seccomp filter", "", detail="not a BPF program")
        self._program = ctypes.create_string_buffer(program, len(program))
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        self._fprog = struct.pack("HxxxxxxP", len(program) // 8,
                                  ctypes.addressof(self._program))
        self.flags = flags
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long

    def load(self) -> None:
        """Install the filter (imports nothing, touches no file)."""
        number = _SECCOMP_SYSCALL.get(os.uname().machine, 317)
        if self._syscall(ctypes.c_long(number), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                         ctypes.c_long(self.flags), self._fprog) < 0:
            err = ctypes.get_errno()
            hint = ""
            if err in (_ERRNO_EPERM, _ERRNO_EACCES):
                hint = "set no_new_privs first, or keep CAP_SYS_ADMIN until the filter is loaded"
            raise TsuboError("seccomp load", errno=err, hint=hint)

    def release(self) -> None:
        """Nothing to free (kept for symmetry with SeccompFilter)."""


def compile_filter_cached(profile: SeccompProfile, cache_dir: str) -> BpfFilter:
    """:func:`compile_filter`, with the generated BPF cached in *cache_dir*."""
    try:
        import _sha256 as sha  # type: ignore[import-not-found]  # builtin; hashlib: ~5 ms
    except ImportError:  # pragma: no cover
        import hashlib as sha
    flags = 0
    for name in profile.flags:
        flags |= _FILTER_FLAGS[name]
    text = f"{_library_version()}\n{profile_text(profile)}"
    path = f"{cache_dir}/{sha.sha256(text.encode()).hexdigest()}.bpf"
    try:
        with open(path, "rb") as cached:
            return BpfFilter(cached.read(), flags)
    except FileNotFoundError:
        pass
    compiled = compile_filter(profile)
    try:
        program = compiled.export_bpf()
    finally:
        compiled.release()
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        temp = f"{path}.{os.getpid()}.tmp"
        with open(temp, "wb") as target:
            target.write(program)
        os.rename(temp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return BpfFilter(program, flags)


def _library_version() -> str:
    """libseccomp's version (its syscall tables decide which names resolve)."""
    _libseccomp()
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    major, minor, micro = lib.seccomp_version().contents
    return f"libseccomp {major}.{minor}.{micro} {os.uname().machine}"


def profile_text(profile: SeccompProfile) -> str:
    """Everything of *profile* that decides the filter, as one JSON text (the cache key)."""
    from tsubo import jsonwire

    return jsonwire.dumps([
        profile.default_action, profile.default_errno_ret, list(profile.architectures),
        list(profile.flags),
        [[list(rule.names), rule.action, rule.errno_ret,
          [[arg.index, arg.value, arg.value_two, arg.op] for arg in rule.args]]
         for rule in profile.syscalls],
    ])
