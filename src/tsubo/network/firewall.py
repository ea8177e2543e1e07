"""The firewall of tsubo's bridge networks: one nftables table, ``inet tsubo``, plus one
marked-accept rule in each host forward chain that could drop our traffic.

What it owns
    The table ``inet tsubo`` (everything in it), and the *accept-mark rules* it puts in
    other tables' forward chains (comment :data:`ACCEPT_MARK_COMMENT`). Plans are pure
    (:func:`ruleset_for`, :func:`setup_batch`, :func:`teardown_batch`); :func:`setup_network`,
    :func:`teardown_network`, :func:`reload` and :func:`remove_all` apply them through
    :mod:`tsubo.kernel.nftables`. Nothing here writes a sysctl or changes a chain's policy.

The table (per network ``N`` with bridge ``BR``; ``X`` = the network id's first 12 hex)::

    table inet tsubo {
      set bridges      { type ifname }              BR            one element per network
      map from_bridge  { type ifname : verdict }    BR : jump nw-X-out
      map to_bridge    { type ifname : verdict }    BR : jump nw-X-in
      map to_host      { type ifname : verdict }    BR : jump nw-X-host   (internal only)
      chain operator { }                            the operator's rules (never flushed)
      chain forward { type filter hook forward priority filter - 10; policy accept;
        jump operator                               the operator decides first
        iifname vmap @from_bridge                   traffic leaving a tsubo bridge
        oifname vmap @to_bridge                     traffic entering one from elsewhere
      }
      chain input { type filter hook input priority filter - 10; policy accept;
        iifname vmap @to_host                       an internal network talking to the host
      }
      chain nw-X-out {
        oifname "BR" meta mark set mark | M accept  same network (also br_netfilter frames,
                                                    whose iifname and oifname are both BR)
        ct status dnat mark | M accept              a published port of another network
                                                    (reached through the host; not internal)
        oifname @bridges drop                       isolation: another tsubo network
        meta mark set mark | M accept               out of the host   (internal: drop)
      }
      chain nw-X-in {
        ct state established,related mark | M accept   replies      (not for internal)
        ct status dnat mark | M accept                 published ports (not for internal)
        drop                                           unsolicited traffic from elsewhere
      }
      chain nw-X-nat { type nat hook postrouting priority srcnat; policy accept;
        ip saddr SUBNET oifname "BR" ct status dnat masquerade      hairpin (not internal)
        ip saddr SUBNET oifname != "BR" masquerade                  (not for internal)
      }
      chain nw-X-host {                                             (internal only)
        ct original ip daddr SUBNET ct state established,related accept
                                                    replies to connections the host opened
        ip daddr GATEWAY udp dport 53 socket wildcard 0 accept      the monitor's resolver
        ip daddr GATEWAY tcp dport 53 socket wildcard 0 accept      (and over TCP)
        drop                                        any other packet for a host address
      }
    }

Published ports (per port, two map elements; docs/network.md explains each line)::

      map ports4_addr  { type inet_proto . inet_service : ipv4_addr }     tcp . 8080 : ADDRESS
      map ports4_port  { type inet_proto . inet_service : inet_service }  tcp . 8080 : 80
      map bound4_addr, bound4_port  { type ipv4_addr . inet_proto . inet_service : ... }
                                                                  (published on one address)
      chain publish {
        meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @bound4_addr
                                   : ip daddr . meta l4proto . th dport map @bound4_port
        meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4_addr
                                   : meta l4proto . th dport map @ports4_port
      }
      chain prerouting { type nat hook prerouting priority dstnat;  (output: the same)
        meta nfproto ipv4 fib daddr type local jump publish }
      chain postrouting { type nat hook postrouting priority srcnat;
        oifname @bridges ip saddr 127.0.0.0/8 masquerade }         the host's 127.0.0.1 clients
      chain localhost { type filter hook prerouting priority raw;
        iifname != "lo" ip daddr 127.0.0.0/8 drop }                127.0.0.1 is host-only

    The rules are fixed; a container's start adds its elements in one transaction
    (:func:`publish_batch`: one command per map, whatever the number of ports), its stop
    deletes exactly them (:func:`unpublish_batch`); each element's comment is
    ``tsubo container ID12 NAME``. ``reload`` rebuilds them for running containers and keeps
    the ``operator`` chain's rules.

An ``--internal`` network
    Its packets for the host's own addresses (any of them: gateways, uplink, 127.0.0.0/8,
    IPv6 link-local, broadcast) are delivered locally and cross the *input* hook, which the
    forward chains never see; ``nw-X-host`` (reached by the incoming bridge) drops them all
    but UDP to the gateway's resolver and replies within connections the host opened to the
    network. Why each rule looks as it does: docs/network.md, "Internal networks".

Each network's objects are its own chains and map/set elements: adding or removing a network
adds or removes those and touches no other network (no rebuild, nothing per container), and
the forward path costs two hash lookups whatever the number of networks. Every rule and
element carries the comment ``tsubo network NAME ID12`` (:func:`owner_comment`); the two
dispatch rules carry ``tsubo``. Setup and teardown are each one transaction and idempotent
(setup flushes and refills the network's chains; teardown first *adds* what it deletes, the
nft idiom for "delete if present"), so "already gone" is success and a retry is harmless.

A host forward policy of drop
    In nftables an ``accept`` only ends the base chain it is in: the packet still goes through
    every other base chain on the hook, and any of them may drop it (nft(8) "VERDICT
    STATEMENT"; Docker's nftables docs, "FORWARD policy in iptables": "An iptables chain with
    FORWARD policy DROP will drop packets that have been accepted by Docker's nftables
    rules"; netavark issue #977, podman issue #28973 — netavark's own table has this hole;
    firewalld #527). So no rule in a table of our own can get past ``iptables -P FORWARD
    DROP`` or an ``inet filter forward { policy drop; }`` in someone else's table; only a rule
    in *that* chain can. What tsubo does (what Docker did with iptables, where its rules live
    in ``filter FORWARD``, and what Docker's nftables backend asks of the user with
    ``--bridge-accept-fwmark``):

    1. Our ``forward`` chain runs first (priority ``filter - 10``) and decides. Whatever it
       accepts it also marks: ``meta mark | 0x01000000`` (:data:`ACCEPT_MARK`, one bit; the
       bits used by kube-proxy 0x4000/0x8000, netavark 0x2000, Tailscale 0xff0000, Cilium
       0xf00 are left alone). Its drops are final.
    2. Every other forward base chain of type filter that runs after ours gets ONE rule at
       its top, ``meta mark & M == M accept`` with comment :data:`ACCEPT_MARK_COMMENT`:
       * native nft chains (families ip, ip6, inet; any table but ours), in the same nft
         transaction as our table;
       * iptables-nft's ``filter FORWARD`` (ip and ip6) through ``iptables-nft -I FORWARD 1 -m
         mark --mark M/M -m comment --comment ... -j ACCEPT`` (a rule written by nft would
         make iptables-nft reject the whole table, breaking Docker and the admin's tools);
       * iptables-legacy's ``filter FORWARD`` when that table exists, the same way.
       The rule is the same for all networks: it is added once (checked before adding),
       network setup and teardown never touch it again, and :func:`remove_all` deletes
       exactly these rules (by handle, or ``-D`` with the same spec). Policies are never
       changed; the host's chains keep their other rules and order.

    Covered (``tests/kernel/test_network_firewall.py``, in throwaway netns): with
    ``br_netfilter`` loaded and ``bridge-nf-call-iptables=1``, a drop policy in a separate
    nft table's forward chain and ``iptables -P FORWARD DROP`` (iptables-nft, and
    iptables-legacy when the kernel has it): same-network traffic flows only after setup,
    networks are isolated, teardown removes one network exactly, ``reload`` repairs a flushed
    ruleset. Not covered:

    * chains that run BEFORE ours (priority < ``filter - 10``): their drops win, on purpose
      (an admin may restrict containers there; the documented place is our ``operator``
      chain, tsubo's DOCKER-USER, jumped to first by our forward chain);
    * drop rules in non-forward hooks: ``bridge``-family chains (``nft ... bridge filter
      forward`` sees the L2 frames), and the host's INPUT policy (container -> host
      services such as DNS on the gateway address) — not ours to open;
    * a host firewall that rebuilds its tables later (``systemctl restart nftables``,
      ``firewall-cmd --reload``, ``iptables-restore``) drops our accept-mark rules, and a
      ``flush ruleset`` our table too: run ``tsubo network reload`` (:func:`reload`)
      afterwards. firewalld hosts are better served by firewalld's own API (a trusted zone or
      a policy, as netavark's firewalld integration and Docker's ``docker`` zone do); that is
      not implemented;
    * the mark bit stays set on forwarded packets (a host that routes, shapes or matches on
      bit 0x01000000 of the mark would see it).

IPv6 (dual-stack networks)
    The table is ``inet``: the forward dispatch, isolation, ``nw-X-in`` and ``nw-X-host``
    match interfaces and conntrack, so they hold for IPv6 packets as they are. What is per
    family: ``nw-X-nat`` has the two masquerade rules again with ``ip6 saddr SUBNET6``, an
    internal network's reply rule again with ``ct original ip6 daddr SUBNET6``, and
    published ports have ``ports6_*`` (``[::]``) and ``bound6_*`` (one IPv6 address), whose
    addresses are the container's IPv6 one, used by the ``meta nfproto ipv6 dnat ip6``
    rules of ``publish``; the prerouting and output chains jump to ``publish`` for local
    destinations of both families. ``::1`` is never
    published: IPv6 has no ``route_localnet``, the kernel drops ``::1`` off ``lo``.
"""

from __future__ import annotations

from tsubo.kernel import nftables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Protocol

    class FirewallNetwork(Protocol):
        """What the firewall reads of a network: :class:`tsubo.network.models.Network`."""

        @property
        def id(self) -> str: ...
        @property
        def name(self) -> str: ...
        @property
        def subnet(self) -> str: ...  # CIDR text ("" = none)
        @property
        def gateway(self) -> str: ...  # the bridge's own address ("" = none)
        @property
        def subnet6(self) -> str: ...  # the IPv6 subnet of a dual-stack network ("" = none)
        @property
        def bridge_name(self) -> str: ...
        @property
        def internal(self) -> bool: ...

    Command = dict[str, object]
    Batch = dict[str, list[Command]]

    from tsubo.network.ports import PublishedPort


FAMILY = "inet"
TABLE = "tsubo"
#: the bit our forward chain sets on what it accepts; the host chains' rules accept it
ACCEPT_MARK = 0x01000000
ACCEPT_MARK_COMMENT = "tsubo: accept what table inet tsubo accepted"
#: before the usual filter chains (0: iptables, inet filter; +10: firewalld)
FORWARD_PRIORITY = -10
INPUT_PRIORITY = -10
PREROUTING_CHAIN = "prerouting"
OUTPUT_CHAIN = "output"
POSTROUTING_CHAIN = "postrouting"
LOCALHOST_CHAIN = "localhost"
#: the port of the monitor's resolver on each gateway (``network/dns.py``; UDP only)
DNS_PORT = 53
NAT_PRIORITY = 100  # srcnat
DISPATCH_COMMENT = "tsubo"
COMMENT_MAX = 128  # nft's limit for a comment (NFT_USERDATA_MAXLEN is per attribute)

OPERATOR_CHAIN = "operator"
PUBLISH_CHAIN = "publish"
#: the published-port maps, in pairs: a key to the container's address (``KEY_addr``) and
#: the same key to its port (``KEY_port``); ``ports4``/``ports6`` are keyed ``proto . port``
#: (published on every address of the family), ``bound4``/``bound6`` ``addr . proto . port``
#: (on one address). One map giving ``addr . port`` would do, but nft 1.0.6 (Debian 12)
#: crashes on a JSON ``dnat`` from a map with concatenated data.
_PORT_KEYS = {"bound4": (["ipv4_addr", "inet_proto", "inet_service"], "ipv4_addr"),
              "ports4": (["inet_proto", "inet_service"], "ipv4_addr"),
              "bound6": (["ipv6_addr", "inet_proto", "inet_service"], "ipv6_addr"),
              "ports6": (["inet_proto", "inet_service"], "ipv6_addr")}
#: (map, key type, data type) of every published-port map
_PORT_MAPS = tuple(map_type
                   for key, (key_type, address_type) in _PORT_KEYS.items()
                   for map_type in ((f"{key}_addr", key_type, address_type),
                                    (f"{key}_port", key_type, "inet_service")))
_PORT_MAP_NAMES = tuple(name for name, _, _ in _PORT_MAPS)
DNAT_PRIORITY = -100  # dstnat
RAW_PRIORITY = -300   # raw: before conntrack and NAT
LOCALHOST = "127.0.0.0/8"

BRIDGES_SET = "bridges"
FROM_BRIDGE_MAP = "from_bridge"
TO_BRIDGE_MAP = "to_bridge"
TO_HOST_MAP = "to_host"
FORWARD_CHAIN = "forward"
INPUT_CHAIN = "input"

#: the xtables binaries for the host's ``filter FORWARD`` chains, per backend and family
XTABLES = {("nft", "ip"): "iptables-nft", ("nft", "ip6"): "ip6tables-nft",
           ("legacy", "ip"): "iptables-legacy", ("legacy", "ip6"): "ip6tables-legacy"}
XTABLES_RULE = ("-m", "mark", "--mark", f"{ACCEPT_MARK:#x}/{ACCEPT_MARK:#x}",
                "-m", "comment", "--comment", ACCEPT_MARK_COMMENT, "-j", "ACCEPT")


# ---------------------------------------------------------------------------------------------
# names


def owner_comment(net: FirewallNetwork) -> str:
    """``tsubo network NAME ID12``: on every rule and element of the network."""
    return f"tsubo network {net.name} {net.id[:12]}"[:COMMENT_MAX]


def chain_names(net: FirewallNetwork) -> tuple[str, str, str]:
    """(out, in, nat) chain names of the network."""
    prefix = f"nw-{net.id[:12]}"
    return f"{prefix}-out", f"{prefix}-in", f"{prefix}-nat"


def host_chain_name(net: FirewallNetwork) -> str:
    """The chain an internal network's packets for the host's own addresses go through."""
    return f"nw-{net.id[:12]}-host"


# ---------------------------------------------------------------------------------------------
# nft JSON building blocks (schema: libnftables-json(5))


def _obj(**fields: object) -> dict[str, object]:
    return {"family": FAMILY, "table": TABLE, **fields}


def _add(kind: str, body: dict[str, object]) -> Command:
    return {"add": {kind: body}}


def _rule(chain: str, comment: str, *expr: object) -> Command:
    return _add("rule", _obj(chain=chain, expr=list(expr), comment=comment))


def _meta(key: str) -> dict[str, object]:
    return {"meta": {"key": key}}


def _match(left: object, right: object, op: str = "==") -> dict[str, object]:
    return {"match": {"op": op, "left": left, "right": right}}


_MARK_ACCEPTED: tuple[object, ...] = (
    {"mangle": {"key": _meta("mark"), "value": {"|": [_meta("mark"), ACCEPT_MARK]}}},
    {"accept": None},
)
_DROP = {"drop": None}
_CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", op="in")


def _skeleton() -> list[Command]:
    """The table, its sets and maps, and the forward base chain with its two dispatch rules
    (flushed and refilled: idempotent; the chain holds nothing else)."""
    return [
        _add("table", {"family": FAMILY, "name": TABLE}),
        _add("set", _obj(name=BRIDGES_SET, type="ifname")),
        _add("map", _obj(name=FROM_BRIDGE_MAP, type="ifname", map="verdict")),
        _add("map", _obj(name=TO_BRIDGE_MAP, type="ifname", map="verdict")),
        _add("map", _obj(name=TO_HOST_MAP, type="ifname", map="verdict")),
        _add("chain", _obj(name=OPERATOR_CHAIN)),  # the operator's: never flushed by us
        _add("chain", _obj(name=FORWARD_CHAIN, type="filter", hook="forward",
                           prio=FORWARD_PRIORITY, policy="accept")),
        {"flush": {"chain": _obj(name=FORWARD_CHAIN)}},
        _rule(FORWARD_CHAIN, DISPATCH_COMMENT, {"jump": {"target": OPERATOR_CHAIN}}),
        _rule(FORWARD_CHAIN, DISPATCH_COMMENT,
              {"vmap": {"key": _meta("iifname"), "data": f"@{FROM_BRIDGE_MAP}"}}),
        _rule(FORWARD_CHAIN, DISPATCH_COMMENT,
              {"vmap": {"key": _meta("oifname"), "data": f"@{TO_BRIDGE_MAP}"}}),
        _add("chain", _obj(name=INPUT_CHAIN, type="filter", hook="input",
                           prio=INPUT_PRIORITY, policy="accept")),
        {"flush": {"chain": _obj(name=INPUT_CHAIN)}},
        _rule(INPUT_CHAIN, DISPATCH_COMMENT,
              {"vmap": {"key": _meta("iifname"), "data": f"@{TO_HOST_MAP}"}}),
        *_publish_skeleton(),
    ]


def _nat_chain(name: str) -> dict[str, object]:
    return _obj(name=name, type="nat", hook="postrouting", prio=NAT_PRIORITY, policy="accept")


def _elements(net: FirewallNetwork, *, internal: bool) -> list[tuple[str, object]]:
    """(set or map name, element) of the network, comments included; INTERNAL adds the
    ``to_host`` element (teardown asks for it whatever the network is)."""
    out_chain, in_chain, _ = chain_names(net)
    key = {"elem": {"val": net.bridge_name, "comment": owner_comment(net)}}
    elements: list[tuple[str, object]] = [
        (BRIDGES_SET, key),
        (FROM_BRIDGE_MAP, [key, {"jump": {"target": out_chain}}]),
        (TO_BRIDGE_MAP, [key, {"jump": {"target": in_chain}}]),
    ]
    if internal:
        elements.append((TO_HOST_MAP, [key, {"jump": {"target": host_chain_name(net)}}]))
    return elements


def _protocol(address: str) -> str:
    return "ip6" if ":" in address else "ip"


def _subnet_match(subnet: str) -> dict[str, object]:
    return _match({"payload": {"protocol": _protocol(subnet), "field": "saddr"}},
                  _prefix(subnet))


def _prefix(cidr: str) -> dict[str, object]:
    address, _, length = cidr.partition("/")
    if not length:
        length = "128" if ":" in address else "32"
    return {"prefix": {"addr": address, "len": int(length)}}


def _host_rules(net: FirewallNetwork) -> list[Command]:
    """``nw-X-host`` of an internal network: what may reach the host's own addresses."""
    chain = host_chain_name(net)
    comment = owner_comment(net)
    commands: list[Command] = []
    for subnet in (net.subnet, net.subnet6):
        if not subnet:
            continue
        # Replies within connections the host opened to this network. Keyed on the
        # connection's original destination: a container spoofing the peer of some other
        # host connection (the host's own DNS query to its upstream, say) gets nothing in.
        key = f"{_protocol(subnet)} daddr"
        commands.append(_rule(
            chain, comment,
            _match({"ct": {"key": key, "dir": "original"}}, _prefix(subnet)),
            _match({"ct": {"key": "state"}}, ["established", "related"], op="in"),
            {"accept": None}))
    if net.gateway:
        commands += [_rule(
            chain, comment,
            _match({"payload": {"protocol": _protocol(net.gateway), "field": "daddr"}},
                   net.gateway),
            _match({"payload": {"protocol": transport, "field": "dport"}}, DNS_PORT),
            # only a socket bound to the gateway itself: not a host resolver on 0.0.0.0:53
            _match({"socket": {"key": "wildcard"}}, 0),
            {"accept": None}) for transport in ("udp", "tcp")]
    commands.append(_rule(chain, comment, _DROP))
    return commands


def _network_commands(net: FirewallNetwork) -> list[Command]:
    """Create (or refill) the network's chains and elements."""
    out_chain, in_chain, nat_chain = chain_names(net)
    comment = owner_comment(net)
    bridge = net.bridge_name
    commands: list[Command] = []
    for chain in (out_chain, in_chain):
        commands += [_add("chain", _obj(name=chain)), {"flush": {"chain": _obj(name=chain)}}]

    # leaving BR: same bridge (routed, or bridged under br_netfilter: iifname == oifname ==
    # BR), then isolation from the other tsubo bridges, then the way out (or not)
    commands.append(_rule(out_chain, comment, _match(_meta("oifname"), bridge), *_MARK_ACCEPTED))
    if not net.internal:  # a port another network's container published, and its replies
        commands.append(_rule(out_chain, comment, _CT_DNAT, *_MARK_ACCEPTED))
    commands.append(_rule(out_chain, comment,
                          _match(_meta("oifname"), f"@{BRIDGES_SET}"), _DROP))
    if net.internal:
        commands.append(_rule(out_chain, comment, _DROP))
    else:
        commands.append(_rule(out_chain, comment, *_MARK_ACCEPTED))

    # entering BR from a non-tsubo interface: replies and DNAT'ed (published) traffic only
    if not net.internal:
        commands.append(_rule(in_chain, comment,
                              _match({"ct": {"key": "state"}}, ["established", "related"],
                                     op="in"), *_MARK_ACCEPTED))
        commands.append(_rule(in_chain, comment,
                              _CT_DNAT, *_MARK_ACCEPTED))
    commands.append(_rule(in_chain, comment, _DROP))

    if not net.internal and net.subnet:
        commands += [_add("chain", _nat_chain(nat_chain)),
                     {"flush": {"chain": _obj(name=nat_chain)}}]
        for subnet in (net.subnet, net.subnet6):
            if subnet:
                commands += [
                    # hairpin: a container reaching its own or a neighbour's published
                    # port through a host address gets the answer from that address
                    _rule(nat_chain, comment, _subnet_match(subnet),
                          _match(_meta("oifname"), bridge), _CT_DNAT, {"masquerade": None}),
                    _rule(nat_chain, comment, _subnet_match(subnet),
                          _match(_meta("oifname"), bridge, op="!="), {"masquerade": None})]

    # internal: nothing reaches the host's own addresses but the DNS listener
    if net.internal:
        host_chain = host_chain_name(net)
        commands += [_add("chain", _obj(name=host_chain)),
                     {"flush": {"chain": _obj(name=host_chain)}},
                     *_host_rules(net)]

    for name, element in _elements(net, internal=net.internal):
        commands.append(_add("element", _obj(name=name, elem=[element])))
    return commands


# ---------------------------------------------------------------------------------------------
# published ports (plans, pure)


def _publish_skeleton() -> list[Command]:
    """The base chains and maps of published ports: DNAT of any local destination
    (prerouting: from other hosts and from containers; output: from the host itself),
    localhost masquerade, and the drop of 127.0.0.0/8 arriving from anywhere but ``lo``.
    Base chains are flushed and refilled (constant size); the maps keep their elements."""
    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    lo_net = _match({"payload": {"protocol": "ip", "field": "daddr"}}, _prefix(LOCALHOST))
    proto_port = [_meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]
    commands: list[Command] = [
        *(_add("map", _obj(name=name, type=key_type, map=data_type))
          for name, key_type, data_type in _PORT_MAPS),
        _add("chain", _obj(name=PUBLISH_CHAIN)),
        {"flush": {"chain": _obj(name=PUBLISH_CHAIN)}},
    ]
    for key_name in _PORT_KEYS:  # one address before every address
        protocol = "ip6" if key_name.endswith("6") else "ip"
        key = {"concat": [{"payload": {"protocol": protocol, "field": "daddr"}}, *proto_port]
               if key_name.startswith("bound") else proto_port}
        commands.append(_rule(
            PUBLISH_CHAIN, DISPATCH_COMMENT,
            _match(_meta("nfproto"), "ipv6" if protocol == "ip6" else "ipv4"),
            {"dnat": {"family": protocol,
                      "addr": {"map": {"key": key, "data": f"@{key_name}_addr"}},
                      "port": {"map": {"key": key, "data": f"@{key_name}_port"}}}}))
    for name, hook in ((PREROUTING_CHAIN, "prerouting"), (OUTPUT_CHAIN, "output")):
        commands += [
            _add("chain", _obj(name=name, type="nat", hook=hook, prio=DNAT_PRIORITY,
                               policy="accept")),
            {"flush": {"chain": _obj(name=name)}},
            *(_rule(name, DISPATCH_COMMENT, _match(_meta("nfproto"), family), local,
                    {"jump": {"target": PUBLISH_CHAIN}}) for family in ("ipv4", "ipv6")),
        ]
    commands += [
        _add("chain", _obj(name=POSTROUTING_CHAIN, type="nat", hook="postrouting",
                           prio=NAT_PRIORITY, policy="accept")),
        {"flush": {"chain": _obj(name=POSTROUTING_CHAIN)}},
        # the host's own 127.0.0.1 client, DNAT'ed onto a bridge: answer to the gateway
        _rule(POSTROUTING_CHAIN, DISPATCH_COMMENT, _match(_meta("oifname"), f"@{BRIDGES_SET}"),
              _match({"payload": {"protocol": "ip", "field": "saddr"}}, _prefix(LOCALHOST)),
              {"masquerade": None}),
        _add("chain", _obj(name=LOCALHOST_CHAIN, type="filter", hook="prerouting",
                           prio=RAW_PRIORITY, policy="accept")),
        {"flush": {"chain": _obj(name=LOCALHOST_CHAIN)}},
        # 127.0.0.0/8 is the host's own: never from a link (route_localnet is on for our
        # bridges, so without this a neighbour could reach 127.0.0.1 publishes: moby #45610)
        _rule(LOCALHOST_CHAIN, DISPATCH_COMMENT, _match(_meta("iifname"), "lo", op="!="),
              lo_net, _DROP),
    ]
    return commands


def container_marker(container_id: str) -> str:
    """The ledger's name for a container's published ports (``ct-ID12``)."""
    return f"ct-{container_id[:12]}"


def container_comment(name: str, container_id: str) -> str:
    """``tsubo container ID12 NAME`` (cut at nft's limit: the ID first, so it is never
    cut), on each element of the container's published ports."""
    return f"{_container_comment_prefix(container_id)}{name}"[:COMMENT_MAX]


def _container_comment_prefix(container_id: str) -> str:
    return f"tsubo container {container_id[:12]} "


def _port_elements(port: PublishedPort, comment: str, address: str,
                   address6: str) -> list[tuple[str, list[object]]]:
    """(map, element) of PORT in the two maps of its key: to ADDRESS (ADDRESS6 for an
    IPv6 binding) and to the container's port."""
    v6 = ":" in port.host_ip
    val: dict[str, object] = {"val": _port_key(port)}
    if comment:
        val["comment"] = comment
    key_name = _port_key_name(port)
    return [(f"{key_name}_addr", [{"elem": val}, address6 if v6 else address]),
            (f"{key_name}_port", [{"elem": val}, port.container_port])]


def _port_key_name(port: PublishedPort) -> str:
    """Which pair of maps holds PORT (``ports4``, ``bound4``, ``ports6``, ``bound6``)."""
    return ("ports" if port.is_wildcard else "bound") + ("6" if ":" in port.host_ip else "4")


def _port_key(port: PublishedPort) -> dict[str, object]:
    """PORT's key in its maps: ``proto . port``, or ``addr . proto . port``."""
    key: list[object] = [port.protocol, port.host_port]
    return {"concat": key if port.is_wildcard else [port.host_ip, *key]}


def _grouped_element_commands(verb: str,
                              elements: Iterable[tuple[str, object]]) -> list[Command]:
    """One VERB (add, delete) command per map for ELEMENTS, in the maps' order."""
    by_map: dict[str, list[object]] = {}
    for map_name, element in elements:
        by_map.setdefault(map_name, []).append(element)
    return [{verb: {"element": _obj(name=name, elem=by_map[name])}}
            for name in _PORT_MAP_NAMES if name in by_map]


def publish_batch(container_id: str, name: str, address: str,
                  ports: Sequence[PublishedPort], *, skeleton: bool = False,
                  address6: str = "") -> Batch:
    """One transaction: two map elements per port, to ADDRESS (or, for an IPv6 binding,
    ADDRESS6) and to the container's port (with SKELETON, the table's skeleton first: after
    a flush). No chain and no rule: its cost does not depend on how many containers publish
    already (no rule of theirs is read or rewritten)."""
    return {"nftables": [*(_skeleton() if skeleton else ()),
                         *_container_commands(container_id, name, address, ports,
                                              address6)]}


def _container_commands(container_id: str, name: str, address: str,
                        ports: Sequence[PublishedPort], address6: str = "") -> list[Command]:
    comment = container_comment(name, container_id)
    return _grouped_element_commands("add", (
        element for port in ports
        for element in _port_elements(port, comment, address, address6)))


def unpublish_batch(ports: Sequence[PublishedPort], address: str, address6: str = "") -> Batch:
    """Delete the map elements of PORTS published to ADDRESS (ADDRESS6), present or not:
    each is added first, so deleting it cannot fail (an add that finds the key with the same
    data is a no-op; with other data it fails, and :func:`unpublish` then deletes by
    listing)."""
    elements = [element for port in ports
                for element in _port_elements(port, "", address, address6)]
    commands: list[Command] = [
        _add("table", {"family": FAMILY, "name": TABLE}),
        *(_add("map", _obj(name=name, type=key_type, map=data_type))
          for name, key_type, data_type in _PORT_MAPS),
        *_grouped_element_commands("add", elements),
        *_grouped_element_commands("delete", (
            (f"{_port_key_name(port)}_{part}", _port_key(port))
            for port in ports for part in ("addr", "port"))),
    ]
    return {"nftables": commands}


class Publication:
    """A running container's published ports, as ``reload`` rewrites them."""

    __slots__ = ("address", "address6", "container_id", "name", "ports")

    def __init__(self, container_id: str, name: str, address: str,
                 ports: Sequence[PublishedPort], address6: str = "") -> None:
        self.container_id = container_id
        self.name = name
        self.address = address
        self.ports = list(ports)
        self.address6 = address6


def _operator_rules(table: Sequence[dict[str, object]] | None) -> list[Command]:
    """The operator's rules in our ``operator`` chain (from ``nft -j list table``), to add
    again after a rebuild: a reload never loses them."""
    commands: list[Command] = []
    for item in table or ():
        rule = item.get("rule")
        if isinstance(rule, dict) and rule.get("chain") == OPERATOR_CHAIN:
            commands.append(_add("rule", {k: v for k, v in rule.items() if k != "handle"}))
    return commands


def _accept_mark_rules(chains: Iterable[HostChain]) -> list[Command]:
    """One ``meta mark & M == M accept`` at the top of each given host chain."""
    expr = [_match({"&": [_meta("mark"), ACCEPT_MARK]}, ACCEPT_MARK), {"accept": None}]
    return [{"insert": {"rule": {"family": c.family, "table": c.table, "chain": c.name,
                                 "expr": expr, "comment": ACCEPT_MARK_COMMENT}}}
            for c in chains]


# ---------------------------------------------------------------------------------------------
# plans (pure)


def ruleset_for(
    networks: Iterable[FirewallNetwork], host_chains: Iterable[HostChain] = (),
    publications: Iterable[Publication] = (), operator_rules: Sequence[Command] = (),
) -> Batch:
    """The whole table for NETWORKS and the PUBLICATIONS of running containers, replacing
    whatever ``inet tsubo`` holds now (``add`` + ``delete`` table first: one transaction),
    with the operator's rules put back in ``operator``, plus the accept-mark rule for each
    chain of HOST_CHAINS (the ones that lack it; see :func:`survey`)."""
    commands: list[Command] = [
        _add("table", {"family": FAMILY, "name": TABLE}),
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
        *_skeleton(),
        *operator_rules,
    ]
    for net in networks:
        commands += _network_commands(net)
    for publication in publications:
        commands += _container_commands(publication.container_id, publication.name,
                                        publication.address, publication.ports,
                                        publication.address6)
    commands += _accept_mark_rules(host_chains)
    return {"nftables": commands}


def setup_batch(net: FirewallNetwork, host_chains: Iterable[HostChain] = ()) -> Batch:
    """Add (or refill) one network, leaving the others alone; idempotent."""
    return {"nftables": [*_skeleton(), *_network_commands(net), *_accept_mark_rules(host_chains)]}


def teardown_batch(net: FirewallNetwork) -> Batch:
    """Delete exactly the network's chains and elements (present or not: each is added
    first, so deleting it cannot fail with ENOENT)."""
    out_chain, in_chain, nat_chain = chain_names(net)
    host_chain = host_chain_name(net)
    commands: list[Command] = [
        _add("table", {"family": FAMILY, "name": TABLE}),
        _add("set", _obj(name=BRIDGES_SET, type="ifname")),
        _add("map", _obj(name=FROM_BRIDGE_MAP, type="ifname", map="verdict")),
        _add("map", _obj(name=TO_BRIDGE_MAP, type="ifname", map="verdict")),
        _add("map", _obj(name=TO_HOST_MAP, type="ifname", map="verdict")),
        _add("chain", _obj(name=out_chain)),
        _add("chain", _obj(name=in_chain)),
        _add("chain", _nat_chain(nat_chain)),
        _add("chain", _obj(name=host_chain)),
    ]
    elements = _elements(net, internal=True)  # every kind a network may have had
    for name, element in elements:
        commands.append(_add("element", _obj(name=name, elem=[element])))
    for name, _ in elements:  # elements before chains: a map element holds its jump target
        commands.append({"delete": {"element": _obj(name=name, elem=[net.bridge_name])}})
    for chain in (out_chain, in_chain, nat_chain, host_chain):
        commands += [{"flush": {"chain": _obj(name=chain)}},
                     {"delete": {"chain": _obj(name=chain)}}]
    return {"nftables": commands}


# ---------------------------------------------------------------------------------------------
# the host's forward chains


class HostChain:
    """A forward base chain of someone else's nft table, or a ``filter FORWARD`` chain of
    iptables (``xtables`` names the binary that must edit it)."""

    __slots__ = ("family", "has_rule", "name", "rule_handles", "table", "xtables")

    def __init__(self, family: str, table: str, name: str, *, xtables: str = "",
                 rule_handles: Sequence[int] = (), has_rule: bool = False) -> None:
        self.family = family
        self.table = table
        self.name = name
        self.xtables = xtables
        self.rule_handles = list(rule_handles)  # our accept-mark rules in it (nft chains)
        self.has_rule = has_rule or bool(rule_handles)

    def __repr__(self) -> str:
        via = f" via {self.xtables}" if self.xtables else ""
        return f"HostChain({self.family} {self.table} {self.name}{via})"


def survey(ruleset: Sequence[dict[str, object]], legacy: Iterable[str] = ()) -> list[HostChain]:
    """The host forward chains that need (or hold) our accept-mark rule, from ``nft -j list
    ruleset`` (pure). LEGACY: ``"ip"``/``"ip6"`` when iptables-legacy has a filter table.

    Native chains: type filter, hook forward, family ip/ip6/inet, not our table, priority
    >= ours (a chain that runs before ours cannot see the mark). ``ip filter FORWARD`` and
    ``ip6 filter FORWARD`` are iptables-nft's and are edited through it."""
    chains: dict[tuple[str, str, str], HostChain] = {}
    for item in ruleset:
        chain = item.get("chain")
        if isinstance(chain, dict):
            family, table, name = chain.get("family"), chain.get("table"), chain.get("name")
            if (
                family not in ("ip", "ip6", "inet")
                or chain.get("hook") != "forward"
                or chain.get("type") != "filter"
                or (family == FAMILY and table == TABLE)
                or not isinstance(chain.get("prio"), int)
                or chain["prio"] < FORWARD_PRIORITY
            ):
                continue
            key = (str(family), str(table), str(name))
            via = ""
            if family in ("ip", "ip6") and table == "filter" and name == "FORWARD":
                via = XTABLES[("nft", str(family))]
            chains[key] = HostChain(*key, xtables=via)
    for item in ruleset:
        rule = item.get("rule")
        if isinstance(rule, dict) and rule.get("comment") == ACCEPT_MARK_COMMENT:
            key = (str(rule.get("family")), str(rule.get("table")), str(rule.get("chain")))
            if key in chains and isinstance(rule.get("handle"), int):
                chains[key].rule_handles.append(rule["handle"])
                chains[key].has_rule = True
    found = list(chains.values())
    for family in legacy:
        found.append(HostChain(family, "filter", "FORWARD", xtables=XTABLES[("legacy", family)]))
    return found


def _survey_host(netns: str | None,
                 ruleset: Sequence[dict[str, object]] | None = None) -> list[HostChain]:
    legacy = [f for f in ("ip", "ip6") if "filter" in nftables.legacy_tables(f, netns=netns)]
    chains = survey(nftables.list_ruleset(netns=netns, terse=True) if ruleset is None
                    else ruleset, legacy)
    usable = []
    for chain in chains:
        if chain.xtables and not nftables.has_tool(chain.xtables):
            if chain.xtables.endswith("-legacy"):
                continue  # legacy tables without the legacy binary: nothing can edit them
            chain.xtables = ""  # no iptables-nft binary: a native rule will do
        usable.append(chain)
    return usable


def _xtables_ensure(chain: HostChain, netns: str | None) -> None:
    check = nftables.xtables(chain.xtables, ["-C", chain.name, *XTABLES_RULE], netns=netns)
    if check.exit_code == 0:
        return
    insert = nftables.xtables(chain.xtables, ["-I", chain.name, "1", *XTABLES_RULE],
                              netns=netns)
    if insert.exit_code != 0:
        raise insert.error(chain.xtables)


def _xtables_remove(chain: HostChain, netns: str | None) -> None:
    for _ in range(64):  # one per call; a bound instead of trusting the exit code forever
        result = nftables.xtables(chain.xtables, ["-D", chain.name, *XTABLES_RULE],
                                  netns=netns)
        if result.exit_code != 0:
            return


# ---------------------------------------------------------------------------------------------
# apply


def setup_network(net: FirewallNetwork, *, netns: str | None = None) -> None:
    """Add NET's rules (one nft transaction) and make sure every host forward chain lets
    what they accept through. Idempotent; other networks are not touched."""
    host = _survey_host(netns)
    native = [c for c in host if not c.xtables and not c.has_rule]
    nftables.apply(setup_batch(net, native), netns=netns)
    for chain in host:
        if chain.xtables:
            _xtables_ensure(chain, netns)


def teardown_network(net: FirewallNetwork, *, netns: str | None = None) -> None:
    """Remove exactly NET's chains and elements; success when they (or the table) are gone
    already. The accept-mark rules stay for the other networks (see :func:`remove_all`)."""
    if nftables.list_table(FAMILY, TABLE, netns=netns, terse=True) is None:
        return
    nftables.apply(teardown_batch(net), netns=netns)


def reload(networks: Iterable[FirewallNetwork], *, publications: Iterable[Publication] = (),
           netns: str | None = None) -> None:
    """Rebuild the table for NETWORKS and PUBLICATIONS in one transaction (keeping the
    operator's rules) and restore the accept-mark rules, e.g. after ``nft flush ruleset``
    or a host firewall restart."""
    host = _survey_host(netns)
    native = [c for c in host if not c.xtables and not c.has_rule]
    operator = _operator_rules(nftables.list_table(FAMILY, TABLE, netns=netns, terse=True))
    nftables.apply(ruleset_for(networks, native, publications, operator), netns=netns)
    for chain in host:
        if chain.xtables:
            _xtables_ensure(chain, netns)


#: the bridges (netns, name, ifindex) this process has seen ``route_localnet`` on
_route_localnet_on: set[tuple[str | None, str, int]] = set()


def _ensure_route_localnet(bridge: str, netns: str | None) -> None:
    """``route_localnet=1`` on BRIDGE, looked at once per bridge by this process (a bridge
    made again has a new ifindex; an operator who turns it off again is not noticed until
    the next monitor): each ``/proc/sys/net`` lookup compares with a cached entry per
    network namespace, ~0.5 ms of a publish at 60 containers and growing."""
    import socket

    from tsubo.kernel import procfs

    try:
        index = socket.if_nametoindex(bridge)
    except OSError:
        index = 0  # the write below names what is wrong
    if (netns, bridge, index) in _route_localnet_on:
        return
    procfs.ensure_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1",
                         operation="enable route_localnet")
    if index:
        _route_localnet_on.add((netns, bridge, index))


def publish(container_id: str, name: str, address: str, ports: Sequence[PublishedPort], *,
            bridge: str = "", netns: str | None = None, address6: str = "") -> int:
    """Make PORTS reach ADDRESS (one nft transaction). BRIDGE (the container's first
    network's) gets ``route_localnet``: the host's own 127.0.0.1 clients are DNAT'ed onto
    it, and the kernel routes 127.0.0.0/8 to a link only where that is on (the drop in
    ``localhost`` keeps others from using it). Returns the pid of the ``nft`` that
    committed it."""
    if bridge:
        _ensure_route_localnet(bridge, netns)
    from tsubo.errors import TsuboError

    try:  # the skeleton is there since the network's setup: the short batch (~3 ms)
        return nftables.apply(publish_batch(container_id, name, address, ports,
                                            address6=address6), netns=netns)
    except TsuboError:  # a flushed table: the skeleton too (a failed batch changed nothing)
        return nftables.apply(publish_batch(container_id, name, address, ports,
                                            skeleton=True, address6=address6), netns=netns)


def unpublish(container_id: str, ports: Sequence[PublishedPort], *, address: str = "",
              address6: str = "", netns: str | None = None) -> None:
    """Remove the container's map elements for PORTS, published to ADDRESS and ADDRESS6
    (one transaction; "already gone", a flushed table included, is success). Should that
    fail (an address not given or changed, or something else holding one of the keys: the
    "add first" clashes), the table is listed and exactly the elements whose comment names
    the container are deleted."""
    from tsubo.errors import TsuboError

    if address or address6:
        try:
            nftables.apply(unpublish_batch(ports, address, address6), netns=netns)
            return
        except TsuboError:
            pass  # an element's data is not what we added: delete by listing
    found = nftables.list_table(FAMILY, TABLE, netns=netns)
    commands = _owned_by(found or [], container_id)
    if commands:
        nftables.apply({"nftables": commands}, netns=netns)


def _owned_by(table: Sequence[dict[str, object]], container_id: str) -> list[Command]:
    """Deletes of the published-port elements whose comment names CONTAINER_ID
    (:func:`container_comment`), as listed by ``nft -j list table`` (pure)."""
    prefix = _container_comment_prefix(container_id)
    found: list[tuple[str, object]] = []
    for item in table:
        found_map = item.get("map")
        if not isinstance(found_map, dict) or found_map.get("name") not in _PORT_MAP_NAMES:
            continue
        elements = found_map.get("elem")
        for element in elements if isinstance(elements, list) else ():
            key = element[0] if isinstance(element, list) and element else None
            inner = key.get("elem") if isinstance(key, dict) else None
            comment = inner.get("comment") if isinstance(inner, dict) else None
            if isinstance(comment, str) and comment.startswith(prefix):
                found.append((str(found_map["name"]), inner["val"]))  # type: ignore[index]
    return _grouped_element_commands("delete", found)


def damage(networks: Iterable[FirewallNetwork], *, netns: str | None = None) -> list[str]:
    """What is missing of tsubo's firewall for NETWORKS (empty: all of it is there): the
    table, a network's chains or its bridge's dispatch elements, the accept-mark rule of a
    host forward chain. One ``nft -t list ruleset`` (no set elements: published ports are
    thousands of them), one ``list map`` of the bridges' dispatch, plus ``iptables -C`` for
    the chains iptables owns. What a :func:`reload` repairs."""
    ruleset = nftables.list_ruleset(netns=netns, terse=True)
    ours = [item for item in ruleset
            if any(isinstance(body, dict) and body.get("family") == FAMILY
                   and body.get("table", body.get("name")) == TABLE
                   for body in item.values())]
    chains = {str(chain.get("name")) for item in ours
              if isinstance(chain := item.get("chain"), dict)}
    problems = []
    if not any(isinstance(item.get("table"), dict) for item in ours):
        problems.append(f"table {FAMILY} {TABLE} is gone")
    else:
        dispatch = _dispatched_bridges(
            nftables.list_map(FAMILY, TABLE, FROM_BRIDGE_MAP, netns=netns) or [])
        for net in networks:
            out_chain, in_chain, _ = chain_names(net)
            if {FORWARD_CHAIN, out_chain, in_chain} - chains or \
                    net.bridge_name not in dispatch:
                problems.append(f"the rules of network {net.name} are gone")
    for chain in _survey_host(netns, ruleset):
        if chain.xtables:
            check = nftables.xtables(chain.xtables, ["-C", chain.name, *XTABLES_RULE],
                                     netns=netns)
            if check.exit_code != 0:
                problems.append(f"{chain!r} lacks tsubo's accept rule")
        elif not chain.has_rule:
            problems.append(f"{chain!r} lacks tsubo's accept rule")
    return problems


def _dispatched_bridges(ours: Sequence[dict[str, object]]) -> set[str]:
    """The bridges with an element in our ``from_bridge`` map (``nft -j`` lists one as
    ``[{"elem": {"val": BR, "comment": ...}}, {"jump": ...}]``, or ``[BR, {"jump": ...}]``
    without a comment)."""
    found: set[str] = set()
    for item in ours:
        table_map = item.get("map")
        if not isinstance(table_map, dict) or table_map.get("name") != FROM_BRIDGE_MAP:
            continue
        for element in table_map.get("elem") or []:
            key: object = element[0] if isinstance(element, list) and element else None
            if isinstance(key, dict):
                inner = key.get("elem")
                key = inner.get("val") if isinstance(inner, dict) else None
            if isinstance(key, str):
                found.add(key)
    return found


def remove_all(*, netns: str | None = None) -> None:
    """Delete the table and every accept-mark rule (nft ones by handle, xtables ones with
    ``-D``): tsubo's whole firewall footprint, nothing else."""
    host = _survey_host(netns)
    commands: list[Command] = [
        _add("table", {"family": FAMILY, "name": TABLE}),
        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
    ]
    for chain in host:
        if not chain.xtables:
            commands += [{"delete": {"rule": {"family": chain.family, "table": chain.table,
                                              "chain": chain.name, "handle": handle}}}
                         for handle in chain.rule_handles]
    nftables.apply({"nftables": commands}, netns=netns)
    for chain in host:
        if chain.xtables:
            _xtables_remove(chain, netns)
