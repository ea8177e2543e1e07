"""The networking tables of the engine's SQLite database: networks, leases, endpoints and
the ledger. The schema is migration 2 in ``tsubo.state.db.MIGRATIONS`` (and 7: IPv6); this
module is the only code that reads or writes these tables.

- ``networks``: one row per network (:class:`~tsubo.network.models.Network`), plus
  ``alloc_hint`` for :func:`tsubo.network.ipam.allocate` (see there) and ``alloc_hint6``
  (a lease key, ``""`` = none) for :func:`tsubo.network.ipam.allocate6`.
- ``leases``: which address of which network is taken, and by which container. IPv4
  addresses are integers so SQL can order them and find gaps; IPv6 ones (dual-stack
  networks) are TEXT keys, ``6/`` + the 32 hex digits of the address (:func:`lease_key`:
  never taken for an integer by the column's affinity, ordered by value, and apart from
  every IPv4 key), so one table, one release and one gc serve both families. The gateway
  holds a lease of its own (container ``""``; both gateways on a dual-stack network), taken
  with the network and gone with it (ON DELETE CASCADE). A lease is taken before the
  kernel work of an attach, the endpoint row is written after it.
- ``endpoints``: one row per (container, network) attachment
  (:class:`~tsubo.network.models.Endpoint`). A network with endpoints cannot be deleted.
- ``ledger``: every kernel object tsubo creates -- ``link`` (bridges, veths), ``netns``
  (pins under /run/netns), ``nft-chain`` -- recorded *before* it is created and forgotten
  after it is removed, so gc (and the next command after a crash) removes exactly what is
  ours, never by name pattern alone. A recorded object may not exist (the crash came
  between record and create): removing it is then a no-op. A published host port is a
  ``port`` entry: the claim that makes two containers asking for one port at once end with
  exactly one winner (:meth:`NetworkStore.claim_ports`, one ``BEGIN IMMEDIATE``).

``network`` sits below ``engine`` in the layers, so this module does not import
``tsubo.state.db``: it takes any object with ``connection`` and ``transaction()`` (a
:class:`tsubo.state.db.Database`). Rules are the database's: one store per process and
thread, read-modify-write inside :meth:`NetworkStore.transaction` (``BEGIN IMMEDIATE``),
never across kernel work.
"""

from __future__ import annotations

import sqlite3

from tsubo import jsonwire
from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from tsubo.network.models import NETWORK_FIELDS, Endpoint, Network
from tsubo.state.clock import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import Any, Protocol

    class DatabaseLike(Protocol):
        """What the store needs of :class:`tsubo.state.db.Database`."""

        @property
        def connection(self) -> sqlite3.Connection: ...

        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


#: What the ledger records (``link``: bridges and veths; ``netns``: pins under /run/netns;
#: ``nft-chain``: a container's published ports in the ``inet tsubo`` table (named
#: ``ct-ID12``; once the container's own chain, now its elements of the port maps);
#: ``port``: a host port a container publishes, named ``PROTO/HOSTPORT/HOSTIP/CPORT``, see
#: :meth:`NetworkStore.claim_ports`).
LEDGER_KINDS = ("link", "netns", "nft-chain", "port")
PORT_KIND = "port"
#: The holder of the gateway's lease.
GATEWAY_HOLDER = ""

_NETWORK_SELECT = f"SELECT {', '.join(NETWORK_FIELDS)} FROM networks"
_ENDPOINT_SELECT = ("SELECT container_id, network_id, ifname, host_ifname, mac, address, "
                    "prefix_len, address6, prefix_len6 FROM endpoints")
_HEX_DIGITS = frozenset("0123456789abcdef")
_SHORT = 12


def lease_key(address: str) -> int | str:
    """The ``leases.address`` of an address: the integer of an IPv4 address, ``6/`` + 32
    hex digits for an IPv6 one."""
    from tsubo.network.addresses import ip6_to_int, ip_to_int

    return lease_key6(ip6_to_int(address)) if ":" in address else ip_to_int(address)


def lease_key6(value: int) -> str:
    """The lease key of the IPv6 address whose value is *value*."""
    return f"6/{value:032x}"


def lease_address(key: int | str) -> str:
    """The inverse of :func:`lease_key`."""
    from tsubo.network.addresses import int_to_ip, int_to_ip6

    return int_to_ip6(int(key[2:], 16)) if isinstance(key, str) else int_to_ip(key)


class LedgerEntry:
    """One row of the ledger: a kernel object tsubo created (or is about to)."""

    __slots__ = ("created_at", "kind", "name", "owner")

    def __init__(self, kind: str, name: str, owner: str, created_at: str) -> None:
        self.kind = kind
        self.name = name
        self.owner = owner
        self.created_at = created_at

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LedgerEntry) and (
            (self.kind, self.name, self.owner, self.created_at)
            == (other.kind, other.name, other.owner, other.created_at))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<LedgerEntry {self.kind} {self.name!r} owner={self.owner[:_SHORT]}>"


class NetworkStore:
    """Typed access to the networking tables of one open database."""

    __slots__ = ("_db",)

    def __init__(self, db: DatabaseLike) -> None:
        self._db = db

    @property
    def _connection(self) -> sqlite3.Connection:
        return self._db.connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """The database's ``BEGIN IMMEDIATE`` transaction (nested blocks join it)."""
        return self._db.transaction()

    # --- networks -------------------------------------------------------------------------

    def insert_network(self, network: Network) -> None:
        """Record a new network and the gateway's lease. AlreadyExists when its name,
        bridge name, subnet or ID is taken (naming the network that has it);
        InvalidArgument when its subnet overlaps another network's."""
        from tsubo.network.addresses import bounds

        first, last = bounds(network.subnet)
        with self.transaction() as connection:
            execute = connection.execute
            holder = execute("SELECT name FROM networks WHERE name = ?",
                             (network.name,)).fetchone()
            if holder is not None:
                raise AlreadyExists("create network", network.name,
                                    detail=f'a network named "{network.name}" exists')
            holder = execute("SELECT name FROM networks WHERE bridge_name = ?",
                             (network.bridge_name,)).fetchone()
            if holder is not None:
                raise AlreadyExists("create network", network.name,
                                    detail=f"bridge {network.bridge_name} is already the "
                                    f"bridge of network {holder[0]}",
                                    hint="pick another --bridge-name")
            others = execute("SELECT name, subnet, subnet6 FROM networks ORDER BY name"
                             ).fetchall()
            _check_overlaps(network.name, network.subnet, (first, last),
                            [(name, subnet) for name, subnet, _ in others])
            if network.subnet6:
                _check_overlaps(network.name, network.subnet6, bounds(network.subnet6),
                                [(name, subnet6) for name, _, subnet6 in others if subnet6])
            try:
                execute(f"INSERT INTO networks ({', '.join(NETWORK_FIELDS)}) "
                        f"VALUES ({', '.join('?' * len(NETWORK_FIELDS))})",
                        _network_params(network))
            except sqlite3.IntegrityError:
                raise AlreadyExists("create network", network.name,
                                    detail=f"a network with id {network.short_id} exists"
                                    ) from None
            execute("INSERT INTO leases (network_id, address, container_id) VALUES (?, ?, ?)",
                    (network.id, lease_key(network.gateway), GATEWAY_HOLDER))
            if network.gateway6:
                execute("INSERT INTO leases (network_id, address, container_id) "
                        "VALUES (?, ?, ?)", (network.id, lease_key(network.gateway6),
                                             GATEWAY_HOLDER))


    def get_network(self, ref: str) -> Network:
        """The network *ref* names, by Docker's rules: the full ID, else the exact name,
        else a unique ID prefix; NotFound (InvalidArgument if a prefix is ambiguous)."""
        if not ref:
            raise InvalidArgument("find network", '""', detail="empty network name or id")
        execute = self._connection.execute
        found = execute(f"{_NETWORK_SELECT} WHERE id = ?", (ref,)).fetchone()
        if found is None:
            found = execute(f"{_NETWORK_SELECT} WHERE name = ?", (ref,)).fetchone()
        if found is not None:
            return _network_from_row(found)
        if _HEX_DIGITS.issuperset(ref):
            # IDs are lower-case hex and every hex digit sorts before "g": an index range.
            matches = execute(f"{_NETWORK_SELECT} WHERE id >= ? AND id < ? LIMIT 2",
                              (ref, ref + "g")).fetchall()
            if len(matches) == 1:
                return _network_from_row(matches[0])
            if matches:
                raise InvalidArgument("find network", ref,
                                      detail=f"multiple networks match prefix {ref}",
                                      hint="give more characters of the id, or the name")
        raise NotFound("find network", ref, detail="no such network")

    def list_networks(self) -> list[Network]:
        """All networks, by name."""
        rows = self._connection.execute(f"{_NETWORK_SELECT} ORDER BY name").fetchall()
        return [_network_from_row(row) for row in rows]

    def delete_network(self, ref: str) -> Network:
        """Forget a network (its leases go with it) and return it; NotFound if there is
        none, WrongState while containers are attached (naming them). Removing its bridge
        is the caller's work, after this succeeds."""
        with self.transaction() as connection:
            network = self.get_network(ref)
            users = connection.execute(
                "SELECT e.container_id, c.name FROM endpoints AS e "
                "LEFT JOIN containers AS c ON c.id = e.container_id "
                "WHERE e.network_id = ? ORDER BY c.name, e.container_id",
                (network.id,)).fetchall()
            if users:
                listed = ", ".join(f"{name} ({cid[:_SHORT]})" if name else cid[:_SHORT]
                                   for cid, name in users)
                raise WrongState("remove network", network.name,
                                 detail=f"network has active endpoints: container(s) {listed}",
                                 hint="disconnect or remove those containers first")
            connection.execute("DELETE FROM networks WHERE id = ?", (network.id,))
        return network

    # --- leases (used by tsubo.network.ipam, inside its transactions) ----------------------

    def allocation_hint(self, network_id: str) -> int:
        """The network's ``alloc_hint``: every allocation-range address below it is leased."""
        found = self._connection.execute("SELECT alloc_hint FROM networks WHERE id = ?",
                                         (network_id,)).fetchone()
        if found is None:
            raise NotFound("allocate address", network_id, detail="no such network")
        return int(found[0])

    def set_allocation_hint(self, network_id: str, value: int) -> None:
        self._connection.execute("UPDATE networks SET alloc_hint = ? WHERE id = ?",
                                 (value, network_id))

    def allocation_hint6(self, network_id: str) -> str:
        """The network's IPv6 hint: a lease key below which the range is all leased
        (``""``: none yet)."""
        found = self._connection.execute("SELECT alloc_hint6 FROM networks WHERE id = ?",
                                         (network_id,)).fetchone()
        if found is None:
            raise NotFound("allocate address", network_id, detail="no such network")
        return str(found[0])

    def set_allocation_hint6(self, network_id: str, key: str) -> None:
        self._connection.execute("UPDATE networks SET alloc_hint6 = ? WHERE id = ?",
                                 (key, network_id))

    def lease_holder(self, network_id: str, address: int | str) -> str | None:
        """The container holding *address* (``""`` for the gateway), None if it is free."""
        found = self._connection.execute(
            "SELECT container_id FROM leases WHERE network_id = ? AND address = ?",
            (network_id, address)).fetchone()
        return None if found is None else str(found[0])

    def first_free_address(self, network_id: str, low: int, high: int) -> int | None:
        """The lowest unleased address in [low, high], or None.

        If *low* is leased, the answer is one above the first lease (from *low* up) whose
        successor is free: SQLite walks the primary-key index from *low* in address order
        and stops there (``ORDER BY`` matches the index, ``LIMIT 1``), one probe per leased
        address passed -- no Python loop, no full scan.
        """
        if low > high:
            return None
        if self.lease_holder(network_id, low) is None:
            return low
        found = self._connection.execute(
            "SELECT l.address + 1 FROM leases AS l "
            "WHERE l.network_id = ?1 AND l.address >= ?2 AND l.address < ?3 "
            "AND NOT EXISTS (SELECT 1 FROM leases AS m "
            "                WHERE m.network_id = ?1 AND m.address = l.address + 1) "
            "ORDER BY l.address LIMIT 1", (network_id, low, high)).fetchone()
        return None if found is None else int(found[0])

    def lease_count(self, network_id: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
        """How many addresses in [low, high] of the network containers hold (the gateway's
        lease not counted)."""
        (count,) = self._connection.execute(
            "SELECT count(*) FROM leases WHERE network_id = ? AND address BETWEEN ? AND ? "
            "AND container_id != ?", (network_id, low, high, GATEWAY_HOLDER)).fetchone()
        return int(count)

    def add_lease(self, network_id: str, address: int | str, container_id: str) -> None:
        """Lease *address*; AlreadyExists if it is taken, NotFound if the network is gone."""
        try:
            self._connection.execute(
                "INSERT INTO leases (network_id, address, container_id) VALUES (?, ?, ?)",
                (network_id, address, container_id))
        except sqlite3.IntegrityError as error:
            if "FOREIGN KEY" in str(error):
                raise NotFound("allocate address", lease_address(address),
                               detail=f"network {network_id[:_SHORT]} was removed") from None
            raise AlreadyExists("allocate address", lease_address(address),
                                detail="address is already leased") from None

    def remove_lease(self, network_id: str, address: int | str) -> bool:
        """Give a container's lease back (the gateway's is kept); False if there was none."""
        with self.transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM leases WHERE network_id = ? AND address = ? AND container_id != ?",
                (network_id, address, GATEWAY_HOLDER))
            if cursor.rowcount == 0:
                return False
            hint = "alloc_hint6" if isinstance(address, str) else "alloc_hint"
            connection.execute(f"UPDATE networks SET {hint} = min({hint}, ?) WHERE id = ?",
                               (address, network_id))
        return True

    def leases(self, network_id: str) -> list[tuple[str, str]]:
        """``(address, container_id)`` of a network's leases, IPv4 then IPv6, by address
        (the gateway's holder is ``""``)."""
        rows = self._connection.execute(
            "SELECT address, container_id FROM leases WHERE network_id = ? ORDER BY address",
            (network_id,)).fetchall()
        return [(lease_address(row[0]), row[1]) for row in rows]

    def container_leases(self, container_id: str) -> list[tuple[str, str]]:
        """``(network_id, address)`` of every lease *container_id* holds."""
        if not container_id:
            raise ValueError("container_leases: empty container id")
        rows = self._connection.execute(
            "SELECT network_id, address FROM leases WHERE container_id = ? "
            "ORDER BY network_id, address", (container_id,)).fetchall()
        return [(row[0], lease_address(row[1])) for row in rows]

    # --- endpoints ------------------------------------------------------------------------

    def insert_endpoint(self, endpoint: Endpoint) -> None:
        """Record an attachment; AlreadyExists if the container is already on the network
        or the interface names are taken, NotFound if the network is gone."""
        try:
            self._connection.execute(
                "INSERT INTO endpoints (container_id, network_id, ifname, host_ifname, mac, "
                "address, prefix_len, address6, prefix_len6) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint.container_id, endpoint.network_id, endpoint.ifname,
                 endpoint.host_ifname, endpoint.mac, endpoint.address, endpoint.prefix_len,
                 endpoint.address6, endpoint.prefix_len6))
        except sqlite3.IntegrityError as error:
            message = str(error)
            short = endpoint.container_id[:_SHORT]
            if "FOREIGN KEY" in message:
                raise NotFound("connect container", short,
                               detail=f"no network {endpoint.network_id[:_SHORT]}") from None
            if "host_ifname" in message:
                detail = f"host interface {endpoint.host_ifname} is taken by another endpoint"
            elif "ifname" in message:
                detail = f"the container already has an interface {endpoint.ifname}"
            else:
                detail = (f"the container is already connected to network "
                          f"{endpoint.network_id[:_SHORT]}")
            raise AlreadyExists("connect container", short, detail=detail) from None

    def get_endpoint(self, container_id: str, network_id: str) -> Endpoint | None:
        found = self._connection.execute(
            f"{_ENDPOINT_SELECT} WHERE container_id = ? AND network_id = ?",
            (container_id, network_id)).fetchone()
        return None if found is None else Endpoint(*found)

    def network_endpoints(self, network_id: str) -> list[Endpoint]:
        """A network's endpoints, in the order they were attached."""
        rows = self._connection.execute(
            f"{_ENDPOINT_SELECT} WHERE network_id = ? ORDER BY rowid", (network_id,)).fetchall()
        return [Endpoint(*row) for row in rows]

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        """A container's endpoints, in the order they were attached (eth0 first)."""
        rows = self._connection.execute(
            f"{_ENDPOINT_SELECT} WHERE container_id = ? ORDER BY rowid",
            (container_id,)).fetchall()
        return [Endpoint(*row) for row in rows]

    def delete_endpoint(self, container_id: str, network_id: str) -> Endpoint | None:
        """Forget one attachment and give back the container's lease(s) on that network,
        in one transaction; the endpoint removed, or None if there was none."""
        with self.transaction():
            endpoint = self.get_endpoint(container_id, network_id)
            self._connection.execute(
                "DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                (container_id, network_id))
            self._release_leases(container_id, network_id)
        return endpoint

    def forget_container(self, container_id: str) -> list[Endpoint]:
        """Forget all endpoints and leases of a container (``rm``; gc of a container whose
        attach was cut short holds leases without endpoints); the endpoints removed."""
        if not container_id:
            raise ValueError("forget_container: empty container id")
        with self.transaction() as connection:
            endpoints = self.container_endpoints(container_id)
            connection.execute("DELETE FROM endpoints WHERE container_id = ?", (container_id,))
            self._release_leases(container_id, None)
        return endpoints

    def _release_leases(self, container_id: str, network_id: str | None) -> None:
        """Delete *container_id*'s leases (on one network, or all) and lower the hints."""
        query = "SELECT network_id, address FROM leases WHERE container_id = ?"
        params: tuple[str, ...] = (container_id,)
        if network_id is not None:
            query += " AND network_id = ?"
            params = (container_id, network_id)
        for lease_network, address in self._connection.execute(query, params).fetchall():
            self.remove_lease(lease_network, address)

    # --- the ledger -----------------------------------------------------------------------

    def record(self, kind: str, name: str, owner: str) -> None:
        """Record that tsubo is about to create *kind* *name* for *owner* (a container or
        network ID). Commit this before creating the object. Recording again for the same
        owner is a no-op (a retried step); for another owner it is AlreadyExists."""
        _check_kind(kind)
        with self.transaction() as connection:
            found = connection.execute("SELECT owner FROM ledger WHERE kind = ? AND name = ?",
                                       (kind, name)).fetchone()
            if found is not None:
                if found[0] == owner:
                    return
                raise AlreadyExists(f"record {kind}", name,
                                    detail=f"already recorded for {found[0][:_SHORT]}")
            connection.execute(
                "INSERT INTO ledger (kind, name, owner, created_at) VALUES (?, ?, ?, ?)",
                (kind, name, owner, now_rfc3339()))

    def forget(self, kind: str, name: str) -> bool:
        """Drop the record of *kind* *name* (after the object is removed); False if there
        was none."""
        _check_kind(kind)
        cursor = self._connection.execute("DELETE FROM ledger WHERE kind = ? AND name = ?",
                                          (kind, name))
        return cursor.rowcount > 0

    def ledger_entries(self, kind: str | None = None, owner: str | None = None,
                       ) -> list[LedgerEntry]:
        """Recorded objects, oldest first; of one *kind* and/or *owner* if given."""
        clauses: list[str] = []
        params: list[str] = []
        if kind is not None:
            _check_kind(kind)
            clauses.append("kind = ?")
            params.append(kind)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._connection.execute(
            f"SELECT kind, name, owner, created_at FROM ledger{where} "
            "ORDER BY created_at, kind, name", params).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def claim_ports(self, owner: str, choose: Callable[[Callable[[str, str, int],
                                                                str | None]], list[str]],
                    ) -> list[str]:
        """Record the host ports *owner* publishes, in one ``BEGIN IMMEDIATE`` transaction
        with the look-up of the ports others hold: CHOOSE gets :meth:`port_holder` and
        returns the ledger names to record (``network/ports.py``). Of two
        concurrent claims on one port, the second sees the first's. What CHOOSE raises
        leaves nothing recorded. Returns the names recorded."""
        with self.transaction() as connection:
            names = choose(self.port_holder)
            now = now_rfc3339()
            connection.executemany(
                "INSERT INTO ledger (kind, name, owner, created_at) VALUES (?, ?, ?, ?)",
                [(PORT_KIND, name, owner, now) for name in names])
        return names

    def port_holder(self, protocol: str, ip: str, port: int) -> str | None:
        """The owner of a claim on PROTOCOL PORT that overlaps IP (the same address, or
        either is a wildcard), else None: one range scan of the ledger's primary key
        (``PROTO/PORT/...``), whatever the number of claims."""
        from tsubo.network.ports import PublishedPort

        prefix = f"{protocol}/{port}/"
        for name, owner in self._connection.execute(
                "SELECT name, owner FROM ledger WHERE kind = ? AND name >= ? AND name < ?",
                (PORT_KIND, prefix, prefix[:-1] + "0")).fetchall():
            if PublishedPort.from_ledger_name(name).overlaps(protocol, ip, port):
                return str(owner)
        return None

    def published_ports(self, owner: str | None = None) -> dict[str, list[str]]:
        """The ``port`` claims (ledger names) by owner, of one *owner* if given."""
        query = "SELECT owner, name FROM ledger WHERE kind = ?"
        params: tuple[str, ...] = (PORT_KIND,)
        if owner is not None:
            query += " AND owner = ?"
            params = (PORT_KIND, owner)
        found: dict[str, list[str]] = {}
        for holder, name in self._connection.execute(query, params).fetchall():
            found.setdefault(str(holder), []).append(str(name))
        return found

    def resolve_name(self, network_id: str, name: str, *, ipv6: bool = False) -> str | None:
        """The address, on *network_id*, of the container called *name* (in any case, as
        DNS names go): its name, its 12-digit short ID, one of its ``--network-alias``es,
        its ``--hostname`` (also with its ``--domainname``); a container's own name first.
        None when no container of that network has it. IPV6: its IPv6 address instead
        (``""`` when the name is known but has none)."""
        row = self._connection.execute(
            f"SELECT e.{'address6' if ipv6 else 'address'} FROM endpoints e "
            "JOIN containers c ON c.id = e.container_id "
            f"WHERE e.network_id = ? AND ({_NAMED_SQL}) "
            "ORDER BY c.name = ? COLLATE NOCASE DESC LIMIT 1",
            (network_id, *_named_params(name), name)).fetchone()
        return str(row[0]) if row else None

    def upstreams_of(self, network_id: str, address: str) -> list[str]:
        """The ``--dns`` servers of the container at *address* on *network_id* (empty: the
        engine's upstreams)."""
        row = self._connection.execute(
            "SELECT json_extract(c.options, '$.dns') FROM endpoints e "
            "JOIN containers c ON c.id = e.container_id "
            "WHERE e.network_id = ? AND e.address = ?", (network_id, address)).fetchone()
        if not row or not row[0]:
            return []
        servers = jsonwire.loads(row[0], "", operation="load run options")
        return [str(server) for server in servers] if isinstance(servers, list) else []

    def container_name_taken(self, name: str) -> bool:
        """Whether any container of this engine (on any network, or none; in any state) is
        called *name* (in any case) or has it as its 12-digit short ID: the names the
        network resolvers never relay upstream."""
        row = self._connection.execute(
            f"SELECT 1 FROM containers c WHERE {_NAMED_SQL} LIMIT 1",
            _named_params(name)).fetchone()
        return row is not None


#: a container ``c`` answers to a name ``?``: see :meth:`NetworkStore.resolve_name`
_NAMED_SQL = (
    "c.name = ? COLLATE NOCASE OR substr(c.id, 1, 12) = ? "
    "OR json_extract(c.options, '$.hostname') = ? COLLATE NOCASE "
    "OR json_extract(c.options, '$.hostname') || '.' || json_extract(c.options, "
    "'$.domainname') = ? COLLATE NOCASE "
    "OR EXISTS (SELECT 1 FROM json_each(c.options, '$.network_aliases') a "
    "WHERE a.value = ? COLLATE NOCASE)")


def _named_params(name: str) -> tuple[str, ...]:
    return name, name.lower(), name, name, name


def _check_kind(kind: str) -> None:
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r} (one of {', '.join(LEDGER_KINDS)})")


def _network_params(network: Network) -> tuple[Any, ...]:
    values = network.to_json()
    values["internal"] = int(bool(network.internal))
    values["ipv6"] = int(bool(network.ipv6))
    values["labels"] = jsonwire.dumps(dict(network.labels))
    return tuple(values[name] for name in NETWORK_FIELDS)


def _network_from_row(row: tuple[Any, ...]) -> Network:
    fields = dict(zip(NETWORK_FIELDS, row, strict=True))
    labels = jsonwire.loads(fields["labels"] or "{}")
    return Network(fields["id"], fields["name"], fields["subnet"], fields["gateway"],
                   fields["bridge_name"], driver=fields["driver"],
                   ip_range=fields["ip_range"], internal=bool(fields["internal"]),
                   mtu=int(fields["mtu"]), labels=labels if isinstance(labels, dict) else {},
                   created_at=fields["created_at"], ipv6=bool(fields["ipv6"]),
                   subnet6=fields["subnet6"], gateway6=fields["gateway6"])


def _check_overlaps(name: str, subnet: str, span: tuple[int, int],
                    others: list[tuple[str, str]]) -> None:
    """AlreadyExists when another network has SUBNET, InvalidArgument when one overlaps
    it (IPv4 and IPv6 subnets are never compared with each other)."""
    from tsubo.network.addresses import bounds

    first, last = span
    for other_name, other_subnet in others:
        if (":" in other_subnet) != (":" in subnet):
            continue
        if other_subnet == subnet:
            raise AlreadyExists("create network", name,
                                detail=f"subnet {subnet} is already the subnet of network "
                                f"{other_name}", hint="pick another --subnet")
        other_first, other_last = bounds(other_subnet)
        if first <= other_last and other_first <= last:
            raise InvalidArgument("create network", name,
                                  detail=f"subnet {subnet} overlaps subnet {other_subnet} of "
                                  f"network {other_name}", hint="pick another --subnet")
