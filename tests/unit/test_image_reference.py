"""tsubo.image.reference: Docker's normalisation and the distribution spec's grammar."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tsubo.errors import InvalidArgument
from tsubo.image.reference import Reference, is_insecure_default, parse_reference

DIGEST = "sha256:" + "ab" * 32

# text, registry, repository, tag, digest, str(), familiar
GOOD = [
    ("busybox", "docker.io", "library/busybox", "latest", "",
     "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", "",
     "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io", "library/busybox", "latest", "",
     "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", "",
     "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", "",
     "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app", "docker.io", "user/app", "latest", "",
     "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/library/a/b", "docker.io", "library/a/b", "latest", "",
     "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost:5000/test/multi:1", "localhost:5000", "test/multi", "1", "",
     "localhost:5000/test/multi:1", "localhost:5000/test/multi:1"),
    ("localhost/app", "localhost", "app", "latest", "",
     "localhost/app:latest", "localhost/app:latest"),
    (f"127.0.0.1:5000/x@{DIGEST}", "127.0.0.1:5000", "x", "", DIGEST,
     f"127.0.0.1:5000/x@{DIGEST}", f"127.0.0.1:5000/x@{DIGEST}"),
    (f"busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST,
     f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ("quay.io/org/img:v1.2-rc_3", "quay.io", "org/img", "v1.2-rc_3", "",
     "quay.io/org/img:v1.2-rc_3", "quay.io/org/img:v1.2-rc_3"),
    ("[::1]:5000/img", "[::1]:5000", "img", "latest", "",
     "[::1]:5000/img:latest", "[::1]:5000/img:latest"),
    # no "/" after it: "localhost:5000" is a name and a tag, exactly as in Docker
    ("localhost:5000", "docker.io", "library/localhost", "5000", "",
     "docker.io/library/localhost:5000", "localhost:5000"),
    ("a/b-c__d---e.f", "docker.io", "a/b-c__d---e.f", "latest", "",
     "docker.io/a/b-c__d---e.f:latest", "a/b-c__d---e.f:latest"),
    ("my-reg.example.com:443/a_b/c.d/e--f:TAG", "my-reg.example.com:443", "a_b/c.d/e--f",
     "TAG", "", "my-reg.example.com:443/a_b/c.d/e--f:TAG",
     "my-reg.example.com:443/a_b/c.d/e--f:TAG"),
    # an upper-case first component is a registry host (normalize.go)
    ("Registry/app", "Registry", "app", "latest", "",
     "Registry/app:latest", "Registry/app:latest"),
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, "",
     "docker.io/library/x:" + "t" * 128, "x:" + "t" * 128),
]

BAD = [
    ("", "empty"),
    ("UPPERCASE", "lowercase"),
    ("registry.io/UPPER", "lowercase"),
    ("a//b", "empty repository path"),
    ("/busybox", "empty repository path"),
    ("busybox/", "empty repository path"),
    (":tag", "missing repository"),
    ("busybox:", "empty tag"),
    ("x:" + "t" * 129, "tag longer"),
    ("busybox:.tag", "invalid tag"),
    ("busybox:ta/g", "invalid registry port"),
    ("busybox@sha256:" + "g" * 64, "64 lower-case hex"),
    ("busybox@sha256:" + "AB" * 32, "64 lower-case hex"),
    ("busybox@sha256:" + "ab" * 31, "64 lower-case hex"),
    ("busybox@sha512:" + "ab" * 64, "unsupported digest algorithm"),
    ("busybox@", "invalid digest"),
    ("-busybox", "invalid repository path component"),
    ("busy..box", "invalid repository path component"),
    ("busy___box", "invalid repository path component"),
    ("busy.-box", "invalid repository path component"),
    ("busybox_", "invalid repository path component"),
    ("bu sybox", "invalid repository path component"),
    ("localhost:/x", "invalid registry port"),
    ("localhost:50a/x", "invalid registry port"),
    ("-bad.io/x", "invalid registry"),
    ("bad_host.io/x", "invalid registry"),
    ("[zz]:5000/x", "invalid registry"),
    ("ab" * 32, "hexadecimal"),
    ("a/" + "b" * 255, "longer than 255"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "full",
                          "familiar"), GOOD)
def test_parse_normalises_like_docker(text, registry, repository, tag, digest, full, familiar):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry, repository, tag, digest)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert ref.name == f"{registry}/{repository}"
    # normalised and familiar forms parse back to the same reference
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref


@pytest.mark.parametrize(("text", "detail"), BAD)
def test_parse_refuses_bad_references(text, detail):
    with pytest.raises(InvalidArgument) as info:
        parse_reference(text)
    assert info.value.operation == "parse image reference"
    assert info.value.object == repr(text)
    assert detail in info.value.detail


def test_reference_is_a_frozen_value():
    ref = parse_reference("busybox")
    assert ref == Reference("docker.io", "library/busybox", "latest", "")
    assert hash(ref) == hash(parse_reference("docker.io/library/busybox:latest"))
    assert ref != parse_reference("busybox:1")
    with pytest.raises(AttributeError):
        ref.tag = "x"


@pytest.mark.parametrize(("registry", "insecure"), [
    ("localhost", True),
    ("localhost:5000", True),
    ("127.0.0.1", True),
    ("127.0.0.1:5000", True),
    ("127.255.3.9:80", True),
    ("[::1]", True),
    ("[::1]:5000", True),
    ("docker.io", False),
    ("128.0.0.1:5000", False),
    ("127.0.0.256", False),
    ("127.0.0.1.example.com", False),
    ("localhost.example.com:5000", False),
    ("10.0.0.1:5000", False),
])
def test_insecure_default_only_for_loopback(registry, insecure):
    assert is_insecure_default(registry) is insecure


def test_import_stays_cheap():
    code = ("import sys; import tsubo.image.reference; "
            "print(sorted({'re', 'dataclasses', 'ipaddress'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
