"""The Python API, end to end: run a container, exec into it, read its logs, stop it.

    sudo .venv/bin/python examples/api.py ROOTFS [ENGINE_ROOT]

ROOTFS is a directory with a userland (scripts/demo.sh builds one from busybox-static);
ENGINE_ROOT defaults to a temporary folder, removed at the end.
"""

from __future__ import annotations

import sys
import tempfile

import tsubo


def main(rootfs: str, root: str) -> int:
    with tsubo.Engine(root=root) as engine:
        # `with` removes the container (force) when the block ends
        with engine.run(rootfs=rootfs, command=["sh", "-c", "echo started; sleep 600"],
                        name="api-demo", memory="64m", pids_limit=64) as container:
            print(f"running {container.name} ({container.id[:12]}), pid {container.pid}")
            result = container.exec(["sh", "-c", "echo hello from $(hostname)"])
            print(f"exec exit code {result.exit_code}: {result.stdout.decode().strip()}")
            print(f"logs: {container.logs().decode().strip()}")
            container.stop(timeout=1)   # sleep as PID 1 ignores TERM: SIGKILL after 1 s
            print(f"stopped: status {container.status}, exit code {container.exit_code}")
        try:
            engine.container("api-demo")
        except tsubo.TsuboError as error:
            print(f"removed: {error}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if len(sys.argv) > 2:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    with tempfile.TemporaryDirectory(prefix="tsubo-api-") as temp:
        sys.exit(main(sys.argv[1], temp))
