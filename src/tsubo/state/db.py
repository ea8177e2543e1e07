"""The state store: one SQLite database of containers, volumes, networks and images.

Owns the schema (versioned with ``PRAGMA user_version``; migrations run in order inside
``BEGIN IMMEDIATE``, so two engines starting at once never both migrate), container IDs
and names (Docker's rules for generating and resolving them; the rules for what a name
may be are :mod:`tsubo.state.names`, and no row is stored or looked up by a name that
breaks them), and the encoding of rows. Nothing else opens the database file.

Concurrency: tsubo has no daemon, so several engine processes (a CLI, monitors) share
the file. It is in WAL mode (readers never block the writer), every connection waits up
to 5 s for a lock (``busy_timeout``), and read-modify-write sequences run in
:meth:`Database.transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``)
instead of upgrading a read lock, the upgrade being what deadlocks two writers. A
transaction must never be held across kernel work (mounts, spawning, netlink): other
engines would wait on it, and a crash half-way would leave the kernel and the database
disagreeing. Read or reserve in one transaction, do the work, record the result in another.

Each :class:`Database` is one connection: open it in the process (and thread) that uses
it; never carry one across ``fork``.
"""

from __future__ import annotations

import os
import sqlite3
import time

from tsubo import jsonwire
from tsubo.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from tsubo.state import statuses
from tsubo.state.clock import now_rfc3339
from tsubo.state.names import ID_LENGTH, bare_name, container_name, volume_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

STATES = statuses.ALL
ACTIVE_STATES = statuses.ACTIVE

#: Migration N (1-based) brings the schema from user_version N-1 to N. Each is a tuple of
#: single statements: ``executescript`` would COMMIT the migration transaction first.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,                 -- 64 hex digits
            name TEXT UNIQUE NOT NULL,           -- without Docker's leading "/"
            created_at TEXT NOT NULL,            -- RFC 3339, UTC, nanoseconds
            options TEXT NOT NULL,               -- JSON of the RunOptions
            image TEXT NOT NULL DEFAULT '',
            rootfs TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL,                 -- one of STATES
            pid INTEGER NOT NULL DEFAULT 0,
            monitor_pid INTEGER NOT NULL DEFAULT 0,
            monitor_start_time INTEGER NOT NULL DEFAULT 0,  -- /proc/PID/stat field 22
            exit_code INTEGER,
            started_at TEXT,
            finished_at TEXT,
            oom_killed INTEGER NOT NULL DEFAULT 0,
            restart_count INTEGER NOT NULL DEFAULT 0,
            stopped_by_user INTEGER NOT NULL DEFAULT 0,
            labels TEXT NOT NULL DEFAULT '{}'    -- JSON object
        )""",
        "CREATE INDEX containers_by_created_at ON containers (created_at)",
        """CREATE TABLE volumes (
            name TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            driver TEXT NOT NULL DEFAULT 'local',
            labels TEXT NOT NULL DEFAULT '{}',
            anonymous INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE container_volumes (
            container_id TEXT NOT NULL REFERENCES containers (id) ON DELETE CASCADE,
            volume TEXT NOT NULL REFERENCES volumes (name),
            destination TEXT NOT NULL,
            PRIMARY KEY (container_id, destination)
        )""",
        # volume_users() and the foreign key check on deleting a volume look up by volume.
        "CREATE INDEX container_volumes_by_volume ON container_volumes (volume)",
    ),
    # 2: networking (tsubo.network.store owns these tables and documents them).
    (
        """CREATE TABLE networks (
            id TEXT PRIMARY KEY,                 -- 64 hex digits
            name TEXT UNIQUE NOT NULL,
            driver TEXT NOT NULL DEFAULT 'bridge',
            subnet TEXT NOT NULL,                -- IPv4 CIDR without host bits
            gateway TEXT NOT NULL,               -- dotted quad, the bridge's address
            ip_range TEXT NOT NULL DEFAULT '',   -- CIDR inside subnet; '' = the whole subnet
            internal INTEGER NOT NULL DEFAULT 0,
            mtu INTEGER NOT NULL DEFAULT 0,      -- 0 = the uplink route's
            bridge_name TEXT UNIQUE NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',   -- JSON object
            created_at TEXT NOT NULL,            -- RFC 3339, UTC, nanoseconds
            alloc_hint INTEGER NOT NULL DEFAULT 0  -- IPAM: allocation range below is all leased
        )""",
        """CREATE TABLE leases (
            network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
            address INTEGER NOT NULL,            -- IPv4 as an integer: SQL can find gaps
            container_id TEXT NOT NULL,          -- '' for the gateway's own lease
            PRIMARY KEY (network_id, address)
        ) WITHOUT ROWID""",
        "CREATE INDEX leases_by_container ON leases (container_id)",
        """CREATE TABLE endpoints (
            container_id TEXT NOT NULL,
            network_id TEXT NOT NULL REFERENCES networks (id),
            ifname TEXT NOT NULL,                -- inside the container: eth0, eth1, ...
            host_ifname TEXT UNIQUE NOT NULL,    -- host end of the veth pair
            mac TEXT NOT NULL,
            address TEXT NOT NULL,               -- dotted quad
            prefix_len INTEGER NOT NULL,
            PRIMARY KEY (container_id, network_id),
            UNIQUE (container_id, ifname)
        )""",
        "CREATE INDEX endpoints_by_network ON endpoints (network_id)",
        """CREATE TABLE ledger (
            kind TEXT NOT NULL,                  -- 'link', 'netns', 'nft-chain'
            name TEXT NOT NULL,
            owner TEXT NOT NULL,                 -- the container or network ID it belongs to
            created_at TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        "CREATE INDEX ledger_by_owner ON ledger (owner)",
    ),
    (
        """CREATE TABLE images (
            id TEXT PRIMARY KEY,                 -- sha256 hex of the image config
            config TEXT NOT NULL,                -- the OCI image config (JSON)
            layers TEXT NOT NULL,                -- JSON list of diff_ids, bottom first
            size INTEGER NOT NULL,               -- uncompressed bytes of all layers
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE image_tags (
            name TEXT PRIMARY KEY,               -- normalised: docker.io/library/busybox:latest
            image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE
        )""",
    ),
    (
        # Where each unpacked layer came from, so `save`/`push` send the very blob that
        # was pulled or imported, and `system df` counts each layer once.
        """CREATE TABLE layers (
            diff_id TEXT PRIMARY KEY,            -- sha256:<hex> of the uncompressed tar
            blob TEXT NOT NULL,                  -- sha256:<hex> of the stored (compressed) blob
            media_type TEXT NOT NULL,            -- the blob's layer media type
            blob_size INTEGER NOT NULL,
            size INTEGER NOT NULL                -- uncompressed bytes
        ) WITHOUT ROWID""",
        # The manifest an image was pulled by, per repository: `docker images --digests`.
        """CREATE TABLE image_digests (
            name TEXT NOT NULL,                  -- repository: docker.io/library/busybox
            digest TEXT NOT NULL,                -- sha256:<hex> of the manifest
            image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            PRIMARY KEY (name, digest)
        )""",
    ),
    (
        # The blobs each name came with (one image pulled under two names may have come as
        # gzip under one and zstd under the other): `push` and `save` send a name's own.
        """CREATE TABLE tag_blobs (
            name TEXT PRIMARY KEY,               -- as image_tags.name
            source TEXT NOT NULL,                -- registry/repository pulled from, or ''
            blobs TEXT NOT NULL                  -- JSON [[digest, media type, size], ...]
        ) WITHOUT ROWID""",
    ),
    (
        # Docker's State.Error: why a container ended the way it did when its exit status
        # is not the whole story (its monitor died while starting it, or it exited while
        # no monitor watched it and its exit status is unknown).
        "ALTER TABLE containers ADD COLUMN error TEXT NOT NULL DEFAULT ''",
    ),
    (
        # Dual-stack networks (``network create --ipv6``). IPv6 leases share ``leases``:
        # their address is TEXT, ``6/`` + 32 hex digits (never read as an integer; sorts
        # by value), see tsubo.network.store.
        "ALTER TABLE networks ADD COLUMN ipv6 INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE networks ADD COLUMN subnet6 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE networks ADD COLUMN gateway6 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE networks ADD COLUMN alloc_hint6 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE endpoints ADD COLUMN address6 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE endpoints ADD COLUMN prefix_len6 INTEGER NOT NULL DEFAULT 0",
    ),
)

CONTAINER_COLUMNS = (
    "id", "name", "created_at", "options", "image", "rootfs", "state", "pid", "monitor_pid",
    "monitor_start_time", "exit_code", "started_at", "finished_at", "oom_killed",
    "restart_count", "stopped_by_user", "labels", "error",
)
_CONTAINER_SELECT = f"SELECT {', '.join(CONTAINER_COLUMNS)} FROM containers"
_UPDATABLE_COLUMNS = frozenset(CONTAINER_COLUMNS) - {"id"}
_JSON_COLUMNS = frozenset(("options", "labels"))
_BOOL_COLUMNS = frozenset(("oom_killed", "stopped_by_user"))

VOLUME_COLUMNS = ("name", "created_at", "driver", "labels", "anonymous")
_VOLUME_SELECT = f"SELECT {', '.join(VOLUME_COLUMNS)} FROM volumes"

_BUSY_TIMEOUT_MS = 5000
SHORT_ID_LENGTH = 12
_HEX_DIGITS = frozenset("0123456789abcdef")


class ContainerRow:
    """One row of ``containers``, as stored: ``options`` and ``labels`` are JSON text (the
    owners of RunOptions and labels decode them), ``oom_killed`` / ``stopped_by_user`` are
    0 or 1, times RFC 3339 text."""

    __slots__ = CONTAINER_COLUMNS

    def __init__(
        self,
        id: str,
        name: str,
        created_at: str,
        options: str,
        image: str = "",
        rootfs: str = "",
        state: str = "created",
        pid: int = 0,
        monitor_pid: int = 0,
        monitor_start_time: int = 0,
        exit_code: int | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
        oom_killed: int = 0,
        restart_count: int = 0,
        stopped_by_user: int = 0,
        labels: str = "{}",
        error: str = "",
    ) -> None:
        self.id = id
        self.name = name
        self.created_at = created_at
        self.options = options
        self.image = image
        self.rootfs = rootfs
        self.state = state
        self.pid = pid
        self.monitor_pid = monitor_pid
        self.monitor_start_time = monitor_start_time
        self.exit_code = exit_code
        self.started_at = started_at
        self.finished_at = finished_at
        self.oom_killed = oom_killed
        self.restart_count = restart_count
        self.stopped_by_user = stopped_by_user
        self.labels = labels
        self.error = error

    @classmethod
    def new(cls, container_id: str, name: str, options: str | dict[str, Any],
            rootfs: str = "", *, image: str = "", labels: str | dict[str, str] = "{}",
            state: str = "created", monitor_pid: int = 0,
            monitor_start_time: int = 0) -> ContainerRow:
        """A row for a container being created now (``created_at`` = :func:`now_rfc3339`);
        *options* and *labels* as JSON text, or as dicts to be encoded. A container that
        ``run`` creates inside the monitor is born "starting", owned by that monitor, so a
        monitor killed half-way leaves a row the next one recognises as a failed start."""
        return cls(container_id, name, now_rfc3339(), _json_text(options), image=image,
                   rootfs=rootfs, state=state, monitor_pid=monitor_pid,
                   monitor_start_time=monitor_start_time, labels=_json_text(labels))

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> ContainerRow:
        """The row selected as :data:`CONTAINER_COLUMNS`, in that order."""
        return cls(*tuple(row))

    def to_params(self) -> tuple[Any, ...]:
        """The column values to store, in :data:`CONTAINER_COLUMNS` order."""
        return tuple(_encode_column(column, getattr(self, column))
                     for column in CONTAINER_COLUMNS)

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID_LENGTH]

    def __repr__(self) -> str:
        return f"<ContainerRow {self.short_id} {self.name!r} {self.state}>"


class VolumeRow:
    """One row of ``volumes``, as stored (``labels`` JSON text, ``anonymous`` 0 or 1)."""

    __slots__ = VOLUME_COLUMNS

    def __init__(self, name: str, created_at: str, driver: str = "local",
                 labels: str = "{}", anonymous: int = 0) -> None:
        self.name = name
        self.created_at = created_at
        self.driver = driver
        self.labels = labels
        self.anonymous = anonymous

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> VolumeRow:
        return cls(*tuple(row))

    def __repr__(self) -> str:
        return f"<VolumeRow {self.name!r}>"


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises.

    Entered while a transaction is already open on the connection, it joins that one
    (commits nothing, rolls back nothing): the outermost block decides.
    """

    __slots__ = ("_connection", "_outermost")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._outermost = False

    def __enter__(self) -> sqlite3.Connection:
        if not self._connection.in_transaction:
            self._connection.execute("BEGIN IMMEDIATE")
            self._outermost = True
        return self._connection

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self._outermost:
            return
        if kind is None:
            self._connection.execute("COMMIT")
        elif self._connection.in_transaction:  # SQLite may have rolled back on its own
            self._connection.execute("ROLLBACK")


class Database:
    """The engine's SQLite database at *path*, opened and migrated to the latest schema."""

    __slots__ = ("_connection", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        # Create the file ourselves so it is 0600 from the start (SQLite would use 0644);
        # SQLite gives the -wal and -shm files the main file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._connection = sqlite3.connect(path, isolation_level=None)
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._connection.close()
            raise

    def _configure(self) -> None:
        execute = self._connection.execute
        execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")  # before anything that locks
        # Setting the journal mode writes the file header, so only when it is needed: WAL
        # mode is persistent, and after the first open this is a plain read.
        self._enable_wal()
        # NORMAL is durable against process crashes in WAL mode; only a power cut can lose
        # the last transactions, and it saves an fsync per commit.
        execute("PRAGMA synchronous = NORMAL")
        execute("PRAGMA foreign_keys = ON")  # per connection, and a no-op inside a transaction

    def _enable_wal(self) -> None:
        """Switch a new database to WAL mode. Engines opening a fresh file at once race
        here, and SQLite answers the switch with "database is locked" at once, without
        the busy handler, when another connection holds a lock: so retry (for up to the
        busy timeout), reading the mode again as the other engine may have switched it."""
        execute = self._connection.execute
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            (mode,) = execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() == "wal":
                return
            try:
                execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _migrate(self) -> None:
        if self.schema_version() >= len(MIGRATIONS):
            return
        with self.transaction() as connection:
            version = self.schema_version()  # again, under the write lock: we may have lost
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    connection.execute(statement)
            # PRAGMA takes no parameters; the value is our own integer.
            connection.execute(f"PRAGMA user_version = {len(MIGRATIONS):d}")

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for the stores of other packages (``tsubo.network.store``)
        that keep their tables in this database. Same rules: this process and thread only,
        read-modify-write inside :meth:`transaction`."""
        return self._connection

    def schema_version(self) -> int:
        (version,) = self._connection.execute("PRAGMA user_version").fetchone()
        return int(version)

    def transaction(self) -> _Transaction:
        """``with db.transaction():`` runs the block in one ``BEGIN IMMEDIATE`` transaction.

        The write lock is taken at the start, so a read-modify-write (check a name, then
        insert) cannot interleave with another engine's. Keep the block short and never do
        kernel work inside it. Nested blocks join the outermost one.
        """
        return _Transaction(self._connection)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- containers -----------------------------------------------------------------------

    def insert_container(self, row: ContainerRow) -> None:
        """Store a new container; AlreadyExists when its name (or ID) is taken,
        InvalidArgument for a name not in its stored form (see names.container_name)."""
        _check_state(row.state)
        if container_name(row.name) != row.name:  # "/web" would be a second "web"
            raise InvalidArgument("create container", repr(row.name),
                                  detail='a stored name has no leading "/"')
        placeholders = ", ".join("?" * len(CONTAINER_COLUMNS))
        try:
            self._connection.execute(
                f"INSERT INTO containers ({', '.join(CONTAINER_COLUMNS)}) "
                f"VALUES ({placeholders})", row.to_params())
        except sqlite3.IntegrityError as error:
            if "containers.name" in str(error):
                holder = self._connection.execute(
                    "SELECT id FROM containers WHERE name = ?", (row.name,)).fetchone()
                owner = holder[0][:SHORT_ID_LENGTH] if holder else "(removed meanwhile)"
                raise AlreadyExists(
                    "create container", row.name,
                    detail=f'the name "{row.name}" is already in use by container {owner}',
                    hint="remove it or pick another --name") from None
            if "containers.id" in str(error):
                raise AlreadyExists("create container", row.id,
                                    detail="a container with this id exists") from None
            raise

    def get_container(self, container_id: str) -> ContainerRow:
        """The container with exactly this full ID; NotFound if there is none."""
        found = self._connection.execute(
            f"{_CONTAINER_SELECT} WHERE id = ?", (container_id,)).fetchone()
        if found is None:
            raise NotFound("find container", container_id, detail="no such container")
        return ContainerRow.from_row(found)

    def resolve_container(self, ref: str) -> ContainerRow:
        """The container *ref* names, by Docker's rules: the full ID, else the exact name
        (a leading "/" is accepted), else a unique ID prefix."""
        if not ref:
            raise InvalidArgument("find container", '""',
                                  detail="empty container name or id")
        execute = self._connection.execute
        if len(ref) == ID_LENGTH:
            found = execute(f"{_CONTAINER_SELECT} WHERE id = ?", (ref,)).fetchone()
            if found is not None:
                return ContainerRow.from_row(found)
        found = execute(f"{_CONTAINER_SELECT} WHERE name = ?", (bare_name(ref),)).fetchone()
        if found is not None:
            return ContainerRow.from_row(found)
        if _HEX_DIGITS.issuperset(ref):
            # Every ID is lower-case hex, and each hex digit sorts before "g": the IDs
            # starting with ref are exactly those in [ref, ref + "g"), an index range scan.
            matches = execute(f"{_CONTAINER_SELECT} WHERE id >= ? AND id < ? LIMIT 2",
                              (ref, ref + "g")).fetchall()
            if len(matches) == 1:
                return ContainerRow.from_row(matches[0])
            if matches:
                raise InvalidArgument(
                    "find container", ref,
                    detail=f"multiple containers match prefix {ref}",
                    hint="give more characters of the id, or the name")
        raise NotFound("find container", ref, detail="no such container")

    def list_containers(self, all_states: bool = False) -> list[ContainerRow]:
        """Containers, newest first; only running, paused and restarting ones unless
        *all_states* (like ``docker ps`` and ``docker ps --all``)."""
        query = _CONTAINER_SELECT
        params: tuple[str, ...] = ()
        if not all_states:
            query += f" WHERE state IN ({', '.join('?' * len(ACTIVE_STATES))})"
            params = ACTIVE_STATES
        # created_at is fixed-width UTC, so it sorts as text; rowid breaks ties.
        rows = self._connection.execute(
            f"{query} ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [ContainerRow.from_row(row) for row in rows]

    def update_container(self, container_id: str, **fields: Any) -> None:
        """Set the given columns of one container; ValueError for an unknown column or
        state, NotFound if there is no such container."""
        unknown = sorted(set(fields) - _UPDATABLE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown container column(s): {', '.join(unknown)}")
        if not fields:
            return
        if "state" in fields:
            _check_state(fields["state"])
        columns = list(fields)
        assignments = ", ".join(f"{column} = ?" for column in columns)
        params = [_encode_column(column, fields[column]) for column in columns]
        cursor = self._connection.execute(
            f"UPDATE containers SET {assignments} WHERE id = ?", (*params, container_id))
        if cursor.rowcount == 0:
            raise NotFound("update container", container_id, detail="no such container")

    def transition_container(self, container_id: str, from_states: tuple[str, ...],
                             **fields: Any) -> bool:
        """Set *fields* (a new ``state`` among them) only if the container is in one of
        *from_states*, in one statement: the compare-and-set that serialises commands
        racing on one container (``start`` against ``rm -f``: exactly one wins). False
        when it was in another state, or is gone."""
        unknown = sorted(set(fields) - _UPDATABLE_COLUMNS)
        if unknown or "state" not in fields:
            raise ValueError(f"a transition sets the state, and known columns: {unknown}")
        _check_state(fields["state"])
        for state in from_states:
            _check_state(state)
        columns = list(fields)
        assignments = ", ".join(f"{column} = ?" for column in columns)
        params = [_encode_column(column, fields[column]) for column in columns]
        marks = ", ".join("?" for _ in from_states)
        cursor = self._connection.execute(
            f"UPDATE containers SET {assignments} WHERE id = ? AND state IN ({marks})",
            (*params, container_id, *from_states))
        return bool(cursor.rowcount)

    def delete_container(self, container_id: str) -> bool:
        """Forget a container (and its volume links); False if it was already gone."""
        cursor = self._connection.execute("DELETE FROM containers WHERE id = ?",
                                          (container_id,))
        return cursor.rowcount > 0

    def rename_container(self, container_id: str, name: str) -> None:
        """Give a container another (checked, stored-form) name in one statement:
        AlreadyExists naming the holder when another container has it, NotFound if the
        container is gone."""
        try:
            cursor = self._connection.execute("UPDATE containers SET name = ? WHERE id = ?",
                                              (name, container_id))
        except sqlite3.IntegrityError:
            holder = self._connection.execute(
                "SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
            owner = holder[0][:SHORT_ID_LENGTH] if holder else "(removed meanwhile)"
            raise AlreadyExists("rename container", name,
                                detail=f'the name "{name}" is already in use by container '
                                f"{owner}", hint="remove it or pick another name") from None
        if cursor.rowcount == 0:
            raise NotFound("rename container", container_id, detail="no such container")

    def name_in_use(self, name: str) -> bool:
        return self._connection.execute(
            "SELECT 1 FROM containers WHERE name = ?", (bare_name(name),)
        ).fetchone() is not None

    # --- volumes ------------------------------------------------------------------------

    def insert_volume(self, name: str, *, labels: str | dict[str, str] = "{}",
                      anonymous: bool = False, driver: str = "local") -> VolumeRow:
        """Record a new volume (created now); AlreadyExists if the name is taken,
        InvalidArgument (Docker's words) for a name the local driver refuses."""
        volume_name(name, "create volume")
        volume = VolumeRow(name, now_rfc3339(), driver, _json_text(labels), int(anonymous))
        try:
            self._connection.execute(
                f"INSERT INTO volumes ({', '.join(VOLUME_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                (volume.name, volume.created_at, volume.driver, volume.labels,
                 volume.anonymous))
        except sqlite3.IntegrityError:
            raise AlreadyExists("create volume", name,
                                detail=f'a volume named "{name}" exists') from None
        return volume

    def get_volume(self, name: str, operation: str = "find volume") -> VolumeRow:
        """The volume *name*; NotFound if there is none, InvalidArgument (Docker's words,
        naming *operation*) for a name no volume can have."""
        volume_name(name, operation)
        found = self._connection.execute(f"{_VOLUME_SELECT} WHERE name = ?",
                                         (name,)).fetchone()
        if found is None:
            raise NotFound(operation, name, detail="no such volume")
        return VolumeRow.from_row(found)

    def list_volumes(self) -> list[VolumeRow]:
        """All volumes, by name."""
        rows = self._connection.execute(f"{_VOLUME_SELECT} ORDER BY name").fetchall()
        return [VolumeRow.from_row(row) for row in rows]

    def volume_users(self, name: str) -> list[str]:
        """IDs of the containers that mount volume *name* (sorted)."""
        rows = self._connection.execute(
            "SELECT DISTINCT container_id FROM container_volumes WHERE volume = ? "
            "ORDER BY container_id", (name,)).fetchall()
        return [row[0] for row in rows]

    def delete_volume(self, name: str) -> None:
        """Forget a volume; NotFound if there is none, WrongState while containers use it,
        InvalidArgument for a name no volume can have."""
        volume_name(name, "remove volume")
        with self.transaction() as connection:
            users = connection.execute(
                "SELECT DISTINCT c.name, c.id FROM container_volumes AS v "
                "JOIN containers AS c ON c.id = v.container_id "
                "WHERE v.volume = ? ORDER BY c.name", (name,)).fetchall()
            if users:
                listed = ", ".join(f"{user} ({cid[:SHORT_ID_LENGTH]})" for user, cid in users)
                raise WrongState("remove volume", name,
                                 detail=f"volume is in use by container(s) {listed}",
                                 hint="remove those containers first")
            cursor = connection.execute("DELETE FROM volumes WHERE name = ?", (name,))
            if cursor.rowcount == 0:
                raise NotFound("remove volume", name, detail="no such volume")

    def attach_volume(self, container_id: str, volume: str, destination: str) -> None:
        """Record that *container_id* mounts *volume* at *destination*."""
        try:
            self._connection.execute(
                "INSERT INTO container_volumes (container_id, volume, destination) "
                "VALUES (?, ?, ?)", (container_id, volume, destination))
        except sqlite3.IntegrityError as error:
            if "FOREIGN KEY" in str(error):
                raise NotFound("attach volume", volume,
                               detail=f"no such volume, or no container {container_id}"
                               ) from None
            raise AlreadyExists("attach volume", volume,
                                detail=f"container {container_id[:SHORT_ID_LENGTH]} "
                                f"already has a volume at {destination}") from None

    def anonymous_volumes_of(self, container_id: str) -> list[str]:
        """Names of the anonymous volumes *container_id* mounts (removed with it by
        ``rm -v`` / ``--rm``), sorted."""
        rows = self._connection.execute(
            "SELECT DISTINCT v.name FROM container_volumes AS cv "
            "JOIN volumes AS v ON v.name = cv.volume "
            "WHERE cv.container_id = ? AND v.anonymous ORDER BY v.name",
            (container_id,)).fetchall()
        return [row[0] for row in rows]

    def container_volumes(self, container_id: str) -> list[tuple[str, str]]:
        """``(volume, destination)`` pairs mounted by one container, by destination."""
        rows = self._connection.execute(
            "SELECT volume, destination FROM container_volumes WHERE container_id = ? "
            "ORDER BY destination", (container_id,)).fetchall()
        return [(row[0], row[1]) for row in rows]


def _encode_column(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return _json_text(value)
    if column in _BOOL_COLUMNS:
        return int(bool(value))
    return value


def _json_text(value: object) -> str:
    """*value* if it is already JSON text (checked), else *value* encoded."""
    if isinstance(value, str):
        jsonwire.loads(value)  # ValueError now rather than a corrupt row later
        return value
    return jsonwire.dumps(value)


def _check_state(state: object) -> None:
    if state not in STATES:
        raise ValueError(f"unknown container state {state!r}")


