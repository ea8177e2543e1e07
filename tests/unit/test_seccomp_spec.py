"""linux.seccomp without loading anything: its validation (tsubo.oci.seccomp), and the
filters tsubo.kernel.seccomp builds from it.

Filters are built with the real libseccomp and inspected through export_bpf/export_pfc;
nothing is installed in this process, so no root is needed.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tsubo.errors import InvalidArgument, Unsupported, WrongState
from tsubo.kernel import seccomp
from tsubo.kernel.seccomp import SeccompFilter
from tsubo.oci import seccomp as oci_seccomp
from tsubo.oci.seccomp import parse_seccomp

TESTS = pathlib.Path(__file__).resolve().parent.parent
DATA = TESTS / "data"
SRC = TESTS.parent / "src"

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}
SOCK_FILTER_SIZE = 8


def profile(*rules: dict[str, Any], **top: Any) -> dict[str, object]:
    spec: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}
    spec.update(top)
    return spec


def rule(*names: str, action: str = "SCMP_ACT_ERRNO", **fields: Any) -> dict[str, Any]:
    return {"names": list(names), "action": action, **fields}


def compile_filter(spec: dict[str, object]) -> SeccompFilter:
    """config -> filter, as the runtime does it: validated once, then built."""
    return seccomp.compile_filter(parse_seccomp(spec))


@pytest.fixture
def compiled() -> Any:
    """compile_filter, releasing every filter made at the end of the test."""
    filters: list[SeccompFilter] = []

    def compile_(spec: dict[str, object]) -> SeccompFilter:
        made = compile_filter(spec)
        filters.append(made)
        return made

    yield compile_
    for made in filters:
        made.release()


# --- bad input names the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "where", "bad"),
    [
        (
            profile(rule("mkdir"), rule("rmdir", action="SCMP_ACT_EXPLODE")),
            "linux.seccomp.syscalls[1].action",
            "SCMP_ACT_EXPLODE",
        ),
        ({"defaultAction": "ALLOW"}, "linux.seccomp.defaultAction", "ALLOW"),
        (
            profile(rule("personality", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_XOR"}])),
            "linux.seccomp.syscalls[0].args[0].op",
            "SCMP_CMP_XOR",
        ),
        (
            profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]),
            "linux.seccomp.architectures[1]",
            "SCMP_ARCH_VAX",
        ),
        (
            profile(architectures=["x86_64"]),
            "linux.seccomp.architectures[0]",
            "x86_64",
        ),
        (
            profile(flags=["SECCOMP_FILTER_FLAG_FAST"]),
            "linux.seccomp.flags[0]",
            "SECCOMP_FILTER_FLAG_FAST",
        ),
    ],
)
def test_unknown_names_are_invalid_and_located(
    spec: dict[str, object], where: str, bad: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_seccomp(spec)
    assert caught.value.object == where
    assert bad in str(caught.value)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({}, "linux.seccomp.defaultAction"),
        ([], "linux.seccomp"),
        (profile(rule()), "linux.seccomp.syscalls[0].names"),
        (profile(rule("")), "linux.seccomp.syscalls[0].names[0]"),
        (profile({"names": ["mkdir"]}), "linux.seccomp.syscalls[0].action"),
        (profile(syscalls={"names": ["mkdir"]}), "linux.seccomp.syscalls"),
        # errnoRet only goes with ERRNO and TRACE (the spec: the runtime MUST fail)
        (
            profile(rule("mkdir", action="SCMP_ACT_KILL", errnoRet=1)),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
            "linux.seccomp.defaultErrnoRet",
        ),
        (profile(rule("mkdir", errnoRet=-1)), "linux.seccomp.syscalls[0].errnoRet"),
        (profile(rule("mkdir", errnoRet=1 << 16)), "linux.seccomp.syscalls[0].errnoRet"),
        (profile(rule("mkdir", errnoRet=True)), "linux.seccomp.syscalls[0].errnoRet"),
        (
            profile(rule("mkdir", args=[{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}])),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            profile(rule("mkdir", args=[{"index": 0, "op": "SCMP_CMP_EQ"}])),
            "linux.seccomp.syscalls[0].args[0].value",
        ),
        (
            profile(rule("mkdir", args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}])),
            "linux.seccomp.syscalls[0].args[0].value",
        ),
        # keys we do not know are errors, not silently ignored settings
        (
            profile(rule("mkdir", includes={"caps": ["CAP_SYS_ADMIN"]})),
            "linux.seccomp.syscalls[0].includes",
        ),
        (profile(archMap=[]), "linux.seccomp.archMap"),
        (
            profile(rule("mkdir", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "x": 1}])),
            "linux.seccomp.syscalls[0].args[0].x",
        ),
    ],
)
def test_malformed_profiles_are_invalid_and_located(spec: Any, where: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_seccomp(spec)
    assert caught.value.object == where


def test_docker_profile_keys_get_a_hint() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_seccomp(profile(archMap=[]))
    assert "Docker" in caught.value.hint


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction"),
        (
            profile(rule("mkdir"), rule("openat", action="SCMP_ACT_NOTIFY")),
            "linux.seccomp.syscalls[1].action",
        ),
        (profile(listenerPath="/run/agent.sock"), "linux.seccomp.listenerPath"),
        (profile(listenerMetadata="MKNOD=/dev/null"), "linux.seccomp.listenerMetadata"),
        (profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), "linux.seccomp.flags[0]"),
    ],
)
def test_seccomp_agents_are_unsupported(spec: dict[str, object], where: str) -> None:
    with pytest.raises(Unsupported) as caught:
        parse_seccomp(spec)
    assert caught.value.object == where
    assert "\n" not in str(caught.value)


# --- what gets built --------------------------------------------------------------------


def test_small_profile_exports_bpf(compiled: Any) -> None:
    made = compiled(profile(rule("mkdir", "mkdirat", errnoRet=38)))
    bpf = made.export_bpf()
    assert bpf
    assert len(bpf) % SOCK_FILTER_SIZE == 0
    assert made.rule_count == 2
    assert made.skipped_syscalls == ()
    assert "ERRNO(38)" in made.export_pfc()


def test_unknown_syscall_names_are_skipped(compiled: Any) -> None:
    made = compiled(profile(rule("no_such_syscall", "mkdir", "also_not_a_syscall")))
    assert made.skipped_syscalls == ("no_such_syscall", "also_not_a_syscall")
    assert made.rule_count == 1
    assert '"mkdir"' in made.export_pfc()


def test_syscalls_of_architectures_not_in_the_filter_are_skipped(compiled: Any) -> None:
    # socketcall is an x86 (32-bit) syscall: kept only when SCMP_ARCH_X86 is in the filter.
    native_only = compiled(profile(rule("socketcall"), architectures=["SCMP_ARCH_X86_64"]))
    with_x86 = compiled(
        profile(rule("socketcall"), architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    )
    if native_only.skipped_syscalls == ():
        pytest.skip("this machine's native architecture has socketcall")
    assert native_only.skipped_syscalls == ("socketcall",)
    assert with_x86.skipped_syscalls == ()


def test_rule_with_the_default_action_is_skipped(compiled: Any) -> None:
    made = compiled(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                rule("mkdir", errnoRet=38),  # same as the default: skipped
                rule("rmdir"),  # ERRNO(EPERM) differs from ERRNO(ENOSYS): kept
                rule("getpid", action="SCMP_ACT_ALLOW"),
            ],
        }
    )
    assert made.rule_count == 2
    pfc = made.export_pfc()
    assert '"mkdir"' not in pfc
    assert '"rmdir"' in pfc


def test_conditions_on_the_same_argument_become_separate_rules(compiled: Any) -> None:
    same_index = [
        {"index": 0, "value": 5, "op": "SCMP_CMP_LT"},
        {"index": 0, "value": 9, "op": "SCMP_CMP_GT"},
    ]
    different_indices = [
        {"index": 0, "value": 5, "op": "SCMP_CMP_LT"},
        {"index": 1, "value": 9, "op": "SCMP_CMP_GT"},
    ]
    assert compiled(profile(rule("personality", args=same_index))).rule_count == 2
    assert compiled(profile(rule("personality", args=different_indices))).rule_count == 1


def test_masked_eq_and_64_bit_values(compiled: Any) -> None:
    made = compiled(
        profile(
            rule(
                "clone",
                args=[{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            ),
            rule("personality", args=[{"index": 0, "value": (1 << 64) - 1, "op": "SCMP_CMP_NE"}]),
        )
    )
    assert made.rule_count == 2
    assert made.export_bpf()


@pytest.mark.parametrize(
    "flag",
    ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
)
def test_flags_compile(compiled: Any, flag: str) -> None:
    assert compiled(profile(rule("mkdir"), flags=[flag])).export_bpf()


@pytest.mark.parametrize(
    "action",
    [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
    ],
)
def test_every_action_compiles(compiled: Any, action: str) -> None:
    assert compiled(profile(rule("mkdir", action=action))).rule_count == 1


def test_released_filter_refuses_work() -> None:
    made = compile_filter(profile(rule("mkdir")))
    made.release()
    made.release()  # harmless
    with pytest.raises(WrongState):
        made.load()
    with pytest.raises(WrongState):
        made.export_bpf()


def test_docker_like_default_profile_compiles(compiled: Any) -> None:
    spec = json.loads((DATA / "seccomp_default.json").read_text())
    made = compiled(spec)
    # names newer than libseccomp 2.5.4 (mseal) or foreign to x86 (recv) are skipped
    assert "mseal" in made.skipped_syscalls
    assert "recv" in made.skipped_syscalls
    assert "read" not in made.skipped_syscalls
    assert made.rule_count > 300
    assert len(made.export_bpf()) > 1000


def test_kernel_knows_every_name_the_spec_allows() -> None:
    supported = {name for name in oci_seccomp.SECCOMP_ACTIONS if name != "SCMP_ACT_NOTIFY"}
    assert set(seccomp.ACTIONS) == supported
    assert set(seccomp.OPERATORS) == set(oci_seccomp.SECCOMP_OPERATORS)
    assert set(seccomp.FLAG_ATTRIBUTES) == set(oci_seccomp.SECCOMP_FLAGS)


def test_cache_key_is_the_whole_profile() -> None:
    one = parse_seccomp(profile(rule("mkdir", errnoRet=38)))
    assert seccomp.profile_text(one) == seccomp.profile_text(
        parse_seccomp(profile(rule("mkdir", errnoRet=38))))
    for other in (profile(rule("mkdir", errnoRet=39)), profile(rule("mkdir", "rmdir")),
                  profile(rule("mkdir", errnoRet=38), flags=["SECCOMP_FILTER_FLAG_LOG"])):
        assert seccomp.profile_text(parse_seccomp(other)) != seccomp.profile_text(one)


def test_parsed_profile_is_frozen() -> None:
    parsed = parse_seccomp(profile(rule("mkdir")))
    with pytest.raises(AttributeError):
        parsed.default_action = "SCMP_ACT_KILL"
    assert parsed.syscalls[0].errno_ret is None
    assert parsed == parse_seccomp(profile(rule("mkdir")))


def test_import_stays_light() -> None:
    """Importing the module pulls in no slow standard-library module (typing, json, re, ...)."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import tsubo.kernel.seccomp\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    new = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert {"typing", "dataclasses", "enum", "re", "json"} & set(new) == set()
