"""tsubo.network.firewall against the real kernel, each test inside a throwaway host netns.

Topology, built by hand with `ip` inside the `netns` fixture's namespace H (nft tables,
iptables chains and the br_netfilter sysctls are all per netns, so nothing here reaches the
machine's own firewall): per network a bridge with the gateway address, and per "container"
a netns `H-<x>` with `eth0` on a veth whose other end is a port of the bridge. Pings go only
to addresses inside these namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NetNS
from tsubo.errors import TsuboError
from tsubo.kernel import nftables
from tsubo.network import firewall
from tsubo.network.models import Network

pytestmark = pytest.mark.skipif(shutil.which("nft") is None, reason="nft missing (nftables)")

BUSYBOX = "/bin/busybox"
HOST_BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL, timeout=30)


@dataclass
class Topology:
    host: NetNS
    containers: dict[str, str] = field(default_factory=dict)  # letter -> netns name
    networks: list[Network] = field(default_factory=list)

    def network(self, index: int, *, internal: bool = False, letters: str = "ab") -> Network:
        """Bridge `tsbt<index>` on 10.231.<index>.0/24 (gateway .1), containers .2, .3 ..."""
        subnet = f"10.231.{index}.0/24"
        bridge = f"tsbt{index}"
        net = Network(f"{index:02d}" * 32, f"net{index}", subnet, f"10.231.{index}.1", bridge,
                      internal=internal)
        h = self.host.name
        sh("ip", "-n", h, "link", "add", bridge, "type", "bridge")
        sh("ip", "-n", h, "addr", "add", f"10.231.{index}.1/24", "dev", bridge)
        sh("ip", "-n", h, "link", "set", bridge, "up")
        for offset, letter in enumerate(letters, start=2):
            ns = f"{h}-{letter}"
            sh("ip", "netns", "add", ns)
            self.containers[letter] = ns
            host_end = f"tv{index}{letter}"
            sh("ip", "-n", h, "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", h, "link", "set", host_end, "master", bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"10.231.{index}.{offset}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"10.231.{index}.1")
        self.networks.append(net)
        return net

    def ping(self, letter: str, address: str) -> bool:
        proc = sh("ip", "netns", "exec", self.containers[letter], BUSYBOX, "ping", "-c", "1",
                  "-W", "1", address, check=False)
        return proc.returncode == 0

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.run("nft", *args, check=check)

    def cleanup(self) -> None:
        for ns in self.containers.values():
            sh("ip", "netns", "delete", ns, check=False)


@pytest.fixture
def topo(netns: NetNS) -> Iterator[Topology]:
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox (for ping) missing")
    host_value = HOST_BRIDGE_NF.read_text() if HOST_BRIDGE_NF.exists() else None
    t = Topology(netns)
    try:
        yield t
    finally:
        t.cleanup()
    # the machine's own br_netfilter setting is never touched
    assert (HOST_BRIDGE_NF.read_text() if HOST_BRIDGE_NF.exists() else None) == host_value


def enable_bridge_netfilter(t: Topology) -> None:
    """br_netfilter on, bridge-nf-call-iptables=1 inside H only (the sysctl is per netns)."""
    if not HOST_BRIDGE_NF.exists() and shutil.which("modprobe"):
        sh("modprobe", "br_netfilter", check=False)
    proc = t.host.run("sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1", check=False)
    if proc.returncode != 0:
        pytest.skip(f"br_netfilter unavailable: {proc.stderr.strip()}")
    shown = t.host.run("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout.strip()
    assert shown == "1"


def host_drop_policy(t: Topology, kind: str) -> None:
    """A forward policy of drop in H, the way the host's own firewall would have it."""
    if kind == "nft":
        t.nft("add", "table", "inet", "hostfilter")
        t.nft("add", "chain", "inet", "hostfilter", "forward",
              "{ type filter hook forward priority 0; policy drop; }")
    elif kind in ("iptables-nft", "iptables-legacy"):
        if shutil.which(kind) is None:
            pytest.skip(f"{kind} missing")
        proc = t.host.run(kind, "-w", "-P", "FORWARD", "DROP", check=False)
        if proc.returncode != 0:
            pytest.skip(f"{kind} unusable here: {proc.stderr.strip()}")
    else:
        raise AssertionError(kind)


def owned_by(net: Network, objects: list[dict[str, Any]] | None) -> list[object]:
    """NET's chains, rules (without handles) and set/map elements in a `list_table`."""
    owner = firewall.owner_comment(net)
    found: list[object] = []
    for item in objects or []:
        if "chain" in item and item["chain"]["name"] in firewall.chain_names(net):
            found.append(("chain", {k: v for k, v in item["chain"].items() if k != "handle"}))
        if "rule" in item and item["rule"].get("comment") == owner:
            found.append(("rule", item["rule"]["chain"], item["rule"]["expr"]))
        for kind in ("set", "map"):
            for element in item.get(kind, {}).get("elem", []):
                if owner in str(element):
                    found.append((kind, item[kind]["name"], element))
    return found


def table_text(t: Topology) -> str:
    return t.nft("list", "table", "inet", "tsubo").stdout


# ---------------------------------------------------------------------------------------------
# (1) a drop forward policy on the host, br_netfilter on


@pytest.mark.parametrize(
    "drops", [("nft",), ("iptables-nft",), ("iptables-legacy",), ("nft", "iptables-nft")]
)
def test_same_network_pings_through_host_drop_policy(topo: Topology,
                                                     drops: tuple[str, ...]) -> None:
    enable_bridge_netfilter(topo)
    net = topo.network(1)
    for kind in drops:
        host_drop_policy(topo, kind)
    # bridged frames now cross the FORWARD hook, where the host's policy drops them
    assert not topo.ping("a", "10.231.1.3")
    # accepting in our own table alone is not enough: the other base chain still drops
    nftables.apply(firewall.setup_batch(net), netns=topo.host.name)
    assert not topo.ping("a", "10.231.1.3")

    firewall.setup_network(net, netns=topo.host.name)
    assert topo.ping("a", "10.231.1.3")
    assert topo.ping("b", "10.231.1.2")
    # the host's policies are unchanged; only the one accept-mark rule was added
    if "nft" in drops:
        hostfilter = topo.nft("list", "chain", "inet", "hostfilter", "forward").stdout
        assert "policy drop;" in hostfilter
        assert hostfilter.count(firewall.ACCEPT_MARK_COMMENT) == 1
    for kind in drops:
        if kind.startswith("iptables"):
            rules = topo.host.run(kind, "-w", "-S", "FORWARD").stdout.splitlines()
            assert rules[0] == "-P FORWARD DROP"
            assert sum(firewall.ACCEPT_MARK_COMMENT in r for r in rules) == 1

    # idempotent: a second setup adds nothing, not even a second accept-mark rule
    before = table_text(topo)
    firewall.setup_network(net, netns=topo.host.name)
    assert table_text(topo) == before
    if "nft" in drops:
        hostfilter = topo.nft("list", "chain", "inet", "hostfilter", "forward").stdout
        assert hostfilter.count(firewall.ACCEPT_MARK_COMMENT) == 1
    for kind in drops:
        if kind.startswith("iptables"):
            listing = topo.host.run(kind, "-w", "-S", "FORWARD").stdout
            assert listing.count(firewall.ACCEPT_MARK_COMMENT) == 1

    # remove_all leaves the host's chains exactly as they were before us
    firewall.remove_all(netns=topo.host.name)
    assert topo.nft("list", "table", "inet", "tsubo", check=False).returncode != 0
    assert firewall.ACCEPT_MARK_COMMENT not in topo.nft("list", "ruleset").stdout
    for kind in drops:
        if kind.startswith("iptables"):
            assert topo.host.run(kind, "-w", "-S", "FORWARD").stdout.splitlines() == [
                "-P FORWARD DROP"]
    assert not topo.ping("a", "10.231.1.3")


# ---------------------------------------------------------------------------------------------
# (2) isolation, (3) exact teardown


def test_networks_are_isolated(topo: Topology) -> None:
    topo.host.run("sysctl", "-w", "net.ipv4.ip_forward=1")  # H routes: only rules isolate
    one = topo.network(1, letters="ab")
    two = topo.network(2, letters="cd")
    assert topo.ping("a", "10.231.2.2")  # routed between the bridges before tsubo's rules

    firewall.setup_network(one, netns=topo.host.name)
    firewall.setup_network(two, netns=topo.host.name)
    assert not topo.ping("a", "10.231.2.2")
    assert not topo.ping("c", "10.231.1.2")
    assert topo.ping("a", "10.231.1.3")
    assert topo.ping("c", "10.231.2.3")


def test_internal_network_still_talks_inside(topo: Topology) -> None:
    enable_bridge_netfilter(topo)
    host_drop_policy(topo, "nft")
    net = topo.network(1, internal=True)
    firewall.setup_network(net, netns=topo.host.name)
    assert topo.ping("a", "10.231.1.3")
    # no masquerade of its own (the table's one is for the host's 127.0.0.1 clients)
    masquerades = [line for line in table_text(topo).splitlines() if "masquerade" in line]
    assert masquerades and all("127.0.0.0/8" in line for line in masquerades)


def test_teardown_removes_exactly_one_network(topo: Topology) -> None:
    enable_bridge_netfilter(topo)
    host_drop_policy(topo, "nft")
    one = topo.network(1, letters="ab")
    two = topo.network(2, letters="cd")
    firewall.setup_network(one, netns=topo.host.name)
    firewall.setup_network(two, netns=topo.host.name)
    with_both = table_text(topo)
    both_objects = nftables.list_table(netns=topo.host.name)
    assert firewall.owner_comment(one) in with_both
    assert firewall.owner_comment(two) in with_both

    firewall.teardown_network(one, netns=topo.host.name)
    after = table_text(topo)
    assert firewall.owner_comment(one) not in after
    assert one.id[:12] not in after and '"tsbt1"' not in after
    # the other network's chains, rules and elements are all still there, unchanged
    assert owned_by(two, after_objects := nftables.list_table(netns=topo.host.name))
    assert owned_by(two, after_objects) == owned_by(two, both_objects)
    assert owned_by(one, after_objects) == []
    assert topo.ping("c", "10.231.2.3")
    assert not topo.ping("a", "10.231.1.3")

    # already gone is success, twice, and with the whole table gone too
    firewall.teardown_network(one, netns=topo.host.name)
    assert table_text(topo) == after
    topo.nft("delete", "table", "inet", "tsubo")
    firewall.teardown_network(two, netns=topo.host.name)
    assert topo.nft("list", "table", "inet", "tsubo", check=False).returncode != 0


# ---------------------------------------------------------------------------------------------
# (4) repair after a flush


def test_reload_after_flush_ruleset(topo: Topology) -> None:
    enable_bridge_netfilter(topo)
    one = topo.network(1, letters="ab")
    two = topo.network(2, letters="cd")
    host_drop_policy(topo, "nft")
    host_drop_policy(topo, "iptables-nft")
    firewall.setup_network(one, netns=topo.host.name)
    firewall.setup_network(two, netns=topo.host.name)
    assert topo.ping("a", "10.231.1.3")

    topo.nft("flush", "ruleset")
    host_drop_policy(topo, "nft")  # the host firewall comes back, ours does not
    host_drop_policy(topo, "iptables-nft")
    assert not topo.ping("a", "10.231.1.3")

    firewall.reload([one, two], netns=topo.host.name)
    assert topo.ping("a", "10.231.1.3")
    assert topo.ping("d", "10.231.2.2")
    text = table_text(topo)
    assert firewall.owner_comment(one) in text and firewall.owner_comment(two) in text
    # reload again: same table, still one accept-mark rule per host chain (iptables-nft
    # keeps its comment as an xt match, invisible to `nft list`)
    firewall.reload([one, two], netns=topo.host.name)
    assert topo.nft("list", "ruleset").stdout.count(firewall.ACCEPT_MARK_COMMENT) == 1
    iptables_rules = topo.host.run("iptables-nft", "-w", "-S", "FORWARD").stdout
    assert iptables_rules.count(firewall.ACCEPT_MARK_COMMENT) == 1


# ---------------------------------------------------------------------------------------------
# (5) all or nothing


def test_failing_batch_raises_nft_error_and_changes_nothing(topo: Topology) -> None:
    net = topo.network(1)
    firewall.setup_network(net, netns=topo.host.name)
    before = topo.nft("-a", "list", "ruleset").stdout

    other = Network("77" * 32, "other", "10.231.7.0/24", "10.231.7.1", "tsbt7")
    batch = firewall.setup_batch(other)
    batch["nftables"].append({"add": {"rule": {
        "family": "inet", "table": "tsubo", "chain": "no-such-chain",
        "expr": [{"accept": None}], "comment": "tsubo test"}}})
    with pytest.raises(TsuboError) as raised:
        nftables.apply(batch, netns=topo.host.name)
    error = raised.value
    assert error.operation == "nft"
    assert error.detail.startswith("exit status 1: Error:")
    assert "No such file or directory" in error.detail
    # nothing of the batch's first 40-odd valid commands took effect
    assert topo.nft("-a", "list", "ruleset").stdout == before


def test_list_table_and_missing_table(topo: Topology) -> None:
    assert nftables.list_table(netns=topo.host.name) is None
    net = topo.network(1)
    firewall.setup_network(net, netns=topo.host.name)
    objects = nftables.list_table(netns=topo.host.name)
    assert objects is not None
    chains = {o["chain"]["name"] for o in objects if "chain" in o}  # type: ignore[index]
    assert chains == {"forward", "input", "operator", "publish", "prerouting", "output",
                      "postrouting", "localhost", *firewall.chain_names(net)}
