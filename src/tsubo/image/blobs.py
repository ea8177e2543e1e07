"""The content-addressed blob store: layers, manifests and configs, keyed by sha256 digest.

Layout under the store root (as an OCI image layout's ``blobs/`` and containerd's ingest)::

    blobs/sha256/<hex>       verified blobs, read-only once there
    ingest/<hex>.partial     downloads in progress, kept across failures so they can resume

A blob enters ``blobs/`` only through :meth:`BlobWriter.commit`, after its size and digest
were checked, by an fsync'd rename: a reader never sees a half-written or unverified blob,
and a failed pull never removes blobs that were verified before it. Digests are validated
before they become path names, so ``sha256:../../x`` can never name a file.

``hashlib`` is imported only when hashing starts: it costs milliseconds and most commands
never hash.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, NotFound, TsuboError, WrongState
from tsubo.oci.image_spec import digest_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hashlib

_ALGORITHM = "sha256"
_READ_CHUNK = 1 << 20


def _new_hash() -> hashlib._Hash:
    import hashlib  # lazily: see the module docstring

    return hashlib.sha256()


def check_digest(digest: str, operation: str = "check digest") -> str:
    """Return the hex part of a valid ``sha256:<64 hex>`` digest, else raise InvalidArgument."""
    problem = digest_problem(digest)
    if problem:
        raise InvalidArgument(operation, repr(digest), detail=problem)
    return digest[len(_ALGORITHM) + 1 :]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under *root*; creating the store object touches nothing on disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.blob_dir = os.path.join(self.root, "blobs", _ALGORITHM)
        self.ingest_dir = os.path.join(self.root, "ingest")

    def path(self, digest: str) -> str:
        """Where the blob *digest* lives (whether or not it is there)."""
        return os.path.join(self.blob_dir, check_digest(digest, "locate blob"))

    def partial_path(self, digest: str) -> str:
        """Where an in-progress download of *digest* is kept."""
        return os.path.join(self.ingest_dir, check_digest(digest, "locate blob") + ".partial")

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        path = self.path(digest)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            raise NotFound("stat blob", digest) from None
        except OSError as error:
            raise TsuboError.from_os_error("stat blob", path, error) from None

    def list(self) -> list[str]:
        """Digests of all verified blobs, sorted."""
        try:
            names = os.listdir(self.blob_dir)
        except FileNotFoundError:
            return []
        digests = (f"{_ALGORITHM}:{name}" for name in names)
        return sorted(digest for digest in digests if not digest_problem(digest))

    def delete(self, digest: str) -> None:
        """Remove a verified blob; NotFound if it is not there."""
        path = self.path(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise NotFound("delete blob", digest) from None
        except OSError as error:
            raise TsuboError.from_os_error("delete blob", path, error) from None

    def writer(self, digest: str, size: int | None = None) -> BlobWriter:
        """Start or resume writing *digest*; ``offset`` says how many bytes are there already."""
        check_digest(digest, "write blob")
        if size is not None and size < 0:
            raise InvalidArgument("write blob", digest, detail=f"negative size {size}")
        return BlobWriter(self, digest, size)

    def ingest_bytes(self, data: bytes, media_type: str = "") -> str:
        """Store small content (a manifest, a config) and return its digest.

        *media_type* is accepted for the caller's records; the store keys by digest only.
        """
        digest_hash = _new_hash()
        digest_hash.update(data)
        digest = f"{_ALGORITHM}:{digest_hash.hexdigest()}"
        if self.has(digest):
            return digest
        writer = self.writer(digest, len(data))
        try:
            writer.reset()  # a stale partial of the same digest is not worth re-reading
            writer.write(data)
            writer.commit()
        finally:
            writer.close()
        return digest


class BlobWriter:
    """Writes one blob into ``ingest/``, verifying as it goes; see :meth:`commit`.

    Opening re-hashes an existing partial file, so a resumed download continues from
    :attr:`offset` (the caller asks the registry for ``Range: bytes=<offset>-``; when the
    server ignores the range, call :meth:`reset` and write from the start).
    """

    def __init__(self, store: BlobStore, digest: str, size: int | None) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.partial = store.partial_path(digest)
        self.offset = 0
        self._hash = _new_hash()
        self._closed = False
        os.makedirs(store.ingest_dir, mode=0o700, exist_ok=True)
        while True:
            try:
                self._fd = os.open(
                    self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
            except OSError as error:
                raise TsuboError.from_os_error("open blob", self.partial, error) from None
            try:
                self._lock()
                if self._still_the_partial():
                    self._rehash_partial()
                    break
            except BaseException:
                os.close(self._fd)
                self._closed = True
                raise
            # the writer we raced committed (renamed) that file between our open and our
            # lock: the inode is now the verified blob, never to be written: open afresh
            os.close(self._fd)

    def _lock(self) -> None:
        """One writer per digest: a second concurrent pull of the same blob must wait or fail."""
        import fcntl  # small C module; only writers need it

        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WrongState(
                "write blob", self.digest, detail="another writer is downloading this blob"
            ) from None

    def _still_the_partial(self) -> bool:
        try:
            on_disk = os.stat(self.partial, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _rehash_partial(self) -> None:
        if self.size is not None and os.fstat(self._fd).st_size > self.size:
            os.ftruncate(self._fd, 0)  # longer than the blob: not a prefix of it
        os.lseek(self._fd, 0, os.SEEK_SET)
        while chunk := os.read(self._fd, _READ_CHUNK):
            self._hash.update(chunk)
            self.offset += len(chunk)

    def reset(self) -> None:
        """Throw away what was written so far and start again at offset 0."""
        self._check_open()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self.offset = 0
        self._hash = _new_hash()

    def write(self, chunk: bytes) -> None:
        """Append *chunk*; refuses (and discards the partial) beyond the declared size."""
        self._check_open()
        if self.size is not None and self.offset + len(chunk) > self.size:
            self._discard()
            raise InvalidArgument(
                "verify blob",
                self.digest,
                detail=f"more data than the declared size of {self.size} bytes",
            )
        view = memoryview(chunk)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as error:  # ENOSPC, EIO: kept as a partial, resumable later
                raise TsuboError.from_os_error("write blob", self.digest, error) from None
            view = view[written:]
        self._hash.update(chunk)
        self.offset += len(chunk)

    def commit(self) -> str:
        """Check size and digest, then move the blob into ``blobs/``; return its path.

        On a mismatch the partial file is deleted (its content is wrong, resuming it would
        only repeat the failure) and InvalidArgument names the expected and actual values.
        """
        self._check_open()
        if self.size is not None and self.offset != self.size:
            self._discard()
            raise InvalidArgument(
                "verify blob",
                self.digest,
                detail=f"expected {self.size} bytes, got {self.offset}",
            )
        actual = f"{_ALGORITHM}:{self._hash.hexdigest()}"
        if actual != self.digest:
            self._discard()
            raise InvalidArgument(
                "verify blob", self.digest, detail=f"expected {self.digest}, got {actual}"
            )
        target = self.store.path(self.digest)
        try:
            os.fsync(self._fd)
            os.makedirs(self.store.blob_dir, exist_ok=True)
            os.rename(self.partial, target)
            _fsync_dir(self.store.blob_dir)
            _fsync_dir(self.store.ingest_dir)
        except OSError as error:
            raise TsuboError.from_os_error("commit blob", target, error) from None
        finally:
            self.close()
        return target

    def abort(self) -> None:
        """Stop writing but keep the partial file, so a later writer resumes from it."""
        if not self._closed:
            os.fsync(self._fd)
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def discard(self) -> None:
        """Stop writing and delete the partial file (a local source: nothing to resume)."""
        self._discard()

    def _discard(self) -> None:
        self.close()
        try:
            os.unlink(self.partial)
        except FileNotFoundError:
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise WrongState("write blob", self.digest, detail="writer is closed")

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()
