"""The bridge driver's planners (pure: exact ip -batch lines) and ip's error parsing."""

from __future__ import annotations

import errno
import re

import pytest

from tsubo.errors import InvalidArgument
from tsubo.kernel import iproute
from tsubo.network import bridge

MAC = "02:42:c0:a8:0a:01"


def test_bridge_create_lines() -> None:
    mac = bridge.bridge_mac("net-1")
    assert bridge.plan_bridge_create("docker1", "192.168.10.100", 24, 1400, mac=mac) == [
        f"link add docker1 address {mac} type bridge",
        "addr add 192.168.10.100/24 dev docker1",
        "link set docker1 mtu 1400 up",
    ]


def test_bridge_create_without_mtu_and_ipv6_gateway() -> None:
    assert bridge.plan_bridge_create("tsubo0", "fd00::1", 64, mac=MAC) == [
        f"link add tsubo0 address {MAC} type bridge",
        "addr add fd00::1/64 dev tsubo0 nodad",
        "link set tsubo0 up",
    ]


def test_bridge_remove_and_endpoint_detach_lines() -> None:
    assert bridge.plan_bridge_remove("docker1") == ["link del docker1"]
    assert bridge.plan_endpoint_detach("tsv-abc") == ["link del tsv-abc"]


def test_endpoint_attach_lines() -> None:
    plan = bridge.plan_endpoint_attach("docker1", "tsv-0123456789a", "container1", "eth0",
                                       "192.168.10.1", 24, "192.168.10.100", MAC, 1500)
    assert plan.host_lines == [
        "link add tsv-0123456789a mtu 1500 master docker1 type veth"
        f" peer name eth0 address {MAC} mtu 1500 netns container1",
        "link set tsv-0123456789a addrgenmode none",
        "link set tsv-0123456789a up type bridge_slave hairpin on",
    ]
    assert plan.netns_lines == [
        "addr add 192.168.10.1/24 dev eth0",
        "link set lo up",
        "link set eth0 addrgenmode none",
        "link set eth0 up",
        "route add default via 192.168.10.100 dev eth0",
    ]
    assert plan.netns_sysctls == []
    assert (plan.netns_name, plan.ifname, plan.host_ifname) == (
        "container1", "eth0", "tsv-0123456789a")


def test_endpoint_attach_second_network_has_no_default_route() -> None:
    plan = bridge.plan_endpoint_attach("br-b", "tsv-2", "c1", "eth1", "10.1.0.5", 16, None,
                                       None, None)
    assert plan.host_lines[0] == "link add tsv-2 master br-b type veth peer name eth1 netns c1"
    assert plan.netns_lines == ["addr add 10.1.0.5/16 dev eth1", "link set lo up",
                                "link set eth1 addrgenmode none", "link set eth1 up"]


def test_only_a_mac_not_derived_from_the_address_is_announced() -> None:
    """A gratuitous ARP is flooded to every port of the bridge: sent only for a MAC the
    neighbours may not know at this address (``--mac-address``)."""
    plan = bridge.plan_endpoint_attach("br-b", "tsv-2", "c1", "eth0", "10.1.0.5", 16, None,
                                       "02:00:00:00:00:07", None, announce=True)
    assert plan.netns_lines[0] == "sysctl net.ipv4.conf.eth0.arp_notify=1"
    assert plan.netns_lines.index("sysctl net.ipv4.conf.eth0.arp_notify=1") < \
        plan.netns_lines.index("link set eth0 up")


@pytest.mark.parametrize("name", ["", "a" * 16, "container1-veth1", "é" * 8, "a b", "a/b", "a:b",
                                  ".", "..", "a#b", 'a"b', "a\nb"])
def test_bad_interface_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        bridge.check_ifname(name)
    with pytest.raises(InvalidArgument):
        bridge.plan_endpoint_attach("docker1", name, "c1", "eth0", "10.0.0.2", 24, None, None,
                                    None)
    with pytest.raises(InvalidArgument):
        bridge.plan_bridge_create(name, "10.0.0.1", 24, mac=MAC)


def test_fifteen_bytes_is_the_limit() -> None:
    assert bridge.check_ifname("a" * 15) == "a" * 15
    with pytest.raises(InvalidArgument) as caught:
        bridge.check_ifname("container1-veth1")
    assert "16 bytes" in str(caught.value) and "IFNAMSIZ" in str(caught.value)


@pytest.mark.parametrize("value", ["10.0.0.1 dev lo", "10.0.0.1#", ""])
def test_unsafe_tokens_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        bridge.plan_endpoint_attach("docker1", "tsv-1", "c1", "eth0", value, 24, None, None, None)
    with pytest.raises(InvalidArgument):
        bridge.plan_endpoint_attach("docker1", "tsv-1", "c1", "eth0", "10.0.0.2", 24,
                                    value or "x y", None, None)


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        bridge.plan_bridge_create("br0", "10.0.0.1", 33, mac=MAC)
    with pytest.raises(InvalidArgument):
        bridge.plan_bridge_create("br0", "10.0.0.1", 24, 67, mac=MAC)
    with pytest.raises(InvalidArgument):
        bridge.plan_endpoint_attach("br0", "tsv-1", "a/b", "eth0", "10.0.0.2", 24, None, None,
                                    None)


@pytest.mark.parametrize("mac", ["02:42:c0:a8:0a", "02:42:c0:a8:0a:0g", "0242c0a80a01",
                                 "03:42:c0:a8:0a:01", "02-42-c0-a8-0a-01", "002:42:c0:a8:0a:1"])
def test_bad_macs_are_refused(mac: str) -> None:
    with pytest.raises(InvalidArgument):
        bridge.check_mac(mac)


def test_mac_is_normalised() -> None:
    assert bridge.check_mac("02:42:C0:A8:0A:01") == MAC


def test_bridge_mac_is_stable_local_unicast() -> None:
    mac = bridge.bridge_mac("0123abcd")
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    assert bridge.bridge_mac("0123abcd") == mac
    assert bridge.bridge_mac("0123abce") != mac
    assert bridge.check_mac(mac) == mac


def test_parse_batch_errors() -> None:
    stderr = ('Cannot find device "nosuch"\nCommand failed -:2\n'
              "RTNETLINK answers: File exists\nCommand failed -:4\n")
    assert iproute.parse_batch_errors(stderr) == [(2, 'Cannot find device "nosuch"'),
                                                  (4, "RTNETLINK answers: File exists")]
    assert iproute.parse_batch_errors("") == []


@pytest.mark.parametrize(("message", "number"), [
    ('Cannot find device "x"', errno.ENODEV),
    ("RTNETLINK answers: File exists", errno.EEXIST),
    ('Cannot remove namespace file "/run/netns/x": No such file or directory', errno.ENOENT),
    ("Error: Nexthop has invalid gateway.", 0),
    ("", 0),
])
def test_errno_of_message(message: str, number: int) -> None:
    assert iproute.errno_of_message(message) == number


def test_ip_error_names_the_line() -> None:
    error = iproute.IpError("addr add 10.0.0.1/24 dev nosuch", 'Cannot find device "nosuch"',
                            lineno=2, status=1, netns="h1")
    assert error.operation == "ip"
    assert error.object == '"addr add 10.0.0.1/24 dev nosuch" (in netns h1)'
    assert error.errno == errno.ENODEV and error.lineno == 2 and error.status == 1
    assert str(error) == ('ip "addr add 10.0.0.1/24 dev nosuch" (in netns h1):'
                          ' Cannot find device "nosuch": ENODEV')


def test_module_imports_stay_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys; import tsubo.network.bridge; "
            "bad = {'subprocess', 'json', 're', 'typing', 'dataclasses', 'enum', 'hashlib'}"
            " & set(sys.modules); print(sorted(bad))")
    argv = [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
