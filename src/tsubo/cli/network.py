"""``tsubo network``: create, ls, inspect, rm, prune — output like Docker's."""

from __future__ import annotations

import sys

from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.cli.argv import Parsed
    from tsubo.engine.containers import Engine


def network_command(engine: Engine, parsed: Parsed) -> int:
    from tsubo.engine.networks import NetworkManager

    if not parsed.positional:
        raise InvalidArgument("network", "", detail="expected create, ls, inspect, rm, prune, "
                              "connect, disconnect or reload")
    verb, names = parsed.positional[0], parsed.positional[1:]
    manager = NetworkManager(engine)
    out = sys.stdout
    if verb == "create":
        if len(names) != 1:
            raise InvalidArgument("network create", " ".join(names),
                                  detail="expected exactly one network name")
        from tsubo.engine.options import parse_labels

        try:
            mtu = int(parsed.text("mtu") or 0)
        except ValueError:
            raise InvalidArgument("parse --mtu", parsed.text("mtu"),
                                  detail="expected an integer") from None
        network = manager.create(names[0], subnet=parsed.text("subnet"),
                                 gateway=parsed.text("gateway"),
                                 ip_range=parsed.text("ip_range"),
                                 internal=parsed.flag("internal"), mtu=mtu,
                                 bridge_name=parsed.text("bridge_name"),
                                 labels=parse_labels(parsed.texts("label")))
        out.write(network.id + "\n")
    elif verb in ("ls", "list"):
        networks = manager.store.list_networks()
        if parsed.flag("quiet"):
            out.write("".join(f"{n.name}\n" for n in networks))
            return 0
        rows = [["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE"]]
        rows += [[n.id[:12], n.name, n.driver, n.subnet, n.gateway, n.bridge_name]
                 for n in networks]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out.write("\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths,
                                                                       strict=True)).rstrip()
                            for row in rows) + "\n")
    elif verb == "inspect":
        import json

        out.write(json.dumps([_inspect(engine, manager, name) for name in names], indent=4)
                  + "\n")
    elif verb in ("rm", "remove"):
        status = 0
        for name in names:
            try:
                manager.remove(name)
                out.write(name + "\n")
            except TsuboError as error:
                sys.stderr.write(f"tsubo: {error.message()}\n")
                status = 1
        return status
    elif verb in ("connect", "disconnect"):
        if len(names) != 2:
            raise InvalidArgument(f"network {verb}", " ".join(names),
                                  detail="expected NETWORK CONTAINER")
        row = engine.refresh(engine.db.resolve_container(names[1]))
        if row.state not in ("running", "paused"):
            raise TsuboError(f"network {verb}", row.name, detail="container is not running")
        import os

        if not os.path.exists(f"/run/netns/{row.name}"):
            raise TsuboError(f"network {verb}", row.name,
                             detail="the container was not started on a network "
                             "(--network NAME); its namespace has no pin to attach to")
        if verb == "connect":
            manager.connect(row.id, row.name, names[0], requested_ip=parsed.text("ip"))
        else:
            manager.disconnect(row.id, names[0])
    elif verb == "reload":
        # after a host firewall flush or restart: our table and host-chain rules again
        from tsubo.network import firewall

        networks = manager.store.list_networks()
        if networks:
            firewall.reload(networks)
        out.write(f"reloaded the rules of {len(networks)} network(s)\n")
    elif verb == "prune":
        for network in manager.store.list_networks():
            if not manager.store.network_endpoints(network.id):
                manager.remove(network.id)
                out.write(f"deleted network {network.name}\n")
    else:
        raise InvalidArgument("network", verb, detail="expected create, ls, inspect, rm or prune")
    return 0


def _inspect(engine: Engine, manager: object, name: str) -> dict[str, object]:
    from tsubo.engine.networks import NetworkManager

    assert isinstance(manager, NetworkManager)
    network = manager.get(name)
    containers = {}
    for endpoint in manager.store.network_endpoints(network.id):
        try:
            container_name = engine.db.get_container(endpoint.container_id).name
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
                             **({"IPRange": network.ip_range} if network.ip_range else {})}]},
        "Options": {"bridge": network.bridge_name, "mtu": network.mtu},
        "Labels": network.labels, "Containers": containers,
    }
