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
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tsubo.engine.paths import EngineState
    from tsubo.network.models import Endpoint, Network
    from tsubo.network.store import NetworkStore

DEFAULT_NETWORK = "bridge"


class NetworkManager:
    def __init__(self, engine: EngineState) -> None:
        from tsubo.network.store import NetworkStore

        self.engine = engine
        self.store: NetworkStore = NetworkStore(engine.db)

    # --- networks ------------------------------------------------------------------------

    def create(self, name: str, *, subnet: str = "", gateway: str = "", ip_range: str = "",
               internal: bool = False, mtu: int = 0, bridge_name: str = "",
               labels: dict[str, str] | None = None) -> Network:
        """Record the network, then make its bridge and firewall rules (undone on failure)."""
        from tsubo.network import bridge, firewall, ipam
        from tsubo.undo import UndoStack

        network = ipam.create_network(self.store, name, subnet=subnet, gateway=gateway,
                                      ip_range=ip_range, internal=internal, mtu=mtu,
                                      bridge_name=bridge_name, labels=labels or {})
        with UndoStack("create network", name) as undo:
            undo.push(lambda: self.store.delete_network(network.id))
            self.store.record("link", network.bridge_name, network.id)
            undo.push(lambda: self.store.forget("link", network.bridge_name))
            lines = bridge.plan_bridge_create(
                network.bridge_name, network.gateway, network.prefix_len,
                network.mtu or bridge.uplink_mtu(), mac=bridge.bridge_mac(network.id))
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
        """The default network (``bridge``), created on first use as Docker's is."""
        from tsubo.errors import NotFound

        try:
            return self.store.get_network(DEFAULT_NETWORK)
        except NotFound:
            return self.create(DEFAULT_NETWORK)

    # --- endpoints ------------------------------------------------------------------------

    def attach(self, container_id: str, netns_name: str, refs: list[str], *,
               requested_ip: str = "", mac_address: str = "") -> list[Endpoint]:
        """Pin a network namespace for the container and give it one interface per
        network (eth0, eth1, ... ; the first network's gateway is the default route)."""
        from tsubo.network import bridge, ipam, names
        from tsubo.network.models import Endpoint
        from tsubo.undo import UndoStack

        endpoints: list[Endpoint] = []
        uplink_mtu = 0
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
                host_ifname = names.host_veth_name(container_id, network.id)
                mac = (names.parse_mac(mac_address, "--mac-address")
                       if index == 0 and mac_address else names.mac_for(address))
                endpoint = Endpoint(container_id, network.id, names.container_ifname(index),
                                    host_ifname, mac, address, network.prefix_len)
                self.store.record("link", host_ifname, container_id)
                undo.push(_forgetter(self.store, "link", host_ifname))
                if not network.mtu and not uplink_mtu:
                    uplink_mtu = bridge.uplink_mtu()  # the host's uplink, unless --mtu
                plan = bridge.plan_endpoint_attach(
                    network.bridge_name, host_ifname, netns_name, endpoint.ifname, address,
                    network.prefix_len, network.gateway if index == 0 else None, mac,
                    network.mtu or uplink_mtu)
                bridge.apply_endpoint_attach(plan)
                self.store.insert_endpoint(endpoint)
                endpoints.append(endpoint)
            undo.commit()
        return endpoints

    def connect(self, container_id: str, netns_name: str, ref: str, *,
                requested_ip: str = "") -> Endpoint:
        """``network connect``: one more interface in a running container's netns (no
        default route: the first network keeps it)."""
        from tsubo.errors import AlreadyExists
        from tsubo.network import bridge, ipam, names
        from tsubo.network.models import Endpoint
        from tsubo.undo import UndoStack

        network = self.get(ref)
        if self.store.get_endpoint(container_id, network.id) is not None:
            raise AlreadyExists("connect container", container_id[:12],
                                detail=f"already on network {network.name}")
        index = len(self.store.container_endpoints(container_id))
        with UndoStack("connect container", container_id[:12]) as undo:
            address = ipam.allocate(self.store, network, requested_ip or None,
                                    container_id=container_id)
            undo.push(_releaser(self.store, network.id, address))
            host_ifname = names.host_veth_name(container_id, network.id)
            endpoint = Endpoint(container_id, network.id, names.container_ifname(index),
                                host_ifname, names.mac_for(address), address,
                                network.prefix_len)
            self.store.record("link", host_ifname, container_id)
            undo.push(_forgetter(self.store, "link", host_ifname))
            bridge.apply_endpoint_attach(bridge.plan_endpoint_attach(
                network.bridge_name, host_ifname, netns_name, endpoint.ifname, address,
                network.prefix_len, None, endpoint.mac, network.mtu or bridge.uplink_mtu()))
            self.store.insert_endpoint(endpoint)
            undo.commit()
        return endpoint

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
                "IPv4Address": f"{endpoint.address}/{endpoint.prefix_len}"}
        return {
            "Name": network.name, "Id": network.id, "Created": network.created_at,
            "Driver": network.driver, "Internal": network.internal,
            "IPAM": {"Config": [{"Subnet": network.subnet, "Gateway": network.gateway,
                                 **({"IPRange": network.ip_range} if network.ip_range
                                    else {})}]},
            "Options": {"bridge": network.bridge_name, "mtu": network.mtu},
            "Labels": network.labels, "Containers": containers,
        }

    def prune(self) -> list[Network]:
        """Remove every network no container is on; the removed ones."""
        removed = []
        for network in self.store.list_networks():
            if not self.store.network_endpoints(network.id):
                removed.append(self.remove(network.id))
        return removed

    def reload(self) -> int:
        """Write every network's firewall rules again, e.g. after a host firewall flush;
        how many networks there are."""
        from tsubo.network import firewall

        networks = self.store.list_networks()
        if networks:
            firewall.reload(networks)
        return len(networks)

    def repair(self) -> list[str]:
        """Restore the firewall if any of it is missing (one transaction); what was
        missing (empty: it was all there, nothing was written)."""
        from tsubo.network import firewall

        networks = self.store.list_networks()
        if not networks:
            return []
        missing = firewall.damage(networks)
        if missing:
            firewall.reload(networks)
        return missing

    def networks_of(self, container_id: str) -> list[tuple[Endpoint, Network]]:
        return [(endpoint, self.store.get_network(endpoint.network_id))
                for endpoint in self.store.container_endpoints(container_id)]


def _releaser(store: NetworkStore, network_id: str, address: str) -> Callable[[], object]:
    from tsubo.network import ipam

    return lambda: ipam.release(store, network_id, address)


def _forgetter(store: NetworkStore, kind: str, name: str) -> Callable[[], object]:
    return lambda: store.forget(kind, name)
