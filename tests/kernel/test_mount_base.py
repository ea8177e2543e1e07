"""The mount namespace base new containers are copied from (``kernel.mounts.make_mount_base``),
against the real kernel (root only).

Each scenario runs in a forked child that has unshared a mount namespace of its own with
shared propagation (as a systemd host has it), so nothing here touches the host's mounts;
the child reports what it saw as JSON on a pipe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tsubo.kernel import mounts, syscalls
from tsubo.kernel.flags import CLONE_NEWNS, MNT_DETACH, MS_PRIVATE, MS_REC, MS_SHARED


def in_child(action: Callable[[], object]) -> object:
    """Run *action* in a forked child; what it returns, sent back as JSON (a failure: its
    repr, and the test fails)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        status = 0
        try:
            result: object = action()
        except BaseException as error:
            result = {"error": repr(error)}
            status = 1
        os.write(write_fd, json.dumps(result).encode())
        os._exit(status)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"null")
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


def in_private_mounts(scenario: Callable[[], object]) -> object:
    """Run *scenario* in a child with a mount namespace of its own (rshared inside)."""

    def private() -> object:
        syscalls.unshare(CLONE_NEWNS)
        syscalls.mount(None, "/", None, MS_PRIVATE | MS_REC)
        syscalls.mount(None, "/", None, MS_SHARED | MS_REC)
        return scenario()

    return in_child(private)


def points_in(namespace_fd: int) -> list[str]:
    """The mount points of the namespace *namespace_fd*, seen by a forked child."""

    def look() -> list[str]:
        syscalls.setns(namespace_fd, CLONE_NEWNS)
        with open("/proc/self/mountinfo", "rb") as mountinfo:
            return [line.split(b" ")[4].decode() for line in mountinfo]

    points = in_child(look)
    assert isinstance(points, list)
    return points


def test_the_base_leaves_out_the_engines_mounts_and_keeps_the_hosts(tmp_path: Path) -> None:
    data, pins, elsewhere = tmp_path / "data", tmp_path / "netns", tmp_path / "elsewhere"
    for folder in (data, pins, elsewhere):
        folder.mkdir(parents=True)
    (pins / "pin").touch()

    def scenario() -> dict[str, list[str]]:
        # the data root a file system of its own (below a folder that is not a mount point,
        # what a shared host mounts there later still reaches the base: docs/performance.md)
        syscalls.mount("tmpfs", str(data), "tmpfs")
        (data / "containers" / "a" / "merged").mkdir(parents=True)
        syscalls.mount("tmpfs", str(data / "containers" / "a" / "merged"), "tmpfs")
        syscalls.mount("tmpfs", str(pins), "tmpfs")  # a mount point of its own, as /run/netns
        (pins / "pin").touch()
        syscalls.mount(str(pins / "pin"), str(pins / "pin"), None, 4096)  # MS_BIND
        base = mounts.make_mount_base([str(data), str(pins)])
        before = points_in(base)
        (data / "containers" / "b" / "merged").mkdir(parents=True)
        syscalls.mount("tmpfs", str(data / "containers" / "b" / "merged"), "tmpfs")
        (pins / "later").touch()
        syscalls.mount(str(pins / "later"), str(pins / "later"), None, 4096)
        syscalls.mount("tmpfs", str(elsewhere), "tmpfs")  # the host's: must reach the base
        after = points_in(base)
        for point in (pins / "later", pins / "pin", pins, elsewhere,
                      data / "containers" / "b" / "merged", data / "containers" / "a" / "merged",
                      data):
            syscalls.umount2(str(point), MNT_DETACH)
        os.close(base)
        return {"before": before, "after": after}

    seen = in_private_mounts(scenario)
    assert isinstance(seen, dict)
    ours = [str(data) + "/", str(pins) + "/"]
    for moment in ("before", "after"):
        assert not [p for p in seen[moment] if p.startswith(tuple(ours))], (moment, seen)
    assert str(elsewhere) in seen["after"]
    assert str(elsewhere) not in seen["before"]


def test_a_cloned_mount_is_attached_in_another_namespace(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()

    def scenario() -> list[str]:
        syscalls.mount("tmpfs", str(source), "tmpfs")
        (source / "marker").write_text("root")
        clone = mounts.clone_mount(str(source))
        base = mounts.make_mount_base([str(tmp_path)])

        def attach() -> list[str]:
            syscalls.setns(base, CLONE_NEWNS)
            syscalls.unshare(CLONE_NEWNS)
            mounts.attach_mount(clone, str(target))
            return os.listdir(target)

        listed = in_child(attach)
        assert isinstance(listed, list)
        os.close(clone)
        os.close(base)
        syscalls.umount2(str(source), MNT_DETACH)
        return list(listed) + os.listdir(target)  # the target stays empty here

    assert in_private_mounts(scenario) == ["marker"]


def test_umount2_reports_its_failures(tmp_path: Path) -> None:
    """glibc's int return read as long hid every failure (-1 came back as 2**32 - 1)."""
    try:
        syscalls.umount2(str(tmp_path), MNT_DETACH)
    except OSError as error:
        assert error.errno == 22  # EINVAL: not a mount point
    else:
        raise AssertionError("umount2 of a plain folder did not fail")
