"""tsubo.engine.options: Docker's `run` flags, parsed and validated. Pure; no root needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsubo.engine import options as opts
from tsubo.engine.options import (
    RestartPolicy,
    RunOptions,
    TmpfsSpec,
    VolumeSpec,
    merge_tmpfs_options,
    parse_capability,
    parse_cpu_shares,
    parse_cpus,
    parse_env,
    parse_env_file,
    parse_labels,
    parse_memory,
    parse_memory_swap,
    parse_pids_limit,
    parse_restart,
    parse_security_opt,
    parse_signal_name,
    parse_size,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
)
from tsubo.errors import InvalidArgument, TsuboError

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1024", 1024), ("0", 0), ("100k", 100 * K), ("100K", 100 * K), ("512m", 512 * M),
    ("512M", 512 * M), ("1g", G), ("1G", G), ("2t", 2 * T), ("1.5g", G + G // 2),
    ("0.5k", 512), ("10b", 10), ("64mb", 64 * M), ("64MiB", 64 * M), (" 8m ", 8 * M),
    ("1 g", G), ("1p", 1024**5),
])
def test_parse_size_good(text: str, expected: int) -> None:
    assert parse_size(text, "--memory") == expected


@pytest.mark.parametrize("text", [
    "", " ", "abc", "-1", "-512m", "1x", "m", "1.g", ".", "1..5g", "1e3", "0x10", "1,5g",
    "g1", "12 34", "١٢",
])
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_size(text, "--shm-size")
    assert caught.value.operation == "parse --shm-size"
    assert caught.value.detail == "expected a size like 512m or 2g"


def test_parse_size_message_is_one_line_naming_flag_and_value() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_size("abc", "--memory")
    assert str(caught.value) == "parse --memory abc: expected a size like 512m or 2g"
    with pytest.raises(InvalidArgument) as caught:
        parse_size("", "--memory")
    assert str(caught.value) == 'parse --memory "": expected a size like 512m or 2g'


def test_parse_memory_minimum_is_6m() -> None:
    assert parse_memory("6m") == 6 * M
    assert parse_memory("32m") == 32 * M
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        parse_memory("4m")
    with pytest.raises(InvalidArgument, match=r"parse --memory abc"):
        parse_memory("abc")


def test_parse_memory_swap() -> None:
    assert parse_memory_swap("-1", None) == -1
    assert parse_memory_swap("-1", 32 * M) == -1
    assert parse_memory_swap("64m", 32 * M) == 64 * M
    assert parse_memory_swap("32m", 32 * M) == 32 * M  # equal: no swap at all
    assert parse_memory_swap("0", None) == 0  # Docker: 0 is "unset"
    with pytest.raises(InvalidArgument, match="needs --memory"):
        parse_memory_swap("64m", None)
    with pytest.raises(InvalidArgument, match=r"must be at least --memory \(33554432 bytes\)"):
        parse_memory_swap("16m", 32 * M)
    with pytest.raises(InvalidArgument, match="parse --memory-swap"):
        parse_memory_swap("-2", 32 * M)
    with pytest.raises(InvalidArgument, match="parse --memory-swap"):
        parse_memory_swap("lots", 32 * M)


# --- cpus, shares, pids -------------------------------------------------------------------


def test_parse_cpus_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opts, "available_cpus", lambda: 4)
    assert parse_cpus("1.5") == 1.5
    assert parse_cpus("0.01") == 0.01
    assert parse_cpus(".5") == 0.5
    assert parse_cpus("4") == 4.0
    assert parse_cpus(" 2 ") == 2.0


@pytest.mark.parametrize("text", ["-1", "abc", "", "1e2", "inf", "nan", "1.", "1,5", "0x1"])
def test_parse_cpus_malformed(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_cpus(text)
    assert caught.value.operation == "parse --cpus"
    assert caught.value.detail == "expected a number of CPUs like 1.5"


@pytest.mark.parametrize("text", ["0", "0.0", "0.001", "4.5", "5"])
def test_parse_cpus_out_of_range(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(opts, "available_cpus", lambda: 4)
    with pytest.raises(InvalidArgument) as caught:
        parse_cpus(text)
    assert str(caught.value) == f"parse --cpus {text}: must be from 0.01 to 4 (the CPUs available)"


def test_available_cpus_is_this_process_affinity() -> None:
    assert opts.available_cpus() == len(os.sched_getaffinity(0))


def test_parse_cpu_shares_and_pids_limit() -> None:
    assert parse_cpu_shares("512") == 512
    for bad in ("1", "262145", "-5", "x", ""):
        with pytest.raises(InvalidArgument, match="parse --cpu-shares"):
            parse_cpu_shares(bad)
    assert parse_pids_limit("100") == 100
    assert parse_pids_limit("0") is None
    assert parse_pids_limit("-1") is None
    for bad in ("-2", "x", "1.5"):
        with pytest.raises(InvalidArgument, match="parse --pids-limit"):
            parse_pids_limit(bad)


# --- ulimits ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("nofile=1024:2048", ("RLIMIT_NOFILE", 1024, 2048)),
    ("nproc=512", ("RLIMIT_NPROC", 512, 512)),
    ("core=0", ("RLIMIT_CORE", 0, 0)),
    ("memlock=-1", ("RLIMIT_MEMLOCK", -1, -1)),
    ("memlock=1024:-1", ("RLIMIT_MEMLOCK", 1024, -1)),
    ("NOFILE=10:10", ("RLIMIT_NOFILE", 10, 10)),
    ("rttime=5:5", ("RLIMIT_RTTIME", 5, 5)),
    ("sigpending=7", ("RLIMIT_SIGPENDING", 7, 7)),
])
def test_parse_ulimit_good(text: str, expected: tuple[str, int, int]) -> None:
    assert parse_ulimit(text) == expected


def test_every_docker_ulimit_name_is_an_oci_rlimit() -> None:
    from tsubo.kernel.flags import RLIMIT_NUMBERS

    assert set(opts.ULIMIT_NAMES) == {
        "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
        "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}
    assert set(opts.ULIMIT_NAMES.values()) <= set(RLIMIT_NUMBERS)


@pytest.mark.parametrize(("text", "detail"), [
    ("nofile=2:1", "the soft limit must not exceed the hard limit"),
    ("nofile=-1:1024", "the soft limit must not exceed the hard limit"),
    ("nofile", "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048"),
    ("bogus=1", "unknown ulimit 'bogus'"),
    ("as=1", "unknown ulimit 'as'"),
    ("nofile=x", "limits must be whole numbers or -1 (unlimited)"),
    ("nofile=1:", "limits must be whole numbers or -1 (unlimited)"),
    ("nofile=-2", "limits must be whole numbers or -1 (unlimited)"),
    ("nofile=1.5", "limits must be whole numbers or -1 (unlimited)"),
])
def test_parse_ulimit_bad(text: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_ulimit(text)
    assert caught.value.operation == "parse --ulimit"
    assert caught.value.object == text
    assert caught.value.detail == detail


# --- restart ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name", "retries"), [
    ("no", "no", 0), ("", "no", 0), ("always", "always", 0),
    ("unless-stopped", "unless-stopped", 0), ("on-failure", "on-failure", 0),
    ("on-failure:3", "on-failure", 3), ("on-failure:0", "on-failure", 0),
])
def test_parse_restart_good(text: str, name: str, retries: int) -> None:
    assert parse_restart(text) == RestartPolicy(name, retries)


@pytest.mark.parametrize(("text", "detail"), [
    ("on-failure:x", "the maximum retry count must be a whole number >= 0"),
    ("on-failure:-1", "the maximum retry count must be a whole number >= 0"),
    ("on-failure:", "the maximum retry count must be a whole number >= 0"),
    ("always:3", "a maximum retry count cannot be used with restart policy 'always'"),
    ("no:1", "a maximum retry count cannot be used with restart policy 'no'"),
    ("sometimes", "unknown restart policy 'sometimes'"),
    ("ALWAYS", "unknown restart policy 'ALWAYS'"),
])
def test_parse_restart_bad(text: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_restart(text)
    assert caught.value.operation == "parse --restart"
    assert caught.value.detail == detail


def test_restart_policy_text() -> None:
    assert str(RestartPolicy("on-failure", 3)) == "on-failure:3"
    assert str(RestartPolicy("on-failure", 0)) == "on-failure"
    assert str(RestartPolicy()) == "no"


# --- volumes ------------------------------------------------------------------------------


def test_parse_volume_bind() -> None:
    spec = parse_volume("/host/dir:/ctr")
    assert (spec.source, spec.destination, spec.read_only, spec.is_named) == (
        "/host/dir", "/ctr", False, False)
    assert spec.propagation == "rprivate"
    assert spec.is_bind and not spec.is_anonymous
    assert spec.mount_options() == ["rbind", "rprivate"]


def test_parse_volume_bind_read_only_with_propagation() -> None:
    spec = parse_volume("/host:/ctr:ro,rslave")
    assert spec.read_only
    assert spec.propagation == "rslave"
    assert spec.options == ["ro", "rslave"]
    assert spec.mount_options() == ["rbind", "ro", "rslave"]
    assert not parse_volume("/host:/ctr:rw").read_only


def test_parse_volume_named_and_anonymous() -> None:
    named = parse_volume("data:/var/lib/data:ro")
    assert (named.source, named.destination, named.is_named, named.read_only) == (
        "data", "/var/lib/data", True, True)
    assert not named.is_bind
    assert parse_volume("relative:/x").is_named  # a bare word is a volume name (Docker)
    assert parse_volume("my_vol.1-a:/x").source == "my_vol.1-a"
    assert parse_volume("cache:/x:nocopy").options == ["nocopy"]
    anonymous = parse_volume("/ctr")
    assert (anonymous.source, anonymous.destination, anonymous.is_named) == ("", "/ctr", False)
    assert anonymous.is_anonymous


def test_parse_volume_selinux_and_consistency_modes_are_accepted() -> None:
    assert parse_volume("/a:/b:z").options == ["z"]
    assert parse_volume("/a:/b:Z,ro").read_only
    assert parse_volume("/a:/b:cached").options == ["cached"]


def test_parse_volume_cleans_paths() -> None:
    spec = parse_volume("/host//dir/./:/ctr//sub/")
    assert (spec.source, spec.destination) == ("/host/dir", "/ctr/sub")


#: moby volume/local/local.go validateName, with the name as Go's %q writes it
DOCKER_BAD_VOLUME_NAME = (
    '{} includes invalid characters for a local volume name, only '
    '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
    'use absolute path')


@pytest.mark.parametrize(("text", "detail"), [
    ("/a:b", "the container path 'b' must be absolute"),
    ("./rel:/x", DOCKER_BAD_VOLUME_NAME.format('"./rel"')),
    ("rel/dir:/x", DOCKER_BAD_VOLUME_NAME.format('"rel/dir"')),
    ("a:/x", "volume name is too short, names should be at least two alphanumeric "
             "characters"),
    ("_x:/x", DOCKER_BAD_VOLUME_NAME.format('"_x"')),
    ("/a:/b:bogus", "unknown mode 'bogus'"),
    ("/a:/b:ro,rw", "conflicting modes in 'ro,rw'"),
    ("/a:/b:shared,rslave", "conflicting modes in 'shared,rslave'"),
    ("/a:/b:nocopy", "nocopy is only for named volumes"),
    ("vol:/b:rshared", "a propagation mode is only for host directories"),
    ("/a:/b/../c", "the container path '/b/../c' must not contain '..'"),
    ("/a/../b:/c", "the host path '/a/../b' must not contain '..'"),
    ("/a:/", "the container path cannot be '/'"),
    ("relative", "the container path 'relative' must be absolute"),
    ("/ctr:ro", "an anonymous volume takes no mode"),
    ("/a:/b:ro:x", "expected [SOURCE:]CONTAINER_PATH[:MODE]"),
    ("/a::/b", "expected [SOURCE:]CONTAINER_PATH[:MODE]"),
    ("", "expected [SOURCE:]CONTAINER_PATH[:MODE]"),
])
def test_parse_volume_bad(text: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_volume(text)
    assert caught.value.operation == "parse --volume"
    assert caught.value.detail == detail


def test_parse_volume_relative_source_hints_at_absolute_path() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_volume("./data:/x")
    assert caught.value.detail.endswith(
        "If you intended to pass a host directory, use absolute path")


# --- tmpfs --------------------------------------------------------------------------------


def test_parse_tmpfs() -> None:
    assert parse_tmpfs("/run") == TmpfsSpec("/run", [])
    spec = parse_tmpfs("/run:rw,size=64m,mode=1777")
    assert (spec.destination, spec.options) == ("/run", ["rw", "size=64m", "mode=1777"])
    assert parse_tmpfs("/tmp:exec,uid=1000,gid=1000,size=50%").options == [
        "exec", "uid=1000", "gid=1000", "size=50%"]


def test_tmpfs_mount_options_merge_like_docker() -> None:
    assert parse_tmpfs("/run").mount_options() == ["noexec", "nosuid", "nodev", "rprivate"]
    assert parse_tmpfs("/run:rw,size=64m,mode=1777").mount_options() == [
        "noexec", "nosuid", "nodev", "rprivate", "rw", "size=64m", "mode=1777"]
    # a user's word replaces the default of the same kind
    assert parse_tmpfs("/run:exec,suid,shared").mount_options() == [
        "nodev", "exec", "suid", "shared"]
    assert merge_tmpfs_options(["size=1m", "ro", "size=2m", "defaults", "rw"]) == [
        "size=2m", "rw"]


@pytest.mark.parametrize(("text", "detail"), [
    ("run", "the container path 'run' must be absolute"),
    ("/run:bogus", "unknown tmpfs option 'bogus'"),
    ("/run:color=red", "unknown tmpfs option 'color=red'"),
    ("/run:size=", "unknown tmpfs option 'size='"),
    ("/run:mode=999", "mode '999' must be octal, e.g. 1777"),
    ("/run:size=big", "size 'big' must be like 64m or 50%"),
    ("/a/../b", "the container path '/a/../b' must not contain '..'"),
])
def test_parse_tmpfs_bad(text: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_tmpfs(text)
    assert caught.value.operation == "parse --tmpfs"
    assert caught.value.detail == detail


# --- env and labels -----------------------------------------------------------------------


def test_parse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "hello")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert parse_env(["A=1", "B=", "C=x=y", "FROM_HOST", "NOT_SET_ANYWHERE"]) == [
        "A=1", "B=", "C=x=y", "FROM_HOST=hello"]
    with pytest.raises(InvalidArgument, match=r"parse --env =x: expected KEY=VALUE or KEY"):
        parse_env(["=x"])


def test_parse_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "hello")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    env_file = tmp_path / "app.env"
    env_file.write_bytes(
        b"\xef\xbb\xbf# a comment\n"
        b"A=1\n"
        b"\n"
        b"   # indented comment\n"
        b"  B=two words  \r\n"
        b"C=\"quoted\"\n"
        b"D=\n"
        b"E=x=y\n"
        b"FROM_HOST\n"
        b"NOT_SET_ANYWHERE\n"
        b"F=#not a comment")
    assert parse_env_file(str(env_file)) == [
        "A=1", "B=two words  ", 'C="quoted"', "D=", "E=x=y", "FROM_HOST=hello",
        "F=#not a comment"]


@pytest.mark.parametrize(("content", "detail"), [
    (b"=value\n", "line 1 has no variable name"),
    (b"A=1\nMY VAR=2\n", "line 2: variable 'MY VAR' contains whitespace"),
    (b"A=1\nB=\xff\n", "line 2 is not valid UTF-8"),
])
def test_parse_env_file_bad(tmp_path: Path, content: bytes, detail: str) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_bytes(content)
    with pytest.raises(InvalidArgument) as caught:
        parse_env_file(str(env_file))
    assert caught.value.operation == "read --env-file"
    assert caught.value.detail == detail


def test_parse_env_file_missing(tmp_path: Path) -> None:
    with pytest.raises(TsuboError) as caught:
        parse_env_file(str(tmp_path / "nope.env"))
    assert caught.value.errno == 2
    assert str(caught.value) == f"read --env-file {tmp_path}/nope.env: ENOENT"


def test_parse_labels() -> None:
    assert parse_labels(["a=1", "b", "c=x=y", "a=2"]) == {"a": "2", "b": "", "c": "x=y"}
    with pytest.raises(InvalidArgument, match="parse --label"):
        parse_labels(["=x"])


# --- capabilities, signals, security options ----------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("NET_ADMIN", "CAP_NET_ADMIN"), ("net_admin", "CAP_NET_ADMIN"),
    ("CAP_NET_ADMIN", "CAP_NET_ADMIN"), ("cap_sys_admin", "CAP_SYS_ADMIN"),
    ("ALL", "ALL"), ("all", "ALL"), ("bpf", "CAP_BPF"),
])
def test_parse_capability(text: str, expected: str) -> None:
    assert parse_capability(text) == expected


@pytest.mark.parametrize("text", ["NET_ADMINS", "", "CAP_", "CAP_ALL", "root"])
def test_parse_capability_unknown(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_capability(text)
    assert caught.value.operation == "parse --cap-add/--cap-drop"
    assert caught.value.detail.startswith("unknown capability CAP_")


@pytest.mark.parametrize(("text", "expected"), [
    ("SIGTERM", "SIGTERM"), ("term", "SIGTERM"), ("15", "SIGTERM"), ("SIGKILL", "SIGKILL"),
    ("usr1", "SIGUSR1"), ("9", "SIGKILL"), ("SIGQUIT", "SIGQUIT"),
])
def test_parse_signal_name(text: str, expected: str) -> None:
    assert parse_signal_name(text) == expected


def test_parse_signal_name_bad() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_signal_name("SIGNOPE")
    assert str(caught.value) == "parse --stop-signal SIGNOPE: unknown signal"
    with pytest.raises(InvalidArgument, match=r"parse --stop-signal 0: must be 1\.\."):
        parse_signal_name("0")


def test_parse_security_opt(tmp_path: Path) -> None:
    assert parse_security_opt("no-new-privileges") == ("no-new-privileges", "true")
    assert parse_security_opt("no-new-privileges:true") == ("no-new-privileges", "true")
    assert parse_security_opt("no-new-privileges=false") == ("no-new-privileges", "false")
    assert parse_security_opt("seccomp=unconfined") == ("seccomp", "unconfined")
    assert parse_security_opt("seccomp=/etc/p.json") == ("seccomp", "/etc/p.json")
    assert parse_security_opt("seccomp:/etc/p.json") == ("seccomp", "/etc/p.json")
    assert parse_security_opt("apparmor=unconfined") == ("apparmor", "unconfined")
    assert parse_security_opt("label=disable") == ("label", "disable")
    for bad in ("no-new-privileges=maybe", "seccomp", "bogus=1", ""):
        with pytest.raises(InvalidArgument, match="parse --security-opt"):
            parse_security_opt(bad)


# --- RunOptions ---------------------------------------------------------------------------


def test_run_options_defaults() -> None:
    options = RunOptions()
    assert options.image == "" and options.rootfs == ""
    assert options.command == [] and options.entrypoint is None
    assert options.env == [] and options.workdir == "" and options.user == ""
    assert options.hostname == "" and options.read_only is False
    assert options.tmpfs == [] and options.volumes == []
    assert (options.memory, options.memory_swap, options.cpus, options.cpu_shares,
            options.pids_limit) == (None, None, None, None, None)
    assert options.ulimits == [] and options.cap_add == [] and options.cap_drop == []
    assert options.no_new_privileges is False and options.seccomp == "default"
    assert (options.init, options.tty, options.interactive, options.remove) == (
        False, False, False, False)
    assert options.labels == {}
    assert options.stop_signal == "" and options.stop_timeout == 10  # "": the image's, else TERM
    assert options.restart == RestartPolicy("no", 0)
    assert options.network == "none"


def test_run_options_defaults_are_not_shared() -> None:
    first, second = RunOptions(), RunOptions()
    first.env.append("A=1")
    first.labels["x"] = "y"
    assert second.env == [] and second.labels == {}


def test_run_options_json_round_trip() -> None:
    from tsubo import jsonwire

    options = RunOptions(
        image="busybox:latest", command=["sh", "-c", "echo hi"], entrypoint=[],
        env=["A=1"], workdir="/srv", user="1000:1000", hostname="web", read_only=True,
        tmpfs=[parse_tmpfs("/run:size=64m")], volumes=[parse_volume("data:/data:ro"),
                                                        parse_volume("/h:/c")],
        memory=32 * M, memory_swap=64 * M, cpus=1.5, cpu_shares=512, pids_limit=100,
        ulimits=[("RLIMIT_NOFILE", 1024, 2048)], cap_add=["CAP_NET_ADMIN"],
        cap_drop=["ALL"], no_new_privileges=True, seccomp="unconfined", init=True, tty=True,
        interactive=True, labels={"a": "b"}, stop_signal="SIGQUIT", stop_timeout=3,
        restart=RestartPolicy("on-failure", 5), network="bridge", remove=True)
    data = options.to_json()
    assert set(data) == set(RunOptions.__slots__)
    assert data["restart"] == {"name": "on-failure", "max_retries": 5}
    assert data["ulimits"] == [["RLIMIT_NOFILE", 1024, 2048]]
    stored = jsonwire.loads(jsonwire.dumps(data))
    assert isinstance(stored, dict)
    back = RunOptions.from_json(stored)
    assert back == options
    assert back.entrypoint == []
    assert back.volumes[0] == VolumeSpec("data", "/data", read_only=True, is_named=True,
                                         options=["ro"])
    assert back.ulimits == [("RLIMIT_NOFILE", 1024, 2048)]
    assert back.restart == RestartPolicy("on-failure", 5)


def test_run_options_json_text() -> None:
    options = RunOptions(image="x", command=["a"], volumes=[parse_volume("/h:/c:ro")])
    text = options.to_json_text()
    assert isinstance(text, str) and "\n" not in text
    assert RunOptions.from_json_text(text) == options
    assert RunOptions.from_json_text(text.encode()) == options
    with pytest.raises(InvalidArgument, match="load run options: not valid JSON"):
        RunOptions.from_json_text("{nope")
    with pytest.raises(InvalidArgument, match="load run options: expected a JSON object"):
        RunOptions.from_json_text("[]")


def test_run_options_from_json_defaults_and_errors() -> None:
    assert RunOptions.from_json({"image": "x"}) == RunOptions(image="x")
    assert RunOptions.from_json({"entrypoint": None}).entrypoint is None
    with pytest.raises(InvalidArgument, match="load run options colour: unknown field"):
        RunOptions.from_json({"colour": "red"})
    with pytest.raises(InvalidArgument, match="load run options: malformed record"):
        RunOptions.from_json({"volumes": [{"destination": "/x"}]})
    with pytest.raises(InvalidArgument, match="load run options: malformed record"):
        RunOptions.from_json({"ulimits": [["RLIMIT_NOFILE", 1]]})


# --- the default network ------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "network", "networks"), [
    (None, "bridge", ["bridge"]), ("", "bridge", ["bridge"]), (" none ", "none", []),
    ("host", "host", []), ("web", "bridge", ["web"]), ("bridge", "bridge", ["bridge"]),
])
def test_no_network_flag_gives_the_engines_default_network(
        monkeypatch: pytest.MonkeyPatch, setting: str | None, network: str,
        networks: list[str]) -> None:
    """Without ``--network``: Docker's default network ``bridge``, unless the engine
    setting ``$TSUBO_DEFAULT_NETWORK`` names another mode or network (dockerd's ``"bridge":
    "none"``); ``--network`` itself always wins. CLI and API build the same options."""
    if setting is None:
        monkeypatch.delenv(opts.DEFAULT_NETWORK_ENV, raising=False)
    else:
        monkeypatch.setenv(opts.DEFAULT_NETWORK_ENV, setting)
    options = opts.build_run_options({"rootfs": "/r"})
    assert (options.network, options.networks) == (network, networks)
    assert opts.build_run_options({"rootfs": "/r", "network": ["none"]}).network == "none"
    assert opts.build_run_options({"rootfs": "/r", "networks": "other"}).networks == ["other"]


# --- the run flags issue 13 left out -------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("/dev/zero", ["/dev/zero", "/dev/zero", "rwm"]),
    ("/dev/zero:/dev/z", ["/dev/zero", "/dev/z", "rwm"]),
    ("/dev/zero:r", ["/dev/zero", "/dev/zero", "r"]),
    ("/dev/zero:mw", ["/dev/zero", "/dev/zero", "mw"]),
    ("/dev/zero:/dev/z:rw", ["/dev/zero", "/dev/z", "rw"]),
    ("/dev//zero:/dev/./z", ["/dev/zero", "/dev/z", "rwm"]),
])
def test_parse_device(text: str, expected: list[str]) -> None:
    assert opts.parse_device(text) == expected


@pytest.mark.parametrize(("text", "detail"), [
    ("", "bad format"), (":/dev/z", "bad format"), ("/a:/b:r:w", "bad format"),
    ("/dev/zero:/dev/z:rwx", "bad mode specified: rwx"),
    ("/dev/zero:/dev/z:rr", "bad mode specified: rr"),
    ("/dev/zero:/dev/z:", "bad mode specified: "),
    ("/dev/zero:dev/z", "dev/z is not an absolute path"),
    ("zero", "zero is not an absolute path"),
])
def test_parse_device_bad(text: str, detail: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        opts.parse_device(text)
    assert caught.value.operation == "parse --device"
    assert detail in caught.value.detail


@pytest.mark.parametrize("text", ["web", "web:ro", "web:rw"])
def test_parse_volumes_from(text: str) -> None:
    assert opts.parse_volumes_from(text) == text


@pytest.mark.parametrize("text", ["", ":ro", "web:", "web:rx", "web:ro:z"])
def test_parse_volumes_from_bad(text: str) -> None:
    with pytest.raises(InvalidArgument, match="expected CONTAINER"):
        opts.parse_volumes_from(text)


def test_parse_platform_option() -> None:
    from tsubo.image.pull import host_platform

    host = "/".join(host_platform()[:2])
    assert opts.parse_platform_option(host) == host
    other = "linux/s390x" if host != "linux/s390x" else "linux/amd64"
    with pytest.raises(InvalidArgument, match="this host runs"):
        opts.parse_platform_option(other)
    with pytest.raises(InvalidArgument, match="expected OS/ARCH"):
        opts.parse_platform_option("linux")


def _built(**given: object) -> RunOptions:
    return opts.build_run_options({"rootfs": "/r", **given}, cwd="/")


def test_build_run_options_new_flags() -> None:
    run = _built(privileged=True, devices=["/dev/zero:/dev/z:r"], volumes_from=["a:ro"],
                 log_driver="none", pull="never", pid="container:a", ipc="container:b",
                 uts="container:c", userns="host")
    assert (run.privileged, run.devices, run.volumes_from, run.log_driver, run.pull) == (
        True, [["/dev/zero", "/dev/z", "r"]], ["a:ro"], "none", "never")
    assert (run.pid_mode, run.ipc_mode, run.uts_mode) == ("container:a", "container:b",
                                                          "container:c")
    assert RunOptions.from_json_text(run.to_json_text()) == run
    default = _built()
    assert (default.privileged, default.devices, default.log_driver, default.pull,
            default.platform) == (False, [], "json-file", "missing", "")
    assert RunOptions.from_json({"rootfs": "/r"}).log_driver == "json-file"  # older records


@pytest.mark.parametrize(("given", "message"), [
    ({"pull": "sometimes"}, 'parse --pull sometimes: invalid pull option: must be one of '
     '"always", "missing" or "never"'),
    ({"log_driver": "journald"}, "parse --log-driver journald: expected json-file or none"),
    ({"userns": "keep-id"}, "parse --userns keep-id: only host is supported"),
    ({"pid": "container:"}, "parse --pid container:: expected container:NAME"),
    ({"ipc": "bogus"}, "parse --ipc bogus: expected host or private or shareable or "
     "container:NAME"),
    ({"uts": "container:a", "hostname": "x"}, "conflicting options: hostname and the UTS "
     "mode"),
    ({"privileged": "yes"}, "create container --privileged: expected True or False"),
    ({"devices": "/dev/zero:/dev/z:x"}, "parse --device /dev/zero:/dev/z:x: bad mode"),
])
def test_build_run_options_new_flags_bad(given: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _built(**given)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("", b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-A,x", b"\x01x"),
    ("a", b"a"), ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
])
def test_parse_detach_keys(text: str, expected: bytes) -> None:
    from tsubo.engine.attach import parse_detach_keys

    assert parse_detach_keys(text) == expected


@pytest.mark.parametrize("text", ["ctrl-1", "ctrl-", "ab", "ctrl-p,,ctrl-q", "é", "alt-x"])
def test_parse_detach_keys_bad(text: str) -> None:
    from tsubo.engine.attach import parse_detach_keys

    with pytest.raises(InvalidArgument, match="unknown character"):
        parse_detach_keys(text)
