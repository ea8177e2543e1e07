"""tsubo.cli.argv (the runc-style flag grammar) and tsubo-runtime's pure paths, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsubo import OCI_VERSION, __version__
from tsubo.cli import runtime
from tsubo.cli.argv import FLAG, LIST, VALUE, FlagError, Option, parse, usage
from tsubo.errors import InvalidArgument

OPTIONS = (
    Option("bundle,b", VALUE, "path to the bundle", "."),
    Option("pid-file", VALUE, "pid file"),
    Option("detach,d", FLAG, "detach"),
    Option("tty,t", FLAG, "tty"),
    Option("env,e", LIST, "environment"),
)


def values(*args: str, stop_at_positional: bool = True) -> tuple[dict[str, object], list[str]]:
    parsed = parse(args, OPTIONS, "run", stop_at_positional=stop_at_positional)
    return parsed.values, parsed.positional


# --- argv -------------------------------------------------------------------------------------


def test_defaults() -> None:
    parsed = parse([], OPTIONS, "run")
    assert parsed.values == {"bundle": ".", "pid_file": "", "detach": False, "tty": False,
                             "env": []}
    assert parsed.positional == []
    assert parsed.text("bundle") == "."
    assert parsed.flag("detach") is False
    assert parsed.texts("env") == []


@pytest.mark.parametrize("args", [
    ["--bundle=/b", "web"], ["--bundle", "/b", "web"], ["-bundle", "/b", "web"],
    ["-bundle=/b", "web"], ["-b", "/b", "web"], ["-b=/b", "web"], ["--b", "/b", "web"],
])
def test_value_flag_spellings(args: list[str]) -> None:
    parsed = parse(args, OPTIONS, "run")
    assert parsed.text("bundle") == "/b"
    assert parsed.positional == ["web"]


def test_value_may_look_like_a_flag_or_be_empty() -> None:
    assert values("--pid-file", "-x", "web")[0]["pid_file"] == "-x"
    assert values("--pid-file=", "web")[0]["pid_file"] == ""
    assert values("--bundle=a=b")[0]["bundle"] == "a=b"


@pytest.mark.parametrize(("args", "detach"), [
    (["--detach"], True), (["-d"], True), (["-detach"], True), (["--detach=true"], True),
    (["--detach=1"], True), (["--detach=false"], False), (["--detach=0"], False),
    (["-d", "--detach=false"], False), ([], False),
])
def test_boolean_flag_spellings(args: list[str], detach: bool) -> None:
    assert parse(args, OPTIONS, "run").flag("detach") is detach


def test_boolean_flag_does_not_take_the_next_argument() -> None:
    assert values("--detach", "false") == (
        {"bundle": ".", "pid_file": "", "detach": True, "tty": False, "env": []}, ["false"])


def test_boolean_flag_with_a_bad_value() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(["--detach=yes"], OPTIONS, "run")
    assert caught.value.object == "--detach=yes"
    assert caught.value.detail == "expects true or false"


def test_repeated_list_flag_collects_in_order() -> None:
    parsed = parse(["-e", "A=1", "--env=B=2", "--env", "C=3", "web"], OPTIONS, "exec")
    assert parsed.texts("env") == ["A=1", "B=2", "C=3"]
    assert parsed.positional == ["web"]


def test_list_defaults_are_not_shared_between_parses() -> None:
    parse(["-e", "A=1"], OPTIONS, "exec")
    assert parse([], OPTIONS, "exec").texts("env") == []


def test_repeated_value_flag_keeps_the_last() -> None:
    assert values("-b", "one", "--bundle=two")[0]["bundle"] == "two"


def test_double_dash_ends_flags() -> None:
    assert values("-d", "--", "--bundle", "x")[1] == ["--bundle", "x"]
    assert values("--")[1] == []


def test_single_dash_is_positional() -> None:
    assert values("-", "-d")[1] == ["-", "-d"]


def test_stop_at_first_positional_keeps_the_command_intact() -> None:
    parsed = parse(["-t", "web", "sh", "-c", "echo -e x", "--detach"], OPTIONS, "exec")
    assert parsed.positional == ["web", "sh", "-c", "echo -e x", "--detach"]
    assert parsed.flag("tty") is True
    assert parsed.flag("detach") is False


def test_without_stop_at_positional_flags_may_follow() -> None:
    flags, positional = values("web", "--detach", "other", "-b", "x", stop_at_positional=False)
    assert positional == ["web", "other"]
    assert flags["detach"] is True
    assert flags["bundle"] == "x"


@pytest.mark.parametrize("flag", ["--bundle", "-b", "--env", "-e", "--pid-file"])
def test_a_value_flag_at_the_end_is_an_error(flag: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(["-d", flag], OPTIONS, "run")
    assert caught.value.object == flag
    assert caught.value.detail == "needs a value"


@pytest.mark.parametrize("flag", ["--bogus", "-x", "--bundles=y", "--detach-now", "--=x"])
def test_unknown_flag_is_named(flag: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse([flag, "web"], OPTIONS, "run")
    assert caught.value.operation == "run"
    assert caught.value.object == flag
    assert str(caught.value) == f"run {flag}: unknown flag (hint: 'run --help' lists the flags)"


def test_parsed_accessors_are_typed() -> None:
    parsed = parse(["-e", "A=1"], OPTIONS, "exec")
    assert parsed.text("env") == ""  # not a string
    assert parsed.texts("bundle") == []  # not a list
    returned = parsed.texts("env")
    returned.append("mutated")
    assert parsed.texts("env") == ["A=1"]


def test_option_key_and_defaults() -> None:
    option = Option("no-new-keyring,k", FLAG, "help")
    assert (option.key, option.names, option.default) == (
        "no_new_keyring", ["no-new-keyring", "k"], False)
    assert Option("x", LIST, "").default == []
    assert Option("x", VALUE, "").default == ""


def test_usage_lists_every_flag() -> None:
    lines = usage(OPTIONS).splitlines()
    assert len(lines) == len(OPTIONS)
    assert lines[0].split() == ["--bundle,", "-b", "value", "path", "to", "the", "bundle"]
    assert lines[2].split()[:3] == ["--detach,", "-d", "detach"]


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._", min_size=1, max_size=10)


@given(st.lists(st.tuples(st.sampled_from(["-e", "--env", "-env"]), NAMES), max_size=6),
       st.lists(NAMES, max_size=4))
def test_property_env_flags_then_positionals(envs: list[tuple[str, str]],
                                             rest: list[str]) -> None:
    args = [part for pair in envs for part in pair] + rest
    parsed = parse(args, OPTIONS, "exec")
    assert parsed.texts("env") == [value for _, value in envs]
    assert parsed.positional == rest


# --- tsubo-runtime main(), pure paths ---------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out == f"tsubo-runtime version {__version__}\nspec: {OCI_VERSION}\n"
    assert err == ""
    assert runtime.main(["-v"]) == 0


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: tsubo-runtime [global flags] <command>")
    for name in runtime.COMMANDS:
        assert f"   {name} " in out
    assert "--root value" in out
    assert err == ""


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main([]) == 1
    assert capsys.readouterr().out.startswith("usage: tsubo-runtime")


def test_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["exec", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tsubo-runtime exec [flags] <container-id> [command args...]")
    assert "--env, -e value" in out


def test_unknown_command_is_one_stderr_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["frobnicate", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("tsubo-runtime: tsubo-runtime frobnicate: unknown command "
                   "(hint: 'tsubo-runtime --help' lists the commands)\n")


def test_unknown_global_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["--bogus", "state", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tsubo-runtime: tsubo-runtime --bogus: unknown flag")


def test_unknown_command_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "delete", "--frce", "web"]) == 1
    assert capsys.readouterr().err == (
        "tsubo-runtime: delete --frce: unknown flag (hint: 'delete --help' lists the flags)\n")


def test_missing_container_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "state"]) == 1
    assert capsys.readouterr().err == (
        "tsubo-runtime: state: needs a container ID: state <container-id>\n")


def test_too_many_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "start", "a", "b", "c"]) == 1
    assert capsys.readouterr().err == (
        "tsubo-runtime: start b c: unexpected argument(s): start <container-id>\n")


def test_state_of_a_missing_container(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "state", "ghost"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "tsubo-runtime: load container ghost: container does not exist\n"


def test_bad_container_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "state", "../etc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tsubo-runtime: check container id '../etc': may only hold")
    assert list(tmp_path.iterdir()) == []


def test_bad_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime.main(["--log-format", "xml", "list"]) == 1
    assert capsys.readouterr().err == (
        "tsubo-runtime: tsubo-runtime --log-format xml: must be text or json\n")


def test_errors_also_go_to_the_log_file(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    root = tmp_path / "root"
    assert runtime.main(["--root", str(root), "--log", str(log), "--log-format=json",
                         "state", "ghost"]) == 1
    capsys.readouterr()
    line = log.read_text()
    assert line.startswith('{"level":"error","msg":"load container ghost: container does not '
                           'exist","time":"')
    assert line.endswith('Z"}\n')


def test_list_of_an_empty_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path / "none"), "list", "--format", "json"]) == 0
    assert capsys.readouterr().out == "[]\n"
    assert runtime.main(["--root", str(tmp_path / "none"), "list", "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_kill_with_a_bad_signal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert runtime.main(["--root", str(tmp_path), "kill", "web", "SIGNOPE"]) == 1
    assert capsys.readouterr().err == "tsubo-runtime: parse signal SIGNOPE: unknown signal\n"


# --- Docker's habits (the tsubo engine CLI: interspersed, grouped, attached values) ---------

DOCKER = (
    Option("force,f", FLAG, "force"),
    Option("interactive,i", FLAG, "stdin"),
    Option("tty,t", FLAG, "tty"),
    Option("detach,d", FLAG, "detach"),
    Option("time", VALUE, "seconds"),
    Option("env,e", LIST, "environment"),
    Option("publish,p", LIST, "ports"),
)


def docker(*args: str, interspersed: bool = True) -> tuple[dict[str, object], list[str]]:
    parsed = parse(args, DOCKER, "rm", stop_at_positional=not interspersed,
                   combine_short=True, help_command="tsubo rm")
    return parsed.values, parsed.positional


@pytest.mark.parametrize("args", [["web", "-f"], ["-f", "web"], ["--force", "web"],
                                  ["web", "--force=true"]])
def test_docker_flags_anywhere_among_positionals(args: list[str]) -> None:
    values, positional = docker(*args)
    assert (values["force"], positional) == (True, ["web"])


def test_docker_flags_after_several_positionals_and_a_value() -> None:
    values, positional = docker("x1", "--time", "0", "x2", "-e", "A=1")
    assert (values["time"], values["env"], positional) == ("0", ["A=1"], ["x1", "x2"])


def test_docker_double_dash_ends_flags_even_interspersed() -> None:
    values, positional = docker("web", "--", "-f", "--time")
    assert (values["force"], positional) == (False, ["web", "-f", "--time"])


@pytest.mark.parametrize(("group", "expected"), [
    ("-itd", {"interactive": True, "tty": True, "detach": True}),
    ("-dit", {"interactive": True, "tty": True, "detach": True}),
    ("-ti", {"interactive": True, "tty": True, "detach": False}),
])
def test_docker_grouped_short_flags(group: str, expected: dict[str, bool]) -> None:
    values, _ = docker(group, "web")
    assert {key: values[key] for key in expected} == expected


@pytest.mark.parametrize(("args", "key", "value"), [
    (["-eA=1"], "env", ["A=1"]), (["-e=A=1"], "env", ["A=1"]),
    (["-dp8080:80"], "publish", ["8080:80"]), (["-dp", "8080:80"], "publish", ["8080:80"]),
    (["--env=A=1"], "env", ["A=1"]),
])
def test_docker_attached_values(args: list[str], key: str, value: list[str]) -> None:
    assert docker(*args, "web")[0][key] == value


def test_docker_stop_at_first_positional_keeps_the_command() -> None:
    values, positional = docker("-it", "img", "sh", "-c", "ls -f", "-d", interspersed=False)
    assert positional == ["img", "sh", "-c", "ls -f", "-d"]
    assert values["detach"] is False


@pytest.mark.parametrize(("args", "detail"), [
    (["web", "--bogus"], "unknown flag"), (["web", "-x"], "unknown flag"),
    (["-fx", "web"], "unknown flag"), (["web", "--time"], "needs a value"),
    (["--force=maybe"], "expects true or false"),
])
def test_docker_flag_errors_are_flag_errors(args: list[str], detail: str) -> None:
    with pytest.raises(FlagError) as caught:
        docker(*args)
    assert caught.value.detail == detail
    assert isinstance(caught.value, InvalidArgument)
    if detail == "unknown flag":
        assert caught.value.hint == "'tsubo rm --help' lists the flags"
