"""tsubo.oci.runtime_spec: config.json parsing and validation; every error names its JSON path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bundles import deep_merge, default_config
from tsubo.errors import InvalidArgument, Unsupported
from tsubo.oci.runtime_spec import DeviceRule, Spec, parse_spec
from tsubo.oci.seccomp import Seccomp


def minimal(**overrides: Any) -> dict[str, Any]:
    """The smallest valid config, with *overrides* merged in (None deletes a key)."""
    base = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
            "process": {"args": ["/bin/sh"]}}
    return deep_merge(base, overrides)


def with_process(**fields: Any) -> dict[str, Any]:
    return minimal(process={"args": ["/bin/sh"], **fields})


def with_linux(**fields: Any) -> dict[str, Any]:
    return minimal(linux=fields)


def invalid(config: dict[str, Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        Spec(config)
    return caught.value


# --- the happy paths --------------------------------------------------------------------------


def test_runc_spec_config_parses_fully() -> None:
    config = default_config(["sh", "-c", "true"], cgroups_path="/tsubo-test-x/c1")
    spec = parse_spec(json.dumps(config))
    assert spec.raw == config
    assert spec.oci_version == "1.0.2-dev"
    assert (spec.root_path, spec.root_readonly) == ("rootfs", True)
    assert spec.hostname == "runc"
    assert spec.process is not None
    assert spec.process.args == ["sh", "-c", "true"]
    assert spec.process.env[1] == "TERM=xterm"
    assert spec.process.cwd == "/"
    assert (spec.process.user.uid, spec.process.user.gid) == (0, 0)
    assert spec.process.user.umask is None
    assert spec.process.no_new_privileges is True
    assert spec.process.terminal is False
    assert spec.process.console_size is None
    caps = spec.process.capabilities
    assert caps is not None
    assert caps.bounding == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert caps.inheritable == []
    [rlimit] = spec.process.rlimits
    assert (rlimit.type, rlimit.hard, rlimit.soft) == ("RLIMIT_NOFILE", 1024, 1024)
    assert [m.destination for m in spec.mounts] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert spec.mounts[1].options == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert spec.linux.namespaces == [
        ("pid", ""), ("network", ""), ("ipc", ""), ("uts", ""), ("mount", "")]
    assert spec.linux.cgroups_path == "/tsubo-test-x/c1"
    assert spec.linux.resources.devices == (DeviceRule(False, "a", None, None, "rwm"),)
    assert "/proc/kcore" in spec.linux.masked_paths
    assert "/proc/sys" in spec.linux.readonly_paths
    assert spec.linux.namespace_path("mount") == ""
    assert spec.linux.namespace_path("user") is None


def test_parse_spec_accepts_bytes() -> None:
    spec = parse_spec(json.dumps(minimal()).encode())
    assert spec.root_path == "rootfs"


def test_defaults_of_a_minimal_config() -> None:
    spec = Spec(minimal(process=None))
    assert spec.process is None
    assert spec.root_readonly is False
    assert spec.mounts == []
    assert spec.hooks == {}
    assert spec.annotations == {}
    assert spec.linux.namespaces == []
    assert spec.linux.devices == []
    assert spec.linux.sysctl == {}
    assert spec.linux.seccomp is None
    assert spec.linux.personality == ""
    assert spec.linux.time_offsets == {}


@pytest.mark.parametrize(
    "version", ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.9.0-rc.1"]
)
def test_supported_versions(version: str) -> None:
    assert Spec(minimal(ociVersion=version)).oci_version == version


def test_process_fields() -> None:
    spec = Spec(with_process(
        terminal=True, consoleSize={"height": 24, "width": 80}, cwd="/work",
        user={"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o077},
        oomScoreAdj=-1000, apparmorProfile="docker-default", selinuxLabel="",
    ))
    process = spec.process
    assert process is not None
    assert process.terminal is True
    assert process.console_size == (24, 80)
    assert process.cwd == "/work"
    assert (process.user.uid, process.user.gid, process.user.additional_gids,
            process.user.umask) == (1000, 100, [5, 6], 0o077)
    assert process.oom_score_adj == -1000
    assert process.apparmor_profile == "docker-default"


def test_hooks_and_annotations() -> None:
    spec = Spec(minimal(
        hooks={"prestart": [{"path": "/bin/hook", "args": ["hook", "x"], "env": ["A=b"],
                             "timeout": 5}],
               "poststop": [{"path": "/bin/post"}]},
        annotations={"org.example": "yes"},
    ))
    [prestart] = spec.hooks["prestart"]
    assert (prestart.path, prestart.args, prestart.env, prestart.timeout) == (
        "/bin/hook", ["hook", "x"], ["A=b"], 5)
    [poststop] = spec.hooks["poststop"]
    assert (poststop.args, poststop.timeout) == (["/bin/post"], None)
    assert spec.annotations == {"org.example": "yes"}


def test_linux_fields() -> None:
    spec = Spec(with_linux(
        namespaces=[{"type": "user"}, {"type": "network", "path": "/run/netns/x"}],
        uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
        gidMappings=[{"containerID": 0, "hostID": 100, "size": 65536}],
        devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
        sysctl={"net.ipv4.ip_forward": "1"},
        rootfsPropagation="rshared",
        seccomp={"defaultAction": "SCMP_ACT_ALLOW"},
        personality={"domain": "LINUX32"},
        timeOffsets={"monotonic": {"secs": 1}},
    ))
    linux = spec.linux
    assert linux.namespace_path("user") == ""
    assert linux.namespace_path("network") == "/run/netns/x"
    [uid] = linux.uid_mappings
    assert (uid.container_id, uid.host_id, uid.size) == (0, 1000, 1)
    assert linux.gid_mappings[0].size == 65536
    [fuse] = linux.devices
    assert (fuse.path, fuse.type, fuse.major, fuse.minor, fuse.file_mode, fuse.uid,
            fuse.gid) == ("/dev/fuse", "c", 10, 229, 0o666, 0, 0)
    assert linux.sysctl == {"net.ipv4.ip_forward": "1"}
    assert linux.rootfs_propagation == "rshared"
    assert linux.seccomp == Seccomp("SCMP_ACT_ALLOW")
    # valid here; the plan refuses them (see test_plan.py)
    assert linux.personality == "LINUX32"
    assert linux.time_offsets == {"monotonic": {"secs": 1}}


# --- invalid: each error names the JSON path --------------------------------------------------


def test_not_json() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_spec('{"ociVersion": ')
    assert caught.value.object == "config.json"
    assert str(caught.value).startswith("load config config.json: not valid JSON: ")


def test_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match=r"^load config config\.json: must be an object$"):
        parse_spec("[1, 2]")


@pytest.mark.parametrize(("config", "path", "detail"), [
    (minimal(ociVersion="2.0"), "ociVersion",
     "'2.0' is not a supported version (1.x)"),
    (minimal(ociVersion="0.9.0"), "ociVersion", "not a supported version"),
    (minimal(ociVersion=None), "ociVersion", "'' is not a supported version"),
    (minimal(ociVersion=1), "ociVersion", "must be a string"),
    (minimal(root=None), "root.path", "is required"),
    (minimal(root={"path": ""}), "root.path", "is required"),
    (minimal(root={"path": None, "readonly": True}), "root.path", "is required"),
    (minimal(root="rootfs"), "root", "must be an object"),
    (minimal(root={"path": "r", "readonly": "yes"}), "root.readonly", "must be true or false"),
    (minimal(process=[]), "process", "must be an object"),
    (with_process(args=[]), "process.args", "must name the program to run"),
    (minimal(process={"args": None}), "process.args", "must name the program to run"),
    (with_process(args="sh"), "process.args", "must be an array"),
    (with_process(args=["sh", 1]), "process.args[1]", "must be a string"),
    (with_process(env=["A=1", "NOEQUALS"]), "process.env[1]", "'NOEQUALS' is not KEY=VALUE"),
    (with_process(cwd="relative"), "process.cwd", "'relative' must be an absolute path"),
    (with_process(terminal="true"), "process.terminal", "must be true or false"),
    (with_process(consoleSize={"height": -1, "width": 80}), "process.consoleSize.height",
     "must be >= 0"),
    (with_process(user={"uid": -1}), "process.user.uid", "must be >= 0"),
    (with_process(user={"uid": "0"}), "process.user.uid", "must be an integer"),
    (with_process(user={"uid": True}), "process.user.uid", "must be an integer"),
    (with_process(user={"gid": 1.5}), "process.user.gid", "must be an integer"),
    (with_process(user={"additionalGids": [1, -2]}), "process.user.additionalGids[1]",
     "must be >= 0"),
    (with_process(user={"umask": -1}), "process.user.umask", "must be >= 0"),
    (with_process(rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1},
                           {"type": "RLIMIT_NOFILE", "hard": 2, "soft": 2}]),
     "process.rlimits[1].type", "duplicate rlimit RLIMIT_NOFILE"),
    (with_process(rlimits=[{"type": "RLIMIT_CORE", "hard": "1"}]), "process.rlimits[0].hard",
     "must be an integer"),
    (with_process(rlimits={"type": "RLIMIT_CORE"}), "process.rlimits", "must be an array"),
    (with_process(oomScoreAdj=2000), "process.oomScoreAdj", "must be between -1000 and 1000"),
    (with_process(oomScoreAdj=-1001), "process.oomScoreAdj", "must be between -1000 and 1000"),
    (with_process(capabilities={"bounding": "CAP_KILL"}), "process.capabilities.bounding",
     "must be an array"),
    (with_process(capabilities={"ambient": [7]}), "process.capabilities.ambient[0]",
     "must be a string"),
    (with_process(capabilities=["CAP_KILL"]), "process.capabilities", "must be an object"),
    (with_process(noNewPrivileges=1), "process.noNewPrivileges", "must be true or false"),
    (minimal(hostname=7), "hostname", "must be a string"),
    (minimal(mounts={}), "mounts", "must be an array"),
    (minimal(mounts=[{"type": "tmpfs"}]), "mounts[0].destination", "is required"),
    (minimal(mounts=[{"destination": "/a"}, {"destination": "/b", "options": "ro"}]),
     "mounts[1].options", "must be an array"),
    (minimal(hooks={"prestrat": []}), "hooks.prestrat", "unknown hook"),
    (minimal(hooks={"poststart": [{"path": "hook"}]}), "hooks.poststart[0].path",
     "must be an absolute path"),
    (minimal(hooks={"poststart": [{"path": "/h", "timeout": 0}]}),
     "hooks.poststart[0].timeout", "must be >= 1"),
    (minimal(annotations={"a": 1}), "annotations.a", "must be a string"),
    (with_linux(namespaces=[{"type": "pid"}, {"type": "pid"}]), "linux.namespaces[1].type",
     "duplicate namespace pid"),
    (with_linux(namespaces=[{"type": "net"}]), "linux.namespaces[0].type",
     "unknown namespace type 'net'"),
    (with_linux(namespaces=[{"type": "pid", "path": 3}]), "linux.namespaces[0].path",
     "must be a string"),
    (with_linux(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 0}]),
     "linux.uidMappings[0].size", "must be >= 1"),
    (with_linux(gidMappings=[{"containerID": -1, "hostID": 0, "size": 1}]),
     "linux.gidMappings[0].containerID", "must be >= 0"),
    (with_linux(devices=[{"path": "/tmp/null", "type": "c"}]), "linux.devices[0].path",
     "'/tmp/null' must be under /dev/"),
    (with_linux(devices=[{"path": "/dev/x", "type": "x"}]), "linux.devices[0].type",
     "'x' is not one of c, b, u, p"),
    (with_linux(devices=[{"path": "/dev/x", "type": "c", "major": "1"}]),
     "linux.devices[0].major", "must be an integer"),
    (with_linux(sysctl={"net.ipv4.ip_forward": 1}), "linux.sysctl.net.ipv4.ip_forward",
     "must be a string"),
    (with_linux(maskedPaths=["/a", None]), "linux.maskedPaths[1]", "must be a string"),
    (with_linux(resources=[]), "linux.resources", "must be an object"),
    (with_linux(personality={"domain": 1}), "linux.personality.domain", "must be a string"),
    (minimal(linux=[]), "linux", "must be an object"),
])
def test_invalid_field_names_its_path(config: dict[str, Any], path: str, detail: str) -> None:
    error = invalid(config)
    assert error.operation == "load config"
    assert error.object == path
    assert detail in error.detail
    assert str(error).startswith(f"load config {path}: ")


def test_parse_spec_reports_the_path_too() -> None:
    with pytest.raises(InvalidArgument, match=r"^load config process\.env\[0\]: 'X' is not"):
        parse_spec(json.dumps(with_process(env=["X"])))


# --- valid but unsupported --------------------------------------------------------------------


@pytest.mark.parametrize(("config", "path"), [
    (with_process(commandLine="cmd.exe /c dir"), "process.commandLine"),
    (with_process(user={"username": "Administrator"}), "process.user.username"),
    (with_process(scheduler={"policy": "SCHED_OTHER"}), "process.scheduler"),
    (with_process(ioPriority={"class": "IOPRIO_CLASS_IDLE"}), "process.ioPriority"),
    (with_process(execCPUAffinity={"initial": "0"}), "process.execCPUAffinity"),
    (minimal(mounts=[{"destination": "/m", "type": "bind", "source": "/s",
                      "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]),
     "mounts[0]"),
    (minimal(mounts=[{"destination": "/m", "gidMappings": [{"containerID": 0}]}]), "mounts[0]"),
    (with_linux(intelRdt={"closID": "x"}), "linux.intelRdt"),
    (with_linux(memoryPolicy={"mode": "MPOL_BIND"}), "linux.memoryPolicy"),
    (with_linux(netDevices={"eth0": {}}), "linux.netDevices"),
    (with_linux(mountLabel="system_u:object_r:container_file_t:s0"), "linux.mountLabel"),
])
def test_unsupported_settings_are_refused_not_ignored(config: dict[str, Any], path: str) -> None:
    with pytest.raises(Unsupported) as caught:
        Spec(config)
    assert caught.value.object == path
    assert str(caught.value).startswith(f"load config {path}: ")


def test_empty_unsupported_settings_are_fine() -> None:
    spec = Spec(minimal(process={"args": ["sh"], "commandLine": "", "scheduler": None},
                        linux={"intelRdt": None, "mountLabel": ""}))
    assert spec.process is not None


def test_null_umask_is_unset() -> None:
    spec = Spec(with_process(user={"uid": 0, "gid": 0, "umask": None}))
    assert spec.process is not None
    assert spec.process.user.umask is None
