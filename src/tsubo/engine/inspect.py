"""``tsubo inspect``: a container as Docker's JSON shape (the fields tools read)."""

from __future__ import annotations

from tsubo.engine import status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.options import RunOptions
    from tsubo.engine.paths import EngineState
    from tsubo.state.db import ContainerRow


def inspect_container(engine: EngineState, row: ContainerRow) -> dict[str, Any]:
    from tsubo import jsonwire
    from tsubo.engine.options import RunOptions
    from tsubo.engine.storage import ContainerFiles

    options = RunOptions.from_json(_dict(jsonwire.loads(row.options)))
    files = ContainerFiles(engine.paths.container_dir(row.id))
    try:
        with open(files.config, "rb") as config_file:
            config = _dict(jsonwire.loads(config_file.read()))
    except (OSError, ValueError):
        config = {}
    image = _image_config(engine, row.image)
    cmd = options.command or (image.get("Cmd") if options.entrypoint is None else None) or []
    entrypoint = options.entrypoint if options.entrypoint is not None \
        else image.get("Entrypoint")
    process = _dict(config.get("process") or {})
    running = row.state in status.ACTIVE
    record = {
        "Id": row.id,
        "Created": row.created_at,
        "Path": (process.get("args") or [""])[0],
        "Args": (process.get("args") or [""])[1:],
        "State": {
            "Status": row.state, "Running": running, "Paused": row.state == status.PAUSED,
            "Restarting": row.state == status.RESTARTING, "OOMKilled": bool(row.oom_killed),
            "Dead": row.state == status.DEAD, "Pid": row.pid if running else 0,
            "ExitCode": row.exit_code if row.exit_code is not None else 0,
            "Error": row.error,
            "StartedAt": row.started_at or "0001-01-01T00:00:00Z",
            "FinishedAt": row.finished_at or "0001-01-01T00:00:00Z",
        },
        "Image": row.image,
        "Name": f"/{row.name}",
        "RestartCount": row.restart_count,
        "LogPath": files.log,
        "Driver": "overlay",
        "Config": {
            "Hostname": config.get("hostname", ""), "User": options.user,
            "Tty": options.tty, "OpenStdin": options.interactive,
            "Env": process.get("env", []), "Cmd": cmd,
            "Image": row.image or row.rootfs, "WorkingDir": process.get("cwd", "/"),
            "Entrypoint": entrypoint, "Labels": options.labels,
            "StopSignal": options.stop_signal, "StopTimeout": options.stop_timeout,
            "ExposedPorts": _dict(image.get("ExposedPorts")),
            "Volumes": {volume.destination: {} for volume in options.volumes
                        if not volume.is_bind} or None,
        },
        "HostConfig": {
            "Memory": options.memory or 0, "MemorySwap": options.memory_swap or 0,
            "NanoCpus": int((options.cpus or 0) * 1e9), "CpuShares": options.cpu_shares or 0,
            "PidsLimit": options.pids_limit, "ReadonlyRootfs": options.read_only,
            "CapAdd": options.cap_add, "CapDrop": options.cap_drop, "Init": options.init,
            "AutoRemove": options.remove, "NetworkMode": options.network,
            "RestartPolicy": {"Name": options.restart.name,
                              "MaximumRetryCount": options.restart.max_retries},
            "Binds": [f"{v.source}:{v.destination}{':ro' if v.read_only else ''}"
                      for v in options.volumes],
            "Ulimits": [{"Name": name, "Soft": soft, "Hard": hard}
                        for name, soft, hard in options.ulimits],
            "ShmSize": options.shm_size or 64 << 20, "Sysctls": options.sysctls,
            "CpusetCpus": options.cpuset_cpus, "PidMode": options.pid_mode,
            "IpcMode": options.ipc_mode or "private", "UTSMode": options.uts_mode,
            "Privileged": options.privileged,
            "Devices": [{"PathOnHost": host, "PathInContainer": container,
                         "CgroupPermissions": permissions}
                        for host, container, permissions in options.devices],
            "VolumesFrom": options.volumes_from or None,
            "LogConfig": {"Type": options.log_driver, "Config": {}},
        },
        "Mounts": [m for m in config.get("mounts", []) if m.get("type") == "bind"
                   and not str(m.get("destination", "")).startswith("/etc/")],
        "NetworkSettings": _network_settings(engine, row, options, image),
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": row.rootfs,
                                                   "UpperDir": f"{files.directory}/upper",
                                                   "MergedDir": files.merged}},
    }
    if options.healthcheck:
        from tsubo.engine.health import read_health

        record["Config"]["Healthcheck"] = options.healthcheck
        health = read_health(engine.paths, row.id)
        if health is not None:
            record["State"]["Health"] = health
    return record


def _network_settings(engine: EngineState, row: ContainerRow, options: RunOptions,
                      image: dict[str, Any]) -> dict[str, Any]:
    """``NetworkSettings.Ports``: every exposed or published container port, with its host
    bindings while the container runs (null when it has none), as Docker prints it; and
    ``Networks``: per network the container is on, its addresses (``GlobalIPv6Address``
    on a dual-stack network), gateways and MAC, as Docker's endpoint settings."""
    from tsubo.engine.networks import NetworkManager
    from tsubo.network.ports import parse_expose, ports_map

    exposed = [pair for text in options.expose for pair in parse_expose(text)]
    exposed += [pair for key in _dict(image.get("ExposedPorts")) if isinstance(key, str)
                for pair in parse_expose(key, "EXPOSE")]
    exposed += [(spec.container_port, spec.protocol) for spec in options.publish]
    manager = NetworkManager(engine)
    published = manager.published(row.id).get(row.id, [])
    networks = {network.name: {
        "NetworkID": network.id, "EndpointID": endpoint.host_ifname,
        "Gateway": network.gateway, "IPAddress": endpoint.address,
        "IPPrefixLen": endpoint.prefix_len,
        "IPv6Gateway": network.gateway6 if endpoint.address6 else "",
        "GlobalIPv6Address": endpoint.address6, "GlobalIPv6PrefixLen": endpoint.prefix_len6,
        "MacAddress": endpoint.mac} for endpoint, network in manager.networks_of(row.id)}
    return {"Ports": ports_map(published, exposed), "Networks": networks}


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _image_config(engine: EngineState, image_id: str) -> dict[str, Any]:
    """The ``config`` object of the container's image ({} for --rootfs or a removed one)."""
    if not image_id:
        return {}
    from tsubo import jsonwire

    row = engine.db.connection.execute("SELECT config FROM images WHERE id = ?",
                                       (image_id,)).fetchone()
    if row is None:
        return {}
    try:
        return _dict(_dict(jsonwire.loads(row[0])).get("config"))
    except ValueError:
        return {}
