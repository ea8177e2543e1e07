"""``tsubo``: the Docker-like engine command line, a thin shell over :class:`tsubo.Engine`.

Flags, output and exit codes follow Docker's conventions so muscle memory works: 125 when
the engine fails, 126 when the command cannot be executed, 127 when it is not found, the
container's own status otherwise. Errors are one line on stderr. ``tsubo runtime ...`` is
the OCI runtime (``tsubo-runtime``).
"""

from __future__ import annotations

import os
import sys

from tsubo.cli.argv import FLAG, LIST, VALUE, Command, FlagError, Option, Parsed, parse, usage
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
    Option("debug,D", FLAG, "show the traceback of an unexpected error (or $TSUBO_DEBUG=1)"),
    Option("help,h", FLAG, "show help"),
    Option("version,v", FLAG, "print the version"),
)

_INSPECT_OPTIONS = (
    Option("format,f", VALUE, "a Go template ({{.State.Status}}, {{json .Config}}) or json"),
    Option("type", VALUE, "only this kind of object: container, image, network or volume"),
)

#: the resource flags ``run``/``create`` and ``update`` share
_RESOURCE_OPTIONS = (
    Option("memory,m", VALUE, "memory limit (e.g. 512m)"),
    Option("memory-swap", VALUE, "memory + swap limit (-1: unlimited)"),
    Option("cpus", VALUE, "number of CPUs (e.g. 1.5)"),
    Option("cpu-shares,c", VALUE, "CPU shares (relative weight)"),
    Option("pids-limit", VALUE, "process limit"),
    Option("cpuset-cpus", VALUE, "CPUs the container may run on (0-2,4)"),
)
_RESTART_OPTION = Option("restart", VALUE, "no | on-failure[:N] | always | unless-stopped",
                         "no")
_UPDATE_OPTIONS = (*_RESOURCE_OPTIONS, _RESTART_OPTION)

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
    Option("mount", LIST, "type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]"),
    Option("read-only", FLAG, "mount the root read-only"),
    *_RESOURCE_OPTIONS,
    Option("ulimit", LIST, "ulimit: NAME=SOFT[:HARD]"),
    Option("cap-add", LIST, "add a capability"),
    Option("cap-drop", LIST, "drop a capability"),
    Option("security-opt", LIST, "no-new-privileges, seccomp=unconfined|PROFILE"),
    Option("init", FLAG, "run an init (tini) as PID 1 that reaps zombies"),
    _RESTART_OPTION,
    Option("stop-signal", VALUE, "signal to stop the container (default: the image's, "
           "else SIGTERM)"),
    Option("stop-timeout", VALUE, "seconds to wait before SIGKILL on stop", "10"),
    Option("label,l", LIST, "set metadata (KEY=VALUE)"),
    Option("label-file", LIST, "read labels from a file of KEY=VALUE lines"),
    Option("cidfile", VALUE, "write the container ID to this file (which must not exist)"),
    Option("network,net", LIST, "none, host, container:NAME, or a network (repeatable; "
           "default: bridge, or $TSUBO_DEFAULT_NETWORK)"),
    Option("ip", VALUE, "IPv4 address on the first network"),
    Option("ip6", VALUE, "IPv6 address on the first network (a network made with --ipv6)"),
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
    Option("health-cmd", VALUE, "command to run to check health (through /bin/sh -c)"),
    Option("health-interval", VALUE, "time between checks (ms|s|m|h, default 30s)"),
    Option("health-timeout", VALUE, "longest a check may run (default 30s)"),
    Option("health-start-period", VALUE, "failures in this time after start do not count"),
    Option("health-retries", VALUE, "failures in a row that make it unhealthy (default 3)"),
    Option("no-healthcheck", FLAG, "disable any health check (the image's too)"),
    Option("shm-size", VALUE, "size of /dev/shm (default 64m)"),
    Option("sysctl", LIST, "a namespaced kernel parameter: KEY=VALUE (net.*, kernel.shm*, ...)"),
    Option("pid", VALUE, "host: the host's PID namespace"),
    Option("ipc", VALUE, "host: the host's IPC namespace (and /dev/shm); private"),
    Option("uts", VALUE, "host: the host's UTS namespace (its host name); container:NAME"),
    Option("pull", VALUE, "pull the image: missing (default), always or never"),
    Option("platform", VALUE, "OS/ARCH: this host's (no emulation of others)"),
    Option("quiet,q", FLAG, "do not show the pull of a missing image"),
    Option("privileged", FLAG, "every capability and device, no seccomp, no masked paths"),
    Option("device", LIST, "a host device: HOST[:CONTAINER][:PERMISSIONS rwm]"),
    Option("volumes-from", LIST, "mount the volumes of a container: NAME[:ro|rw]"),
    Option("log-driver", VALUE, "json-file (default) or none"),
    Option("userns", VALUE, "host (the only user namespace mode)"),
)
_RUN_OPTIONS = (
    *_CREATE_OPTIONS,
    Option("detach,d", FLAG, "run in the background and print the container ID"),
    Option("attach,a", LIST, "attach only to STDIN, STDOUT or STDERR"),
    Option("sig-proxy", FLAG, "forward signals to the container (default true)", True),
    Option("detach-keys", VALUE, "the detach sequence (default ctrl-p,ctrl-q)"),
)
#: the flags of run/create that are the CLI's, not the container's
_CLI_ONLY = frozenset(("name", "detach", "cidfile", "quiet", "attach", "sig_proxy",
                       "detach_keys"))


# --- run / create / start -------------------------------------------------------------------

def _run_values(parsed: Parsed) -> dict[str, Any]:
    """The flags of ``create``/``run`` as the one options builder takes them
    (``tsubo.api.build_run_options``: the API's keyword arguments are the same keys)."""
    values: dict[str, Any] = {}
    for option in _RUN_OPTIONS:
        key = option.key
        if key in _CLI_ONLY or key not in parsed.given:
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
    cidfile = _check_cidfile(parsed)
    container = engine.create(name=parsed.text("name") or None, puller=_puller(engine, parsed),
                              **_run_values(parsed))
    _write_cidfile(cidfile, container.id)
    _print(container.id)
    return 0


def _check_cidfile(parsed: Parsed) -> str:
    """``--cidfile``: refused before anything is made when the file exists (Docker's
    guard against two containers writing one file); its absolute path, or ``""``."""
    path = parsed.text("cidfile")
    if path and os.path.lexists(path):
        raise InvalidArgument("create container", "--cidfile",
                              detail=f"container ID file found, make sure the other container "
                              f"isn't running or delete {path}")
    return os.path.abspath(path) if path else ""


def _write_cidfile(path: str, container_id: str) -> None:
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise TsuboError.from_os_error("write --cidfile", path, error) from None
    try:
        os.write(fd, container_id.encode())
    finally:
        os.close(fd)


class NotATerminal(InvalidArgument):
    """``-it`` with a stdin that is not a terminal (Docker's words; exit 1 even for run)."""


def _check_input_is_a_terminal(parsed: Parsed) -> None:
    """``-i -t`` reads the terminal in raw mode: refuse a pipe or a file as Docker does,
    rather than hang or garble it (``-t`` alone is fine)."""
    if parsed.flag("tty") and parsed.flag("interactive") and not parsed.flag("detach") \
            and not os.isatty(0):
        raise NotATerminal("the input device is not a TTY")


def _run(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import build_run_options

    _check_input_is_a_terminal(parsed)
    streams = _attached_streams(parsed)
    detach_keys = _detach_keys(parsed)
    cidfile = _check_cidfile(parsed)
    values = _run_values(parsed)
    name = parsed.text("name") or None
    puller = _puller(engine, parsed)
    if parsed.flag("detach"):
        container_id = engine.run(name=name, puller=puller, **values).id
        _write_cidfile(cidfile, container_id)
        _print(container_id)
        return 0
    options = build_run_options(values)
    client = engine.with_image(options, lambda: _started(engine.run_attached(options,
                                                                           name=name)), puller)
    client.sig_proxy = parsed.flag("sig_proxy")
    client.detach_keys = detach_keys
    if streams:
        client.only(streams)
    return _attach(client, cidfile, started=True)


_STREAMS = ("stdin", "stdout", "stderr")


def _attached_streams(parsed: Parsed) -> list[str]:
    """``run -a STDIN|STDOUT|STDERR`` (repeatable; Docker's words and rule against
    ``-d``); [] when not given (stdout and stderr, and stdin with ``-i``)."""
    streams = [text.lower() for text in parsed.texts("attach")]
    for text, stream in zip(parsed.texts("attach"), streams, strict=True):
        if stream not in _STREAMS:
            raise InvalidArgument("parse --attach", text,
                                  detail="valid streams are STDIN, STDOUT and STDERR")
    if streams and parsed.flag("detach"):
        raise InvalidArgument("run", "-a", detail="conflicting options: -a and -d")
    return streams


def _detach_keys(parsed: Parsed) -> bytes:
    from tsubo.api import parse_detach_keys

    return parse_detach_keys(parsed.text("detach_keys"))


def _puller(engine: Engine, parsed: Parsed) -> Callable[[str, str, bool], None]:
    """``run``/``create``'s puller; the registry CLI is loaded only if it pulls."""
    def pull(reference: str, platform: str, missing: bool) -> None:
        from tsubo.cli import registry

        registry.run_puller(engine, quiet=parsed.flag("quiet"))(reference, platform, missing)

    return pull


def _started(client: AttachClient) -> AttachClient:
    """*client* once its container runs (its socket closed if it could not start)."""
    try:
        client.wait_started()
    except BaseException:
        os.close(client.sock_fd)
        raise
    return client


def _attach(client: AttachClient, cidfile: str = "", *, started: bool = False) -> int:
    try:
        if not started:
            client.wait_started()
        _write_cidfile(cidfile, client.container_id)
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
            _error(error.message(readable=True))
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
            _error(error.message(readable=True))
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
    condition = parsed.text("condition") or "not-running"
    if condition == "healthy":
        for ref in parsed.positional:
            engine.wait_healthy(ref)
            _print(ref)
        return 0
    if condition != "not-running":
        raise InvalidArgument("wait --condition", condition,
                              detail="expected not-running or healthy")
    for ref in parsed.positional:
        _print(str(engine.wait(ref)))
    return 0


# --- exec / logs / inspect / ps ----------------------------------------------------------------

def _exec(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) < 2:
        raise InvalidArgument("exec", "", detail="requires a container and a command")
    ref, command = parsed.positional[0], parsed.positional[1:]
    if parsed.text("detach_keys"):
        _detach_keys(parsed)  # a bad sequence is named first, as Docker's
        raise InvalidArgument("exec --detach-keys", parsed.text("detach_keys"),
                              detail="an exec session cannot be detached from in tsubo (it "
                              "ends with its process)")
    env = parsed.texts("env")
    _check_input_is_a_terminal(parsed)
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
    now = time.time()
    since = parse_since(parsed.text("since"), now) if parsed.text("since") else None
    until = parse_since(parsed.text("until"), now) if parsed.text("until") else None
    for stream, data in engine.logs(parsed.positional[0], follow=parsed.flag("follow"),
                                    tail=tail, since=since, until=until,
                                    timestamps=parsed.flag("timestamps")):
        target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        target.write(data)
        target.flush()
    return 0


def _inspect(engine: Engine, parsed: Parsed) -> int:
    """``inspect [-f TEMPLATE] [--type container|image|network|volume] NAME...``: every
    name is looked up (an error for one is reported, the others still print), then the
    records print together, as Docker's."""
    from tsubo.cli.gotemplate import Template, format_inspected

    if not parsed.positional:
        raise InvalidArgument("inspect", "", detail="requires at least one container or image")
    kind = parsed.text("type")
    lookups: dict[str, Callable[[str], dict[str, Any]]] = {
        "": engine.inspect, "container": engine.inspect_container,
        "image": lambda ref: engine.image(ref).inspect(),
        "network": engine.inspect_network, "volume": engine.inspect_volume}
    if kind not in lookups:
        raise InvalidArgument("inspect --type", kind,
                              detail="expected container, image, network or volume")
    template = parsed.text("format")
    if template and template != "json":
        Template(template)  # a bad template fails before any lookup
    records, status = [], 0
    for ref in parsed.positional:
        try:
            records.append(lookups[kind](ref))
        except TsuboError as error:
            _error(error.message(readable=True))
            status = 1
    if records or not status:
        _print(format_inspected(records, template), end="")
    return status


def _cp(engine: Engine, parsed: Parsed) -> int:
    """``cp [-a] [-L] CONTAINER:SRC DEST|-`` or ``cp [-a] [-L] SRC|- CONTAINER:DEST``."""
    source, destination = (_copy_end(arg) for arg in parsed.positional)
    follow, archive = parsed.flag("follow_link"), parsed.flag("archive")
    if source[0] and destination[0]:
        raise InvalidArgument("cp", " ".join(parsed.positional),
                              detail="copying between containers is not supported")
    if source[0]:
        if destination[1] == "-":
            sys.stdout.flush()
            engine.copy_from(source[0], source[1], stream=sys.stdout.buffer, follow=follow,
                             archive=archive)
        else:
            engine.copy_from(source[0], source[1], destination[1], follow=follow, archive=archive)
        return 0
    if not destination[0]:
        raise InvalidArgument("cp", " ".join(parsed.positional),
                              detail="must specify at least one container source",
                              hint="CONTAINER:PATH names a path in a container")
    if source[1] == "-":
        engine.copy_to(destination[0], "", destination[1], stream=sys.stdin.buffer,
                       follow=follow, archive=archive)
    else:
        engine.copy_to(destination[0], source[1], destination[1], follow=follow,
                       archive=archive)
    return 0


def _copy_end(arg: str) -> tuple[str, str]:
    """(container, path) of a ``cp`` argument; container ``""`` for a host path (one
    starting with ``/`` or ``.``, or without a colon, as Docker splits them)."""
    if arg.startswith(("/", ".")) or ":" not in arg or arg == "-":
        return "", arg
    container, _, path = arg.partition(":")
    if not container:
        return "", arg
    return container, path or "/"


def _top(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.monitoring import top_command

    return top_command(engine, parsed)


def _stats(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.monitoring import stats_command

    return stats_command(engine, parsed)


def _events(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.monitoring import events_command

    return events_command(engine, parsed)


def _info(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.monitoring import info_command

    return info_command(engine, parsed)


def _attach_command(engine: Engine, parsed: Parsed) -> int:
    """``attach [--no-stdin] [--sig-proxy=false] [--detach-keys KEYS] CONTAINER``."""
    keys = _detach_keys(parsed)
    client = engine.attach(parsed.positional[0], stdin=not parsed.flag("no_stdin"),
                           sig_proxy=parsed.flag("sig_proxy"))
    client.detach_keys = keys
    return _attach(client)


def _update(engine: Engine, parsed: Parsed) -> int:
    """``update [--memory M] [--cpus N] [--pids-limit N] [--restart P] ... CONTAINER...``."""
    changes = {option.key: parsed.values[option.key] for option in _UPDATE_OPTIONS
               if option.key in parsed.given}
    return _each(parsed, lambda ref: engine.update(ref, **changes), "update")


def _rename(engine: Engine, parsed: Parsed) -> int:
    engine.rename(*parsed.positional)
    return 0


def _container_inspect(engine: Engine, parsed: Parsed) -> int:
    """``container inspect``: containers only."""
    parsed.values["type"] = "container"
    return _inspect(engine, parsed)


def _ps(engine: Engine, parsed: Parsed) -> int:
    from tsubo.api import ports_column
    from tsubo.cli.render import container_table, filter_rows, format_rows

    last = 1 if parsed.flag("latest") else _int(parsed.text("last"), "--last") \
        if parsed.text("last") else -1
    every = parsed.flag("all") or last >= 0  # -n/-l: of all states, as Docker's
    rows = engine.container_records(all=every or bool(parsed.texts("filter")))
    rows = filter_rows(rows, parsed.texts("filter"), all_states=every,
                       networks=engine.container_networks)
    if last >= 0:
        rows = rows[:last]  # newest first
    no_trunc = parsed.flag("no_trunc")
    if parsed.flag("quiet"):
        _print("".join(f"{row.id if no_trunc else row.id[:12]}\n" for row in rows), end="")
        return 0
    health = {row.id: engine.health_status(row.id) for row in rows if row.state == "running"}
    ports = {cid: ports_column(found) for cid, found in engine.published_ports().items()}
    sizes = engine.container_sizes(rows) if parsed.flag("size") else None
    if parsed.text("format"):
        _print(format_rows(rows, parsed.text("format"), health, no_trunc=no_trunc,
                           ports=ports, sizes=sizes), end="")
    else:
        _print(container_table(rows, health, no_trunc=no_trunc, ports=ports, sizes=sizes))
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

_VOLUME_VERBS = {
    "create": ((), "volume create [NAME]"),
    "ls": ((Option("quiet,q", FLAG, "only names"),), "volume ls [-q]"),
    "inspect": (_INSPECT_OPTIONS[:1], "volume inspect [-f TEMPLATE] NAME..."),
    "rm": ((Option("force,f", FLAG, "no error for a missing volume"),), "volume rm NAME..."),
    "prune": ((Option("all,a", FLAG, "named volumes too, not only anonymous ones"),
               Option("force,f", FLAG, "do not prompt for confirmation")),
              "volume prune [-a] [-f]"),
}


def _volume(engine: Engine, parsed: Parsed) -> int:
    """``volume VERB``: each verb parses its own flags (``inspect -f`` is a template,
    ``prune -f`` skips the question, as Docker's)."""
    from tsubo.cli.render import volume_command

    verb, rest = (parsed.positional[0], parsed.positional[1:]) if parsed.positional \
        else ("", [])
    verb = {"list": "ls", "remove": "rm"}.get(verb, verb)
    if verb not in _VOLUME_VERBS:
        return volume_command(engine, parsed.positional)  # names the known verbs
    options, usage_text = _VOLUME_VERBS[verb]
    if "--help" in rest:
        _print(f"usage: {PROGRAM} {usage_text}\n\n{usage(options)}")
        return 0
    sub = parse(rest, options, f"volume {verb}", stop_at_positional=False,
                combine_short=True, help_command=f"{PROGRAM} volume {verb}")
    if verb == "prune":
        from tsubo.cli.prune import volume_prune_command

        return volume_prune_command(engine, sub)
    if verb == "inspect":
        sub.values["type"] = "volume"
        return _inspect(engine, sub)
    if verb == "rm" and sub.flag("force"):
        from tsubo.errors import NotFound

        for name in sub.positional:
            try:
                engine.remove_volume(name)
            except NotFound:
                pass
            _print(name)
        return 0
    return volume_command(engine, [verb, *sub.positional], quiet=sub.values.get("quiet") is True)


def _import(engine: Engine, parsed: Parsed) -> int:
    if len(parsed.positional) != 2:
        raise InvalidArgument("import", " ".join(parsed.positional),
                              detail="expected ROOTFS.tar NAME[:TAG]")
    source = parsed.positional[0]
    if source == "-":
        image = engine.import_image("", parsed.positional[1], parsed.texts("change"),
                                    stream=sys.stdin.buffer)
    else:
        image = engine.import_image(os.path.abspath(source), parsed.positional[1],
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
    from tsubo.cli.registry import pull_command

    return pull_command(engine, parsed)


def _push(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.registry import push_command

    return push_command(engine, parsed)


def _login(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.registry import login_command

    return login_command(engine, parsed)


def _logout(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.registry import logout_command

    return logout_command(engine, parsed)


def _network(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.network import network_command

    return network_command(engine, parsed)


def _lab(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.lab import lab_command

    return lab_command(engine, parsed)


def _system(engine: Engine, parsed: Parsed) -> int:
    """``system df|gc|prune|info|events``: each verb parses its own flags."""
    from tsubo.cli.prune import SYSTEM_PRUNE_OPTIONS, system_prune_command

    verb, rest = (parsed.positional[0], parsed.positional[1:]) if parsed.positional \
        else ("", [])
    if verb == "df":
        from tsubo.cli.images import df_command

        return df_command(engine, rest)
    verbs: dict[str, Command] = {
        "gc": Command(_system_gc, (), "system gc", "remove what crashed commands left"),
        "prune": Command(system_prune_command, SYSTEM_PRUNE_OPTIONS,
                         "system prune [-a] [--volumes] [-f]",
                         "remove stopped containers, unused networks and dangling images"),
        **{name: COMMANDS[name] for name in ("info", "events") if name in COMMANDS},
    }
    command = verbs.get(verb)
    if command is None:
        raise InvalidArgument("system", verb, detail="expected df, gc, prune"
                              + "".join(f", {name}" for name in ("info", "events")
                                        if name in verbs))
    if "--help" in rest:
        _print(f"usage: {PROGRAM} {command.usage}\n\n{command.summary}\n\n"
               f"{usage(command.options)}")
        return 0
    sub = parse(rest, command.options, f"system {verb}", stop_at_positional=False,
                combine_short=True, help_command=f"{PROGRAM} system {verb}")
    return command.handler(engine, sub)


def _system_gc(engine: Engine, parsed: Parsed) -> int:
    if parsed.positional:
        raise InvalidArgument("system gc", " ".join(parsed.positional),
                              detail="takes no arguments")
    for line in engine.gc():
        _print(line)
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


def _container_prune(engine: Engine, parsed: Parsed) -> int:
    from tsubo.cli.prune import container_prune_command

    return container_prune_command(engine, parsed)


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

def _options_of(module: str, table: str) -> Callable[[], Sequence[Option]]:
    """The flag table *table* of ``tsubo.cli.<module>``, imported when its command runs."""
    return lambda: getattr(__import__(f"tsubo.cli.{module}", fromlist=[table]), table)


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
                        Option("filter,f", LIST, "status=, name=, id=, label=, ancestor=, "
                               "network="),
                        Option("size,s", FLAG, "show the sizes (written, and with the image)"),
                        Option("last,n", VALUE, "the last N created containers (all states)"),
                        Option("latest,l", FLAG, "the latest created container"),
                        Option("no-trunc", FLAG, "do not truncate IDs and commands"),
                        Option("format", VALUE, "table, json, or a {{.Field}} template")),
                  "ps [-a] [-q] [-s] [-n N] [-l] [--no-trunc] [--filter K=V] [--format F]",
                  "list containers"),
    "logs": Command(_logs, (Option("follow,f", FLAG, "follow new output"),
                            Option("tail,n", VALUE, "number of lines from the end", "all"),
                            Option("since", VALUE, "show logs since a time or duration"),
                            Option("until", VALUE, "show logs before a time or duration"),
                            Option("timestamps,t", FLAG, "show timestamps")),
                    "logs [-f] [--tail N] [--since T] [--until T] [-t] CONTAINER",
                    "show a container's logs"),
    "exec": Command(_exec, (Option("interactive,i", FLAG, "keep stdin open"),
                            Option("tty,t", FLAG, "allocate a pseudo-TTY"),
                            Option("detach,d", FLAG, "run in the background"),
                            Option("env,e", LIST, "set an environment variable"),
                            Option("workdir,w", VALUE, "working directory"),
                            Option("user,u", VALUE, "user (name|uid[:group|gid])"),
                            Option("detach-keys", VALUE, "(exec sessions cannot be detached "
                                   "from)")),
                    "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                    "run a command in a running container"),
    "port": Command(_port, (), "port CONTAINER [PORT[/PROTO]]",
                    "list a container's published ports"),
    "inspect": Command(_inspect, _INSPECT_OPTIONS,
                       "inspect [-f TEMPLATE] [--type TYPE] CONTAINER|IMAGE...",
                       "show containers (else images) as JSON, or through a Go template"),
    "container-inspect": Command(_container_inspect, _INSPECT_OPTIONS[:1],
                                 "container inspect [-f TEMPLATE] CONTAINER...",
                                 "show containers as JSON, or through a Go template"),
    "wait": Command(_wait, (Option("condition", VALUE, "not-running (default) or healthy"),),
                    "wait [--condition not-running|healthy] CONTAINER...",
                    "wait for containers; print exit codes (or until healthy)"),
    "cp": Command(_cp, (Option("archive,a", FLAG, "keep the owners (uid/gid) and modes"),
                        Option("follow-link,L", FLAG, "follow a symlink the source names")),
                  "cp [-a] [-L] CONTAINER:SRC DEST|-  or  cp [-a] [-L] SRC|- CONTAINER:DEST",
                  "copy files between a container and the host", min_args=2, max_args=2),
    "top": Command(_top, (), "top CONTAINER [ps OPTIONS]",
                   "show a container's processes (the host's ps, default -ef)", min_args=1),
    "stats": Command(_stats, _options_of("monitoring", "STATS_OPTIONS"),
                     "stats [-a] [--no-stream] [--no-trunc] [--format F] [CONTAINER...]",
                     "show containers' CPU, memory, network, block I/O and PIDs"),
    "info": Command(_info, _options_of("monitoring", "INFO_OPTIONS"), "info [-f TEMPLATE]",
                    "show what this engine and host are"),
    "events": Command(_events, _options_of("monitoring", "EVENTS_OPTIONS"),
                      "events [--since T] [--until T] [--filter K=V] [--format F]",
                      "show the engine's events (and follow them)"),
    "attach": Command(_attach_command, (
        Option("no-stdin", FLAG, "do not attach stdin"),
        Option("sig-proxy", FLAG, "forward signals to the container (default true)", True),
        Option("detach-keys", VALUE, "the detach sequence (default ctrl-p,ctrl-q)")),
        "attach [--no-stdin] [--sig-proxy=false] [--detach-keys KEYS] CONTAINER",
        "attach to a running container's stdio", min_args=1, max_args=1),
    "update": Command(_update, _UPDATE_OPTIONS,
                      "update [--memory M] [--cpus N] [--pids-limit N] [--restart P] "
                      "CONTAINER...", "change containers' resources and restart policy"),
    "rename": Command(_rename, (), "rename CONTAINER NEW_NAME", "rename a container",
                      min_args=2, max_args=2),
    "pause": Command(_pause, (), "pause CONTAINER...", "freeze all processes"),
    "unpause": Command(_unpause, (), "unpause CONTAINER...", "thaw all processes"),
    "import": Command(_import, (Option("change,c", LIST, "CMD, ENTRYPOINT, ENV, WORKDIR, USER, "
                                       "LABEL instruction"),),
                      "import [-c INSTRUCTION] ROOTFS.tar|- NAME[:TAG]",
                      "make an image from a root filesystem tarball"),
    "build": Command(_build, _options_of("build", "BUILD_OPTIONS"),
                     "build [-t NAME[:TAG]] [-f FILE|-] [--build-arg K=V] [--target STAGE] "
                     "[--no-cache] [--network MODE] [-q] [--iidfile F] CONTEXT|-",
                     "build an image from a Dockerfile"),
    "builder": Command(_builder, _options_of("build", "BUILDER_OPTIONS"),
                       "builder prune [-f]",
                       "remove the build cache (and the layers only it kept)"),
    "commit": Command(_commit, _options_of("build", "COMMIT_OPTIONS"),
                      "commit [-c INSTRUCTION] [-m MESSAGE] [-a AUTHOR] CONTAINER "
                      "[REPOSITORY[:TAG]]", "make an image from a container's changes"),
    "diff": Command(_diff, (), "diff CONTAINER",
                    "list the changed files of a container (A added, C changed, D deleted)"),
    "export": Command(_export, _options_of("build", "EXPORT_OPTIONS"),
                      "export [-o FILE] CONTAINER",
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
    "pull": Command(_pull, _options_of("registry", "PULL_OPTIONS"),
                    "pull [--platform OS/ARCH] [-q] [--tls-verify=false] IMAGE",
                    "download an image from a registry"),
    "push": Command(_push, _options_of("registry", "PUSH_OPTIONS"),
                    "push [-q] IMAGE [DESTINATION]",
                    "upload an image to a registry"),
    "login": Command(_login, _options_of("registry", "LOGIN_OPTIONS"),
                     "login [-u USER] [-p PASS|--password-stdin] [REGISTRY]",
                     "save credentials for a registry"),
    "logout": Command(_logout, _options_of("registry", "LOGOUT_OPTIONS"),
                      "logout [REGISTRY]",
                      "forget a registry's credentials"),
    "volume": Command(_volume, (), "volume create|ls|inspect|rm|prune [OPTIONS] [NAME...]",
                      "manage volumes"),
    "network": Command(_network, (
        Option("subnet", LIST, "subnet in CIDR form (default: a free one from the pool); "
               "with --ipv6 once per family"),
        Option("gateway", LIST, "gateway address (default: the subnet's first); one per "
               "family"),
        Option("ipv6", FLAG, "dual stack: an IPv6 subnet too (default: a ULA /64)"),
        Option("ip-range", VALUE, "allocate container addresses from this range"),
        Option("internal", FLAG, "no way out of the network, nor to the host (DNS: its own names)"),
        Option("mtu", VALUE, "MTU of the bridge and its veths", "0"),
        Option("bridge-name", VALUE, "bridge interface name (at most 15 bytes)"),
        Option("label", LIST, "set metadata (KEY=VALUE)"),
        Option("ip", VALUE, "connect: the container's address"),
        Option("ip6", VALUE, "connect: the container's IPv6 address"),
        Option("quiet,q", FLAG, "ls: only names"),
        Option("format,f", VALUE, "inspect: a Go template ({{.IPAM.Config}}) or json; "
               "graph: dot, mermaid, svg or text"),
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
    "system": Command(_system, (), "system prune [-a] [--volumes] [-f]|gc|df [-v]",
                      "remove unused objects | remove leftovers of crashes | disk usage"),
    "container-prune": Command(_container_prune, (Option("force,f", FLAG, "do not prompt"),),
                               "container prune [-f]", "remove all stopped containers"),
    "version": Command(_version, (), "version", "print the version"),
}


#: commands whose flags end at their first positional argument: what follows is the
#: container's command (``run IMAGE ls -l``) or ps's options (``top web -ef``), as Docker's
_FLAGS_BEFORE_POSITIONALS = frozenset({"run", "create", "exec", "top"})
#: commands whose first positional is a verb that parses its own flags
_GROUPS = frozenset({"image", "system", "volume"})
EXIT_USAGE = 1  # docker/cli: an unknown command
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell tool whose reader went away
_EPIPE = 32


class _Invocation:
    """What the top-level guard needs to know about the command being run."""

    __slots__ = ("command", "debug")

    def __init__(self) -> None:
        self.command = ""
        self.debug = os.environ.get("TSUBO_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Nothing escapes as a traceback: a broken pipe
    ends quietly (141), an error is one line, anything unexpected is one line pointing at
    ``--debug`` (which adds the traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["runtime"]:
        from tsubo.cli import runtime

        return runtime.main(args[1:])
    invocation = _Invocation()
    _quiet_unraisable_broken_pipes(invocation)
    try:
        return _dispatch(args, invocation)
    except FlagError as error:
        _error(error.message(readable=True))
        return EXIT_ENGINE
    except TsuboError as error:
        if error.errno == _EPIPE:
            return _broken_pipe()
        _error(error.message(readable=True))
        return _exit_code(error, invocation.command)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the guard: a bug must still be one line
        if isinstance(error, OSError) and error.errno == _EPIPE:
            return _broken_pipe()
        _unexpected(error, invocation)
        return _exit_code(None, invocation.command)


def _dispatch(args: list[str], invocation: _Invocation) -> int:
    global_flags = parse(args, GLOBAL_OPTIONS, PROGRAM, combine_short=True,
                         help_command=PROGRAM)
    invocation.debug = invocation.debug or global_flags.flag("debug")
    if global_flags.flag("version"):
        return _version()
    if global_flags.flag("help") or not global_flags.positional:
        _print(_help())
        return 0 if global_flags.flag("help") else EXIT_USAGE
    name, *rest = global_flags.positional
    if name == "help":  # `tsubo help [COMMAND]`
        if not rest:
            _print(_help())
            return 0
        name, rest = rest[0], ["--help"]
    shown = name
    if name == "container":
        shown, name, rest = _container_verb(rest)
        if not name:
            return EXIT_USAGE
    command = None if name.startswith("container-") and shown == name else COMMANDS.get(name)
    if command is None:
        _error(f"'{shown}' is not a {PROGRAM} command (see '{PROGRAM} --help')")
        return EXIT_USAGE
    invocation.command = name
    if _wants_help(name, rest):
        _print(f"usage: {PROGRAM} {command.usage}\n\n{command.summary}\n\n"
               f"{usage(command.options)}")
        return 0
    interspersed = name not in _FLAGS_BEFORE_POSITIONALS and name not in _GROUPS
    parsed = parse(rest, command.options, shown, stop_at_positional=not interspersed,
                   combine_short=True, help_command=f"{PROGRAM} {shown}")
    if name == "version":
        return _version()
    _check_arity(shown, command, parsed)
    from tsubo.api import Engine

    engine = Engine(global_flags.text("root") or None)
    engine.on_warning = _warning  # Docker's one line, not Python's warning format
    try:
        return command.handler(engine, parsed)
    finally:
        engine.close()


#: ``container VERB``: the top-level command it is (Docker's management-command aliases)
CONTAINER_VERBS = {
    "ls": "ps", "list": "ps", "ps": "ps", "rm": "rm", "remove": "rm",
    "prune": "container-prune", "inspect": "container-inspect",
    **{verb: verb for verb in ("run", "create", "start", "stop", "restart", "kill", "logs",
                               "exec", "wait", "pause", "unpause", "rename", "cp", "top",
                               "stats", "attach", "update", "port", "export", "diff")},
}


def _container_verb(rest: list[str]) -> tuple[str, str, list[str]]:
    """(``container VERB`` as shown, the command it is, its arguments); an empty command
    after printing why (no verb, or one that is not a container command)."""
    if not rest or rest[0] in ("--help", "-h"):
        verbs = ", ".join(sorted(verb for verb, command in CONTAINER_VERBS.items()
                                 if command in COMMANDS))
        (_print if rest else _error)(f"usage: {PROGRAM} container COMMAND\n\n"
                                     f"commands: {verbs}")
        return "container", "", []
    verb = rest[0]
    target = CONTAINER_VERBS.get(verb, "")
    if target not in COMMANDS:
        _error(f"'container {verb}' is not a {PROGRAM} command "
               f"(see '{PROGRAM} container --help')")
        return f"container {verb}", "", []
    return f"container {verb}", target, rest[1:]


def _check_arity(shown: str, command: Command, parsed: Parsed) -> None:
    """The number of arguments a command declares (``min_args``/``max_args``), before
    anything runs, in Docker's words."""
    count = len(parsed.positional)
    low, high = command.min_args, command.max_args
    if count >= low and (high is None or count <= high):
        return
    plural = "" if (high if low == high else low) == 1 else "s"
    if low == high:
        need = f"exactly {low} argument{plural}"
    elif high is None or count < low:
        need = f"at least {low} argument{plural}"
    else:
        need = f"at most {high} argument{'' if high == 1 else 's'}"
    raise InvalidArgument(shown, " ".join(parsed.positional), detail=f"requires {need}",
                          hint=f"usage: {PROGRAM} {command.usage}")


def _wants_help(name: str, rest: list[str]) -> bool:
    """``--help`` among the flags (before ``--``; only first for commands whose flags stop
    at a positional, and for groups, whose verbs have their own); ``-h`` too where no flag
    of the command is ``-h`` (``run -h`` is the host name, as in Docker)."""
    if name in _FLAGS_BEFORE_POSITIONALS or name in _GROUPS:
        return rest[:1] == ["--help"] or (rest[:1] == ["-h"] and name not in ("run", "create"))
    words = rest[:rest.index("--")] if "--" in rest else rest
    command = COMMANDS[name]
    takes_h = any("h" in option.names for option in command.options)
    return "--help" in words or ("-h" in words and not takes_h)


def _broken_pipe() -> int:
    """Our reader went away (``| head``): stop quietly, and let nothing written later
    (the launcher's final flush) fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    return EXIT_BROKEN_PIPE


def _quiet_unraisable_broken_pipes(invocation: _Invocation) -> None:
    """A broken pipe met while an object is finalised (a stream closed during unwinding)
    is not worth an "Exception ignored" report; anything else still is."""
    default = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, OSError) and error.errno == _EPIPE and not invocation.debug:
            return
        default(unraisable)

    sys.unraisablehook = hook


def _unexpected(error: BaseException, invocation: _Invocation) -> None:
    if invocation.debug:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    where = f"{invocation.command}: " if invocation.command else ""
    lines = str(error).splitlines()
    detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    hint = "" if invocation.debug else " (run with --debug to see the traceback)"
    _error(f"{where}unexpected error: {detail}{hint}")


def _exit_code(error: TsuboError | None, command: str) -> int:
    """Docker's: 126 the command cannot be executed, 127 it was not found (both only when
    the runtime's exec step failed), 125 any other failure of ``run``/``create``, and 1
    for the other commands (the docker CLI's generic error status)."""
    if error is not None and error.operation == "exec" and error.errno == 2:
        return EXIT_NOT_FOUND
    if error is not None and error.operation == "exec" and error.errno in (13, 8, 21):
        return EXIT_CANNOT_EXECUTE  # EACCES, ENOEXEC, EISDIR
    if isinstance(error, NotATerminal):
        return 1
    return EXIT_ENGINE if command in ("run", "create", "") else 1


def _help() -> str:
    commands = "\n".join(f"   {name:<9} {command.summary}" for name, command in COMMANDS.items()
                         if not name.startswith("container-"))
    return (f"usage: {PROGRAM} [--root DIR] COMMAND [OPTIONS]\n\n"
            "A daemonless container engine.\n\n"
            f"commands:\n{commands}\n   runtime   the OCI runtime (tsubo runtime --help)\n")


def _print(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _error(text: str) -> None:
    try:
        sys.stderr.write(f"{PROGRAM}: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass  # nowhere left to say it


def _warning(text: str) -> None:
    """A warning about what was asked (Docker's ``WARNING: ...`` line on stderr)."""
    try:
        sys.stderr.write(f"WARNING: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _json(text: str) -> dict[str, object]:
    from tsubo import jsonwire

    value = jsonwire.loads(text)
    assert isinstance(value, dict)
    return value


if __name__ == "__main__":
    sys.exit(main())
