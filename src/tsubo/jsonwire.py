"""tsubo's one JSON reader (with depth and size limits) and its JSON writer.

Every JSON document tsubo parses goes through :func:`loads`: runtime state and config.json,
image manifests, indexes and configs (pulled, loaded from archives), registry answers,
database columns, tool output (``ip -j``, ``nft -j``). Much of it comes from someone else
(a registry, an archive, a file a container or an operator can write), so the reader
refuses, in one :class:`~tsubo.errors.InvalidJSON` line naming the document:

- a document larger than *max_bytes* (:data:`MAX_BYTES` unless the caller knows better);
- a document nested deeper than :data:`MAX_DEPTH` arrays/objects: CPython's parser
  recurses once per level and would end in a RecursionError traceback (100,000 ``[``
  are 100 KB), and so would any code that walks the value afterwards;
- anything that is not exactly one valid JSON value (NaN/Infinity included, as Go's
  encoding/json and runc refuse them).

Speed: ``import json`` costs ~11 ms on our reference machine, almost all of it ``re``
(pulled in by ``json.decoder`` for two regexes the C scanner never uses), and
``tsubo-runtime run`` must beat runc (~17-27 ms a run here). So we drive CPython's own C
accelerator (``_json``, the code ``json.loads``/``json.dumps`` use) directly: same parser,
same output, ~0.1 ms to import. The depth check runs before the parser, on bytes, with
C-speed bytes methods only (see :func:`nested_deeper_than`): ~1 us for a document of at
most 64 arrays/objects, ~1.6 ns a byte above that (~15 us, half the parse, for the engine's
config.json with Docker's seccomp profile; bench/json_reader.py, docs/runtime.md). When
``_json`` is missing (another interpreter) we fall back to :mod:`json`.
"""

from __future__ import annotations

from tsubo.errors import InvalidJSON

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

#: arrays/objects inside one another; real documents stay below ~10 (an OCI config with a
#: seccomp profile: 6), and the CPython parser needs a stack frame per level
MAX_DEPTH = 64
#: the default size limit: far above any document tsubo reads (a config.json with a large
#: seccomp profile is ~30 KB, an ``nft -j list ruleset`` of a busy host a few MB); callers
#: that know their document's size pass a smaller one
MAX_BYTES = 64 << 20

_WHITESPACE = " \t\n\r"
#: for the depth check: arrays and objects both become ( ), every byte but ( ) [ ] { } "
#: is dropped
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON constant {name}")


class _ScannerContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo: dict[str, str] = {}  # noqa: RUF012 - mirrors JSONDecoder's attribute


_scanner: Callable[[str, int], tuple[object, int]] | None = None
_encoder: Callable[[object, int], list[str]] | None = None


def loads(data: str | bytes, what: str = "JSON document", *, operation: str = "read",
          max_bytes: int = MAX_BYTES) -> object:
    """Parse one JSON document; :class:`InvalidJSON` (*operation* on *what*: ``read
    manifest.json: nested deeper than 64 levels``) when it is larger than *max_bytes*,
    nested deeper than :data:`MAX_DEPTH`, or not valid JSON."""
    global _scanner
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise InvalidJSON(operation, what, detail=f"larger than {max_bytes} bytes")
    if nested_deeper_than(raw, MAX_DEPTH):
        raise _too_deep(operation, what)
    if isinstance(data, str):
        text = data
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidJSON(operation, what, detail=f"not valid UTF-8 at byte {error.start}"
                              ) from None
    if _json is None:  # pragma: no cover
        return _loads_with_json(text, operation, what)
    if _scanner is None:
        _scanner = _json.make_scanner(_ScannerContext())  # type: ignore[arg-type]
    index = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scanner(text, index)
    except RecursionError:  # only reachable with a nearly exhausted stack
        raise _too_deep(operation, what) from None
    except (StopIteration, SystemError, ValueError):
        # The C scanner builds its error from json.decoder, which it finds only when
        # already imported; on this (rare, slow-is-fine) path let json explain the error.
        _raise_json_error(text, operation, what)
    if end != len(text):
        rest = text[end:]
        extra = rest.lstrip(_WHITESPACE)
        if extra:
            raise InvalidJSON(operation, what, detail="extra data after the JSON value at "
                              f"offset {end + len(rest) - len(extra)}")
    return value


def nested_deeper_than(raw: bytes, limit: int) -> bool:
    """True when the JSON document *raw* nests arrays/objects more than *limit* deep.

    Exact for valid JSON, at the speed of bytes methods (no Python loop per byte):

    1. drop escaped backslashes, then escaped quotes (JSON allows backslashes only inside
       strings, and a run of them pairs up from the left, as the parser reads them);
    2. keep only brackets (arrays and objects alike, as ``(`` ``)``) and quotes;
    3. drop strings: when every quote sits in a ``""`` pair (no string holds a bracket,
       the usual case) all quotes go at once, else the text between quote pairs goes;
    4. peel levels: one ``replace("()", "")`` removes exactly the innermost level (each
       ``()`` is a leaf, leaves never overlap, and one pass does not rescan what it
       joined), so a document is at most *limit* deep iff *limit* passes empty it.

    For text that is not valid JSON the answer may be wrong either way; the parser then
    refuses it (and its own recursion limit still stands behind it).
    """
    # No more openers than the limit, no deeper than it: the common case, decided by two
    # memchr-driven deletions (~1 us for 15 KB; ``bytes.count`` of one byte is 5x slower).
    if len(raw) - len(raw.replace(b"[", b"").replace(b"{", b"")) <= limit:
        return False
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(_BRACKETS, _NOT_STRUCTURE)
    quotes = structure.count(b'"')
    if quotes:
        if quotes == 2 * structure.count(b'""'):
            structure = structure.translate(None, b'"')
        else:
            structure = b"".join(structure.split(b'"')[::2])
    if b"(" * (limit + 1) in structure:
        return True  # the usual attack's shape, found without peeling
    for _ in range(limit):
        peeled = structure.replace(b"()", b"")
        if len(peeled) == len(structure):
            return False  # empty already; or unbalanced: not JSON, the parser says why
        structure = peeled
    return bool(structure)


def _too_deep(operation: str, what: str) -> InvalidJSON:
    return InvalidJSON(operation, what, detail=f"nested deeper than {MAX_DEPTH} levels")


def _raise_json_error(text: str, operation: str, what: str) -> NoReturn:
    _loads_with_json(text, operation, what)
    raise InvalidJSON(operation, what, detail="not valid JSON")


def _loads_with_json(text: str, operation: str, what: str) -> object:
    import json

    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidJSON(operation, what, detail=f"not valid JSON: {error}") from None


def dumps(value: object) -> str:
    """Serialise *value* compactly (``separators=(",", ":")``), as ``json.dumps`` would."""
    global _encoder
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"))
    if _encoder is None:
        _encoder = _json.make_encoder(
            {}, _reject_unserialisable, _json.encode_basestring_ascii, None, ":", ",",
            False, False, False,
        )
    return "".join(_encoder(value, 0))


def _reject_unserialisable(value: object) -> object:
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")

