"""A fault-injecting HTTP/1.1 proxy for registry tests (stdlib only, run as a script).

    ip netns exec NS python tests/e2e/fault_proxy.py --listen 127.0.0.1:5002 \\
        --upstream 127.0.0.1:5000 [--cut-after N [--cut-times K]] [--stall-after N] \\
        [--strip-range] [--log FILE]

It sits in front of a registry inside a test's throwaway network namespace and passes every
request through, one request per upstream connection (``Connection: close`` both ways, so
each response ends when the upstream closes), with the faults a pull must survive:

- ``--cut-after N``: the first K (default 1) blob downloads (``GET /v2/.../blobs/...``,
  status 200 or 206) whose body is longer than N bytes are cut off after exactly N body
  bytes: the client sees a short read, then the connection close. Later ones pass.
- ``--stall-after N``: every blob download longer than N bytes sends exactly N body bytes,
  then nothing more, with the connection kept open until the proxy is stopped: the client
  hangs mid-download (a test then kills it, to see the next pull resume).
- ``--strip-range``: the ``Range`` (and ``If-Range``) header is dropped from every request,
  so the registry answers a resumed download with the whole blob (200, not 206).

Each fault, each request and each blob response relayed in full is appended to the log file
as one line (``cut``, ``stall``, ``strip-range``, ``request``, ``sent``), so a test can tell
that the fault really happened and what a client downloaded. SIGTERM or SIGINT stops the
proxy. It only ever connects to ``--upstream``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import socket
import sys
import threading
import types

HEAD_LIMIT = 64 * 1024
CHUNK = 64 * 1024
BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})")
TIMEOUT = 60.0


class Faults:
    """The configured faults and what has been done so far (shared by all connections)."""

    def __init__(self, cut_after: int | None, cut_times: int, strip_range: bool,
                 log_path: str | None, stall_after: int | None = None) -> None:
        self.cut_after = cut_after
        self.cuts_left = cut_times if cut_after is not None else 0
        self.strip_range = strip_range
        self.stall_after = stall_after
        #: never set: a stalled response waits on it until the process ends
        self.stopped = threading.Event()
        self._log_path = log_path
        self._lock = threading.Lock()

    def log(self, line: str) -> None:
        if self._log_path is None:
            return
        with self._lock, open(self._log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    def take_cut(self, body_length: int | None) -> int | None:
        """The byte count to cut this blob response after, or None (and count the cut)."""
        with self._lock:
            if self.cut_after is None or self.cuts_left <= 0:
                return None
            if body_length is not None and body_length <= self.cut_after:
                return None
            self.cuts_left -= 1
            return self.cut_after

    def take_stall(self, body_length: int | None) -> int | None:
        """The byte count to stall this blob response after, or None."""
        if self.stall_after is None:
            return None
        if body_length is not None and body_length <= self.stall_after:
            return None
        return self.stall_after


def read_head(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """Read up to and including the blank line ending an HTTP head: (head, rest read)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            raise ValueError("HTTP head too long")
        chunk = sock.recv(CHUNK)
        if not chunk:
            raise EOFError("connection closed before the end of the HTTP head")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def join_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def without(headers: list[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    lowered = {name.lower() for name in names}
    return [(n, v) for n, v in headers if n.lower() not in lowered]


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    return None


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until *source* reaches EOF (the request body of a push, if any)."""
    with contextlib.suppress(OSError):
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def handle(client: socket.socket, upstream_address: tuple[str, int], faults: Faults) -> None:
    upstream = None
    try:
        client.settimeout(TIMEOUT)
        head, rest = read_head(client)
        request_line, headers = split_head(head)
        method, _, remainder = request_line.partition(" ")
        path = remainder.rpartition(" ")[0]
        faults.log(f"request {method} {path} range={header(headers, 'Range') or '-'}")
        if faults.strip_range and header(headers, "Range") is not None:
            faults.log(f"strip-range {method} {path} {header(headers, 'Range')}")
            headers = without(headers, "Range", "If-Range")
        headers = [*without(headers, "Connection", "Keep-Alive", "Proxy-Connection"),
                   ("Connection", "close")]
        upstream = socket.create_connection(upstream_address, timeout=TIMEOUT)
        upstream.sendall(join_head(request_line, headers) + rest)
        # The rest of the request body (a push's PATCH/PUT) flows while we read the answer.
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()

        response_head, body_start = read_head(upstream)
        status_line, response_headers = split_head(response_head)
        status = status_line.split(" ", 2)[1] if " " in status_line else ""
        length_text = header(response_headers, "Content-Length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        blob = BLOB_PATH.match(path)
        cut = stall = None
        if method == "GET" and blob and status in ("200", "206"):
            stall = faults.take_stall(length)
            cut = faults.take_cut(length) if stall is None else None
        response_headers = [*without(response_headers, "Connection", "Keep-Alive"),
                            ("Connection", "close")]
        client.sendall(join_head(status_line, response_headers))
        sent = relay_body(upstream, client, body_start, cut if stall is None else stall)
        if stall is not None and blob:
            faults.log(f"stall {method} {path} {blob.group(1)} after {sent} of {length} bytes")
            # nothing more, and no close: the client waits until the proxy is stopped
            client.settimeout(None)
            faults.stopped.wait()
        elif cut is not None and blob:
            faults.log(f"cut {method} {path} {blob.group(1)} after {cut} of {length} bytes")
        elif blob:
            faults.log(f"sent {method} {path} {blob.group(1)} status={status} bytes={sent}")
    except (OSError, ValueError, EOFError) as error:
        faults.log(f"error {type(error).__name__}: {error}")
    finally:
        if upstream is not None:
            upstream.close()
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        client.close()


def relay_body(upstream: socket.socket, client: socket.socket, first: bytes,
               cut: int | None) -> int:
    """Copy the response body until the upstream closes, or only *cut* bytes of it; the
    number of body bytes sent."""
    sent = 0
    data = first
    while True:
        if cut is not None and sent + len(data) >= cut:
            client.sendall(data[: cut - sent])
            return cut
        if data:
            client.sendall(data)
            sent += len(data)
        data = upstream.recv(CHUNK)
        if not data:
            return sent


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    parser.add_argument("--cut-after", type=int, default=None,
                        help="cut blob downloads after this many body bytes")
    parser.add_argument("--cut-times", type=int, default=1,
                        help="how many blob downloads to cut (default 1)")
    parser.add_argument("--stall-after", type=int, default=None,
                        help="send this many body bytes of each longer blob download, "
                        "then nothing, keeping the connection open")
    parser.add_argument("--strip-range", action="store_true",
                        help="drop Range headers: resumed downloads get the whole blob")
    parser.add_argument("--log", default=None, help="append one line per event to this file")
    args = parser.parse_args(argv)
    faults = Faults(args.cut_after, args.cut_times, args.strip_range, args.log,
                    args.stall_after)
    upstream = parse_address(args.upstream)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(parse_address(args.listen))
    listener.listen(64)

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    faults.log(f"listening {args.listen} -> {args.upstream}")
    try:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=handle, args=(client, upstream, faults), daemon=True).start()
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
