"""Networks of the engine: create/remove bridges, attach/detach containers (the seed's part 2).

Wires the network layer together: ``network/ipam.py`` and ``network/store.py`` (subnets,
leases, endpoints, the ledger of created kernel objects, all in the engine's SQLite),
``network/bridge.py`` (bridge, veth pairs and netns pins through ``ip -batch``) and
``network/firewall.py`` (the ``inet tsubo`` nftables table). Every kernel object is
recorded in the ledger *before* it is created and forgotten after it is removed, so a crash
at any step leaves only objects that ``tsubo system gc`` can find by name from the ledger
(never by name patterns alone).

A container's network namespace is pinned at ``/run/netns/<container name>``, so the seed's
habit ``ip netns exec container1 ...`` works on tsubo containers.

Published ports (``-p``): :meth:`NetworkManager.check_ports` refuses a fixed host port held
by a running container or a listening host process before a container is created;
:meth:`NetworkManager.publish` claims the ports in the ledger (one transaction: of two
containers asking for one port at once exactly one wins) and writes the container's DNAT
chain in one nft transaction when it starts; :func:`unpublish` takes both away when it
stops (and ``system gc`` after a crash).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from tsubo.engine.paths import EngineState
    from tsubo.network.models import Endpoint, Network
    from tsubo.network.ports import PortSpec, PublishedPort
    from tsubo.network.store import NetworkStore

#: the default network: what ``run`` without ``--network`` joins (unless the engine setting
#: ``$TSUBO_DEFAULT_NETWORK`` says otherwise), made on first use (:meth:`ensure_default`)
DEFAULT_NETWORK = "bridge"
#: Docker's words, when the default network is asked to go
PREDEFINED = "{} is a pre-defined network and cannot be removed"
#: Docker's warning for a container on a network of a host that does not forward
FORWARDING_WARNING = "IPv4 forwarding is disabled. Networking will not work."


class NetworkManager:
    def __init__(self, engine: EngineState) -> None:
        from tsubo.network.store import NetworkStore

        self.engine = engine
        self.store: NetworkStore = NetworkStore(engine.db)

    # --- networks ------------------------------------------------------------------------

    def create(self, name: str, *, subnet: str = "", gateway: str = "", ip_range: str = "",
               internal: bool = False, mtu: int = 0, bridge_name: str = "",
               labels: dict[str, str] | None = None, ipv6: bool = False, subnet6: str = "",
               gateway6: str = "") -> Network:
        """Record the network, then make its bridge and firewall rules (undone on failure).
        IPV6: dual stack (SUBNET6, else a ULA /64). ``network create bridge`` before first
        use chooses the default network's settings (dockerd's ``--bip``), under
        :meth:`ensure_default`'s lock."""
        options: dict[str, Any] = {
            "subnet": subnet, "gateway": gateway, "ip_range": ip_range, "internal": internal,
            "mtu": mtu, "bridge_name": bridge_name, "labels": labels or {}, "ipv6": ipv6,
            "subnet6": subnet6, "gateway6": gateway6}
        if name != DEFAULT_NETWORK:
            return self._create(name, options)
        with self._default_lock():
            return self._create(name, options)

    def _create(self, name: str, options: dict[str, Any]) -> Network:
        from tsubo.network import bridge, firewall, ipam
        from tsubo.undo import UndoStack

        pool = ipam.DEFAULT_NETWORK_POOL if name == DEFAULT_NETWORK else ipam.DEFAULT_POOL
        network = ipam.create_network(self.store, name, pool=pool, **options)
        with UndoStack("create network", name) as undo:
            undo.push(lambda: self.store.delete_network(network.id))
            self.store.record("link", network.bridge_name, network.id)
            undo.push(lambda: self.store.forget("link", network.bridge_name))
            lines = bridge.plan_bridge_create(
                network.bridge_name, network.gateway, network.prefix_len,
                network.mtu or bridge.uplink_mtu(), mac=bridge.bridge_mac(network.id),
                gateway6=network.gateway6, prefix_len6=network.prefix_len6)
            bridge.apply_bridge_create(network.bridge_name, lines)
            undo.push(lambda: bridge.apply_bridge_remove(
                bridge.plan_bridge_remove(network.bridge_name)))
            firewall.setup_network(network)
            undo.commit()
        return network

    def remove(self, ref: str) -> Network:
        """Remove a network no container is attached to (WrongState names them)."""
        from tsubo.errors import TeardownErrors
        from tsubo.network import bridge, firewall

        network = self.store.get_network(ref)
        if is_predefined(network):
            from tsubo.engine.options import DEFAULT_NETWORK_ENV
            from tsubo.errors import InvalidArgument

            raise InvalidArgument("remove network", "", detail=PREDEFINED.format(network.name),
                                  hint="it is the network of containers run without "
                                  f"--network; {DEFAULT_NETWORK_ENV}=none tsubo network rm "
                                  f"{network.name} removes it (no container may be on it)")
        self.store.delete_network(network.id)  # refuses while endpoints exist
        errors: list[BaseException] = []
        try:
            if self.store.list_networks():
                firewall.teardown_network(network)
            else:  # the last one: the table and our accept rules in host chains go too
                firewall.remove_all()
        except Exception as error:  # teardown goes on and reports everything
            errors.append(error)
        try:
            bridge.apply_bridge_remove(bridge.plan_bridge_remove(network.bridge_name))
        except Exception as error:
            errors.append(error)
        self.store.forget("link", network.bridge_name)
        if errors:
            raise TeardownErrors("remove network", network.name, errors)
        return network

    def get(self, ref: str) -> Network:
        return self.store.get_network(ref)

    def ensure_default(self) -> Network:
        """The default network ``bridge``, made on first use as Docker's is (the subnet:
        Docker's 172.17.0.0/16 when nothing on the host overlaps it, else one of the
        pool's). Looked up and made under an flock, so of two first runs at once one
        makes it and both use it, and none sees it half made."""
        from tsubo.errors import NotFound

        with self._default_lock():
            try:
                return self.store.get_network(DEFAULT_NETWORK)
            except NotFound:
                return self._create(DEFAULT_NETWORK, {})

    def get_or_make_default(self, ref: str) -> Network:
        """The network *ref*, the default one made if that is what *ref* names."""
        return self.ensure_default() if ref == DEFAULT_NETWORK else self.get(ref)

    def _default_lock(self) -> _FileLock:
        return _FileLock(f"{self.engine.paths.data}/default-network.lock")

    # --- endpoints ------------------------------------------------------------------------

    def attach(self, container_id: str, netns_name: str, refs: list[str], *,
               requested_ip: str = "", mac_address: str = "", requested_ip6: str = ""
               ) -> list[Endpoint]:
        """Pin a network namespace for the container and give it one interface per
        network (eth0, eth1, ... ; the first network's gateway is the default route, and
        its IPv6 gateway the default IPv6 route on a dual-stack network)."""
        from tsubo.network import bridge, ipam, names
        from tsubo.network.models import Endpoint
        from tsubo.undo import UndoStack

        endpoints: list[Endpoint] = []
        with UndoStack("attach container", container_id[:12]) as undo:
            self.store.record("netns", netns_name, container_id)
            undo.push(lambda: self.store.forget("netns", netns_name))
            bridge.create_netns(netns_name)
            undo.push(lambda: bridge.delete_netns(netns_name))
            for index, ref in enumerate(refs):
                network = self.get(ref)
                address = ipam.allocate(self.store, network,
                                        requested_ip if index == 0 and requested_ip else None,
                                        container_id=container_id)
                undo.push(_releaser(self.store, network.id, address))
                address6 = self._allocate6(network, requested_ip6 if index == 0 else "",
                                           container_id, undo)
                host_ifname = names.host_veth_name(container_id, network.id)
                user_mac = index == 0 and bool(mac_address)
                mac = (names.parse_mac(mac_address, "--mac-address") if user_mac
                       else names.mac_for(address))
                endpoint = Endpoint(container_id, network.id, names.container_ifname(index),
                                    host_ifname, mac, address, network.prefix_len, address6,
                                    network.prefix_len6 if address6 else 0)
                self.store.record("link", host_ifname, container_id)
                undo.push(_forgetter(self.store, "link", host_ifname))
                plan = bridge.plan_endpoint_attach(
                    network.bridge_name, host_ifname, netns_name, endpoint.ifname, address,
                    network.prefix_len, network.gateway if index == 0 else None, mac,
                    bridge.bridge_mtu(network.bridge_name), address6=address6,
                    prefix_len6=endpoint.prefix_len6,
                    gateway6=network.gateway6 if index == 0 else None,
                    announce=user_mac)
                bridge.apply_endpoint_attach(plan)
                self.store.insert_endpoint(endpoint)
                endpoints.append(endpoint)
            undo.commit()
        return endpoints

    def connect(self, container_id: str, netns_name: str, ref: str, *,
                requested_ip: str = "", requested_ip6: str = "") -> Endpoint:
        """``network connect``: one more interface in a running container's netns (no
        default route: the first network keeps it). ``bridge`` is made if need be."""
        from tsubo.errors import AlreadyExists
        from tsubo.network import bridge, ipam, names
        from tsubo.network.models import Endpoint
        from tsubo.undo import UndoStack

        network = self.get_or_make_default(ref)
        if self.store.get_endpoint(container_id, network.id) is not None:
            raise AlreadyExists("connect container", container_id[:12],
                                detail=f"already on network {network.name}")
        index = len(self.store.container_endpoints(container_id))
        with UndoStack("connect container", container_id[:12]) as undo:
            address = ipam.allocate(self.store, network, requested_ip or None,
                                    container_id=container_id)
            undo.push(_releaser(self.store, network.id, address))
            address6 = self._allocate6(network, requested_ip6, container_id, undo)
            host_ifname = names.host_veth_name(container_id, network.id)
            endpoint = Endpoint(container_id, network.id, names.container_ifname(index),
                                host_ifname, names.mac_for(address), address,
                                network.prefix_len, address6,
                                network.prefix_len6 if address6 else 0)
            self.store.record("link", host_ifname, container_id)
            undo.push(_forgetter(self.store, "link", host_ifname))
            bridge.apply_endpoint_attach(bridge.plan_endpoint_attach(
                network.bridge_name, host_ifname, netns_name, endpoint.ifname, address,
                network.prefix_len, None, endpoint.mac, bridge.bridge_mtu(network.bridge_name),
                address6=address6, prefix_len6=endpoint.prefix_len6))
            self.store.insert_endpoint(endpoint)
            undo.commit()
        return endpoint

    def _allocate6(self, network: Network, requested: str, container_id: str,
                   undo: Any) -> str:
        """The endpoint's IPv6 address on a dual-stack NETWORK ("" on others, where
        REQUESTED (``--ip6``) is an error), its release pushed on UNDO."""
        from tsubo.network import ipam

        if not network.ipv6 and not requested:
            return ""
        address6 = ipam.allocate6(self.store, network, requested or None,
                                  container_id=container_id)
        undo.push(_releaser(self.store, network.id, address6))
        return address6

    def disconnect(self, container_id: str, ref: str) -> None:
        """``network disconnect``: remove that interface now (the veth pair goes)."""
        from tsubo.errors import NotFound
        from tsubo.network import bridge

        network = self.get(ref)
        endpoint = self.store.get_endpoint(container_id, network.id)
        if endpoint is None:
            raise NotFound("disconnect container", container_id[:12],
                           detail=f"not on network {network.name}")
        bridge.apply_endpoint_detach(bridge.plan_endpoint_detach(endpoint.host_ifname))
        self.store.delete_endpoint(container_id, network.id)
        self.store.forget("link", endpoint.host_ifname)

    def detach_all(self, container_id: str, netns_name: str) -> None:
        """Remove the container's netns pin (its veth pairs go with it), leases, endpoints
        and ledger entries. Already gone counts as done."""
        from tsubo.network import bridge

        bridge.delete_netns(netns_name)
        for endpoint in self.store.forget_container(container_id):
            self.store.forget("link", endpoint.host_ifname)
        self.store.forget("netns", netns_name)

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ``network inspect`` record of *ref*, with its containers."""
        from tsubo.errors import TsuboError

        network = self.get(ref)
        containers = {}
        for endpoint in self.store.network_endpoints(network.id):
            try:
                container_name = self.engine.db.get_container(endpoint.container_id).name
            except TsuboError:
                container_name = ""
            containers[endpoint.container_id] = {
                "Name": container_name, "Interface": endpoint.ifname,
                "HostInterface": endpoint.host_ifname, "MacAddress": endpoint.mac,
                "IPv4Address": f"{endpoint.address}/{endpoint.prefix_len}",
                "IPv6Address": endpoint.cidr6}
        configs: list[dict[str, str]] = [
            {"Subnet": network.subnet, "Gateway": network.gateway,
             **({"IPRange": network.ip_range} if network.ip_range else {})}]
        if network.subnet6:
            configs.append({"Subnet": network.subnet6, "Gateway": network.gateway6})
        return {
            "Name": network.name, "Id": network.id, "Created": network.created_at,
            "Driver": network.driver, "EnableIPv4": True, "EnableIPv6": network.ipv6,
            "Internal": network.internal, "IPAM": {"Config": configs},
            "Options": {"bridge": network.bridge_name, "mtu": network.mtu},
            "Labels": network.labels, "Containers": containers,
        }

    def prune(self) -> list[Network]:
        """Remove every network no container is on (but the default one); the removed
        ones."""
        removed = []
        for network in self.store.list_networks():
            if not self.store.network_endpoints(network.id) and not is_predefined(network):
                removed.append(self.remove(network.id))
        return removed

    def reload(self) -> int:
        """Write every network's firewall rules again (and the published ports of running
        containers), e.g. after a host firewall flush; how many networks there are."""
        from tsubo.network import firewall

        networks = self.store.list_networks()
        if networks:
            firewall.reload(networks, publications=self._publications())
        return len(networks)

    # --- published ports --------------------------------------------------------------------

    def check_ports(self, specs: Sequence[PortSpec], name: str = "",
                    networks: Sequence[str] = ()) -> None:
        """Refuse, before anything is made, a fixed host port that a running container or
        a host process holds (AlreadyExists naming it), and IPv6 host addresses unless the
        first of NETWORKS is dual stack (``[::1]`` always)."""
        from tsubo.errors import NotFound

        try:
            dual = bool(networks) and self.store.get_network(networks[0]).ipv6
        except NotFound:
            dual = False  # the network's own check names it
        _refuse_ipv6(specs, dual)
        fixed = [spec for spec in specs if not spec.ephemeral]
        if not fixed:
            return
        def holder_of(protocol: str, ip: str, port: int) -> str | None:
            owner = self.store.port_holder(protocol, ip, port)
            return owner if owner is not None and self._is_live(owner) else None

        self._choose(fixed, holder_of, name, dual)

    def publish(self, container_id: str, name: str, specs: Sequence[PortSpec]
                ) -> list[PublishedPort]:
        """:meth:`claim_ports` then their nft transaction (undone on failure)."""
        from tsubo.undo import UndoStack

        with UndoStack("publish ports of", name) as undo:
            publication = self.claim_ports(container_id, name, specs)
            undo.push(lambda: unpublish(self.store, container_id))
            publication.apply()
            undo.commit()
        return publication.ports

    def claim_ports(self, container_id: str, name: str, specs: Sequence[PortSpec], *,
                    probed: bool = False) -> PortPublication:
        """Claim host ports for SPECS in the ledger (one transaction), to forward to the
        container's first address; the nft transaction is the returned publication's
        :meth:`~PortPublication.apply` (it touches no database: a worker thread may run it
        while the runtime starts the container). A claim left by a container that no
        longer runs (a crash before gc) is taken over. :func:`unpublish` undoes both.
        PROBED: :meth:`check_ports` asked the kernel about the fixed host ports a moment
        ago (the create of the same ``run``): they are not probed again, only the ledger
        (what decides a race between two containers) is asked."""
        from tsubo.network import firewall

        endpoints = self.store.container_endpoints(container_id)
        if not endpoints:
            from tsubo.errors import WrongState

            raise WrongState("publish ports of", name, detail="the container has no network")
        endpoint = endpoints[0]
        network = self.store.get_network(endpoint.network_id)
        _refuse_ipv6(specs, network.ipv6)  # the claim below does the rest of check_ports'
        if network.ipv6 and not endpoint.address6:
            from tsubo.errors import WrongState

            raise WrongState("publish ports of", name,
                             detail="the container has no IPv6 address on its network")
        stale: set[str] = set()

        def choose(holder_of: Callable[[str, str, int], str | None]) -> list[str]:
            def live_holder(protocol: str, ip: str, port: int) -> str | None:
                owner = holder_of(protocol, ip, port)
                if owner is not None and not self._is_live(owner):
                    stale.add(owner)
                return owner
            return [port.ledger_name for port in self._choose(
                specs, live_holder, name, network.ipv6, probed=probed)]

        marker = firewall.container_marker(container_id)
        self.store.record("nft-chain", marker, container_id)
        try:
            try:
                names = self.store.claim_ports(container_id, choose)
            except Exception:
                if not stale:
                    raise
                for owner in stale:  # gone without its cleanup: take its claims over
                    unpublish(self.store, owner)
                names = self.store.claim_ports(container_id, choose)
        except BaseException:
            self.store.forget("nft-chain", marker)
            raise
        return PortPublication(container_id, name, endpoint.address, network.bridge_name,
                               names, endpoint.address6)

    def published(self, container_id: str | None = None) -> dict[str, list[PublishedPort]]:
        """The host ports published, by container (of one container if given)."""
        from tsubo.network.ports import PublishedPort

        return {owner: [PublishedPort.from_ledger_name(port_name) for port_name in names]
                for owner, names in self.store.published_ports(container_id).items()}

    def _choose(self, specs: Sequence[PortSpec], holder_of: Callable[[str, str, int],
                                                                     str | None],
                name: str, dual: bool = False, *, probed: bool = False
                ) -> list[PublishedPort]:
        """:func:`tsubo.network.ports.choose` with the host's sockets as holders too (the
        kernel asked by a bind probe; with PROBED, not for the fixed ports of SPECS);
        AlreadyExists naming the holder. DUAL: a network with IPv6, where a port without an
        address is published on both families."""
        from tsubo.errors import AlreadyExists
        from tsubo.kernel import procfs, sockets
        from tsubo.network import ports

        asked = {(spec.protocol, spec.host_start) for spec in specs
                 if probed and not spec.ephemeral}

        def any_holder(protocol: str, ip: str, port: int) -> str | None:
            owner = holder_of(protocol, ip, port)
            if owner is not None or (protocol, port) in asked:
                return owner
            return f"socket:{protocol}" if sockets.port_taken(protocol, ip, port) else None

        try:
            return ports.choose(specs, any_holder, procfs.local_port_range,
                                start=int.from_bytes(os.urandom(2), "big"), dual=dual)
        except ports.PortTaken as taken:
            holder = taken.holder
            if holder.startswith("socket:"):
                holder = sockets.holder(taken.spec.protocol, taken.address, taken.host_port)
            raise AlreadyExists("publish port", name or "container",
                                detail=taken.message(self._holder_text(holder))) from None

    def _holder_text(self, holder: str) -> str:
        from tsubo.errors import TsuboError

        if len(holder) == 64:
            try:
                return f"container {self.engine.db.get_container(holder).name} " \
                    f"({holder[:12]})"
            except TsuboError:
                return f"container {holder[:12]}"
        return holder

    def _is_live(self, container_id: str) -> bool:
        """Whether a claim's owner still runs (a monitor holds it)."""
        from tsubo.engine import status
        from tsubo.errors import NotFound

        try:
            row = self.engine.db.get_container(container_id)
        except NotFound:
            return False
        return row.state in status.MONITORED

    def _publications(self) -> list[Any]:
        from tsubo.network import firewall

        found = []
        for owner, published in self.published().items():
            endpoints = self.store.container_endpoints(owner)
            if endpoints and self._is_live(owner):
                found.append(firewall.Publication(
                    owner, self.engine.db.get_container(owner).name, endpoints[0].address,
                    published, endpoints[0].address6))
        return found

    def repair(self) -> list[str]:
        """Restore the firewall if any of it is missing (one transaction); what was
        missing (empty: it was all there, nothing was written)."""
        from tsubo.network import firewall

        networks = self.store.list_networks()
        if not networks:
            return []
        missing = firewall.damage(networks)
        if missing:
            self.reload()
        return missing

    def networks_of(self, container_id: str) -> list[tuple[Endpoint, Network]]:
        return [(endpoint, self.store.get_network(endpoint.network_id))
                for endpoint in self.store.container_endpoints(container_id)]


def is_predefined(network: Network) -> bool:
    """Whether *network* is the default one, which ``network rm`` and ``prune`` keep (as
    Docker's ``bridge``). Only while it is the default: with the engine setting
    ``$TSUBO_DEFAULT_NETWORK`` naming another one, ``bridge`` is a network like any other."""
    from tsubo.engine.options import default_network

    return network.name == DEFAULT_NETWORK and default_network() == DEFAULT_NETWORK


def forwarding_warning() -> str:
    """Docker's warning for a container joining networks when the host does not forward
    IPv4 (tsubo never turns forwarding on: that is the host's policy), or ``""``."""
    from tsubo.kernel.procfs import ipv4_forwarding

    # None: no /proc to ask: say nothing rather than guess
    return FORWARDING_WARNING if ipv4_forwarding() is False else ""


class _FileLock:
    """An exclusive flock on *path* (made if missing) while in the ``with`` block."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                          0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


class PortPublication:
    """Claimed host ports of a container, and the one nft transaction that makes them
    reach its address (:meth:`apply`: no database, any thread)."""

    __slots__ = ("address", "address6", "bridge", "container_id", "name", "ports")

    def __init__(self, container_id: str, name: str, address: str, bridge: str,
                 names: Sequence[str], address6: str = "") -> None:
        from tsubo.network.ports import PublishedPort

        self.container_id = container_id
        self.name = name
        self.address = address
        self.address6 = address6
        self.bridge = bridge
        self.ports = [PublishedPort.from_ledger_name(port_name) for port_name in names]

    def apply(self) -> int:
        """The transaction; the pid of the ``nft`` that committed it."""
        from tsubo.network import firewall

        return firewall.publish(self.container_id, self.name, self.address, self.ports,
                                bridge=self.bridge, address6=self.address6)


def unpublish(store: NetworkStore, container_id: str) -> bool:
    """Take a container's published ports away (its map elements: one nft transaction)
    and forget their claims; False when it had none. Already gone is done."""
    from tsubo.network import firewall
    from tsubo.network.ports import PublishedPort

    names = store.published_ports(container_id).get(container_id, [])
    marker = firewall.container_marker(container_id)
    markers = store.ledger_entries("nft-chain", owner=container_id)
    if not names and not markers:
        return False
    endpoints = store.container_endpoints(container_id)
    firewall.unpublish(container_id, [PublishedPort.from_ledger_name(n) for n in names],
                       address=endpoints[0].address if endpoints else "",
                       address6=endpoints[0].address6 if endpoints else "")
    _forget_ports(store, names)
    store.forget("nft-chain", marker)
    return True


def _refuse_ipv6(specs: Sequence[PortSpec], dual: bool) -> None:
    """An IPv6 host address needs a dual-stack network; ``[::1]`` is never published (IPv6
    has no ``route_localnet``: the kernel drops ``::1`` anywhere but on ``lo``)."""
    for spec in specs:
        if ":" not in spec.host_ip:
            continue
        from tsubo.errors import InvalidArgument, Unsupported

        where = f"[{spec.host_ip}]:{spec.host_start}"
        if spec.host_ip == "::1":
            raise Unsupported("publish port", where,
                              detail="IPv6 loopback cannot be forwarded to a container "
                              "(the kernel keeps ::1 on lo)",
                              hint="publish on [::] or another IPv6 address of the host, "
                              "or on 127.0.0.1")
        if not dual:
            raise InvalidArgument("publish port", where,
                                  detail="the container's network has no IPv6",
                                  hint="create the network with --ipv6, or publish on an "
                                  "IPv4 address")


def _forget_ports(store: NetworkStore, names: Sequence[str]) -> None:
    from tsubo.network.store import PORT_KIND

    for port_name in names:
        store.forget(PORT_KIND, port_name)


def _releaser(store: NetworkStore, network_id: str, address: str) -> Callable[[], object]:
    from tsubo.network import ipam

    return lambda: ipam.release(store, network_id, address)


def _forgetter(store: NetworkStore, kind: str, name: str) -> Callable[[], object]:
    return lambda: store.forget(kind, name)
