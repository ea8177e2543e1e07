"""A small parser for runc-style command lines (urfave/cli and Go ``flag`` conventions).

runc's callers (podman's conmon, containerd's go-runc, kubelet tooling) write flags as
``--bundle X``, ``--bundle=X``, ``-bundle X``, ``-b X``, booleans as ``--detach`` or
``--detach=true``; flags end at the first positional argument or ``--``. ``argparse``
behaves differently on several of these and costs ~12 ms to import here, on a path that
must beat runc's whole run, so this module parses exactly that grammar from a table.

The ``tsubo`` engine CLI uses the same table with Docker's (cobra/pflag) habits on top:
flags anywhere among the positionals (``rm web -f``) unless the command stops at its first
positional (``run IMAGE CMD -x``), grouped short flags (``-itd``), a short flag's value
attached (``-t0``, ``-eA=1``). A flag the command does not know, a value missing or a bad
boolean is a :class:`FlagError`, which the engine CLI exits with 125 as Docker does.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

FLAG = "flag"  # boolean
VALUE = "value"  # takes one value
LIST = "list"  # takes one value, may repeat


class FlagError(InvalidArgument):
    """A usage error in the flags themselves: unknown, missing its value, a bad boolean."""


class Option:
    __slots__ = ("default", "help", "kind", "names")

    def __init__(self, names: str, kind: str, help_text: str, default: object = None) -> None:
        self.names = names.split(",")  # first one is canonical, e.g. "bundle,b"
        self.kind = kind
        self.help = help_text
        self.default = default if default is not None else (
            False if kind == FLAG else [] if kind == LIST else "")

    @property
    def key(self) -> str:
        return self.names[0].replace("-", "_")


class Command:
    """One subcommand of a CLI: its handler, flags, usage line and arity. *options* is the
    flag table, or a function returning it: a table that lives in another module is then
    imported only when its command runs (every ``tsubo run`` would otherwise load the
    modules of ``build``, ``stats``, ``pull``...: docs/performance.md)."""

    __slots__ = ("_options", "handler", "max_args", "min_args", "summary", "usage")

    def __init__(self, handler: Callable[..., int],
                 options: Sequence[Option] | Callable[[], Sequence[Option]], usage_text: str,
                 summary: str, min_args: int = 0, max_args: int | None = None) -> None:
        self.handler = handler
        self._options = options
        self.usage = usage_text
        self.summary = summary
        self.min_args = min_args
        self.max_args = max_args

    @property
    def options(self) -> Sequence[Option]:
        if callable(self._options):
            self._options = self._options()
        return self._options


class Parsed:
    """Values by option key, plus positional arguments."""

    def __init__(self, values: dict[str, object], positional: list[str],
                 given: set[str] | None = None) -> None:
        self.values = values
        self.positional = positional
        #: keys of the options that appeared on the command line (even with empty values)
        self.given = given or set()

    def flag(self, key: str) -> bool:
        return bool(self.values[key])

    def text(self, key: str) -> str:
        value = self.values[key]
        return value if isinstance(value, str) else ""

    def texts(self, key: str) -> list[str]:
        value = self.values[key]
        return list(value) if isinstance(value, list) else []


def parse(args: Sequence[str], options: Sequence[Option], where: str,
          stop_at_positional: bool = True, combine_short: bool = False,
          help_command: str = "") -> Parsed:
    """Parse *args* against *options*; :class:`FlagError` names the bad flag.
    *combine_short* accepts grouped one-letter flags (``-it``) and attached values
    (``-t0``) as Docker's CLI does; the hint names ``HELP_COMMAND --help`` (default
    *where*)."""
    by_name = {name: option for option in options for name in option.names}
    values: dict[str, object] = {option.key: option.default for option in options}
    given: set[str] = set()
    for option in options:
        if option.kind == LIST:
            values[option.key] = []
    positional: list[str] = []
    args = list(args)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            if stop_at_positional:
                positional.extend(args[index:])
                break
            continue
        if not arg.startswith("--") and len(arg) > 2 and combine_short:
            # Docker's grouped short flags: `-it`, `-dit`, `-ti`; the last may take a value.
            expanded = _expand_group(arg, by_name)
            if expanded is not None:
                args = [*args[:index - 1], *expanded, *args[index:]]
                index -= 1
                continue
        name, has_value, inline = arg.lstrip("-").partition("=")
        found = by_name.get(name)
        if found is None:
            raise FlagError(where, arg, detail="unknown flag",
                            hint=f"'{help_command or where} --help' lists the flags")
        option = found
        given.add(option.key)
        if option.kind == FLAG:
            if has_value:
                if inline not in ("true", "false", "1", "0"):
                    raise FlagError(where, arg, detail="expects true or false")
                values[option.key] = inline in ("true", "1")
            else:
                values[option.key] = True
            continue
        if not has_value:
            if index >= len(args):
                raise FlagError(where, arg, detail="needs a value")
            inline = args[index]
            index += 1
        if option.kind == LIST:
            values_list = values[option.key]
            assert isinstance(values_list, list)
            values_list.append(inline)
        else:
            values[option.key] = inline
    return Parsed(values, positional, given)


def _expand_group(arg: str, by_name: dict[str, Option]) -> list[str] | None:
    """``-itd`` -> ``-i -t -d``; the first letter that takes a value takes the rest of the
    group as its value (``-t0``, ``-eA=1``, ``-t=5``), as pflag does. None when *arg* is
    not such a group (a long name after one dash, ``-bundle``, or an unknown letter)."""
    letters = arg[1:]
    if letters.partition("=")[0] in by_name:
        return None
    expanded = []
    for index, letter in enumerate(letters):
        option = by_name.get(letter)
        if option is None:
            return None
        expanded.append(f"-{letter}")
        if option.kind != FLAG:
            rest = letters[index + 1:]
            if rest:
                expanded.append(rest[1:] if rest.startswith("=") else rest)
            return expanded
    return expanded


def usage(options: Sequence[Option]) -> str:
    """The flag table for ``--help``."""
    lines = []
    for option in options:
        names = ", ".join(("-" if len(n) == 1 else "--") + n for n in option.names)
        if option.kind != FLAG:
            names += " value"
        lines.append(f"   {names:<28} {option.help}")
    return "\n".join(lines)
