"""Hearing that the firewall changed, without polling: nftables' netlink notifications.

``RulesetWatch()`` is a netlink socket (``NETLINK_NETFILTER``) subscribed to the
``NFNLGRP_NFTABLES`` group of the calling process's network namespace: the kernel sends it a
message for every table, chain, rule, set or element added or deleted by anyone — ``nft``,
iptables-nft (Debian's default ``iptables``), firewalld, ufw. Its ``fd`` becomes readable;
``drain()`` empties it. What changed is not decoded: the caller looks at the ruleset
itself when it is told that something did (``network/firewall.py``), which also covers
a notification lost to a full socket buffer (``ENOBUFS``: drained like any other).

iptables-legacy writes the old xtables tables, which send no notification: a host that
uses it is not watched (``docs/network.md``).
"""

from __future__ import annotations

import os

_NETLINK_NETFILTER = 12
_NFNLGRP_NFTABLES = 7
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_RECEIVE_BUFFER = 1 << 20  # a ruleset reload is thousands of messages; losing some is fine


class RulesetWatch:
    """Subscribed to nftables change notifications; ``close()`` when done."""

    __slots__ = ("sock",)

    def __init__(self) -> None:
        import _socket

        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_NONBLOCK
                              | _socket.SOCK_CLOEXEC, _NETLINK_NETFILTER)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.bind((0, 0))
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    @property
    def fd(self) -> int:
        return int(self.sock.fileno())

    def drain(self) -> int:
        """Read every pending notification; how many reads returned something."""
        count = 0
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return count
            except BlockingIOError:
                return count
            except OSError:  # ENOBUFS: notifications were dropped; the caller looks anyway
                pass
            count += 1

    def close(self) -> None:
        self.sock.close()
