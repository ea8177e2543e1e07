"""Registry credentials: the ``auths`` files of Docker and Podman, read and written.

Read, first match wins: the file given with ``--authfile`` or ``$REGISTRY_AUTH_FILE``;
tsubo's own ``$XDG_CONFIG_HOME/tsubo/auth.json`` (``~/.config/tsubo/auth.json``); Podman's
``$XDG_RUNTIME_DIR/containers/auth.json``; Docker's ``$DOCKER_CONFIG/config.json``
(``~/.docker/config.json``). All share one format::

    {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}

``tsubo login`` writes the first of these paths only (``--authfile``/``$REGISTRY_AUTH_FILE``
or tsubo's own file), mode 0600 through a rename, so Docker's file, which may name
credential helpers, is never rewritten. Credential helpers (``credsStore``/``credHelpers``)
are not run: a registry configured only through one needs ``tsubo login``.

Keys are matched the way Docker does: ``https://host/v1/`` and ``host`` name the same
registry; Docker Hub is stored as ``https://index.docker.io/v1/``, also found as
``docker.io``/``index.docker.io``/``registry-1.docker.io``.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument, TsuboError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def write_path(authfile: str = "") -> str:
    """Where ``login``/``logout`` write."""
    if authfile:
        return authfile
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return os.environ["REGISTRY_AUTH_FILE"]
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return f"{config_home}/tsubo/auth.json"


def read_paths(authfile: str = "") -> list[str]:
    """The files searched for credentials, in order."""
    paths = [write_path(authfile)]
    if not authfile and not os.environ.get("REGISTRY_AUTH_FILE"):
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
        if runtime_dir:
            paths.append(f"{runtime_dir}/containers/auth.json")
        docker_config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        paths.append(f"{docker_config}/config.json")
    return paths


def normalise_key(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``; Docker Hub's aliases -> ``docker.io``."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_ALIASES else host


def lookup(registry: str, authfile: str = "") -> tuple[str, str] | None:
    """``(user, password)`` for *registry*, or None (anonymous)."""
    wanted = normalise_key(registry)
    for path in read_paths(authfile):
        auths = _read_auths(path)
        for key, entry in auths.items():
            if normalise_key(key) == wanted and isinstance(entry, dict):
                credentials = _decode_entry(entry, path, key)
                if credentials is not None:
                    return credentials
    return None


def store(registry: str, user: str, password: str, authfile: str = "") -> str:
    """Save credentials for *registry*; return the file written."""
    import base64

    if not user or ":" in user:
        raise InvalidArgument("log in", registry, detail="the username must be non-empty "
                              "and hold no ':'")
    if not password:
        raise InvalidArgument("log in", registry, detail="empty password")
    path = write_path(authfile)
    document = _read_document(path)
    auths = document.setdefault("auths", {})
    for key in [key for key in auths if normalise_key(key) == normalise_key(registry)]:
        del auths[key]
    key = DOCKER_HUB_KEY if normalise_key(registry) == "docker.io" else registry
    auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_document(path, document)
    return path


def remove(registry: str, authfile: str = "") -> bool:
    """Forget *registry*'s credentials in the written file; False if there were none."""
    path = write_path(authfile)
    document = _read_document(path)
    auths = document.get("auths", {})
    keys = [key for key in auths if normalise_key(key) == normalise_key(registry)]
    for key in keys:
        del auths[key]
    if keys:
        _write_document(path, document)
    return bool(keys)


def _read_document(path: str) -> dict[str, dict[str, object]]:
    from tsubo import jsonwire

    try:
        with open(path, "rb") as source:
            text = source.read(1 << 20)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise TsuboError.from_os_error("read credentials", path, error) from None
    document = jsonwire.loads(text, path, operation="read credentials") if text.strip() else {}
    if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
        raise InvalidArgument("read credentials", path, detail="expected {\"auths\": {...}}")
    return document


def _read_auths(path: str) -> dict[str, object]:
    auths = _read_document(path).get("auths", {})
    assert isinstance(auths, dict)
    return auths


def _decode_entry(entry: dict[str, object], path: str, key: str) -> tuple[str, str] | None:
    import base64
    import binascii

    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode() \
                .partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise InvalidArgument("read credentials", f"{path} ({key})",
                                  detail="auth is not base64 of user:password")
        return user, password
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return name, secret
    return None


def _write_document(path: str, document: dict[str, dict[str, object]]) -> None:
    import json  # login/logout only: the pretty form people edit by hand

    directory = os.path.dirname(path) or "."
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as target:
            target.write(json.dumps(document, indent=2) + "\n")
            target.flush()
            os.fsync(target.fileno())
        os.rename(temporary, path)
    except OSError as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise TsuboError.from_os_error("write credentials", path, error) from None
