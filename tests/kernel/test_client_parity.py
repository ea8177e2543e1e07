"""What podman, containerd and runtime-tools need of the runtime, as runc does it (issue 14).

Each test pins one difference found with those clients: a config of a newer minor version
of the runtime spec, ``net.*`` sysctls in a network namespace joined by path (podman's),
``lo`` up in a new network namespace, ``rootfsPropagation: shared``, the words of a failed
exec (clients match them), the writable tmpfs under a v1 ``/sys/fs/cgroup``, and a config
without a mount namespace (refused, citing the spec). Real runtime, real kernel; the
network namespaces are the ``netns`` fixture's throwaway ones. These are `root` tests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import leakcheck
from tests.conftest import MakeBundle, NetNS, RuntimeCLI
from tests.kernel.test_isolation import one_line_error

IFF_UP = 0x1


def _run(runtime: RuntimeCLI, bundle_path: Path) -> tuple[int, str, str]:
    proc = runtime.run("run", "--bundle", str(bundle_path), runtime.container_id())
    return proc.returncode, proc.stdout, proc.stderr


def _namespaces(*kinds: str, network: str | None = "") -> list[dict[str, str]]:
    """linux.namespaces with *kinds* new, plus network new ("") or joined (a path)."""
    entries = [{"type": kind} for kind in kinds]
    if network is not None:
        entries.append({"type": "network", "path": network} if network else {"type": "network"})
    return entries


BASE_NAMESPACES = ("pid", "ipc", "uts", "mount")


# --- ociVersion ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.3.0", "1.4.0-rc.1"])
def test_newer_minor_spec_version_runs(
    runtime: RuntimeCLI, make_bundle: MakeBundle, version: str
) -> None:
    """runtime-tools' head writes 1.3.0: a minor version only adds optional fields."""
    b = make_bundle(["echo", "ran"], ociVersion=version)
    code, out, err = _run(runtime, b.path)
    assert (code, out) == (0, "ran\n"), err


# --- sysctls and network namespaces ----------------------------------------------------------


def test_net_sysctl_in_a_netns_joined_by_path(
    runtime: RuntimeCLI, make_bundle: MakeBundle, netns: NetNS
) -> None:
    """podman makes the netns itself and passes its path, with Debian's default sysctl
    net.ipv4.ping_group_range: written in that namespace, the host's untouched."""
    host_value = Path("/proc/sys/net/ipv4/ping_group_range").read_text()
    b = make_bundle(
        ["cat", "/proc/sys/net/ipv4/ping_group_range"],
        linux={
            "namespaces": _namespaces(*BASE_NAMESPACES, network=str(netns.path)),
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
        },
    )
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    assert out.split() == ["0", "0"], out
    assert netns.run("cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == ["0", "0"]
    assert Path("/proc/sys/net/ipv4/ping_group_range").read_text() == host_value


def test_net_sysctl_in_the_hosts_netns_is_refused(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    """Joining the runtime's own network namespace by path: the sysctl would change the
    host's network, so it is refused before anything is created."""
    b = make_bundle(
        ["true"],
        linux={
            "namespaces": _namespaces(*BASE_NAMESPACES, network="/proc/self/ns/net"),
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
        },
    )
    proc = runtime.run("create", "--bundle", str(b.path), runtime.container_id())
    line = one_line_error(proc)
    assert "linux.sysctl.net.ipv4.ping_group_range" in line, line
    assert "host's network namespace" in line, line
    assert runtime.list_ids() == []


@pytest.mark.parametrize(
    ("key", "missing"),
    [("net.ipv4.ping_group_range", "network"), ("kernel.shmmni", "ipc")],
)
def test_namespaced_sysctl_without_its_namespace_is_refused(
    runtime: RuntimeCLI, make_bundle: MakeBundle, key: str, missing: str
) -> None:
    kinds = [kind for kind in (*BASE_NAMESPACES, "network") if kind != missing]
    b = make_bundle(
        ["true"],
        linux={"namespaces": [{"type": kind} for kind in kinds], "sysctl": {key: "1"}},
    )
    line = one_line_error(runtime.run("run", "--bundle", str(b.path), runtime.container_id()))
    assert f"linux.sysctl.{key}" in line and f"needs a {missing} namespace" in line, line


def test_loopback_is_up_in_a_new_netns(runtime: RuntimeCLI, make_bundle: MakeBundle) -> None:
    """runc brings lo up in a new network namespace (podman --network none, ctr run):
    127.0.0.1 is reachable: a TCP connection to ourselves goes through it."""
    script = (
        "cat /sys/class/net/lo/flags; "
        "nc -l -p 7777 > /tmp/got & sleep 0.2; echo ping | nc -w1 127.0.0.1 7777; "
        "sleep 0.2; cat /tmp/got"
    )
    b = make_bundle(["sh", "-c", script], root={"path": "rootfs", "readonly": False})
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    flags, *rest = out.split()
    assert int(flags, 16) & IFF_UP, out
    assert rest == ["ping"], out


def test_loopback_of_a_joined_netns_is_left_alone(
    runtime: RuntimeCLI, make_bundle: MakeBundle, netns: NetNS
) -> None:
    """Only a namespace the runtime made is its to configure: a joined one's lo stays as its
    owner left it (down, in a fresh `ip netns add`)."""
    b = make_bundle(
        ["cat", "/sys/class/net/lo/flags"],
        linux={"namespaces": _namespaces(*BASE_NAMESPACES, network=str(netns.path))},
    )
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    assert not int(out.strip(), 16) & IFF_UP, out
    assert "state DOWN" in netns.run("ip", "link", "show", "lo").stdout


# --- rootfsPropagation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("propagation", "tag"),
    [("shared", "shared:"), ("rshared", "shared:"), ("unbindable", "unbindable"),
     ("runbindable", "unbindable")],
)
def test_rootfs_propagation_shared_or_unbindable(
    runtime: RuntimeCLI, make_bundle: MakeBundle, propagation: str, tag: str
) -> None:
    """pivot_root refuses a shared parent mount and an unbindable one cannot be bound onto
    itself (both EINVAL): the parent is made private first, and the container's / gets the
    config's propagation once it is the root. The host's mounts do not change (the leak
    check compares them)."""
    b = make_bundle(
        ["awk", "$5 == \"/\"", "/proc/self/mountinfo"],
        linux={"rootfsPropagation": propagation},
    )
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    fields = out.split(" - ")[0].split()
    assert any(field.startswith(tag) for field in fields[6:]), out


# --- exec errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["/nonexistent"], 'exec: "/nonexistent": stat /nonexistent: no such file or directory'),
        (["nosuchprog"], 'exec: "nosuchprog": executable file not found in $PATH'),
        (["/etc/passwd"], 'exec: "/etc/passwd": permission denied'),
    ],
    ids=["missing-path", "not-on-path", "not-executable"],
)
def test_exec_failure_in_runcs_words(
    runtime: RuntimeCLI, make_bundle: MakeBundle, args: list[str], words: str
) -> None:
    """podman and containerd tell 127 from 126 by these words (runc's, from Go's os/exec)."""
    b = make_bundle(args)
    line = one_line_error(runtime.run("create", "--bundle", str(b.path), runtime.container_id()))
    assert line.endswith(words), line
    assert runtime.list_ids() == []


# --- the cgroup mount ------------------------------------------------------------------------


def test_v1_cgroup_tmpfs_is_writable_and_hierarchies_read_only(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    """runc leaves the tmpfs holding a v1 (or hybrid) host's hierarchies writable; each
    hierarchy of the config's read-only `cgroup` mount stays read-only."""
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("not a v1 or hybrid cgroup host")
    script = (
        "grep ' /sys/fs/cgroup ' /proc/self/mountinfo | cut -d' ' -f6; "
        "grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo | cut -d' ' -f6; "
        "mkdir /sys/fs/cgroup/new && echo tmpfs-writable; "
        "mkdir /sys/fs/cgroup/memory/new 2>/dev/null || echo hierarchy-read-only"
    )
    b = make_bundle(["sh", "-c", script])
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    tmpfs_options, memory_options, *words = out.split()
    assert tmpfs_options.split(",")[0] == "rw", out
    assert memory_options.split(",")[0] == "ro", out
    assert words == ["tmpfs-writable", "hierarchy-read-only"], out


# --- namespaces not listed -------------------------------------------------------------------


def test_no_mount_namespace_is_refused_citing_the_spec(
    runtime: RuntimeCLI, make_bundle: MakeBundle
) -> None:
    """The spec would have the container inherit the runtime's mount namespace; building its
    root there changes the host's mounts, so tsubo refuses (docs/runtime.md says why)."""
    b = make_bundle(
        ["true"], linux={"namespaces": _namespaces("pid", "ipc", "uts", network="")}
    )
    line = one_line_error(runtime.run("run", "--bundle", str(b.path), runtime.container_id()))
    assert "linux.namespaces" in line and "inherit" in line, line
    assert 'add {"type": "mount"}' in line, line


# --- features --------------------------------------------------------------------------------


def test_features_has_runcs_shape(runtime: RuntimeCLI) -> None:
    """`features` (runtime spec features.md): every key runc 1.1 prints is there, and every
    mount option it lists is one the runtime acts on (tmpcopyup included); when runc is
    installed its keys are compared directly."""
    proc = runtime.run("features")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    assert {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux",
            "annotations"} <= set(ours)
    assert {"namespaces", "capabilities", "cgroup", "seccomp", "apparmor", "selinux"} <= set(
        ours["linux"]
    )
    assert {"tmpcopyup", "rbind", "rshared", "ro", "nosuid"} <= set(ours["mountOptions"])
    runc = shutil.which("runc")
    if runc is not None:
        theirs = json.loads(subprocess.run([runc, "features"], capture_output=True, text=True,
                                           check=True, timeout=30).stdout)
        assert set(theirs) <= set(ours)
        assert set(theirs["linux"]) <= set(ours["linux"])
        assert set(theirs["hooks"]) == set(ours["hooks"])
        assert set(theirs["linux"]["namespaces"]) <= set(ours["linux"]["namespaces"])


# --- a seccomp profile that denies getcwd ----------------------------------------------------


@pytest.mark.parametrize("no_new_privileges", [False, True])
def test_seccomp_denying_getcwd_still_runs(
    runtime: RuntimeCLI, make_bundle: MakeBundle, no_new_privileges: bool
) -> None:
    """runtime-tools' linux_seccomp: getcwd answers EPERM. Without noNewPrivileges the
    filter is loaded before the runtime checks its cwd is inside the root
    (CVE-2024-21626); that check then walks ".." instead of calling getcwd, and the
    container runs (runc 1.1 fails here). Inside, getcwd is denied as asked."""
    b = make_bundle(
        ["sh", "-c", "echo ran; pwd || echo getcwd-denied"],
        process={"noNewPrivileges": no_new_privileges, "cwd": "/tmp"},
        linux={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}},
    )
    code, out, err = _run(runtime, b.path)
    assert code == 0, err
    assert out.split()[0] == "ran", out


@pytest.mark.parametrize("fd", range(3, 11))
def test_leaked_fd_cwd_with_getcwd_denied_never_reaches_the_host(
    runtime: RuntimeCLI, make_bundle: MakeBundle, tmp_path: Path, fd: int
) -> None:
    """CVE-2024-21626 with the getcwd check unavailable (seccomp denies it, loaded before
    the check): a cwd of /proc/self/fd/N is refused or inside the root; the host's file
    is never read."""
    secret = f"HOST-SECRET-{secrets.token_hex(8)}"
    marker = tmp_path / "host-secret"
    marker.write_text(secret + "\n")
    up = "../" * 40
    script = (f"echo ran; cat {up}{str(marker).lstrip('/')} 2>/dev/null; "
              f"ls -1A {up} 2>/dev/null; exit 0")
    b = make_bundle(
        ["/bin/sh", "-c", script],
        process={"cwd": f"/proc/self/fd/{fd}", "noNewPrivileges": False},
        linux={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}},
    )
    proc = runtime.run("run", "--bundle", str(b.path), runtime.container_id())
    assert secret not in proc.stdout + proc.stderr
    lines = proc.stdout.split()
    if lines[:1] == ["ran"]:
        assert sorted(lines[1:]) == sorted(os.listdir(b.rootfs)), proc.stdout
    else:
        one_line_error(proc)


# --- delete without a pid namespace of its own -----------------------------------------------


@pytest.mark.parametrize("pid_namespace", ["joined", "none"])
def test_delete_kills_what_the_init_left_without_its_own_pid_namespace(
    runtime: RuntimeCLI, make_bundle: MakeBundle, pid_namespace: str
) -> None:
    """A pod's container shares the pod's pid namespace (CRI's shareProcessNamespace): when
    its init exits, its children live on in its cgroup. `delete` kills them and removes the
    cgroup, as runc does (containerd's CRI found it: the cgroup was left behind)."""
    holder = make_bundle(["sh", "-c", "while :; do sleep 1; done"])  # reaps orphans
    holder_id = runtime.container_id()
    runtime.run("create", "--bundle", str(holder.path), holder_id, check=True)
    runtime.run("start", holder_id, check=True)
    joined = [] if pid_namespace == "none" else [
        {"type": "pid", "path": f"/proc/{runtime.state(holder_id)['pid']}/ns/pid"}]
    b = make_bundle(["sh", "-c", "sleep 1000 &"],
                    linux={"namespaces": [*joined, *_namespaces("ipc", "uts", "mount")]})
    cid = runtime.container_id()
    runtime.run("create", "--bundle", str(b.path), cid, check=True)
    cgroup_procs = Path("/sys/fs/cgroup/pids") / b.cgroups_path.lstrip("/") / "cgroup.procs"
    runtime.run("start", cid, check=True)
    runtime.wait_status(cid, "stopped")
    left = cgroup_procs.read_text().split()
    assert len(left) == 1, left  # the backgrounded sleep, alive after its parent's exit
    proc = runtime.run("delete", cid)
    assert proc.returncode == 0, proc.stderr
    assert not cgroup_procs.parent.exists()
    assert not Path(f"/proc/{left[0]}").exists() or "Z" in Path(
        f"/proc/{left[0]}/stat").read_text().split(")")[1][:3]
    # the exited init is our zombie (we are the subreaper), still counted in the holder's
    # pid namespace until reaped: the holder's init would not finish dying before that
    leakcheck.reap_zombie_children()
