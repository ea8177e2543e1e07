"""``tsubo network``: create, ls, inspect, rm, prune — output like Docker's."""

from __future__ import annotations

import sys

from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.api import Engine
    from tsubo.cli.argv import Parsed


def network_command(engine: Engine, parsed: Parsed) -> int:
    if not parsed.positional:
        raise InvalidArgument("network", "", detail="expected create, ls, inspect, rm, prune, "
                              "connect, disconnect, reload or graph")
    verb, names = parsed.positional[0], parsed.positional[1:]
    out = sys.stdout
    if verb == "create":
        if len(names) != 1:
            raise InvalidArgument("network create", " ".join(names),
                                  detail="expected exactly one network name")
        network = engine.create_network(names[0], subnet=parsed.texts("subnet"),
                                        gateway=parsed.texts("gateway"),
                                        ipv6=parsed.flag("ipv6"),
                                        ip_range=parsed.text("ip_range"),
                                        internal=parsed.flag("internal"),
                                        mtu=parsed.text("mtu"),
                                        bridge_name=parsed.text("bridge_name"),
                                        labels=parsed.texts("label"))
        out.write(network.id + "\n")
    elif verb in ("ls", "list"):
        networks = engine.networks()
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
        from tsubo.cli.gotemplate import format_inspected

        out.write(format_inspected([engine.inspect_network(name) for name in names],
                                   parsed.text("format")))
    elif verb in ("rm", "remove"):
        status = 0
        for name in names:
            try:
                engine.remove_network(name)
                out.write(name + "\n")
            except TsuboError as error:
                sys.stderr.write(f"tsubo: {error.message()}\n")
                status = 1
        return status
    elif verb in ("connect", "disconnect"):
        if len(names) != 2:
            raise InvalidArgument(f"network {verb}", " ".join(names),
                                  detail="expected NETWORK CONTAINER")
        if verb == "connect":
            engine.connect(names[0], names[1], ip=parsed.text("ip"), ip6=parsed.text("ip6"))
        else:
            engine.disconnect(names[0], names[1])
    elif verb == "reload":
        # after a host firewall flush or restart: our table and host-chain rules again
        out.write(f"reloaded the rules of {engine.reload_networks()} network(s)\n")
    elif verb == "graph":
        chosen = parsed.text("format") or ("text" if out.isatty() else "dot")
        out.write(engine.network_graph(chosen))
    elif verb == "prune":
        for network in engine.prune_networks():
            out.write(f"deleted network {network.name}\n")
    else:
        raise InvalidArgument("network", verb, detail="expected create, ls, inspect, rm or prune")
    return 0
