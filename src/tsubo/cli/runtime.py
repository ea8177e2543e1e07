"""``tsubo-runtime``: the OCI runtime command line, argv-compatible with runc.

A thin shell over :class:`tsubo.api_runtime.Runtime` (the runtime's part of the API): parse
argv (``cli/argv.py``), call one method, print. The only place that prints, renders errors
(one line, also to ``--log`` as runc's JSON log lines, which containerd and conmon read)
and picks exit codes: 1 for any failure, the container's own status for ``run`` and
``exec``.
"""

from __future__ import annotations

import os
import sys

from tsubo.cli.argv import FLAG, LIST, VALUE, Command, Option, Parsed, parse, usage
from tsubo.errors import InvalidArgument, TsuboError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.api_runtime import Runtime

PROGRAM = "tsubo-runtime"

GLOBAL_OPTIONS = (
    Option("root", VALUE, "state directory", "/run/tsubo-runtime"),
    Option("log", VALUE, "append errors (and debug lines) to this file"),
    Option("log-format", VALUE, "text or json", "text"),
    Option("debug", FLAG, "log debug lines"),
    Option("systemd-cgroup", FLAG, "use systemd to manage cgroups (needs systemd)"),
    Option("rootless", VALUE, "accepted for runc compatibility (auto, true, false)", "auto"),
    Option("criu", VALUE, "accepted for runc compatibility; checkpointing is not supported"),
    Option("help,h", FLAG, "show help"),
    Option("version,v", FLAG, "print the version"),
)

_CREATE_OPTIONS = (
    Option("bundle,b", VALUE, "path to the bundle (default: the current directory)", "."),
    Option("console-socket", VALUE, "AF_UNIX socket that receives the pty master"),
    Option("pid-file", VALUE, "write the container's init pid to this file"),
    Option("no-pivot", FLAG, "use chroot instead of pivot_root (for ramfs roots)"),
    Option("no-new-keyring", FLAG, "keep the caller's session keyring"),
    Option("preserve-fds", VALUE, "pass this many fds beyond stdio (from fd 3)", "0"),
)
_RUN_OPTIONS = (
    *_CREATE_OPTIONS,
    Option("detach,d", FLAG, "do not wait for the container"),
    Option("no-subreaper", FLAG, "accepted for runc compatibility"),
    Option("keep", FLAG, "do not delete the container after it exits"),
)
_EXEC_OPTIONS = (
    Option("process,p", VALUE, "path to a process.json (OCI process object)"),
    Option("console-socket", VALUE, "AF_UNIX socket that receives the pty master"),
    Option("pid-file", VALUE, "write the new process's pid to this file"),
    Option("detach,d", FLAG, "do not wait for the process"),
    Option("tty,t", FLAG, "allocate a pseudo-TTY"),
    Option("env,e", LIST, "set an environment variable (KEY=VALUE)"),
    Option("cwd", VALUE, "working directory in the container"),
    Option("user,u", VALUE, "UID[:GID]"),
    Option("additional-gids,g", LIST, "additional group IDs"),
    Option("cap,c", LIST, "add a capability"),
    Option("no-new-privs", FLAG, "set no_new_privs"),
    Option("preserve-fds", VALUE, "pass this many fds beyond stdio (from fd 3)", "0"),
    Option("apparmor", VALUE, "AppArmor profile for the process"),
    Option("process-label", VALUE, "SELinux label for the process"),
    Option("ignore-paused", FLAG, "accepted for runc compatibility"),
)
_DELETE_OPTIONS = (Option("force,f", FLAG, "kill the container first if it runs"),)
_KILL_OPTIONS = (Option("all,a", FLAG, "signal every process in the container"),)
_LIST_OPTIONS = (
    Option("format,f", VALUE, "table or json", "table"),
    Option("quiet,q", FLAG, "print only the IDs"),
)
_PS_OPTIONS = (Option("format,f", VALUE, "table or json", "table"),)
_SPEC_OPTIONS = (
    Option("bundle,b", VALUE, "directory to write config.json in", "."),
    Option("rootless", FLAG, "a config for running as an unprivileged user"),
)
#: runc's ``update`` flags: (flag, linux.resources section, key, kind); kind "size" takes
#: runc's sizes (``64m``: go-units RAMInBytes), "swap" a size or -1, "int" a number,
#: "text" a cpuset list
_UPDATE_FLAGS = (
    ("memory", "memory", "limit", "size"),
    ("memory_swap", "memory", "swap", "swap"),
    ("memory_reservation", "memory", "reservation", "size"),
    ("cpu_share", "cpu", "shares", "int"),
    ("cpu_quota", "cpu", "quota", "int"),
    ("cpu_period", "cpu", "period", "int"),
    ("cpu_rt_period", "cpu", "realtimePeriod", "int"),
    ("cpu_rt_runtime", "cpu", "realtimeRuntime", "int"),
    ("cpuset_cpus", "cpu", "cpus", "text"),
    ("cpuset_mems", "cpu", "mems", "text"),
    ("pids_limit", "pids", "limit", "int"),
    ("blkio_weight", "blockIO", "weight", "int"),
)
#: a linux.resources object is a few hundred bytes; this is thousands of times that
_MAX_RESOURCES_BYTES = 1 << 20
_UPDATE_OPTIONS = (
    Option("resources,r", VALUE, "JSON file of linux.resources to apply ('-': stdin)"),
    *(Option(flag.replace("_", "-"), VALUE, f"set linux.resources.{section}.{key}")
      for flag, section, key, _kind in _UPDATE_FLAGS),
)
_NO_OPTIONS: tuple[Option, ...] = ()


def _int_flag(parsed: Parsed, key: str) -> int:
    text = parsed.text(key)
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(PROGRAM, f"--{key.replace('_', '-')} {text}",
                              detail="must be a number") from None


def _create(runtime: Runtime, parsed: Parsed) -> int:
    runtime.create(parsed.positional[0], parsed.text("bundle"), pid_file=parsed.text("pid_file"),
                   console_socket=parsed.text("console_socket"),
                   no_pivot=parsed.flag("no_pivot"),
                   preserve_fds=_int_flag(parsed, "preserve_fds"),
                   new_keyring=not parsed.flag("no_new_keyring"))
    return 0


def _run(runtime: Runtime, parsed: Parsed) -> int:
    info = runtime.run(parsed.positional[0], parsed.text("bundle"),
                       detach=parsed.flag("detach"), pid_file=parsed.text("pid_file"),
                       console_socket=parsed.text("console_socket"),
                       no_pivot=parsed.flag("no_pivot"),
                       preserve_fds=_int_flag(parsed, "preserve_fds"),
                       new_keyring=not parsed.flag("no_new_keyring"))
    if info.oom_killed:
        _warn(f"container {parsed.positional[0]} was killed by the OOM killer "
              "(memory limit reached)")
    return info.exit_code


def _start(runtime: Runtime, parsed: Parsed) -> int:
    runtime.start(parsed.positional[0])
    return 0


def _state(runtime: Runtime, parsed: Parsed) -> int:
    _print(_indent_json(runtime.state(parsed.positional[0])))
    return 0


def _kill(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo.api_runtime import parse_signal

    signal = parse_signal(parsed.positional[1] if len(parsed.positional) > 1 else "SIGTERM")
    runtime.kill(parsed.positional[0], signal, all_processes=parsed.flag("all"))
    return 0


def _delete(runtime: Runtime, parsed: Parsed) -> int:
    for warning in runtime.delete(parsed.positional[0], force=parsed.flag("force")):
        _warn(warning.message())
    return 0


def _pause(runtime: Runtime, parsed: Parsed) -> int:
    runtime.pause(parsed.positional[0])
    return 0


def _resume(runtime: Runtime, parsed: Parsed) -> int:
    runtime.resume(parsed.positional[0])
    return 0


def _update(runtime: Runtime, parsed: Parsed) -> int:
    """runc's ``update``: ``--resources FILE`` (or ``-``: stdin, as containerd's shim and
    podman pass it), then each flag laid over it."""
    from tsubo import jsonwire

    resources: dict[str, object] = {}
    source = parsed.text("resources")
    if source:
        if source == "-":
            text = sys.stdin.buffer.read(_MAX_RESOURCES_BYTES + 1)
            if len(text) > _MAX_RESOURCES_BYTES:
                raise InvalidArgument("update", "--resources -",
                                      detail=f"more than {_MAX_RESOURCES_BYTES} bytes")
        else:
            from tsubo.api_runtime import read_caller_file

            text = read_caller_file(source, "update")
        loaded = jsonwire.loads(text, source, operation="update")
        if not isinstance(loaded, dict):
            raise InvalidArgument("update", source, detail="not a JSON object")
        resources = loaded
    for flag, section, key, kind in _UPDATE_FLAGS:
        text = parsed.text(flag)
        if not text:
            continue
        part = resources.get(section)
        part = dict(part) if isinstance(part, dict) else {}
        part[key] = _update_value(flag, text, kind)
        resources[section] = part
    runtime.update(parsed.positional[0], resources)
    return 0


def _update_value(flag: str, text: str, kind: str) -> int | str:
    if kind == "text":
        return text
    if kind == "swap" and text.strip() == "-1":
        return -1
    if kind in ("size", "swap"):
        from tsubo.api import parse_size

        return parse_size(text, f"--{flag.replace('_', '-')}")
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument("update", f"--{flag.replace('_', '-')} {text}",
                              detail="must be a number") from None


def _list(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo import jsonwire

    states = runtime.states()
    for state in states:
        if "error" in state:  # listed as "unknown"; the reason goes to stderr
            _warn(state["error"])
    if parsed.flag("quiet"):
        _print("".join(f"{state['id']}\n" for state in states), end="")
    elif parsed.text("format") == "json":
        _print(jsonwire.dumps(states))
    elif parsed.text("format") == "table":
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                  s["owner"] or "root"] for s in states]
        _print(_table(rows))
    else:
        raise InvalidArgument("list", f"--format {parsed.text('format')}",
                              detail="must be table or json")
    return 0


def _ps(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo import jsonwire

    pids = runtime.pids(parsed.positional[0])
    if parsed.text("format") == "json":
        _print(jsonwire.dumps(pids))
        return 0
    import subprocess

    ps_args = parsed.positional[1:] or ["-ef"]
    output = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True)
    lines = output.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps", " ".join(ps_args), detail="ps output has no PID column")
    column = header.index("PID")
    wanted = {str(pid) for pid in pids}
    _print("\n".join([lines[0], *(line for line in lines[1:]
                                  if line.split()[column] in wanted)]))
    return 0


def _exec(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo import jsonwire
    from tsubo.api_runtime import process_from_flags

    container_id = parsed.positional[0]
    if parsed.text("process"):
        if len(parsed.positional) > 1:
            raise InvalidArgument("exec", container_id,
                                  detail="give either --process or a command, not both")
        from tsubo.api_runtime import read_caller_file

        path = parsed.text("process")
        process = jsonwire.loads(read_caller_file(path, "exec"), path, operation="exec")
        if not isinstance(process, dict):
            raise InvalidArgument("exec", parsed.text("process"), detail="not a JSON object")
    else:
        if len(parsed.positional) < 2:
            raise InvalidArgument("exec", container_id, detail="no command given")
        record_config = runtime.store.load(container_id).config
        process = process_from_flags(
            record_config, parsed.positional[1:], env=parsed.texts("env"),
            cwd=parsed.text("cwd"), user=parsed.text("user"), tty=parsed.flag("tty"),
            caps=parsed.texts("cap"), no_new_privs=parsed.flag("no_new_privs"))
        if parsed.texts("additional_gids"):
            user = dict(process.get("user") or {})
            user["additionalGids"] = [int(g) for g in parsed.texts("additional_gids")]
            process["user"] = user
    if parsed.text("apparmor"):
        process["apparmorProfile"] = parsed.text("apparmor")
    if parsed.text("process_label"):
        raise Unsupported("exec", "--process-label", detail="SELinux is not supported")
    info = runtime.exec(container_id, process, detach=parsed.flag("detach"),
                        pid_file=parsed.text("pid_file"),
                        console_socket=parsed.text("console_socket"),
                        preserve_fds=_int_flag(parsed, "preserve_fds"))
    return info.exit_code


def _spec(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo.api_runtime import default_spec

    path = os.path.join(parsed.text("bundle"), "config.json")
    rootless = parsed.flag("rootless")
    config = default_spec(rootless_uid=os.geteuid() if rootless else None,
                          rootless_gid=os.getegid() if rootless else None)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise InvalidArgument("spec", path, detail="exists already; remove it first") from None
    except OSError as error:
        raise TsuboError.from_os_error("spec", path, error) from None
    with os.fdopen(fd, "w") as config_file:
        config_file.write(_indent_json(config) + "\n")
    return 0


def _features(runtime: Runtime, parsed: Parsed) -> int:
    from tsubo.api_runtime import features

    _print(_indent_json(features()))
    return 0


COMMANDS: dict[str, Command] = {
    "create": Command(_create, _CREATE_OPTIONS, "create [flags] <container-id>",
                      "create a container (its init waits for start)", 1, 1),
    "start": Command(_start, _NO_OPTIONS, "start <container-id>",
                     "run the user's program in a created container", 1, 1),
    "run": Command(_run, _RUN_OPTIONS, "run [flags] <container-id>",
                   "create and start a container, wait for it, delete it", 1, 1),
    "state": Command(_state, _NO_OPTIONS, "state <container-id>",
                     "print the container's OCI state as JSON", 1, 1),
    "kill": Command(_kill, _KILL_OPTIONS, "kill [--all] <container-id> [signal]",
                    "send a signal (name or number, default SIGTERM)", 1, 2),
    "delete": Command(_delete, _DELETE_OPTIONS, "delete [--force] <container-id>",
                      "delete a stopped (or, with --force, any) container", 1, 1),
    "exec": Command(_exec, _EXEC_OPTIONS, "exec [flags] <container-id> [command args...]",
                    "run a new process in a running container", 1, None),
    "list": Command(_list, _LIST_OPTIONS, "list [--format table|json] [-q]",
                    "list containers", 0, 0),
    "ps": Command(_ps, _PS_OPTIONS, "ps [--format table|json] <container-id> [ps args]",
                  "list the container's processes", 1, None),
    "pause": Command(_pause, _NO_OPTIONS, "pause <container-id>", "freeze all processes",
                     1, 1),
    "resume": Command(_resume, _NO_OPTIONS, "resume <container-id>", "thaw all processes",
                      1, 1),
    "update": Command(_update, _UPDATE_OPTIONS, "update [--resources FILE|-] [flags] <id>",
                      "change the container's resource limits", 1, 1),
    "spec": Command(_spec, _SPEC_OPTIONS, "spec [--bundle DIR] [--rootless]",
                    "write a default config.json to start from", 0, 0),
    "features": Command(_features, _NO_OPTIONS, "features",
                        "print what this runtime supports as JSON", 0, 0),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    log = _Log()
    try:
        global_flags = parse(args, GLOBAL_OPTIONS, PROGRAM)
        log.configure(global_flags)
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
        if "--help" in rest[:1] or "-h" in rest[:1]:
            _print(f"usage: {PROGRAM} {command.usage}\n\n{command.summary}\n\n"
                   f"{usage(command.options)}")
            return 0
        parsed = parse(rest, command.options, name)
        _check_arity(name, command, parsed)
        if global_flags.flag("systemd_cgroup"):
            raise Unsupported(name, "--systemd-cgroup", detail=_systemd_detail(),
                              hint="use the cgroupfs driver (drop --systemd-cgroup)")
        from tsubo.api_runtime import Runtime

        runtime = Runtime(global_flags.text("root"))
        try:
            return command.handler(runtime, parsed)
        finally:
            for warning in runtime.warnings:  # failed poststart/poststop hooks
                log.warning(warning.message())
    except TsuboError as error:
        log.error(error.message())
        return 1
    except KeyboardInterrupt:
        return 130


def _check_arity(name: str, command: Command, parsed: Parsed) -> None:
    count = len(parsed.positional)
    if count < command.min_args:
        raise InvalidArgument(name, "", detail=f"needs a container ID: {command.usage}")
    if command.max_args is not None and count > command.max_args:
        raise InvalidArgument(name, " ".join(parsed.positional[command.max_args:]),
                              detail=f"unexpected argument(s): {command.usage}")


def _systemd_detail() -> str:
    if not os.path.isdir("/run/systemd/system"):
        return "systemd is not running on this host (no /run/systemd/system)"
    return "the systemd cgroup driver is not implemented"


def _version() -> int:
    from tsubo.version import OCI_VERSION, __version__

    _print(f"{PROGRAM} version {__version__}\nspec: {OCI_VERSION}")
    return 0


def _help() -> str:
    commands = "\n".join(f"   {name:<10} {command.summary}" for name, command in COMMANDS.items())
    return (f"usage: {PROGRAM} [global flags] <command> [flags] [arguments]\n\n"
            f"An OCI runtime (runc-compatible command line).\n\ncommands:\n{commands}\n\n"
            f"global flags:\n{usage(GLOBAL_OPTIONS)}")


def _print(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _warn(text: str) -> None:
    sys.stderr.write(f"{PROGRAM}: {text}\n")


def _indent_json(value: object, level: int = 0) -> str:
    """Indented JSON like runc prints, built on jsonwire (``json`` costs ~11 ms here)."""
    from tsubo import jsonwire

    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{jsonwire.dumps(str(key))}: {_indent_json(item, level + 1)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and value:
        items = [pad + _indent_json(item, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return jsonwire.dumps(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                          strict=True)).rstrip()
                     for row in rows)


class _Log:
    """stderr, plus the ``--log`` file in runc's text or JSON line format."""

    def __init__(self) -> None:
        self.path = ""
        self.json = False

    def configure(self, flags: Parsed) -> None:
        self.path = flags.text("log")
        log_format = flags.text("log_format")
        if log_format not in ("text", "json"):
            raise InvalidArgument(PROGRAM, f"--log-format {log_format}",
                                  detail="must be text or json")
        self.json = log_format == "json"

    def warning(self, message: str) -> None:
        self.error(message, level="warning")

    def error(self, message: str, level: str = "error") -> None:
        sys.stderr.write(f"{PROGRAM}: {'warning: ' if level == 'warning' else ''}{message}\n")
        if not self.path:
            return
        from tsubo.api_runtime import now_rfc3339

        if self.json:
            from tsubo import jsonwire

            line = jsonwire.dumps({"level": level, "msg": message, "time": now_rfc3339()})
        else:
            line = f'time="{now_rfc3339()}" level={level} msg="{message}"'
        try:
            with open(self.path, "a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
        except OSError as error:
            sys.stderr.write(f"{PROGRAM}: write log {self.path}: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
