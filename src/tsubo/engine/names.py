"""The names users give containers and volumes: Docker's rules, checked in one place.

Every way in (the CLI's flags and verbs, the Python API, the monitor creating a container
for ``run``) ends in these functions, so a name has one spelling on disk and in the
database:

- a container name is ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (at most 128 characters) after *one*
  leading ``/``, which Docker accepts and strips (``--name /web`` is ``web``; ``/web``
  finds ``web``): :func:`container_name` gives the stored form, :func:`bare_name` the
  form to look a reference up by;
- a volume name is the local driver's ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` with no ``/`` to
  strip: ``/abs`` would otherwise be an alias of ``abs`` (``<root>/volumes//abs`` is
  ``<root>/volumes/abs``), and ``volume rm /abs`` would delete ``abs``'s data. A name that
  breaks the rule is refused with Docker's own words (moby ``volume/local/local.go``
  ``validateName``).

Hot path (``run`` parses ``-v``): nothing is imported but ``tsubo.errors``.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

#: Docker's maximum container name length (tsubo's own choice; Docker has none)
MAX_NAME_LENGTH = 128
#: a volume name is a directory name under ``<root>/volumes``: NAME_MAX bytes
MAX_VOLUME_NAME_LENGTH = 255
#: how Docker writes the allowed characters in its messages (names.RestrictedNameChars)
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"

_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_REST = _FIRST | frozenset("_.-")


def _follows_rule(name: str) -> bool:
    """``[a-zA-Z0-9][a-zA-Z0-9_.-]+``: two characters or more."""
    return len(name) >= 2 and name[0] in _FIRST and _REST.issuperset(name)


def bare_name(ref: str) -> str:
    """*ref* without Docker's one leading ``/``: what a container is looked up by."""
    return ref[1:] if ref.startswith("/") else ref


def container_name(name: str) -> str:
    """The stored form of the container name *name* (one leading ``/`` stripped) if it
    obeys Docker's rule and has at most 128 characters; InvalidArgument otherwise."""
    bare = bare_name(name)
    if not _follows_rule(bare) or len(bare) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            "check container name", repr(name),
            detail=f"only {NAME_CHARS} are allowed, 2 to {MAX_NAME_LENGTH} characters")
    return bare


def is_volume_name(name: str) -> bool:
    """Whether *name* is a valid local volume name (``NAME:/dst`` is a volume, not a path)."""
    return _follows_rule(name) and len(name) <= MAX_VOLUME_NAME_LENGTH


def volume_name(name: str, operation: str = "check volume name") -> str:
    """*name* if it is a valid local volume name, else InvalidArgument in Docker's words:
    ``create volume /abs: "/abs" includes invalid characters for a local volume name,
    only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host
    directory, use absolute path``. *operation* names what was refused."""
    if is_volume_name(name):
        return name
    shown = _go_quote(name)
    if len(name) == 1:
        detail = "volume name is too short, names should be at least two alphanumeric " \
                 "characters"
    elif len(name) > MAX_VOLUME_NAME_LENGTH:
        detail = f"volume name is too long, at most {MAX_VOLUME_NAME_LENGTH} characters"
    else:
        detail = f"{shown} includes invalid characters for a local volume name, only " \
                 f"{_go_quote(NAME_CHARS)} are allowed. If you intended to pass a host " \
                 "directory, use absolute path"
    raise InvalidArgument(operation, name if name.isprintable() else shown, detail=detail)


def _go_quote(text: str) -> str:
    """Go's %q for what a terminal shows: quotes, backslashes and control characters
    escaped, so a name with a newline still makes one line."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'
