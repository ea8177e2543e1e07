"""tsubo.network.ipam and tsubo.network.names: parsing, subnet choice, allocation, names."""

from __future__ import annotations

import os

import pytest

from tsubo.errors import AlreadyExists, InvalidArgument, TsuboError, Unsupported
from tsubo.network import addresses as address_math
from tsubo.network import ipam, names
from tsubo.network.models import Endpoint, Network, new_network_id
from tsubo.network.store import NetworkStore
from tsubo.state.db import Database


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "state" / "tsubo.db")


@pytest.fixture
def store(db_path):
    database = Database(db_path)
    yield NetworkStore(database)
    database.close()


def make_network(store: NetworkStore, name: str = "net", subnet: str = "10.0.0.0/24",
                 gateway: str = "", ip_range: str = "") -> Network:
    return ipam.create_network(store, name, subnet=subnet, gateway=gateway,
                               ip_range=ip_range)


def cid(number: int) -> str:
    return f"{number:064x}"


# --- integers and text ---------------------------------------------------------------------


def test_ip_int_round_trip():
    assert address_math.ip_to_int("172.17.0.2") == 0xAC110002
    assert address_math.int_to_ip(0xAC110002) == "172.17.0.2"
    assert address_math.int_to_ip(address_math.ip_to_int("255.255.255.255")) == "255.255.255.255"


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256",
                                  "1.2.3.-1", "1.2.3.\u0664", "1.2.3. 4", "a.b.c.d"])
def test_ip_to_int_is_strict(text):
    with pytest.raises(ValueError):
        address_math.ip_to_int(text)


def test_cidr_bounds_and_overlaps():
    assert address_math.cidr_bounds("10.0.0.0/24") == (0x0A000000, 0x0A0000FF)
    assert address_math.cidr_bounds("10.0.0.7") == (0x0A000007, 0x0A000007)
    assert address_math.overlaps("10.0.0.0/8", "10.1.2.0/24")
    assert address_math.overlaps("10.1.2.0/24", "10.0.0.0/8")
    assert not address_math.overlaps("10.0.0.0/24", "10.0.1.0/24")
    with pytest.raises(ValueError):
        address_math.cidr_bounds("10.0.0.0/33")
    with pytest.raises(ValueError):
        address_math.cidr_bounds("10.0.0.0/\u0662")


# --- parsing -------------------------------------------------------------------------------


def test_parse_ip():
    assert ipam.parse_ip("192.168.10.2") == "192.168.10.2"
    with pytest.raises(InvalidArgument, match=r"parse --ip '192\.168\.10': not an IPv4"):
        ipam.parse_ip("192.168.10")
    with pytest.raises(Unsupported, match=r"parse --gateway fd00::1: IPv6"):
        ipam.parse_ip("fd00::1", "--gateway")


def test_parse_subnet():
    assert ipam.parse_subnet("192.168.10.0/24") == "192.168.10.0/24"
    assert ipam.parse_subnet("10.0.0.0/255.255.0.0") == "10.0.0.0/16"


@pytest.mark.parametrize(("text", "message"), [
    ("192.168.10.0", "expected CIDR notation"),
    ("192.168.10.0/33", "invalid subnet"),
    ("192.168.300.0/24", "invalid subnet"),
    ("hello/24", "invalid subnet"),
])
def test_parse_subnet_refuses_bad_cidrs(text, message):
    with pytest.raises(InvalidArgument, match=message) as caught:
        ipam.parse_subnet(text)
    assert caught.value.operation == "parse --subnet"


def test_parse_subnet_refuses_host_bits():
    with pytest.raises(InvalidArgument, match="host bits are set") as caught:
        ipam.parse_subnet("192.168.10.5/24")
    assert "did you mean 192.168.10.0/24" in str(caught.value)


def test_parse_subnet_ipv6_is_unsupported():
    with pytest.raises(Unsupported, match=r"parse --subnet fd00::/64: IPv6"):
        ipam.parse_subnet("fd00::/64")


def test_resolve_addresses_defaults_gateway_to_first_address():
    assert ipam.resolve_addresses("10.1.0.0/16") == ("10.1.0.0/16", "10.1.0.1", "")
    assert ipam.resolve_addresses("192.168.10.0/24", "192.168.10.100", "192.168.10.128/25") \
        == ("192.168.10.0/24", "192.168.10.100", "192.168.10.128/25")


@pytest.mark.parametrize(("subnet", "gateway", "ip_range", "flag", "message"), [
    ("10.0.0.0/24", "10.0.1.1", "", "--gateway", "outside subnet 10.0.0.0/24"),
    ("10.0.0.0/24", "10.0.0.0", "", "--gateway", "network address"),
    ("10.0.0.0/24", "10.0.0.255", "", "--gateway", "broadcast address"),
    ("10.0.0.0/24", "", "10.0.1.0/25", "--ip-range", "not inside subnet 10.0.0.0/24"),
    ("10.0.0.0/24", "", "10.0.0.0/23", "--ip-range", "not inside subnet"),
    ("10.0.0.0/24", "", "10.0.0.1/32", "--ip-range", "no address for containers"),
    ("10.0.0.0/24", "", "10.0.0.0/31", "--ip-range", "no address for containers"),
    ("10.0.0.0/31", "", "", "--subnet", "too small: at most /30"),
    ("10.0.0.0/24", "10.0.0.1.1", "", "--gateway", "not an IPv4 address"),
])
def test_resolve_addresses_refusals(subnet, gateway, ip_range, flag, message):
    with pytest.raises(InvalidArgument, match=message) as caught:
        ipam.resolve_addresses(subnet, gateway, ip_range)
    assert caught.value.operation == f"parse {flag}"


def test_resolve_addresses_single_address_range_is_enough():
    assert ipam.resolve_addresses("10.0.0.0/24", "", "10.0.0.9/32")[2] == "10.0.0.9/32"


# --- host routes and nameservers -----------------------------------------------------------

ROUTES_JSON = """[
 {"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
 {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","flags":[]},
 {"dst":"0.0.0.0/1","gateway":"10.8.0.1","dev":"tun0","flags":[]},
 {"dst":"128.0.0.0/1","gateway":"10.8.0.1","dev":"tun0","flags":[]},
 {"dst":"0.0.0.0/0","dev":"wg0","table":"51820","flags":[]},
 {"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","flags":[]},
 {"type":"local","dst":"192.0.2.2","dev":"eth0","table":"local","flags":[]},
 {"type":"multicast","dst":"multicast 224.0.0.0/4","dev":"eth0","flags":[]},
 {"dst":"fe80::/64","dev":"eth0","flags":[]}
]"""


def test_parse_routes():
    assert ipam.parse_routes(ROUTES_JSON) == [
        "192.0.2.0/24", "0.0.0.0/1", "128.0.0.0/1", "127.0.0.0/8", "192.0.2.2/32"]
    assert ipam.parse_routes("") == []


def test_host_routes_is_injectable_and_reports_garbage():
    assert ipam.host_routes(lambda: ROUTES_JSON)[0] == "192.0.2.0/24"
    with pytest.raises(TsuboError, match="list host routes: unexpected output"):
        ipam.host_routes(lambda: "{not json")


def test_host_routes_of_this_host_are_cidrs():
    for route in ipam.host_routes():
        assert ipam.parse_subnet(route) == route


def test_nameservers(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.0.0.53\nnameserver fd00::53\n"
                    "nameserver bogus\nsearch example\nnameserver 172.17.0.9\n")
    assert ipam.host_nameservers(str(conf)) == ["10.0.0.53", "172.17.0.9"]
    assert ipam.host_nameservers(str(tmp_path / "missing")) == []


def test_dns_upstreams_setting_replaces_the_host_nameservers(monkeypatch):
    monkeypatch.delenv(ipam.DNS_UPSTREAM_ENV, raising=False)
    assert ipam.dns_upstreams() == ipam.host_nameservers()
    assert ipam.dns_upstreams("") == ipam.host_nameservers()
    assert ipam.dns_upstreams("10.89.251.53, 10.89.251.54 fd00::53 bogus") == [
        "10.89.251.53", "10.89.251.54"]
    assert ipam.dns_upstreams("bogus") == []  # set, but nothing usable: relay nowhere
    monkeypatch.setenv(ipam.DNS_UPSTREAM_ENV, "10.89.251.53")
    assert ipam.dns_upstreams() == ["10.89.251.53"]
    avoided = ipam.nameservers_to_avoid()
    assert avoided[-1] == "10.89.251.53" and avoided[:-1] == [
        s for s in ipam.host_nameservers() if s != "10.89.251.53"]


# --- choosing a subnet ---------------------------------------------------------------------


def test_choose_subnet_first_candidate():
    assert ipam.choose_subnet([], [], []) == "172.17.0.0/24"


def test_choose_subnet_skips_taken_networks():
    assert ipam.choose_subnet(["172.17.0.0/24", "172.17.1.0/24"], [], []) == "172.17.2.0/24"
    assert ipam.choose_subnet(["172.17.0.0/23"], [], []) == "172.17.2.0/24"
    assert ipam.choose_subnet(["172.16.0.0/12"], [], []) == "192.168.0.0/24"


def test_choose_subnet_skips_host_routes_but_not_the_default_route():
    assert ipam.choose_subnet([], ["0.0.0.0/0", "172.17.0.0/16"], []) == "172.18.0.0/24"
    assert ipam.choose_subnet([], ["172.17.0.128/25"], []) == "172.17.1.0/24"
    assert ipam.choose_subnet([], ["172.17.0.5/32"], []) == "172.17.1.0/24"


def test_choose_subnet_skips_nameservers():
    assert ipam.choose_subnet([], [], ["172.17.0.53"]) == "172.17.1.0/24"
    assert ipam.choose_subnet([], [], ["10.0.0.53", "8.8.8.8"]) == "172.17.0.0/24"


def test_choose_subnet_vpn_half_routes_block_their_half():
    # 0.0.0.0/1 claims 0.0.0.0-127.255.255.255: the default pool (all above 128) is free.
    assert ipam.choose_subnet([], ["0.0.0.0/1"], []) == "172.17.0.0/24"
    # A pool candidate under 0.0.0.0/1 is blocked; the next block above it is used.
    pool = (("10.89.0.0/16", 24), ("172.17.0.0/16", 24))
    assert ipam.choose_subnet([], ["0.0.0.0/1"], [], pool) == "172.17.0.0/24"
    # 128.0.0.0/1 covers every default candidate: no subnet, and the error says why.
    with pytest.raises(TsuboError) as caught:
        ipam.choose_subnet([], ["0.0.0.0/1", "128.0.0.0/1"], [], network="web")
    message = str(caught.value)
    assert message.startswith("choose subnet for network web: no free subnet in the pool")
    assert "host route 128.0.0.0/1" in message
    assert "VPN" in message
    assert "--subnet" in message


def test_choose_subnet_exhaustion_names_blockers():
    pool = (("10.0.0.0/23", 24),)
    with pytest.raises(TsuboError) as caught:
        ipam.choose_subnet(["10.0.0.0/24"], ["10.0.1.0/25"], [], pool)
    message = str(caught.value)
    assert "network subnet 10.0.0.0/24" in message
    assert "host route 10.0.1.0/25" in message


def test_choose_subnet_jumps_over_broad_blockers():
    # One /12 route over 3840 candidates: still quick, and lands in the next block.
    routes = ["172.16.0.0/12"] + [f"192.168.{n}.0/24" for n in range(10)]
    assert ipam.choose_subnet([], routes, []) == "192.168.10.0/24"


# --- creating networks ---------------------------------------------------------------------


def test_create_network_with_explicit_subnet_reads_no_host_state(store):
    def fail() -> list[str]:
        raise AssertionError("must not read host state")

    network = ipam.create_network(store, "docker1", subnet="192.168.10.0/24",
                                  gateway="192.168.10.100", bridge_name="docker1",
                                  routes=fail, nameservers=fail)
    assert (network.subnet, network.gateway, network.bridge_name) == (
        "192.168.10.0/24", "192.168.10.100", "docker1")
    assert store.get_network("docker1") == network


def test_create_network_chooses_subnets(store):
    routes = ["172.17.0.0/16"]
    first = ipam.create_network(store, "a", routes=lambda: routes, nameservers=lambda: [])
    second = ipam.create_network(store, "b", routes=lambda: routes,
                                 nameservers=lambda: ["172.18.1.1"])
    assert (first.subnet, first.gateway) == ("172.18.0.0/24", "172.18.0.1")
    assert second.subnet == "172.18.2.0/24"
    assert first.bridge_name == "tsb" + first.id[:12]


def test_default_network_prefers_dockers_whole_172_17(store):
    """The default network takes Docker's 172.17.0.0/16 when nothing overlaps it, else a
    /24 of the pool like any network; the networks made after it go around it."""
    assert ipam.choose_subnet([], [], [], ipam.DEFAULT_NETWORK_POOL) == "172.17.0.0/16"
    blockers: list[tuple[list[str], list[str], list[str]]] = [
        (["172.17.0.0/24"], [], []), ([], ["172.17.5.0/24"], []), ([], [], ["172.17.200.1"])]
    for taken, routes, servers in blockers:
        assert ipam.choose_subnet(taken, routes, servers, ipam.DEFAULT_NETWORK_POOL) == \
            ipam.choose_subnet(taken, routes, servers)
    default = ipam.create_network(store, "bridge", routes=lambda: [], nameservers=lambda: [],
                                  pool=ipam.DEFAULT_NETWORK_POOL)
    assert (default.subnet, default.gateway) == ("172.17.0.0/16", "172.17.0.1")
    other = ipam.create_network(store, "web", routes=lambda: [], nameservers=lambda: [])
    assert other.subnet == "172.18.0.0/24"


def test_create_network_refusals(store):
    with pytest.raises(InvalidArgument, match="--gateway needs --subnet"):
        ipam.create_network(store, "a", gateway="10.0.0.1")
    with pytest.raises(InvalidArgument, match="--ip-range needs --subnet"):
        ipam.create_network(store, "a", ip_range="10.0.0.0/25")
    with pytest.raises(InvalidArgument, match="MTU"):
        ipam.create_network(store, "a", subnet="10.0.0.0/24", mtu=67)
    with pytest.raises(InvalidArgument, match="network name"):
        ipam.create_network(store, "-bad", subnet="10.0.0.0/24")
    with pytest.raises(InvalidArgument, match="15 bytes"):
        ipam.create_network(store, "a", subnet="10.0.0.0/24", bridge_name="a" * 16)
    assert store.list_networks() == []


# --- allocating ----------------------------------------------------------------------------


def test_allocation_order_lowest_first_never_gateway(store):
    network = make_network(store, subnet="10.0.0.0/24", gateway="10.0.0.3")
    got = [ipam.allocate(store, network, container_id=cid(n)) for n in range(4)]
    assert got == ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"]


def test_allocation_within_ip_range(store):
    network = make_network(store, subnet="10.0.0.0/24", ip_range="10.0.0.128/30")
    got = [ipam.allocate(store, network, container_id=cid(n)) for n in range(4)]
    assert got == ["10.0.0.128", "10.0.0.129", "10.0.0.130", "10.0.0.131"]
    with pytest.raises(TsuboError, match=r"network net has no free address \(subnet "
                       r"10\.0\.0\.0/24, ip range 10\.0\.0\.128/30, 4 in use\)"):
        ipam.allocate(store, network, container_id=cid(9))


def test_exhaustion_on_a_slash_29(store):
    network = make_network(store, subnet="10.0.0.0/29")
    got = [ipam.allocate(store, network, container_id=cid(n)) for n in range(5)]
    # 8 addresses - network (.0) - broadcast (.7) - gateway (.1) = 5
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(TsuboError) as caught:
        ipam.allocate(store, network, container_id=cid(9))
    assert str(caught.value).startswith(
        "allocate address: network net has no free address (subnet 10.0.0.0/29, 5 in use)")
    assert not isinstance(caught.value, (InvalidArgument, AlreadyExists))


def test_release_and_reuse(store):
    network = make_network(store)
    got = [ipam.allocate(store, network, container_id=cid(n)) for n in range(5)]
    assert got[-1] == "10.0.0.6"
    assert ipam.release(store, network.id, "10.0.0.4")
    assert ipam.release(store, network.id, "10.0.0.3")
    assert not ipam.release(store, network.id, "10.0.0.3")
    assert ipam.allocate(store, network, container_id=cid(10)) == "10.0.0.3"
    assert ipam.allocate(store, network, container_id=cid(11)) == "10.0.0.4"
    assert ipam.allocate(store, network, container_id=cid(12)) == "10.0.0.7"


def test_gateway_lease_is_never_released(store):
    network = make_network(store)
    assert not ipam.release(store, network.id, "10.0.0.1")
    assert store.leases(network.id) == [("10.0.0.1", "")]


def test_exhausted_network_recovers_after_release(store):
    network = make_network(store, subnet="10.0.0.0/30")
    assert ipam.allocate(store, network, container_id=cid(1)) == "10.0.0.2"
    with pytest.raises(TsuboError, match="no free address"):
        ipam.allocate(store, network, container_id=cid(2))
    ipam.release(store, network.id, "10.0.0.2")
    assert ipam.allocate(store, network, container_id=cid(2)) == "10.0.0.2"


def test_stale_hint_falls_back_to_a_full_search(store):
    network = make_network(store, subnet="10.0.0.0/29")
    for n in range(5):
        ipam.allocate(store, network, container_id=cid(n))
    # A lease deleted behind the store's back: the hint still says "all below is taken".
    with store.transaction() as connection:
        connection.execute("DELETE FROM leases WHERE network_id = ? AND address = ?",
                           (network.id, address_math.ip_to_int("10.0.0.3")))
    assert ipam.allocate(store, network, container_id=cid(9)) == "10.0.0.3"


def test_explicit_ip(store):
    network = make_network(store, subnet="192.168.10.0/24", gateway="192.168.10.100")
    assert ipam.allocate(store, network, "192.168.10.2", container_id=cid(2)) == "192.168.10.2"
    assert ipam.allocate(store, network, container_id=cid(1)) == "192.168.10.1"
    assert ipam.allocate(store, network, container_id=cid(3)) == "192.168.10.3"


@pytest.mark.parametrize(("requested", "kind", "message"), [
    ("192.168.11.5", InvalidArgument,
     "parse --ip 192.168.11.5: address is outside subnet 192.168.10.0/24 of network net"),
    ("192.168.10.0", InvalidArgument, "network address of network net"),
    ("192.168.10.255", InvalidArgument, "broadcast address of network net"),
    ("192.168.10.100", AlreadyExists,
     "allocate address 192.168.10.100: address is the gateway of network net"),
    ("192.168.10.7", AlreadyExists,
     "allocate address 192.168.10.7: address is already in use on network net by "
     "container 000000000000"),
    ("192.168.10", InvalidArgument, "parse --ip"),
])
def test_explicit_ip_refusals(store, requested, kind, message):
    network = make_network(store, subnet="192.168.10.0/24", gateway="192.168.10.100")
    ipam.allocate(store, network, "192.168.10.7", container_id=cid(7))
    with pytest.raises(kind) as caught:
        ipam.allocate(store, network, requested, container_id=cid(8))
    assert message in str(caught.value)
    assert store.leases(network.id) == [("192.168.10.7", cid(7)), ("192.168.10.100", "")]


def test_explicit_ip_may_lie_outside_ip_range(store):
    network = make_network(store, subnet="10.0.0.0/24", ip_range="10.0.0.128/25")
    assert ipam.allocate(store, network, "10.0.0.10", container_id=cid(1)) == "10.0.0.10"
    assert ipam.allocate(store, network, container_id=cid(2)) == "10.0.0.128"


def test_allocate_on_removed_network(store):
    network = make_network(store)
    store.delete_network(network.id)
    with pytest.raises(TsuboError):
        ipam.allocate(store, network, container_id=cid(1))


def _allocate_in_child(db_path: str, network_id: str, worker: int, count: int,
                       write_fd: int) -> None:
    database = Database(db_path)
    child_store = NetworkStore(database)
    network = child_store.get_network(network_id)
    got = [ipam.allocate(child_store, network, container_id=cid(worker * 1000 + n))
           for n in range(count)]
    database.close()
    os.write(write_fd, (",".join(got) + "\n").encode())


def test_parallel_allocations_from_four_processes_are_distinct(store, db_path):
    network = make_network(store, subnet="10.20.0.0/24")
    workers, per_worker = 4, 50
    read_fd, write_fd = os.pipe()
    children = []
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 1
            try:
                os.close(read_fd)
                _allocate_in_child(db_path, network.id, worker, per_worker, write_fd)
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        output = pipe.read()
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    addresses = [address for line in output.splitlines() for address in line.split(",")]
    assert len(addresses) == workers * per_worker
    assert len(set(addresses)) == workers * per_worker
    # Lowest first across all processes: exactly .2 to .201.
    assert sorted(addresses, key=address_math.ip_to_int) == [f"10.20.0.{n}" for n in range(2, 202)]
    assert len(store.leases(network.id)) == workers * per_worker + 1


# --- names ---------------------------------------------------------------------------------


def test_bridge_name_default_and_requested():
    network_id = new_network_id()
    assert names.bridge_name(network_id) == "tsb" + network_id[:12]
    assert len(names.bridge_name(network_id).encode()) == 15
    assert names.bridge_name(network_id, "docker1") == "docker1"
    assert names.bridge_name(network_id, "a" * 15) == "a" * 15


@pytest.mark.parametrize(("requested", "message"), [
    ("abcdefghijklmnop", "16 bytes; the kernel's limit is 15 bytes"),
    ("\u00e9" * 8, "16 bytes; the kernel's limit is 15 bytes"),
    ("br/0", "cannot contain"),
    ("br:0", "cannot contain"),
    ("br 0", "cannot contain"),
    ("br\t0", "cannot contain"),
    (".", '"." and ".."'),
    ("..", '"." and ".."'),
    ("tsb0123456789ab", "reserved"),
    ("tsv0123456789ab", "reserved"),
])
def test_bridge_name_refusals(requested, message):
    with pytest.raises(InvalidArgument, match=message) as caught:
        names.bridge_name(new_network_id(), requested)
    assert caught.value.operation == "check --bridge-name"


def test_host_veth_name_is_short_deterministic_and_marked():
    container_id, network_id = cid(1), new_network_id()
    name = names.host_veth_name(container_id, network_id)
    assert name == names.host_veth_name(container_id, network_id)
    assert name.startswith("tsv")
    assert len(name.encode()) == 15
    assert names.is_generated_link_name(name)
    assert name != names.host_veth_name(container_id, new_network_id())
    assert name != names.host_veth_name(cid(2), network_id)
    assert not names.is_generated_link_name("docker1")
    assert not names.is_generated_link_name("tsv0123456789aX")


def test_container_ifname():
    assert [names.container_ifname(n) for n in range(3)] == ["eth0", "eth1", "eth2"]


def test_mac_for_is_dockers():
    assert names.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert names.mac_for("192.168.10.255") == "02:42:c0:a8:0a:ff"


def test_parse_mac():
    assert names.parse_mac("02:42:AC:11:00:02") == "02:42:ac:11:00:02"
    assert names.parse_mac("02-42-ac-11-00-02") == "02:42:ac:11:00:02"
    for bad in ("02:42:ac:11:00", "02:42:ac:11:00:0g", "0242ac110002", "2:42:ac:11:0:2"):
        with pytest.raises(InvalidArgument, match="parse --mac-address"):
            names.parse_mac(bad)
    with pytest.raises(InvalidArgument, match="multicast"):
        names.parse_mac("01:00:5e:00:00:01")
    with pytest.raises(InvalidArgument, match="all-zero"):
        names.parse_mac("00:00:00:00:00:00")


def test_validate_network_name():
    assert names.validate_network_name("docker1") == "docker1"
    assert names.validate_network_name("a") == "a"
    for bad in ("", "-a", "a b", "a/b", "x" * 129):
        with pytest.raises(InvalidArgument, match="check network name"):
            names.validate_network_name(bad)
    for reserved in ("none", "host"):
        with pytest.raises(InvalidArgument, match="--network mode"):
            names.validate_network_name(reserved)


# --- models --------------------------------------------------------------------------------


def test_models_json_round_trip():
    network = Network(new_network_id(), "web", "10.0.0.0/24", "10.0.0.1", "br-web",
                      ip_range="10.0.0.128/25", internal=True, mtu=1400,
                      labels={"k": "v"})
    assert Network.from_json(network.to_json()) == network
    assert network.prefix_len == 24
    endpoint = Endpoint(cid(1), network.id, "eth0", "tsv0123456789ab", "02:42:0a:00:00:02",
                        "10.0.0.2", 24)
    assert Endpoint.from_json(endpoint.to_json()) == endpoint
    assert endpoint.cidr == "10.0.0.2/24"
    with pytest.raises(InvalidArgument, match="unknown field"):
        Network.from_json({**network.to_json(), "extra": 1})
    with pytest.raises(InvalidArgument, match="missing field"):
        Endpoint.from_json({"container_id": "x"})
    with pytest.raises(InvalidArgument, match="malformed"):
        Network.from_json({**network.to_json(), "mtu": "big"})


def test_network_modules_import_nothing_slow():
    import subprocess
    import sys

    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); "
            "import tsubo.network.ipam, tsubo.network.names, "
            "tsubo.network.models, tsubo.network.store; "
            "slow = {'ipaddress', 'subprocess', 'json', 'typing', 'dataclasses', 'enum', 're',"
            " 'hashlib'} & set(sys.modules); print(sorted(slow))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"
