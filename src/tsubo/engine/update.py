"""``update``: a container's resources and restart policy changed while it lives, as
Docker's ``container update`` (``--memory --memory-swap --cpus --cpu-shares
--pids-limit --cpuset-cpus --restart``).

The values are checked by the one options builder (the same words as ``run``'s flags),
applied to a running container's cgroup through the runtime (``runc update``), and then
recorded: in its row (the monitor reads the restart policy from there when the container
exits) and in its ``config.json`` (the next start gets them too).
"""

from __future__ import annotations

import os

from tsubo.engine import status
from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tsubo.engine.core import EngineCore
    from tsubo.state.db import ContainerRow

#: what ``update`` may change (the builder's keys)
UPDATABLE = ("memory", "memory_swap", "cpus", "cpu_shares", "pids_limit", "cpuset_cpus",
             "restart")


def update_container(engine: EngineCore, ref: str, changes: dict[str, Any]) -> ContainerRow:
    from tsubo import jsonwire
    from tsubo.engine.ocispec import build_resources
    from tsubo.engine.options import RunOptions, build_run_options

    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidArgument("update container", ", ".join(unknown),
                              detail=f"cannot be updated (only {', '.join(UPDATABLE)})")
    given = {key: value for key, value in changes.items() if value not in (None, "")}
    if not given:
        raise InvalidArgument("update container", ref, detail="nothing to update",
                              hint="--memory, --cpus, --pids-limit, --restart, ...")
    row = engine.refresh(engine.db.resolve_container(ref))
    if row.state == status.REMOVING:
        raise TsuboError("update container", row.name, detail="container is being removed")
    options = RunOptions.from_json_text(row.options)
    parsed = build_run_options({"image": "-", **given})
    for key in given:
        name = "restart" if key == "restart" else key
        setattr(options, name, getattr(parsed, name))
    if "memory" in given and "memory_swap" not in given and options.memory_swap \
            and options.memory and options.memory_swap != -1 \
            and options.memory > options.memory_swap:
        raise InvalidArgument("update container", row.name,
                              detail="the memory limit should be smaller than the memory+swap "
                              "limit already set", hint="update --memory-swap at the same time")
    if options.remove and options.restart.name != "no":
        raise InvalidArgument("update container", row.name,
                              detail="a restart policy conflicts with --rm")
    resources = build_resources(options)
    if row.state in (status.RUNNING, status.PAUSED, status.RESTARTING):
        engine.runtime.update(row.id, resources)
    config_path = f"{engine.paths.container_dir(row.id)}/config.json"
    with open(config_path, "rb") as config_file:
        config = jsonwire.loads(config_file.read(), "config.json")
    if isinstance(config, dict) and isinstance(config.get("linux"), dict):
        config["linux"]["resources"] = resources
        temporary = f"{config_path}.update"
        with open(temporary, "w", encoding="utf-8") as config_file:
            config_file.write(jsonwire.dumps(config))
        os.replace(temporary, config_path)
    engine.db.update_container(row.id, options=options.to_json_text())
    engine.event(row.id, "update", name=row.name)
    return engine.db.get_container(row.id)
