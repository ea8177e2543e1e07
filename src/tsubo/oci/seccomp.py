"""``linux.seccomp`` as frozen values, validated once, with the runtime spec's vocabulary.

Imported by ``runtime_spec.py`` only for configs that have a ``linux.seccomp`` (see
:mod:`tsubo.oci`). Names stay the spec's (``SCMP_ACT_ERRNO``, ``SCMP_ARCH_X86_64``,
``SCMP_CMP_EQ``): ``kernel/seccomp.py`` maps them to libseccomp's values. Nothing is
ignored silently: unknown keys, actions, operators, architectures and flags are
InvalidArgument naming the JSON path (keys of Docker's profile format get a hint); seccomp
agents (``SCMP_ACT_NOTIFY``, ``listenerPath``, ``listenerMetadata``) are Unsupported.
"""

from __future__ import annotations

from tsubo.errors import Unsupported
from tsubo.oci import Frozen, fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.oci import JSONObject

_init = object.__setattr__

SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
#: the only actions that carry an errno (the spec: a runtime MUST fail on errnoRet for others)
SECCOMP_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                     "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
#: the spec's list (as of libseccomp 2.5.0) plus the architectures libseccomp 2.6 added; one
#: the installed libseccomp cannot resolve is Unsupported when the filter is built
SECCOMP_ARCHITECTURES = frozenset(
    "SCMP_ARCH_" + name
    for name in (
        *("X86", "X86_64", "X32", "ARM", "AARCH64"),
        *("MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64", "MIPSEL64N32"),
        *("PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64", "RISCV64"),
        *("LOONGARCH64", "M68K", "SH", "SHEB"),
    )
)
#: seccomp(2) filter flags tsubo honours
SECCOMP_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
#: known flags it cannot honour: only meaningful with SCMP_ACT_NOTIFY, and libseccomp 2.5 has
#: no attribute for it (SCMP_FLTATR_CTL_WAITKILL arrived in 2.6)
SECCOMP_UNSUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)
_SECCOMP_KEYS = frozenset(("defaultAction", "defaultErrnoRet", "architectures", "flags",
                           "listenerPath", "listenerMetadata", "syscalls"))
_SYSCALL_KEYS = frozenset(("names", "action", "errnoRet", "args", "comment"))
_ARG_KEYS = frozenset(("index", "value", "valueTwo", "op"))
#: keys of Docker's profile format, which is not the runtime-spec format: they change which
#: rules apply, so a profile carrying them must be converted first (Docker does that)
_DOCKER_PROFILE_KEYS = frozenset(("archMap", "includes", "excludes"))
_MAX_SYSCALL_ARGS = 6  # struct seccomp_data.args[6]
_UINT64_MAX = (1 << 64) - 1
_ERRNO_MAX = 0xFFFF  # the kernel keeps 16 bits of errno (SECCOMP_RET_DATA)


class SeccompArg(Frozen):
    """One condition of a rule: ``args[index] OP value`` (``value_two``: MASKED_EQ's value)."""

    __slots__ = ("index", "op", "value", "value_two")
    index: int
    value: int
    value_two: int
    op: str

    def __init__(self, index: int, value: int, value_two: int, op: str) -> None:
        _init(self, "index", index)
        _init(self, "value", value)
        _init(self, "value_two", value_two)
        _init(self, "op", op)


class SeccompRule(Frozen):
    """One ``syscalls[]`` entry: ``errno_ret`` None when unset (ERRNO and TRACE: EPERM)."""

    __slots__ = ("action", "args", "errno_ret", "names")
    names: tuple[str, ...]
    action: str
    errno_ret: int | None
    args: tuple[SeccompArg, ...]

    def __init__(self, names: tuple[str, ...], action: str, errno_ret: int | None = None,
                 args: tuple[SeccompArg, ...] = ()) -> None:
        _init(self, "names", names)
        _init(self, "action", action)
        _init(self, "errno_ret", errno_ret)
        _init(self, "args", args)


class Seccomp(Frozen):
    """``linux.seccomp``: names as in the spec (``SCMP_ARCH_X86_64``, ``SCMP_ACT_ERRNO``)."""

    __slots__ = ("architectures", "default_action", "default_errno_ret", "flags", "syscalls")
    default_action: str
    default_errno_ret: int | None
    architectures: tuple[str, ...]
    flags: tuple[str, ...]
    syscalls: tuple[SeccompRule, ...]

    def __init__(self, default_action: str, default_errno_ret: int | None = None,
                 architectures: tuple[str, ...] = (), flags: tuple[str, ...] = (),
                 syscalls: tuple[SeccompRule, ...] = ()) -> None:
        _init(self, "default_action", default_action)
        _init(self, "default_errno_ret", default_errno_ret)
        _init(self, "architectures", architectures)
        _init(self, "flags", flags)
        _init(self, "syscalls", syscalls)


def parse_seccomp(data: object, path: str = "linux.seccomp") -> Seccomp:
    """Validate a ``linux.seccomp`` object into :class:`Seccomp`. Nothing is ignored
    silently: unknown keys, actions, operators, architectures and flags are InvalidArgument
    naming the JSON path; seccomp agents (``SCMP_ACT_NOTIFY``, ``listenerPath``,
    ``listenerMetadata``) are Unsupported."""
    if not isinstance(data, dict):
        raise fail(path, f"expected an object, got {_type_name(data)}")
    _check_keys(data, _SECCOMP_KEYS, path)
    for key in ("listenerPath", "listenerMetadata"):
        if data.get(key) not in (None, ""):
            raise Unsupported("load config", f"{path}.{key}", detail="seccomp agents "
                              "(SCMP_ACT_NOTIFY listeners) are not supported yet")
    if "defaultAction" not in data:
        raise fail(f"{path}.defaultAction", "missing (it is required)")
    default_action, default_errno = _seccomp_action(
        data["defaultAction"], data.get("defaultErrnoRet"), f"{path}.defaultAction",
        f"{path}.defaultErrnoRet")
    architectures = []
    for index, arch in enumerate(_array(data.get("architectures"), f"{path}.architectures")):
        if arch not in SECCOMP_ARCHITECTURES:
            raise fail(f"{path}.architectures[{index}]",
                        f"unknown architecture {_quote(arch)}", hint="e.g. SCMP_ARCH_X86_64")
        architectures.append(str(arch))
    flags = []
    for index, flag in enumerate(_array(data.get("flags"), f"{path}.flags")):
        where = f"{path}.flags[{index}]"
        if flag in SECCOMP_UNSUPPORTED_FLAGS:
            raise Unsupported("load config", where, detail=f"flag {flag} is not supported")
        if flag not in SECCOMP_FLAGS:
            raise fail(where, f"unknown flag {_quote(flag)}",
                        hint="one of " + ", ".join(SECCOMP_FLAGS))
        flags.append(str(flag))
    rules = tuple(_seccomp_rule(entry, f"{path}.syscalls[{index}]")
                  for index, entry in enumerate(_array(data.get("syscalls"),
                                                       f"{path}.syscalls")))
    return Seccomp(default_action, default_errno, tuple(architectures), tuple(flags), rules)


def _seccomp_rule(entry: object, path: str) -> SeccompRule:
    if not isinstance(entry, dict):
        raise fail(path, f"expected an object, got {_type_name(entry)}")
    _check_keys(entry, _SYSCALL_KEYS, path)
    names = _array(entry.get("names"), f"{path}.names")
    if not names:
        raise fail(f"{path}.names", "must list at least one syscall")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise fail(f"{path}.names[{index}]", f"expected a syscall name, got {_quote(name)}")
    if "action" not in entry:
        raise fail(f"{path}.action", "missing (it is required)")
    action, errno_ret = _seccomp_action(entry["action"], entry.get("errnoRet"),
                                        f"{path}.action", f"{path}.errnoRet")
    args = []
    for index, arg in enumerate(_array(entry.get("args"), f"{path}.args")):
        where = f"{path}.args[{index}]"
        if not isinstance(arg, dict):
            raise fail(where, f"expected an object, got {_type_name(arg)}")
        _check_keys(arg, _ARG_KEYS, where)
        op = arg.get("op")
        if op not in SECCOMP_OPERATORS:
            raise fail(f"{where}.op", f"unknown operator {_quote(op)}",
                        hint="one of " + ", ".join(SECCOMP_OPERATORS))
        args.append(SeccompArg(
            _uint(arg.get("index"), f"{where}.index", _MAX_SYSCALL_ARGS - 1, required=True),
            _uint(arg.get("value"), f"{where}.value", _UINT64_MAX, required=True),
            _uint(arg.get("valueTwo"), f"{where}.valueTwo", _UINT64_MAX), str(op)))
    return SeccompRule(tuple(names), action, errno_ret, tuple(args))


def _seccomp_action(name: object, errno_ret: object, where: str,
                    errno_where: str) -> tuple[str, int | None]:
    if name not in SECCOMP_ACTIONS:
        raise fail(where, f"unknown action {_quote(name)}",
                    hint="one of " + ", ".join(SECCOMP_ACTIONS))
    if name == "SCMP_ACT_NOTIFY":
        raise Unsupported("load config", where, detail="SCMP_ACT_NOTIFY needs a seccomp "
                          "agent, which is not supported yet")
    if errno_ret is None:
        return str(name), None
    if name not in SECCOMP_ERRNO_ACTIONS:
        raise fail(errno_where,
                    f"{name} returns no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    return str(name), _uint(errno_ret, errno_where, _ERRNO_MAX)


def _uint(value: object, where: str, maximum: int, *, required: bool = False) -> int:
    if value is None:
        if required:
            raise fail(where, "missing (it is required)")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise fail(where, f"expected an integer from 0 to {maximum}, got {_quote(value)}")
    return value


def _array(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(where, f"expected an array, got {_type_name(value)}")
    return value


def _check_keys(data: JSONObject, known: frozenset[str], where: str) -> None:
    for key in data:
        if key not in known:
            hint = ("this is Docker's profile format; convert it to the runtime-spec format "
                    "first") if key in _DOCKER_PROFILE_KEYS else ""
            raise fail(f"{where}.{key}", "unknown key", hint=hint)


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return repr(value)
