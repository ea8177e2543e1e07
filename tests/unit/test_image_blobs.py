"""tsubo.image.blobs: verified writes, resume, and refusal of bad digests and bad content."""

from __future__ import annotations

import hashlib
import os

import pytest

from tsubo.errors import InvalidArgument, NotFound, WrongState
from tsubo.image.blobs import BlobStore

DATA = bytes(range(256)) * 1000  # 256 kB
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "store")


def tree(root: str) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, name), root) for name in files]
    return sorted(found)


def test_write_and_commit(store):
    writer = store.writer(DIGEST, len(DATA))
    assert writer.offset == 0
    for start in range(0, len(DATA), 10000):
        writer.write(DATA[start:start + 10000])
    path = writer.commit()
    assert path == store.path(DIGEST)
    assert path.endswith("blobs/sha256/" + DIGEST[7:])
    with open(path, "rb") as blob:
        assert blob.read() == DATA
    assert store.has(DIGEST)
    assert store.size(DIGEST) == len(DATA)
    assert store.list() == [DIGEST]
    assert not os.path.exists(store.partial_path(DIGEST))


def test_unknown_size_still_verifies_digest(store):
    writer = store.writer(DIGEST)
    writer.write(DATA)
    writer.commit()
    assert store.has(DIGEST)


def test_flipped_byte_is_refused_and_partial_removed(store):
    corrupt = bytearray(DATA)
    corrupt[1234] ^= 0x01
    writer = store.writer(DIGEST, len(DATA))
    writer.write(bytes(corrupt))
    with pytest.raises(InvalidArgument) as info:
        writer.commit()
    assert info.value.operation == "verify blob"
    assert info.value.object == DIGEST
    actual = "sha256:" + hashlib.sha256(corrupt).hexdigest()
    assert info.value.detail == f"expected {DIGEST}, got {actual}"
    assert not store.has(DIGEST)
    assert store.list() == []
    assert not os.path.exists(store.partial_path(DIGEST))


def test_truncated_blob_is_refused_on_commit(store):
    writer = store.writer(DIGEST, len(DATA))
    writer.write(DATA[:-1])
    with pytest.raises(InvalidArgument, match="expected 256000 bytes, got 255999"):
        writer.commit()
    assert not store.has(DIGEST)
    assert not os.path.exists(store.partial_path(DIGEST))


def test_extra_bytes_are_refused_as_they_arrive(store):
    writer = store.writer(DIGEST, len(DATA))
    writer.write(DATA)
    with pytest.raises(InvalidArgument, match="more data than the declared size"):
        writer.write(b"x")
    assert not store.has(DIGEST)
    assert not os.path.exists(store.partial_path(DIGEST))
    with pytest.raises(WrongState):
        writer.commit()


def test_oversized_single_chunk_is_refused_before_writing(store):
    writer = store.writer(DIGEST, 10)
    with pytest.raises(InvalidArgument):
        writer.write(b"x" * 11)
    assert tree(store.root) == []


def test_resume_after_abort(store):
    half = len(DATA) // 2
    writer = store.writer(DIGEST, len(DATA))
    writer.write(DATA[:half])
    writer.abort()
    assert not store.has(DIGEST)
    assert os.path.getsize(store.partial_path(DIGEST)) == half

    resumed = store.writer(DIGEST, len(DATA))
    assert resumed.offset == half
    resumed.write(DATA[half:])
    resumed.commit()
    assert store.has(DIGEST)
    with open(store.path(DIGEST), "rb") as blob:
        assert blob.read() == DATA


def test_resume_of_corrupt_partial_fails_verification(store):
    half = len(DATA) // 2
    os.makedirs(store.ingest_dir)
    with open(store.partial_path(DIGEST), "wb") as partial:
        partial.write(b"\0" * half)
    writer = store.writer(DIGEST, len(DATA))
    assert writer.offset == half
    writer.write(DATA[half:])
    with pytest.raises(InvalidArgument, match="verify blob"):
        writer.commit()
    assert not store.has(DIGEST)
    assert not os.path.exists(store.partial_path(DIGEST))


def test_reset_when_server_ignores_range(store):
    half = len(DATA) // 2
    with store.writer(DIGEST, len(DATA)) as writer:
        writer.write(DATA[:half])
    writer = store.writer(DIGEST, len(DATA))
    assert writer.offset == half
    writer.reset()
    assert writer.offset == 0
    writer.write(DATA)
    writer.commit()
    assert store.has(DIGEST)


def test_partial_longer_than_size_starts_over(store):
    os.makedirs(store.ingest_dir)
    with open(store.partial_path(DIGEST), "wb") as partial:
        partial.write(b"x" * (len(DATA) + 1))
    writer = store.writer(DIGEST, len(DATA))
    assert writer.offset == 0
    writer.abort()


def test_second_concurrent_writer_is_refused(store):
    writer = store.writer(DIGEST, len(DATA))
    with pytest.raises(WrongState, match="another writer"):
        store.writer(DIGEST, len(DATA))
    writer.abort()
    store.writer(DIGEST, len(DATA)).abort()


def test_present_blob_survives_later_failed_write(store):
    first = store.ingest_bytes(b'{"a": 1}', "application/vnd.oci.image.config.v1+json")
    other = b"other blob"
    writer = store.writer("sha256:" + hashlib.sha256(other).hexdigest(), len(other))
    writer.write(b"OTHER BLOB")
    with pytest.raises(InvalidArgument):
        writer.commit()
    assert store.list() == [first]
    with open(store.path(first), "rb") as blob:
        assert blob.read() == b'{"a": 1}'


def test_ingest_bytes_is_idempotent(store):
    data = b'{"schemaVersion": 2}'
    digest = store.ingest_bytes(data, "application/vnd.oci.image.manifest.v1+json")
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.ingest_bytes(data) == digest
    assert store.list() == [digest]
    assert store.size(digest) == len(data)


def test_delete(store):
    digest = store.ingest_bytes(b"x")
    store.delete(digest)
    assert not store.has(digest)
    with pytest.raises(NotFound):
        store.delete(digest)
    with pytest.raises(NotFound):
        store.size(digest)


def test_list_ignores_foreign_files(store):
    digest = store.ingest_bytes(b"x")
    with open(os.path.join(store.blob_dir, "not-a-digest"), "w"):
        pass
    assert store.list() == [digest]


def test_empty_store(store):
    assert store.list() == []
    assert not store.has(DIGEST)


BAD_DIGESTS = [
    "",
    DIGEST[7:],
    "sha256:../../etc/passwd",
    "sha256:" + "../" * 21 + "a",
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 128,
    "sha256:" + "a" * 63 + "/",
    "sha256:" + "a" * 63 + "\0",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digests_refused_before_touching_the_filesystem(store, digest):
    for call in (store.path, store.has, store.size, store.delete, store.writer,
                 store.partial_path):
        with pytest.raises(InvalidArgument):
            call(digest)
    assert not os.path.exists(store.root)


def test_negative_size_refused(store):
    with pytest.raises(InvalidArgument, match="negative size"):
        store.writer(DIGEST, -1)
    assert not os.path.exists(store.root)


def test_a_writer_that_raced_a_commit_never_writes_into_the_verified_blob(
        store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """B opens the partial, A commits it (renames it to blobs/) before B gets the lock:
    B must notice its inode is now the verified blob and start a fresh partial."""
    from tsubo.image import blobs as blobs_module

    data = b"the blob" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = store.writer(digest, len(data))
    first.write(data)
    real_lock = blobs_module.BlobWriter._lock
    calls: list[int] = []

    def lock_after_the_commit(self: blobs_module.BlobWriter) -> None:
        if not calls:
            calls.append(1)
            first.commit()  # between B's open and B's lock
        real_lock(self)

    monkeypatch.setattr(blobs_module.BlobWriter, "_lock", lock_after_the_commit)
    second = store.writer(digest, len(data))
    assert second.offset == 0  # a fresh partial, not the committed blob re-read
    second.reset()  # what a resumed download that got 416 does: must not touch the blob
    second.discard()
    with open(store.path(digest), "rb") as blob:
        assert blob.read() == data
