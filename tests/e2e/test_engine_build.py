"""``tsubo build``, ``diff``, ``commit`` and ``export`` on real containers and overlay mounts.

Each test gets its own engine root (``engine_cli``: its teardown fails on a container,
monitor or mount left behind) with the busybox rootfs imported as ``bb``. Built images are
checked by running them, by reading their layer tars from the blob store, and against
``buildah bud`` of the same Dockerfile (Debian's buildah, all of its storage in a temp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import engine_fixtures, registry_fixtures
from tests.e2e.engine_fixtures import EngineCLI

engine_cli = engine_fixtures.engine_cli
engine_cgroup_parents = engine_fixtures.engine_cgroup_parents
rootfs_tar = engine_fixtures.rootfs_tar

BUILD_TIMEOUT = 120.0


@pytest.fixture
def tsubo(engine_cli: EngineCLI, rootfs_tar: Path) -> EngineCLI:
    """An engine root with the busybox rootfs imported as ``bb``."""
    engine_cli.ok("import", str(rootfs_tar), "bb")
    return engine_cli


def write_context(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def build(cli: EngineCLI, context: Path, *args: str, ok: bool = True
          ) -> subprocess.CompletedProcess[str]:
    proc = cli("build", "--network", "none", *args, str(context), timeout=BUILD_TIMEOUT)
    if ok:
        assert proc.returncode == 0, f"build failed: {proc.stdout}\n{proc.stderr}"
        assert proc.stderr == "", proc.stderr
    return proc


def image_id(proc: subprocess.CompletedProcess[str]) -> str:
    last = proc.stdout.splitlines()[-1]
    assert engine_fixtures.HEX64.match(last), proc.stdout
    return last


def layer_names(cli: EngineCLI, diff_id: str) -> list[str]:
    """The entry names of a built layer's tar (stored uncompressed: blob = diff_id)."""
    blob = cli.root / "blobs" / "sha256" / diff_id.removeprefix("sha256:")
    with tarfile.open(blob) as tar:
        return tar.getnames()


def blob_names(cli: EngineCLI) -> set[str]:
    return {f"sha256:{path.name}" for path in (cli.root / "blobs" / "sha256").iterdir()}


def run(cli: EngineCLI, image: str, *command: str) -> str:
    return cli.ok("run", "--rm", "--network", "none", image, *command)


# --- instructions -----------------------------------------------------------------------------

DOCKERFILE_ALL = """\
# syntax=docker/dockerfile:1
ARG BASE=bb
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    MODE="two words"
LABEL org.example.name="built by tsubo" version=1
RUN echo "$GREETING from RUN" > /greeting && mkdir -p $APP_HOME
WORKDIR $APP_HOME
COPY --chown=1000:1000 --chmod=750 files/ ./files/
ADD layer.tar.gz /unpacked/
COPY <<EOF /etc/motd
message of the day in $APP_HOME, not \\$HOME
EOF
SHELL ["/bin/sh", "-ec"]
RUN test "$(pwd)" = /srv/app && echo "shell ok $MODE" > shell.txt
USER 1000:1000
RUN id -u > /tmp/uid
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q localhost:8080 || exit 1
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /greeting"]
"""


def _all_context(tmp_path: Path) -> Path:
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": DOCKERFILE_ALL, "files/a.txt": "A\n", "files/sub/b.txt": "B\n"})
    inner = tmp_path / "inner"
    write_context(inner, {"top.txt": "top\n", "deep/x.txt": "x\n"})
    with tarfile.open(context / "layer.tar.gz", "w:gz") as tar:
        tar.add(inner, arcname=".")
    return context


def test_every_instruction_lands_in_the_image(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = _all_context(tmp_path)
    proc = build(tsubo, context, "-t", "all:1", "--build-arg", "GREETING=hi")
    lines = proc.stdout.splitlines()
    assert lines[1] == "STEP 1/20: FROM ${BASE} AS base"
    assert "hi from RUN" not in proc.stdout  # written to a file, not printed
    assert any(line.startswith("STEP 20/20: CMD") for line in lines)
    assert "COMMIT all:1" in lines
    config = tsubo.inspect("all:1")["Config"]
    assert config["Env"][-2:] == ["APP_HOME=/srv/app", "MODE=two words"]
    assert config["Labels"] == {"org.example.name": "built by tsubo", "version": "1"}
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "1000:1000"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost:8080 || exit 1"],
        "Interval": 30_000_000_000, "Timeout": 5_000_000_000, "Retries": 3}
    assert config["OnBuild"] == ["RUN echo triggered"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["cat /greeting"]
    # the files each step made
    assert run(tsubo, "all:1") == "hi from RUN\n"
    assert run(tsubo, "all:1", "cat shell.txt /tmp/uid /etc/motd") == \
        "shell ok two words\n1000\nmessage of the day in /srv/app, not $HOME\n"
    listing = run(tsubo, "all:1", "ls -ln files files/sub | grep txt; cat /unpacked/deep/x.txt")
    assert listing.split("\n")[0].split()[:4] == ["-rwxr-x---", "1", "1000", "1000"]
    assert listing.endswith("x\n")
    # history: the base layer's entry (bb was imported: none), then one entry a step
    # after FROM, metadata steps marked empty_layer; one non-empty entry a layer
    with open(tsubo.root / "blobs" / "sha256" / tsubo.inspect("all:1")["Id"].split(":")[1],
              encoding="utf-8") as config_blob:
        history = json.load(config_blob)["history"]
    assert len(history) == 20 and "empty_layer" not in history[0]
    history = history[1:]
    assert history[0]["created_by"] == "ARG GREETING=hello" and history[0]["empty_layer"]
    assert history[3]["created_by"].startswith("RUN |1 GREETING=hi /bin/sh -c echo")
    assert "empty_layer" not in history[3]
    layers = tsubo.inspect("all:1")["RootFS"]["Layers"]
    assert len(layers) == 1 + sum(1 for entry in history if not entry.get("empty_layer"))


def test_multi_stage_build_target_and_copy_from(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {"Dockerfile": """\
FROM bb AS builder
RUN mkdir /out && echo compiled > /out/app && echo junk > /out/junk
FROM builder AS tester
RUN echo tested > /out/test-report
FROM scratch
COPY --from=builder /out/app /app
COPY --from=0 /bin/busybox /bin/busybox
"""})
    final_proc = build(tsubo, context, "-t", "final")
    final = image_id(final_proc)
    assert "STEP 5/5: COPY --from=0" in final_proc.stdout
    assert "tested" not in final_proc.stdout  # a stage the target does not need: skipped
    assert tsubo.inspect("final")["Id"] == f"sha256:{final}"
    [first] = tsubo.inspect("final")["RootFS"]["Layers"][:1]
    assert layer_names(tsubo, first) == ["app"]
    assert run(tsubo, "final", "/bin/busybox", "cat", "/app") == "compiled\n"
    assert tsubo("run", "--rm", "--network", "none", "final", "/bin/busybox", "ls",
                 "/out").returncode != 0
    # the builder stage's layers are kept by the cache alone: builder prune removes them
    layers = set(os.listdir(tsubo.root / "layers"))
    pruned = tsubo.ok("builder", "prune", "-f").splitlines()
    assert pruned[0] == "Deleted build cache entries: 3" and pruned[1] != \
        "Total reclaimed space: 0B"
    kept = set(os.listdir(tsubo.root / "layers"))
    in_images = {diff_id.split(":")[1] for ref in ("final", "bb")
                 for diff_id in tsubo.inspect(ref)["RootFS"]["Layers"]}
    assert kept == in_images and layers - kept
    assert run(tsubo, "final", "/bin/busybox", "cat", "/app") == "compiled\n"
    assert "Using cache" not in build(tsubo, context).stdout
    refused = tsubo("builder", "prune")  # stdin is not a terminal: no silent yes
    assert refused.returncode == 1 and "add -f" in engine_fixtures.one_line(refused.stderr)
    tester = build(tsubo, context, "--target", "tester", "-t", "tester")
    assert "STEP 4/4: RUN echo tested" in tester.stdout
    assert run(tsubo, "tester", "cat", "/out/test-report") == "tested\n"
    missing = build(tsubo, context, "--target", "nope", ok=False)
    assert missing.returncode == 1
    assert engine_fixtures.one_line(missing.stderr).endswith("nope: no stage of that name "
                                                             "(--target)")


def test_workdir_quiet_iidfile_and_the_python_api(tsubo: EngineCLI, tmp_path: Path) -> None:
    import tsubo as tsubo_api

    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nWORKDIR /made/here\nRUN touch inside\nWORKDIR /tmp\n"})
    iidfile = tmp_path / "iid"
    quiet = build(tsubo, context, "-q", "--iidfile", str(iidfile), "-t", "wd")
    assert quiet.stdout == iidfile.read_text() + "\n"  # only the ID
    assert run(tsubo, "wd", "ls", "/made/here") == "inside\n"
    history = [entry.get("created_by") for entry in json.loads(
        (tsubo.root / "blobs" / "sha256" / iidfile.read_text().split(":")[1]).read_text()
    )["history"]]
    assert history == ["", "WORKDIR /made/here", "RUN /bin/sh -c touch inside",
                       "WORKDIR /tmp"]
    sizes = [line.split()[-3] for line in tsubo.ok("image", "history", "wd").splitlines()[1:]]
    assert sizes[-1] != "0B" and sizes[0] == "0B"  # the base layer's size on its own line
    said: list[str] = []
    printed: list[bytes] = []
    (context / "Dockerfile").write_text("FROM --platform=$TARGETPLATFORM wd\nARG TARGETOS\n"
                                        "RUN echo from the API on $TARGETOS; pwd\n")
    with tsubo_api.Engine(str(tsubo.root)) as engine:
        image = engine.build(str(context), tags=["api:1"], network="none",
                             say=said.append, output=printed.append)
        assert engine.image("api:1").id == image.id
    assert said[:3] == ["STEP 1/3: FROM --platform=$TARGETPLATFORM wd",
                        "STEP 2/3: ARG TARGETOS",
                        "STEP 3/3: RUN echo from the API on $TARGETOS; pwd"]
    assert said[-1] == "Successfully tagged docker.io/library/api:1"
    assert b"".join(printed) == b"from the API on linux\n/tmp\n"


def test_onbuild_triggers_stdin_context_and_compressed_add(tsubo: EngineCLI,
                                                         tmp_path: Path) -> None:
    parent = write_context(tmp_path / "parent", {
        "Dockerfile": "FROM bb\nONBUILD COPY marker /from-trigger\n"
                      "ONBUILD RUN echo triggered > /trigger\n"})
    build(tsubo, parent, "-t", "parent")
    assert tsubo.inspect("parent")["Config"]["OnBuild"] == [
        "COPY marker /from-trigger", "RUN echo triggered > /trigger"]
    child = write_context(tmp_path / "child", {
        "Dockerfile": "FROM parent\nADD tree.tar.xz /xz/\n", "marker": "from the child\n"})
    inner = write_context(tmp_path / "inner", {"in/xz.txt": "unpacked\n"})
    with tarfile.open(child / "tree.tar.xz", "w:xz") as tar:
        tar.add(inner, arcname=".")
    blobs_before = blob_names(tsubo)
    archive = tmp_path / "context.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(child, arcname=".")
    with archive.open("rb") as stdin:
        proc = subprocess.run(tsubo.argv("build", "--network", "none", "-t", "child", "-"),
                              stdin=stdin, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT, env=engine_fixtures.engine_env())
    assert proc.returncode == 0, proc.stderr
    assert "--> ONBUILD RUN echo triggered > /trigger" in proc.stdout
    assert run(tsubo, "child", "cat", "/from-trigger", "/trigger", "/xz/in/xz.txt") == \
        "from the child\ntriggered\nunpacked\n"
    assert tsubo.inspect("child")["Config"].get("OnBuild") is None  # not passed on
    assert list((tsubo.root / "build").iterdir()) == []  # the unpacked context is gone
    # new blobs: the child's config and its new layers; nothing of the step images its
    # RUN steps were started from
    new_blobs = blob_names(tsubo) - blobs_before
    built = tsubo.inspect("child")
    assert new_blobs == {built["Id"], *(set(built["RootFS"]["Layers"]) -
                                        set(tsubo.inspect("parent")["RootFS"]["Layers"]))}


def test_whiteouts_and_opaque_directories(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {"Dockerfile": """\
FROM bb
RUN mkdir -p /d/old /keep && touch /d/old/f /d/x /keep/gone /keep/stays
RUN rm /keep/gone && rm -rf /d && mkdir /d && touch /d/new
"""})
    build(tsubo, context, "-t", "wh")
    last = tsubo.inspect("wh")["RootFS"]["Layers"][-1]
    names = layer_names(tsubo, last)
    assert names == ["d", "d/.wh..wh..opq", "d/new", "keep", "keep/.wh.gone"]
    assert run(tsubo, "wh", "ls", "-A", "/d", "/keep") == "/d:\nnew\n\n/keep:\nstays\n"


def test_dockerignore_and_what_leaves_the_context(tsubo: EngineCLI, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host secret\n")
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nCOPY . /ctx/\n", ".dockerignore": "*.log\nsecret/\n!keep.log\n",
        "a.log": "x", "keep.log": "kept\n", "secret/key": "k", "src/main.c": "int main;\n"})
    (context / "link-out").symlink_to(outside)
    (context / "link-in").symlink_to("/src/main.c")  # absolute: the context's root
    (context / "Dockerfile").write_text("FROM bb\nCOPY . /ctx/\nCOPY link-in /followed\n")
    build(tsubo, context, "-t", "ctx")
    listing = run(tsubo, "ctx", "sh", "-c", "cd /ctx && find . | sort; readlink link-out")
    assert listing.split("\n") == [".", "./.dockerignore", "./Dockerfile", "./keep.log",
                                   "./link-in", "./link-out", "./src", "./src/main.c",
                                   str(outside), ""]
    assert run(tsubo, "ctx", "cat", "/followed") == "int main;\n"  # a named link: followed
    for dockerfile, detail in (("COPY ../outside.txt /", "is outside the build context"),
                               ("COPY link-out /", "is a symlink to nothing in the build"),
                               ("COPY a.log /", "excluded by .dockerignore"),
                               ("COPY nothing* /", "no source files were specified"),
                               ("ADD http://example.com/x /", "remote source")):
        proc = tsubo("build", "-f", "-", str(context), input=f"FROM bb\n{dockerfile}\n")
        assert proc.returncode == 1
        assert detail in engine_fixtures.one_line(proc.stderr)


def test_hostile_trees_stay_inside(tsubo: EngineCLI, tmp_path: Path) -> None:
    """What RUN steps plant (a symlink to /, a FIFO, a device node, a symlink to a host
    file) is copied as what it is, never followed or opened; COPY through the symlink lands
    inside the image; ADD of an archive with ``../`` entries is refused."""
    marker = tmp_path / "host-marker"
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\n"
                      "RUN ln -s / /escape && mkfifo /fifo && mknod /null c 1 3"
                      f" && ln -s {marker} /host-link\n"
                      f"COPY f /escape{tmp_path}/host-marker\n",
        "f": "inside\n"})
    build(tsubo, context, "-t", "hostile")
    assert not marker.exists()  # the COPY went into the image, not to the host
    assert run(tsubo, "hostile", "cat", f"{tmp_path}/host-marker") == "inside\n"
    run_layer = tsubo.inspect("hostile")["RootFS"]["Layers"][1].split(":")[1]
    with tarfile.open(tsubo.root / "blobs" / "sha256" / run_layer) as tar:
        names = {member.name: member for member in tar.getmembers()}
    assert names["fifo"].isfifo() and names["null"].ischr()
    assert names["escape"].issym() and names["escape"].linkname == "/"
    assert names["host-link"].linkname == str(marker)
    inner = tmp_path / "evil"
    inner.mkdir()
    (inner / "x").write_text("x")
    with tarfile.open(context / "evil.tar", "w") as tar:
        tar.add(inner / "x", arcname="../../outside-x")
    proc = tsubo("build", "-f", "-", str(context), input="FROM bb\nADD evil.tar /a/\n")
    assert proc.returncode == 1
    assert "outside-x" in engine_fixtures.one_line(proc.stderr), proc.stderr
    assert not (tmp_path / "outside-x").exists()


def test_cache_hits_and_misses(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nARG V=1\nRUN echo first $V > /first\nCOPY one.txt /\n"
                      "RUN cat /one.txt > /copy\nCOPY two.txt /\n",
        "one.txt": "one\n", "two.txt": "two\n"})
    first = build(tsubo, context, "-t", "cached")
    assert "Using cache" not in first.stdout
    again = build(tsubo, context, "-t", "cached")
    assert again.stdout.count("--> Using cache") == 4
    assert image_id(again) == image_id(first)  # same layers, same times: the same image
    os.utime(context / "one.txt", (time.time() + 100, time.time() + 100))  # mtime only
    assert build(tsubo, context).stdout.count("--> Using cache") == 4
    (context / "one.txt").write_text("ONE\n")
    changed = build(tsubo, context, "-t", "cached")
    assert changed.stdout.count("--> Using cache") == 1  # the RUN before the COPY
    assert run(tsubo, "cached", "cat", "/copy") == "ONE\n"
    os.chmod(context / "two.txt", 0o600)  # the mode counts
    assert build(tsubo, context).stdout.count("--> Using cache") == 3
    assert build(tsubo, context, "--build-arg", "V=2").stdout.count("--> Using cache") == 0
    assert build(tsubo, context, "--no-cache").stdout.count("--> Using cache") == 0


def test_a_failing_step_leaves_nothing(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nCOPY f /f\nRUN echo about to fail; exit 3\nRUN echo never\n",
        "f": "content\n"})
    layers_before = sorted(os.listdir(tsubo.root / "layers"))
    images_before = tsubo.ok("images", "-q")
    proc = build(tsubo, context, "-t", "broken", ok=False)
    assert proc.returncode == 1
    assert "about to fail" in proc.stdout and "never" not in proc.stdout
    assert engine_fixtures.one_line(proc.stderr) == (
        "tsubo: build step 3/4 (Dockerfile:3) RUN echo about to fail; exit 3: exit code 3")
    assert tsubo.ok("images", "-q") == images_before
    assert tsubo.ids() == []
    assert sorted(os.listdir(tsubo.root / "layers")) == layers_before
    assert list((tsubo.root / "build").iterdir()) == []
    assert engine_fixtures.mounts_under(tsubo.root) == []
    # bad input: one line each, nothing made
    for args, stdin, detail in (
            (["-f", str(tmp_path / "nope")], None, "no such Dockerfile"),
            (["--network", "moon"], None, "expected bridge, none or host"),
            (["-f", "-"], "FROM bb\nFROBNICATE\n", "Dockerfile:2: unknown instruction"),
            (["-f", "-"], "RUN true\n", "RUN before the first FROM"),
            (["-f", "-"], "FROM bb\nCOPY --chown=nobody-here f /\n", "--chown=nobody-here"),
            (["--platform", "linux/s390x"], None, "images can be built here"),
            (["-f", "-"], "FROM --platform=linux/s390x bb\n", "images can be built here")):
        bad = tsubo("build", *args, str(context), input=stdin)
        assert bad.returncode == 1 and detail in engine_fixtures.one_line(bad.stderr), bad
    assert tsubo.ok("images", "-q") == images_before
    assert sorted(os.listdir(tsubo.root / "layers")) == layers_before


def test_fixed_timestamp_gives_the_same_image(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nCOPY f /f\nRUN date > /now\n", "f": "x\n"})
    one = image_id(build(tsubo, context, "--no-cache", "--timestamp", "1700000000"))
    two_proc = tsubo("build", "--network", "none", "--no-cache", str(context),
                     timeout=BUILD_TIMEOUT)
    assert two_proc.returncode == 0
    record = tsubo.inspect(one)
    assert record["Created"] == "2023-11-14T22:13:20Z"
    names = layer_names(tsubo, record["RootFS"]["Layers"][-2])
    assert names == ["f"]
    blob = tsubo.root / "blobs" / "sha256" / record["RootFS"]["Layers"][-2].split(":")[1]
    with tarfile.open(blob) as tar:
        assert {member.mtime for member in tar.getmembers()} == {1700000000}


# --- diff, commit, export ---------------------------------------------------------------------

def test_diff_commit_and_export_of_a_container(tsubo: EngineCLI, tmp_path: Path) -> None:
    tsubo.ok("run", "--name", "changed", "--network", "none", "bb", "sh", "-c",
             "rm /bin/ls; mkdir -p /new/dir; echo data > /new/dir/f; echo more >> /etc/passwd;"
             " rm -rf /home; mkdir /home; touch /home/fresh")
    changes = tsubo.ok("diff", "changed").splitlines()
    assert changes[:3] == ["C /bin", "D /bin/ls", "C /etc"]
    assert "C /etc/passwd" in changes and "A /new/dir/f" in changes
    assert "C /home" in changes and "D /home/tsubotest" in changes
    assert "A /home/fresh" in changes
    assert not any(line.endswith(("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"))
                   for line in changes)
    image = tsubo.ok("commit", "-c", 'CMD ["cat", "/new/dir/f"]', "-c", "ENV A=1",
                     "-m", "my change", "changed", "committed:1").strip()
    assert image.startswith("sha256:")
    assert run(tsubo, "committed:1") == "data\n"
    assert tsubo.inspect("committed:1")["Config"]["Env"][-1] == "A=1"
    assert tsubo("run", "--rm", "--network", "none", "committed:1", "ls").returncode == 127
    assert run(tsubo, "committed:1", "busybox", "ls", "-A", "/home") == "fresh\n"
    export = tmp_path / "c.tar"
    tsubo.ok("export", "changed", "-o", str(export))
    with tarfile.open(export) as tar:
        names = set(tar.getnames())
    assert {"new/dir/f", "home/fresh", "bin/busybox"} <= names
    assert "bin/ls" not in names and "home/tsubotest" not in names
    assert engine_fixtures.mounts_under(tsubo.root) == []  # mounted for the copy only
    piped = tsubo("export", "changed")
    assert piped.returncode == 0 and len(piped.stdout) > 0
    missing = tsubo("diff", "nosuch")
    assert missing.returncode == 1 and "nosuch" in engine_fixtures.one_line(missing.stderr)


def test_commit_and_export_of_a_running_container(tsubo: EngineCLI, tmp_path: Path) -> None:
    tsubo.ok("run", "-d", "--name", "live", "--network", "none", "bb", "sh", "-c",
             "echo written > /live; sleep 60")
    assert engine_fixtures.wait_for(lambda: tsubo("diff", "live").stdout == "A /live\n", 10)
    tsubo.ok("commit", "live", "snapshot")  # paused while read, running again after
    assert tsubo.status("live") == "running"
    assert run(tsubo, "snapshot", "cat", "/live") == "written\n"
    out = tmp_path / "live.tar"
    tsubo.ok("export", "-o", str(out), "live")  # its mounted root, read as it is
    with tarfile.open(out) as tar:
        extracted = tar.extractfile("live")
        assert extracted is not None and extracted.read() == b"written\n"
    tsubo.ok("rm", "-f", "live")


# --- against buildah --------------------------------------------------------------------------

COMPARED_DOCKERFILE = """\
FROM bb
ENV A=1 B="two words"
RUN mkdir -p /app/logs /gone && touch /gone/x && ln -s /app/logs /logs && echo hi > /app/hi
COPY --chown=1000:1000 src/ /app/src/
COPY --chmod=755 tool.sh /usr/local/bin/tool
WORKDIR /app
RUN rm -rf /gone && rm /bin/ls && chmod 700 /app/logs
USER 1000
EXPOSE 80/tcp
VOLUME /data
LABEL purpose=compare
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s CMD true
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "cat /app/hi"]
"""

COMPARED_MULTI_STAGE = """\
ARG BASE=bb
FROM $BASE AS tools
RUN mkdir -p /opt/tool/lib /opt/tool/old && echo v1 > /opt/tool/lib/so && touch /opt/tool/old/x
RUN rm -rf /opt/tool/old && mkdir /opt/tool/old && echo new > /opt/tool/old/y \\
    && rm /opt/tool/lib/so && ln /opt/tool/old/y /opt/tool/hard
FROM bb
ADD tree.tar.gz /srv/
COPY --from=tools /opt/tool /opt/tool
COPY . /ctx/
RUN chown -R 1000:1000 /srv && chmod 1777 /srv
"""

BUILDAH_STORAGE_CONF = """\
[storage]
driver = "vfs"
runroot = "{tmp}/run"
graphroot = "{tmp}/graph"
"""


class Buildah:
    """Debian's buildah with everything it keeps in *tmp* (vfs storage: no mounts)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir()
        (tmp / "storage.conf").write_text(BUILDAH_STORAGE_CONF.format(tmp=tmp))
        (tmp / "registries.conf").write_text("unqualified-search-registries = []\n")
        (tmp / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        (tmp / "containers.conf").write_text("[engine]\ncgroup_manager = \"cgroupfs\"\n"
                                             "events_logger = \"file\"\n")
        (tmp / "tmp").mkdir()

    def __call__(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONTAINER", "BUILDAH", "REGISTRY_AUTH"))}
        env.update(CONTAINERS_STORAGE_CONF=str(self.tmp / "storage.conf"),
                   CONTAINERS_REGISTRIES_CONF=str(self.tmp / "registries.conf"),
                   CONTAINERS_CONF=str(self.tmp / "containers.conf"),
                   TMPDIR=str(self.tmp / "tmp"), HOME=str(self.tmp))
        proc = subprocess.run(
            ["buildah", "--root", str(self.tmp / "graph"), "--runroot", str(self.tmp / "run"),
             "--storage-driver", "vfs", *args], env=env, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL, check=False, cwd=self.tmp)
        assert proc.returncode == 0, f"buildah {args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout


@pytest.fixture
def buildah(tmp_path: Path) -> Buildah:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (scripts/install.sh installs it)")
    return Buildah(tmp_path / "buildah")


def _config_fields(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) or None for key in (
        "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
        "Labels", "StopSignal", "Healthcheck")}


def _compared_context(tmp_path: Path, which: str) -> Path:
    if which == "instructions":
        return write_context(tmp_path / "ctx", {
            "Dockerfile": COMPARED_DOCKERFILE, "src/main.c": "int main(void) { return 0; }\n",
            "src/inc/a.h": "#define A 1\n", "tool.sh": "#!/bin/sh\necho tool\n"})
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": COMPARED_MULTI_STAGE, ".dockerignore": "*.tmp\n",
        "keep/a": "a\n", "drop.tmp": "x"})
    inner = write_context(tmp_path / "tree", {"etc/app.conf": "k=v\n", "bin/run": "#!\n"})
    os.chmod(inner / "bin" / "run", 0o755)
    (inner / "link").symlink_to("etc/app.conf")
    with tarfile.open(context / "tree.tar.gz", "w:gz") as tar:
        tar.add(inner, arcname=".")
    return context


@pytest.mark.parametrize("which", ["instructions", "multi-stage"])
def test_the_built_tree_and_config_match_buildah(tsubo: EngineCLI, buildah: Buildah,
                                                 tmp_path: Path, which: str) -> None:
    context = _compared_context(tmp_path, which)
    build(tsubo, context, "-t", "cmp")
    archive = tmp_path / "bb.tar"
    tsubo.ok("save", "-o", str(archive), "bb")
    loaded = buildah("pull", "--signature-policy", str(buildah.tmp / "policy.json"), "-q",
                     f"docker-archive:{archive}").strip()
    buildah("tag", loaded, "bb")
    buildah("bud", "--isolation", "chroot", "--format", "docker",
            "--signature-policy", str(buildah.tmp / "policy.json"), "-t", "cmp",
            str(context))
    inspected = json.loads(buildah("inspect", "--type", "image", "cmp"))
    reference_config = inspected["Docker"]["config"]
    reference_config["Labels"].pop("io.buildah.version", None)
    ours = tsubo.inspect("cmp")["Config"]
    assert _config_fields(ours) == _config_fields(reference_config)
    # the file trees: buildah's container root (vfs: a plain directory) against an overlay
    # of our layers
    container = buildah("from", "--pull-never", "cmp").strip()
    try:
        reference_root = Path(buildah("mount", container).strip())
        expected = registry_fixtures.scan_tree(reference_root)
    finally:
        buildah("rm", container)
    layers = [tsubo.root / "layers" / d.split(":")[1]
              for d in tsubo.inspect("cmp")["RootFS"]["Layers"]]
    actual = registry_fixtures.merged_layers_tree(layers, tmp_path / "mnt")
    for tree in (expected, actual):  # where each builder's runtime made mount points
        for path in ("/data", "/run"):
            tree.pop(path, None)
    assert registry_fixtures.diff_trees(expected, actual, ("buildah", "tsubo")) == ""


# --- networks and registries --------------------------------------------------------------------

def test_run_steps_get_the_default_bridge_unless_told(tsubo: EngineCLI, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nRUN ip -o -4 addr show eth0 | wc -l > /eth0-count\n"})
    try:
        proc = tsubo("build", "-t", "net", str(context), timeout=BUILD_TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    finally:  # the default network (its bridge, the nft table) outlives the build
        removed = tsubo("network", "rm", "bridge")
    assert removed.returncode == 0, removed.stderr
    assert run(tsubo, "net", "cat", "/eth0-count") == "1\n"
    none = build(tsubo, context, "--no-cache", "-t", "nonet")
    assert "Using cache" not in none.stdout  # the network is part of the step's key
    assert run(tsubo, "nonet", "cat", "/eth0-count") == "0\n"


registry = registry_fixtures.registry


def test_a_built_image_pushes_and_skopeo_reads_it(
        registry: registry_fixtures.Registry, tsubo: EngineCLI, tmp_path: Path) -> None:
    from tests.e2e.test_engine_pull import image_layers, make_puller
    from tests.e2e.test_engine_push import assert_same_tree, skopeo_inspect

    target = f"{registry.address}/built/app:1"
    context = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM bb\nRUN rm -rf /home && mkdir /home && echo hi > /home/hi\n"
                      "COPY f /f\nCMD [\"cat\", \"/f\"]\n", "f": "pushed\n"})
    built = image_id(build(tsubo, context, "-t", target))
    original = registry_fixtures.merged_layers_tree(image_layers(tsubo, target),
                                                    tmp_path / "mnt")
    pusher = make_puller(registry, tsubo, tmp_path)
    pushed = pusher("push", "-q", target)
    assert pushed.returncode == 0, pushed.stderr
    inspected = skopeo_inspect(registry, "built/app:1")
    assert inspected["Digest"] == pushed.stdout.strip()
    assert len(inspected["Layers"]) == 3
    config = json.loads(registry.skopeo("inspect", "--config", "--tls-verify=false",
                                        f"docker://{target}").stdout)
    assert config["config"]["Cmd"] == ["cat", "/f"]
    assert [entry.get("empty_layer", False) for entry in config["history"]][-2:] == \
        [False, True]
    assert f"sha256:{built}" == tsubo.inspect(target)["Id"]
    assert_same_tree(original, registry_fixtures.scan_tree(
        registry.reference_rootfs("built/app:1")), ("tsubo", "umoci"),
        "umoci unpack of the pushed built image")
