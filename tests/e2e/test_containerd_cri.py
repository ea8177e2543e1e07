"""Kubernetes' runtime path: containerd's CRI plugin drives tsubo-runtime, as a kubelet would.

The test speaks the CRI gRPC API (runtime.v1, through tests/cri_client.py) to a containerd of
its own with the CRI plugin on, configured the way a node is (docs/runtime.md): the runtime
`runc` (io.containerd.runc.v2 shim) with `BinaryName` = tsubo-runtime, cgroupfs. A second
runtime handler, `runc-reference` (a RuntimeClass on a node), has runc as its BinaryName: the
same test runs through both and must give the same results.

Sandbox, made and removed by the module fixture:
- containerd from tests/e2e/containerd_fixtures.py (root, state, sockets in a temp dir, the
  tmpfs over /run/containerd, started and stopped by pid), run in a throwaway network
  namespace (`nsenter --net`): CNI's bridge, the pod's veth and the CRI streaming server's
  listener live and die there;
- CNI: Debian's plugins (/usr/lib/cni), a bridge + host-local conflist on a private subnet
  in the temp dir, host-local's leases in the temp dir; libcni's result cache
  (/var/lib/cni, hard-wired) is shadowed by a tmpfs in this process's private mount
  namespace; the pods' network namespaces are pinned under containerd's state dir
  (`netns_mounts_under_state_dir`), not /run/netns;
- images: a pause-like image (busybox's `sleep`) as the sandbox image and busybox for the
  container, written here from busybox-static and imported with `ctr -n k8s.io images
  import`; nothing is pulled;
- each pod's cgroup parent is the test's own (`/tsubo-test-<tag>/...`), so the leak check
  covers the cgroups; AppArmor off (this host has none).

The runtime really used is checked from its own state: while the container runs, the
handler's runtime answers `state` for it under the shim's root, and only tsubo-runtime
writes `cleanup.json` next to `state.json` (tsubo.runtime.store).

CI needs the Debian packages containerd, containernetworking-plugins, busybox-static and,
for the comparison, runc; grpcio (the `dev` extras).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck
from tests.bundles import CGROUP_PREFIX
from tests.conftest import BUSYBOX
from tests.e2e import containerd_fixtures
from tests.e2e.containerd_fixtures import SHIM_STATE, TIMEOUT, Containerd, busybox_layer
from tests.e2e.test_podman_client import print_medians, time_interleaved

grpc = pytest.importorskip("grpc", reason="grpcio not installed (the dev extras)")
from tests import cri_client  # noqa: E402

NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace
PAUSE = "localhost/tsubo-test-pause:1"
IMAGE = "localhost/tsubo-test-busybox:1"
SUBNET = ipaddress.ip_network("10.123.45.0/24")
BRIDGE = "tsubocri0"
REFERENCE = "runc-reference"
#: where the shim keeps each runtime's --root for the k8s.io namespace
RUNTIME_ROOT = SHIM_STATE / "runc" / NAMESPACE
CNI_PLUGINS = Path("/usr/lib/cni")

CONFIG = containerd_fixtures.BASE_CONFIG + """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "{tsubo}"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{reference}]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{reference}.options]
  BinaryName = "{runc}"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{tmp}/cni"
  max_conf_num = 1
"""


@dataclass
class CRI:
    """Our containerd with the CRI plugin, its client, and what the tests recorded."""

    cd: Containerd
    client: cri_client.CRIClient
    netns: str
    runc: str
    runc_log: Path
    #: pods made and not yet removed (the fixture removes what a failed test left)
    pods: list[str] = field(default_factory=list)
    #: (runtime, pid mode) -> what the lifecycle test saw
    results: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def run_pod(self, config: bytes, handler: str) -> str:
        pod = self.client.run_pod_sandbox(config, handler)
        self.pods.append(pod)
        return pod

    def remove_pod(self, pod: str) -> None:
        """Stop and remove *pod*, then wait for its shim to exit (it does so after
        answering containerd, a moment later: the leak check would see it)."""
        self.client.stop_pod_sandbox(pod)
        self.client.remove_pod_sandbox(pod)
        self.pods.remove(pod)
        if not self.pods:
            _wait_for(lambda: not [pid for pid, (comm, state) in
                                   leakcheck.child_processes().items()
                                   if comm.startswith("containerd-shim") and state != "Z"],
                      "the pod's shim exits", self.cd)
            leakcheck.reap_zombie_children()

    def in_netns(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """ARGV in containerd's (the node's) throwaway network namespace."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _conflist(tmp: Path) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "tsubo-cri", "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": str(SUBNET)}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp / "ipam")},
        }],
    }, indent=2)


def _preconditions() -> tuple[Path, str]:
    runtime = containerd_fixtures.preconditions()
    for plugin in ("bridge", "host-local", "loopback"):
        if not (CNI_PLUGINS / plugin).exists():
            pytest.skip("CNI plugins not installed: install containernetworking-plugins")
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter not installed (Debian package util-linux)")
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc not installed: the CRI test compares with it (Debian package runc)")
    return runtime, runc


def _images(cd: Containerd) -> None:
    """The pause-like sandbox image and busybox, written here and imported for the CRI."""
    containerd_fixtures.oci_archive(
        cd.tmp / "pause.tar", PAUSE, layer=busybox_layer(["sleep"]),
        config={"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep"], "Cmd": ["2147483647"]})
    containerd_fixtures.oci_archive(cd.tmp / "busybox.tar", IMAGE)
    for archive in ("pause.tar", "busybox.tar"):
        cd.ok("images", "import", "--snapshotter", "native", str(cd.tmp / archive))


@pytest.fixture(scope="module")
def cri(subreaper: None) -> Iterator[CRI]:
    """containerd with the CRI plugin in a throwaway netns, both images imported and seen by
    the CRI (see the module docstring); at the end the images are removed, containerd is
    stopped by its pid and what is left (processes, mounts, files under /run/containerd,
    CNI leases) fails the module."""
    runtime, runc = _preconditions()
    tmp = Path(tempfile.mkdtemp(prefix="tsubo-e2e-cri-"))
    tmp.chmod(0o700)
    (tmp / "cni").mkdir()
    (tmp / "cni" / "10-tsubo-cri.conflist").write_text(_conflist(tmp))
    runc_log = tmp / "runc-wrapper.log"
    runc_wrapper = containerd_fixtures.write_wrapper(tmp / "runc-wrapper", runc_log, runc)
    netns = f"tsubo-cri-{secrets.token_hex(4)}"
    cni_cache = Path("/var/lib/cni") if Path("/var/lib/cni").is_dir() else Path("/var/lib")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tsubo-test", str(cni_cache)],
                   check=True, timeout=TIMEOUT)
    problems: list[str] = []
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True, timeout=TIMEOUT)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True,
                       timeout=TIMEOUT)
        config = CONFIG.format(tmp=tmp, disabled="[]", pause=PAUSE,
                               tsubo=tmp / "tsubo-runtime-wrapper",
                               runc=runc_wrapper, reference=REFERENCE, cni_bin=CNI_PLUGINS)
        cd = containerd_fixtures.start(tmp, config, runtime, NAMESPACE,
                                       prefix=("nsenter", f"--net=/run/netns/{netns}"))
        cri = CRI(cd, cri_client.CRIClient(str(cd.socket)), netns, runc, runc_log)
        try:
            containerd_fixtures.wait_ready(cd)
            _images(cd)
            for image in (PAUSE, IMAGE):
                _wait_for(lambda image=image: cri.client.image_status(image),
                          f"CRI sees {image}", cd)
            yield cri
            problems += _remove_pods(cri)
        finally:
            cri.client.close()
            if cd.process.poll() is None:
                for image in (PAUSE, IMAGE):
                    cd.ctr("images", "remove", image)
            problems += containerd_fixtures.stop(cd)
    finally:
        problems += _unshadow(netns, cni_cache)
        if problems:
            pytest.fail("CRI teardown:\n  " + "\n  ".join(problems), pytrace=False)


def _remove_pods(cri: CRI) -> list[str]:
    """Remove the pods a failed test left (their containers go with them)."""
    problems = []
    for pod in list(cri.pods):
        try:
            cri.remove_pod(pod)
        except grpc.RpcError as error:
            problems.append(f"remove pod {pod}: {error}")
    return problems


def _unshadow(netns: str, cni_cache: Path) -> list[str]:
    """Delete the throwaway netns (the bridge goes with it); check CNI's cache is empty (no
    result of a pod left: every pod's network was torn down) and lift the tmpfs."""
    problems = containerd_fixtures.quietly("ip", "netns", "delete", netns)
    results = [str(p) for p in cni_cache.rglob("*") if p.is_file()]
    if results:
        problems.append(f"CNI cache entries left: {results}")
    return problems + containerd_fixtures.quietly("umount", str(cni_cache))


def _wait_for(probe: Any, what: str, cd: Containerd, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert cd.process.poll() is None, cd.log_tail()
        assert time.monotonic() < deadline, f"timed out waiting: {what}\n{cd.log_tail()}"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# tests


def test_version(cri: CRI) -> None:
    version = cri.client.version()
    assert version["runtime_name"] == "containerd", version
    assert version["runtime_api_version"] == "v1", version
    assert version["runtime_version"].startswith("1.6"), version


@pytest.mark.parametrize("pid", [cri_client.CONTAINER, cri_client.POD],
                         ids=["own-pid-ns", "shared-pid-ns"])
@pytest.mark.parametrize("handler", ["", REFERENCE], ids=["tsubo-runtime", "runc"])
def test_pod_and_container_lifecycle(cri: CRI, handler: str, pid: int, test_tag: str) -> None:
    """A pod sandbox with an IP from CNI, a busybox container in it, ExecSync, stop and
    remove: through the handler's runtime, whose commands are recorded (-s prints them).
    The container has a pid namespace of its own (a kubelet's default) or shares the pod's
    (`shareProcessNamespace`: its init's children outlive it, and delete must kill them)."""
    log = cri.runc_log if handler else cri.cd.wrapper_log
    start = len(cri.cd.wrapper_commands(log))
    name = f"pod-{secrets.token_hex(4)}"
    pod_config = cri_client.pod_sandbox_config(
        name, secrets.token_hex(8), "tsubo-test", hostname=name,
        cgroup_parent=f"/{CGROUP_PREFIX}{test_tag}",
        log_directory=str(cri.cd.tmp / "logs" / name))
    pod = cri.run_pod(pod_config, handler)
    try:
        result = _lifecycle(cri, pod, pod_config, handler, pid)
    except BaseException:
        with contextlib.suppress(grpc.RpcError):  # else the fixture's teardown retries
            cri.remove_pod(pod)
        raise
    cri.remove_pod(pod)
    result["commands"] = sorted(set(cri.cd.wrapper_commands(log)[start:]))
    print(f"\nCRI with {handler or 'runc (BinaryName tsubo-runtime)'}: runtime commands "
          f"called: {' '.join(result['commands'])}")
    assert {"create", "start", "exec", "kill", "delete"} <= set(result["commands"]), result
    cri.results[(handler or "tsubo-runtime", pid)] = result


def _pod_config(cri: CRI, test_tag: str, pid: int = cri_client.CONTAINER) -> bytes:
    name = f"pod-{secrets.token_hex(4)}"
    return cri_client.pod_sandbox_config(
        name, secrets.token_hex(8), "tsubo-test", hostname=name,
        cgroup_parent=f"/{CGROUP_PREFIX}{test_tag}", pid=pid,
        log_directory=str(cri.cd.tmp / "logs" / name))


def _lifecycle(cri: CRI, pod: str, pod_config: bytes, handler: str, pid: int
               ) -> dict[str, Any]:
    status = cri.client.pod_sandbox_status(pod)
    assert status["state"] == "READY", status
    ip = ipaddress.ip_address(status["ip"])
    assert ip in SUBNET, status
    ping = cri.in_netns(str(BUSYBOX), "ping", "-c", "1", "-W", "5", str(ip))
    assert ping.returncode == 0, ping  # the pod answers on CNI's bridge in the throwaway netns

    script = "echo started; trap 'exit 7' TERM; sleep 1000 & wait"
    config = cri_client.container_config("c1", IMAGE, ["sh", "-c", script],
                                         envs={"GREETING": "hello"}, log_path="c1.log",
                                         pid=pid)
    cid = cri.client.create_container(pod, config, pod_config)
    states = [cri.client.container_status(cid)["state"]]
    cri.client.start_container(cid)
    states.append(cri.client.container_status(cid)["state"])
    _assert_runtime_used(cri, handler, pod, cid)

    out = cri.client.exec_sync(cid, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"])
    assert out == (b"hello\n", b"oops\n", 3), out
    init = cri.client.exec_sync(cid, ["cat", "/proc/1/comm"])[0]
    assert init == (b"sh\n" if pid == cri_client.CONTAINER else b"sleep\n"), init  # pause
    addr = cri.client.exec_sync(cid, ["ip", "-4", "-o", "addr", "show", "eth0"])
    assert f" {ip}/" in addr[0].decode(), addr  # the container is in the pod's netns
    with pytest.raises(grpc.RpcError) as caught:
        cri.client.exec_sync(cid, ["/nonexistent"])
    missing = (caught.value.code().name, caught.value.details())
    print(f"\nExecSync of a missing program: {missing}")
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in missing[1]

    cri.client.stop_container(cid, 10)
    final = cri.client.container_status(cid)
    states.append(final["state"])
    logged = Path(final["log_path"]).read_text()
    cri.client.remove_container(cid)
    assert states == ["CREATED", "RUNNING", "EXITED"], states
    assert (final["exit_code"], final["reason"]) == (7, "Error"), final
    assert "stdout F started" in logged, logged  # CRI log format: time stream tag line
    return {"states": states, "exec": out, "pid 1": init,
            "exit": (final["exit_code"], final["reason"]),
            "missing_exec": missing[0]}


def _assert_runtime_used(cri: CRI, handler: str, pod: str, cid: str) -> None:
    """The handler's runtime knows the sandbox and the container (its `state` answers
    `running` under the shim's root), and `cleanup.json` is there iff tsubo-runtime made it."""
    runtime = cri.runc if handler else str(cri.cd.runtime)
    for container in (pod, cid):
        proc = subprocess.run([runtime, "--root", str(RUNTIME_ROOT), "state", container],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        assert proc.returncode == 0, proc
        assert json.loads(proc.stdout)["status"] == "running", proc.stdout
        assert (RUNTIME_ROOT / container / "cleanup.json").exists() == (not handler)


def test_same_results_as_runc(cri: CRI) -> None:
    """tsubo-runtime and runc, driven by the CRI plugin the same way, gave the same results
    and were called with the same commands."""
    for pid in (cri_client.CONTAINER, cri_client.POD):
        ours, theirs = cri.results.get(("tsubo-runtime", pid)), cri.results.get((REFERENCE, pid))
        if ours is None or theirs is None:
            pytest.skip("needs the lifecycle runs of this module with both runtimes")
        assert ours == theirs, (pid, ours, theirs)


def test_timing_tsubo_vs_runc(cri: CRI, test_tag: str) -> None:
    """A pod and one container, `true`, started, waited for and removed, through the CRI:
    five rounds per runtime, interleaved; medians printed (see -s)."""
    config = cri_client.container_config("t", IMAGE, ["true"])

    def run_once(handler: str) -> None:
        pod_config = _pod_config(cri, test_tag)
        pod = cri.run_pod(pod_config, handler)
        cid = cri.client.create_container(pod, config, pod_config)
        cri.client.start_container(cid)
        _wait_for(lambda: cri.client.container_status(cid)["state"] == "EXITED",
                  f"{cid} exits", cri.cd)
        cri.client.remove_container(cid)
        cri.remove_pod(pod)

    times = time_interleaved({"tsubo-runtime": "", "runc": REFERENCE}, run_once)
    print_medians("CRI pod + container `true`, run and removed,", times)
