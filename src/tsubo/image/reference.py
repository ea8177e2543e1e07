"""Image references (``busybox``, ``localhost:5000/test/multi:1``, ``x@sha256:...``).

Parses and normalises references exactly as Docker's ``reference.ParseNormalizedNamed`` does
(github.com/distribution/reference, normalize.go): a first path component holding ``.`` or
``:``, equal to ``localhost`` or with an upper-case letter is a registry, anything else lives
on ``docker.io``, and a single name on ``docker.io`` gets the ``library/`` prefix. Validation
follows the distribution spec's grammar (reference.go). The grammar is checked by hand: ``re``
costs milliseconds to import and this module is on the CLI's path; so does ``dataclasses``
(it imports ``re`` and ``inspect``), hence the hand-written value class.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument
from tsubo.oci.image_spec import digest_problem

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRY = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
#: reference.go: NameTotalLengthMax
_NAME_MAX = 255
_TAG_MAX = 128

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _ALNUM | {"_"}
_TAG_CHARS = _WORD | {".", "-"}
_HEX_LOWER = frozenset("0123456789abcdef")
_HEX_ANY = _HEX_LOWER | frozenset("ABCDEF")
_DIGITS = frozenset("0123456789")


class Reference:
    """A normalised reference, immutable and hashable.

    ``tag`` is "" only when a digest was given without a tag: Docker adds ``latest`` only to
    a name with neither (``TagNameOnly``).
    """

    __slots__ = ("digest", "registry", "repository", "tag")

    registry: str
    repository: str
    tag: str
    digest: str

    def __init__(
        self, registry: str, repository: str, tag: str = DEFAULT_TAG, digest: str = ""
    ) -> None:
        object.__setattr__(self, "registry", registry)
        object.__setattr__(self, "repository", repository)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reference is immutable: cannot set {name!r}")

    def _key(self) -> tuple[str, str, str, str]:
        return (self.registry, self.repository, self.tag, self.digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Reference(registry={self.registry!r}, repository={self.repository!r}, "
                f"tag={self.tag!r}, digest={self.digest!r})")

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: registry and repository, no tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """``busybox``, ``user/app``, ``localhost:5000/x``: Docker's short name."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        if self.repository.startswith(_OFFICIAL_PREFIX) and self.repository.count("/") == 1:
            return self.repository[len(_OFFICIAL_PREFIX):]
        return self.repository

    @property
    def familiar(self) -> str:
        """Docker's ``FamiliarString``: ``busybox:latest``, ``user/app@sha256:...``."""
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        text = f":{self.tag}" if self.tag else ""
        if self.digest:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse_reference(text: str) -> Reference:
    """Parse and normalise *text*; raise :class:`InvalidArgument` naming what is wrong."""

    def invalid(detail: str) -> InvalidArgument:
        return InvalidArgument("parse image reference", repr(text), detail=detail)

    if not text:
        raise invalid("empty reference")
    # normalize.go refuses a bare 64-hex string: it is an image ID, not a name
    if len(text) == 64 and set(text) <= _HEX_LOWER:
        raise invalid("cannot specify a 64-byte hexadecimal string (an image ID) as a name")

    remainder, at, digest = text.partition("@")
    if at:
        problem = digest_problem(digest)
        if problem:
            raise invalid(problem)
    colon = remainder.rfind(":")
    tag = ""
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        problem = _tag_problem(tag)
        if problem:
            raise invalid(problem)
    if not remainder:
        raise invalid("missing repository name")
    if len(remainder) > _NAME_MAX:
        raise invalid(f"repository name longer than {_NAME_MAX} characters")

    registry, path = _split_registry(remainder)
    problem = _registry_problem(registry)
    if problem:
        raise invalid(problem)
    if path.lower() != path:
        raise invalid("repository name must be lowercase")
    for component in path.split("/"):
        problem = _component_problem(component)
        if problem:
            raise invalid(problem)
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)


def _split_registry(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain: which part of *name* is the registry."""
    first, slash, rest = name.partition("/")
    if not slash or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        return DEFAULT_REGISTRY, name
    if first == _LEGACY_REGISTRY:
        first = DEFAULT_REGISTRY
    return first, rest


def _registry_problem(registry: str) -> str:
    """reference.go domainAndPort: host (dns name, IPv4 or [IPv6]) and an optional port."""
    host, port = registry, ""
    if registry.startswith("["):
        end = registry.find("]")
        if end < 0 or not registry[1:end] or not set(registry[1:end]) <= _HEX_ANY | {":"}:
            return f"invalid registry {registry!r}"
        host, after = registry[: end + 1], registry[end + 1 :]
        if after:
            if not after.startswith(":"):
                return f"invalid registry {registry!r}"
            port = after[1:]
            if not port:
                return f"invalid registry port in {registry!r}"
    else:
        host, colon, port = registry.partition(":")
        if colon and not port:
            return f"invalid registry port in {registry!r}"
        for label in host.split("."):
            if not label or not set(label) <= _ALNUM | {"-"} or "-" in (label[0], label[-1]):
                return f"invalid registry {registry!r}"
    if port and not set(port) <= _DIGITS:
        return f"invalid registry port in {registry!r}"
    return ""


def _component_problem(component: str) -> str:
    """``[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*``, checked one separator run at a time."""
    bad = f"invalid repository path component {component!r}"
    if not component:
        return "empty repository path component"
    if component[0] not in _LOWER_ALNUM or component[-1] not in _LOWER_ALNUM:
        return bad
    separator = ""
    for char in component:
        if char in _LOWER_ALNUM:
            if separator and separator not in {".", "_", "__"} and set(separator) != {"-"}:
                return bad
            separator = ""
        elif char in "._-":
            separator += char
        else:
            return bad
    return ""


def _tag_problem(tag: str) -> str:
    r"""``[\w][\w.-]{0,127}``."""
    if not tag:
        return "empty tag"
    if len(tag) > _TAG_MAX:
        return f"tag longer than {_TAG_MAX} characters"
    if tag[0] not in _WORD or not set(tag) <= _TAG_CHARS:
        return f"invalid tag {tag!r}"
    return ""


def is_insecure_default(registry: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``[::1]`` (any port): plain http allowed."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host in {"localhost", "::1"}:
        return True
    parts = host.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(part and set(part) <= _DIGITS and int(part) <= 255 for part in parts)
    )
