"""Deploy, destroy, inspect and exec in labs, on the engine: the lab's nodes are engine
containers (``clab-<lab>-<node>``), its links veth pairs between their pinned namespaces.

What it owns
    The order of a deploy and of a teardown, and the lab record's life (``records.py``).

Deploy, in order (each object recorded before it is made; a failure tears down what the
record names, so a failed deploy leaves nothing)
    1. the record (``deploying``, with our pid and start time);
    2. the management network, if the lab has one and it does not exist (an engine
       network: bridge, IPAM, firewall, DNS for the node names);
    3. the bridges of ``kind: bridge`` nodes that do not exist yet (host namespace);
    4. one container per ``linux`` node, on the management network (its namespace is then
       pinned at ``/run/netns/<container name>`` by the engine) or on none (we pin it with
       ``ip netns attach``), with the node's image or rootfs, cmd, env, binds, labels
       (containerlab's ``containerlab``, ``clab-node-name``, ... too), user, memory, cpu;
    5. every link in one ``ip`` process (the ends go straight into their namespaces),
       then per node one ``ip`` process: its sysctls, interfaces up, addresses, routes;
    6. the nodes' ``exec`` commands (after the links exist, as containerlab);
    7. the record says ``deployed``.

``deploy`` is idempotent: the same lab deployed again finds it running and does nothing;
another version under the same lab name is refused (``apply`` changes a running lab in
place: see there). A record left ``deploying`` by a deploy that died is torn down first;
``system gc`` tears down such labs too (:func:`gc_labs`).

Teardown goes on past failures and reports them all: containers (their pinned namespaces,
and with them the node-to-node veth pairs, go with them), our netns pins, host-side veth
ends and bridges, then the management network if the lab created it and no container is
left on it, and last the record.
"""

from __future__ import annotations

import os

from tsubo.engine.lab import records
from tsubo.engine.lab.topology import MGMT_NET, Topology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.engine.containers import Engine as EngineCommands
    from tsubo.engine.lab.checks import CheckResult
    from tsubo.engine.lab.records import LabRecord
    from tsubo.engine.lab.topology import Link, Node
    from tsubo.network.models import Network
    from tsubo.network.store import NetworkStore

#: the labels containerlab puts on its containers (``lab exec --label`` selects on them)
LABEL_LAB = "containerlab"
LABEL_NODE = "clab-node-name"
LABEL_KIND = "clab-node-kind"
LABEL_FILE = "clab-topo-file"


def topology_digest(topology: Topology) -> str:
    """What a deploy makes of *topology*: not its path, its lines or its checks (editing a
    comment or a check is not another lab)."""
    import hashlib

    shape = (topology.name, topology.prefix, topology.mgmt,
             sorted((name, node_digest(node), node.sysctls, node.exec)
                    for name, node in topology.nodes.items()),
             sorted(link_key(link) for link in topology.links),
             sorted(topology.addresses.items()),
             sorted((node, [(r.destination, r.via) for r in routes])
                    for node, routes in topology.routes.items()))
    return hashlib.sha256(repr(shape).encode()).hexdigest()


def node_digest(node: Node) -> str:
    """What needs a node's container made again when it changes (all but its line, its
    ``exec`` commands and its sysctls, which ``apply`` writes in place)."""
    import dataclasses
    import hashlib

    shape = dataclasses.replace(node, line=0, sysctls=(), exec=())
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:16]


#: a link as the record keeps it: (node, interface, node, interface, MTU)
LinkKey = tuple[str, str, str, str, int]


def link_key(link: Link) -> LinkKey:
    a, b = sorted((link.a, link.b), key=str)
    return (a.node, a.interface, b.node, b.interface, link.mtu)


class LabManager:
    def __init__(self, engine: EngineCommands) -> None:
        self.engine = engine

    def _ledger(self) -> NetworkStore:
        """The network ledger, on the engine's current connection (a ``run`` reopens it)."""
        from tsubo.network.store import NetworkStore

        return NetworkStore(self.engine.db)

    # --- deploy ----------------------------------------------------------------------------

    def deploy(self, topology: Topology) -> tuple[LabRecord, bool]:
        """Deploy *topology*; (its record, whether anything was done)."""
        with records.LabLock(self.engine.paths, topology.name):
            return self._deploy(topology)

    def _deploy(self, topology: Topology) -> tuple[LabRecord, bool]:
        from tsubo.errors import AlreadyExists, WrongState
        from tsubo.kernel.procfs import read_stat
        from tsubo.undo import UndoStack

        paths = self.engine.paths
        digest = topology_digest(topology)
        existing = records.load(paths, topology.name)
        if existing is not None:
            if existing.state == records.DEPLOYING and existing.deployer_alive():
                raise WrongState("deploy lab", topology.name,
                                 detail=f"being deployed by process {existing.deployer_pid}")
            if existing.state == records.DEPLOYED:
                if existing.digest != digest:
                    raise AlreadyExists("deploy lab", topology.name,
                                        detail="deployed from another version of the file",
                                        hint="tsubo lab apply changes it in place")
                if self._all_running(existing):
                    return existing, False
            self.teardown(existing)  # a dead deploy's leftovers, or nodes that died
        me = read_stat(os.getpid())
        record = records.LabRecord(name=topology.name, path=topology.path, digest=digest,
                                   deployer_pid=os.getpid(),
                                   deployer_start=me.start_time if me else 0)
        records.save(paths, record)
        with UndoStack("deploy lab", topology.name) as undo:
            undo.push(lambda: self.teardown(record))
            mgmt = self._mgmt_network(topology, record)
            self._bridges(topology, record)
            self._nodes(topology, record, mgmt)
            self._links(topology, record)
            self._exec(topology, record)
            _remember(record, topology)
            record.state = records.DEPLOYED
            record.deployer_pid = record.deployer_start = 0
            records.save(paths, record)
            undo.commit()
        return record, True

    def _all_running(self, record: LabRecord) -> bool:
        from tsubo.engine import status
        from tsubo.errors import NotFound

        for name in record.containers.values():
            try:
                row = self.engine.refresh(self.engine.db.resolve_container(name))
            except NotFound:
                return False
            if row.state != status.RUNNING:
                return False
        return True

    def _mgmt_network(self, topology: Topology, record: LabRecord) -> Network | None:
        from tsubo.engine.networks import NetworkManager
        from tsubo.errors import NotFound

        if not any(topology.has_mgmt(node) for node in topology.nodes.values()) \
                and not any(MGMT_NET in (link.a.node, link.b.node) for link in topology.links):
            return None
        manager = NetworkManager(self.engine)
        name = topology.mgmt.network
        record.mgmt_network = name
        try:
            network = manager.get(name)
        except NotFound:
            record.mgmt_created = True
            records.save(self.engine.paths, record)
            return manager.create(name, subnet=topology.mgmt.ipv4_subnet,
                                  mtu=topology.mgmt.mtu, bridge_name=topology.mgmt.bridge,
                                  labels={LABEL_LAB: topology.name})
        records.save(self.engine.paths, record)
        return network

    def _bridges(self, topology: Topology, record: LabRecord) -> None:
        from tsubo.network import links

        wanted = [node.name for node in topology.nodes.values() if node.kind == "bridge"]
        missing = [name for name in wanted if not _host_link_exists(name)]
        if not missing:
            return
        for name in missing:
            self._ledger().record("link", name, record.owner)
            record.bridges.append(name)
        records.save(self.engine.paths, record)
        links.apply_host([line for name in missing for line in links.plan_bridge(name)])

    def _nodes(self, topology: Topology, record: LabRecord, mgmt: Network | None,
               only: set[str] | None = None) -> None:
        """Start every linux node (or those in *only*), pinning the namespaces the engine
        does not pin."""
        from tsubo.engine.options import build_run_options
        from tsubo.network import links

        for node in topology.nodes.values():
            if node.kind != "linux" or (only is not None and node.name not in only):
                continue
            name = topology.container_name(node.name)
            record.containers[node.name] = name
            records.save(self.engine.paths, record)
            options = build_run_options(
                node_run_options(topology, node, mgmt.name if mgmt is not None else ""),
                cwd=topology.directory)
            row = self.engine.run_detached(options, name=name)
            if not topology.has_mgmt(node) and node.network_mode != "host":
                self._ledger().record("netns", name, row.id)
                record.pins.append(name)
                records.save(self.engine.paths, record)
                links.pin_netns_of(name, row.pid)

    def _links(self, topology: Topology, record: LabRecord) -> None:
        from tsubo.engine.lab.plan import plan_wiring
        from tsubo.network import links

        mgmt_bridge = ""
        if record.mgmt_network and any(MGMT_NET in (link.a.node, link.b.node)
                                       for link in topology.links):
            from tsubo.engine.networks import NetworkManager

            mgmt_bridge = NetworkManager(self.engine).get(record.mgmt_network).bridge_name

        wiring = plan_wiring(topology, mgmt_bridge)
        if wiring.host_ends:
            for ifname in wiring.host_ends:
                self._ledger().record("link", ifname, record.owner)
                record.host_links.append(ifname)
            records.save(self.engine.paths, record)
        if wiring.host_lines:
            links.apply_host(wiring.host_lines)
        for node in wiring.nodes:
            links.apply_in_netns(node.netns, node.lines, node.sysctls)

    def _exec(self, topology: Topology, record: LabRecord,
              only: set[str] | None = None) -> None:
        import shlex

        from tsubo.errors import TsuboError

        for node in topology.nodes.values():
            if only is not None and node.name not in only:
                continue
            for command in node.exec:
                code, output = self.run_captured(record.containers[node.name],
                                                 shlex.split(command))
                if code != 0:
                    last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
                    raise TsuboError("deploy lab", topology.name,
                                     detail=f'exec "{command}" on node {node.name} exited '
                                     f"{code}" + (f": {last[0]}" if last[0] else ""))

    def run_captured(self, container: str, command: Sequence[str]) -> tuple[int, bytes]:
        """Run *command* in *container*; (exit code, stdout and stderr together)."""
        import tempfile

        with open(os.devnull, "rb") as null, tempfile.TemporaryFile() as out:
            code = self.engine.exec(container, list(command),
                                    stdio=(null.fileno(), out.fileno(), out.fileno()),
                                    forward_signals=False)
            out.seek(0)
            return code, out.read()

    # --- apply -----------------------------------------------------------------------------

    def apply(self, topology: Topology) -> list[str]:
        """Change the deployed lab in place to match *topology*: nodes and links added or
        removed, a node whose container options changed made again (and its links), link
        MTUs, addresses, routes and sysctls set; nodes that did not change keep running
        untouched. What was done, one line each."""
        with records.LabLock(self.engine.paths, topology.name):
            return self._apply(topology)

    def _remove_links(self, record: records.LabRecord, gone: set[LinkKey],
                      renewed: set[str], new_keys: set[LinkKey]) -> list[str]:
        """``apply``'s first step: delete the links that go (by one end that survives; the
        other goes with it); what was done."""
        from tsubo.network import links

        done: list[str] = []
        host_lines: list[str] = []
        per_netns: dict[str, list[str]] = {}
        for a_node, a_if, b_node, b_if, _ in sorted(gone):
            for end_node, ifname in ((a_node, a_if), (b_node, b_if)):
                if end_node in renewed:
                    continue
                if end_node in record.containers:
                    per_netns.setdefault(record.containers[end_node], []).append(
                        f"link del {ifname}")
                else:
                    host_lines.append(f"link del {ifname}")
                break
            if (a_node, a_if, b_node, b_if) not in {key[:4] for key in new_keys}:
                done.append(f"removed link {a_node}:{a_if} - {b_node}:{b_if}")
        for netns, lines in per_netns.items():
            links.apply_in_netns(netns, lines)
        if host_lines:
            links.apply_host(host_lines)
        gone_host_ends = {ifname for a_node, a_if, b_node, b_if, _ in gone
                          for end_node, ifname in ((a_node, a_if), (b_node, b_if))
                          if end_node not in record.containers}
        for ifname in sorted(gone_host_ends & set(record.host_links)):
            record.host_links.remove(ifname)
            self._ledger().forget("link", ifname)
        return done

    def _remove_nodes(self, record: records.LabRecord, renewed: set[str],
                      removed: set[str]) -> list[str]:
        """``apply``'s second step: remove the nodes that go or are made again."""
        from tsubo.network import links

        done: list[str] = []
        for name in sorted(renewed):
            container = record.containers.pop(name, "")
            if container:
                self.engine.remove(container, force=True)
                if container in record.pins:
                    from tsubo.network import bridge

                    bridge.delete_netns(container)
                    record.pins.remove(container)
                    self._ledger().forget("netns", container)
            elif name in record.bridges:
                links.remove_host_links([name])
                record.bridges.remove(name)
                self._ledger().forget("link", name)
            if name in removed:
                done.append(f"removed node {name}")
        return done

    def _apply(self, topology: Topology) -> list[str]:
        import dataclasses

        from tsubo.engine.lab.plan import plan_wiring
        from tsubo.errors import InvalidArgument, WrongState
        from tsubo.network import links

        record = self.record(topology.name)
        if record.state != records.DEPLOYED:
            raise WrongState("apply lab", topology.name, detail="its deploy did not finish")
        if record.shape_mgmt != repr((topology.prefix, topology.mgmt)):
            raise InvalidArgument("apply lab", topology.name, detail="the prefix or the "
                                  "management network changed: destroy and deploy")
        if topology_digest(topology) == record.digest:
            return []
        old_nodes = dict(record.node_digests)
        new_nodes = {name: (node.kind if node.kind == "bridge" else node_digest(node))
                     for name, node in topology.nodes.items()}
        removed = set(old_nodes) - set(new_nodes)
        added = set(new_nodes) - set(old_nodes)
        changed = {name for name in set(old_nodes) & set(new_nodes)
                   if old_nodes[name] != new_nodes[name]}
        renewed = removed | changed  # their namespaces (and links) go
        old_links = {(str(a_node), str(a_if), str(b_node), str(b_if), int(mtu))
                     for a_node, a_if, b_node, b_if, mtu in record.links}
        new_links = {link_key(link): link for link in topology.links}
        gone = {key for key in old_links if key not in new_links
                or key[0] in renewed or key[2] in renewed}
        made = [link for key, link in new_links.items()
                if key not in old_links or key in gone]
        done: list[str] = []
        # 1. links that go, by one surviving end (the other goes with it)
        done += self._remove_links(record, gone, renewed, set(new_links))
        # 2. nodes that go, or are made again
        done += self._remove_nodes(record, renewed, removed)
        records.save(self.engine.paths, record)
        # 3. nodes that come (again), then the links that come, then every node's state
        mgmt = self._mgmt_network(topology, record)
        self._bridges(topology, record)
        starting = {name for name in added | changed if topology.nodes[name].kind == "linux"}
        self._nodes(topology, record, mgmt, only=starting)
        done += [f"{'made again' if name in changed else 'added'} node {name}"
                 for name in sorted(added | changed)]
        mgmt_bridge = ""
        if record.mgmt_network and any(MGMT_NET in (link.a.node, link.b.node)
                                       for link in made):
            from tsubo.engine.networks import NetworkManager

            mgmt_bridge = NetworkManager(self.engine).get(record.mgmt_network).bridge_name
        wiring = plan_wiring(topology, mgmt_bridge)
        fresh = plan_wiring(dataclasses.replace(topology, links=tuple(made)), mgmt_bridge)
        for ifname in fresh.host_ends:
            self._ledger().record("link", ifname, record.owner)
            record.host_links.append(ifname)
        records.save(self.engine.paths, record)
        links.apply_host([*fresh.host_lines, *_stale_lines(record, topology, None)])
        old_ends = {key[:4] for key in old_links}
        done += [f"{'changed' if link_key(link)[:4] in old_ends else 'added'} link "
                 f"{link.a} - {link.b} (mtu {link.mtu})" for link in made
                 if link_key(link) not in old_links]
        for step in wiring.nodes:
            owner = next(name for name in topology.nodes
                         if topology.container_name(name) == step.netns)
            links.apply_in_netns(step.netns,
                                 [*_stale_lines(record, topology, owner), *step.lines],
                                 step.sysctls)
        self._exec(topology, record, only=starting)
        kept = {end for key in (old_links & set(new_links)) - gone
                for end in ((key[0], key[1]), (key[2], key[3]))}
        done += _settings_changed(record, topology, renewed | added, kept)
        _remember(record, topology)
        records.save(self.engine.paths, record)
        return done

    # --- destroy ---------------------------------------------------------------------------

    def destroy(self, name: str, *, cleanup: bool = False) -> LabRecord:
        """Tear the lab down (``cleanup``: also its management network when no container is
        left on it, even if the lab did not create it)."""
        from tsubo.errors import NotFound

        with records.LabLock(self.engine.paths, name):
            record = records.load(self.engine.paths, name)
            if record is None:
                raise NotFound("destroy lab", name, detail="no such lab is deployed")
            return self._destroy(record, cleanup=cleanup)

    def _destroy(self, record: LabRecord, *, cleanup: bool) -> LabRecord:
        from tsubo.errors import WrongState

        name = record.name
        if record.state == records.DEPLOYING and record.deployer_alive():
            raise WrongState("destroy lab", name,
                             detail=f"being deployed by process {record.deployer_pid}")
        if cleanup and record.mgmt_network:
            record.mgmt_created = True
        self.teardown(record)
        return record

    def teardown(self, record: LabRecord) -> None:
        """Remove everything *record* names; goes on past failures, reports them all."""
        from tsubo.errors import NotFound, TeardownErrors
        from tsubo.network import bridge, links

        errors: list[BaseException] = []
        for name in reversed(list(record.containers.values())):
            try:
                self.engine.remove(name, force=True)
            except NotFound:
                pass
            except Exception as error:
                errors.append(error)
        for name in record.pins:
            try:
                bridge.delete_netns(name)
                self._ledger().forget("netns", name)
            except Exception as error:
                errors.append(error)
        host = [*record.host_links, *record.bridges]
        try:
            links.remove_host_links(host)
            for name in host:
                self._ledger().forget("link", name)
        except Exception as error:
            errors.append(error)
        if record.mgmt_network and record.mgmt_created:
            from tsubo.engine.networks import NetworkManager

            manager = NetworkManager(self.engine)
            try:
                network = manager.get(record.mgmt_network)
                if not manager.store.network_endpoints(network.id):
                    manager.remove(network.id)
            except NotFound:
                pass
            except Exception as error:
                errors.append(error)
        if errors:
            raise TeardownErrors("destroy lab", record.name, errors)
        records.remove(self.engine.paths, record.name)

    # --- inspect and exec ------------------------------------------------------------------

    def record(self, name: str) -> LabRecord:
        from tsubo.errors import NotFound

        record = records.load(self.engine.paths, name)
        if record is None:
            raise NotFound("find lab", name, detail="no such lab is deployed")
        return record

    def names(self) -> list[str]:
        return records.names(self.engine.paths)

    def inspect(self, name: str) -> dict[str, object]:
        """The lab and its nodes (containerlab's ``inspect`` fields, JSON-friendly)."""
        from tsubo import jsonwire
        from tsubo.errors import NotFound

        record = self.record(name)
        nodes: list[dict[str, object]] = []
        for node, container in record.containers.items():
            try:
                row = self.engine.refresh(self.engine.db.resolve_container(container))
            except NotFound:
                nodes.append({"node": node, "name": container, "container_id": "",
                              "state": "missing", "ipv4_address": "", "kind": "linux",
                              "image": "", "labels": {}})
                continue
            labels = jsonwire.loads(row.labels or "{}")
            address = ""
            if record.mgmt_network:
                from tsubo.engine.networks import NetworkManager

                for endpoint, network in NetworkManager(self.engine).networks_of(row.id):
                    if network.name == record.mgmt_network:
                        address = f"{endpoint.address}/{endpoint.prefix_len}"
            nodes.append({"node": node, "name": row.name, "container_id": row.id[:12],
                          "state": row.state, "ipv4_address": address,
                          "kind": labels.get(LABEL_KIND, "linux")
                          if isinstance(labels, dict) else "linux",
                          "image": row.image[:19] or row.rootfs.split(":")[0],
                          "labels": labels})
        return {"name": record.name, "file": record.path, "state": record.state,
                "mgmt_network": record.mgmt_network, "bridges": list(record.bridges),
                "host_links": list(record.host_links), "nodes": nodes}

    def validate(self, topology: Topology, *, matrix: bool = False) -> list[CheckResult]:
        """Run the file's checks against the deployed lab (WrongState when it is not);
        *matrix*: instead, every node to every other node's addresses."""
        from tsubo.engine.lab.checks import matrix_checks, run_checks
        from tsubo.errors import WrongState

        record = self.record(topology.name)
        if record.state != records.DEPLOYED:
            raise WrongState("validate lab", topology.name, detail="its deploy did not finish")
        mgmt_subnet = ""
        if record.mgmt_network:
            from tsubo.engine.networks import NetworkManager
            from tsubo.errors import NotFound

            try:
                mgmt_subnet = NetworkManager(self.engine).get(record.mgmt_network).subnet
            except NotFound:
                pass
        checks = matrix_checks(topology) if matrix else list(topology.checks)
        return run_checks(topology, checks, mgmt_subnet=mgmt_subnet)

    def containers_matching(self, name: str, labels: Sequence[tuple[str, str]]) -> list[str]:
        """The lab's container names whose labels include all of *labels*."""
        from tsubo import jsonwire
        from tsubo.errors import NotFound

        chosen = []
        for container in self.record(name).containers.values():
            try:
                row = self.engine.db.resolve_container(container)
            except NotFound:
                continue
            have = jsonwire.loads(row.labels or "{}")
            if isinstance(have, dict) and all(have.get(key) == value
                                              for key, value in labels):
                chosen.append(container)
        return chosen


def node_run_options(topology: Topology, node: Node, mgmt_network: str) -> dict[str, object]:
    """The engine's ``run`` options of a linux node (pure)."""
    labels = {LABEL_LAB: topology.name, LABEL_NODE: node.name, LABEL_KIND: node.kind,
              **({LABEL_FILE: topology.path} if topology.path else {}), **dict(node.labels)}
    values: dict[str, object] = {
        "image": node.image if not node.rootfs else "", "rootfs": node.rootfs,
        "env": [f"{key}={value}" for key, value in node.env],
        "label": [f"{key}={value}" for key, value in labels.items()],
        "volume": list(node.binds),
        # a node configures its own interfaces (containerlab's files do it in `exec`:
        # `ip address add ... dev eth1`); NET_ADMIN reaches only the node's namespace
        "cap_add": list(dict.fromkeys(["NET_ADMIN", *node.cap_add])), "user": node.user,
        "hostname": node.name,
    }
    if node.cmd is not None:
        values["command"] = list(node.cmd)
    if node.entrypoint is not None:
        values["entrypoint"] = node.entrypoint
    if node.memory:
        text = node.memory.lower()
        values["memory"] = text[:-1] if text.endswith(("kb", "mb", "gb")) else text
    if node.cpu is not None:
        values["cpus"] = node.cpu
    if node.network_mode == "host":
        values["network"] = ["host"]
    elif topology.has_mgmt(node) and mgmt_network:
        values["network"] = [mgmt_network]
        if node.mgmt_ipv4:
            values["ip"] = node.mgmt_ipv4
    else:
        values["network"] = ["none"]
    return values


def _host_link_exists(name: str) -> bool:
    from tsubo.kernel import iproute

    try:
        return bool(iproute.query(["link", "show", "dev", name]))
    except iproute.IpError:
        return False


def gc_labs(engine: EngineCommands) -> list[str]:
    """Tear down the labs whose deploy died half-way (``system gc``); what was done."""
    done = []
    manager = LabManager(engine)
    from tsubo.errors import WrongState

    for name in manager.names():
        try:
            with records.LabLock(engine.paths, name):
                record = records.load(engine.paths, name)
                if record is None or record.state != records.DEPLOYING \
                        or record.deployer_alive():
                    continue
                manager.teardown(record)
        except WrongState:
            continue  # a command is working on it: not a leftover
        done.append(f"destroyed lab {name} (its deploy did not finish)")
    return done


def _remember(record: LabRecord, topology: Topology) -> None:
    """Keep what ``apply`` compares a new version of the file with."""
    record.digest = topology_digest(topology)
    record.path = topology.path
    record.shape_mgmt = repr((topology.prefix, topology.mgmt))
    record.node_digests = {name: (node.kind if node.kind == "bridge" else node_digest(node))
                           for name, node in topology.nodes.items()}
    record.links = [list(link_key(link)) for link in topology.links]
    record.addresses = {f"{node}:{ifname}": list(addresses)
                        for (node, ifname), addresses in topology.addresses.items()}
    record.routes = {node: [f"{route.destination} via {route.via}" for route in routes]
                     for node, routes in topology.routes.items()}
    record.sysctls = {name: [f"{key}={value}" for key, value in node.sysctls]
                      for name, node in topology.nodes.items() if node.sysctls}


def _settings_changed(record: LabRecord, topology: Topology, fresh: set[str],
                      kept: set[tuple[str, str]]) -> list[str]:
    """What ``apply`` set in place: addresses on the *kept* link ends, routes and sysctls
    of the nodes that kept running (not in *fresh*); one line each."""
    done = []
    new_addresses = {f"{node}:{ifname}": list(addresses)
                     for (node, ifname), addresses in topology.addresses.items()}
    for key in sorted(set(record.addresses) | set(new_addresses)):
        node, ifname = key.split(":", 1)
        if (node, ifname) in kept \
                and record.addresses.get(key, []) != new_addresses.get(key, []):
            done.append(f"addresses of {key}: {', '.join(new_addresses.get(key, [])) or '-'}")
    new_routes = {node: [f"{route.destination} via {route.via}" for route in routes]
                  for node, routes in topology.routes.items()}
    for node in sorted(set(record.routes) | set(new_routes)):
        if node not in fresh and record.routes.get(node, []) != new_routes.get(node, []):
            done.append(f"routes of {node}: {', '.join(new_routes.get(node, [])) or '-'}")
    for name, spec in topology.nodes.items():
        given = [f"{key}={value}" for key, value in spec.sysctls]
        if name not in fresh and record.sysctls.get(name, []) != given:
            done.append(f"sysctls of {name}: {', '.join(given) or '-'}")
    return done


def _stale_lines(record: LabRecord, topology: Topology, node: str | None) -> list[str]:
    """``addr del`` / ``route del`` lines for what the deployed version of *node* (None:
    the host) had and the new one has not (on links that stay)."""
    from tsubo.engine.lab.topology import HOST

    owner = HOST if node is None else node
    lines = []
    for key, addresses in record.addresses.items():
        end_node, ifname = key.split(":", 1)
        if end_node != owner:
            continue
        wanted = set(topology.addresses.get((end_node, ifname), ()))
        still_linked = any((link.a.node, link.a.interface) == (end_node, ifname)
                           or (link.b.node, link.b.interface) == (end_node, ifname)
                           for link in topology.links)
        if still_linked:
            lines += [f"addr del {address} dev {ifname}" for address in addresses
                      if address not in wanted]
    wanted_routes = {f"{route.destination} via {route.via}"
                     for route in topology.routes.get(owner, ())}
    lines += [f"route del {route}" for route in record.routes.get(owner, [])
              if route not in wanted_routes]
    return lines
