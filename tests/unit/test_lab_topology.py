"""Topology files (engine/lab/topology.py), their pictures and the pure lab plans: no
root, nothing deployed.

Every bad file must give one error, on one line, naming the file's line and the problem.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from tsubo.engine.lab.graph import render
from tsubo.engine.lab.manager import node_run_options
from tsubo.engine.lab.topology import Topology, parse_topology, read_topology
from tsubo.errors import InvalidArgument
from tsubo.network import links

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: a file in containerlab's documented form, with nothing tsubo-specific
CONTAINERLAB_DOC = (Path(__file__).resolve().parents[1] / "data"
                    / "containerlab-doc.clab.yml").read_text()


def parse(text: str) -> Topology:
    return parse_topology(textwrap.dedent(text), "/labs/t.clab.yml")


def error_of(text: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        parse(text)
    message = caught.value.message()
    assert "\n" not in message
    return message


def test_a_containerlab_file_reads_unchanged() -> None:
    topology = parse(CONTAINERLAB_DOC)
    assert topology.name == "srl02"
    assert topology.mgmt.network == "custom_mgmt"
    assert topology.mgmt.ipv4_subnet == "172.100.100.0/24"
    n1, n2 = topology.nodes["n1"], topology.nodes["n2"]
    assert n1.image == "alpine:3" and dict(n1.env) == {"ENV1": "VAL1"}
    assert n2.cmd == ("ash", "-c", "sleep infinity")
    assert n2.exec == ("ip address add 192.168.0.2/24 dev eth1",)
    assert [(str(link.a), str(link.b), link.mtu) for link in topology.links] == [
        ("n1:eth1", "n2:eth1", 9500), ("n1:eth2", "n2:eth2", 1500)]
    assert topology.container_name("n1") == "clab-srl02-n1"


def test_defaults_kinds_and_node_merge_in_that_order() -> None:
    topology = parse("""\
        name: m
        topology:
          defaults: {image: a, env: {A: "1", B: "1"}, binds: ["/x:/x"]}
          kinds:
            linux: {image: b, env: {B: "2"}}
          nodes:
            n: {env: {C: "3"}, binds: ["/y:/y"], memory: 64Mb, cpu: 0.5}
            m: {image: c}
        """)
    node = topology.nodes["n"]
    assert node.image == "b"
    assert dict(node.env) == {"A": "1", "B": "2", "C": "3"}
    assert node.binds == ("/x:/x", "/y:/y")
    assert topology.nodes["m"].image == "c"
    options = node_run_options(topology, node, "clab")
    assert options["memory"] == "64m" and options["cpus"] == 0.5
    assert options["network"] == ["clab"]
    assert "clab-node-name=n" in options["label"]  # type: ignore[operator]


def test_prefixes_name_containers_as_containerlab_does() -> None:
    base = "topology: {nodes: {r1: {image: x}}}\n"
    assert parse("name: a\n" + base).container_name("r1") == "clab-a-r1"
    assert parse("name: a\nprefix: p\n" + base).container_name("r1") == "p-a-r1"
    assert parse("name: a\nprefix: ''\n" + base).container_name("r1") == "r1"
    assert parse("name: a\nprefix: __lab-name\n" + base).container_name("r1") == "a-r1"


def test_the_seed_example_reads() -> None:
    topology = read_topology(str(EXAMPLES / "seed.clab.yml"))
    assert topology.container_name("container1") == "container1"
    assert topology.nodes["docker1"].kind == "bridge"
    assert topology.addresses[("host", "veth1")] == ("192.168.10.100/24",)
    assert len(topology.checks) == 3
    assert topology.mgmt.network == "none"


@pytest.mark.parametrize(("text", "expected"), [
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x, imgae: y}\n",
     't.clab.yml:4: unknown key "imgae" in node r1'),
    ("name: a\ntopology:\n  nodes:\n    r1: {kind: ceos, image: x}\n",
     't.clab.yml:4: unknown kind "ceos" of node r1'),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x}\n  links:\n"
     "    - endpoints: [\"r1:eth1\", \"r9:eth1\"]\n",
     't.clab.yml:6: endpoint "r9:eth1": no node named "r9"'),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x}\n    r2: {image: x}\n  links:\n"
     "    - endpoints: [\"r1:eth1\", \"r2:eth1\"]\n"
     "    - endpoints: [\"r1:eth1\", \"r2:eth2\"]\n",
     "t.clab.yml:8: endpoint r1:eth1 is used twice (first on line 7)"),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x}\n    r2: {image: x}\n  links:\n"
     "    - endpoints: [\"r1:averyveryverylongname\", \"r2:eth1\"]\n",
     "longer than 15 bytes (IFNAMSIZ)"),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x}\n    r2: {image: x}\n  links:\n"
     "    - endpoints: [\"r1:eth0\", \"r2:eth1\"]\n",
     "t.clab.yml:7: endpoint \"r1:eth0\": eth0 is the management interface"),
    ("name: a\ntopology:\n  nodes:\n    r1: {cmd: sleep}\n",
     "t.clab.yml:4: node r1 has no image"),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x, sysctls: {kernel.x: 1}}\n",
     "only net.* sysctls"),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x, ports: [\"80:80\"]}\n",
     "t.clab.yml:4: ports of node r1: published ports are not supported"),
    ("name: a\nbogus: 1\ntopology: {nodes: {r1: {image: x}}}\n",
     't.clab.yml:2: unknown key "bogus" in the file'),
    ("name: a\ntopology:\n  nodes: {r1: {image: x}}\n  links:\n    - endpoints: [\"r1:eth1\"]\n",
     "t.clab.yml:5: a link has exactly two endpoints, not 1"),
    ("name: a\ntopology:\n  nodes: {r1: {image: x}}\n  links:\n"
     "    - {type: macvlan, endpoint: {node: r1, interface: eth1}, host-interface: e}\n",
     "macvlan links are not supported yet"),
    ("name: a\ntopology: {nodes: {r1: {image: x}}}\ntsubo:\n  checks:\n    - {from: r1}\n",
     't.clab.yml:5: a check needs "to"'),
    ("name: a\ntopology: {nodes: {r1: {image: x}}}\ntsubo:\n  routes:\n"
     "    r1: [\"10.0.0.0/8 through 10.0.0.1\"]\n",
     't.clab.yml:5: route "10.0.0.0/8 through 10.0.0.1" of r1 is not'),
    ("name: a\ntopology:\n  nodes: {r1: {image: x}}\n  links:\n"
     "    - endpoints: [\"r1:eth1\", \"host:h1\"]\ntsubo:\n  addresses:\n"
     "    r1:eth1: 10.0.0.300/24\n",
     't.clab.yml:8: address of r1:eth1: "10.0.0.300/24" is not'),
    ("name: a\ntopology:\n  nodes:\n    r1: {image: x}\n    r1: {image: y}\n",
     't.clab.yml:5: duplicate key "r1" in topology.nodes'),
    ("name: a\ntopology: [1, 2\n", "t.clab.yml:3: not YAML"),
    ("", "t.clab.yml:1: the file is empty"),
    ("name: a b\ntopology: {nodes: {r1: {image: x}}}\n",
     't.clab.yml:1: lab name "a b" may hold only'),
])
def test_bad_files_give_one_line_naming_the_problem(text: str, expected: str) -> None:
    message = error_of(text)
    assert message.startswith("read lab t.clab.yml:"), message
    assert expected in message, message


def test_aliases_that_explode_are_refused_quickly() -> None:
    laughs = ["name: a", "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        previous = f"*x{level - 1}"
        laughs.append(f"x{level}: &x{level} [{', '.join([previous] * 9)}]")
    laughs.append("topology: {nodes: {r1: {image: x, env: {A: *x8}}}}")
    started = time.monotonic()
    message = error_of("\n".join(laughs) + "\n")
    assert time.monotonic() - started < 5
    assert "expands past" in message or 'unknown key "x0"' in message


def test_a_thousand_node_file_reads_in_bounded_time() -> None:
    lines = ["name: big", "topology:", "  nodes:"]
    lines += [f"    n{i}: {{image: x}}" for i in range(1000)]
    lines += ["  links:"]
    lines += [f'    - endpoints: ["n{i}:eth1", "n{(i + 1) % 1000}:eth2"]' for i in range(1000)]
    started = time.monotonic()
    topology = parse("\n".join(lines) + "\n")
    assert len(topology.nodes) == 1000 and len(topology.links) == 1000
    assert time.monotonic() - started < 10


def test_graph_draws_nodes_links_and_interfaces_without_deploying() -> None:
    topology = read_topology(str(EXAMPLES / "seed.clab.yml"))
    dot = render(topology, "dot")
    assert dot.startswith('graph "seed" {')
    assert '"container1" -- "docker1" [taillabel="container-veth1 192.168.10.1/24" ' \
        'headlabel="docker1-veth2"]' in dot
    assert '"host" [label="host (host)" shape=ellipse]' in dot
    mermaid = render(topology, "mermaid")
    assert mermaid.splitlines()[0] == "graph LR"
    assert '---|"veth1 192.168.10.100/24 - docker1-veth1"|' in mermaid
    with pytest.raises(InvalidArgument):
        render(topology, "png")


def test_link_plans_put_each_end_straight_into_its_namespace() -> None:
    assert links.plan_veth("eth1", "clab-a-r1", "eth1", "clab-a-r2", mtu=9500) == [
        "link add name eth1 netns clab-a-r1 mtu 9500 type veth "
        "peer name eth1 netns clab-a-r2 mtu 9500"]
    assert links.plan_veth("c-veth1", "c1", "br-veth1", None, mtu=1500, b_master="br") == [
        "link add name c-veth1 netns c1 mtu 1500 type veth peer name br-veth1 mtu 1500",
        "link set br-veth1 master br"]
    with pytest.raises(InvalidArgument):
        links.plan_veth("eth1", "a b", "eth1", "c", mtu=1500)
    with pytest.raises(InvalidArgument):
        links.plan_veth("eth1#x", "a", "eth1", "c", mtu=1500)
    assert links.plan_route("10.0.23.0/24", "10.0.12.2") == \
        "route replace 10.0.23.0/24 via 10.0.12.2"


def test_what_a_deploy_is_ignores_path_lines_and_checks() -> None:
    from tsubo.engine.lab.manager import topology_digest

    base = ("name: d\ntopology:\n  nodes: {r1: {image: x}, r2: {image: x}}\n"
            "  links: [{endpoints: [\"r1:eth1\", \"r2:eth1\"]}]\n")
    first = parse_topology(base, "/a/d.clab.yml")
    moved = parse_topology("# a comment shifts every line\n" + base
                           + "tsubo:\n  checks: [{from: r1, to: r2}]\n", "/b/d.clab.yml")
    assert topology_digest(first) == topology_digest(moved)
    other = parse_topology(base.replace("image: x}, r2", "image: y}, r2"), "/a/d.clab.yml")
    assert topology_digest(first) != topology_digest(other)


def test_text_picture_lists_every_link() -> None:
    topology = read_topology(str(EXAMPLES / "seed.clab.yml"))
    assert render(topology, "text").splitlines() == [
        "lab seed: 3 nodes, 3 links",
        "  host:veth1 (192.168.10.100/24)                ----  docker1:docker1-veth1",
        "  container1:container-veth1 (192.168.10.1/24)  ----  docker1:docker1-veth2",
        "  container2:container-veth2 (192.168.10.2/24)  ----  docker1:docker1-veth3",
    ]


def test_a_sysctl_is_part_of_the_lab_but_not_of_the_nodes_container() -> None:
    from tsubo.engine.lab.manager import node_digest, topology_digest

    base = "name: d\ntopology:\n  nodes: {r1: {image: x}}\n"
    plain = parse_topology(base, "/a/d.clab.yml")
    forwarding = parse_topology(base.replace("image: x}", "image: x, sysctls: "
                                             "{net.ipv4.ip_forward: 1}}"), "/a/d.clab.yml")
    assert topology_digest(plain) != topology_digest(forwarding)  # apply has work to do
    assert node_digest(plain.nodes["r1"]) == node_digest(forwarding.nodes["r1"])  # in place


def test_svg_without_graphviz_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsubo.errors import Unsupported
    from tsubo.kernel import helpers

    topology = read_topology(str(EXAMPLES / "seed.clab.yml"))
    monkeypatch.setattr(helpers, "which", lambda name: None)  # a host without graphviz
    with pytest.raises(Unsupported) as caught:
        render(topology, "svg")
    assert caught.value.message() == ("draw lab seed: svg needs Graphviz's dot (hint: apt "
                                      "install graphviz, or use --format dot|mermaid|text)")
