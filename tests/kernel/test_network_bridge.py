"""The bridge driver against the real kernel, inside throwaway namespaces only.

Every test uses the `netns` fixture as the "host" (`host_netns=` on every apply), and makes
its "container" namespaces as `<host>-cN` pins, deleted by a finalizer. Addresses exist only
inside those namespaces, so no packet leaves them; the autouse leak check confirms that no
link or pin is left on the machine.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import NetNS
from tsubo.errors import InvalidArgument, TeardownErrors
from tsubo.kernel import iproute
from tsubo.network import bridge

GATEWAY = "192.168.10.100"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"

MakeContainer = Callable[[], str]


def ip_json(netns: str, *args: str) -> list[dict[str, object]]:
    value = iproute.query(list(args), netns=netns)
    assert isinstance(value, list)
    return value


def link_names(netns: str) -> set[str]:
    return {str(link["ifname"]) for link in ip_json(netns, "link", "show")}


def link(netns: str, name: str) -> dict[str, object]:
    (found,) = ip_json(netns, "-d", "link", "show", "dev", name)
    return found


def ping(netns: str, address: str) -> subprocess.CompletedProcess[str]:
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip("busybox (for ping) not installed")
    return subprocess.run(["ip", "netns", "exec", netns, BUSYBOX, "ping", "-c", "1", "-W", "1",
                           address], capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def make_container(netns: NetNS) -> Iterator[MakeContainer]:
    """make_container() -> name of a fresh pinned netns `<host>-cN` (deleted afterwards)."""
    made: list[str] = []

    def make() -> str:
        name = f"{netns.name}-c{len(made) + 1}"
        bridge.create_netns(name)
        made.append(name)
        return name

    yield make
    for name in made:
        bridge.delete_netns(name)
    assert not any(os.path.lexists(f"/run/netns/{name}") for name in made)


def make_bridge(host: str, name: str = "docker1", network_id: str = "net-1",
                mtu: int | None = None) -> str:
    mac = bridge.bridge_mac(network_id)
    bridge.apply_bridge_create(name, bridge.plan_bridge_create(name, GATEWAY, 24, mtu, mac=mac),
                               host_netns=host)
    return mac


def attach(host: str, container: str, host_ifname: str, address: str, *, br: str = "docker1",
           ifname: str = "eth0", gateway: str | None = GATEWAY, mtu: int | None = 1500,
           mac: str | None = None, announce: bool = False) -> None:
    plan = bridge.plan_endpoint_attach(br, host_ifname, container, ifname, address, 24, gateway,
                                       mac, mtu, announce=announce)
    bridge.apply_endpoint_attach(plan, host_netns=host)


def test_seed_replay(netns: NetNS, make_container: MakeContainer) -> None:
    host = netns.name
    # the throwaway host has an eth0 of its own: the peer is created inside the container
    # netns, so the names do not collide
    iproute.run_batch(["link add eth0 type bridge"], netns=host)
    mtu = bridge.uplink_mtu(host_netns=host)
    assert mtu == bridge.DEFAULT_MTU  # no default route in the throwaway host
    make_bridge(host, mtu=mtu)
    c1, c2 = make_container(), make_container()
    attach(host, c1, "tsv-c1", "192.168.10.1", mac="02:42:c0:a8:0a:01", mtu=mtu, announce=True)
    attach(host, c2, "tsv-c2", "192.168.10.2", mtu=mtu)

    eth0 = link(c1, "eth0")
    assert eth0["address"] == "02:42:c0:a8:0a:01" and eth0["mtu"] == mtu
    assert "UP" in eth0["flags"]  # type: ignore[operator]
    assert "UP" in link(c1, "lo")["flags"]  # type: ignore[operator]
    assert ip_json(c1, "route", "show", "default")[0]["gateway"] == GATEWAY
    with open(f"/run/netns/{c1}") as _:  # the pin exists: `ip netns exec c1 ...` works
        pass
    port = link(host, "tsv-c1")
    assert port["master"] == "docker1"
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True  # type: ignore[index]
    accept_ra = NetNS(host).run("cat", "/proc/sys/net/ipv6/conf/docker1/accept_ra").stdout
    assert accept_ra.strip() == "0"
    for container, announced in ((c1, "1"), (c2, "0")):
        arp_notify = NetNS(container).run("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify")
        assert arp_notify.stdout.strip() == announced
        # IPv4 only: no link-local address (its DAD and MLD would flood every port)
        assert ip_json(container, "-6", "addr", "show", "dev", "eth0") in ([], [{}]), container

    result = ping(c1, "192.168.10.2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ping(c2, "192.168.10.1").returncode == 0
    assert ping(c1, GATEWAY).returncode == 0  # the bridge holds the gateway
    assert ping(host, "192.168.10.2").returncode == 0  # the host reaches the containers

    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-c1")
                                 + bridge.plan_endpoint_detach("tsv-c2"), host_netns=host)
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)
    assert link_names(host) == {"lo", "eth0"}
    assert link_names(c1) == {"lo"}


def test_bridge_mac_and_mtu_stay_pinned(netns: NetNS, make_container: MakeContainer) -> None:
    host = netns.name
    mac = make_bridge(host, network_id="net-mac", mtu=1400)
    assert link(host, "docker1")["address"] == mac
    c1, c2 = make_container(), make_container()
    attach(host, c1, "tsv-a", "192.168.10.1", mtu=1400)
    attach(host, c2, "tsv-b", "192.168.10.2", mtu=1400)
    assert link(host, "docker1")["address"] == mac
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-a"), host_netns=host)
    assert link(host, "docker1")["address"] == mac
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-b"), host_netns=host)
    after = link(host, "docker1")
    assert (after["address"], after["mtu"]) == (mac, 1400)
    # what a container's link on it gets, asked in-process in the bridge's namespace (not
    # in the one /sys was mounted in), and a missing link in one line
    with iproute.InNetns(host):
        assert bridge.bridge_mtu("docker1") == 1400
        with pytest.raises(iproute.IpError, match="No such device") as missing:
            bridge.bridge_mtu("docker9")
    assert missing.value.errno == errno.ENODEV
    assert bridge.bridge_mtu("lo") == 65536
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_second_network_without_default_route(netns: NetNS,
                                              make_container: MakeContainer) -> None:
    host = netns.name
    make_bridge(host)
    mac_b = bridge.bridge_mac("net-b")
    bridge.apply_bridge_create("br-b", bridge.plan_bridge_create("br-b", "10.77.0.1", 24,
                                                                 mac=mac_b), host_netns=host)
    c1 = make_container()
    attach(host, c1, "tsv-1a", "192.168.10.1")
    attach(host, c1, "tsv-1b", "10.77.0.2", br="br-b", ifname="eth1", gateway=None)
    routes = ip_json(c1, "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in routes] == [(GATEWAY, "eth0")]
    assert ping(c1, "10.77.0.1").returncode == 0
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-1a")
                                 + bridge.plan_endpoint_detach("tsv-1b"), host_netns=host)
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1")
                               + bridge.plan_bridge_remove("br-b"), host_netns=host)
    assert link_names(host) == {"lo"}


def test_long_names_refused_before_any_command(netns: NetNS,
                                                make_container: MakeContainer) -> None:
    host = netns.name
    c1 = make_container()
    with pytest.raises(InvalidArgument, match="IFNAMSIZ"):
        bridge.plan_bridge_create("container1-veth1", GATEWAY, 24, mac=bridge.bridge_mac("x"))
    make_bridge(host)
    with pytest.raises(InvalidArgument):
        attach(host, c1, "container1-veth1", "192.168.10.1")
    with pytest.raises(InvalidArgument):
        attach(host, c1, "tsv-ok", "192.168.10.1", ifname="container1-veth1")
    assert link_names(host) == {"lo", "docker1"}
    assert link_names(c1) == {"lo"}
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_detach_removes_the_pair(netns: NetNS, make_container: MakeContainer) -> None:
    host = netns.name
    make_bridge(host)
    c1 = make_container()
    attach(host, c1, "tsv-d", "192.168.10.1")
    assert "eth0" in link_names(c1)
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-d"), host_netns=host)
    assert link_names(host) == {"lo", "docker1"}
    assert link_names(c1) == {"lo"}
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_deleting_the_container_netns_removes_the_pair(netns: NetNS) -> None:
    host = netns.name
    make_bridge(host)
    container = f"{host}-cx"
    bridge.create_netns(container)
    try:
        attach(host, container, "tsv-n", "192.168.10.1")
    finally:
        bridge.delete_netns(container)
    assert not os.path.lexists(f"/run/netns/{container}")
    deadline = time.monotonic() + 5
    while "tsv-n" in link_names(host):  # the kernel's netns cleanup is asynchronous
        assert time.monotonic() < deadline, "host end of the veth outlived its netns"
        time.sleep(0.005)
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_removing_missing_things_is_success(netns: NetNS) -> None:
    host = netns.name
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-gone")
                                 + bridge.plan_endpoint_detach("tsv-gone2"), host_netns=host)
    bridge.delete_netns(f"{host}-never-made")


def test_teardown_reports_real_failures_and_keeps_going(netns: NetNS) -> None:
    host = netns.name
    make_bridge(host)
    iproute.run_batch(["link add tsv-x type bridge"], netns=host)
    # `lo` cannot be deleted (EINVAL...): reported; the missing one is fine; tsv-x after the
    # failure is still removed
    with pytest.raises(TeardownErrors) as caught:
        bridge.apply_endpoint_detach(["link del lo", "link del tsv-missing", "link del tsv-x"],
                                     host_netns=host)
    assert len(caught.value.errors) == 1
    assert '"link del lo"' in str(caught.value)
    assert link_names(host) == {"lo", "docker1"}
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_ip_failure_names_the_batch_line(netns: NetNS, make_container: MakeContainer) -> None:
    host = netns.name
    with pytest.raises(iproute.IpError) as caught:
        iproute.run_batch(["link set lo up", "addr add 10.9.9.9/24 dev nosuch",
                           "link set lo down"], netns=host)
    error = caught.value
    assert error.line == "addr add 10.9.9.9/24 dev nosuch" and error.lineno == 2
    assert error.errno == errno.ENODEV and error.status != 0
    assert '"addr add 10.9.9.9/24 dev nosuch"' in str(error) and "nosuch" in error.detail
    assert "UP" in link(host, "lo")["flags"]  # type: ignore[operator]  # stopped at line 2

    # attach to a missing bridge: the `link add` line is named, nothing is left behind
    c1 = make_container()
    with pytest.raises(iproute.IpError, match="link add tsv-e") as caught:
        attach(host, c1, "tsv-e", "192.168.10.1")
    assert caught.value.lineno == 1 and caught.value.errno == errno.ENODEV
    assert link_names(host) == {"lo"} and link_names(c1) == {"lo"}

    # a container-side failure (gateway outside the subnet) unwinds the pair
    make_bridge(host)
    with pytest.raises(iproute.IpError, match=r"route add default via 10\.1\.2\.3") as caught:
        attach(host, c1, "tsv-e", "192.168.10.1", gateway="10.1.2.3")
    assert caught.value.netns is None  # ran inside the container netns via setns
    assert link_names(host) == {"lo", "docker1"} and link_names(c1) == {"lo"}

    # a name already taken on the host is an error and is *not* deleted by the unwind
    iproute.run_batch(["link add tsv-taken type bridge"], netns=host)
    with pytest.raises(iproute.IpError) as caught:
        attach(host, c1, "tsv-taken", "192.168.10.1")
    assert caught.value.errno == errno.EEXIST
    assert "tsv-taken" in link_names(host)
    bridge.apply_endpoint_detach(["link del tsv-taken"], host_netns=host)
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_existing_bridge_is_not_touched(netns: NetNS) -> None:
    host = netns.name
    iproute.run_batch(["link add docker1 type bridge"], netns=host)
    with pytest.raises(iproute.IpError) as caught:
        make_bridge(host)
    assert caught.value.errno == errno.EEXIST and caught.value.lineno == 1
    assert "docker1" in link_names(host)
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)


def test_attach_detach_timing(netns: NetNS, make_container: MakeContainer) -> None:
    """plan+apply of one attach + detach vs the raw `ip -batch` floor (the same lines spawned
    directly: `ip -n HOST -batch`, `ip -n C -batch`, then `ip -n HOST -batch`), interleaved,
    medians of 20."""
    host = netns.name
    make_bridge(host)
    c1 = make_container()
    rounds = 20

    def ours_attach() -> None:
        plan = bridge.plan_endpoint_attach("docker1", "tsv-t", c1, "eth0", "192.168.10.1", 24,
                                           GATEWAY, "02:42:c0:a8:0a:01", 1500)
        bridge.apply_endpoint_attach(plan, host_netns=host)

    def ours_detach() -> None:
        bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-t"), host_netns=host)

    plan = bridge.plan_endpoint_attach("docker1", "tsv-t", c1, "eth0", "192.168.10.1", 24,
                                       GATEWAY, "02:42:c0:a8:0a:01", 1500)
    # the sysctl (a request, with no ip command) is left out of the floor, as before
    netns_lines = [line for line in plan.netns_lines if not line.startswith("sysctl ")]
    raw_inputs = [(["-n", ns, "-batch", "-"], ("\n".join(lines) + "\n").encode())
                  for ns, lines in [(host, plan.host_lines), (c1, netns_lines),
                                    (host, bridge.plan_endpoint_detach("tsv-t"))]]

    def raw_step(*indexes: int) -> Callable[[], None]:
        def step() -> None:
            for index in indexes:
                status, _, err = iproute.spawn_ip(*raw_inputs[index])
                assert status == 0, err
        return step

    def medians(steps: dict[str, Callable[[], None]]) -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        return {name: statistics.median(values) * 1000 for name, values in times.items()}

    steps = {"attach": ours_attach, "detach": ours_detach,
             "raw attach": raw_step(0, 1), "raw detach": raw_step(2)}
    for step in steps.values():  # warm up (imports, ip lookup, page cache)
        step()
    result = medians(steps)
    ours_ms = result["attach"] + result["detach"]
    raw_ms = result["raw attach"] + result["raw detach"]
    print(f"\nendpoint, medians of {rounds}: tsubo plan+apply attach {result['attach']:.2f} ms"
          f" + detach {result['detach']:.2f} ms = {ours_ms:.2f} ms; raw ip -batch floor"
          f" {result['raw attach']:.2f} + {result['raw detach']:.2f} = {raw_ms:.2f} ms;"
          f" ratio {ours_ms / raw_ms:.2f} (attach {result['attach'] / result['raw attach']:.2f})")
    assert link_names(host) == {"lo", "docker1"} and link_names(c1) == {"lo"}
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker1"), host_netns=host)
    assert ours_ms <= 2 * raw_ms


def test_dual_stack_endpoint_is_usable_at_once_and_costs_about_the_same(
        netns: NetNS, make_container: MakeContainer) -> None:
    """An IPv6 address and default route ride on the same two batches: the address is never
    tentative (nodad, accept_dad=0), ping6 works right after the attach, and an attach with
    IPv6 costs about what one without does (interleaved, medians of 30)."""
    host = netns.name
    mac = bridge.bridge_mac("net-6")
    bridge.apply_bridge_create("docker6", bridge.plan_bridge_create(
        "docker6", GATEWAY, 24, None, mac=mac, gateway6="fd00:6::1", prefix_len6=64),
        host_netns=host)
    c1 = make_container()

    def plan(dual: bool) -> bridge.EndpointPlan:
        return bridge.plan_endpoint_attach(
            "docker6", "tsv-6", c1, "eth0", "192.168.10.1", 24, GATEWAY, None, 1500,
            address6="fd00:6::2" if dual else "", prefix_len6=64 if dual else 0,
            gateway6="fd00:6::1" if dual else None)

    bridge.apply_endpoint_attach(plan(True), host_netns=host)
    addresses = ip_json(c1, "-6", "addr", "show", "dev", "eth0")
    infos = [info for entry in addresses for info in entry["addr_info"]  # type: ignore[attr-defined]
             if info.get("local") == "fd00:6::2"]
    assert infos and not infos[0].get("tentative"), addresses
    routes = ip_json(c1, "-6", "route", "show", "default")
    assert routes and routes[0].get("gateway") == "fd00:6::1", routes
    for namespace, ifname in ((host, "docker6"), (c1, "eth0")):
        with iproute.InNetns(namespace), \
                open(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad") as file:
            assert file.read().strip() == "0", ifname
    assert subprocess.run(["ip", "netns", "exec", c1, BUSYBOX, "ping", "-6", "-c", "1", "-W",
                           "2", "fd00:6::1"], capture_output=True, timeout=10).returncode == 0
    bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-6"), host_netns=host)

    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(32):
        for dual in ((False, True) if round_ % 2 else (True, False)):
            start = time.perf_counter()
            bridge.apply_endpoint_attach(plan(dual), host_netns=host)
            if round_ >= 2:
                times[dual].append(time.perf_counter() - start)
            bridge.apply_endpoint_detach(bridge.plan_endpoint_detach("tsv-6"), host_netns=host)
    four, both = (statistics.median(times[key]) * 1000 for key in (False, True))
    print(f"\nendpoint attach, medians of 30 interleaved: IPv4 only {four:.2f} ms, dual stack "
          f"{both:.2f} ms ({both - four:+.2f} ms)")
    bridge.apply_bridge_remove(bridge.plan_bridge_remove("docker6"), host_netns=host)
    assert both - four < max(2.0, 0.5 * four)


def test_a_netns_pinned_in_process_is_new_and_as_ip_makes_it(netns: NetNS,
                                                             make_container: MakeContainer
                                                             ) -> None:
    # what `ip netns add` makes, without its process: a namespace of its own (not ours,
    # not another pin's), only a loopback that is down, reachable by `ip netns exec`
    first, second = make_container(), make_container()
    inodes = {os.stat(f"/run/netns/{name}").st_ino for name in (first, second)}
    assert len(inodes) == 2 and os.stat("/proc/self/ns/net").st_ino not in inodes
    links = json.loads(subprocess.run(["ip", "-n", first, "-j", "link"], capture_output=True,
                                      text=True, check=True).stdout)
    assert [(link["ifname"], link["operstate"]) for link in links] == [("lo", "DOWN")]
    # a name in use: ip's error, and the pin in place is untouched
    with pytest.raises(iproute.IpError, match="File exists") as taken:
        bridge.create_netns(first)
    assert taken.value.errno == errno.EEXIST
    assert os.stat(f"/run/netns/{first}").st_ino in inodes
