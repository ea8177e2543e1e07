"""Hearing that the firewall changed, without polling: nftables' netlink notifications.

``RulesetWatch()`` is a netlink socket (``NETLINK_NETFILTER``) subscribed to the
``NFNLGRP_NFTABLES`` group of the calling process's network namespace: the kernel sends it a
message for every table, chain, rule, set or element added or deleted by anyone — ``nft``,
iptables-nft (Debian's default ``iptables``), firewalld, ufw. Its ``fd`` becomes readable;
``drain()`` empties it. What changed is not decoded: the caller looks at the ruleset
itself when it is told that something did (``network/firewall.py``), which also covers
a notification lost to a full socket buffer (``ENOBUFS``: drained like any other). Only
the end of each transaction is read: its ``NFT_MSG_NEWGEN`` message names the process that
committed it (``NFTA_GEN_PROC_PID``), so a caller can tell its own transactions (a
container's published ports) from anyone else's (:attr:`RulesetWatch.committers`).

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


#: nfnetlink message type of a transaction's end: NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN
_NEWGEN = 10 << 8 | 15
_NFTA_GEN_PROC_PID = 2
_HEADER = 16 + 4  # nlmsghdr + nfgenmsg


def committers(data: bytes) -> list[int]:
    """The pids named by the ``NFT_MSG_NEWGEN`` messages in one read (0: not named)."""
    found = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = int.from_bytes(data[offset:offset + 4], "little"), \
            int.from_bytes(data[offset + 4:offset + 6], "little")
        if length < 16:
            break
        if kind == _NEWGEN:
            pid = 0
            at = offset + _HEADER
            while at + 4 <= offset + length:
                size = int.from_bytes(data[at:at + 2], "little")
                if size < 4:
                    break
                if int.from_bytes(data[at + 2:at + 4], "little") & 0x3FFF == \
                        _NFTA_GEN_PROC_PID and size >= 8:
                    pid = int.from_bytes(data[at + 4:at + 8], "big")
                at += (size + 3) & ~3
            found.append(pid)
        offset += (length + 3) & ~3
    return found


class RulesetWatch:
    """Subscribed to nftables change notifications; ``close()`` when done."""

    __slots__ = ("committed", "lost", "sock")

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
        #: the pids of the transactions seen by :meth:`drain` since last cleared
        self.committed: list[int] = []
        #: notifications were dropped (ENOBUFS): who changed what is unknown
        self.lost = False

    @property
    def fd(self) -> int:
        return int(self.sock.fileno())

    def drain(self) -> int:
        """Read every pending notification; how many reads returned something. The
        committers of the transactions read are added to :attr:`committed`."""
        count = 0
        while True:
            try:
                data = os.read(self.fd, 65536)
                if not data:
                    return count
                self.committed += committers(data)
            except BlockingIOError:
                return count
            except OSError:  # ENOBUFS: notifications were dropped; the caller looks anyway
                self.lost = True
            count += 1

    def close(self) -> None:
        self.sock.close()
