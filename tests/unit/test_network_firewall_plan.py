"""The nft JSON batches of tsubo.network.firewall: pure, no root, no kernel."""

from __future__ import annotations

from typing import Any

from tsubo.network import firewall
from tsubo.network.models import Network
from tsubo.network.ports import PublishedPort

ID1 = "a1" * 32
ID2 = "b2" * 32
MARK = firewall.ACCEPT_MARK
T = {"family": "inet", "table": "tsubo"}


def net(nid: str = ID1, name: str = "web", subnet: str = "10.88.1.0/24",
        bridge: str = "tsbweb", internal: bool = False) -> Network:
    gateway = subnet.rpartition(".")[0] + ".1"
    return Network(nid, name, subnet, gateway, bridge, internal=internal)


def commands(batch: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    assert list(batch) == ["nftables"]
    return batch["nftables"]


def rules(batch: dict[str, list[dict[str, Any]]], chain: str) -> list[list[Any]]:
    return [c["add"]["rule"]["expr"] for c in commands(batch)
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


#: the skeleton's chains flushed and refilled after forward and input (published ports)
SKELETON_FLUSHED = ["publish", "prerouting", "output", "postrouting", "localhost"]
BASE_CHAINS = ("forward", "input", *SKELETON_FLUSHED)

MARK_ACCEPT = [{"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), MARK]}}},
               {"accept": None}]


def test_owner_comment_and_chain_names() -> None:
    n = net()
    assert firewall.owner_comment(n) == f"tsubo network web {ID1[:12]}"
    assert firewall.chain_names(n) == (f"nw-{ID1[:12]}-out", f"nw-{ID1[:12]}-in",
                                       f"nw-{ID1[:12]}-nat")
    assert len(firewall.owner_comment(net(name="n" * 200))) <= 128


def test_setup_batch_skeleton_is_exact() -> None:
    batch = firewall.setup_batch(net())
    head = commands(batch)[:14]
    assert head == [
        {"add": {"table": {"family": "inet", "name": "tsubo"}}},
        {"add": {"set": {**T, "name": "bridges", "type": "ifname"}}},
        {"add": {"map": {**T, "name": "from_bridge", "type": "ifname", "map": "verdict"}}},
        {"add": {"map": {**T, "name": "to_bridge", "type": "ifname", "map": "verdict"}}},
        {"add": {"map": {**T, "name": "to_host", "type": "ifname", "map": "verdict"}}},
        # the operator's chain: added (never flushed), jumped to before anything we accept
        {"add": {"chain": {**T, "name": "operator"}}},
        {"add": {"chain": {**T, "name": "forward", "type": "filter", "hook": "forward",
                           "prio": -10, "policy": "accept"}}},
        {"flush": {"chain": {**T, "name": "forward"}}},
        {"add": {"rule": {**T, "chain": "forward", "comment": "tsubo",
                          "expr": [{"jump": {"target": "operator"}}]}}},
        {"add": {"rule": {**T, "chain": "forward", "comment": "tsubo",
                          "expr": [{"vmap": {"key": meta("iifname"), "data": "@from_bridge"}}]}}},
        {"add": {"rule": {**T, "chain": "forward", "comment": "tsubo",
                          "expr": [{"vmap": {"key": meta("oifname"), "data": "@to_bridge"}}]}}},
        {"add": {"chain": {**T, "name": "input", "type": "filter", "hook": "input",
                           "prio": -10, "policy": "accept"}}},
        {"flush": {"chain": {**T, "name": "input"}}},
        {"add": {"rule": {**T, "chain": "input", "comment": "tsubo",
                          "expr": [{"vmap": {"key": meta("iifname"), "data": "@to_host"}}]}}},
    ]


def test_setup_batch_network_rules_are_exact() -> None:
    n = net()
    out, into, nat = firewall.chain_names(n)
    batch = firewall.setup_batch(n)
    assert rules(batch, out) == [
        [match(meta("oifname"), "tsbweb"), *MARK_ACCEPT],
        # a port published by another network's container (reached through the host)
        [match({"ct": {"key": "status"}}, "dnat", "in"), *MARK_ACCEPT],
        [match(meta("oifname"), "@bridges"), {"drop": None}],
        MARK_ACCEPT,
    ]
    assert rules(batch, into) == [
        [match({"ct": {"key": "state"}}, ["established", "related"], "in"), *MARK_ACCEPT],
        [match({"ct": {"key": "status"}}, "dnat", "in"), *MARK_ACCEPT],
        [{"drop": None}],
    ]
    subnet = match({"payload": {"protocol": "ip", "field": "saddr"}},
                   {"prefix": {"addr": "10.88.1.0", "len": 24}})
    assert rules(batch, nat) == [
        # hairpin: its own or a neighbour's published port through a host address
        [subnet, match(meta("oifname"), "tsbweb"),
         match({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None}],
        [subnet, match(meta("oifname"), "tsbweb", "!="), {"masquerade": None}],
    ]
    nat_chain = [c["add"]["chain"] for c in commands(batch)
                 if "add" in c and c["add"].get("chain", {}).get("name") == nat]
    assert nat_chain == [{**T, "name": nat, "type": "nat", "hook": "postrouting", "prio": 100,
                          "policy": "accept"}]
    # chains are flushed before they are filled: setup is idempotent
    flushed = [c["flush"]["chain"]["name"] for c in commands(batch) if "flush" in c]
    assert flushed == ["forward", "input", *SKELETON_FLUSHED, out, into, nat]
    # a network that is not internal has no host chain: the host's own policy applies
    assert firewall.host_chain_name(n) not in str(batch)


def test_every_rule_and_element_names_its_owner() -> None:
    n = net()
    batch = firewall.setup_batch(n)
    owner = firewall.owner_comment(n)
    for c in commands(batch):
        body = c.get("add", {})
        if "rule" in body:
            expected = "tsubo" if body["rule"]["chain"] in BASE_CHAINS else owner
            assert body["rule"]["comment"] == expected
    elements = [c["add"]["element"] for c in commands(batch) if "element" in c.get("add", {})]
    assert elements == [
        {**T, "name": "bridges", "elem": [{"elem": {"val": "tsbweb", "comment": owner}}]},
        {**T, "name": "from_bridge", "elem": [[{"elem": {"val": "tsbweb", "comment": owner}},
                                               {"jump": {"target": f"nw-{ID1[:12]}-out"}}]]},
        {**T, "name": "to_bridge", "elem": [[{"elem": {"val": "tsbweb", "comment": owner}},
                                             {"jump": {"target": f"nw-{ID1[:12]}-in"}}]]},
    ]


def test_internal_network_has_no_way_out_and_no_masquerade() -> None:
    n = net(internal=True)
    out, into, nat = firewall.chain_names(n)
    batch = firewall.setup_batch(n)
    assert rules(batch, out) == [
        [match(meta("oifname"), "tsbweb"), *MARK_ACCEPT],
        [match(meta("oifname"), "@bridges"), {"drop": None}],
        [{"drop": None}],
    ]
    assert rules(batch, into) == [[{"drop": None}]]
    assert rules(batch, nat) == []
    # the only masquerade is the skeleton's, for the host's own 127.0.0.1 clients
    assert "masquerade" not in str([c for c in commands(batch)
                                    if c.get("add", {}).get("rule", {}).get("chain")
                                    not in BASE_CHAINS])
    assert nat not in str(batch)


def test_internal_network_reaches_no_host_address_but_its_resolver() -> None:
    n = net(internal=True)
    host = firewall.host_chain_name(n)
    batch = firewall.setup_batch(n)
    assert rules(batch, host) == [
        # replies within connections the host opened to the network, nothing else
        [match({"ct": {"key": "ip daddr", "dir": "original"}},
               {"prefix": {"addr": "10.88.1.0", "len": 24}}),
         match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
        # the monitor's resolver: UDP and TCP 53 on the gateway, served by a socket bound
        # to it
        *([match({"payload": {"protocol": "ip", "field": "daddr"}}, "10.88.1.1"),
           match({"payload": {"protocol": transport, "field": "dport"}}, 53),
           match({"socket": {"key": "wildcard"}}, 0), {"accept": None}]
          for transport in ("udp", "tcp")),
        [{"drop": None}],
    ]
    added = [c["add"] for c in commands(batch) if "add" in c]
    assert {"chain": {**T, "name": host}} in added  # a regular chain, reached by jump only
    owner = firewall.owner_comment(n)
    assert {"element": {**T, "name": "to_host", "elem": [[
        {"elem": {"val": "tsbweb", "comment": owner}}, {"jump": {"target": host}}]]}} in added
    flushed = [c["flush"]["chain"]["name"] for c in commands(batch) if "flush" in c]
    assert flushed == ["forward", "input", *SKELETON_FLUSHED, *firewall.chain_names(n)[:2],
                       host]
    # the whole ruleset (reload) carries the same chain; a normal network beside it none
    other = net(ID2, "db", "10.88.2.0/24", "tsbdb")
    whole = firewall.ruleset_for([n, other])
    assert rules(whole, host) == rules(batch, host)
    assert rules(whole, firewall.host_chain_name(other)) == []
    to_host = [c["add"]["element"] for c in commands(whole)
               if c.get("add", {}).get("element", {}).get("name") == "to_host"]
    assert [e["elem"][0][0]["elem"]["val"] for e in to_host] == ["tsbweb"]


def test_ipv6_subnet_masquerades_with_ip6_saddr() -> None:
    batch = firewall.setup_batch(net(subnet="fd00:1::/64"))
    nat = firewall.chain_names(net())[2]
    assert rules(batch, nat)[0][0] == match({"payload": {"protocol": "ip6", "field": "saddr"}},
                                            {"prefix": {"addr": "fd00:1::", "len": 64}})


def test_two_networks_are_isolated_through_the_shared_bridge_set() -> None:
    one, two = net(), net(ID2, "db", "10.88.2.0/24", "tsbdb")
    batch = firewall.ruleset_for([one, two])
    cmds = commands(batch)
    # the whole ruleset replaces the table in the same transaction
    assert cmds[0] == {"add": {"table": {"family": "inet", "name": "tsubo"}}}
    assert cmds[1] == {"delete": {"table": {"family": "inet", "name": "tsubo"}}}
    bridges = [c["add"]["element"]["elem"][0]["elem"]["val"] for c in cmds
               if c.get("add", {}).get("element", {}).get("name") == "bridges"]
    assert bridges == ["tsbweb", "tsbdb"]
    for n in (one, two):
        out = firewall.chain_names(n)[0]
        # same bridge first, then any other tsubo bridge is dropped, then the way out
        assert rules(batch, out)[0] == [match(meta("oifname"), n.bridge_name), *MARK_ACCEPT]
        assert rules(batch, out)[2] == [match(meta("oifname"), "@bridges"), {"drop": None}]
    # the two networks' objects do not overlap: adding one never touches the other
    setup_one = str(firewall.setup_batch(one))
    assert ID2[:12] not in setup_one and "tsbdb" not in setup_one


def test_teardown_batch_deletes_only_that_network() -> None:
    one, two = net(), net(ID2, "db", "10.88.2.0/24", "tsbdb")
    out, into, nat = firewall.chain_names(one)
    cmds = commands(firewall.teardown_batch(one))
    host = firewall.host_chain_name(one)
    deletes = [c["delete"] for c in cmds if "delete" in c]
    assert deletes == [
        {"element": {**T, "name": "bridges", "elem": ["tsbweb"]}},
        {"element": {**T, "name": "from_bridge", "elem": ["tsbweb"]}},
        {"element": {**T, "name": "to_bridge", "elem": ["tsbweb"]}},
        {"element": {**T, "name": "to_host", "elem": ["tsbweb"]}},
        {"chain": {**T, "name": out}},
        {"chain": {**T, "name": into}},
        {"chain": {**T, "name": nat}},
        {"chain": {**T, "name": host}},
    ]
    text = str(cmds)
    assert ID2[:12] not in text and "tsbdb" not in text and two.name not in text.split("'")
    # no table, chain or rule of anyone else is deleted or flushed
    assert all(d.get("chain", {"name": out})["name"] in (out, into, nat, host)
               for d in deletes)
    flushed = [c["flush"]["chain"]["name"] for c in cmds if "flush" in c]
    assert flushed == [out, into, nat, host]
    # each deleted object is added first in the same batch: "already gone" cannot fail
    added = [c["add"] for c in cmds if "add" in c]
    assert {"chain": {**T, "name": out}} in added
    assert not any("rule" in a for a in added)


def test_survey_finds_host_forward_chains_that_run_after_ours() -> None:
    ruleset: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6"}},
        {"chain": {"family": "inet", "table": "hostfilter", "name": "forward", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "early", "name": "fw", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": -200, "policy": "drop"}},
        {"chain": {"family": "inet", "table": "hostfilter", "name": "input", "handle": 2,
                   "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "bridge", "table": "b", "name": "fw", "handle": 1,
                   "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
        {"chain": {"family": "inet", "table": "tsubo", "name": "forward", "handle": 3,
                   "type": "filter", "hook": "forward", "prio": -10, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "hostfilter", "chain": "forward", "handle": 7,
                  "comment": firewall.ACCEPT_MARK_COMMENT, "expr": []}},
    ]
    found = firewall.survey(ruleset, legacy=["ip"])
    summary = [(c.family, c.table, c.name, c.xtables, c.rule_handles) for c in found]
    assert summary == [
        ("inet", "hostfilter", "forward", "", [7]),
        ("ip", "filter", "FORWARD", "iptables-nft", []),
        ("ip", "filter", "FORWARD", "iptables-legacy", []),
    ]


def test_accept_mark_rule_goes_to_the_top_of_host_chains() -> None:
    chain = firewall.HostChain("inet", "hostfilter", "forward")
    cmds = commands(firewall.setup_batch(net(), [chain]))
    assert cmds[-1] == {"insert": {"rule": {
        "family": "inet", "table": "hostfilter", "chain": "forward",
        "expr": [match({"&": [meta("mark"), MARK]}, MARK), {"accept": None}],
        "comment": firewall.ACCEPT_MARK_COMMENT}}}
    assert firewall.XTABLES_RULE == ("-m", "mark", "--mark", "0x1000000/0x1000000", "-m",
                                     "comment", "--comment", firewall.ACCEPT_MARK_COMMENT,
                                     "-j", "ACCEPT")


# --- published ports ----------------------------------------------------------------------

CID = "c3" * 32


def published() -> list[Any]:
    return [PublishedPort("0.0.0.0", 8080, 80, "tcp"),
            PublishedPort("127.0.0.1", 5353, 53, "udp")]


def test_publish_skeleton_dnats_local_destinations_and_drops_foreign_localhost() -> None:
    batch = firewall.setup_batch(net())
    local = [[match(meta("nfproto"), family),
              match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
              {"jump": {"target": "publish"}}] for family in ("ipv4", "ipv6")]
    assert rules(batch, "prerouting") == local
    assert rules(batch, "output") == local
    proto_port = [meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]

    def dnat(family: str, maps: str, *key: object) -> list[object]:
        concat = {"concat": [*key, *proto_port]}
        return [match(meta("nfproto"), "ipv6" if family == "ip6" else "ipv4"),
                {"dnat": {"family": family,
                          "addr": {"map": {"key": concat, "data": f"@{maps}_addr"}},
                          "port": {"map": {"key": concat, "data": f"@{maps}_port"}}}}]

    # one address before every address, per family; no rule per container or port
    assert rules(batch, "publish") == [
        dnat("ip", "bound4", {"payload": {"protocol": "ip", "field": "daddr"}}),
        dnat("ip", "ports4"),
        dnat("ip6", "bound6", {"payload": {"protocol": "ip6", "field": "daddr"}}),
        dnat("ip6", "ports6"),
    ]
    loopback = {"prefix": {"addr": "127.0.0.0", "len": 8}}
    assert rules(batch, "postrouting") == [[
        match(meta("oifname"), "@bridges"),
        match({"payload": {"protocol": "ip", "field": "saddr"}}, loopback),
        {"masquerade": None}]]
    assert rules(batch, "localhost") == [[
        match(meta("iifname"), "lo", "!="),
        match({"payload": {"protocol": "ip", "field": "daddr"}}, loopback), {"drop": None}]]
    chains = {c["add"]["chain"]["name"]: c["add"]["chain"] for c in commands(batch)
              if "chain" in c.get("add", {})}
    assert chains["localhost"]["prio"] == -300 and chains["localhost"]["hook"] == "prerouting"
    assert chains["prerouting"]["type"] == "nat" and chains["prerouting"]["prio"] == -100
    assert chains["output"]["hook"] == "output"


def test_publish_batch_is_two_elements_per_port_and_no_rule() -> None:
    batch = firewall.publish_batch(CID, "web1", "10.88.1.2", published())
    comment = f"tsubo container {CID[:12]} web1"
    wildcard = {"elem": {"val": {"concat": ["tcp", 8080]}, "comment": comment}}
    bound = {"elem": {"val": {"concat": ["127.0.0.1", "udp", 5353]}, "comment": comment}}
    assert commands(batch) == [
        {"add": {"element": {**T, "name": "bound4_addr", "elem": [[bound, "10.88.1.2"]]}}},
        {"add": {"element": {**T, "name": "bound4_port", "elem": [[bound, 53]]}}},
        {"add": {"element": {**T, "name": "ports4_addr", "elem": [[wildcard, "10.88.1.2"]]}}},
        {"add": {"element": {**T, "name": "ports4_port", "elem": [[wildcard, 80]]}}},
    ]
    # one command per map whatever the number of ports: 32 ports are still two commands
    many = [PublishedPort("0.0.0.0", 20000 + n, 1000 + n, "tcp") for n in range(32)]
    assert len(commands(firewall.publish_batch(CID, "web1", "10.88.1.2", many))) == 2
    # the skeleton (already there since the network's setup) only when asked for, after a
    # flushed table
    again = commands(firewall.publish_batch(CID, "web1", "10.88.1.2", published(),
                                            skeleton=True))
    assert again == [*firewall._skeleton(), *commands(batch)]


def test_container_comment_keeps_the_id_whatever_the_name() -> None:
    assert firewall.container_comment("w" * 128, CID).startswith(f"tsubo container {CID[:12]} ")
    assert len(firewall.container_comment("w" * 128, CID)) == firewall.COMMENT_MAX
    assert firewall.container_marker(CID) == f"ct-{CID[:12]}"


def test_unpublish_batch_deletes_exactly_the_container_elements() -> None:
    cmds = commands(firewall.unpublish_batch(published(), "10.88.1.2"))
    deletes = [c["delete"] for c in cmds if "delete" in c]
    assert deletes == [
        {"element": {**T, "name": "bound4_addr", "elem": [{"concat": ["127.0.0.1", "udp", 5353]}]}},
        {"element": {**T, "name": "bound4_port", "elem": [{"concat": ["127.0.0.1", "udp", 5353]}]}},
        {"element": {**T, "name": "ports4_addr", "elem": [{"concat": ["tcp", 8080]}]}},
        {"element": {**T, "name": "ports4_port", "elem": [{"concat": ["tcp", 8080]}]}},
    ]
    # each is added first with the same data, so "already gone" cannot fail
    added = [c["add"]["element"] for c in cmds if "element" in c.get("add", {})]
    assert [a["elem"][0][1] for a in added] == ["10.88.1.2", 53, "10.88.1.2", 80]
    assert not any("rule" in c.get("add", {}) or "chain" in c.get("add", {}) for c in cmds)


def test_reload_keeps_the_operator_rules_and_running_publications() -> None:
    operator_rule: dict[str, object] = {"rule": {**T, "chain": "operator", "handle": 9,
                                                 "expr": [{"drop": None}]}}
    whole = firewall.ruleset_for(
        [net()], (), [firewall.Publication(CID, "web1", "10.88.1.2", published())],
        firewall._operator_rules([operator_rule, {"rule": {**T, "chain": "forward",
                                                           "handle": 3, "expr": []}}]))
    assert rules(whole, "operator") == [[{"drop": None}]]
    elements = [c["add"]["element"]["name"] for c in commands(whole)
                if c.get("add", {}).get("element", {}).get("name") in firewall._PORT_MAP_NAMES]
    assert elements == ["bound4_addr", "bound4_port", "ports4_addr", "ports4_port"]
    added_operator = [c["add"]["rule"] for c in commands(whole)
                      if c.get("add", {}).get("rule", {}).get("chain") == "operator"]
    assert "handle" not in added_operator[0]


def test_owned_by_deletes_only_the_elements_naming_the_container() -> None:
    ours = {"concat": ["tcp", 8080]}
    mine = f"tsubo container {CID[:12]} web1"
    listed: list[dict[str, Any]] = [
        {"map": {**T, "name": "ports4_addr", "elem": [
            [{"elem": {"val": ours, "comment": mine}}, "10.88.1.2"],
            [{"concat": ["tcp", 8097]}, "10.88.1.3"],  # without a comment: not ours
            [{"elem": {"val": {"concat": ["udp", 53]},
                       "comment": "tsubo container 0123456789ab web2"}}, "10.88.1.3"]]}},
        {"map": {**T, "name": "ports4_port", "elem": [
            [{"elem": {"val": ours, "comment": mine}}, 80]]}},
        {"map": {**T, "name": "from_bridge", "elem": [
            [{"elem": {"val": "tsbweb", "comment": mine}}, {"jump": {"target": "x"}}]]}},
    ]
    assert firewall._owned_by(listed, CID) == [
        {"delete": {"element": {**T, "name": "ports4_addr", "elem": [ours]}}},
        {"delete": {"element": {**T, "name": "ports4_port", "elem": [ours]}}},
    ]
    assert firewall._owned_by([], CID) == []
