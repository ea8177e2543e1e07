"""Wire formats of the OCI specs (runtime config and state): pure, no side effects.

Modules: ``runtime_spec.py`` (config.json), ``resources.py`` (the parts of
``linux.resources`` beyond its device rules), ``seccomp.py`` (``linux.seccomp``),
``image_spec.py``, ``default_spec.py``. A config.json is validated once, when
``runtime_spec.parse_spec`` reads it; ``resources.py`` and ``seccomp.py`` are imported by
it only when a config has those parts (each module on the ``create`` path costs ~0.1 ms of a
~20 ms container start; most configs, and ``tsubo-runtime``'s benchmark, have neither).

This module holds what they share: the checks that turn a JSON value into a Python one or
an :class:`~tsubo.errors.InvalidArgument` naming its JSON path (``process.user.uid``), and
:class:`Frozen`, the base of the typed values handed to kernel/ (``linux.resources``,
``linux.seccomp``): plain ``__slots__`` classes, not dataclasses (``import dataclasses``
costs ~20 ms here), whose attributes are set once, in ``__init__``.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    JSONObject = dict[str, Any]


def fail(path: str, problem: str, hint: str = "") -> InvalidArgument:
    """The error for a bad config value at JSON *path*."""
    return InvalidArgument("load config", path, detail=problem, hint=hint)


def as_object(value: object, path: str) -> JSONObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(path, "must be an object")
    return value


def as_list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(path, "must be an array")
    return value


def as_str(value: object, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise fail(path, "must be a string")
    return value


def as_int(value: object, path: str, default: int = 0, minimum: int | None = None) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, "must be an integer")
    if minimum is not None and value < minimum:
        raise fail(path, f"must be >= {minimum}")
    return value


def as_bool(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise fail(path, "must be true or false")
    return value


def as_str_list(value: object, path: str) -> list[str]:
    items = as_list(value, path)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise fail(f"{path}[{index}]", "must be a string")
    return items


def objects_at(data: JSONObject, key: str, path: str) -> list[tuple[JSONObject, str]]:
    """Each object of the array ``data[key]``, with its JSON path."""
    items = []
    for index, item in enumerate(as_list(data.get(key), f"{path}.{key}")):
        where = f"{path}.{key}[{index}]"
        if not isinstance(item, dict):
            raise fail(where, "must be an object")
        items.append((item, where))
    return items


class Frozen:
    """A value whose attributes are set once, in ``__init__`` (through
    ``object.__setattr__``); then read-only. Equal when of one class with equal values."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[object, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(names, self._values(),
                                                                      strict=True))
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frozen) and type(other) is type(self) \
            and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

