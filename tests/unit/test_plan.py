"""tsubo.runtime.plan: spec -> launch plan, and tsubo.kernel.capabilities' masks. No side effects,
so every rule is checked here without root."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bundles import deep_merge, default_config
from tsubo.errors import InvalidArgument, Unsupported
from tsubo.kernel import capabilities
from tsubo.kernel.capabilities import CAPABILITY_NUMBERS, mask_of, names_of
from tsubo.kernel.flags import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
)
from tsubo.kernel.mounts import DeviceNode
from tsubo.oci.runtime_spec import Device, DeviceRule, IDMapping, Spec, parse_resources
from tsubo.runtime.plan import (
    ALLOWED_DEVICE_RULES,
    DEFAULT_DEVICES,
    LaunchPlan,
    cgroup_resources,
    device_nodes,
    environment,
    id_map_text,
    make_plan,
    mount_step,
    root_propagation,
)

BUNDLE = "/srv/bundles/web"


def config(**overrides: Any) -> dict[str, Any]:
    """`runc spec`'s config (minus its cgroup path) with *overrides* merged in."""
    return deep_merge(default_config(["sh"], cgroups_path="/tsubo-test-x/c"), overrides)


def plan_of(**overrides: Any) -> LaunchPlan:
    return make_plan(Spec(config(**overrides)), BUNDLE)


def namespaces(*kinds: str, **paths: str) -> dict[str, Any]:
    listed = [{"type": kind} for kind in kinds]
    listed += [{"type": kind, "path": path} for kind, path in paths.items()]
    return {"namespaces": listed}


def step(options: list[str], fstype: str = "bind", source: str = "/src",
         destination: str = "/dst") -> Any:
    return mount_step(source, destination, fstype, options, BUNDLE, "mounts[3]")


# --- mount_step -------------------------------------------------------------------------------


def test_rbind_with_flags_needs_a_remount_and_a_propagation_call() -> None:
    mount = step(["ro", "nosuid", "rbind", "rprivate"], fstype="none")
    assert mount.is_bind
    assert mount.flags & (MS_BIND | MS_REC) == MS_BIND | MS_REC
    assert mount.flags == MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID
    assert mount.remount_flags == MS_RDONLY | MS_NOSUID
    assert mount.propagation == [MS_PRIVATE | MS_REC]
    assert mount.fstype == ""
    assert mount.data == ""
    assert (mount.source, mount.destination) == ("/src", "/dst")


def test_plain_bind_is_not_recursive_and_needs_no_remount() -> None:
    mount = step(["bind"])
    assert mount.flags == MS_BIND
    assert mount.remount_flags == 0
    assert mount.propagation == []


def test_bind_type_alone_makes_a_bind_mount() -> None:
    mount = step([], fstype="bind")
    assert mount.is_bind
    assert mount.flags == MS_BIND
    assert mount.fstype == ""


def test_relative_bind_source_is_joined_to_the_bundle() -> None:
    assert step(["rbind"], source="data/config").source == f"{BUNDLE}/data/config"
    assert step(["rbind"], source="/abs/data").source == "/abs/data"


def test_relative_source_of_a_filesystem_is_left_alone() -> None:
    mount = step(["nosuid"], fstype="tmpfs", source="tmpfs")
    assert mount.source == "tmpfs"
    assert mount.fstype == "tmpfs"
    assert not mount.is_bind


def test_tmpfs_data_options_pass_through_in_order() -> None:
    mount = step(["nosuid", "size=64k", "nodev", "mode=755"], fstype="tmpfs", source="tmpfs")
    assert mount.data == "size=64k,mode=755"
    assert mount.flags == MS_NOSUID | MS_NODEV
    assert mount.remount_flags == 0


def test_devpts_options_of_runc_spec() -> None:
    mount = step(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                 fstype="devpts", source="devpts")
    assert mount.flags == MS_NOSUID | MS_NOEXEC
    assert mount.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_later_options_override_earlier_ones() -> None:
    assert step(["ro", "rw"], fstype="tmpfs").flags == 0
    assert step(["rw", "ro"], fstype="tmpfs").flags == MS_RDONLY
    assert step(["nosuid", "suid", "strictatime"], fstype="tmpfs").flags == MS_STRICTATIME
    assert step(["defaults"], fstype="tmpfs").flags == 0


def test_propagation_options_are_kept_in_order() -> None:
    mount = step(["shared", "rslave", "unbindable", "private"], fstype="tmpfs")
    assert mount.propagation == [MS_SHARED, MS_SLAVE | MS_REC, MS_UNBINDABLE, MS_PRIVATE]
    assert mount.flags == 0


def test_relative_destination_is_relative_to_root() -> None:
    assert step([], destination="data").destination == "/data"


@pytest.mark.parametrize("destination", ["/a/../etc", "../etc", "/..", "/a/b/.."])
def test_dot_dot_in_the_destination_is_refused(destination: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        step([], destination=destination)
    assert caught.value.object == "mounts[3].destination"
    assert "must not contain '..'" in caught.value.detail


def test_dots_inside_a_name_are_fine() -> None:
    assert step([], destination="/a..b/...").destination == "/a..b/..."


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_unsupported_mount_options(option: str) -> None:
    with pytest.raises(Unsupported) as caught:
        step([option])
    assert caught.value.object == "mounts[3].options"


def test_tmpcopyup_marks_a_tmpfs_for_copy_up() -> None:
    assert step(["tmpcopyup", "nosuid"], fstype="tmpfs").copy_up is True
    assert step(["nosuid"], fstype="tmpfs").copy_up is False


def test_tmpcopyup_only_on_tmpfs() -> None:
    with pytest.raises(InvalidArgument) as caught:
        step(["tmpcopyup"], fstype="proc")
    assert caught.value.object == "mounts[3].options"


def test_plan_mounts_of_runc_spec() -> None:
    mounts = {m.destination: m for m in plan_of().mounts}
    assert mounts["/proc"].flags == 0
    assert mounts["/proc"].fstype == "proc"
    assert mounts["/dev"].flags == MS_NOSUID | MS_STRICTATIME
    assert mounts["/dev"].data == "mode=755,size=65536k"
    assert mounts["/sys"].flags == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY
    assert mounts["/sys/fs/cgroup"].flags == (
        MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY)
    assert not any(m.is_bind for m in mounts.values())


def test_plan_mount_error_names_the_mount_index() -> None:
    mounts = [*default_config(["sh"])["mounts"],
              {"destination": "/x/../../etc", "type": "bind", "source": "/"}]
    with pytest.raises(InvalidArgument) as caught:
        make_plan(Spec(config(mounts=mounts)), BUNDLE)
    assert caught.value.object == "mounts[7].destination"


def test_plan_refuses_idmap_mounts() -> None:
    mounts = [{"destination": "/m", "type": "bind", "source": "/s", "options": ["idmap"]}]
    with pytest.raises(Unsupported, match=r"mounts\[0\]\.options: id-mapped"):
        make_plan(Spec(config(mounts=mounts)), BUNDLE)


# --- propagation of the root ------------------------------------------------------------------


def test_root_propagation() -> None:
    assert root_propagation("") == MS_SLAVE | MS_REC
    assert root_propagation("private") == MS_PRIVATE
    assert root_propagation("rshared") == MS_SHARED | MS_REC
    with pytest.raises(InvalidArgument, match=r"linux\.rootfsPropagation: unknown propagation "
                       "'sideways'"):
        root_propagation("sideways")
    assert plan_of().root_propagation == MS_SLAVE | MS_REC
    assert plan_of(linux={"rootfsPropagation": "rprivate"}).root_propagation == (
        MS_PRIVATE | MS_REC)


# --- namespaces, rootfs, id maps, hostname ----------------------------------------------------


def test_runc_spec_plan() -> None:
    plan = plan_of()
    assert plan.rootfs == f"{BUNDLE}/rootfs"
    assert plan.root_readonly is True
    assert plan.new_namespaces == (
        CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS)
    assert plan.join_namespaces == []
    assert plan.userns is False
    assert plan.cgroupns is False
    assert plan.hostname == "runc"
    assert plan.uid_map == plan.gid_map == ""
    assert plan.no_pivot is False
    assert make_plan(Spec(config()), BUNDLE, no_pivot=True).no_pivot is True


def test_absolute_rootfs_is_kept() -> None:
    assert plan_of(root={"path": "/var/lib/roots/a"}).rootfs == "/var/lib/roots/a"


def test_joined_namespaces_come_user_first() -> None:
    plan = plan_of(linux=namespaces("mount", "pid", network="/run/netns/n",
                                    user="/proc/1/ns/user", ipc="/proc/1/ns/ipc"),
                   hostname=None)
    assert plan.join_namespaces[0] == ("user", "/proc/1/ns/user")
    assert sorted(plan.join_namespaces) == [
        ("ipc", "/proc/1/ns/ipc"), ("network", "/run/netns/n"), ("user", "/proc/1/ns/user")]
    assert plan.new_namespaces == CLONE_NEWNS | CLONE_NEWPID
    assert plan.userns is True  # joined: no mappings needed


def test_new_user_namespace_needs_mappings() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_of(linux=namespaces("user", "mount", "uts"))
    assert caught.value.object == "linux.uidMappings"


def test_new_user_namespace_with_mappings() -> None:
    plan = plan_of(linux={
        **namespaces("user", "mount", "uts", "cgroup"),
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536},
                        {"containerID": 65536, "hostID": 5, "size": 1}],
    })
    assert plan.new_namespaces & CLONE_NEWUSER
    assert plan.userns is True
    assert plan.cgroupns is True
    assert plan.uid_map == "0 100000 65536\n"
    assert plan.gid_map == "0 100000 65536\n65536 5 1\n"


def test_id_map_text() -> None:
    mappings = [IDMapping({"containerID": 0, "hostID": 1000, "size": 1}, "m"),
                IDMapping({"containerID": 1, "hostID": 100000, "size": 65535}, "m")]
    assert id_map_text(mappings) == "0 1000 1\n1 100000 65535\n"
    assert id_map_text([]) == ""


def test_a_mount_namespace_is_required() -> None:
    with pytest.raises(Unsupported) as caught:
        plan_of(linux=namespaces("pid", "uts"))
    assert caught.value.object == "linux.namespaces"


def test_hostname_needs_a_uts_namespace() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_of(linux=namespaces("mount"))
    assert caught.value.object == "hostname"
    with pytest.raises(InvalidArgument):
        plan_of(linux=namespaces("mount"), hostname=None, domainname="example.org")
    assert plan_of(linux=namespaces("mount"), hostname=None).hostname == ""


def test_process_is_required_to_plan() -> None:
    with pytest.raises(InvalidArgument, match=r"^load config process: is required to create$"):
        plan_of(process=None)


@pytest.mark.parametrize(("overrides", "path"), [
    ({"linux": {"timeOffsets": {"boottime": {"secs": 1}}}}, "linux.timeOffsets"),
    ({"linux": {"personality": {"domain": "LINUX32"}}}, "linux.personality"),
])
def test_unsupported_in_the_plan(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(Unsupported) as caught:
        plan_of(**overrides)
    assert caught.value.object == path


# --- process ----------------------------------------------------------------------------------


def test_process_plan_of_runc_spec() -> None:
    process = plan_of().process
    assert process.args == ["sh"]
    assert process.env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "TERM": "xterm"}
    assert (process.uid, process.gid, process.cwd) == (0, 0, "/")
    assert process.umask == 0o022
    assert process.rlimits == [(7, 1024, 1024)]
    assert process.no_new_privileges is True


def test_environment_later_entries_win_and_values_keep_equals() -> None:
    assert environment(["A=1", "B=x=y", "A=2", "EMPTY="]) == {"A": "2", "B": "x=y", "EMPTY": ""}


def test_rlimits_infinity_and_order() -> None:
    plan = plan_of(process={"rlimits": [
        {"type": "RLIMIT_CORE", "hard": 2**64 - 1, "soft": 0},
        {"type": "RLIMIT_NPROC", "hard": 100, "soft": 50},
    ], "user": {"umask": 0o077}})
    assert plan.process.rlimits == [(4, 0, -1), (6, 50, 100)]
    assert plan.process.umask == 0o077


def test_unknown_rlimit_names_its_path() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_of(process={"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1},
                                     {"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]})
    assert caught.value.object == "process.rlimits[1].type"
    assert caught.value.detail == "unknown rlimit 'RLIMIT_BOGUS'"


# --- capabilities -----------------------------------------------------------------------------


def test_capability_masks_of_runc_spec() -> None:
    expected = 1 << 29 | 1 << 5 | 1 << 10  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    caps = plan_of().process.capabilities
    assert caps.bounding == caps.effective == caps.permitted == caps.ambient == expected
    assert caps.inheritable == 0


def test_no_capabilities_object_means_none() -> None:
    caps = plan_of(process={"capabilities": None}).process.capabilities
    assert (caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient) == (
        0, 0, 0, 0, 0)


def test_bad_capability_name_names_its_set() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_of(process={"capabilities": {"permitted": ["CAP_KILL", "CAP_FLY"]}})
    assert caught.value.object == "process.capabilities.permitted"
    assert caught.value.detail == "unknown capability 'CAP_FLY'"


def test_mask_of_and_names_of() -> None:
    assert mask_of([], "w", 40) == 0
    assert mask_of(["CAP_CHOWN", "cap_sys_admin", "CAP_CHOWN"], "w", 40) == 1 | 1 << 21
    assert names_of(1 | 1 << 21) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert names_of(0) == []
    everything = mask_of(list(CAPABILITY_NUMBERS), "w", 40)
    assert everything == (1 << 41) - 1
    assert names_of(everything) == list(CAPABILITY_NUMBERS)


def test_mask_of_leaves_out_capabilities_newer_than_the_kernel() -> None:
    assert mask_of(["CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_KILL"], "w", 38) == 1 << 5


def test_mask_of_unknown_name() -> None:
    with pytest.raises(InvalidArgument, match=r"^load config process\.x: unknown capability "
                       "'CAP_NOPE'$"):
        mask_of(["CAP_KILL", "CAP_NOPE"], "process.x", 40)


def test_docker_defaults_are_known_capabilities() -> None:
    mask = mask_of(list(capabilities.DOCKER_DEFAULT_CAPABILITIES), "w", 40)
    assert sorted(names_of(mask)) == sorted(capabilities.DOCKER_DEFAULT_CAPABILITIES)


def test_last_cap_is_at_least_the_table() -> None:
    assert capabilities.last_cap() >= CAPABILITY_NUMBERS["CAP_AUDIT_READ"]


# --- devices ----------------------------------------------------------------------------------


def device(path: str, kind: str = "c", major: int = 1, minor: int = 3, **extra: Any) -> Device:
    return Device({"path": path, "type": kind, "major": major, "minor": minor, **extra}, "d")


def test_default_devices_only() -> None:
    nodes = device_nodes([])
    assert [(n.path, n.type, n.major, n.minor, n.mode, n.uid, n.gid) for n in nodes] == [
        (path, kind, major, minor, 0o666, 0, 0) for path, kind, major, minor in DEFAULT_DEVICES]


def test_config_devices_are_added_and_win_on_the_same_path() -> None:
    nodes = device_nodes([
        device("/dev/null", major=1, minor=3, fileMode=0o100600, uid=5, gid=6),
        device("/dev/fuse", major=10, minor=229),
        device("/dev/sda", kind="b", major=8, minor=0, fileMode=0o660),
    ])
    paths = [n.path for n in nodes]
    assert paths.count("/dev/null") == 1
    assert paths == ["/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                     "/dev/null", "/dev/fuse", "/dev/sda"]
    null = nodes[5]
    assert (null.mode, null.uid, null.gid) == (0o600, 5, 6)  # file type bits masked off
    assert (nodes[7].type, nodes[7].major, nodes[7].mode) == ("b", 8, 0o660)


def test_plan_devices_and_symlinks() -> None:
    plan = plan_of(linux={"devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                                       "minor": 229}]})
    assert [n.path for n in plan.devices][-1] == "/dev/fuse"
    assert len(plan.devices) == len(DEFAULT_DEVICES) + 1
    assert ("/proc/self/fd", "/dev/fd") in plan.dev_symlinks
    assert ("pts/ptmx", "/dev/ptmx") in plan.dev_symlinks


# --- cgroup device rules ----------------------------------------------------------------------


def rule_tuples(rules: tuple[DeviceRule, ...] | None) -> list[tuple[Any, ...]]:
    return [(r.allow, r.type, r.major, r.minor, r.access) for r in rules or ()]


def test_cgroup_resources_start_with_deny_all_and_hold_the_defaults() -> None:
    resources = parse_resources(
        {"memory": {"limit": 1 << 20},
         "devices": [{"allow": True, "type": "c", "major": 4, "access": "rw"}]})
    nodes = device_nodes([device("/dev/fuse", major=10, minor=229),
                          device("/dev/null", major=1, minor=3)])
    out = cgroup_resources(resources, nodes)
    assert out.memory is resources.memory
    rules = rule_tuples(out.devices)
    assert rules[0] == (False, "a", None, None, "rwm")
    assert rules[1] == (True, "c", 4, None, "rw")  # the config's own rules come next
    defaults = [(True, kind, major, minor, access)
                for kind, major, minor, access in ALLOWED_DEVICE_RULES]
    assert rules[2:2 + len(defaults)] == defaults
    for _, kind, major, minor in DEFAULT_DEVICES:
        assert (True, kind, major, minor, "rwm") in rules
    # then one allow for each config device that is not a default one (/dev/null is)
    assert rules[2 + len(defaults):] == [(True, "c", 10, 229, "rwm")]


def test_a_config_rule_for_a_device_decides_its_access() -> None:
    """An engine's rule for one of its devices (Docker's --device /dev/x:/dev/y:r) is not
    widened to rwm by the runtime's allow for config devices."""
    resources = parse_resources(
        {"devices": [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"}]})
    rules = rule_tuples(cgroup_resources(
        resources, device_nodes([device("/dev/myfuse", major=10, minor=229)])).devices)
    assert (True, "c", 10, 229, "r") in rules
    assert (True, "c", 10, 229, "rwm") not in rules


def test_cgroup_resources_does_not_change_its_input() -> None:
    config = {"devices": [{"allow": False, "access": "rwm"}]}
    resources = parse_resources(config)
    cgroup_resources(resources, [DeviceNode("/dev/x", "c", 1, 1, 0o666, 0, 0)])
    assert resources == parse_resources(config)
    with pytest.raises(AttributeError):
        resources.devices = ()


def test_cgroup_resources_without_devices() -> None:
    out = cgroup_resources(parse_resources({}), device_nodes([]))
    assert out.devices is not None
    assert out.devices[0] == DeviceRule(False, "a", None, None, "rwm")
    assert len(out.devices) == 1 + len(ALLOWED_DEVICE_RULES)


# --- sysctl -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "namespace"), [
    ("net.ipv4.ip_forward", "network"),
    ("net.core.somaxconn", "network"),
    ("kernel.shmmax", "ipc"),
    ("kernel.shmall", "ipc"),
    ("kernel.shm_rmid_forced", "ipc"),
    ("kernel.msgmax", "ipc"),
    ("kernel.sem", "ipc"),
    ("fs.mqueue.msg_max", "ipc"),
    ("kernel.domainname", "uts"),
])
def test_namespaced_sysctl_needs_its_namespace(key: str, namespace: str) -> None:
    others = [kind for kind in ("network", "ipc", "uts") if kind != namespace]
    kinds = dict.fromkeys(("mount", "uts", namespace))
    allowed = plan_of(linux={**namespaces(*kinds), "sysctl": {key: "1"}})
    assert allowed.sysctl == {key: "1"}
    with pytest.raises(InvalidArgument) as caught:
        plan_of(linux={**namespaces("mount", *others), "sysctl": {key: "1"}},
                hostname=None)
    assert caught.value.object == f"linux.sysctl.{key}"
    assert caught.value.detail == (f"needs a {namespace} namespace of the container's own "
                                   "(new, or joined by path)")


def test_sysctl_in_a_joined_namespace_is_planned_for_the_kernel_check() -> None:
    """A joined network namespace is allowed by the plan (podman passes its own netns by
    path); whether it is the host's is for ``create`` to ask the kernel."""
    from tsubo.runtime.plan import sysctl_netns_path

    joined = plan_of(linux={**namespaces("mount", "uts", network="/run/netns/pod"),
                            "sysctl": {"net.ipv4.ip_forward": "1"}})
    assert joined.sysctl == {"net.ipv4.ip_forward": "1"}
    assert sysctl_netns_path(joined) == "/run/netns/pod"
    new = plan_of(linux={**namespaces("mount", "uts", "network"),
                         "sysctl": {"net.ipv4.ip_forward": "1"}})
    assert sysctl_netns_path(new) == ""
    ipc_only = plan_of(linux={**namespaces("mount", "uts", "ipc", network="/run/netns/pod"),
                              "sysctl": {"kernel.shmmni": "1"}})
    assert sysctl_netns_path(ipc_only) == ""


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.pid_max", "fs.file-max",
                                 "kernel.panic", "netx.foo"])
def test_host_sysctls_are_refused(key: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_of(linux={"sysctl": {key: "1"}})
    assert caught.value.object == f"linux.sysctl.{key}"
    assert "is not namespaced" in caught.value.detail
