"""The HTTP client of the OCI distribution spec: manifests and blobs, in and out.

One :class:`RegistryClient` speaks to one registry. It owns:

- transport: ``http.client`` over TLS (verified) for every registry, plain ``http`` only for
  ``localhost``/127.0.0.0/8/``[::1]`` (as Docker) or when the user says ``--tls-verify=false``
  (then https without verification is tried first, as Docker's insecure registries); one
  keep-alive connection per host and thread; redirects followed (blob downloads are often
  sent to a CDN), without the ``Authorization`` header when the host changes;
- authentication: the ``WWW-Authenticate`` challenge of ``GET /v2/`` says Bearer (a token
  from the realm, for a repository scope, with the user's basic credentials when there are
  any — Docker Hub's flow) or Basic; tokens are cached per scope and refreshed on a 401;
- bounded memory: manifests and configs are read only up to a limit (whatever the registry
  claims), blobs are streamed in chunks into a :class:`~tsubo.image.blobs.BlobWriter`, which
  verifies size and digest and keeps a partial download across retries (``Range`` resumes;
  a server that ignores ``Range`` and sends the whole blob again is handled).

Errors are one line naming the registry's own error code and message when it sends one.
Nothing here knows about images, layers or the store: ``image/pull.py`` and
``image/push.py`` compose these calls.
"""

from __future__ import annotations

import os
import threading

from tsubo.errors import InvalidArgument, NotFound, TsuboError
from tsubo.oci.image_spec import MANIFEST_TYPES

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    from collections.abc import Callable
    from typing import IO

    from tsubo.image.blobs import BlobWriter


#: containerd's limit for a manifest or index; configs get the same bound
MANIFEST_MAX = 4 << 20
CHUNK = 1 << 18
#: attempts per blob when the connection breaks mid-transfer (each resumes)
BLOB_ATTEMPTS = 5
TIMEOUT = 60.0
USER_AGENT = "tsubo"

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"


class RegistryError(TsuboError):
    """The registry answered with an error status."""

    def __init__(self, operation: str, obj: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(operation, obj, detail=detail)


class Unauthorized(RegistryError):
    """401/403: no credentials, wrong credentials, or no access to the repository."""


def registry_host(registry: str) -> str:
    """The host:port to connect to for a reference's registry (Docker Hub's API host)."""
    return DOCKER_HUB_HOST if registry == DOCKER_HUB else registry


class RegistryClient:
    """Requests to one registry; safe to share between download threads."""

    def __init__(self, registry: str, *, tls_verify: bool = True,
                 credentials: tuple[str, str] | None = None) -> None:
        from tsubo.image.reference import is_insecure_default

        self.registry = registry
        self.host = registry_host(registry)
        self.credentials = credentials
        self.tls_verify = tls_verify
        #: None until the first request decides (``--tls-verify=false``: https, else http)
        self.scheme: str | None = "http" if is_insecure_default(registry) else (
            "https" if tls_verify else None)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._pinged = False
        self._tokens: dict[str, str] = {}

    # --- transport -----------------------------------------------------------------------

    def _connection(self, scheme: str, host: str) -> http.client.HTTPConnection:
        import http.client

        pool: dict[tuple[str, str], http.client.HTTPConnection] = \
            self._local.__dict__.setdefault("pool", {})
        connection = pool.get((scheme, host))
        if connection is None:
            if scheme == "https":
                import ssl

                context = ssl.create_default_context()
                if not self.tls_verify and host == self.host:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                connection = http.client.HTTPSConnection(host, timeout=TIMEOUT,
                                                         context=context)
            else:
                connection = http.client.HTTPConnection(host, timeout=TIMEOUT)
            pool[(scheme, host)] = connection
        return connection

    def _drop(self, scheme: str, host: str) -> None:
        pool = self._local.__dict__.get("pool", {})
        connection = pool.pop((scheme, host), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self._local.__dict__.get("pool", {}).values():
            connection.close()
        self._local.__dict__["pool"] = {}

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | IO[bytes] | None = None) -> http.client.HTTPResponse:
        """One request to an absolute *url*; a stale keep-alive connection is retried once
        on a fresh one (only when nothing of a streamed body was sent)."""
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.netloc
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": USER_AGENT, **headers}
        for attempt in (1, 2):
            connection = self._connection(scheme, host)
            try:
                connection.request(method, target, body=body, headers=headers)
                return connection.getresponse()
            except (http.client.HTTPException, BrokenPipeError, ConnectionResetError):
                # a stale keep-alive connection, or one a misbehaving server left out of
                # step (a body shorter than its Content-Length): a fresh one, once
                self._drop(scheme, host)
                rewound = body is None or isinstance(body, bytes) or _rewind(body)
                if attempt == 2 or not rewound:
                    raise
            except BaseException:
                self._drop(scheme, host)
                raise
        raise AssertionError("unreachable")

    def _base(self) -> str:
        if self.scheme is None:
            self._ping()
        return f"{self.scheme}://{self.host}"

    # --- authentication ------------------------------------------------------------------

    def _ping(self) -> None:
        """``GET /v2/``: decides http/https for insecure registries and learns the
        authentication challenge."""
        import ssl

        if self._pinged:
            return
        schemes = [self.scheme] if self.scheme else ["https", "http"]
        last_error: BaseException | None = None
        for scheme in schemes:
            assert scheme is not None
            try:
                response = self._send("GET", f"{scheme}://{self.host}/v2/", {})
            except (ssl.SSLError, OSError) as error:
                last_error = error
                continue
            _read_bounded(response, 1 << 16)
            self.scheme = scheme
            if response.status == 401:
                self._challenge = _parse_challenge(response.getheader("WWW-Authenticate", ""))
            elif response.status >= 400 and response.status != 404:
                raise RegistryError("contact registry", self.registry, response.status,
                                    f"GET /v2/ answered {response.status} {response.reason}")
            self._pinged = True
            return
        raise _connection_error(self.registry, last_error)

    def _authorization(self, scope: str, *, refresh: bool = False) -> dict[str, str]:
        self._ping()
        if self._challenge is None:
            return {}
        kind, params = self._challenge
        if kind == "basic":
            if self.credentials is None:
                raise Unauthorized("authenticate to", self.registry, 401,
                                   "the registry wants credentials (hint: tsubo login "
                                   f"{self.registry})")
            return {"Authorization": _basic(*self.credentials)}
        with self._lock:
            token = None if refresh else self._tokens.get(scope)
            if token is None:
                token = self._fetch_token(params, scope)
                self._tokens[scope] = token
        return {"Authorization": f"Bearer {token}"}

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        from urllib.parse import urlencode, urlsplit

        from tsubo import jsonwire

        realm = params.get("realm", "")
        if urlsplit(realm).scheme not in ("https", "http"):
            raise InvalidArgument("authenticate to", self.registry,
                                  detail=f"token realm {realm!r} is not an http(s) URL")
        query = [("service", params.get("service", ""))]
        query += [("scope", one) for one in scope.split()]  # several: one parameter each
        if self.credentials is not None:
            query.append(("account", self.credentials[0]))
        headers = {"Authorization": _basic(*self.credentials)} if self.credentials else {}
        url = realm + ("&" if "?" in realm else "?") + urlencode(
            [(key, value) for key, value in query if value])
        try:
            response = self._send("GET", url, headers)
        except OSError as error:
            raise _connection_error(realm, error) from None
        body = _read_bounded(response, 1 << 20)
        if response.status in (401, 403):
            raise Unauthorized("authenticate to", self.registry, response.status,
                               "the token service refused the credentials"
                               if self.credentials else "the token service refused "
                               f"anonymous access (hint: tsubo login {self.registry})")
        if response.status != 200:
            raise RegistryError("authenticate to", self.registry, response.status,
                                f"token service answered {response.status}")
        try:
            answer = jsonwire.loads(body)
        except ValueError:
            answer = None
        token = (answer.get("token") or answer.get("access_token")) \
            if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise InvalidArgument("authenticate to", self.registry,
                                  detail="the token service sent no token")
        return token

    def check_login(self) -> None:
        """Raise :class:`Unauthorized` unless the credentials are accepted (``login``)."""
        self._ping()
        if self._challenge is None:
            return
        if self._challenge[0] == "bearer":
            self._authorization("", refresh=True)
            return
        response = self._send("GET", f"{self._base()}/v2/", self._authorization(""))
        _read_bounded(response, 1 << 16)
        if response.status in (401, 403):
            raise Unauthorized("log in to", self.registry, response.status,
                               "unauthorized: wrong username or password")

    # --- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, scope: str, *,
                headers: dict[str, str] | None = None, body: bytes | IO[bytes] | None = None,
                ) -> http.client.HTTPResponse:
        """*method* on *path* (``/v2/...``, or an absolute URL from a ``Location``) with
        authorization for *scope*; follows redirects for GET/HEAD; refreshes a rejected
        token once. The caller reads (or closes) the response."""
        import http.client

        url = path if "://" in path else self._base() + path
        extra = dict(headers or {})
        authorization = self._authorization(scope)
        for attempt in range(7):
            same_host = _netloc(url) == self.host
            send_headers = {**extra, **(authorization if same_host else {})}
            try:
                response = self._send(method, url, send_headers, body)
            except (OSError, http.client.HTTPException) as error:
                raise _connection_error(self.registry, error) from None
            if response.status == 401 and same_host and attempt == 0 \
                    and self._challenge is not None and self._challenge[0] == "bearer" \
                    and (body is None or isinstance(body, bytes) or _rewind(body)):
                _read_bounded(response, 1 << 16)
                authorization = self._authorization(scope, refresh=True)
                continue
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.getheader("Location", "")
                _read_bounded(response, 1 << 16)
                if not location:
                    break
                url = _join_url(url, location)
                continue
            return response
        raise RegistryError(method, path, 310, "too many redirects")

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """``(content, media type, digest)`` of a manifest or index, by tag or digest.

        A digest reference is verified against the content; a tag's content digest is
        computed (and checked against ``Docker-Content-Digest`` when sent)."""
        import hashlib

        response = self.request("GET", f"/v2/{repository}/manifests/{reference}",
                                _pull_scope(repository),
                                headers={"Accept": ", ".join(MANIFEST_TYPES)})
        where = f"{self.registry}/{repository}:{reference}" if ":" not in reference \
            else f"{self.registry}/{repository}@{reference}"
        _raise_for_status(response, "fetch manifest", where)
        content = _read_bounded(response, MANIFEST_MAX, where=where)
        digest = f"sha256:{hashlib.sha256(content).hexdigest()}"
        media_type = response.getheader("Content-Type", "").split(";", 1)[0].strip()
        if reference.startswith("sha256:") and digest != reference:
            raise InvalidArgument("verify manifest", where, detail=f"content is {digest}")
        sent = response.getheader("Docker-Content-Digest", "")
        if sent.startswith("sha256:") and sent != digest:
            raise InvalidArgument("verify manifest", where,
                                  detail=f"registry says {sent}, content is {digest}")
        return content, media_type, digest

    def get_small_blob(self, repository: str, digest: str) -> bytes:
        """A config blob, read whole (bounded) and verified."""
        import hashlib

        response = self.request("GET", f"/v2/{repository}/blobs/{digest}",
                                _pull_scope(repository))
        _raise_for_status(response, "fetch blob", digest)
        content = _read_bounded(response, MANIFEST_MAX, where=digest)
        actual = f"sha256:{hashlib.sha256(content).hexdigest()}"
        if actual != digest:
            raise InvalidArgument("verify blob", digest, detail=f"content is {actual}")
        return content

    def fetch_blob(self, repository: str, writer: BlobWriter,
                   progress: Callable[[int], None], cancelled: threading.Event) -> None:
        """Stream the blob *writer* expects into it, resuming from what is there; retried
        with ``Range`` when the connection breaks. The caller commits (which verifies)."""
        import http.client
        import time

        digest = writer.digest
        error: BaseException | None = None
        for attempt in range(BLOB_ATTEMPTS):
            if cancelled.is_set():
                raise InterruptedError(digest)
            if attempt:
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
            headers = {"Range": f"bytes={writer.offset}-"} if writer.offset else {}
            try:
                response = self.request("GET", f"/v2/{repository}/blobs/{digest}",
                                        _pull_scope(repository), headers=headers)
            except RegistryError:
                raise
            except TsuboError as failure:  # connection refused / reset: try again
                error = failure
                continue
            if response.status == 416 and writer.offset:  # our partial is not a prefix
                response.close()  # its body need not match its Content-Length: drop it
                self.close()
                progress(-writer.offset)
                writer.reset()
                continue
            if response.status not in (200, 206):
                try:
                    _raise_for_status(response, "fetch blob", digest, ok=(200, 206))
                finally:
                    self.close()
            if response.status == 200 and writer.offset:
                progress(-writer.offset)  # the server ignored Range: start again
                writer.reset()
            elif response.status == 206 and not _content_range_starts(response, writer.offset):
                response.close()
                self.close()
                progress(-writer.offset)
                writer.reset()
                continue
            try:
                while chunk := response.read(CHUNK):
                    writer.write(chunk)
                    progress(len(chunk))
                    if cancelled.is_set():
                        response.close()
                        raise InterruptedError(digest)
                if writer.size is not None and writer.offset < writer.size:
                    raise http.client.IncompleteRead(b"", writer.size - writer.offset)
                return
            except (OSError, http.client.HTTPException) as failure:
                if isinstance(failure, InterruptedError):
                    raise
                error = failure
                self.close()
        raise TsuboError("fetch blob", digest, detail=f"gave up after {BLOB_ATTEMPTS} "
                         f"attempts: {_describe(error)}")

    # --- push ----------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                _push_scope(repository))
        response.read()
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        _raise_for_status(response, "check blob", digest)
        return False

    def mount_blob(self, repository: str, digest: str, origin: str) -> bool:
        """A cross-repository mount of *digest* from *origin*; False when the registry
        declines (it then opens an upload session, which is cancelled)."""
        from urllib.parse import quote

        scope = f"{_push_scope(repository)} {_pull_scope(origin)}"  # both, in one token
        response = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={quote(origin)}",
            scope, headers={"Content-Length": "0"})
        _read_bounded(response, 1 << 16)
        if response.status == 201:
            return True
        location = response.getheader("Location", "")
        if response.status == 202 and location:
            cancel = self.request("DELETE", _join_url(self._base() + "/v2/", location), scope)
            cancel.read()
        return False

    def upload_blob(self, repository: str, digest: str, size: int, source: IO[bytes]) -> None:
        """A monolithic upload: ``POST`` a session, ``PUT`` the content with the digest."""
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/",
                                _push_scope(repository), headers={"Content-Length": "0"})
        _raise_for_status(response, "start upload of", digest, ok=(202,))
        _read_bounded(response, 1 << 16)
        location = response.getheader("Location", "")
        if not location:
            raise InvalidArgument("upload blob", digest, detail="the registry sent no Location")
        url = _join_url(self._base() + "/v2/", location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        response = self.request("PUT", url, _push_scope(repository), body=source, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)})
        _raise_for_status(response, "upload blob", digest, ok=(201, 204))
        _read_bounded(response, 1 << 16)

    def put_manifest(self, repository: str, reference: str, content: bytes,
                     media_type: str) -> str:
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}",
                                _push_scope(repository), body=content,
                                headers={"Content-Type": media_type})
        _raise_for_status(response, "push manifest", f"{self.registry}/{repository}:"
                          f"{reference}", ok=(201, 202, 204))
        _read_bounded(response, 1 << 16)
        return response.getheader("Docker-Content-Digest", "")


# --- helpers ----------------------------------------------------------------------------

def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _rewind(body: IO[bytes]) -> bool:
    try:
        body.seek(0)
    except (AttributeError, OSError):
        return False
    return True


def _netloc(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _join_url(base: str, location: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, location)


def _content_range_starts(response: http.client.HTTPResponse, offset: int) -> bool:
    value = response.getheader("Content-Range", "")  # "bytes 100-199/200"
    start = value.removeprefix("bytes ").split("-", 1)[0]
    return start.isdigit() and int(start) == offset


def _read_bounded(response: http.client.HTTPResponse, limit: int, *, where: str = "") -> bytes:
    """The whole body, refusing more than *limit* bytes (whatever Content-Length says)."""
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise InvalidArgument("read response", where or response.geturl() or "",
                              detail=f"{declared} bytes is more than the limit of {limit}")
    content = response.read(limit + 1)
    if len(content) > limit:
        response.close()
        raise InvalidArgument("read response", where or "",
                              detail=f"more than the limit of {limit} bytes")
    return content


def _raise_for_status(response: http.client.HTTPResponse, operation: str, obj: str,
                      ok: tuple[int, ...] = (200,)) -> None:
    if response.status in ok:
        return
    import http.client

    try:
        body = _read_bounded(response, 1 << 16) if response.status != 416 else b""
    except (OSError, http.client.HTTPException):  # a broken error body: the status says it
        body = b""
    detail = _registry_message(body) or f"{response.status} {response.reason}"
    if response.status in (401, 403):
        raise Unauthorized(operation, obj, response.status,
                           f"{detail} (hint: tsubo login, or check the repository name)")
    if response.status == 404:
        raise NotFound(operation, obj, detail=detail)
    raise RegistryError(operation, obj, response.status, detail)


def _registry_message(body: bytes) -> str:
    """``CODE: message`` from the distribution spec's ``{"errors": [...]}`` body."""
    from tsubo import jsonwire

    try:
        answer = jsonwire.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    first = errors[0]
    code = str(first.get("code", "")).lower().replace("_", " ")
    message = str(first.get("message", ""))
    return f"{code}: {message}" if code and message and code != message else message or code


def _parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    kind, _, rest = header.strip().partition(" ")
    kind = kind.lower()
    if kind not in ("bearer", "basic"):
        return None
    params: dict[str, str] = {}
    index = 0
    while index < len(rest):
        equals = rest.find("=", index)
        if equals < 0:
            break
        key = rest[index:equals].strip(" ,").lower()
        index = equals + 1
        if index < len(rest) and rest[index] == '"':
            end = index + 1
            value = []
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < len(rest):
                    end += 1
                value.append(rest[end])
                end += 1
            params[key] = "".join(value)
            index = end + 1
        else:
            end = rest.find(",", index)
            end = len(rest) if end < 0 else end
            params[key] = rest[index:end].strip()
            index = end + 1
    return kind, params


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, TsuboError):
        return error.message()
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _connection_error(where: str, error: BaseException | None) -> TsuboError:
    import socket
    import ssl

    if isinstance(error, socket.gaierror):
        host = where.split("://", 1)[-1].split("/", 1)[0]
        return TsuboError("connect to", where, detail=f"cannot resolve {host.split(':')[0]}: "
                          f"{error.strerror or error}")

    if isinstance(error, ssl.SSLError):
        return TsuboError("connect to", where, detail=f"TLS: {error.reason or error}",
                          hint="for a registry without TLS use --tls-verify=false")
    if isinstance(error, OSError) and error.errno:
        return TsuboError("connect to", where, errno=error.errno,
                          detail=os.strerror(error.errno))
    return TsuboError("connect to", where, detail=_describe(error))

