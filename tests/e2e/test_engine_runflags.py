"""The run flags issue 13 left out, end to end through the ``tsubo`` CLI, each as Docker
defines it: ``--pull`` (and the auto-pull of a missing image), ``--privileged``,
``--device``, ``--pid/--ipc/--uts container:NAME``, ``--volumes-from``, ``--log-driver``,
``--sig-proxy``, ``--platform``, ``--userns``.

Each table row states the Docker behaviour it checks. A bad value is one line, exit 125,
and nothing is created. Devices used are harmless ones: ``/dev/zero`` (read) and
``/dev/fuse`` (opened and closed, never mounted); no disk is ever opened.

The pulls run inside the registry fixture's throwaway netns (``ip netns exec``); the engine's
monitor is started outside it first (an anchor container), so containers are made in the
host's mount namespace as usual.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import engine_fixtures, registry_fixtures
from tests.e2e.engine_fixtures import EngineCLI, engine_env, one_line, wait_for
from tests.e2e.registry_fixtures import Registry, TestImages
from tests.e2e.test_engine_cli import run_in_pty
from tests.e2e.test_engine_daily import _check
from tests.e2e.test_engine_pull import make_puller

engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
test_images_registry = registry_fixtures.test_images_registry

FLAG_ERROR = 125
LINE = r"tsubo: [^\n]*\n"

#: os.uname().machine -> the OCI architecture
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
HOST_PLATFORM = f"linux/{_ARCHITECTURES.get(os.uname().machine, os.uname().machine)}"
OTHER_PLATFORM = "linux/s390x" if HOST_PLATFORM != "linux/s390x" else "linux/amd64"


def _all_capabilities_mask() -> str:
    """Every capability we hold (Docker's --privileged gives all those available)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return line.split()[1]
    raise AssertionError("no CapBnd line")


# ---------------------------------------------------------------------------------------------
# --pull and the auto-pull of a missing image


def test_pull_policies_and_auto_pull(test_images_registry: tuple[Registry, TestImages],
                                     engine_cli: EngineCLI, tmp_path: Path) -> None:
    registry, _ = test_images_registry
    cli = engine_cli
    puller = make_puller(registry, cli, tmp_path)
    cli.run_d(["sleep", "600"], "--name", "anchor")  # the monitor: outside the netns
    ref = f"{registry.address}/{TestImages.MULTI}"

    proc = puller("run", "--rm", "--pull", "never", ref, "true")
    assert proc.returncode == FLAG_ERROR, proc.stderr
    assert "no such image" in one_line(proc.stderr), "docker: --pull never: No such image"
    assert cli.ok("images", "-q") == ""

    proc = puller("run", "--rm", ref, "cat", "/data/recreated")
    assert (proc.returncode, proc.stdout) == (0, "version 2\n"), proc.stderr
    assert proc.stderr.startswith(f"Unable to find image '{ref}' locally\n"), proc.stderr
    assert f"1: Pulling from {registry.address}/test/multi\n" in proc.stderr, \
        "docker: the pull's progress on stderr"
    assert f"Status: Downloaded newer image for {ref}\n" in proc.stderr, proc.stderr

    proc = puller("run", "--rm", ref, "true")
    assert (proc.returncode, proc.stderr) == (0, ""), "a present image is not pulled again"

    proc = puller("run", "--rm", "--pull", "always", ref, "true")
    assert proc.returncode == 0, proc.stderr
    assert "Unable to find" not in proc.stderr
    assert f"Status: Image is up to date for {ref}\n" in proc.stderr, "--pull always pulls"

    cli.ok("rmi", ref)
    proc = puller("create", "-q", "--name", "quiet", ref, "true")
    assert proc.returncode == 0 and proc.stderr == "", "create -q: only the ID"
    assert re.fullmatch(r"[0-9a-f]{64}\n", proc.stdout), proc.stdout

    cli.ok("rmi", "-f", ref)
    proc = puller("run", "-d", "--name", "bg", ref, "sleep", "60")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"Unable to find image '{ref}' locally\n")
    assert re.fullmatch(r"[0-9a-f]{64}\n", proc.stdout), "run -d: the ID alone on stdout"
    cli.ok("rm", "-f", "bg", "quiet", "anchor")


def test_bad_pull_platform_and_userns_values(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    rows: list[tuple[object, ...]] = [
        (["create", "--pull", "sometimes", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r'tsubo: parse --pull sometimes: invalid pull option: must be one of "always", '
         r'"missing" or "never"\n', "docker: invalid pull option"),
        (["create", "--platform", OTHER_PLATFORM, "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         rf"tsubo: parse --platform {OTHER_PLATFORM}: this host runs {HOST_PLATFORM}"
         r"[^\n]*\n", "no emulation: another platform is refused"),
        (["create", "--platform", "linux", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --platform linux: expected OS/ARCH\[/VARIANT\]\n", "bad platform"),
        (["run", "--rm", "--platform", HOST_PLATFORM, "--rootfs", rootfs, "echo", "ok"], 0,
         "ok\n", "", "the host's platform is accepted"),
        (["run", "--rm", "--userns", "host", "--rootfs", rootfs, "echo", "ok"], 0, "ok\n", "",
         "--userns host: the host's user namespace"),
        (["create", "--userns", "keep-id", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --userns keep-id: only host is supported[^\n]*\n",
         "any other user namespace mode is refused"),
        (["run", "--rm", "--pull", "never", "--rootfs", rootfs, "echo", "ok"], 0, "ok\n", "",
         "--rootfs has nothing to pull"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.ids() == []


# ---------------------------------------------------------------------------------------------
# --privileged and --device


def test_privileged_is_dockers(engine_cli: EngineCLI) -> None:
    """Docker's --privileged: every capability, no seccomp filter, no masked or read-only
    paths, the host's devices, /sys writable."""
    cli = engine_cli
    probe = ("grep CapEff /proc/self/status; grep '^Seccomp:' /proc/self/status; "
             "grep -c ' /proc/kcore \\| /proc/sys ' /proc/self/mounts; "
             "grep ' /sys sysfs' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1; "
             "test -c /dev/fuse && echo fuse; test -c /dev/kmsg && echo kmsg; "
             "test -L /dev/ptmx && echo ptmx-link")
    out = cli.run_fg(["sh", "-c", probe], "--rm", "--privileged")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (f"CapEff:\t{_all_capabilities_mask()}\nSeccomp:\t0\n0\nrw\n"
                          "fuse\nkmsg\nptmx-link\n"), out.stdout
    plain = cli.run_fg(["sh", "-c", probe], "--rm")
    lines = plain.stdout.splitlines()
    assert lines[0] != f"CapEff:\t{_all_capabilities_mask()}"
    assert (lines[1], lines[2] != "0", lines[3]) == ("Seccomp:\t2", True, "ro"), lines
    assert "fuse" not in lines and "kmsg" not in lines
    out = cli.run_fg(["sh", "-c", "exec 3</dev/fuse && echo opened"], "--rm", "--privileged")
    assert out.stdout == "opened\n", "every device is allowed in the device cgroup"


def test_device(engine_cli: EngineCLI, tmp_path: Path) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    regular = tmp_path / "regular"
    regular.write_text("x")
    opens = ("exec 3</dev/myfuse && echo read-ok; "
             "(exec 3>/dev/myfuse) 2>/dev/null && echo write-ok || echo write-denied")
    rows: list[tuple[object, ...]] = [
        (["run", "--rm", "--device", "/dev/zero:/dev/myzero", "--rootfs", rootfs, "sh", "-c",
          "head -c 3 /dev/myzero | od -An -tx1"], 0, r"\s*00 00 00\n", "",
         "docker --device HOST:CONTAINER: the node is made in the container"),
        (["run", "--rm", "--device", "/dev/fuse:/dev/myfuse:r", "--rootfs", rootfs, "sh",
          "-c", opens], 0, "read-ok\nwrite-denied\n", "",
         "permissions r: the device cgroup allows reading only"),
        (["run", "--rm", "--device", "/dev/fuse:/dev/myfuse", "--rootfs", rootfs, "sh", "-c",
          opens], 0, "read-ok\nwrite-ok\n", "", "default permissions rwm"),
        (["run", "--rm", "--device", "/dev/fuse:r", "--rootfs", rootfs, "sh", "-c",
          "stat -c '%t,%T' /dev/fuse"], 0, "a,e5\n", "",
         "HOST:PERMISSIONS: the same path in the container"),
        (["run", "--rm", "--rootfs", rootfs, "sh", "-c", "test -e /dev/fuse || echo absent"],
         0, "absent\n", "", "no device unless given"),
        (["run", "--rm", "--device", "/dev/nonexistent-daily", "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r'tsubo: error gathering device information while adding custom '
         r'device "/dev/nonexistent-daily": no such file or directory\n',
         "docker: a missing host device"),
        (["run", "--rm", "--device", str(regular), "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         rf'tsubo: error gathering device information while adding custom device '
         rf'"{regular}": not a device node\n', "docker: not a device node"),
        (["run", "--rm", "--device", "/dev/zero:/dev/z:rwx", "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r"tsubo: parse --device /dev/zero:/dev/z:rwx: bad mode specified: "
         r"rwx[^\n]*\n", "docker: bad mode specified"),
        (["run", "--rm", "--device", "/dev/zero:dev/z", "--rootfs", rootfs, "true"],
         FLAG_ERROR, "", r"tsubo: parse --device /dev/zero:dev/z: dev/z is not an absolute "
         r"path\n", "docker: not an absolute path"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.ids() == []


# ---------------------------------------------------------------------------------------------
# --pid/--ipc/--uts container:NAME, --volumes-from


def test_joining_another_containers_namespaces(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    cli.run_d(["sh", "-c", "touch /tmp/ready; sleep 600"], "--name", "target",
              "--hostname", "targethost", "--sysctl", "kernel.msgmax=12345")
    cli.ok("create", "--name", "stopped", "--rootfs", rootfs, "true")
    assert wait_for(lambda: cli("exec", "target", "test", "-e", "/tmp/ready").returncode == 0,
                    5)
    theirs = {kind: cli.ok("exec", "target", "readlink", f"/proc/self/ns/{kind}")
              for kind in ("pid", "ipc", "uts")}
    rows: list[tuple[object, ...]] = [
        (["run", "--rm", "--pid", "container:target", "--rootfs", rootfs, "sh", "-c",
          "readlink /proc/self/ns/pid; ps -o comm | grep -c '^sleep'"], 0,
         f"{re.escape(theirs['pid'])}1\n", "", "--pid container:NAME sees its processes"),
        (["run", "--rm", "--ipc", "container:target", "--rootfs", rootfs, "sh", "-c",
          "readlink /proc/self/ns/ipc; cat /proc/sys/kernel/msgmax"], 0,
         f"{re.escape(theirs['ipc'])}12345\n", "",
         "--ipc container:NAME: its IPC namespace (and the limits set in it)"),
        (["run", "--rm", "--uts", "container:target", "--rootfs", rootfs, "sh", "-c",
          "readlink /proc/self/ns/uts; hostname"], 0,
         f"{re.escape(theirs['uts'])}targethost\n", "", "--uts container:NAME: its name"),
        (["run", "--rm", "--pid", "container:stopped", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: [^\n]*container stopped is not running\n",
         "docker: cannot join the namespace of a container that is not running"),
        (["run", "--rm", "--ipc", "container:nobody", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: [^\n]*nobody[^\n]*no such container[^\n]*\n", "docker: No such container"),
        (["run", "--rm", "--pid", "container:", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --pid container:: expected container:NAME[^\n]*\n", "no name"),
        (["run", "--rm", "--uts", "container:target", "--hostname", "x", "--rootfs", rootfs,
          "true"], FLAG_ERROR, "", r"tsubo: [^\n]*conflicting options: hostname and the UTS "
         r"mode\n", "docker: conflicting options"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.ok("exec", "target", "hostname") == "targethost\n", "its name is unchanged"
    assert sorted(cli.ok("ps", "-a", "--format", "{{.Names}}").split()) == ["stopped",
                                                                            "target"]
    # a created container joins at start what the named container has then
    cli.ok("create", "--name", "joiner", "--pid", "container:target", "--rootfs", rootfs,
           "sh", "-c", "readlink /proc/self/ns/pid")
    cli.ok("restart", "-t", "0", "target")
    now = cli.ok("exec", "target", "readlink", "/proc/self/ns/pid")  # (its inode may be
    # the old one's again: the kernel reuses them) joined through the target's new pid
    assert cli.ok("start", "-a", "joiner") == now
    cli.ok("stop", "-t", "0", "target")
    proc = cli("start", "joiner")
    assert proc.returncode == 1 and "container target is not running" in one_line(
        proc.stderr), "docker: cannot join the namespace of a container that is not running"
    cli.ok("rm", "-f", "target", "stopped", "joiner")


def test_volumes_from(engine_cli: EngineCLI, tmp_path: Path) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    host_dir = tmp_path / "bound"
    host_dir.mkdir()
    cli.run_d(["sh", "-c", "echo a > /anon/f; echo b > /named/g; sleep 600"], "--name", "vsrc",
              "-v", "/anon", "-v", "daily-named:/named", "-v", f"{host_dir}:/bound:ro")
    assert wait_for(lambda: cli("exec", "vsrc", "test", "-e", "/named/g").returncode == 0, 5)
    read = "cat /anon/f /named/g; touch /bound/x 2>/dev/null || echo bound-ro"
    rows: list[tuple[object, ...]] = [
        (["run", "--rm", "--volumes-from", "vsrc", "--rootfs", rootfs, "sh", "-c",
          f"{read}; echo c > /anon/h && echo anon-rw"], 0, "a\nb\nbound-ro\nanon-rw\n", "",
         "docker --volumes-from: its volumes and binds, their modes kept"),
        (["run", "--rm", "--volumes-from", "vsrc:ro", "--rootfs", rootfs, "sh", "-c",
          "touch /anon/x 2>/dev/null || echo anon-ro"], 0, "anon-ro\n", "",
         "NAME:ro: every one read-only"),
        (["run", "--rm", "--volumes-from", "vsrc", "-v", "/named", "--rootfs", rootfs, "sh",
          "-c", "ls /named | wc -l"], 0, r"\s*0\n", "", "this container's own -v wins"),
        (["run", "--rm", "--volumes-from", "vsrc:rx", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: parse --volumes-from vsrc:rx: expected CONTAINER\[:ro\|rw\]\n",
         "a mode other than ro or rw"),
        (["run", "--rm", "--volumes-from", "nobody", "--rootfs", rootfs, "true"], FLAG_ERROR,
         "", r"tsubo: [^\n]*nobody[^\n]*no such container[^\n]*\n", "docker: No such container"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.ok("exec", "vsrc", "cat", "/anon/h") == "c\n", "the same anonymous volume"
    volumes = cli.ok("volume", "ls", "-q").split()
    assert len(volumes) == 2 and "daily-named" in volumes, "--rm kept the shared volume"
    cli.ok("rm", "-f", "-v", "vsrc")
    assert cli.ok("volume", "ls", "-q").split() == ["daily-named"]
    cli.ok("volume", "rm", "daily-named")


# ---------------------------------------------------------------------------------------------
# --log-driver, --sig-proxy


def test_log_driver(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    cli.run_d(["sh", "-c", "echo hidden; sleep 600"], "--name", "silent", "--log-driver",
              "none")
    rows: list[tuple[object, ...]] = [
        (["logs", "silent"], 1, "", "tsubo: logs silent: configured logging driver does not "
         "support reading\n", "docker: none cannot be read"),
        (["run", "--rm", "--log-driver", "json-file", "--rootfs", rootfs, "echo", "x"], 0,
         "x\n", "", "json-file: the default"),
        (["run", "--rm", "--log-driver", "none", "--rootfs", rootfs, "echo", "y"], 0, "y\n",
         "", "none: an attached run still shows the output"),
        (["create", "--log-driver", "syslog", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --log-driver syslog: expected json-file or none[^\n]*\n",
         "a driver tsubo does not have"),
    ]
    for row in rows:
        _check(cli, row)
    assert cli.inspect("silent")["State"]["Status"] == "running"
    log = Path(cli.inspect("silent")["LogPath"])
    assert not log.exists() or log.stat().st_size == 0, "nothing was logged"
    cli.ok("rm", "-f", "silent")


def _foreground(cli: EngineCLI, *options: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        cli.argv("run", *options, "--name", "fg", "--rootfs", str(cli.rootfs), "sh", "-c",
                 "trap 'echo got TERM; exit 3' TERM; trap 'echo got USR1' USR1; echo ready; "
                 "while :; do usleep 20000; done"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=engine_env())
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def test_sig_proxy(engine_cli: EngineCLI) -> None:
    """docker run (attached) forwards the signals it gets to the container; with
    --sig-proxy=false the CLI dies of them and the container runs on."""
    cli = engine_cli
    process = _foreground(cli)
    assert process.stdout is not None
    process.send_signal(signal.SIGUSR1)
    assert process.stdout.readline() == b"got USR1\n"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (3, b"got TERM\n"), err
    cli.ok("rm", "fg")

    process = _foreground(cli, "--sig-proxy=false")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == -signal.SIGTERM
    time.sleep(0.2)
    assert cli.status("fg") == "running", "the container did not get the signal"
    cli.ok("rm", "-f", "fg")


@pytest.mark.parametrize("flags", [["--privileged"], ["--device", "/dev/zero:/dev/z:r"],
                                   ["--log-driver", "none"]])
def test_the_new_flags_show_in_inspect(engine_cli: EngineCLI, flags: list[str]) -> None:
    cli = engine_cli
    cli.ok("create", "--name", "shown", *flags, "--rootfs", str(cli.rootfs), "true")
    host_config = cli.inspect("shown")["HostConfig"]
    if flags[0] == "--privileged":
        assert host_config["Privileged"] is True
    elif flags[0] == "--device":
        assert host_config["Devices"] == [{"PathOnHost": "/dev/zero",
                                           "PathInContainer": "/dev/z",
                                           "CgroupPermissions": "r"}]
    else:
        assert host_config["LogConfig"] == {"Type": "none", "Config": {}}
    cli.ok("rm", "shown")


# ---------------------------------------------------------------------------------------------
# run -a, --detach-keys


def test_run_attach_streams(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    rootfs = str(cli.rootfs)
    both = ["sh", "-c", "echo out; echo err >&2"]
    rows: list[tuple[object, ...]] = [
        (["run", "--rm", "-a", "stdout", "--rootfs", rootfs, *both], 0, "out\n", "",
         "docker run -a stdout: only its stdout"),
        (["run", "--rm", "-a", "STDERR", "--rootfs", rootfs, *both], 0, "", "err\n",
         "docker run -a STDERR (any case): only its stderr"),
        (["run", "--rm", "-a", "stdout", "-a", "stderr", "--rootfs", rootfs, *both], 0,
         "out\n", "err\n", "both, as without -a"),
        (["run", "--rm", "-a", "bogus", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --attach bogus: valid streams are STDIN, STDOUT and STDERR\n",
         "docker: valid streams are STDIN, STDOUT and STDERR"),
        (["run", "-d", "-a", "stdout", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: run -a: conflicting options: -a and -d\n", "docker: Conflicting options"),
        (["run", "--rm", "--detach-keys", "ctrl-1", "--rootfs", rootfs, "true"], FLAG_ERROR, "",
         r"tsubo: parse --detach-keys ctrl-1: unknown character: 'ctrl-1'[^\n]*\n",
         "docker: Unknown character"),
        (["exec", "--detach-keys", "ctrl-a", "x", "true"], 1, "",
         r"tsubo: exec --detach-keys ctrl-a: an exec session cannot be detached from[^\n]*\n",
         "refused rather than ignored"),
    ]
    for row in rows:
        _check(cli, row)
    proc = cli("run", "--rm", "-i", "-a", "stdin", "-a", "stdout", "--rootfs", rootfs, "cat",
               input="fed\n")
    assert (proc.returncode, proc.stdout) == (0, "fed\n"), proc.stderr
    assert cli.ids() == []


def test_custom_detach_keys(engine_cli: EngineCLI) -> None:
    """docker run/attach --detach-keys ctrl-a,x: typing the sequence on the terminal
    leaves the container running."""
    cli = engine_cli
    code, out = run_in_pty(cli.argv("run", "-it", "--detach-keys", "ctrl-a,x", "--name", "dk",
                                    "--rootfs", str(cli.rootfs), "sh", "-c",
                                    "echo ready; while :; do echo tick; sleep 1; done"),
                           answer=(b"ready", b"\x01x"))
    assert code == 0 and b"detached from" in out, out
    assert cli.status("dk") == "running"
    code, out = run_in_pty(cli.argv("attach", "--detach-keys", "ctrl-[,q", "dk"),
                           answer=(b"tick", b"\x1bq"))
    assert code == 0 and b"detached from" in out, out
    assert cli.status("dk") == "running"
    cli.ok("rm", "-f", "dk")


# ---------------------------------------------------------------------------------------------
# ps -s, ps --filter network=


def test_ps_size_and_network_filter(engine_cli: EngineCLI) -> None:
    cli = engine_cli
    cli.run_d(["sh", "-c", "head -c 5000 /dev/zero > /big; touch /tmp/ready; sleep 600"],
              "--name", "writer", "--network", "none")
    cli.run_d(["sleep", "600"], "--name", "hosted", "--network", "host")
    assert wait_for(lambda: cli("exec", "writer", "test", "-e", "/tmp/ready").returncode == 0,
                    5)
    size = cli.ok("ps", "-s", "--filter", "name=writer", "--format", "{{.Size}}")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)kB \(virtual (\d+(?:\.\d+)?)MB\)\n", size)
    assert match, f"docker ps -s: SIZE is '5kB (virtual 1.2MB)', got {size!r}"
    assert 5 <= float(match[1]) < 6 and float(match[2]) > 1
    table = cli.ok("ps", "-s").splitlines()
    assert table[0].split()[-1] == "SIZE", table[0]
    assert all(re.search(r"B \(virtual [\d.]+[kMG]?B\)$", line) for line in table[1:]), table
    rows: list[tuple[object, ...]] = [
        (["ps", "--filter", "network=none", "--format", "{{.Names}}"], 0, "writer\n", "",
         "docker ps --filter network=NAME"),
        (["ps", "--filter", "network=host", "--format", "{{.Names}}"], 0, "hosted\n", "",
         "the host's network too"),
        (["ps", "--filter", "network=nonet", "--format", "{{.Names}}"], 0, "", "",
         "a network nobody is on"),
        (["ps", "--filter", "net=none"], 1, "", r"tsubo: parse --filter net=none: [^\n]*\n",
         "an unknown filter"),
    ]
    for row in rows:
        _check(cli, row)
    cli.ok("rm", "-f", "writer", "hosted")
