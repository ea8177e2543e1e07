"""The nftables watch names who committed each transaction (kernel/nftwatch.py), so the
monitor can tell its own port publishing from anyone else's change: a real netlink
subscription in a throwaway network namespace."""

from __future__ import annotations

import os
import select
import subprocess
from typing import Any

import pytest

from tsubo.errors import TsuboError
from tsubo.kernel import nftables
from tsubo.kernel.iproute import InNetns
from tsubo.kernel.nftwatch import RulesetWatch, committers

TABLE = {"nftables": [{"add": {"table": {"family": "inet", "name": "tsubo"}}}]}


def drain_until(watch: RulesetWatch, count: int) -> None:
    """Drain until COUNT transactions were heard (their ends may come a moment after)."""
    poller = select.poll()  # not select(): the fd may be numbered 1024 or more
    poller.register(watch.fd, select.POLLIN)
    while len(watch.committed) < count:
        assert poller.poll(5000), "no notification"
        watch.drain()


def test_the_watch_names_the_nft_that_committed(netns: Any) -> None:
    with InNetns(netns.name):
        watch = RulesetWatch()
    try:
        pid = nftables.apply(TABLE, netns=netns.name)
        assert pid > 0
        drain_until(watch, 1)
        assert watch.committed == [pid]
        # someone else's change names someone else
        subprocess.run(["nsenter", f"--net=/run/netns/{netns.name}", "nft", "add", "chain",
                        "inet", "tsubo", "x"], check=True)
        drain_until(watch, 2)
        assert len(watch.committed) == 2 and watch.committed[1] not in (0, pid)
        assert not watch.lost
    finally:
        watch.close()
        subprocess.run(["nsenter", f"--net=/run/netns/{netns.name}", "nft", "delete",
                        "table", "inet", "tsubo"], check=False)


def test_committers_of_a_read_that_holds_no_generation() -> None:
    # a lone NEWTABLE message (type 10 << 8 | 0): no transaction end, no committer
    message = (20).to_bytes(4, "little") + (10 << 8).to_bytes(2, "little") + bytes(14)
    assert committers(message) == []
    assert committers(b"") == [] and committers(b"\x00" * 8) == []


def test_committers_of_a_generation_message_as_the_kernel_sends_it() -> None:
    # NFT_MSG_NEWGEN as read from the socket: gen id 2, by pid 0x44bc, "nft"
    payload = bytes.fromhex("00000002" "0800010000000002" "08000200000044bc" "080003006e667400")
    header = (16 + len(payload)).to_bytes(4, "little") + (10 << 8 | 15).to_bytes(2, "little")
    assert committers(header + bytes(10) + payload) == [0x44BC]


def test_in_process_nftables_acts_in_the_calling_threads_netns(netns: Any) -> None:
    # libnftables in-process (netns=None): a thread inside the test's netns writes there,
    # not in the namespace an earlier call of this process used; the pid the kernel names
    # is the committing thread's; a failing batch reads as nft's and changes nothing
    nftables.list_table()  # in this process's own namespace first
    with InNetns(netns.name):
        watch = RulesetWatch()
        try:
            pid = nftables.apply(TABLE)
            drain_until(watch, 1)
            assert watch.committed == [pid]
            assert nftables.committed_here[-1] == pid  # the monitor's "ours"
            assert nftables.list_table() is not None
            bad = {"nftables": [{"add": {"chain": {"family": "inet", "table": "tsubo",
                                                   "name": "y"}}},
                                {"delete": {"table": {"family": "inet", "name": "absent"}}}]}
            with pytest.raises(TsuboError, match=r"exit status 1: Error: .*No such file"):
                nftables.apply(bad)
            listed = nftables.list_table()
            assert listed is not None
            assert not any(item.get("chain") for item in listed)
        finally:
            watch.close()
            nftables.apply({"nftables": [{"delete": {"table": {"family": "inet",
                                                                "name": "tsubo"}}}]})
    shown = subprocess.run(["nsenter", f"--net=/run/netns/{netns.name}", "nft", "list",
                            "tables"], capture_output=True, text=True, check=True).stdout
    assert "tsubo" not in shown


def test_a_process_with_many_fds_runs_nft_instead(netns: Any) -> None:
    # libnftables waits with select(2): a socket numbered >= 1024 makes glibc abort the
    # whole process (a monitor with ~340 containers died so); with that many fds open the
    # batch goes to an nft process, named as the committer, and the caller lives on
    import threading

    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(1100)]
    try:
        with InNetns(netns.name):
            watch = RulesetWatch()
            try:
                pid = nftables.apply(TABLE)
                drain_until(watch, 1)
                assert watch.committed == [pid] and pid != threading.get_native_id()
                assert nftables.committed_here[-1] == pid
                assert nftables.list_table() is not None
                nftables.apply({"nftables": [{"delete": {"table": {"family": "inet",
                                                                    "name": "tsubo"}}}]})
            finally:
                watch.close()
    finally:
        for fd in fds:
            os.close(fd)


def test_a_terse_listing_leaves_the_elements_out(netns: Any) -> None:
    # what the monitor's look at the firewall lists: every table, chain and rule, none of
    # the thousands of elements published ports make; the dispatch map listed on its own
    elements = [[{"concat": ["tcp", port]}, "10.0.0.2"] for port in range(1000, 3000)]
    batch = {"nftables": [
        *TABLE["nftables"],
        {"add": {"map": {"family": "inet", "table": "tsubo", "name": "m",
                         "type": ["inet_proto", "inet_service"], "map": "ipv4_addr"}}},
        {"add": {"element": {"family": "inet", "table": "tsubo", "name": "m",
                             "elem": elements}}},
        {"add": {"chain": {"family": "inet", "table": "tsubo", "name": "c"}}}]}
    with InNetns(netns.name):
        nftables.apply(batch)
        try:
            terse: list[Any] = nftables.list_ruleset(terse=True)
            whole: list[Any] = nftables.list_ruleset()
            assert [next(iter(item)) for item in terse] == [next(iter(item)) for item in whole]
            maps = [item["map"] for item in terse if "map" in item]
            assert len(maps) == 1 and "elem" not in maps[0]
            assert len(next(item["map"] for item in whole if "map" in item)["elem"]) == 2000
            listed: list[Any] | None = nftables.list_map("inet", "tsubo", "m")
            assert listed is not None and len(listed[-1]["map"]["elem"]) == 2000
            assert nftables.list_map("inet", "tsubo", "absent") is None
            table = nftables.list_table(terse=True)
            assert table is not None and any("chain" in item for item in table)
        finally:
            nftables.apply({"nftables": [{"delete": {"table": {"family": "inet",
                                                                "name": "tsubo"}}}]})
