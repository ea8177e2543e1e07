"""Short layer links and the relative overlay mount (``image/snapshots.py``), on the kernel.

``layer_links`` names, reuses and never rewrites the links in ``l/``; ``mount_relative``
mounts with paths relative to a folder without moving any other thread's cwd; ``mount_root``
takes that path exactly when the full ``lowerdir=`` does not fit one page, and can be forced
onto it for a short chain (the way a kernel without ``lowerdir+`` mounts every long one).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tsubo.engine.storage import ContainerFiles
from tsubo.errors import InvalidArgument, TsuboError
from tsubo.image import snapshots
from tsubo.image.snapshots import (
    layer_links,
    mount_relative,
    mount_root,
    prune_layer_links,
    unmount_root,
)


def make_layers(root: Path, count: int) -> list[str]:
    """*count* layer dirs under ``root/layers`` (bottom first): layer i holds ``/layers/i``
    and ``/top`` = i."""
    paths = []
    for number in range(count):
        layer = root / "layers" / hashlib.sha256(str(number).encode()).hexdigest()
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / str(number)).write_text(f"{number}\n")
        (layer / "top").write_text(f"{number}\n")
        paths.append(str(layer))
    return paths


def container(root: Path, layers: list[str]) -> ContainerFiles:
    files = ContainerFiles(str(root / "containers" / ("c" * 64)))
    files.create(layers[0])
    return files


def test_links_are_short_relative_stable_and_shared(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 3)
    links_dir, names = layer_links(layers)
    assert links_dir == str(tmp_path / "l")
    assert [len(name) for name in names] == [12, 12, 12] and len(set(names)) == 3
    for name, layer in zip(names, layers, strict=True):
        assert os.readlink(tmp_path / "l" / name) == f"../layers/{os.path.basename(layer)}"
        assert os.path.samefile(tmp_path / "l" / name, layer)
    assert layer_links(list(reversed(layers))) == (links_dir, list(reversed(names)))
    assert sorted(os.listdir(links_dir)) == sorted(names)


def test_a_taken_name_moves_the_layer_to_a_longer_one(tmp_path: Path) -> None:
    [layer] = make_layers(tmp_path, 1)
    target = f"../layers/{os.path.basename(layer)}"
    digest = hashlib.sha256(target.encode()).hexdigest()
    (tmp_path / "l").mkdir()
    os.symlink("../layers/" + "0" * 64, tmp_path / "l" / digest[:12])  # dangling, other
    (tmp_path / "l" / digest[:16]).write_text("not a link")
    _, [name] = layer_links([layer])
    assert name == digest[:24]
    assert os.readlink(tmp_path / "l" / digest[:12]) == "../layers/" + "0" * 64  # untouched
    assert prune_layer_links(str(tmp_path / "l")) == [digest[:12]]
    assert sorted(os.listdir(tmp_path / "l")) == sorted([digest[:16], digest[:24]])
    assert prune_layer_links(str(tmp_path / "nowhere")) == []


def test_layers_of_different_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="share one folder"):
        layer_links([str(tmp_path / "a" / "x"), str(tmp_path / "b" / "y")])


def test_relative_mount_leaves_every_threads_cwd_alone(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 2)
    files = container(tmp_path, layers)
    links_dir, names = layer_links(list(reversed(layers)))
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(os.getcwd())

    before = os.getcwd()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):
            mount_relative(links_dir, files.merged,
                           f"lowerdir={':'.join(names)},upperdir={files.directory}/upper,"
                           f"workdir={files.directory}/work")
            assert (Path(files.merged) / "top").read_text() == "1\n"
            unmount_root(files.merged)
    finally:
        stop.set()
        watcher.join()
        unmount_root(files.merged)
    assert os.getcwd() == before and seen == {before}


def test_relative_mount_reports_the_kernels_errno(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 1)
    files = container(tmp_path, layers)
    (tmp_path / "l").mkdir()
    with pytest.raises(FileNotFoundError):
        mount_relative(str(tmp_path / "l"), files.merged,
                       f"lowerdir=nosuchlink,upperdir={files.directory}/upper,"
                       f"workdir={files.directory}/work")
    assert not os.path.ismount(files.merged)


@pytest.mark.parametrize("forced", [False, True])
def test_mount_root_short_chain_plain_or_forced_through_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forced: bool) -> None:
    layers = make_layers(tmp_path, 3)
    files = container(tmp_path, layers)
    if forced:
        monkeypatch.setattr(snapshots, "LINKS_ABOVE", 0)
    mount_root(files, [":".join(reversed(layers))])
    try:
        merged = Path(files.merged)
        assert sorted(os.listdir(merged / "layers")) == ["0", "1", "2"]
        assert (merged / "top").read_text() == "2\n"
        assert (tmp_path / "l").is_dir() == forced
    finally:
        unmount_root(files.merged)


def test_mount_root_long_chain_goes_through_links(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 150)
    files = container(tmp_path, layers)
    mount_root(files, list(reversed(layers)), volatile=True)
    try:
        merged = Path(files.merged)
        assert len(os.listdir(merged / "layers")) == 150
        assert (merged / "top").read_text() == "149\n"
        assert len(os.listdir(tmp_path / "l")) == 150
    finally:
        unmount_root(files.merged)


def test_mount_root_refuses_a_chain_too_long_even_for_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layers = make_layers(tmp_path, 3)
    files = container(tmp_path, layers)
    monkeypatch.setattr(snapshots, "LINKS_ABOVE", 0)
    monkeypatch.setattr(snapshots, "OPTIONS_MAX", 20)
    with pytest.raises(TsuboError, match="exceed one page of mount options even as short"):
        mount_root(files, list(reversed(layers)))
    assert not os.path.ismount(files.merged)
