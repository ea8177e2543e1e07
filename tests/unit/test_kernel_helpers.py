"""tsubo.kernel.helpers (the one program runner), the hooks built on it, and
tsubo.kernel.procfs.write (the one /proc and /sys writer): real programs, real files, no root."""

from __future__ import annotations

import errno
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tsubo.errors import TsuboError, Unsupported
from tsubo.kernel import helpers, procfs
from tsubo.oci.runtime_spec import Hook
from tsubo.runtime.hooks import run_hook

SRC = Path(__file__).resolve().parents[2] / "src"


def test_stdin_goes_in_and_both_outputs_come_back() -> None:
    big = b"x" * (1 << 20)  # more than a pipe holds: memfds cannot deadlock
    result = helpers.run(["sh", "-c", "cat; echo oops >&2"], stdin=big)
    assert result.ok and result.exit_code == 0
    assert result.stdout == big
    assert result.stderr_text() == "oops\n"


def test_failure_names_the_program_and_the_last_stderr_line() -> None:
    result = helpers.run(["sh", "-c", "echo first >&2; echo last >&2; exit 3"],
                         operation="do thing")
    assert not result.ok and result.exit_code == 3
    with pytest.raises(helpers.HelperError) as caught:
        result.check(hint="try again")
    error = caught.value
    assert error.operation == "do thing"
    assert error.object.startswith("sh -c")
    assert error.status == 3 and error.stderr_line == "last"
    assert error.detail == "exit status 3: last"
    assert error.program.endswith("/sh")
    assert "\n" not in str(error) and "(hint: try again)" in str(error)


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        ("/dev/stdin:1:1-4: Error: Could not process rule: No such file\nlist x\n^^^^\n",
         "Error: Could not process rule: No such file"),
        ("iptables: Bad rule.\n\n", "iptables: Bad rule."),
        ("", ""),
    ],
)
def test_error_line(stderr: str, line: str) -> None:
    assert helpers.error_line(stderr) == line


def test_timeout_kills_and_says_so() -> None:
    started = time.monotonic()
    result = helpers.run(["sleep", "5"], timeout=0.2, operation="wait")
    assert time.monotonic() - started < 2
    assert result.timed_out and not result.ok
    assert result.exit_code == -9
    assert result.error().detail == "timed out after 0.2 s and was killed"


def test_env_is_exactly_the_given_one_and_defaults_to_the_tool_env() -> None:
    given = helpers.run(["/usr/bin/env"], env={"A": "1"})
    assert given.text() == "A=1\n"
    default = dict(line.split("=", 1) for line in helpers.run(["/usr/bin/env"]).text().split())
    assert default["LC_ALL"] == "C"
    assert "/usr/sbin" in default["PATH"].split(":")


def test_missing_and_unstartable_programs(tmp_path: Path) -> None:
    with pytest.raises(Unsupported) as missing:
        helpers.run(["no-such-program-tsubo"])
    assert "not found" in str(missing.value)
    not_executable = tmp_path / "prog"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(helpers.HelperError) as caught:
        helpers.run(["prog"], program=str(not_executable), operation="start prog")
    assert caught.value.errno == errno.EACCES
    assert caught.value.operation == "start prog"


def test_which_caches_and_takes_absolute_paths() -> None:
    found = helpers.which("sh")
    assert found is not None and found.startswith("/")
    assert helpers.which("sh") == found
    assert helpers.which("/bin/sh") == "/bin/sh"
    assert helpers.which("/no/such/sh") is None


def test_import_stays_light() -> None:
    code = ("import sys; before = set(sys.modules); import tsubo.kernel.helpers, "
            "tsubo.runtime.hooks, tsubo.kernel.procfs; new = set(sys.modules) - before; "
            "print(sorted(new & {'subprocess', 'selectors', 'threading', 'signal', 'typing', "
            "'json', 're', 'enum'}))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path[:0] = "
                          f"[{str(SRC)!r}]; {code}"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- hooks ------------------------------------------------------------------------------------


def hook(script: str, **fields: object) -> Hook:
    return Hook({"path": "/bin/sh", "args": ["sh", "-c", script], **fields}, "hooks.prestart[0]")


def test_hook_gets_state_on_stdin_and_its_own_env(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_hook("prestart[0]", hook(f'cat > {out}; echo "$X" >> {out}',
                                 env=["X=from-hook"]), '{"id": "c1"}')
    assert out.read_text() == '{"id": "c1"}from-hook\n'


def test_failing_hook_names_phase_program_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(TsuboError) as caught:
        run_hook("createRuntime[1]", hook("echo cannot do it >&2; exit 2"), "{}")
    message = str(caught.value)
    assert message == "run hook createRuntime[1] /bin/sh: exit status 2: cannot do it"


def test_hook_timeout(tmp_path: Path) -> None:
    with pytest.raises(TsuboError, match="timed out after 1 s"):
        run_hook("prestart[0]", hook("exec sleep 5", timeout=1), "{}")


# --- the /proc and /sys writer ----------------------------------------------------------------


def test_write_is_one_write_and_refuses_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "setting"
    target.write_text("")
    procfs.write(str(target), "42")
    assert target.read_text() == "42"
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(TsuboError) as caught:
        procfs.write(str(link), "1", operation="set thing", hint="look")
    assert caught.value.errno == errno.ELOOP
    assert caught.value.object == str(link)
    assert str(caught.value) == f"set thing {link}: ELOOP (hint: look)"


def test_write_lets_the_caller_shape_the_error(tmp_path: Path) -> None:
    def wrap(path: str, value: str, error: OSError) -> TsuboError:
        return Unsupported("set cgroup", path, errno=error.errno or 0, detail=f"write {value!r}")

    with pytest.raises(Unsupported) as caught:
        procfs.write(str(tmp_path / "missing"), "max", wrap=wrap)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.detail == "write 'max'"


def test_write_each_is_one_open_and_names_the_value_that_failed(tmp_path: Path) -> None:
    target = tmp_path / "rules"
    target.write_text("")
    procfs.write_each(str(target), ["a", "b", "c"])  # a regular file appends; cgroupfs
    assert target.read_text() == "abc"  # files take each write(2) as one setting

    def wrap(path: str, value: str, error: OSError) -> TsuboError:
        return TsuboError("set", path, errno=error.errno or 0, detail=f"write {value!r}")

    current = Path("/proc/self/oom_score_adj").read_text().strip()  # rewritten unchanged
    with pytest.raises(TsuboError) as caught:
        procfs.write_each("/proc/self/oom_score_adj", [current, "not a number"], wrap=wrap)
    assert caught.value.detail == "write 'not a number'"
    assert caught.value.errno == errno.EINVAL


def test_ipv4_forwarding_is_the_ip_forward_setting() -> None:
    """Read from /proc/net/snmp (a lookup that does not grow with the containers), the
    same value as /proc/sys/net/ipv4/ip_forward."""
    from tsubo.kernel.procfs import ipv4_forwarding

    with open("/proc/sys/net/ipv4/ip_forward", "rb") as setting:
        assert ipv4_forwarding() is (setting.read().strip() == b"1")
