"""Is a host port in use, and by whom: for published ports (``network/ports.py`` decides).

What it owns
    * :func:`port_taken` — asks the kernel itself: a socket of the protocol tries to bind
      the address and port (TCP with ``SO_REUSEADDR``, so only a *listening* socket is in
      the way, not connections that happen to use the port; UDP and SCTP without it, so
      any bound socket is). The kernel's own rules decide what overlaps (0.0.0.0 against a
      specific address, a dual-stack ``[::]`` listener against IPv4), and it costs ~20 µs,
      where reading ``/proc/net/tcp`` walks every connection of the host (~2.5 ms here).
      The probe socket is closed at once; nothing listens.
    * :func:`holder` — only once a port is known taken: the process holding it
      (``/proc/net/*`` for the socket's inode, then :func:`tsubo.kernel.procfs.socket_holder`).

Both act in the calling thread's network namespace (the monitor's: the host's). The probe
is the C module ``_socket``'s own socket: :mod:`socket` wraps it in enums that cost ~5 ms
to import, on every ``create -p``.
"""

from __future__ import annotations

import _socket
import errno

_TYPES = {"tcp": (_socket.SOCK_STREAM, _socket.IPPROTO_TCP),
          "udp": (_socket.SOCK_DGRAM, _socket.IPPROTO_UDP),
          "sctp": (_socket.SOCK_STREAM, _socket.IPPROTO_SCTP)}


def port_taken(protocol: str, address: str, port: int) -> bool:
    """Whether binding ADDRESS:PORT/PROTOCOL fails with EADDRINUSE. An address that is not
    the host's (EADDRNOTAVAIL) or a protocol the kernel lacks (SCTP without its module)
    holds nothing: False."""
    kind, number = _TYPES[protocol]
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    try:
        probe = _socket.socket(family, kind | _socket.SOCK_CLOEXEC, number)
    except OSError:
        return False  # no such protocol here: nothing can hold its ports
    try:
        if family == _socket.AF_INET6:  # [::] stands for IPv6 only: a binding per family
            probe.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        if protocol == "tcp":
            probe.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        probe.bind((address, port))
    except OSError as error:
        return error.errno == errno.EADDRINUSE
    finally:
        probe.close()
    return False


def holder(protocol: str, address: str, port: int) -> str:
    """``host process PID (COMM)`` holding the port, or ``a host socket`` when no process
    of ours can be named (another pid namespace, a kernel socket)."""
    from tsubo.kernel import procfs

    wildcard = ("0.0.0.0", "::")
    for bound_address, bound_port, inode in procfs.bound_sockets(protocol):
        if bound_port == port and (bound_address == address or bound_address in wildcard
                                   or address in wildcard):
            found = procfs.socket_holder(inode)
            if found is not None:
                return f"host process {found[0]} ({found[1]})"
    return "a host socket"
