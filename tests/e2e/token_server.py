"""A minimal registry token server for tests (stdlib + the openssl CLI, run as a script).

    ip netns exec NS python tests/e2e/token_server.py --listen 127.0.0.1:5001 \\
        --key key.pem --cert cert.pem --issuer ISSUER --service SERVICE \\
        --users USERS [--anonymous-pull] [--log FILE]

It implements the realm side of the Docker registry token authentication: ``GET
/token?service=S&scope=repository:NAME:pull,push`` with HTTP basic credentials checked
against USERS (``user:password`` lines, plain text: test data only) answers ``{"token":
JWT, "access_token": JWT, "expires_in": 300, "issued_at": ...}``. The JWT is RS256, signed
by ``openssl dgst -sha256 -sign KEY`` and carries the certificate in its ``x5c`` header;
the registry trusts it through ``auth.token.rootcertbundle`` = that certificate. A valid
user gets every action asked for; an anonymous client gets ``pull`` only with
``--anonymous-pull`` (else 401); a wrong password is 401. Each request is logged as one
line (``token user=... scope=...`` or ``denied ...``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_LIFETIME = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def cert_der_b64(cert_pem: Path) -> str:
    """The certificate as standard base64 DER, the form JWS's x5c wants."""
    text = cert_pem.read_text()
    body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----")[0]
    return "".join(body.split())


def parse_scopes(values: list[str]) -> list[dict[str, Any]]:
    """`repository:test/multi:pull,push` (one or several) -> JWT access entries."""
    access = []
    for value in values:
        for scope in value.split(" "):
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": kind, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
    return access


class Signer:
    def __init__(self, key: Path, cert: Path, issuer: str, service: str) -> None:
        self.key = key
        self.x5c = cert_der_b64(cert)
        self.issuer = issuer
        self.service = service
        self._lock = threading.Lock()

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self.service,
            "exp": now + TOKEN_LIFETIME, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(8), "access": access,
        }
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        with self._lock:
            proc = subprocess.run(
                ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                input=signing_input.encode(), capture_output=True, check=True, timeout=30,
            )
        return signing_input + "." + b64url(proc.stdout)


def make_handler(signer: Signer, users: dict[str, str], anonymous_pull: bool,
                 log_path: Path | None) -> type[BaseHTTPRequestHandler]:
    log_lock = threading.Lock()

    def log(line: str) -> None:
        if log_path is not None:
            with log_lock, log_path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return  # quiet: the log file says what matters

        def deny(self, why: str) -> None:
            log(f"denied {why}")
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": why}]}).encode()
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="tsubo-test-token"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self.send_error(404)
                return
            query = parse_qs(url.query)
            if query.get("service", [signer.service])[0] != signer.service:
                self.deny(f"unknown service {query.get('service')}")
                return
            access = parse_scopes(query.get("scope", []))
            user = ""
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    self.deny("malformed basic credentials")
                    return
                if users.get(user) != password or not user:
                    self.deny(f"wrong user or password for {user!r}")
                    return
            elif anonymous_pull:
                for entry in access:
                    entry["actions"] = [a for a in entry["actions"] if a == "pull"]
            else:
                self.deny("credentials required")
                return
            token = signer.token(user, access)
            log(f"token user={user or '-'} scope={' '.join(query.get('scope', [])) or '-'}")
            body = json.dumps({
                "token": token, "access_token": token, "expires_in": TOKEN_LIFETIME,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--key", required=True, type=Path, help="RSA private key (PEM)")
    parser.add_argument("--cert", required=True, type=Path, help="its certificate (PEM)")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--users", required=True, type=Path, help="user:password lines")
    parser.add_argument("--anonymous-pull", action="store_true")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    users = dict(line.split(":", 1) for line in args.users.read_text().splitlines() if line)
    signer = Signer(args.key, args.cert, args.issuer, args.service)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)),
                                 make_handler(signer, users, args.anonymous_pull, args.log))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
