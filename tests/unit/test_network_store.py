"""tsubo.network.store: the networking tables (migration 2), networks, endpoints, ledger."""

from __future__ import annotations

import pytest

from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from tsubo.network import addresses, ipam, names
from tsubo.network.models import Endpoint, Network, new_network_id
from tsubo.network.store import LEDGER_KINDS, NetworkStore
from tsubo.state.db import MIGRATIONS, ContainerRow, Database


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "state" / "tsubo.db"))
    yield database
    database.close()


@pytest.fixture
def store(db):
    return NetworkStore(db)


def cid(number: int) -> str:
    return f"{number:064x}"


def network_row(name: str, subnet: str, *, network_id: str = "", bridge: str = "",
                **options: object) -> Network:
    network_id = network_id or new_network_id()
    gateway = addresses.int_to_ip(addresses.cidr_bounds(subnet)[0] + 1)
    return Network(network_id, name, subnet, gateway,
                   bridge or names.bridge_name(network_id), **options)  # type: ignore[arg-type]


def endpoint_for(store: NetworkStore, network: Network, container_id: str,
                 ifname: str = "eth0") -> Endpoint:
    address = ipam.allocate(store, network, container_id=container_id)
    endpoint = Endpoint(container_id, network.id, ifname,
                        names.host_veth_name(container_id, network.id),
                        names.mac_for(address), address, network.prefix_len)
    store.insert_endpoint(endpoint)
    return endpoint


# --- schema ----------------------------------------------------------------------------------


def test_migration_adds_the_networking_tables(db):
    assert db.schema_version() == len(MIGRATIONS) >= 2
    tables = {row[0] for row in db.connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"networks", "leases", "endpoints", "ledger"} <= tables


def test_version_1_database_migrates(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.db")
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.close()
    with Database(path) as database:
        assert database.schema_version() == len(MIGRATIONS)
        NetworkStore(database).insert_network(network_row("n", "10.0.0.0/24"))


# --- networks --------------------------------------------------------------------------------


def test_insert_and_get_network(store):
    network = network_row("web", "10.0.0.0/24", ip_range="10.0.0.128/25", internal=True,
                          mtu=1400, labels={"team": "a", "x": ""})
    store.insert_network(network)
    for ref in (network.id, "web", network.id[:12], network.id[:3]):
        assert store.get_network(ref) == network
    got = store.get_network("web")
    assert got.internal is True
    assert got.labels == {"team": "a", "x": ""}
    assert store.leases(network.id) == [("10.0.0.1", "")]


def test_get_network_errors(store):
    first = network_row("a", "10.0.0.0/24", network_id="ab" + "0" * 62)
    second = network_row("b", "10.0.1.0/24", network_id="ab" + "1" * 62)
    store.insert_network(first)
    store.insert_network(second)
    with pytest.raises(InvalidArgument, match="multiple networks match prefix ab"):
        store.get_network("ab")
    assert store.get_network("ab0") == first
    with pytest.raises(NotFound, match="find network nope: no such network"):
        store.get_network("nope")
    with pytest.raises(InvalidArgument, match="empty"):
        store.get_network("")


def test_list_networks_by_name(store):
    for name, subnet in (("zeta", "10.0.0.0/24"), ("alpha", "10.0.1.0/24")):
        store.insert_network(network_row(name, subnet))
    assert [n.name for n in store.list_networks()] == ["alpha", "zeta"]


@pytest.mark.parametrize(("kwargs", "kind", "message"), [
    ({"name": "web", "subnet": "10.9.0.0/24"}, AlreadyExists, 'a network named "web" exists'),
    ({"name": "other", "subnet": "10.0.0.0/24"}, AlreadyExists,
     "subnet 10.0.0.0/24 is already the subnet of network web"),
    ({"name": "other", "subnet": "10.0.0.0/16"}, InvalidArgument,
     "subnet 10.0.0.0/16 overlaps subnet 10.0.0.0/24 of network web"),
    ({"name": "other", "subnet": "10.0.0.128/25"}, InvalidArgument,
     "overlaps subnet 10.0.0.0/24 of network web"),
    ({"name": "other", "subnet": "10.9.0.0/24", "bridge": "br-web"}, AlreadyExists,
     "bridge br-web is already the bridge of network web"),
])
def test_insert_network_conflicts(store, kwargs, kind, message):
    store.insert_network(network_row("web", "10.0.0.0/24", bridge="br-web"))
    with pytest.raises(kind, match=message):
        store.insert_network(network_row(**kwargs))
    assert [n.name for n in store.list_networks()] == ["web"]


def test_insert_network_duplicate_id(store):
    network = network_row("a", "10.0.0.0/24")
    store.insert_network(network)
    again = network_row("b", "10.0.1.0/24", network_id=network.id, bridge="br-b")
    with pytest.raises(AlreadyExists, match="a network with id"):
        store.insert_network(again)


def test_delete_network_refuses_while_containers_are_attached(store, db):
    network = network_row("web", "10.0.0.0/24")
    store.insert_network(network)
    db.insert_container(ContainerRow.new(cid(1), "container1", "{}"))
    endpoint_for(store, network, cid(1))
    endpoint_for(store, network, cid(2))  # a container the engine no longer knows
    with pytest.raises(WrongState) as caught:
        store.delete_network("web")
    message = str(caught.value)
    assert "container1 (000000000000)" in message
    assert cid(2)[:12] in message
    store.delete_endpoint(cid(1), network.id)
    store.delete_endpoint(cid(2), network.id)
    assert store.delete_network("web") == network
    assert store.list_networks() == []
    assert db.connection.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    with pytest.raises(NotFound):
        store.delete_network("web")


def test_leases_without_endpoints_go_with_the_network(store, db):
    network = network_row("web", "10.0.0.0/24")
    store.insert_network(network)
    ipam.allocate(store, network, container_id=cid(1))  # an attach cut short
    store.delete_network(network.id)
    assert store.container_leases(cid(1)) == []


# --- endpoints -------------------------------------------------------------------------------


def test_endpoints_insert_list_delete(store):
    web = network_row("web", "10.0.0.0/24")
    db_net = network_row("db", "10.0.1.0/24")
    store.insert_network(web)
    store.insert_network(db_net)
    one = endpoint_for(store, web, cid(1))
    two = endpoint_for(store, web, cid(2))
    one_db = endpoint_for(store, db_net, cid(1), "eth1")
    assert store.network_endpoints(web.id) == [one, two]
    assert store.container_endpoints(cid(1)) == [one, one_db]
    assert store.get_endpoint(cid(1), db_net.id) == one_db
    assert one.address == "10.0.0.2"
    assert store.delete_endpoint(cid(1), web.id) == one
    assert store.delete_endpoint(cid(1), web.id) is None
    assert store.container_leases(cid(1)) == [(db_net.id, "10.0.1.2")]
    # The address came back and goes to the next container.
    assert ipam.allocate(store, web, container_id=cid(3)) == "10.0.0.2"


def test_endpoint_conflicts(store):
    web = network_row("web", "10.0.0.0/24")
    other = network_row("other", "10.0.1.0/24")
    store.insert_network(web)
    store.insert_network(other)
    endpoint = endpoint_for(store, web, cid(1))
    with pytest.raises(AlreadyExists, match="already connected"):
        store.insert_endpoint(Endpoint(cid(1), web.id, "eth1", "tsv000000000001",
                                       "02:42:0a:00:00:09", "10.0.0.9", 24))
    with pytest.raises(AlreadyExists, match="already has an interface eth0"):
        store.insert_endpoint(Endpoint(cid(1), other.id, "eth0", "tsv000000000002",
                                       "02:42:0a:00:01:09", "10.0.1.9", 24))
    with pytest.raises(AlreadyExists, match=f"host interface {endpoint.host_ifname}"):
        store.insert_endpoint(Endpoint(cid(2), other.id, "eth0", endpoint.host_ifname,
                                       "02:42:0a:00:01:09", "10.0.1.9", 24))
    with pytest.raises(NotFound, match="no network"):
        store.insert_endpoint(Endpoint(cid(3), "f" * 64, "eth0", "tsv000000000003",
                                       "02:42:0a:00:01:09", "10.0.1.9", 24))


def test_forget_container_drops_endpoints_and_all_leases(store):
    web = network_row("web", "10.0.0.0/24")
    other = network_row("other", "10.0.1.0/24")
    store.insert_network(web)
    store.insert_network(other)
    endpoint = endpoint_for(store, web, cid(1))
    ipam.allocate(store, other, container_id=cid(1))  # leased, never attached
    endpoint_for(store, web, cid(2))
    assert store.forget_container(cid(1)) == [endpoint]
    assert store.container_leases(cid(1)) == []
    assert store.container_endpoints(cid(1)) == []
    assert [e.container_id for e in store.network_endpoints(web.id)] == [cid(2)]
    assert ipam.allocate(store, web, container_id=cid(3)) == "10.0.0.2"
    assert ipam.allocate(store, other, container_id=cid(3)) == "10.0.1.2"


# --- ledger ----------------------------------------------------------------------------------


def test_ledger_round_trip(store):
    network_id = new_network_id()
    store.record("link", "tsb" + network_id[:12], network_id)
    store.record("link", "tsv0123456789ab", cid(1))
    store.record("netns", "/run/netns/container1", cid(1))
    store.record("nft-chain", "fwd-" + network_id[:12], network_id)
    store.record("link", "tsv0123456789ab", cid(1))  # again, same owner: a no-op
    entries = store.ledger_entries()
    assert [(e.kind, e.name, e.owner) for e in entries] == [
        ("link", "tsb" + network_id[:12], network_id),
        ("link", "tsv0123456789ab", cid(1)),
        ("netns", "/run/netns/container1", cid(1)),
        ("nft-chain", "fwd-" + network_id[:12], network_id),
    ]
    assert all(e.created_at.endswith("Z") for e in entries)
    assert [e.name for e in store.ledger_entries("link")] == [
        "tsb" + network_id[:12], "tsv0123456789ab"]
    assert [e.kind for e in store.ledger_entries(owner=cid(1))] == ["link", "netns"]
    assert [e.name for e in store.ledger_entries("netns", cid(1))] == [
        "/run/netns/container1"]
    assert store.forget("link", "tsv0123456789ab")
    assert not store.forget("link", "tsv0123456789ab")
    assert len(store.ledger_entries()) == 3


def test_ledger_refusals(store):
    store.record("link", "br0", cid(1))
    with pytest.raises(AlreadyExists, match="record link br0: already recorded for"):
        store.record("link", "br0", cid(2))
    with pytest.raises(ValueError, match="unknown ledger kind"):
        store.record("mount", "/x", cid(1))
    with pytest.raises(ValueError, match="unknown ledger kind"):
        store.ledger_entries("route")
    assert LEDGER_KINDS == ("link", "netns", "nft-chain", "port")


def test_ledger_record_is_committed_at_once(store, db):
    store.record("netns", "/run/netns/c1", cid(1))
    # Visible to another connection before anything else happens: recorded, then created.
    with Database(db.path) as other:
        assert [e.name for e in NetworkStore(other).ledger_entries()] == ["/run/netns/c1"]


# --- names (the networks' resolvers) ---------------------------------------------------------


def test_resolve_name_and_names_taken_anywhere(store, db):
    front_id, db_id, idle_id = "a1" * 32, "b2" * 32, "c3" * 32
    web = network_row("web", "10.0.0.0/24")
    back = network_row("back", "10.0.1.0/24")
    store.insert_network(web)
    store.insert_network(back)
    db.insert_container(ContainerRow.new(front_id, "Front", "{}"))
    db.insert_container(ContainerRow.new(db_id, "db", "{}"))
    db.insert_container(ContainerRow.new(idle_id, "idle", "{}"))  # on no network
    front = endpoint_for(store, web, front_id)
    endpoint_for(store, back, db_id)

    # on its own network, by name in any case, or by short ID
    assert store.resolve_name(web.id, "front") == front.address
    assert store.resolve_name(web.id, "FRONT") == front.address
    assert store.resolve_name(web.id, front_id[:12]) == front.address
    # not from another network
    assert store.resolve_name(web.id, "db") is None
    assert store.resolve_name(back.id, "front") is None

    for name in ("front", "DB", "idle", db_id[:12], db_id[:12].upper()):
        assert store.container_name_taken(name), name
    for name in ("", "d", "db.example.org", db_id[:11], db_id, "nosuch"):
        assert not store.container_name_taken(name), name


def test_port_claims_one_transaction_and_indexed_lookup(store: NetworkStore,
                                                        db: Database) -> None:
    from tsubo.network.ports import PortTaken, choose, parse_publish

    def claim(owner: str, *texts: str) -> list[str]:
        specs = [spec for text in texts for spec in parse_publish(text)]
        return store.claim_ports(owner, lambda holder_of: [
            p.ledger_name for p in choose(specs, holder_of, lambda: (40000, 40001))])

    assert claim(cid(1), "8080:80") == ["tcp/8080/0.0.0.0/80"]
    assert claim(cid(2), "127.0.0.1:8081:80/udp") == ["udp/8081/127.0.0.1/80"]
    assert store.port_holder("tcp", "127.0.0.1", 8080) == cid(1)  # wildcard covers it
    assert store.port_holder("tcp", "0.0.0.0", 80800) is None  # no prefix confusion
    assert store.port_holder("udp", "10.0.0.1", 8081) is None
    assert store.port_holder("udp", "0.0.0.0", 8081) == cid(2)
    # a claim with one held port records nothing, not even its free ports
    claim(cid(3), "9000:90")
    with pytest.raises(PortTaken):
        claim(cid(4), "9001:91", "8080:81")
    assert store.published_ports(cid(4)) == {}
    assert claim(cid(4), "9001:91") == ["tcp/9001/0.0.0.0/91"]
    # a second connection (another process starting a container) sees the claims at once
    with Database(db.path) as second:
        other = NetworkStore(second)
        assert other.port_holder("tcp", "0.0.0.0", 9000) == cid(3)
        assert sorted(other.published_ports()) == sorted([cid(1), cid(2), cid(3), cid(4)])
        assert other.ledger_entries("port", owner=cid(1))[0].name == "tcp/8080/0.0.0.0/80"
