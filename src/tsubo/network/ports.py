"""Published ports: Docker's ``-p``/``--expose`` grammar, the records, and how they print.

What it owns (all pure: no kernel, no database)
    * :func:`parse_publish` — ``-p/--publish`` with Docker's whole grammar
      (``[IP:][HOSTPORT[-END]:]CPORT[-END][/tcp|udp|sctp]``, IPv6 addresses in brackets),
      into :class:`PortSpec` requests, one per container port, with Docker's one-line errors
      (docker/go-connections ``nat.ParsePortSpec``).
    * :func:`parse_expose` — ``--expose`` and an image's ``ExposedPorts`` keys.
    * :class:`PublishedPort` — one binding as it is in force (host address, host port,
      container port, protocol), its ledger name (the claim on the host port,
      ``network/store.py``), Docker's texts (``0.0.0.0:8080->80/tcp`` in ``ps``, ``80/tcp ->
      0.0.0.0:8080`` in ``port``) and ``NetworkSettings.Ports`` of ``inspect``.
    * :func:`choose` — which host ports a container's requests get, given the claims of
      other containers and the host's listening sockets: a fixed port is refused naming its
      holder, an ephemeral one (HOSTPORT omitted or 0, or a host range) is the first free
      one from ``ip_local_port_range`` (or the range).

A request keeps the user's host address: ``""`` means every address -- ``0.0.0.0``, and on
a dual-stack network ``[::]`` as well, on the same host port (as Docker publishes both:
:func:`choose` with ``dual``). ``[::]`` or an IPv6 address alone needs a dual-stack network
(``engine/networks.py`` refuses it otherwise, and ``[::1]``: see docs/network.md). Bindings
of different families never collide with each other: ``0.0.0.0:8080`` and ``[::]:8080``
are two DNAT elements of two maps.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

PROTOCOLS = ("tcp", "udp", "sctp")
ANY_IPV4 = "0.0.0.0"
ANY_IPV6 = "::"
MAX_PORT = 65535
#: the most container ports one ``-p``/``--expose`` range may name (Docker has no bound;
#: 65535 single rules would be a mistake, not a request)
MAX_RANGE = 4096


def _bad(flag: str, text: str, detail: str) -> InvalidArgument:
    return InvalidArgument(f"parse {flag}", text if text else '""', detail=detail)


class PortSpec:
    """What one container port asks for: published on HOST_IP (``""``: all IPv4 addresses),
    at HOST_START (0: any free port), or any free port of HOST_START..HOST_END."""

    __slots__ = ("container_port", "host_end", "host_ip", "host_start", "protocol")

    def __init__(self, container_port: int, protocol: str = "tcp", host_ip: str = "",
                 host_start: int = 0, host_end: int = 0) -> None:
        self.container_port = container_port
        self.protocol = protocol
        self.host_ip = host_ip
        self.host_start = host_start
        self.host_end = host_end or host_start

    @property
    def ephemeral(self) -> bool:
        """Whether the host port is chosen when the container starts."""
        return self.host_start == 0 or self.host_end != self.host_start

    @property
    def bind_ip(self) -> str:
        return self.host_ip or ANY_IPV4

    def to_json(self) -> dict[str, Any]:
        return {"container_port": self.container_port, "protocol": self.protocol,
                "host_ip": self.host_ip, "host_start": self.host_start,
                "host_end": self.host_end}

    @classmethod
    def from_json(cls, data: object) -> PortSpec:
        if not isinstance(data, dict):
            raise InvalidArgument("load run options", "publish", detail="expected an object")
        try:
            return cls(int(data["container_port"]), str(data.get("protocol") or "tcp"),
                       str(data.get("host_ip") or ""), int(data.get("host_start") or 0),
                       int(data.get("host_end") or 0))
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidArgument("load run options", "publish",
                                  detail=f"malformed record: {error}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortSpec) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        host = f"{self.host_start}-{self.host_end}" if self.host_end != self.host_start \
            else str(self.host_start)
        return f"PortSpec({self.bind_ip}:{host}->{self.container_port}/{self.protocol})"


# --- the grammar -------------------------------------------------------------------------


def _port_range(text: str) -> tuple[int, int] | None:
    """``80`` or ``80-90`` (0..65535, start <= end); None when malformed."""
    start_text, dash, end_text = text.partition("-")
    if not (start_text.isascii() and start_text.isdigit()) or \
            (dash and not (end_text.isascii() and end_text.isdigit())):
        return None
    start = int(start_text)
    end = int(end_text) if dash else start
    if start > MAX_PORT or end > MAX_PORT or end < start:
        return None
    return start, end


def normalize_ip(text: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address; None when it is neither."""
    import socket  # ~6 ms to import: only when an address is given

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def _split_parts(text: str) -> tuple[str, str, str]:
    """(ip, host port, container port) as docker/go-connections ``splitParts``: an
    unbracketed IPv6 address keeps its colons (everything before the last two parts)."""
    parts = text.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def parse_publish(text: str, flag: str = "--publish") -> list[PortSpec]:
    """``-p`` TEXT as one request per container port. Errors (Docker's words): ``invalid IP
    address``, ``no port specified``, ``invalid containerPort``, ``invalid hostPort``,
    ``invalid ranges specified for container and host Ports``, ``invalid proto``."""
    if not isinstance(text, str) or not text.strip():
        raise _bad(flag, "", "no port specified: <empty>")
    ip_text, host_text, container_text = _split_parts(text.strip())
    container_text, slash, protocol = container_text.partition("/")
    protocol = protocol.lower() if slash else "tcp"
    host_ip = ""
    if ip_text:
        raw = ip_text
        if raw.startswith("["):
            if not raw.endswith("]"):
                raise _bad(flag, text, f"invalid IP address: {ip_text}")
            raw = raw[1:-1]
        found = normalize_ip(raw)
        if found is None:
            raise _bad(flag, text, f"invalid IP address: {ip_text}")
        host_ip = found  # 0.0.0.0 given: IPv4 only, even on a dual-stack network
    if not container_text:
        raise _bad(flag, text, f"no port specified: {text}<empty>")
    container = _port_range(container_text)
    if container is None or container[0] == 0:
        raise _bad(flag, text, f"invalid containerPort: {container_text}")
    host = (0, 0)
    if host_text:
        found_host = _port_range(host_text)
        if found_host is None:
            raise _bad(flag, text, f"invalid hostPort: {host_text}")
        host = found_host
    count = container[1] - container[0] + 1
    host_count = host[1] - host[0] + 1
    if host_text and count not in (host_count, 1):
        raise _bad(flag, text, "invalid ranges specified for container and host Ports: "
                   f"{container_text} and {host_text}")
    if host_text and host[0] == 0 and host[1] != 0:
        raise _bad(flag, text, f"invalid hostPort: {host_text}")
    if protocol not in PROTOCOLS:
        raise _bad(flag, text, f"invalid proto: {protocol}")
    if count > MAX_RANGE:
        raise _bad(flag, text, f"too many ports: {count} (at most {MAX_RANGE} in one range)")
    if count == 1:
        return [PortSpec(container[0], protocol, host_ip, host[0], host[1])]
    return [PortSpec(container[0] + i, protocol, host_ip, host[0] + i if host[0] else 0)
            for i in range(count)]


def parse_expose(text: str, flag: str = "--expose") -> list[tuple[int, str]]:
    """``--expose`` ``PORT[-END][/PROTO]`` (or an image's ``ExposedPorts`` key) as
    (port, protocol) pairs."""
    if not isinstance(text, str) or not text.strip():
        raise _bad(flag, "", "no port specified: <empty>")
    port_text, slash, protocol = text.strip().partition("/")
    protocol = protocol.lower() if slash else "tcp"
    found = _port_range(port_text)
    if found is None or found[0] == 0:
        raise _bad(flag, text, f"invalid range format for --expose: {text}")
    if protocol not in PROTOCOLS:
        raise _bad(flag, text, f"invalid proto: {protocol}")
    if found[1] - found[0] + 1 > MAX_RANGE:
        raise _bad(flag, text, f"too many ports (at most {MAX_RANGE} in one range)")
    return [(port, protocol) for port in range(found[0], found[1] + 1)]


def publish_all(specs: Sequence[PortSpec], exposed: Iterable[tuple[int, str]]
                ) -> list[PortSpec]:
    """``-P``: SPECS plus an ephemeral host port for each exposed port no spec names."""
    taken = {(spec.container_port, spec.protocol) for spec in specs}
    added = []
    for port, protocol in exposed:
        if (port, protocol) not in taken:
            taken.add((port, protocol))
            added.append(PortSpec(port, protocol))
    return [*specs, *added]


# --- bindings in force ----------------------------------------------------------------------


class PublishedPort:
    """One host port forwarded to a container port."""

    __slots__ = ("container_port", "host_ip", "host_port", "protocol")

    def __init__(self, host_ip: str, host_port: int, container_port: int,
                 protocol: str) -> None:
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol

    @property
    def ledger_name(self) -> str:
        """``tcp/8080/0.0.0.0/80``: the claim on the host port (``network/store.py``)."""
        return f"{self.protocol}/{self.host_port}/{self.host_ip}/{self.container_port}"

    @classmethod
    def from_ledger_name(cls, name: str) -> PublishedPort:
        protocol, host_port, host_ip, container_port = name.split("/")
        return cls(host_ip, int(host_port), int(container_port), protocol)

    @property
    def is_wildcard(self) -> bool:
        return self.host_ip in (ANY_IPV4, ANY_IPV6)

    def overlaps(self, protocol: str, host_ip: str, host_port: int) -> bool:
        """Whether a socket or binding on HOST_IP:HOST_PORT/PROTOCOL collides with this one
        (same port and address family; same address, or either is a wildcard)."""
        return (protocol == self.protocol and host_port == self.host_port
                and (":" in host_ip) == (":" in self.host_ip)
                and (host_ip == self.host_ip or self.is_wildcard
                     or host_ip in (ANY_IPV4, ANY_IPV6)))

    def host_text(self) -> str:
        return f"[{self.host_ip}]:{self.host_port}" if ":" in self.host_ip \
            else f"{self.host_ip}:{self.host_port}"

    def docker_text(self) -> str:
        """``0.0.0.0:8080->80/tcp``, as ``docker ps`` shows a binding."""
        return f"{self.host_text()}->{self.container_port}/{self.protocol}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublishedPort) and self.ledger_name == other.ledger_name

    def __hash__(self) -> int:
        return hash(self.ledger_name)

    def __repr__(self) -> str:
        return f"PublishedPort({self.docker_text()})"


def _sort_key(port: PublishedPort) -> tuple[str, int, str, int]:
    return (port.protocol, port.container_port, port.host_ip, port.host_port)


def ports_column(ports: Iterable[PublishedPort]) -> str:
    """``docker ps``'s PORTS: bindings sorted, runs of consecutive ports on one address
    grouped (``0.0.0.0:8000-8002->80-82/tcp``), joined with ``, ``."""
    texts: list[str] = []
    run: list[PublishedPort] = []

    def flush() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        if len(run) == 1:
            texts.append(first.docker_text())
        else:
            host = f"[{first.host_ip}]" if ":" in first.host_ip else first.host_ip
            texts.append(f"{host}:{first.host_port}-{last.host_port}->"
                         f"{first.container_port}-{last.container_port}/{first.protocol}")
        run.clear()

    for port in sorted(ports, key=_sort_key):
        if run and not (port.protocol == run[-1].protocol and port.host_ip == run[-1].host_ip
                        and port.container_port == run[-1].container_port + 1
                        and port.host_port == run[-1].host_port + 1):
            flush()
        run.append(port)
    flush()
    return ", ".join(texts)


def port_lines(ports: Iterable[PublishedPort], wanted: str = "") -> list[str]:
    """``docker port CONTAINER [PORT[/PROTO]]``: ``80/tcp -> 0.0.0.0:8080`` lines (only the
    host address and port when WANTED names a port). InvalidArgument for a bad WANTED."""
    chosen = sorted(ports, key=_sort_key)
    if not wanted:
        return [f"{p.container_port}/{p.protocol} -> {p.host_text()}" for p in chosen]
    port_text, slash, protocol = wanted.partition("/")
    protocol = protocol.lower() if slash else "tcp"
    found = _port_range(port_text)
    if found is None or found[0] != found[1] or found[0] == 0 or protocol not in PROTOCOLS:
        raise _bad("port", wanted, "expected PORT[/PROTO], e.g. 80/tcp")
    return [p.host_text() for p in chosen
            if p.container_port == found[0] and p.protocol == protocol]


def ports_map(ports: Iterable[PublishedPort], exposed: Iterable[tuple[int, str]] = ()
              ) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports`` of ``docker inspect``: ``{"80/tcp": [{"HostIp": "0.0.0.0",
    "HostPort": "8080"}], "443/tcp": null}`` (null: exposed, not published)."""
    result: dict[str, list[dict[str, str]] | None] = {
        f"{port}/{protocol}": None for port, protocol in exposed}
    for port in sorted(ports, key=_sort_key):
        key = f"{port.container_port}/{port.protocol}"
        bindings = result.get(key) or []
        bindings.append({"HostIp": port.host_ip, "HostPort": str(port.host_port)})
        result[key] = bindings
    return result


# --- choosing host ports -----------------------------------------------------------------


class PortTaken(Exception):
    """A requested host port is in use (by HOLDER: a container or a process)."""

    def __init__(self, spec: PortSpec, host_port: int, holder: str, address: str = ""
                 ) -> None:
        super().__init__(holder)
        self.spec = spec
        self.host_port = host_port
        self.holder = holder
        #: the host address that is taken (the spec's, or one family of a dual binding)
        self.address = address or spec.bind_ip

    def message(self, holder: str = "") -> str:
        """One line; HOLDER: how to name the holder (default: as found)."""
        where = f"[{self.address}]" if ":" in self.address else self.address
        if self.host_port:
            return f"{where}:{self.host_port}/{self.spec.protocol} is already in use by " \
                f"{holder or self.holder}"
        return f"no free host port for {self.spec.container_port}/{self.spec.protocol} " \
            f"on {where} ({self.holder})"


def choose(specs: Sequence[PortSpec], holder_of: Callable[[str, str, int], str | None],
           local_range: Callable[[], tuple[int, int]], *, start: int = 0, dual: bool = False
           ) -> list[PublishedPort]:
    """Host ports for SPECS. HOLDER_OF(protocol, ip, port) names what holds that host port
    already (None: free); ports chosen earlier in this call count as held. A fixed port that
    is held raises :class:`PortTaken`; an ephemeral one is the first free port of its range
    (or LOCAL_RANGE(), asked only then), searched from START (an offset, so that
    concurrent starts spread).
    DUAL (a dual-stack network): a spec without a host address is bound on ``0.0.0.0``
    and ``[::]`` alike, one port free in both."""
    chosen: list[PublishedPort] = []
    #: (protocol, host port) -> the bindings chosen on it: a look-up per port, not a walk
    #: of every binding chosen so far (a range of 32 ports made 500 comparisons)
    on_port: dict[tuple[str, int], list[PublishedPort]] = {}
    asked: list[tuple[int, int]] = []  # LOCAL_RANGE(), once asked

    def held(protocol: str, ip: str, port: int) -> str | None:
        for taken in on_port.get((protocol, port), ()):
            if taken.overlaps(protocol, ip, port):
                return "this container"
        return holder_of(protocol, ip, port)

    def take(bindings: list[PublishedPort]) -> None:
        chosen.extend(bindings)
        for binding in bindings:
            on_port.setdefault((binding.protocol, binding.host_port), []).append(binding)

    for spec in specs:
        addresses = [ANY_IPV4, ANY_IPV6] if dual and not spec.host_ip else [spec.bind_ip]
        if not spec.ephemeral:
            for address in addresses:
                holder = held(spec.protocol, address, spec.host_start)
                if holder is not None:
                    raise PortTaken(spec, spec.host_start, holder, address)
            take([PublishedPort(address, spec.host_start, spec.container_port,
                                spec.protocol) for address in addresses])
            continue
        if spec.host_start:
            low, high = spec.host_start, spec.host_end
        else:
            if not asked:  # one read for all the ephemeral ports of this call
                asked.append(local_range())
            low, high = asked[0]
        size = high - low + 1
        for step in range(size):
            port = low + (start + step) % size
            if all(held(spec.protocol, address, port) is None for address in addresses):
                take([PublishedPort(address, port, spec.container_port, spec.protocol)
                      for address in addresses])
                break
        else:
            raise PortTaken(spec, 0, f"all of {low}-{high} are in use")
    return chosen
