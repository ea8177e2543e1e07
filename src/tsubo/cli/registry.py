"""The registry commands of ``tsubo``: ``pull``, ``push``, ``login``, ``logout``.

Output follows ``docker pull``/``push``: per-layer progress (``cli/progress.py``), then the
digest and a status line; ``-q`` prints only the reference. Credentials come from the
auths files ``image/auth.py`` describes.
"""

from __future__ import annotations

import sys

from tsubo.cli.argv import FLAG, VALUE, Option
from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from tsubo.api import Engine
    from tsubo.cli.argv import Parsed

_TLS = Option("tls-verify", FLAG, "require HTTPS with a verified certificate "
              "(default true; localhost is always plain http)", True)
_AUTHFILE = Option("authfile", VALUE, "credentials file (default $REGISTRY_AUTH_FILE, "
                   "~/.config/tsubo/auth.json, then Podman's and Docker's)")

PULL_OPTIONS = (
    Option("platform", VALUE, "OS/ARCH[/VARIANT] to pick from a multi-platform image"),
    Option("quiet,q", FLAG, "print only the image reference"),
    _TLS, _AUTHFILE,
)
PUSH_OPTIONS = (Option("quiet,q", FLAG, "print only the digest"), _TLS, _AUTHFILE)
LOGIN_OPTIONS = (
    Option("username,u", VALUE, "user name"),
    Option("password,p", VALUE, "password (visible to other users: prefer --password-stdin)"),
    Option("password-stdin", FLAG, "read the password from stdin"),
    _TLS, _AUTHFILE,
)
LOGOUT_OPTIONS = (_AUTHFILE,)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def pull_command(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import parse_platform, parse_reference

    if len(parsed.positional) != 1:
        raise InvalidArgument("pull", " ".join(parsed.positional), detail="expected one "
                              "image reference")
    ref = parse_reference(parsed.positional[0])
    parse_platform(parsed.text("platform"))  # bad input fails before any output
    _pull(engine, str(ref), None if parsed.flag("quiet") else sys.stdout,
          platform=parsed.text("platform"), tls_verify=parsed.flag("tls_verify"),
          authfile=parsed.text("authfile"))
    _out(str(ref))
    return 0


def _pull(engine: Engine, reference: str, out: TextIO | None, *, platform: str = "",
          tls_verify: bool = True, authfile: str = "") -> None:
    """Pull *reference*, drawing Docker's progress on *out* (None: quietly)."""
    from tsubo.api import parse_reference
    from tsubo.cli.progress import ProgressView

    ref = parse_reference(reference)
    view = None if out is None else ProgressView(out)
    if out is not None:
        out.write(f"{ref.digest or ref.tag}: Pulling from {ref.familiar_name}\n")
        out.flush()
    result = engine.pull(str(ref), platform=platform, tls_verify=tls_verify,
                         authfile=authfile, events=view)
    if view is not None and out is not None:
        view.finish()
        state = "Image is up to date" if result.up_to_date else "Downloaded newer image"
        out.write(f"Digest: {result.digest}\nStatus: {state} for {ref.familiar}\n")
        out.flush()


def run_puller(engine: Engine, *, quiet: bool) -> Callable[[str, str, bool], None]:
    """What ``run``/``create`` pull a missing image with (``Engine.with_image``): Docker's
    "Unable to find image 'X' locally", then the progress, on stderr (stdout is the
    container's, or its ID); ``-q`` shows nothing."""
    def pull(reference: str, platform: str, missing: bool) -> None:
        from tsubo.api import parse_reference

        if missing and not quiet:
            sys.stderr.write(f"Unable to find image '{parse_reference(reference).familiar}' "
                             "locally\n")
            sys.stderr.flush()
        _pull(engine, reference, None if quiet else sys.stderr, platform=platform)

    return pull


def push_command(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import destination_reference
    from tsubo.cli.progress import ProgressView

    if len(parsed.positional) not in (1, 2):
        raise InvalidArgument("push", " ".join(parsed.positional), detail="expected IMAGE "
                              "[DESTINATION]")
    source = parsed.positional[0]
    destination = parsed.positional[1] if len(parsed.positional) == 2 else source
    ref = destination_reference(destination)
    engine.image(source)  # a missing image fails before any output
    quiet = parsed.flag("quiet")
    view = None if quiet else ProgressView(sys.stdout)
    if view is not None:
        _out(f"The push refers to repository [{ref.name}]")
    result = engine.push(source, destination, tls_verify=parsed.flag("tls_verify"),
                         authfile=parsed.text("authfile"), events=view)
    if view is not None:
        view.finish()
        _out(f"{ref.tag}: digest: {result.digest} size: {result.size}")
    else:
        _out(result.digest)
    return 0


def _registry_argument(parsed: Parsed, command: str) -> str:
    from tsubo.api import normalise_key

    if len(parsed.positional) > 1:
        raise InvalidArgument(command, " ".join(parsed.positional),
                              detail="expected at most one registry")
    return normalise_key(parsed.positional[0]) if parsed.positional else "docker.io"


def login_command(engine: Engine, parsed: Parsed) -> int:
    registry = _registry_argument(parsed, "login")
    user = parsed.text("username")
    password = parsed.text("password")
    if parsed.flag("password_stdin"):
        if password:
            raise InvalidArgument("login", registry,
                                  detail="--password and --password-stdin are exclusive")
        if not user:
            raise InvalidArgument("login", registry, detail="--password-stdin needs --username")
        password = sys.stdin.read(1 << 16).rstrip("\r\n")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    if not user or not password:
        if not sys.stdin.isatty():
            raise InvalidArgument("login", registry, detail="no username/password given "
                                  "and stdin is not a terminal to ask for them")
        import getpass

        user = user or input("Username: ").strip()
        password = password or getpass.getpass("Password: ")
    engine.login(registry, user, password, tls_verify=parsed.flag("tls_verify"),
                 authfile=parsed.text("authfile"))
    _out("Login Succeeded")
    return 0


def logout_command(engine: Engine, parsed: Parsed) -> int:
    registry = _registry_argument(parsed, "logout")
    engine.logout(registry, authfile=parsed.text("authfile"))
    _out(f"Removing login credentials for {registry}")
    return 0
