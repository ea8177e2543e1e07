"""tsubo.kernel.seccomp against the real kernel: filters are loaded and syscalls tried.

Loading a seccomp filter cannot be undone, so every filter is loaded in a forked child.
As the runtime does, the parent compiles the filter (before "pivot_root") and the child
only calls ``load()``. The child sets no_new_privs first, so most of these tests would pass
unprivileged (tests/conftest.py runs tests/kernel as root only); the ones passing
``no_new_privs=False`` check the privileged path, where the kernel wants CAP_SYS_ADMIN.
The child reports what it saw as JSON over a pipe and ends with ``os._exit``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pathlib
import resource
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tsubo.kernel.seccomp import compile_filter
from tsubo.oci.seccomp import parse_seccomp

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"

PR_SET_NO_NEW_PRIVS = 38  # linux/prctl.h
CLONE_NEWNS = 0x00020000  # linux/sched.h
NR_CLONE3_X86_64 = 435  # asm/unistd_64.h

libc = ctypes.CDLL(None, use_errno=True)
libc.personality.argtypes = [ctypes.c_ulong]
libc.personality.restype = ctypes.c_int
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
libc.syscall.restype = ctypes.c_long


class ChildResult:
    """How the child ended, and the report it sent before."""

    def __init__(self, status: int, report: dict[str, Any]) -> None:
        self.status = status
        self.report = report

    @property
    def exit_code(self) -> int | None:
        return os.waitstatus_to_exitcode(self.status) if os.WIFEXITED(self.status) else None

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None


def run_under_filter(
    spec: dict[str, object],
    body: Callable[[], dict[str, Any]],
    *,
    no_new_privs: bool = True,
    before_load: Callable[[], None] | None = None,
    then_exec: list[str] | None = None,
) -> ChildResult:
    """Compile in this process; in a child: load, run body, report, then exit or exec."""
    compiled = compile_filter(parse_seccomp(spec))
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            code = 0
            try:
                os.close(read_end)
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS dumps core
                if no_new_privs and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
                if before_load is not None:
                    before_load()
                compiled.load()
                report = json.dumps(body()).encode()
                os.write(write_end, report)
                os.close(write_end)
                if then_exec is not None:
                    os.execv(then_exec[0], then_exec)
            except BaseException as error:
                os.write(write_end, json.dumps({"child error": repr(error)}).encode())
                code = 125
            finally:
                os._exit(code)
        os.close(write_end)
        write_end = -1
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        compiled.release()
    raw = b"".join(chunks)
    return ChildResult(status, json.loads(raw) if raw else {})


def errno_of(call: Callable[[], object]) -> int:
    """0 when the call succeeds, else its errno."""
    try:
        call()
    except OSError as error:
        return error.errno or -1
    return 0


def libc_errno(result: int) -> int:
    return ctypes.get_errno() if result == -1 else 0


def allow_all_but(*rules: dict[str, Any], **top: Any) -> dict[str, object]:
    spec: dict[str, object] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}
    spec.update(top)
    return spec


# --- (1) an errno rule -----------------------------------------------------------------


def test_errno_rule_fails_only_that_syscall(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "made-under-seccomp"
    spec = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    )

    def body() -> dict[str, Any]:
        return {"mkdir": errno_of(lambda: os.mkdir(target)), "pid": os.getpid()}

    result = run_under_filter(spec, body)
    assert result.exit_code == 0, result.report
    assert result.report["mkdir"] == errno.ENOSYS
    assert result.report["pid"] > 0
    assert not target.exists()
    os.mkdir(target)  # the filter stayed in the child


@pytest.mark.parametrize(
    "flag",
    ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
)
def test_filter_flags_load(tmp_path: pathlib.Path, flag: str) -> None:
    spec = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        flags=[flag],
    )
    result = run_under_filter(spec, lambda: {"mkdir": errno_of(lambda: os.mkdir(tmp_path / "d"))})
    assert result.exit_code == 0, result.report
    assert result.report["mkdir"] == errno.EXDEV


# --- (2) argument filters --------------------------------------------------------------

QUERY_PERSONALITY = 0xFFFFFFFF  # personality(0xffffffff) only reads the persona
PER_LINUX = 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([{"index": 0, "value": QUERY_PERSONALITY, "op": "SCMP_CMP_NE"}], id="ne"),
        # Same argument twice: runc (and we) add one rule per condition, so they OR.
        pytest.param(
            [
                {"index": 0, "value": QUERY_PERSONALITY, "op": "SCMP_CMP_LT"},
                {"index": 0, "value": QUERY_PERSONALITY, "op": "SCMP_CMP_GT"},
            ],
            id="same-index-split",
        ),
    ],
)
def test_argument_filter_allows_only_the_matching_value(args: list[dict[str, Any]]) -> None:
    spec = allow_all_but(
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EOPNOTSUPP,
            "args": args,
        }
    )

    def body() -> dict[str, Any]:
        query = libc.personality(QUERY_PERSONALITY)
        query_errno = libc_errno(query)
        set_linux = libc.personality(PER_LINUX)
        return {"query": query, "query_errno": query_errno, "set_errno": libc_errno(set_linux)}

    result = run_under_filter(spec, body)
    assert result.exit_code == 0, result.report
    assert result.report["query"] >= 0
    assert result.report["query_errno"] == 0
    assert result.report["set_errno"] == errno.EOPNOTSUPP


def test_allow_list_with_argument_rules_under_default_errno() -> None:
    """Docker's personality pattern: default ERRNO, personality allowed for listed values."""
    spec = json.loads((DATA / "seccomp_default.json").read_text())

    def body() -> dict[str, Any]:
        allowed = libc.personality(QUERY_PERSONALITY)
        allowed_errno = libc_errno(allowed)
        denied = libc.personality(0x0400000)  # ADDR_NO_RANDOMIZE: not in the list
        return {"allowed_errno": allowed_errno, "denied_errno": libc_errno(denied)}

    result = run_under_filter(spec, body)
    assert result.exit_code == 0, result.report
    assert result.report == {"allowed_errno": 0, "denied_errno": errno.EPERM}


# --- (3) killing actions ---------------------------------------------------------------


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_killing_actions_end_the_child_with_sigsys(action: str) -> None:
    spec = allow_all_but({"names": ["getppid"], "action": action})

    def body() -> dict[str, Any]:
        return {"ppid": os.getppid()}  # never returns

    result = run_under_filter(spec, body)
    assert result.signal == signal.SIGSYS, (result.status, result.report)
    assert result.report == {}


# --- (4) a realistic default profile ---------------------------------------------------


def test_docker_like_profile_runs_a_program_and_refuses_namespaces() -> None:
    spec = json.loads((DATA / "seccomp_default.json").read_text())

    def body() -> dict[str, Any]:
        unshare = libc_errno(libc.unshare(CLONE_NEWNS))
        mount = libc_errno(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
        report = {"unshare": unshare, "mount": mount}
        if os.uname().machine == "x86_64":
            clone3 = libc.syscall(ctypes.c_long(NR_CLONE3_X86_64), None, ctypes.c_size_t(0))
            report["clone3"] = libc_errno(clone3)
        return report

    result = run_under_filter(spec, body, then_exec=["/bin/true"])
    assert result.exit_code == 0, result.report  # /bin/true ran under the filter
    assert result.report["unshare"] == errno.EPERM
    assert result.report["mount"] == errno.EPERM
    if "clone3" in result.report:
        assert result.report["clone3"] == errno.ENOSYS  # so that libc falls back to clone


def test_docker_like_profile_denies_by_default() -> None:
    spec = json.loads((DATA / "seccomp_default.json").read_text())
    keyctl = 250  # x86_64 keyctl: not in the allow-list

    def body() -> dict[str, Any]:
        return {"keyctl": libc_errno(libc.syscall(ctypes.c_long(keyctl), 0, 0))}

    if os.uname().machine != "x86_64":
        pytest.skip("syscall number is x86_64's")
    result = run_under_filter(spec, body)
    assert result.report == {"keyctl": errno.EPERM}


# --- the privileged path ---------------------------------------------------------------


def test_loads_without_no_new_privs_and_without_a_filesystem(tmp_path: pathlib.Path) -> None:
    """As root, load() needs no no_new_privs (CTL_NNP is off) and no file: it runs after a
    chroot into an empty directory, standing in for pivot_root."""
    empty = tmp_path / "empty-root"
    empty.mkdir()
    status_fd = -1

    def enter_empty_root() -> None:
        nonlocal status_fd
        # opened in the child (/proc/self is resolved at open), read again after the load
        status_fd = os.open("/proc/self/status", os.O_RDONLY)
        os.chroot(empty)
        os.chdir("/")

    def body() -> dict[str, Any]:
        os.lseek(status_fd, 0, os.SEEK_SET)
        fields = dict(
            line.split(":\t", 1)
            for line in os.read(status_fd, 65536).decode().splitlines()
            if ":\t" in line
        )
        return {
            "NoNewPrivs": fields["NoNewPrivs"].strip(),
            "Seccomp": fields["Seccomp"].strip(),
            "mkdir": errno_of(lambda: os.mkdir("/x")),
        }

    spec = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    )
    result = run_under_filter(spec, body, no_new_privs=False, before_load=enter_empty_root)
    assert result.exit_code == 0, result.report
    assert result.report == {"NoNewPrivs": "0", "Seccomp": "2", "mkdir": errno.ENOSYS}
    assert not (empty / "x").exists()


def test_loading_unprivileged_without_no_new_privs_is_a_clear_error() -> None:
    """Without CAP_SYS_ADMIN or no_new_privs the kernel refuses (EACCES); as root, the child
    first becomes nobody, which drops every capability."""

    def drop_privileges() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

    result = run_under_filter(
        allow_all_but(), dict, no_new_privs=False, before_load=drop_privileges
    )
    assert result.exit_code == 125
    error = result.report["child error"]
    assert "seccomp load" in error
    assert "EACCES" in error
    assert "no_new_privs" in error  # the hint
