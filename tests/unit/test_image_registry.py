"""The registry client's pure parts: challenges, error bodies, credentials files, platform
selection, manifest checks, progress output. (Against a real registry: tests/e2e.)"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import stat
from pathlib import Path

import pytest

from tsubo.cli.progress import ProgressView, human_size
from tsubo.errors import InvalidArgument, Unsupported
from tsubo.image import auth
from tsubo.image.pull import layers_of, parse_platform, select_manifest
from tsubo.image.registry import _parse_challenge, _registry_message

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_bearer_challenge_with_quoted_and_escaped_values() -> None:
    kind, params = _parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:a/b:pull,push",error="in\\"valid"')  # type: ignore[misc]
    assert kind == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg.example",
                      "scope": "repository:a/b:pull,push", "error": 'in"valid'}


def test_basic_and_unknown_challenges() -> None:
    assert _parse_challenge('Basic realm="Registry Realm"') == ("basic",
                                                               {"realm": "Registry Realm"})
    assert _parse_challenge("Negotiate abc") is None
    assert _parse_challenge("") is None


def test_registry_error_body() -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                   "detail": {}}]}).encode()
    assert _registry_message(body) == "manifest unknown"
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access to the "
                                   "resource is denied"}]}).encode()
    assert _registry_message(body) == "denied: requested access to the resource is denied"
    assert _registry_message(b"<html>502</html>") == ""


@pytest.fixture
def authfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    return path


def test_login_store_lookup_remove(authfile: Path) -> None:
    assert auth.lookup("127.0.0.1:5000") is None
    assert auth.store("127.0.0.1:5000", "alice", "s3cret:with:colons") == str(authfile)
    assert stat.S_IMODE(os.stat(authfile).st_mode) == 0o600
    assert auth.lookup("127.0.0.1:5000") == ("alice", "s3cret:with:colons")
    assert auth.lookup("http://127.0.0.1:5000/v2/") == ("alice", "s3cret:with:colons")
    assert auth.lookup("127.0.0.1:5001") is None
    assert auth.remove("127.0.0.1:5000") is True
    assert auth.remove("127.0.0.1:5000") is False
    assert auth.lookup("127.0.0.1:5000") is None


def test_docker_hub_key_and_aliases(authfile: Path) -> None:
    auth.store("docker.io", "bob", "pw")
    document = json.loads(authfile.read_text())
    assert list(document["auths"]) == ["https://index.docker.io/v1/"]
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert auth.lookup(name) == ("bob", "pw")


def test_store_keeps_other_entries_and_keys(authfile: Path) -> None:
    authfile.write_text(json.dumps({"auths": {"other:1": {"auth": base64.b64encode(
        b"u:p").decode()}}, "credHelpers": {"x": "y"}}))
    auth.store("mine:2", "me", "pw")
    document = json.loads(authfile.read_text())
    assert document["credHelpers"] == {"x": "y"}
    assert set(document["auths"]) == {"other:1", "mine:2"}


def test_docker_config_is_read_but_never_written(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    docker = tmp_path / "docker"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    (docker / "config.json").write_text(json.dumps({"auths": {"https://reg.example/v1/": {
        "auth": base64.b64encode(b"dave:pw").decode()}}}))
    assert auth.lookup("reg.example") == ("dave", "pw")
    written = auth.store("reg.example", "erin", "pw2")
    assert written == str(tmp_path / "config" / "tsubo" / "auth.json")
    assert auth.lookup("reg.example") == ("erin", "pw2")  # ours first
    assert "erin" not in (docker / "config.json").read_text()


def test_bad_credentials_files_are_one_line_errors(authfile: Path) -> None:
    authfile.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        auth.lookup("x")
    authfile.write_text(json.dumps({"auths": {"x": {"auth": "!!!"}}}))
    with pytest.raises(InvalidArgument, match="not base64 of user:password"):
        auth.lookup("x")
    with pytest.raises(InvalidArgument, match="username"):
        auth.store("y", "a:b", "pw")


INDEX = {"manifests": [
    {"digest": DIGEST_A, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": DIGEST_B, "size": 1,
     "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"digest": "sha256:" + "c" * 64, "size": 1,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:" + "d" * 64, "size": 1,
     "platform": {"os": "unknown", "architecture": "unknown"}},
]}


def test_platform_selection() -> None:
    assert select_manifest(INDEX, ("linux", "amd64", ""), "x")["digest"] == DIGEST_A
    assert select_manifest(INDEX, ("linux", "arm64", ""), "x")["digest"] == DIGEST_B
    assert select_manifest(INDEX, parse_platform("linux/arm64/v8"), "x")["digest"] == DIGEST_B
    with pytest.raises(InvalidArgument) as error:
        select_manifest(INDEX, ("linux", "arm", "v6"), "x")
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in error.value.message()
    assert "unknown" not in error.value.message()


def test_parse_platform() -> None:
    assert parse_platform("linux/amd64") == ("linux", "amd64", "")
    assert parse_platform("Linux/ARM/v7") == ("linux", "arm", "v7")
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        with pytest.raises(InvalidArgument, match="OS/ARCH"):
            parse_platform(bad)


def _manifest(*layers: dict[str, object]) -> dict[str, object]:
    return {"schemaVersion": 2, "layers": list(layers)}


def test_layers_are_checked_before_any_download() -> None:
    gzip_layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": DIGEST_A, "size": 10}
    layers = layers_of(_manifest(gzip_layer), [DIGEST_B], "x")
    assert [(layer.digest, layer.diff_id, layer.size) for layer in layers] == [
        (DIGEST_A, DIGEST_B, 10)]
    with pytest.raises(InvalidArgument, match="1 layers but 2 diff_ids"):
        layers_of(_manifest(gzip_layer), [DIGEST_B, DIGEST_B], "x")
    with pytest.raises(InvalidArgument, match="digest"):
        layers_of(_manifest({**gzip_layer, "digest": "sha256:../../x"}), [DIGEST_B], "x")
    with pytest.raises(InvalidArgument, match="size"):
        layers_of(_manifest({**gzip_layer, "size": -1}), [DIGEST_B], "x")
    with pytest.raises(Unsupported, match="foreign"):
        layers_of(_manifest({**gzip_layer, "mediaType":
                             "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}),
                  [DIGEST_B], "x")
    with pytest.raises(Unsupported, match="media type"):
        layers_of(_manifest({**gzip_layer, "mediaType": "application/x-bogus"}),
                  [DIGEST_B], "x")
    helm = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"  # a ...+gzip, not a layer
    with pytest.raises(Unsupported, match=rf"^pull x layer 0: media type '{re.escape(helm)}' "
                       "is not an image layer"):
        layers_of(_manifest({**gzip_layer, "mediaType": helm}), [DIGEST_B], "x")


def test_progress_plain_lines_only_on_status_changes() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=False)
    view("abc", "Pulling fs layer", 0, 100)
    for done in range(0, 101, 10):
        view("abc", "Downloading", done, 100)
    view("abc", "Pull complete", 0, 0)
    view.finish()
    assert out.getvalue() == ("abc: Pulling fs layer\nabc: Downloading\n"
                              "abc: Pull complete\n")


def test_progress_bars_redraw_in_place_on_a_tty() -> None:
    out = io.StringIO()
    view = ProgressView(out, tty=True)
    view("one", "Downloading", 50, 100)
    view("two", "Already exists", 0, 0)
    view.finish()
    text = out.getvalue()
    assert "\x1b[1A" in text and "\x1b[2A" in text  # cursor moved back over drawn lines
    assert "one: Downloading [" in text and "50B/100B" in text
    assert human_size(1_500_000) == "1.5MB"


def test_connection_errors_are_one_readable_line() -> None:
    import socket

    from tsubo.image.registry import _connection_error

    resolve = _connection_error("registry.example:5000", socket.gaierror(-3, "Temporary "
                                                                          "failure in name "
                                                                          "resolution"))
    assert resolve.message() == ("connect to registry.example:5000: cannot resolve "
                                 "registry.example: Temporary failure in name resolution")
    refused = _connection_error("127.0.0.1:5999", ConnectionRefusedError(111, "refused"))
    assert refused.message().endswith("ECONNREFUSED")
