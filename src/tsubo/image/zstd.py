"""Streaming zstd decompression through the host's ``libzstd.so.1`` (no Python dependency).

This module owns tsubo's binding to libzstd (Debian package ``libzstd1``, which ``zstd``,
``apt`` and ``systemd`` already pull in): a handful of ctypes prototypes from the stable
streaming API of ``zstd.h`` (v1.5.4) and :class:`ZstdReader`, a read-only, file-like view
of the decompressed bytes of a raw binary stream. Memory stays bounded: one input buffer of
``ZSTD_DStreamInSize()`` bytes and one output buffer of ``ZSTD_DStreamOutSize()`` bytes
(128 KiB each in 1.5.4), plus what one ``read(n)`` returns, whatever the layer size.

Concatenated frames (``zstd`` output appended to ``zstd`` output, skippable frames too)
decode as one stream, as ``zstd -d`` does: after a frame ends ``ZSTD_decompressStream``
starts the next one from the following bytes. A stream is complete only when its input ends
right after a frame; input that ends inside a frame (or before the first one) is
*truncated*, and a decoder error is *corrupt*: both raise :class:`ZstdError`, which the
layer unpacker turns into an error naming the layer digest.

The library is loaded on first use (like libseccomp in :mod:`tsubo.kernel.seccomp`): a host
without it gets :class:`~tsubo.errors.Unsupported` with a hint, only when a zstd layer is met.
"""

from __future__ import annotations

import ctypes

from tsubo.errors import InvalidArgument, TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctypes import _FuncPointer
    from typing import Protocol

    class _Readable(Protocol):
        def read(self, n: int = -1, /) -> bytes: ...


LIBRARY = "libzstd.so.1"

#: the first four bytes of a zstd frame (ZSTD_MAGICNUMBER 0xFD2FB528, little endian)
FRAME_MAGIC = b"\x28\xb5\x2f\xfd"


class ZstdError(InvalidArgument):
    """The compressed stream is corrupt or truncated; ``detail`` says which and where."""


def is_zstd(head: bytes) -> bool:
    """True when *head* (the first bytes of a blob) starts a zstd frame or a skippable
    frame (magic 0x184D2A50..0x184D2A5F, which ``ZSTD_decompressStream`` skips)."""
    if head[:4] == FRAME_MAGIC:
        return True
    return len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50


class _InBuffer(ctypes.Structure):
    """``ZSTD_inBuffer``: {const void *src; size_t size; size_t pos;}."""

    _fields_ = (("src", ctypes.c_void_p), ("size", ctypes.c_size_t),
                ("pos", ctypes.c_size_t))


class _OutBuffer(ctypes.Structure):
    """``ZSTD_outBuffer``: {void *dst; size_t size; size_t pos;}."""

    _fields_ = (("dst", ctypes.c_void_p), ("size", ctypes.c_size_t),
                ("pos", ctypes.c_size_t))


class _LibZstd:
    """Typed wrappers over the libzstd functions we use; each returns what C returns."""

    __slots__ = ("_create", "_decompress", "_error_name", "_free", "_in_size", "_init",
                 "_is_error", "_out_size")

    def __init__(self, lib: ctypes.CDLL) -> None:
        stream, size_t = ctypes.c_void_p, ctypes.c_size_t
        self._create = _bind(lib.ZSTD_createDStream, stream, [])
        self._free = _bind(lib.ZSTD_freeDStream, size_t, [stream])
        self._init = _bind(lib.ZSTD_initDStream, size_t, [stream])
        self._decompress = _bind(lib.ZSTD_decompressStream, size_t,
                                 [stream, ctypes.POINTER(_OutBuffer),
                                  ctypes.POINTER(_InBuffer)])
        self._in_size = _bind(lib.ZSTD_DStreamInSize, size_t, [])
        self._out_size = _bind(lib.ZSTD_DStreamOutSize, size_t, [])
        self._is_error = _bind(lib.ZSTD_isError, ctypes.c_uint, [size_t])
        self._error_name = _bind(lib.ZSTD_getErrorName, ctypes.c_char_p, [size_t])

    def create_dstream(self) -> int | None:
        handle: int | None = self._create()
        return handle

    def free_dstream(self, handle: int) -> None:
        self._free(handle)

    def init_dstream(self, handle: int) -> int:
        code: int = self._init(handle)
        return code

    def decompress_stream(self, handle: int, output: _OutBuffer, source: _InBuffer) -> int:
        """0: a frame ended and is flushed; > 0: more to do; else an error code."""
        code: int = self._decompress(handle, ctypes.byref(output), ctypes.byref(source))
        return code

    def in_size(self) -> int:
        size: int = self._in_size()
        return size

    def out_size(self) -> int:
        size: int = self._out_size()
        return size

    def error(self, code: int) -> str | None:
        """The name of error *code* ("Unknown frame descriptor"), or None for a size."""
        if not self._is_error(code):
            return None
        name: bytes = self._error_name(code)
        return name.decode("ascii", "replace")


def _bind(function: _FuncPointer, restype: type | None, argtypes: list[type]) -> _FuncPointer:
    function.restype = restype
    function.argtypes = argtypes
    return function


_library: _LibZstd | None = None


def _libzstd() -> _LibZstd:
    """Load libzstd.so.1 once; Unsupported when it is not installed."""
    global _library
    if _library is None:
        try:
            _library = _LibZstd(ctypes.CDLL(LIBRARY))
        except (OSError, AttributeError) as error:
            raise Unsupported("load libzstd", LIBRARY, detail=str(error),
                              hint="install libzstd1 (>= 1.4)") from error
    return _library


class ZstdReader:
    """The decompressed bytes of the zstd stream *raw*, read with ``read(n)``.

    ``read`` returns up to *n* bytes (all the rest for ``n < 0``) and ``b""`` only at the
    clean end of the stream; it raises :class:`ZstdError` for corrupt or truncated input and
    lets the source's OSError through. Close it (or use ``with``) to free the decoder.
    """

    def __init__(self, raw: _Readable) -> None:
        lib = _libzstd()
        self._lib = lib
        self._raw = raw
        self._in_chunk = lib.in_size()
        out_size = self._out_size = lib.out_size()
        self._out_buffer = ctypes.create_string_buffer(out_size)
        self._out = _OutBuffer(ctypes.addressof(self._out_buffer), out_size, 0)
        self._in = _InBuffer(None, 0, 0)
        self._input = b""  # keeps the bytes that self._in.src points into alive
        self._input_ended = False
        self._frame_ended = False  # the last call finished a frame (no input yet: False)
        self._eof = False
        handle = lib.create_dstream()
        if not handle:
            raise TsuboError("decompress zstd stream", detail="ZSTD_createDStream failed")
        self._handle: int | None = handle
        code = lib.init_dstream(handle)
        if lib.error(code) is not None:
            self.close()
            raise TsuboError("decompress zstd stream",
                             detail=f"ZSTD_initDStream: {lib.error(code)}")
        self.consumed = 0  #: compressed bytes fed to the decoder so far

    def __enter__(self) -> ZstdReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the decoder (the source is the caller's to close); idempotent."""
        if self._handle is not None:
            self._lib.free_dstream(self._handle)
            self._handle = None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        if self._handle is None:
            raise ValueError("read from a closed ZstdReader")
        limit = n if n >= 0 else 1 << 62
        chunks: list[bytes] = []
        got = 0
        while got < limit and not self._eof:
            piece = self._step(min(limit - got, self._out_size))
            if piece:
                chunks.append(piece)
                got += len(piece)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _step(self, room: int) -> bytes:
        """One ZSTD_decompressStream call producing at most *room* bytes (maybe none)."""
        source, output = self._in, self._out
        if source.pos == source.size and not self._input_ended:
            self._input = self._raw.read(self._in_chunk)
            if self._input:
                pointer = ctypes.cast(ctypes.c_char_p(self._input), ctypes.c_void_p)
                source.src, source.size, source.pos = pointer.value, len(self._input), 0
            else:
                self._input_ended = True
                source.src, source.size, source.pos = None, 0, 0
        if source.pos == source.size and self._input_ended and self._frame_ended:
            self._eof = True  # the input ended right after a frame: a complete stream
            return b""
        assert self._handle is not None
        output.size, output.pos = room, 0
        before = source.pos
        code = self._lib.decompress_stream(self._handle, output, source)
        error = self._lib.error(code)
        if error is not None:
            raise ZstdError("decompress zstd stream",
                            detail=f"corrupt at compressed byte {self.consumed + before}: "
                                   f"{error}")
        self.consumed += source.pos - before
        self._frame_ended = code == 0
        if output.pos == 0 and source.pos == source.size and self._input_ended \
                and not self._frame_ended:
            what = "inside a frame" if self.consumed else "before the first frame"
            raise ZstdError("decompress zstd stream",
                            detail=f"truncated: the input ends {what} "
                                   f"(after {self.consumed} compressed bytes)")
        return ctypes.string_at(self._out_buffer, output.pos) if output.pos else b""
