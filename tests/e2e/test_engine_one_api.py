"""One engine, one API (issue 9): both faces, the caller's paths, threads, a monitor that
never stalls and names itself.

- one table of bad ``create`` inputs gives the same one-line error through the CLI
  (``tsubo: MESSAGE``, exit 125) and the Python API (``str(error)``);
- ``--rootfs ./rootfs`` and ``-v ./data:/data`` are the caller's, whichever directory the
  monitor was started from;
- two threads of one program run and exec containers at the same time, and nothing touches
  the program's own stdio;
- while 20 containers start, one container's ``logs -f`` stream never pauses 50 ms;
- the monitor and its keeper are ``tsubo-monitor ROOT`` / ``tsubo-keeper ROOT`` in ``ps``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tsubo
from tests.e2e import engine_fixtures
from tests.e2e.engine_fixtures import EngineCLI, one_line, wait_for
from tsubo.errors import TsuboError

# the fixtures this module uses (imported as values so they register here)
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
engine_cli = engine_fixtures.engine_cli
engine_root = engine_fixtures.engine_root

#: bad input: (CLI flags, API keyword arguments)
BAD_INPUTS: list[tuple[list[str], dict[str, Any]]] = [
    (["--memory", "1k"], {"memory": "1k"}),
    (["--memory", "abc"], {"memory": "abc"}),
    (["--cpu-shares", "1"], {"cpu_shares": "1"}),
    (["--cpus", "0"], {"cpus": "0"}),
    (["--pids-limit", "x"], {"pids_limit": "x"}),
    (["--restart", "sometimes"], {"restart": "sometimes"}),
    (["--rm", "--restart", "always"], {"remove": True, "restart": "always"}),
    (["-v", "/abs:"], {"volumes": ["/abs:"]}),
    (["-v", "/x:relative"], {"volumes": ["/x:relative"]}),
    (["--ulimit", "nofile=10:5"], {"ulimits": ["nofile=10:5"]}),
    (["--cap-add", "NOT_A_CAP"], {"cap_add": ["NOT_A_CAP"]}),
    (["--security-opt", "bogus"], {"security_opt": ["bogus"]}),
    (["--stop-signal", "SIGNOPE"], {"stop_signal": "SIGNOPE"}),
    (["--tmpfs", "/run:bogus=1"], {"tmpfs": ["/run:bogus=1"]}),
    (["--ip", "10.0.0.2"], {"ip": "10.0.0.2"}),
    (["-e", "=x"], {"env": ["=x"]}),
    (["--label", "=x"], {"labels": ["=x"]}),
    (["--pull", "sometimes"], {"pull": "sometimes"}),
    (["--platform", "linux/s390x" if os.uname().machine != "s390x" else "linux/amd64"],
     {"platform": "linux/s390x" if os.uname().machine != "s390x" else "linux/amd64"}),
    (["--device", "/dev/zero:/dev/z:rwx"], {"devices": ["/dev/zero:/dev/z:rwx"]}),
    (["--device", "/dev/nonexistent-daily"], {"devices": ["/dev/nonexistent-daily"]}),
    (["--device", "/etc/hostname"], {"devices": ["/etc/hostname"]}),
    (["--volumes-from", "c:rx"], {"volumes_from": ["c:rx"]}),
    (["--volumes-from", "nobody"], {"volumes_from": ["nobody"]}),
    (["--pid", "container:nobody"], {"pid": "container:nobody"}),
    (["--ipc", "container:"], {"ipc": "container:"}),
    (["--log-driver", "syslog"], {"log_driver": "syslog"}),
    (["--userns", "keep-id"], {"userns": "keep-id"}),
]


def test_the_cli_and_the_api_give_the_same_error_for_the_same_bad_input(
        engine_cli: EngineCLI, engine_root: Path) -> None:
    rootfs = str(engine_cli.rootfs)
    with tsubo.Engine(root=str(engine_root)) as engine:
        for flags, keywords in BAD_INPUTS:
            proc = engine_cli("create", *flags, "--rootfs", rootfs, "true")
            assert proc.returncode == 125, (flags, proc.returncode, proc.stderr)
            cli_message = one_line(proc.stderr).removeprefix("tsubo: ")
            with pytest.raises(TsuboError) as caught:
                engine.create(rootfs=rootfs, command=["true"], **keywords)
            assert str(caught.value) == cli_message, flags
    assert engine_cli.ids() == []
    proc = engine_cli("run", "--rm", "--memory", "1k", "--rootfs", rootfs, "true")
    assert proc.returncode == 125
    assert "Minimum memory limit allowed is 6MB" in one_line(proc.stderr)


def test_api_options_are_type_checked_in_one_line(engine_cli: EngineCLI,
                                                   engine_root: Path) -> None:
    rootfs = str(engine_cli.rootfs)
    with tsubo.Engine(root=str(engine_root)) as engine:
        for keywords in ({"labels": 5}, {"volumes": "x:/y:z:w"}, {"cpus": [1]},
                         {"env": {"A": 1}}, {"tty": "yes"}, {"memory": 1 << 10}):
            with pytest.raises(TsuboError) as caught:
                engine.create(rootfs=rootfs, command=["true"], **keywords)
            assert "\n" not in str(caught.value), keywords
        container = engine.run(rootfs=rootfs, command=["sh", "-c", "echo $A $B"],
                               env={"A": "1", "B": "two"}, labels={"k": "v"},
                               memory=64 << 20, cpus=0.5)
        assert container.wait(10) == 0
        assert container.logs() == b"1 two\n"
        assert container.inspect()["Config"]["Labels"] == {"k": "v"}
        container.remove()


def test_relative_paths_are_the_callers_whoever_started_the_monitor(
        engine_cli: EngineCLI, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "rootfs").symlink_to(engine_cli.rootfs)
    (second / "data").mkdir()
    (second / "data" / "x").write_text("from b\n")
    (second / "env").write_text("FROM_FILE=yes\n")
    argv = engine_cli.argv
    # the monitor starts from directory a, and stays
    subprocess.run(argv("run", "-d", "--name", "anchor", "--rootfs", str(engine_cli.rootfs),
                        "sleep", "600"), cwd=first, check=True, capture_output=True,
                   env=engine_fixtures.engine_env())
    proc = subprocess.run(argv("run", "--rm", "--rootfs", "./rootfs", "-v", "./data:/data",
                               "--env-file", "env", "sh", "-c", "cat /data/x; echo $FROM_FILE"),
                          cwd=second, capture_output=True, text=True,
                          env=engine_fixtures.engine_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from b\nyes\n"
    engine_cli.ok("rm", "-f", "anchor")


def test_two_threads_run_and_exec_at_once_without_touching_our_stdio(
        engine_cli: EngineCLI, engine_root: Path) -> None:
    rootfs = str(engine_cli.rootfs)
    stdio_before = [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            with tsubo.Engine(root=str(engine_root)) as engine, \
                    engine.run(rootfs=rootfs, command=["sleep", "60"],
                               name=f"thread{number}") as container:
                results[number] = [container.exec(["echo", f"{number}-{round_}"]).stdout
                                   for round_ in range(5)]
                results[number].append(container.exec(["cat"], stdin=b"fed\n").stdout)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for number in range(2):
        assert results[number] == [f"{number}-{round_}\n".encode() for round_ in range(5)] \
            + [b"fed\n"]
    assert [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)] == stdio_before
    assert engine_cli.ids() == []


#: starts 20 containers through the API, four threads (an Engine each: its database
#: connection is per thread): argv[1] the root, argv[2] a rootfs
STARTER = """
import sys, threading
import tsubo
def start(numbers):
    with tsubo.Engine(root=sys.argv[1]) as engine:
        for n in numbers:
            engine.run(rootfs=sys.argv[2], command=["sleep", "600"], name=f"s{n}")
threads = [threading.Thread(target=start, args=(range(k, 20, 4),)) for k in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_a_logs_f_stream_never_pauses_50_ms_while_20_containers_start(
        engine_cli: EngineCLI) -> None:
    engine_cli.run_d(["sh", "-c", "while :; do echo x; usleep 5000; done"], "--name", "talker")
    follower = subprocess.Popen(engine_cli.argv("logs", "-f", "--tail", "0", "talker"),
                                stdout=subprocess.PIPE, env=engine_fixtures.engine_env())
    assert follower.stdout is not None
    arrivals: list[float] = []
    stop = threading.Event()

    def read() -> None:
        assert follower.stdout is not None
        for _ in iter(follower.stdout.readline, b""):
            arrivals.append(time.monotonic())
            if stop.is_set():
                return

    reader = threading.Thread(target=read)
    reader.start()
    assert wait_for(lambda: len(arrivals) > 20, 10)
    # The 20 starts come from one other process (the API, four threads): 20 concurrent
    # CLIs would take both cores of a small machine for ~0.5 s, and the gaps measured would
    # be the scheduler's, not the monitor's.
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(engine_cli.root), str(engine_cli.rootfs)],
        env=engine_fixtures.engine_env())
    begin = time.monotonic()
    assert starter.wait(60) == 0
    end = time.monotonic()
    stop.set()
    engine_cli.ok("rm", "-f", "talker", *(f"s{n}" for n in range(20)))
    follower.wait(20)
    reader.join(20)
    follower.stdout.close()
    during = [later - earlier for earlier, later in itertools.pairwise(arrivals)
              if earlier >= begin and later <= end]
    assert len(during) > 10, "no output while the containers started"
    print(f"\nlogs -f while 20 containers started ({end - begin:.2f} s): {len(during)} gaps, "
          f"longest {max(during) * 1000:.1f} ms, median "
          f"{sorted(during)[len(during) // 2] * 1000:.1f} ms")
    assert max(during) < 0.050, f"longest gap {max(during) * 1000:.0f} ms while 20 started"


def test_the_monitor_and_keeper_name_themselves(engine_cli: EngineCLI) -> None:
    engine_cli.run_d(["sleep", "600"], "--name", "named")
    connection = sqlite3.connect(engine_cli.root / "tsubo.db")
    (monitor,) = connection.execute("SELECT monitor_pid FROM containers").fetchone()
    connection.close()
    keeper = int((engine_cli.root / "run" / "keeper.pid").read_text().split()[0])
    for pid, title in ((monitor, "tsubo-monitor"), (keeper, "tsubo-keeper")):
        assert Path(f"/proc/{pid}/comm").read_text().strip() == title
        assert Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode() == \
            f"{title} {engine_cli.root}"
    engine_cli.ok("rm", "-f", "named")
