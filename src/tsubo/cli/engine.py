"""``tsubo``: the Docker-like engine command line, a thin shell over :class:`tsubo.Engine`.

Flags, output and exit codes follow Docker's conventions so muscle memory works: 125 when
the engine fails, 126 when the command cannot be executed, 127 when it is not found, the
container's own status otherwise. Errors are one line on stderr. ``tsubo runtime ...`` is
the OCI runtime (``tsubo-runtime``).
"""

from __future__ import annotations

import os
import sys

from tsubo.cli import build as _build_cli
from tsubo.cli import registry as _registry_cli
from tsubo.cli.argv import FLAG, LIST, VALUE, Command, Option, Parsed, parse, usage
from tsubo.errors import InvalidArgument, TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from tsubo.api import AttachClient, Engine

PROGRAM = "tsubo"
EXIT_ENGINE = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

GLOBAL_OPTIONS = (
    Option("root", VALUE, "data root (default /var/lib/tsubo, or $TSUBO_ROOT)"),
    Option("help,h", FLAG, "show help"),
    Option("version,v", FLAG, "print the version"),
)

_CREATE_OPTIONS = (
    Option("name", VALUE, "assign a name to the container"),
    Option("rootfs", VALUE, "use this directory as the (read-only) root, under an overlay"),
    Option("interactive,i", FLAG, "keep stdin open"),
    Option("tty,t", FLAG, "allocate a pseudo-TTY"),
    Option("env,e", LIST, "set an environment variable"),
    Option("env-file", LIST, "read environment variables from a file"),
    Option("workdir,w", VALUE, "working directory inside the container"),
    Option("user,u", VALUE, "user (name|uid[:group|gid])"),
    Option("hostname,h", VALUE, "container host name"),
    Option("entrypoint", VALUE, "overwrite the default entrypoint"),
    Option("volume,v", LIST, "bind mount or volume: SRC:DST[:ro]"),
    Option("tmpfs", LIST, "mount a tmpfs: DST[:OPTIONS]"),
    Option("read-only", FLAG, "mount the root read-only"),
    Option("memory,m", VALUE, "memory limit (e.g. 512m)"),
    Option("memory-swap", VALUE, "memory + swap limit (-1: unlimited)"),
    Option("cpus", VALUE, "number of CPUs (e.g. 1.5)"),
    Option("cpu-shares,c", VALUE, "CPU shares (relative weight)"),
    Option("pids-limit", VALUE, "process limit"),
    Option("ulimit", LIST, "ulimit: NAME=SOFT[:HARD]"),
    Option("cap-add", LIST, "add a capability"),
    Option("cap-drop", LIST, "drop a capability"),
    Option("security-opt", LIST, "no-new-privileges, seccomp=unconfined|PROFILE"),
    Option("init", FLAG, "run an init (tini) as PID 1 that reaps zombies"),
    Option("restart", VALUE, "no | on-failure[:N] | always | unless-stopped", "no"),
    Option("stop-signal", VALUE, "signal to stop the container (default: the image's, "
           "else SIGTERM)"),
    Option("stop-timeout", VALUE, "seconds to wait before SIGKILL on stop", "10"),
    Option("label,l", LIST, "set metadata (KEY=VALUE)"),
    Option("network,net", LIST, "none, host, container:NAME, or a network (repeatable)"),
    Option("ip", VALUE, "IPv4 address on the first network"),
    Option("mac-address", VALUE, "MAC address on the first network"),
    Option("publish,p", LIST, "publish a port: [IP:][HOSTPORT[-END]:]PORT[-END][/PROTO]"),
    Option("publish-all,P", FLAG, "publish every exposed port on an ephemeral host port"),
    Option("expose", LIST, "expose a port or range: PORT[-END][/PROTO]"),
    Option("network-alias", LIST, "another name for the container on its networks"),
    Option("add-host", LIST, "add NAME:IP (or NAME:host-gateway) to /etc/hosts"),
    Option("dns", LIST, "nameserver (on a network: what the network's resolver asks)"),
    Option("dns-search", LIST, "DNS search domain"),
    Option("dns-option", LIST, "resolv.conf option (e.g. ndots:2)"),
    Option("domainname", VALUE, "the container's NIS domain name"),
    Option("rm", FLAG, "remove the container when it exits"),
)
_RUN_OPTIONS = (
    *_CREATE_OPTIONS,
    Option("detach,d", FLAG, "run in the background and print the container ID"),
)


# --- run / create / start -------------------------------------------------------------------

def _run_values(parsed: Parsed) -> dict[str, Any]:
    """The flags of ``create``/``run`` as the one options builder takes them
    (``tsubo.api.build_run_options``: the API's keyword arguments are the same keys)."""
    values: dict[str, Any] = {}
    for option in _RUN_OPTIONS:
        key = option.key
        if key in ("name", "detach") or key not in parsed.given:
            continue
        values[key] = parsed.values[key]
    positional = list(parsed.positional)
    if not values.get("rootfs") and positional:
        values["image"], positional = positional[0], positional[1:]
    values["command"] = positional
    return values


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"parse {flag}", text, detail="expected an integer") from None


def _create(engine: Engine, parsed: Parsed) -> int:
    container = engine.create(name=parsed.text("name") or None, **_run_values(parsed))
    _print(container.id)
    return 0


def _run(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import build_run_options

    values = _run_values(parsed)
    name = parsed.text("name") or None
    if parsed.flag("detach"):
        _print(engine.run(name=name, **values).id)
        return 0
    return _attach(engine.run_attached(build_run_options(values), name=name))


def _attach(client: AttachClient) -> int:
    try:
        client.wait_started()
        code = client.relay()
    finally:
        os.close(client.sock_fd)
    if client.detached:
        sys.stderr.write(f"\r\ndetached from {client.container_id[:12]} (it keeps "
                         "running)\r\n")
        return 0
    if code is None:
        raise TsuboError("attach", client.container_id[:12],
                         detail="lost the container's monitor")
    return code


def _start(engine: Engine, parsed: Parsed) -> int:
    if not parsed.positional:
        raise InvalidArgument("start", "", detail="requires at least one container")
    if parsed.flag("attach"):
        return _attach(engine.start_attached(parsed.positional[0],
                                             stdin=parsed.flag("interactive")))
    status = 0
    for ref in parsed.positional:
        try:
            engine.start(ref)
            _print(ref)
        except TsuboError as error:
            _error(error.message())
            status = 1
    return status


# --- stop / kill / rm / wait / pause ---------------------------------------------------------

def _each(parsed: Parsed, action: Callable[[str], object], verb: str) -> int:
    if not parsed.positional:
        raise InvalidArgument(verb, "", detail="requires at least one container")
    status = 0
    for ref in parsed.positional:
        try:
            action(ref)
            _print(ref)
        except TsuboError as error:
            _error(error.message())
            status = 1
    return status


def _stop(engine: Engine, parsed: Parsed) -> int:
    timeout = float(_int(parsed.text("time"), "--time")) if parsed.text("time") else None
    return _each(parsed, lambda ref: engine.stop(ref, timeout), "stop")


def _restart(engine: Engine, parsed: Parsed) -> int:
    timeout = float(_int(parsed.text("time"), "--time")) if parsed.text("time") else None
    return _each(parsed, lambda ref: engine.restart(ref, timeout), "restart")


def _kill(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import parse_signal

    signal = parse_signal(parsed.text("signal") or "KILL")
    return _each(parsed, lambda ref: engine.kill(ref, signal), "kill")


def _rm(engine: Engine, parsed: Parsed) -> int:
    return _each(parsed, lambda ref: engine.remove(ref, force=parsed.flag("force"),
                                                   volumes=parsed.flag("volumes")), "rm")


def _pause(engine: Engine, parsed: Parsed) -> int:
    return _each(parsed, engine.pause, "pause")


def _unpause(engine: Engine, parsed: Parsed) -> int:
    return _each(parsed, engine.unpause, "unpause")


def _wait(engine: Engine, parsed: Parsed) -> int:
    if not parsed.positional:
        raise InvalidArgument("wait", "", detail="requires at least one container")
    for ref in parsed.positional:
        _print(str(engine.wait(ref)))
    return 0


# --- exec / logs / inspect / ps ----------------------------------------------------------------

def _exec(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) < 2:
        raise InvalidArgument("exec", "", detail="requires a container and a command")
    ref, command = parsed.positional[0], parsed.positional[1:]
    env = parsed.texts("env")
    if parsed.flag("tty"):
        from tsubo.cli.terminal import exec_with_tty

        return exec_with_tty(engine, ref, command, env=env, workdir=parsed.text("workdir"),
                             user=parsed.text("user"), stdin=parsed.flag("interactive"))
    stdin = 0
    if not parsed.flag("interactive") and not parsed.flag("detach"):
        stdin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return engine.exec(ref, command, env=env, workdir=parsed.text("workdir"),
                           user=parsed.text("user"), detach=parsed.flag("detach"),
                           stdio=(stdin, 1, 2))
    finally:
        if stdin:
            os.close(stdin)


def _logs(engine: Engine, parsed: Parsed) -> int:
    import time

    from tsubo.api import parse_since

    if len(parsed.positional) != 1:
        raise InvalidArgument("logs", "", detail="requires exactly one container")
    tail_text = parsed.text("tail")
    tail = None if tail_text in ("", "all") else _int(tail_text, "--tail")
    since = parse_since(parsed.text("since"), time.time()) if parsed.text("since") else None
    for stream, data in engine.logs(parsed.positional[0], follow=parsed.flag("follow"),
                                    tail=tail, since=since,
                                    timestamps=parsed.flag("timestamps")):
        target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        target.write(data)
        target.flush()
    return 0


def _inspect(engine: Engine, parsed: Parsed) -> int:
    import json

    if not parsed.positional:
        raise InvalidArgument("inspect", "", detail="requires at least one container or image")
    _print(json.dumps([engine.inspect(ref) for ref in parsed.positional], indent=4))
    return 0


def _ps(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import ports_column
    from tsubo.cli.render import container_table, filter_rows, format_rows

    rows = engine.container_records(all=parsed.flag("all") or bool(parsed.texts("filter")))
    rows = filter_rows(rows, parsed.texts("filter"), all_states=parsed.flag("all"))
    if parsed.flag("quiet"):
        _print("".join(f"{row.id[:12]}\n" for row in rows), end="")
        return 0
    ports = {cid: ports_column(found) for cid, found in engine.published_ports().items()}
    if parsed.text("format"):
        _print(format_rows(rows, parsed.text("format"), ports), end="")
    else:
        _print(container_table(rows, ports))
    return 0


def _port(engine: Engine, parsed: Parsed) -> int:
    """``port CONTAINER [PORT[/PROTO]]``: its published ports (Docker's lines)."""
    from tsubo.api import port_lines

    if not parsed.positional or len(parsed.positional) > 2:
        raise InvalidArgument("port", " ".join(parsed.positional),
                              detail="requires CONTAINER [PORT[/PROTO]]")
    ref, wanted = parsed.positional[0], (parsed.positional[1:] or [""])[0]
    lines = port_lines(engine.container(ref).ports, wanted)
    if wanted and not lines:
        raise InvalidArgument("port", wanted, detail=f"no public port '{wanted}' published "
                              f"for {ref}")
    _print("".join(f"{line}\n" for line in lines), end="")
    return 0


# --- volumes, system ---------------------------------------------------------------------------

def _volume(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.render import volume_command

    return volume_command(engine, parsed.positional, quiet=parsed.flag("quiet"))


def _import(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 2:
        raise InvalidArgument("import", " ".join(parsed.positional),
                              detail="expected ROOTFS.tar NAME[:TAG]")
    image = engine.import_image(os.path.abspath(parsed.positional[0]), parsed.positional[1],
                                parsed.texts("change"))
    _print(f"sha256:{image.id}")
    return 0


def _images(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.images import images_command

    return images_command(engine, parsed)


def _image(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.images import image_command

    return image_command(engine, parsed, COMMANDS)


def _save(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.images import save_command

    return save_command(engine, parsed)


def _load(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.images import load_command

    return load_command(engine, parsed)


def _tag(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 2:
        raise InvalidArgument("tag", " ".join(parsed.positional),
                              detail="expected SOURCE_IMAGE TARGET_IMAGE[:TAG]")
    engine.tag(*parsed.positional)
    return 0


def _rmi(engine: Engine, parsed: Parsed) -> int:
    return _each(parsed, lambda ref: engine.remove_image(ref, force=parsed.flag("force")),
                 "rmi")


def _pull(engine: Engine, parsed: Parsed) -> int:
    return _registry_cli.pull_command(engine, parsed)


def _push(engine: Engine, parsed: Parsed) -> int:
    return _registry_cli.push_command(engine, parsed)


def _login(engine: Engine, parsed: Parsed) -> int:
    return _registry_cli.login_command(engine, parsed)


def _logout(engine: Engine, parsed: Parsed) -> int:
    return _registry_cli.logout_command(engine, parsed)


def _network(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.network import network_command

    return network_command(engine, parsed)


def _lab(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.lab import lab_command

    return lab_command(engine, parsed)


def _system(engine: Engine, parsed: Parsed) -> int:
    if parsed.positional[:1] == ["df"]:
        from tsubo.cli.images import df_command

        return df_command(engine, parsed.positional[1:])
    if parsed.positional[:1] == ["gc"]:
        for line in engine.gc():
            _print(line)
        return 0
    if parsed.positional[:1] != ["prune"]:
        raise InvalidArgument("system", " ".join(parsed.positional),
                              detail="supported: system prune, system gc, system df")
    removed = engine.prune_containers()
    for container_id in removed:
        _print(f"deleted container {container_id}")
    _print(f"Total reclaimed: {len(removed)} containers")
    return 0


def _build(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.build import build_command

    return build_command(engine, parsed)


def _commit(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.build import commit_command

    return commit_command(engine, parsed)


def _diff(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.build import diff_command

    return diff_command(engine, parsed)


def _builder(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.build import builder_command

    return builder_command(engine, parsed)


def _export(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.build import export_command

    return export_command(engine, parsed)


def _version(engine: Engine | None = None, parsed: Parsed | None = None) -> int:
    from tsubo.version import OCI_VERSION, __version__

    _print(f"tsubo version {__version__} (OCI runtime spec {OCI_VERSION})")
    return 0


# the flags of the image commands whose handlers are in cli/images.py (imported when run)
_IMAGE_LIST_OPTIONS = (
    Option("all,a", FLAG, "show all images (there are no intermediate images to hide)"),
    Option("quiet,q", FLAG, "only IDs"),
    Option("digests", FLAG, "show the manifest digests images were pulled by"),
    Option("no-trunc", FLAG, "do not truncate IDs"),
    Option("filter,f", LIST, "dangling=true|false, reference=PATTERN, label=KEY[=VALUE]"),
    Option("format", VALUE, "table, json, or a {{.Field}} template"),
)
_SAVE_OPTIONS = (
    Option("output,o", VALUE, "write to this file (or directory for oci-dir)"),
    Option("format", VALUE, "docker-archive, oci-archive or oci-dir", "docker-archive"),
)
_LOAD_OPTIONS = (
    Option("input,i", VALUE, "read this archive or layout directory instead of stdin"),
    Option("quiet,q", FLAG, "print only the Loaded image lines (there is no progress)"),
)

COMMANDS: dict[str, Command] = {
    "run": Command(_run, _RUN_OPTIONS, "run [OPTIONS] IMAGE|--rootfs DIR [COMMAND] [ARG...]",
                   "create and start a container"),
    "create": Command(_create, _CREATE_OPTIONS, "create [OPTIONS] IMAGE|--rootfs DIR [CMD...]",
                      "create a container without starting it"),
    "start": Command(_start, (Option("attach,a", FLAG, "attach stdout/stderr"),
                              Option("interactive,i", FLAG, "attach stdin")),
                     "start [-a] [-i] CONTAINER...", "start containers"),
    "stop": Command(_stop, (Option("time,t", VALUE, "seconds before SIGKILL"),),
                    "stop [-t N] CONTAINER...", "stop containers (signal, then SIGKILL)"),
    "restart": Command(_restart, (Option("time,t", VALUE, "seconds before SIGKILL"),),
                       "restart [-t N] CONTAINER...", "restart containers"),
    "kill": Command(_kill, (Option("signal,s", VALUE, "signal (default KILL)"),),
                    "kill [-s SIGNAL] CONTAINER...", "send a signal to containers"),
    "rm": Command(_rm, (Option("force,f", FLAG, "kill a running container first"),
                        Option("volumes,v", FLAG, "remove its anonymous volumes")),
                  "rm [-f] [-v] CONTAINER...", "remove containers"),
    "ps": Command(_ps, (Option("all,a", FLAG, "show all containers"),
                        Option("quiet,q", FLAG, "only IDs"),
                        Option("filter,f", LIST, "status=, name=, id=, label="),
                        Option("format", VALUE, "table, json, or a {{.Field}} template")),
                  "ps [-a] [-q] [--filter K=V] [--format F]", "list containers"),
    "logs": Command(_logs, (Option("follow,f", FLAG, "follow new output"),
                            Option("tail,n", VALUE, "number of lines from the end", "all"),
                            Option("since", VALUE, "show logs since a time or duration"),
                            Option("timestamps,t", FLAG, "show timestamps")),
                    "logs [-f] [--tail N] [--since T] [-t] CONTAINER", "show a container's logs"),
    "exec": Command(_exec, (Option("interactive,i", FLAG, "keep stdin open"),
                            Option("tty,t", FLAG, "allocate a pseudo-TTY"),
                            Option("detach,d", FLAG, "run in the background"),
                            Option("env,e", LIST, "set an environment variable"),
                            Option("workdir,w", VALUE, "working directory"),
                            Option("user,u", VALUE, "user (name|uid[:group|gid])")),
                    "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                    "run a command in a running container"),
    "port": Command(_port, (), "port CONTAINER [PORT[/PROTO]]",
                    "list a container's published ports"),
    "inspect": Command(_inspect, (), "inspect CONTAINER|IMAGE...",
                       "show containers (else images) as JSON"),
    "wait": Command(_wait, (), "wait CONTAINER...", "wait for containers; print exit codes"),
    "pause": Command(_pause, (), "pause CONTAINER...", "freeze all processes"),
    "unpause": Command(_unpause, (), "unpause CONTAINER...", "thaw all processes"),
    "import": Command(_import, (Option("change,c", LIST, "CMD, ENTRYPOINT, ENV, WORKDIR, USER, "
                                       "LABEL instruction"),),
                      "import [-c INSTRUCTION] ROOTFS.tar NAME[:TAG]",
                      "make an image from a root filesystem tarball"),
    "build": Command(_build, _build_cli.BUILD_OPTIONS,
                     "build [-t NAME[:TAG]] [-f FILE|-] [--build-arg K=V] [--target STAGE] "
                     "[--no-cache] [--network MODE] [-q] [--iidfile F] CONTEXT|-",
                     "build an image from a Dockerfile"),
    "builder": Command(_builder, _build_cli.BUILDER_OPTIONS, "builder prune [-f]",
                       "remove the build cache (and the layers only it kept)"),
    "commit": Command(_commit, _build_cli.COMMIT_OPTIONS,
                      "commit [-c INSTRUCTION] [-m MESSAGE] [-a AUTHOR] CONTAINER "
                      "[REPOSITORY[:TAG]]", "make an image from a container's changes"),
    "diff": Command(_diff, (), "diff CONTAINER",
                    "list the changed files of a container (A added, C changed, D deleted)"),
    "export": Command(_export, _build_cli.EXPORT_OPTIONS, "export [-o FILE] CONTAINER",
                      "write a container's file system as a tar (stdout without -o)"),
    "images": Command(_images, _IMAGE_LIST_OPTIONS,
                      "images [-a] [-q] [--digests] [--filter K=V] [--format F] [REPO[:TAG]]",
                      "list images"),
    "image": Command(_image, (), "image ls|inspect|rm|tag|prune|history|load|save|import|"
                     "pull|push [ARGS]", "manage images"),
    "save": Command(_save, _SAVE_OPTIONS,
                    "save [-o FILE] [--format docker-archive|oci-archive|oci-dir] IMAGE...",
                    "write images to an archive (stdout without -o)"),
    "load": Command(_load, _LOAD_OPTIONS, "load [-i FILE|DIR] [-q]",
                    "load images from an archive or OCI layout (stdin without -i)"),
    "tag": Command(_tag, (), "tag SOURCE_IMAGE TARGET_IMAGE[:TAG]",
                   "give an image another name"),
    "rmi": Command(_rmi, (Option("force,f", FLAG, "even if containers use it"),),
                   "rmi [-f] IMAGE...", "remove images"),
    "pull": Command(_pull, _registry_cli.PULL_OPTIONS,
                    "pull [--platform OS/ARCH] [-q] [--tls-verify=false] IMAGE",
                    "download an image from a registry"),
    "push": Command(_push, _registry_cli.PUSH_OPTIONS, "push [-q] IMAGE [DESTINATION]",
                    "upload an image to a registry"),
    "login": Command(_login, _registry_cli.LOGIN_OPTIONS,
                     "login [-u USER] [-p PASS|--password-stdin] [REGISTRY]",
                     "save credentials for a registry"),
    "logout": Command(_logout, _registry_cli.LOGOUT_OPTIONS, "logout [REGISTRY]",
                      "forget a registry's credentials"),
    "volume": Command(_volume, (Option("quiet,q", FLAG, "ls: only names"),),
                      "volume create|ls [-q]|inspect|rm [NAME...]", "manage volumes"),
    "network": Command(_network, (
        Option("subnet", VALUE, "subnet in CIDR form (default: a free one from the pool)"),
        Option("gateway", VALUE, "gateway address (default: the subnet's first)"),
        Option("ip-range", VALUE, "allocate container addresses from this range"),
        Option("internal", FLAG, "no way out of the network, nor to the host (DNS: its own names)"),
        Option("mtu", VALUE, "MTU of the bridge and its veths", "0"),
        Option("bridge-name", VALUE, "bridge interface name (at most 15 bytes)"),
        Option("label", LIST, "set metadata (KEY=VALUE)"),
        Option("ip", VALUE, "connect: the container's address"),
        Option("quiet,q", FLAG, "ls: only names"),
        Option("format,f", VALUE, "graph: dot, mermaid, svg or text"),
    ), "network create|ls|inspect|rm|prune|connect|disconnect|reload|graph [OPTIONS] [ARGS]",
        "manage networks"),
    "lab": Command(_lab, (
        Option("topo,t", VALUE, "the topology file (containerlab's *.clab.yml)"),
        Option("name", VALUE, "destroy/inspect/exec: the lab's name instead of -t"),
        Option("all,a", FLAG, "destroy/inspect/exec: every deployed lab"),
        Option("cleanup", FLAG, "destroy: also the management network, if unused"),
        Option("format,f", VALUE, "inspect: table or json; graph: dot, mermaid, svg, text"),
        Option("label", LIST, "exec: only containers with this label (KEY=VALUE)"),
        Option("cmd", VALUE, "exec: the command to run"),
        Option("explain", FLAG, "deploy: print the equivalent ip commands, deploy nothing"),
        Option("matrix", FLAG, "validate: every node to every other node's addresses"),
        Option("write,w", VALUE, "capture: write packets to this pcap file"),
        Option("count,c", VALUE, "capture: stop after this many packets"),
        Option("timeout", VALUE, "capture: stop after this many seconds (default 10)"),
    ), "lab deploy|apply|destroy|inspect|exec|validate|graph|capture [-t FILE] [OPTIONS]",
        "network labs from containerlab topology files"),
    "system": Command(_system, (), "system prune|gc|df [-v]",
                      "remove stopped containers | remove leftovers of crashes | disk usage"),
    "version": Command(_version, (), "version", "print the version"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["runtime"]:
        from tsubo.cli import runtime

        return runtime.main(args[1:])
    try:
        global_flags = parse(args, GLOBAL_OPTIONS, PROGRAM)
        if global_flags.flag("version"):
            return _version()
        if global_flags.flag("help") or not global_flags.positional:
            _print(_help())
            return 0 if global_flags.flag("help") else 1
        name, *rest = global_flags.positional
        command = COMMANDS.get(name)
        if command is None:
            raise InvalidArgument(PROGRAM, name, detail="unknown command",
                                  hint=f"'{PROGRAM} --help' lists the commands")
        if rest[:1] in (["--help"], ["-h"]) and name not in ("run", "create"):
            _print(f"usage: {PROGRAM} {command.usage}\n\n{command.summary}\n\n"
                   f"{usage(command.options)}")
            return 0
        if rest[:1] == ["--help"]:
            _print(f"usage: {PROGRAM} {command.usage}\n\n{usage(command.options)}")
            return 0
        # `network create NAME --subnet X`: flags may follow the verb's arguments
        parsed = parse(rest, command.options, f"{PROGRAM} {name}", combine_short=True,
                       stop_at_positional=name not in ("network", "volume", "save", "images",
                                                       "lab", "build", "export",
                                                       "builder"))
        if name == "version":
            return _version()
        from tsubo.api import Engine

        engine = Engine(global_flags.text("root") or None)
        try:
            return command.handler(engine, parsed)
        finally:
            engine.close()
    except TsuboError as error:
        _error(error.message())
        return _exit_code(error, args)
    except KeyboardInterrupt:
        return 130


def _exit_code(error: TsuboError, args: list[str]) -> int:
    """Docker's: 126 the command cannot be executed, 127 it was not found (both only when
    the runtime's exec step failed), 125 any other failure of ``run``/``create``, and 1
    for the other commands (the docker CLI's generic error status)."""
    if error.operation == "exec" and error.errno == 2:
        return EXIT_NOT_FOUND
    if error.operation == "exec" and error.errno in (13, 8, 21):  # EACCES, ENOEXEC, EISDIR
        return EXIT_CANNOT_EXECUTE
    command = next((arg for arg in args if arg in COMMANDS), "")
    return EXIT_ENGINE if command in ("run", "create", "") else 1


def _help() -> str:
    commands = "\n".join(f"   {name:<9} {command.summary}" for name, command in COMMANDS.items())
    return (f"usage: {PROGRAM} [--root DIR] COMMAND [OPTIONS]\n\n"
            "A daemonless container engine.\n\n"
            f"commands:\n{commands}\n   runtime   the OCI runtime (tsubo runtime --help)\n")


def _print(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _error(text: str) -> None:
    sys.stderr.write(f"{PROGRAM}: {text}\n")


def _json(text: str) -> dict[str, object]:
    from tsubo import jsonwire

    value = jsonwire.loads(text)
    assert isinstance(value, dict)
    return value


if __name__ == "__main__":
    sys.exit(main())
