"""Topology files: containerlab's ``*.clab.yml`` for ``linux`` and ``bridge`` nodes, read
into frozen dataclasses — the one module that reads them.

What it owns
    The YAML (through PyYAML, imported here only, so nothing else of tsubo pays for it),
    the file's schema — which keys exist where, what their values may be — the merge of
    ``topology.defaults`` < ``topology.kinds[KIND]`` < the node, the links in their brief
    (``endpoints: ["a:eth1", "b:eth1"]``) and extended (``type: veth|host|mgmt-net``)
    forms, and tsubo's own extension under the top-level key ``tsubo:`` (addresses and
    routes per interface, checks) and ``tsubo:`` inside a node (``rootfs:`` a directory
    instead of an image).

Decisions
    * Every problem is *one* error naming the file and line (``read lab seed.clab.yml:12:
      unknown key "imgae" in node r1``): unknown keys and kinds are refused, never ignored
      (a typo that is silently dropped makes a lab that is quietly wrong). The line comes
      from PyYAML's composed node tree, which keeps each node's start mark.
    * Bounded work: files over 4 MiB and documents that expand past 200,000 nodes (aliases
      of aliases: "billion laughs") are refused before they are walked further.
    * Endpoints are checked here, before anything is made: a link to a missing node, an
      interface used twice, a name over 15 bytes (IFNAMSIZ), ``eth0`` on a node that has a
      management interface.
    * Things the engine cannot do yet (``ports``, macvlan links, non-``net.`` sysctls) are
      refused at their line, not half-done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

#: containerlab's default prefix of container names (``clab-<lab>-<node>``)
DEFAULT_PREFIX = "clab"
LAB_NAME_PREFIX = "__lab-name"
#: containerlab's management network, unless ``mgmt.network`` names another (or ``none``)
DEFAULT_MGMT_NETWORK = "clab"
#: containerlab's MTU of point-to-point links
DEFAULT_LINK_MTU = 9500
KINDS = ("linux", "bridge")
HOST = "host"
MGMT_NET = "mgmt-net"
MAX_FILE_BYTES = 4 << 20
MAX_NODES_WALKED = 200_000
IFNAMSIZ_MAX = 15
_IFNAME_FORBIDDEN = frozenset("/: \t\n\r\v\f\"'\\#%")

_TOP_KEYS = frozenset(("name", "prefix", "mgmt", "topology", "tsubo"))
_MGMT_KEYS = frozenset(("network", "ipv4-subnet", "ipv4_subnet", "bridge", "mtu",
                        "ipv4-gw", "ipv4_gw"))
_TOPOLOGY_KEYS = frozenset(("defaults", "kinds", "nodes", "links"))
#: node keys (also in defaults and kinds); the value's shape is checked in _node
_NODE_KEYS = frozenset((
    "kind", "image", "cmd", "entrypoint", "env", "binds", "ports", "exec", "labels",
    "network-mode", "mgmt-ipv4", "sysctls", "cap-add", "user", "memory", "cpu", "tsubo",
    "group",
))
_NODE_TSUBO_KEYS = frozenset(("rootfs",))
_LINK_KEYS = frozenset(("endpoints", "type", "mtu", "vars", "labels"))
_EXT_ENDPOINT_KEYS = frozenset(("node", "interface", "mac"))
_EXT_LINK_KEYS = frozenset(("type", "endpoint", "endpoints", "host-interface", "mtu",
                            "vars", "labels", "mode"))
_TSUBO_KEYS = frozenset(("addresses", "routes", "checks"))
_CHECK_KEYS = frozenset(("from", "to", "expect", "tcp", "timeout"))


@dataclass(frozen=True)
class Node:
    """One node after defaults and kinds are merged in."""

    name: str
    kind: str
    line: int
    image: str = ""
    rootfs: str = ""
    cmd: tuple[str, ...] | None = None
    entrypoint: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    binds: tuple[str, ...] = ()
    exec: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    network_mode: str = ""
    mgmt_ipv4: str = ""
    sysctls: tuple[tuple[str, str], ...] = ()
    cap_add: tuple[str, ...] = ()
    user: str = ""
    memory: str = ""
    cpu: float | None = None


@dataclass(frozen=True)
class Endpoint:
    """``node:interface``; *node* is ``host`` for the host's own namespace and
    ``mgmt-net`` for the management bridge."""

    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True)
class Link:
    """A veth pair between two endpoints."""

    a: Endpoint
    b: Endpoint
    mtu: int
    line: int


@dataclass(frozen=True)
class Route:
    destination: str
    via: str
    line: int


@dataclass(frozen=True)
class Check:
    """``from`` (``node`` or ``node:iface``) reaches (or must not reach) ``to`` (an
    address, ``node:iface`` or ``node``), by ICMP echo or, with *tcp_port*, a TCP
    connection."""

    source: str
    target: str
    reachable: bool
    tcp_port: int
    timeout: float
    line: int


@dataclass(frozen=True)
class Mgmt:
    network: str = DEFAULT_MGMT_NETWORK  # "none": no management network
    ipv4_subnet: str = ""
    bridge: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class Topology:
    name: str
    path: str
    prefix: str
    mgmt: Mgmt
    nodes: dict[str, Node]
    links: tuple[Link, ...]
    #: (node, interface) -> addresses in CIDR form; node ``host`` is the host's namespace
    addresses: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    routes: dict[str, tuple[Route, ...]] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def container_name(self, node: str) -> str:
        """containerlab's names: ``clab-<lab>-<node>``, ``<prefix>-<lab>-<node>``,
        ``<lab>-<node>`` (prefix ``__lab-name``), or the node's own name (empty prefix)."""
        if self.prefix == LAB_NAME_PREFIX:
            return f"{self.name}-{node}"
        return f"{self.prefix}-{self.name}-{node}" if self.prefix else node

    def has_mgmt(self, node: Node) -> bool:
        return self.mgmt.network != "none" and node.network_mode == "" \
            and node.kind == "linux"

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path) or "."


# ---------------------------------------------------------------------------------------------
# reading


class _Reader:
    """Walks PyYAML's composed nodes, converting values and keeping their lines."""

    def __init__(self, path: str, loader: Any) -> None:
        self.path = path
        self.file = os.path.basename(path)
        self.loader = loader
        self.walked = 0

    def error(self, line: int, detail: str, hint: str = "") -> InvalidArgument:
        return InvalidArgument("read lab", f"{self.file}:{line}", detail=detail, hint=hint)

    def count(self, node: Any) -> None:
        self.walked += 1
        if self.walked > MAX_NODES_WALKED:
            raise self.error(_line(node), f"the document expands past {MAX_NODES_WALKED} "
                             "values (aliases of aliases?)")

    def mapping(self, node: Any, what: str, allowed: frozenset[str] | None = None
                ) -> Iterator[tuple[str, Any]]:
        """(key, value node) of a mapping node; refuses other shapes, duplicate keys and
        keys outside *allowed*."""
        import yaml

        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~")
                            and node.tag.endswith(":null")):
            return
        if not isinstance(node, yaml.MappingNode):
            raise self.error(_line(node), f"{what} must be a mapping")
        self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys
        seen: set[str] = set()
        for key_node, value_node in node.value:
            self.count(value_node)
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(_line(key_node), f"a key of {what} must be a scalar")
            key = str(key_node.value)
            if key in seen:
                raise self.error(_line(key_node), f'duplicate key "{key}" in {what}')
            seen.add(key)
            if allowed is not None and key not in allowed:
                raise self.error(_line(key_node), f'unknown key "{key}" in {what}',
                                 hint=f"known: {', '.join(sorted(allowed))}")
            yield key, value_node

    def sequence(self, node: Any, what: str) -> list[Any]:
        import yaml

        if not isinstance(node, yaml.SequenceNode):
            raise self.error(_line(node), f"{what} must be a list")
        for item in node.value:
            self.count(item)
        return list(node.value)

    def scalar(self, node: Any, what: str) -> object:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            raise self.error(_line(node), f"{what} must be a single value")
        return self.loader.construct_object(node)

    def text(self, node: Any, what: str, *, allow_empty: bool = True) -> str:
        value = self.scalar(node, what)
        if value is None:
            value = ""
        if isinstance(value, (bool, dict, list)):
            raise self.error(_line(node), f"{what} must be text")
        text = str(value)
        if not allow_empty and not text:
            raise self.error(_line(node), f"{what} must not be empty")
        if "\0" in text:
            raise self.error(_line(node), f"{what} holds a NUL byte")
        return text

    def integer(self, node: Any, what: str) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(_line(node), f"{what} must be an integer")
        return value

    def texts(self, node: Any, what: str) -> tuple[str, ...]:
        return tuple(self.text(item, f"an item of {what}") for item in self.sequence(node, what))

    def pairs(self, node: Any, what: str) -> tuple[tuple[str, str], ...]:
        return tuple((key, self.text(value, f"{what} {key}"))
                     for key, value in self.mapping(node, what))


def _line(node: Any) -> int:
    mark = getattr(node, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 0


def read_topology(path: str) -> Topology:
    """Read and check the topology file at *path* (InvalidArgument naming the line)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InvalidArgument("read lab", path, detail=error.strerror or str(error)) from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument("read lab", path, detail=f"larger than {MAX_FILE_BYTES} bytes")
    return parse_topology(data.decode("utf-8", errors="replace"), os.path.abspath(path))


def parse_topology(text: str, path: str) -> Topology:
    """Parse a topology document (*path* names it in errors and anchors relative paths)."""
    try:
        import yaml
    except ImportError:
        raise InvalidArgument("read lab", path, detail="PyYAML is not installed",
                              hint="pip install pyyaml (Debian: python3-yaml)") from None
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    reader = _Reader(path, loader)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise reader.error(line, f"not YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise reader.error(0, f"not YAML: {error}") from None
    finally:
        loader.dispose()
    if root is None:
        raise reader.error(1, "the file is empty")
    return _topology(reader, root)


def _topology(reader: _Reader, root: Any) -> Topology:
    sections = dict(reader.mapping(root, "the file", _TOP_KEYS))
    if "name" not in sections:
        raise reader.error(_line(root), 'no "name": a lab needs one')
    name = reader.text(sections["name"], "name", allow_empty=False)
    _check_name(reader, sections["name"], name, "lab name")
    prefix = DEFAULT_PREFIX
    if "prefix" in sections:
        prefix = reader.text(sections["prefix"], "prefix")
        if prefix and prefix != LAB_NAME_PREFIX:
            _check_name(reader, sections["prefix"], prefix, "prefix")
    mgmt = _mgmt(reader, sections.get("mgmt"))
    if "topology" not in sections:
        raise reader.error(_line(root), 'no "topology": a lab needs nodes')
    parts = dict(reader.mapping(sections["topology"], "topology", _TOPOLOGY_KEYS))
    defaults = dict(reader.mapping(parts.get("defaults"), "topology.defaults", _NODE_KEYS))
    kinds: dict[str, dict[str, Any]] = {}
    for kind, kind_node in reader.mapping(parts.get("kinds"), "topology.kinds"):
        if kind not in KINDS:
            raise reader.error(_line(kind_node), f'unknown kind "{kind}" in topology.kinds',
                               hint=f"tsubo runs {' and '.join(KINDS)} nodes")
        kinds[kind] = dict(reader.mapping(kind_node, f"topology.kinds.{kind}", _NODE_KEYS))
    if "nodes" not in parts:
        raise reader.error(_line(sections["topology"]), 'no "nodes" in topology')
    nodes: dict[str, Node] = {}
    for node_name, node_node in reader.mapping(parts["nodes"], "topology.nodes"):
        nodes[node_name] = _node(reader, node_name, node_node, defaults, kinds)
    if not nodes:
        raise reader.error(_line(parts["nodes"]), "topology.nodes is empty")
    topology = Topology(name=name, path=reader.path, prefix=prefix, mgmt=mgmt, nodes=nodes,
                        links=())
    links = _links(reader, parts.get("links"), topology)
    addresses, routes, checks = _extension(reader, sections.get("tsubo"), topology, links)
    for node in nodes.values():
        if node.kind == "linux" and len(topology.container_name(node.name)) > 200:
            raise reader.error(node.line, f"the container name of node {node.name} is too long")
    return Topology(name=topology.name, path=topology.path, prefix=topology.prefix,
                    mgmt=mgmt, nodes=nodes, links=tuple(links), addresses=addresses,
                    routes=routes, checks=tuple(checks))


def _check_name(reader: _Reader, node: Any, text: str, what: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    if not text or not set(text) <= allowed or text[0] in ".-":
        raise reader.error(_line(node), f'{what} "{text}" may hold only letters, digits, '
                           "'_', '.' and '-' (not first)")


def _mgmt(reader: _Reader, node: Any) -> Mgmt:
    values: dict[str, Any] = {}
    for given_key, value in reader.mapping(node, "mgmt", _MGMT_KEYS):
        key = given_key.replace("_", "-")
        if key == "mtu":
            values["mtu"] = reader.integer(value, "mgmt.mtu")
        elif key == "ipv4-gw":
            raise reader.error(_line(value), "mgmt.ipv4-gw is not supported: the gateway is "
                               "the subnet's first address")
        else:
            values[key] = reader.text(value, f"mgmt.{key}")
            if key == "network":
                _check_name(reader, value, values[key], "mgmt.network")
    return Mgmt(network=values.get("network") or DEFAULT_MGMT_NETWORK,
                ipv4_subnet=values.get("ipv4-subnet", ""), bridge=values.get("bridge", ""),
                mtu=values.get("mtu", 0))


def _node(reader: _Reader, name: str, node: Any, defaults: dict[str, Any],
          kinds: dict[str, dict[str, Any]]) -> Node:
    _check_name(reader, node, name, "node name")
    if name in (HOST, MGMT_NET, "macvlan"):
        raise reader.error(_line(node), f'"{name}" is a reserved endpoint name, not a node')
    own = dict(reader.mapping(node, f"node {name}", _NODE_KEYS))
    kind_node = own.get("kind", defaults.get("kind"))
    kind = reader.text(kind_node, f"kind of node {name}") if kind_node is not None else "linux"
    if kind not in KINDS:
        raise reader.error(_line(kind_node), f'unknown kind "{kind}" of node {name}',
                           hint=f"tsubo runs {' and '.join(KINDS)} nodes")
    line = _line(node)
    # defaults < kinds[kind] < node: mappings merge key by key, binds add up, the rest
    # is replaced
    layers = [defaults, kinds.get(kind, {}), own]
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value_node in layer.items():
            values.setdefault(key, []).append(value_node)
    if kind == "bridge":
        extra = sorted(set(own) - {"kind", "labels", "group"})
        if extra:
            raise reader.error(_line(own[extra[0]]), f'"{extra[0]}" does not apply to the '
                               f"bridge node {name}")
        if len(name.encode()) > IFNAMSIZ_MAX:
            raise reader.error(line, f"bridge node name {name} is longer than "
                               f"{IFNAMSIZ_MAX} bytes (IFNAMSIZ)")
        return Node(name=name, kind=kind, line=line)
    fields: dict[str, Any] = {}
    for key, stack in values.items():
        if key not in ("kind", "group"):
            _node_field(reader, name, key, stack, fields)
    for key, value in fields.get("sysctls", ()):
        if not key.startswith("net."):
            raise reader.error(_line(values["sysctls"][-1]), f"sysctl {key} of node {name}: "
                               "only net.* sysctls are per node (network namespace)")
        del value
    if not fields.get("image") and not fields.get("rootfs"):
        raise reader.error(line, f"node {name} has no image (nor tsubo.rootfs)")
    return Node(name=name, kind=kind, line=line, **fields)


#: node keys whose value is one text / a list of texts: containerlab's name -> Node's
_TEXT_FIELDS = {"image": "image", "entrypoint": "entrypoint", "user": "user",
                "memory": "memory"}
_TEXTS_FIELDS = {"exec": "exec", "cap-add": "cap_add"}


def _node_field(reader: _Reader, name: str, key: str, stack: list[Any],
                fields: dict[str, Any]) -> None:
    """One key of node *name* into *fields*: *stack* holds its values from the defaults,
    the node's kind and the node itself (mappings merge, binds add up, the rest is the
    last one's)."""
    last = stack[-1]
    what = f"{key} of node {name}"
    if key in _TEXT_FIELDS:
        fields[_TEXT_FIELDS[key]] = reader.text(last, what)
    elif key in _TEXTS_FIELDS:
        fields[_TEXTS_FIELDS[key]] = reader.texts(last, what)
    elif key == "cmd":
        import shlex

        try:
            fields["cmd"] = tuple(shlex.split(reader.text(last, what)))
        except ValueError as error:
            raise reader.error(_line(last), f"{what}: {error}") from None
    elif key in ("env", "labels", "sysctls"):
        merged: dict[str, str] = {}
        for layer_node in stack:
            merged.update(reader.pairs(layer_node, what))
        fields[key] = tuple(merged.items())
    elif key == "binds":
        fields["binds"] = tuple(bind for layer_node in stack
                                for bind in reader.texts(layer_node, what))
    elif key == "ports":
        if reader.sequence(last, what):
            raise reader.error(_line(last), f"{what}: published ports are not supported "
                               "by labs yet")
    elif key == "network-mode":
        mode = reader.text(last, what)
        if mode not in ("", "none", "host"):
            raise reader.error(_line(last), f'{what}: "{mode}" is not supported',
                               hint="none or host")
        fields["network_mode"] = mode
    elif key == "mgmt-ipv4":
        fields["mgmt_ipv4"] = _address(reader, last, what)
    elif key == "cpu":
        value = reader.scalar(last, what)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise reader.error(_line(last), f"{what} must be a positive number")
        fields["cpu"] = float(value)
    elif key == "tsubo":
        for extension_key, value_node in reader.mapping(last, f"tsubo of node {name}",
                                                        _NODE_TSUBO_KEYS):
            assert extension_key == "rootfs"
            rootfs = reader.text(value_node, f"tsubo.rootfs of node {name}",
                                 allow_empty=False)
            fields["rootfs"] = os.path.normpath(os.path.join(os.path.dirname(reader.path),
                                                             rootfs))


def _address(reader: _Reader, node: Any, what: str, *, cidr: bool = False) -> str:
    import ipaddress

    text = reader.text(node, what, allow_empty=False)
    try:
        if cidr:
            interface = ipaddress.ip_interface(text)
            if "/" not in text or interface.version != 4:
                raise ValueError
        elif ipaddress.ip_address(text).version != 4:
            raise ValueError
    except ValueError:
        form = "an IPv4 address with its prefix (10.0.0.1/24)" if cidr else "an IPv4 address"
        raise reader.error(_line(node), f'{what}: "{text}" is not {form}') from None
    return text


# ---------------------------------------------------------------------------------------------
# links


def _endpoint(reader: _Reader, node: Any, text: str, topology: Topology) -> Endpoint:
    if text.count(":") != 1:
        raise reader.error(_line(node), f'endpoint "{text}" is not NODE:INTERFACE')
    node_name, interface = text.split(":")
    if node_name not in topology.nodes and node_name not in (HOST, MGMT_NET):
        raise reader.error(_line(node), f'endpoint "{text}": no node named "{node_name}"')
    _check_ifname(reader, node, interface, f'endpoint "{text}"')
    found = topology.nodes.get(node_name)
    if found is not None and found.network_mode == "host":
        raise reader.error(_line(node), f'endpoint "{text}": node {node_name} uses the '
                           "host's network (network-mode: host)")
    if found is not None and interface == "eth0" and topology.has_mgmt(found):
        raise reader.error(_line(node), f'endpoint "{text}": eth0 is the management '
                           "interface", hint="use eth1 and up, or network-mode: none")
    return Endpoint(node_name, interface)


def _check_ifname(reader: _Reader, node: Any, name: str, what: str) -> None:
    if not name or name in (".", "..") or set(name) & _IFNAME_FORBIDDEN:
        raise reader.error(_line(node), f'{what}: "{name}" is not an interface name')
    if len(name.encode()) > IFNAMSIZ_MAX:
        raise reader.error(_line(node), f'{what}: interface name "{name}" is longer than '
                           f"{IFNAMSIZ_MAX} bytes (IFNAMSIZ)")


def _links(reader: _Reader, node: Any, topology: Topology) -> list[Link]:
    if node is None:
        return []
    links: list[Link] = []
    used: dict[Endpoint, int] = {}
    for item in reader.sequence(node, "topology.links"):
        keys = dict(reader.mapping(item, "a link", _LINK_KEYS | _EXT_LINK_KEYS))
        link_type = reader.text(keys["type"], "link type") if "type" in keys else ""
        mtu = reader.integer(keys["mtu"], "link mtu") if "mtu" in keys else DEFAULT_LINK_MTU
        if not 68 <= mtu <= 65535:
            raise reader.error(_line(keys["mtu"]), f"link mtu {mtu} is out of range (68-65535)")
        if link_type in ("", "veth"):
            extra = sorted(set(keys) - _LINK_KEYS)
            if extra:
                raise reader.error(_line(keys[extra[0]]), f'unknown key "{extra[0]}" in a '
                                   f"{link_type or 'brief'} link")
            if "endpoints" not in keys:
                raise reader.error(_line(item), "a link without endpoints")
            ends = reader.sequence(keys["endpoints"], "endpoints")
            if len(ends) != 2:
                raise reader.error(_line(keys["endpoints"]), "a link has exactly two "
                                   f"endpoints, not {len(ends)}")
            endpoints = [_endpoint_value(reader, end, topology) for end in ends]
        elif link_type in (HOST, MGMT_NET):
            extra = sorted(set(keys) - {"type", "endpoint", "host-interface", "mtu", "vars",
                                        "labels"})
            if extra or "endpoint" not in keys or "host-interface" not in keys:
                what = f'unknown key "{extra[0]}"' if extra else \
                    'needs "endpoint" and "host-interface"'
                raise reader.error(_line(keys[extra[0]] if extra else item),
                                   f"a {link_type} link: {what}")
            host_ifname = reader.text(keys["host-interface"], "host-interface")
            _check_ifname(reader, keys["host-interface"], host_ifname, "host-interface")
            endpoints = [_endpoint_value(reader, keys["endpoint"], topology),
                         Endpoint(link_type, host_ifname)]
        elif link_type == "macvlan":
            raise reader.error(_line(keys["type"]), "macvlan links are not supported yet")
        else:
            raise reader.error(_line(keys["type"]), f'unknown link type "{link_type}"',
                               hint="veth, host or mgmt-net")
        a, b = endpoints
        if a.node in (HOST, MGMT_NET) and b.node in (HOST, MGMT_NET):
            raise reader.error(_line(item), f"link {a} - {b}: at least one end must be a node")
        for end in endpoints:
            if end.node != MGMT_NET and end in used:
                raise reader.error(_line(item), f"endpoint {end} is used twice (first on "
                                   f"line {used[end]})")
            used[end] = _line(item)
        if MGMT_NET in (a.node, b.node) and topology.mgmt.network == "none":
            raise reader.error(_line(item), "a mgmt-net link, but mgmt.network is none")
        links.append(Link(a, b, mtu, _line(item)))
    return links


def _endpoint_value(reader: _Reader, node: Any, topology: Topology) -> Endpoint:
    import yaml

    if isinstance(node, yaml.MappingNode):
        keys = dict(reader.mapping(node, "an endpoint", _EXT_ENDPOINT_KEYS))
        if "node" not in keys or "interface" not in keys:
            raise reader.error(_line(node), 'an endpoint needs "node" and "interface"')
        if "mac" in keys:
            raise reader.error(_line(keys["mac"]), "endpoint mac is not supported yet")
        text = f"{reader.text(keys['node'], 'endpoint node')}:" \
            f"{reader.text(keys['interface'], 'endpoint interface')}"
        return _endpoint(reader, node, text, topology)
    return _endpoint(reader, node, reader.text(node, "an endpoint"), topology)


# ---------------------------------------------------------------------------------------------
# tsubo's extension: addresses, routes, checks


def _extension(reader: _Reader, node: Any, topology: Topology, links: list[Link]
               ) -> tuple[dict[tuple[str, str], tuple[str, ...]], dict[str, tuple[Route, ...]],
                          list[Check]]:
    parts = dict(reader.mapping(node, "tsubo", _TSUBO_KEYS))
    ends = {end for link in links for end in (link.a, link.b)}
    addresses: dict[tuple[str, str], tuple[str, ...]] = {}
    for key, value in reader.mapping(parts.get("addresses"), "tsubo.addresses"):
        end = _endpoint(reader, value, key, topology)
        if end not in ends:
            raise reader.error(_line(value), f"tsubo.addresses: {end} is on no link")
        if end.node == MGMT_NET or (end.node in topology.nodes
                                    and topology.nodes[end.node].kind == "bridge"):
            raise reader.error(_line(value), f"tsubo.addresses: {end} is a bridge port, "
                               "which has no address of its own")
        items = reader.sequence(value, f"tsubo.addresses of {end}") \
            if not _is_scalar(value) else [value]
        addresses[(end.node, end.interface)] = tuple(
            _address(reader, item, f"address of {end}", cidr=True) for item in items)
    routes: dict[str, tuple[Route, ...]] = {}
    for node_name, value in reader.mapping(parts.get("routes"), "tsubo.routes"):
        if node_name not in topology.nodes and node_name != HOST:
            raise reader.error(_line(value), f'tsubo.routes: no node named "{node_name}"')
        if node_name in topology.nodes and topology.nodes[node_name].kind == "bridge":
            raise reader.error(_line(value), f"tsubo.routes: {node_name} is a bridge")
        parsed = []
        for item in reader.sequence(value, f"tsubo.routes of {node_name}"):
            text = reader.text(item, f"a route of {node_name}")
            words = text.split()
            if len(words) != 3 or words[1] != "via":
                raise reader.error(_line(item), f'route "{text}" of {node_name} is not '
                                   '"DESTINATION via GATEWAY"')
            import ipaddress

            try:
                destination = str(ipaddress.ip_network(words[0]))
                gateway = str(ipaddress.ip_address(words[2]))
            except ValueError as error:
                raise reader.error(_line(item), f'route "{text}" of {node_name}: {error}') \
                    from None
            parsed.append(Route(destination, gateway, _line(item)))
        routes[node_name] = tuple(parsed)
    checks = []
    for item in reader.sequence(parts["checks"], "tsubo.checks") if "checks" in parts else []:
        checks.append(_check(reader, item, topology))
    return addresses, routes, checks


def _is_scalar(node: Any) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode)


def _check(reader: _Reader, item: Any, topology: Topology) -> Check:
    keys = dict(reader.mapping(item, "a check", _CHECK_KEYS))
    for needed in ("from", "to"):
        if needed not in keys:
            raise reader.error(_line(item), f'a check needs "{needed}"')
    source = reader.text(keys["from"], "check from", allow_empty=False)
    source_node = source.split(":", 1)[0]
    if source_node not in topology.nodes or topology.nodes[source_node].kind != "linux":
        raise reader.error(_line(keys["from"]), f'check from "{source}": no linux node '
                           f'named "{source_node}"')
    if ":" in source:
        _endpoint(reader, keys["from"], source, topology)
    target = reader.text(keys["to"], "check to", allow_empty=False)
    if ":" in target:
        _endpoint(reader, keys["to"], target, topology)
    elif target not in topology.nodes and target != HOST:
        _address(reader, keys["to"], "check to")
    expect = reader.text(keys["expect"], "check expect") if "expect" in keys else "reachable"
    if expect not in ("reachable", "unreachable"):
        raise reader.error(_line(keys["expect"]), f'check expect "{expect}" is not '
                           "reachable or unreachable")
    port = reader.integer(keys["tcp"], "check tcp") if "tcp" in keys else 0
    if "tcp" in keys and not 0 < port < 65536:
        raise reader.error(_line(keys["tcp"]), f"check tcp port {port} is out of range")
    timeout = 1.0
    if "timeout" in keys:
        value = reader.scalar(keys["timeout"], "check timeout")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value <= 60:
            raise reader.error(_line(keys["timeout"]), "check timeout must be 0-60 seconds")
        timeout = float(value)
    return Check(source, target, expect == "reachable", port, timeout, _line(item))
