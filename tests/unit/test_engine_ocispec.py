"""tsubo.engine.ocispec: the config.json the engine hands to the runtime, with Docker's
defaults. Pure; no root needed (the seccomp filter is compiled, never loaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tsubo.engine import ocispec
from tsubo.engine.ocispec import (
    DEFAULT_PATH,
    INIT_DESTINATION,
    ImageConfig,
    build_config,
    capability_list,
    convert_seccomp_profile,
    process_args,
    process_env,
    resolve_user,
)
from tsubo.engine.options import (
    RunOptions,
    parse_capability,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
)
from tsubo.errors import InvalidArgument, NotFound, TsuboError
from tsubo.kernel.capabilities import CAPABILITY_NUMBERS, DOCKER_DEFAULT_CAPABILITIES

M = 1024**2
CONTAINER_ID = "0123456789abcdef" * 4
ETC_FILES = {
    "/etc/hostname": "/var/lib/tsubo/containers/x/hostname",
    "/etc/hosts": "/var/lib/tsubo/containers/x/hosts",
    "/etc/resolv.conf": "/var/lib/tsubo/containers/x/resolv.conf",
}
DATA = Path(ocispec.__file__).parent / "data"

DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]


def build(options: RunOptions | None = None, image: ImageConfig | None = None,
          **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "container_id": CONTAINER_ID, "rootfs": "/var/lib/tsubo/containers/x/merged",
        "etc_files": dict(ETC_FILES), "volume_mounts": [], "init_path": None,
        "passwd_lookup": None, "host_nofile_hard": 1048576, "host_nproc_hard": 4194304,
    }
    arguments.update(overrides)
    return build_config(options or RunOptions(command=["sh"]), image or ImageConfig(),
                        **arguments)


def mounts_by_destination(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in config["mounts"]}


# --- ImageConfig --------------------------------------------------------------------------


def test_image_config_from_json() -> None:
    image = ImageConfig.from_json({
        "Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "Cmd": ["nginx", "-g", "daemon off;"],
        "Entrypoint": ["/docker-entrypoint.sh"], "WorkingDir": "/srv", "User": "nginx",
        "StopSignal": "SIGQUIT", "Volumes": {"/data": {}}, "ExposedPorts": {"80/tcp": {}},
        "Labels": {"maintainer": "me"},
    })
    assert image.env == ["PATH=/usr/bin", "LANG=C.UTF-8"]
    assert image.cmd == ["nginx", "-g", "daemon off;"]
    assert image.entrypoint == ["/docker-entrypoint.sh"]
    assert (image.workdir, image.user, image.stop_signal) == ("/srv", "nginx", "SIGQUIT")
    assert image.volumes == ["/data"] and image.exposed_ports == ["80/tcp"]
    assert image.labels == {"maintainer": "me"}


def test_image_config_empty_and_nulls() -> None:
    for data in (None, {}, {"Env": None, "Cmd": None, "Entrypoint": None, "Labels": None,
                            "Volumes": None}):
        image = ImageConfig.from_json(data)
        assert (image.env, image.cmd, image.entrypoint, image.workdir, image.user,
                image.volumes, image.labels) == ([], [], [], "", "", [], {})


@pytest.mark.parametrize(("data", "where"), [
    ({"Env": "A=1"}, "config.Env"), ({"Cmd": [1]}, "config.Cmd"),
    ({"WorkingDir": 3}, "config.WorkingDir"), ({"Volumes": ["/x"]}, "config.Volumes"),
    ({"Labels": {"a": 1}}, "config.Labels"),
])
def test_image_config_bad(data: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ImageConfig.from_json(data)
    assert caught.value.operation == "load image config"
    assert caught.value.object == where


# --- entrypoint and command ---------------------------------------------------------------

IMAGE_BOTH = ImageConfig(entrypoint=["/entry.sh"], cmd=["serve", "--port", "80"])
IMAGE_CMD = ImageConfig(cmd=["sh"])
IMAGE_ENTRY = ImageConfig(entrypoint=["/bin/app"])


@pytest.mark.parametrize(("image", "entrypoint", "command", "expected"), [
    # the image's entrypoint + cmd
    (IMAGE_BOTH, None, [], ["/entry.sh", "serve", "--port", "80"]),
    # a command replaces the image's cmd, keeps its entrypoint
    (IMAGE_BOTH, None, ["debug"], ["/entry.sh", "debug"]),
    # --entrypoint replaces the entrypoint and drops the image's cmd
    (IMAGE_BOTH, ["/bin/sh"], [], ["/bin/sh"]),
    # --entrypoint plus a command
    (IMAGE_BOTH, ["/bin/sh"], ["-c", "id"], ["/bin/sh", "-c", "id"]),
    # --entrypoint "" clears the entrypoint; the command runs alone
    (IMAGE_BOTH, [], ["ls", "/"], ["ls", "/"]),
    # image with only a cmd
    (IMAGE_CMD, None, [], ["sh"]),
    (IMAGE_CMD, None, ["echo", "hi"], ["echo", "hi"]),
    # image with only an entrypoint
    (IMAGE_ENTRY, None, [], ["/bin/app"]),
    (IMAGE_ENTRY, None, ["--help"], ["/bin/app", "--help"]),
    # --rootfs container: no image config
    (ImageConfig(), None, ["/bin/true"], ["/bin/true"]),
    (ImageConfig(), ["/bin/env"], ["A=1"], ["/bin/env", "A=1"]),
])
def test_process_args(image: ImageConfig, entrypoint: list[str] | None, command: list[str],
                      expected: list[str]) -> None:
    options = RunOptions(entrypoint=entrypoint, command=command)
    assert process_args(options, image) == expected
    assert build(options, image)["process"]["args"] == expected


@pytest.mark.parametrize(("image", "entrypoint"), [
    (ImageConfig(), None), (IMAGE_BOTH, []), (IMAGE_CMD, []),
])
def test_no_command(image: ImageConfig, entrypoint: list[str] | None) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build(RunOptions(entrypoint=entrypoint), image)
    assert caught.value.operation == "create container"
    assert caught.value.detail == "no command specified"


def test_init_wraps_args_and_mounts_the_init_read_only() -> None:
    config = build(RunOptions(command=["sleep", "1"], init=True),
                   init_path="/usr/bin/tini-static")
    assert config["process"]["args"] == [INIT_DESTINATION, "--", "sleep", "1"]
    assert mounts_by_destination(config)[INIT_DESTINATION] == {
        "destination": "/run/tsubo-init", "type": "bind", "source": "/usr/bin/tini-static",
        "options": ["bind", "ro"]}


def test_init_comes_after_a_tmpfs_on_run() -> None:
    config = build(RunOptions(command=["sh"], init=True, tmpfs=[parse_tmpfs("/run")]),
                   init_path="/usr/bin/catatonit")
    order = [m["destination"] for m in config["mounts"]]
    assert order.index("/run") < order.index("/run/tsubo-init")


def test_init_without_binary() -> None:
    with pytest.raises(InvalidArgument, match="no init binary was found"):
        build(RunOptions(command=["sh"], init=True), init_path=None)


# --- environment --------------------------------------------------------------------------


def test_env_defaults() -> None:
    config = build(RunOptions(command=["sh"]))
    assert config["process"]["env"] == [f"PATH={DEFAULT_PATH}", "HOSTNAME=0123456789ab"]
    config = build(RunOptions(command=["sh"], tty=True, hostname="web"))
    assert config["process"]["env"] == [f"PATH={DEFAULT_PATH}", "HOSTNAME=web", "TERM=xterm"]


def test_env_order_and_override() -> None:
    image = ImageConfig(cmd=["sh"], env=["PATH=/opt/bin:/usr/bin", "LANG=C", "IMG=1"])
    options = RunOptions(tty=True, env=["USER_VAR=u", "LANG=en_US.UTF-8", "TERM=dumb",
                                        "USER_VAR=again"])
    assert process_env(options, image, "host1") == [
        "PATH=/opt/bin:/usr/bin",  # the image's PATH replaces the default in place
        "HOSTNAME=host1",
        "TERM=dumb",  # -e wins over the tty default
        "USER_VAR=again",  # a later -e wins
        "LANG=en_US.UTF-8",  # -e wins over the image
        "IMG=1",
    ]


def test_env_user_path_and_hostname_override() -> None:
    options = RunOptions(env=["PATH=/mine", "HOSTNAME=custom"])
    assert process_env(options, ImageConfig(env=["PATH=/img"]), "h") == [
        "PATH=/mine", "HOSTNAME=custom"]


def test_env_bare_key_unsets() -> None:
    image = ImageConfig(env=["DROP_ME", "KEEP=1"])
    assert process_env(RunOptions(), image, "h") == [
        f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "KEEP=1"]


# --- user ---------------------------------------------------------------------------------


USERS = {"root": (0, 0, [0, 10]), "web": (1000, 1000, [27, 1000]),
         "nobody": (65534, 65534, [])}
GROUPS = {"staff": 50, "wheel": 10}


def fake_passwd(name: str) -> tuple[int, int, list[int]]:
    """Like the engine's lookup: a user *name* -> (uid, gid, supplementary gids)."""
    if name not in USERS:
        raise NotFound("find user", name, detail="no matching entries in passwd file")
    return USERS[name]


def fake_group(name: str) -> int:
    if name not in GROUPS:
        raise NotFound("find group", name, detail="no matching entries in group file")
    return GROUPS[name]


@pytest.mark.parametrize(("spec", "image_user", "expected"), [
    ("", "", (0, 0, [0])),
    ("", "1000", (1000, 0, [0])),
    ("", "web", (1000, 1000, [1000, 27])),
    ("1000", "web", (1000, 0, [0])),
    ("1000:1000", "", (1000, 1000, [1000])),
    ("0:0", "web", (0, 0, [0])),
    ("root", "", (0, 0, [0, 10])),
    ("web", "", (1000, 1000, [1000, 27])),
    ("web:staff", "", (1000, 50, [50])),  # an explicit group drops supplementary groups
    ("web:7", "", (1000, 7, [7])),
    ("1000:staff", "", (1000, 50, [50])),
    ("nobody", "", (65534, 65534, [65534])),
])
def test_user_resolution(spec: str, image_user: str,
                         expected: tuple[int, int, list[int]]) -> None:
    config = build(RunOptions(command=["id"], user=spec), ImageConfig(user=image_user),
                   passwd_lookup=fake_passwd, group_lookup=fake_group)
    uid, gid, additional = expected
    assert config["process"]["user"] == {"uid": uid, "gid": gid, "additionalGids": additional}


def test_lookups_get_bare_names() -> None:
    seen: list[str] = []

    def passwd(name: str) -> tuple[int, int, list[int]]:
        seen.append(name)
        return 5, 6, [7]

    def group(name: str) -> int:
        seen.append("group " + name)
        return 8

    assert resolve_user("alice:devs", passwd, group) == (5, 8, [8])
    assert seen == ["alice", "group devs"]


def test_numeric_user_needs_no_lookup() -> None:
    assert resolve_user("123:456", None) == (123, 456, [456])
    assert resolve_user("123", None) == (123, 0, [0])
    assert resolve_user("", None) == (0, 0, [0])


def test_named_user_without_passwd_lookup() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_user("web", None)
    assert caught.value.detail == "unable to find user web: no matching entries in passwd file"
    with pytest.raises(InvalidArgument) as caught:
        resolve_user("1000:staff", None, None)
    assert caught.value.detail == (
        "unable to find group staff: no matching entries in group file")


def test_unknown_user_or_group_from_lookup_propagates() -> None:
    with pytest.raises(NotFound, match="find user ghost: no matching entries"):
        build(RunOptions(command=["id"], user="ghost"), passwd_lookup=fake_passwd)
    with pytest.raises(NotFound, match="find group nogroup: no matching entries"):
        build(RunOptions(command=["id"], user="web:nogroup"), passwd_lookup=fake_passwd,
              group_lookup=fake_group)


@pytest.mark.parametrize("spec", ["web:", ":1", "4294967295", "1:4294967296"])
def test_bad_user_specs(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        resolve_user(spec, fake_passwd, fake_group)


# --- hostname, cwd, root, terminal --------------------------------------------------------


def test_hostname_default_is_the_id_prefix() -> None:
    config = build()
    assert config["hostname"] == "0123456789ab"
    assert len(config["hostname"]) == 12
    assert build(RunOptions(command=["sh"], hostname="web"))["hostname"] == "web"


def test_cwd() -> None:
    assert build()["process"]["cwd"] == "/"
    assert build(RunOptions(command=["sh"]), ImageConfig(workdir="/app"))["process"][
        "cwd"] == "/app"
    assert build(RunOptions(command=["sh"], workdir="/w"), ImageConfig(workdir="/app"))[
        "process"]["cwd"] == "/w"
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        build(RunOptions(command=["sh"], workdir="rel"))


def test_root_terminal_and_basics() -> None:
    config = build(RunOptions(command=["sh"], tty=True))
    assert config["ociVersion"] == "1.2.0"
    assert config["root"] == {"path": "/var/lib/tsubo/containers/x/merged", "readonly": False}
    assert config["process"]["terminal"] is True
    assert config["process"]["noNewPrivileges"] is False
    assert build(RunOptions(command=["sh"], no_new_privileges=True))["process"][
        "noNewPrivileges"] is True
    assert "annotations" not in config


def test_labels_become_annotations() -> None:
    config = build(RunOptions(command=["sh"], labels={"com.example.tier": "web", "x": ""}))
    assert config["annotations"] == {"com.example.tier": "web", "x": ""}


# --- capabilities -------------------------------------------------------------------------


def test_docker_default_capabilities_exactly() -> None:
    caps = build()["process"]["capabilities"]
    assert caps == {"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS,
                    "permitted": DOCKER_CAPS, "inheritable": [], "ambient": []}
    assert len(DOCKER_CAPS) == 14
    assert list(DOCKER_DEFAULT_CAPABILITIES) == DOCKER_CAPS


def caps_of(add: list[str], drop: list[str]) -> list[str]:
    return capability_list([parse_capability(c) for c in add],
                           [parse_capability(c) for c in drop])


def test_cap_drop_all_cap_add_one() -> None:
    assert caps_of(["NET_ADMIN"], ["ALL"]) == ["CAP_NET_ADMIN"]
    config = build(RunOptions(command=["sh"], cap_add=["CAP_NET_ADMIN"], cap_drop=["ALL"]))
    for kind in ("bounding", "effective", "permitted"):
        assert config["process"]["capabilities"][kind] == ["CAP_NET_ADMIN"]


def test_cap_add_and_drop() -> None:
    assert caps_of(["sys_admin"], ["net_raw", "CAP_MKNOD"]) == [
        c for c in DOCKER_CAPS if c not in ("CAP_NET_RAW", "CAP_MKNOD")] + ["CAP_SYS_ADMIN"]
    assert caps_of(["chown"], []) == DOCKER_CAPS  # no duplicates
    assert caps_of([], ["ALL"]) == []


def test_cap_add_all(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsubo.kernel import capabilities

    monkeypatch.setattr(capabilities, "last_cap", lambda: 40)
    everything = caps_of(["ALL"], [])
    assert everything == list(CAPABILITY_NUMBERS)
    assert "CAP_SYS_ADMIN" not in caps_of(["ALL"], ["SYS_ADMIN"])
    monkeypatch.setattr(capabilities, "last_cap", lambda: 37)
    assert "CAP_BPF" not in caps_of(["ALL"], [])  # newer than this kernel


def test_unnormalised_capability_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown capability"):
        capability_list(["NET_ADMIN"], [])


# --- masked paths, namespaces, sysctls ----------------------------------------------------


def test_masked_and_readonly_paths() -> None:
    linux = build()["linux"]
    assert linux["maskedPaths"] == [
        "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
    assert linux["readonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


CGROUPNS = [{"type": "cgroup"}] if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else []


def test_namespaces_network_none_is_a_new_namespace() -> None:
    linux = build()["linux"]
    # Docker's default: a private cgroup namespace only on cgroup v2 hosts
    assert linux["namespaces"] == [
        {"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
        {"type": "ipc"}, *CGROUPNS]
    assert linux["sysctl"] == {"net.ipv4.ping_group_range": "0 2147483647",
                               "net.ipv4.ip_unprivileged_port_start": "0"}


def test_namespaces_network_host() -> None:
    linux = build(RunOptions(command=["sh"], network="host"))["linux"]
    assert [ns["type"] for ns in linux["namespaces"]] == [
        "mount", "uts", "pid", "ipc", *(ns["type"] for ns in CGROUPNS)]
    assert "sysctl" not in linux


def test_namespaces_join_netns_path() -> None:
    linux = build(RunOptions(command=["sh"], network="bridge"),
                  netns_path="/run/netns/tsubo-abc")["linux"]
    assert {"type": "network", "path": "/run/netns/tsubo-abc"} in linux["namespaces"]
    assert "sysctl" not in linux  # the runtime sets sysctls only in a namespace it creates


def test_cgroups_path_only_when_given() -> None:
    assert "cgroupsPath" not in build()["linux"]
    assert build(cgroups_path="/tsubo/abc")["linux"]["cgroupsPath"] == "/tsubo/abc"


# --- mounts -------------------------------------------------------------------------------

DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]


def test_default_mounts_then_etc_files() -> None:
    mounts = build()["mounts"]
    assert mounts[:7] == DEFAULT_MOUNTS
    assert mounts[7:] == [
        {"destination": dest, "type": "bind", "source": source,
         "options": ["rbind", "rprivate"]} for dest, source in ETC_FILES.items()]


def test_read_only_root_makes_etc_files_read_only() -> None:
    config = build(RunOptions(command=["sh"], read_only=True))
    assert config["root"]["readonly"] is True
    mounts = mounts_by_destination(config)
    for destination in ETC_FILES:
        assert mounts[destination]["options"] == ["rbind", "ro", "rprivate"]
    # the kernel file systems stay as Docker has them
    assert config["mounts"][:7] == DEFAULT_MOUNTS


def test_read_only_root_keeps_user_volumes_writable() -> None:
    config = build(RunOptions(command=["sh"], read_only=True),
                   volume_mounts=[("/srv/data", "/data", ["rbind", "rprivate"])])
    assert mounts_by_destination(config)["/data"]["options"] == ["rbind", "rprivate"]


def test_tmpfs_mounts() -> None:
    options = RunOptions(command=["sh"], tmpfs=[parse_tmpfs("/run"),
                                                parse_tmpfs("/tmp:rw,size=64m,mode=1777,exec")])
    mounts = mounts_by_destination(build(options))
    assert mounts["/run"] == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                              "options": ["noexec", "nosuid", "nodev", "rprivate"]}
    assert mounts["/tmp"] == {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "rprivate", "rw", "size=64m",
                                          "mode=1777", "exec"]}


def test_volume_mounts_passed_through_and_sorted_parents_first() -> None:
    spec = parse_volume("/srv/www:/var/www:ro")
    volume_mounts = [
        ("/srv/cache", "/var/www/cache", ["rbind", "rprivate"]),
        (spec.source, spec.destination, spec.mount_options()),
    ]
    config = build(RunOptions(command=["sh"], tmpfs=[parse_tmpfs("/var/www/tmp")]),
                   volume_mounts=volume_mounts)
    user = config["mounts"][7:]
    assert [m["destination"] for m in user] == [
        "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/var/www", "/var/www/tmp",
        "/var/www/cache"]
    assert mounts_by_destination(config)["/var/www"] == {
        "destination": "/var/www", "type": "bind", "source": "/srv/www",
        "options": ["rbind", "ro", "rprivate"]}


def test_user_mount_replaces_a_default() -> None:
    config = build(RunOptions(command=["sh"], tmpfs=[parse_tmpfs("/dev/shm:size=1g")]))
    shm = [m for m in config["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                    "options": ["noexec", "nosuid", "nodev", "rprivate", "size=1g"]}]


def test_user_dev_mount_drops_all_of_dev() -> None:
    config = build(volume_mounts=[("/host/dev", "/dev", ["rbind", "rprivate"])])
    destinations = [m["destination"] for m in config["mounts"]]
    assert not [d for d in destinations if d.startswith("/dev/")]
    assert destinations.count("/dev") == 1


def test_relative_mount_destination_refused() -> None:
    with pytest.raises(InvalidArgument, match="mount destinations must be absolute"):
        build(volume_mounts=[("/a", "b", ["rbind"])])


# --- resources ----------------------------------------------------------------------------


def test_resources_default_is_deny_all_devices_only() -> None:
    assert build()["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


def test_cpus_to_quota_and_period() -> None:
    resources = build(RunOptions(command=["sh"], cpus=1.5))["linux"]["resources"]
    assert resources["cpu"] == {"quota": 150000, "period": 100000}
    resources = build(RunOptions(command=["sh"], cpus=0.01, cpu_shares=512))["linux"][
        "resources"]
    assert resources["cpu"] == {"shares": 512, "quota": 1000, "period": 100000}


def test_memory_and_swap() -> None:
    def memory_of(**kwargs: Any) -> Any:
        return build(RunOptions(command=["sh"], **kwargs))["linux"]["resources"].get("memory")

    assert memory_of(memory=32 * M, memory_swap=64 * M) == {"limit": 32 * M, "swap": 64 * M}
    assert memory_of(memory=32 * M, memory_swap=32 * M) == {"limit": 32 * M, "swap": 32 * M}
    # Docker's default: as much swap as memory (memory+swap = twice the memory)
    assert memory_of(memory=32 * M) == {"limit": 32 * M, "swap": 64 * M}
    assert memory_of(memory=32 * M, memory_swap=0) == {"limit": 32 * M, "swap": 64 * M}
    assert memory_of(memory=32 * M, memory_swap=-1) == {"limit": 32 * M}
    assert memory_of(memory_swap=-1) is None


def test_pids_limit() -> None:
    assert build(RunOptions(command=["sh"], pids_limit=100))["linux"]["resources"][
        "pids"] == {"limit": 100}


# --- rlimits ------------------------------------------------------------------------------


def rlimits_of(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["type"]: (r["soft"], r["hard"]) for r in config["process"]["rlimits"]}


def test_rlimits_default_capped_at_host() -> None:
    assert rlimits_of(build()) == {"RLIMIT_NOFILE": (1048576, 1048576),
                                   "RLIMIT_NPROC": (4194304, 4194304)}
    assert rlimits_of(build(host_nofile_hard=20000, host_nproc_hard=96365)) == {
        "RLIMIT_NOFILE": (20000, 20000), "RLIMIT_NPROC": (96365, 96365)}
    assert rlimits_of(build(host_nofile_hard=4194304)) ["RLIMIT_NOFILE"] == (1048576, 1048576)


def test_rlimits_unlimited_host() -> None:
    infinity = 2**64 - 1
    limits = rlimits_of(build(host_nofile_hard=-1, host_nproc_hard=infinity))
    assert limits == {"RLIMIT_NOFILE": (1048576, 1048576),
                      "RLIMIT_NPROC": (infinity, infinity)}


def test_user_ulimits() -> None:
    ulimits = [parse_ulimit("nofile=1024:2048"), parse_ulimit("core=0"),
               parse_ulimit("memlock=-1")]
    limits = rlimits_of(build(RunOptions(command=["sh"], ulimits=ulimits),
                              host_nofile_hard=20000))
    assert limits == {"RLIMIT_NOFILE": (1024, 2048), "RLIMIT_NPROC": (4194304, 4194304),
                      "RLIMIT_CORE": (0, 0), "RLIMIT_MEMLOCK": (2**64 - 1, 2**64 - 1)}


@pytest.mark.parametrize("text", ["nofile=1024:30000", "nofile=-1", "nproc=100000"])
def test_user_ulimit_above_host_hard_limit(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build(RunOptions(command=["sh"], ulimits=[parse_ulimit(text)]),
              host_nofile_hard=20000, host_nproc_hard=96365)
    name = text.partition("=")[0]
    limit = {"nofile": 20000, "nproc": 96365}[name]
    assert caught.value.object.startswith(f"--ulimit {name}=")
    assert caught.value.detail == f"the hard limit is above this host's hard limit of {limit}"
    assert caught.value.hint == f"use at most {name}={limit}"


# --- seccomp ------------------------------------------------------------------------------


def test_default_seccomp_present_and_compiles() -> None:
    from tsubo.kernel.seccomp import compile_filter
    from tsubo.oci.seccomp import parse_seccomp

    seccomp = build()["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert seccomp["defaultErrnoRet"] == 1
    assert "archMap" not in seccomp
    for rule in seccomp["syscalls"]:
        assert "includes" not in rule and "excludes" not in rule
    compiled = compile_filter(parse_seccomp(seccomp))
    try:
        assert len(compiled.export_bpf()) > 0
    finally:
        compiled.release()


def allowed_names(seccomp: dict[str, Any]) -> set[str]:
    return {name for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
            and not rule.get("args") for name in rule["names"]}


def test_default_seccomp_follows_capabilities() -> None:
    default = build()["linux"]["seccomp"]
    names = allowed_names(default)
    assert {"read", "chroot", "execve"} <= names  # CAP_SYS_CHROOT is a default cap
    assert not {"mount", "unshare", "setns", "reboot", "bpf", "kexec_load"} & names
    clone3 = [r for r in default["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                       "comment": clone3[0]["comment"]}]

    admin = build(RunOptions(command=["sh"], cap_add=["CAP_SYS_ADMIN"]))["linux"]["seccomp"]
    assert {"mount", "unshare", "setns", "clone", "clone3"} <= allowed_names(admin)
    assert not [r for r in admin["syscalls"] if r["names"] == ["clone3"]
                and r["action"] != "SCMP_ACT_ALLOW"]
    assert "chroot" not in allowed_names(
        build(RunOptions(command=["sh"], cap_drop=["CAP_SYS_CHROOT"]))["linux"]["seccomp"])


def test_seccomp_conversion_by_arch_and_kernel() -> None:
    profile = json.loads((DATA / "seccomp_default.json").read_text())
    amd64 = convert_seccomp_profile(profile, DOCKER_CAPS, machine="x86_64",
                                    kernel_release="6.1.0-13-amd64")
    assert amd64["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert {"arch_prctl", "modify_ldt", "ptrace"} <= allowed_names(amd64)
    arm64 = convert_seccomp_profile(profile, DOCKER_CAPS, machine="aarch64",
                                    kernel_release="5.10")
    assert arm64["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed_names(arm64)
    assert "set_tls" in allowed_names(arm64)
    old = convert_seccomp_profile(profile, DOCKER_CAPS, machine="x86_64",
                                  kernel_release="4.4.0")
    assert "ptrace" not in allowed_names(old)  # minKernel 4.8
    unknown = convert_seccomp_profile(profile, DOCKER_CAPS, machine="vax",
                                      kernel_release="6.0")
    assert "architectures" not in unknown


def test_seccomp_conversion_rejects_both_architecture_forms() -> None:
    with pytest.raises(InvalidArgument, match="both 'architectures' and 'archMap'"):
        convert_seccomp_profile({"defaultAction": "SCMP_ACT_ALLOW",
                                 "architectures": ["SCMP_ARCH_X86_64"],
                                 "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
                                [], machine="x86_64", kernel_release="6.0")


def test_seccomp_unconfined_is_absent() -> None:
    config = build(RunOptions(command=["sh"], seccomp="unconfined"))
    assert "seccomp" not in config["linux"]


def test_seccomp_profile_from_path(tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO"},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO",
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    seccomp = build(RunOptions(command=["sh"], seccomp=str(path)))["linux"]["seccomp"]
    assert seccomp == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}


def test_seccomp_profile_bad_path(tmp_path: Path) -> None:
    with pytest.raises(TsuboError) as caught:
        build(RunOptions(command=["sh"], seccomp=str(tmp_path / "missing.json")))
    assert caught.value.operation == "load seccomp profile"
    assert caught.value.errno == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        build(RunOptions(command=["sh"], seccomp=str(bad)))


# --- the runtime accepts it ---------------------------------------------------------------


def full_options() -> RunOptions:
    return RunOptions(
        image="busybox", command=["sh", "-c", "echo hi"], env=["A=1"], workdir="/srv",
        user="1000:1000", hostname="web", read_only=True,
        tmpfs=[parse_tmpfs("/run:size=64m,mode=1777"), parse_tmpfs("/tmp")],
        memory=32 * M, memory_swap=64 * M, cpus=1.5, cpu_shares=512, pids_limit=100,
        ulimits=[parse_ulimit("nofile=1024:2048")], cap_add=["CAP_NET_ADMIN"],
        no_new_privileges=True, init=True, tty=True, labels={"tier": "web"})


@pytest.mark.parametrize("network", ["none", "host"])
def test_config_passes_the_runtime_spec_and_plan(network: str) -> None:
    from tsubo.oci.runtime_spec import Spec
    from tsubo.runtime.plan import make_plan

    options = full_options()
    options.network = network
    config = build(options, init_path="/usr/bin/tini-static",
                   volume_mounts=[("/srv/data", "/data", ["rbind", "rprivate"])],
                   host_nofile_hard=20000, host_nproc_hard=96365)
    spec = Spec(config)
    plan = make_plan(spec, "/tmp/bundle")
    assert plan.process.args == [INIT_DESTINATION, "--", "sh", "-c", "echo hi"]
    assert plan.hostname == "web"
    assert plan.root_readonly is True
    assert plan.process.no_new_privileges is True
    assert plan.process.env["HOSTNAME"] == "web"
    assert plan.rootfs == "/var/lib/tsubo/containers/x/merged"
    assert any(m.destination == "/data" and m.is_bind for m in plan.mounts)
    assert plan.seccomp is not None


def test_default_config_passes_the_runtime_plan_and_json() -> None:
    from tsubo import jsonwire
    from tsubo.oci.runtime_spec import parse_spec
    from tsubo.runtime.plan import make_plan

    text = jsonwire.dumps(build(RunOptions(command=["sh"]), netns_path="/proc/1/ns/net"))
    plan = make_plan(parse_spec(text), "/tmp/bundle")
    assert plan.join_namespaces == [("network", "/proc/1/ns/net")]


def test_no_slow_imports() -> None:
    """The modules stay off the hot path's slow imports (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; import tsubo.engine.options, tsubo.engine.ocispec; "
            "slow = {'typing', 'dataclasses', 'enum', 're', 'json', 'argparse', 'pathlib', "
            "'subprocess', 'socket'} & set(sys.modules); print(sorted(slow))")
    src = str(Path(ocispec.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.strip() == "[]"


# --- --privileged, --device, container: namespaces -------------------------------------------


def test_privileged_is_dockers() -> None:
    from tsubo.kernel.capabilities import bounding_set

    config = build(RunOptions(command=["sh"], privileged=True, cap_drop=["CAP_CHOWN"]),
                   devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                             "fileMode": 0o600, "uid": 0, "gid": 0, "access": "rwm"}])
    caps = config["process"]["capabilities"]["bounding"]
    held = bounding_set()
    assert caps == [name for name, number in CAPABILITY_NUMBERS.items()
                    if held >> number & 1 and number <= ocispec_last_cap()]
    assert "CAP_CHOWN" in caps  # --cap-drop is ignored, as Docker's
    linux = config["linux"]
    assert "seccomp" not in linux and "maskedPaths" not in linux
    assert "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert linux["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                 "fileMode": 0o600, "uid": 0, "gid": 0}]
    mounts = {mount["destination"]: mount["options"] for mount in config["mounts"]}
    assert "ro" not in mounts["/sys"] and "ro" not in mounts["/sys/fs/cgroup"]
    plain = build()
    assert "ro" in {m["destination"]: m["options"] for m in plain["mounts"]}["/sys"]
    assert plain["linux"]["maskedPaths"] and plain["linux"]["seccomp"]


def ocispec_last_cap() -> int:
    from tsubo.kernel.capabilities import last_cap

    return last_cap()


def test_device_rules_carry_the_permissions() -> None:
    device = {"path": "/dev/z", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666,
              "uid": 0, "gid": 0, "access": "r"}
    config = build(RunOptions(command=["sh"]), devices=[device])
    assert config["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]
    assert config["linux"]["devices"][0]["path"] == "/dev/z"


def test_joined_namespaces() -> None:
    options = RunOptions(command=["sh"], pid_mode="container:a", ipc_mode="container:a",
                         uts_mode="container:a")
    config = build(options, joined={"pid": "/proc/7/ns/pid", "ipc": "/proc/7/ns/ipc",
                                    "uts": "/proc/7/ns/uts", "hostname": "theirs"})
    namespaces = config["linux"]["namespaces"]
    for kind in ("pid", "ipc", "uts"):
        assert {"type": kind, "path": f"/proc/7/ns/{kind}"} in namespaces
    assert "hostname" not in config  # never set in another container's UTS namespace
    assert "HOSTNAME=theirs" in config["process"]["env"]
    with pytest.raises(InvalidArgument, match="no namespace to join"):
        build(options)
