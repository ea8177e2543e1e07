"""JSON in and out on the runtime's hot path, without importing :mod:`json`.

``import json`` costs ~11 ms on our reference machine, almost all of it ``re`` (pulled in by
``json.decoder`` for two regexes the C scanner never uses). ``tsubo-runtime run`` must beat
runc, whose whole run takes ~17-27 ms here, so we drive CPython's own C accelerator
(``_json``, the code ``json.loads``/``json.dumps`` use) directly: same parser, same output,
~0.1 ms to import. Errors are re-raised as :class:`ValueError` with the position; when
``_json`` is missing (another interpreter) we fall back to :mod:`json`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"


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


def loads(text: str | bytes) -> object:
    """Parse one JSON document; ValueError (with the offset) when it is not valid JSON."""
    global _scanner
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text)
    if _scanner is None:
        _scanner = _json.make_scanner(_ScannerContext())  # type: ignore[arg-type]
    index = _skip_whitespace(text, 0)
    try:
        value, end = _scanner(text, index)
    except (StopIteration, SystemError, ValueError):
        # The C scanner builds its error from json.decoder, which it finds only when
        # already imported; on this (rare, slow-is-fine) path let json explain the error.
        _raise_json_error(text)
    end = _skip_whitespace(text, end)
    if end != len(text):
        raise ValueError(f"extra data after the JSON value at offset {end}")
    return value


def _raise_json_error(text: str) -> NoReturn:
    import json

    json.loads(text)
    raise ValueError("invalid JSON")


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


def _skip_whitespace(text: str, index: int) -> int:
    length = len(text)
    while index < length and text[index] in _WHITESPACE:
        index += 1
    return index
