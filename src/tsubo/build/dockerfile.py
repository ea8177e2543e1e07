"""The Dockerfile language: lines -> instructions, and the words of an instruction.

Pure: no file system, no engine. What is read, as Docker's reference describes it:

- parser directives at the very top (``# escape=``` ``, ``# syntax=...``, ``# check=...``):
  ``escape`` changes the escape character; ``syntax`` names a BuildKit frontend, which tsubo
  does not run: it is noted (:attr:`Dockerfile.notes`) and the file is read as Dockerfile 1;
- comments (a line whose first non-blank character is ``#``), also inside a continued
  instruction; blank lines;
- line continuations (the escape character at the end of a line, trailing blanks allowed);
- heredocs for ``RUN``, ``COPY`` and ``ADD`` (``<<EOF``, ``<<-EOF``, ``<<"EOF"``);
- ``--flag=value`` options at the start of an instruction's arguments;
- the exec (JSON array) and shell forms;
- variable substitution (``$V``, ``${V}``, ``${V:-word}``, ``${V:+word}``, ``${V:?msg}``,
  escaped ``\\$``) with quote removal, for the instructions Docker substitutes in.

Errors name the line: ``Dockerfile:3: unknown instruction FROBNICATE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tsubo.errors import InvalidArgument

INSTRUCTIONS = frozenset((
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"))
#: instructions whose arguments get variable substitution (Docker's list)
SUBSTITUTED = frozenset(("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL",
                         "USER", "VOLUME", "WORKDIR", "ONBUILD"))
#: the flags each instruction takes (anything else is an error naming it)
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset(("platform",)),
    "COPY": frozenset(("from", "chown", "chmod", "link", "parents", "exclude")),
    "ADD": frozenset(("chown", "chmod", "link", "checksum", "keep-git-dir", "exclude")),
    "RUN": frozenset(("network", "mount", "security")),
    "HEALTHCHECK": frozenset(("interval", "timeout", "start-period", "start-interval",
                              "retries")),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    #: quoted delimiter: no expansion inside (kept for the record; RUN's shell does it)
    quoted: bool


@dataclass(frozen=True)
class Instruction:
    keyword: str
    #: the arguments, flags removed, continuations joined
    args: str
    flags: dict[str, str]
    #: the exec form's words, else None (shell form)
    json: list[str] | None
    line: int
    #: the instruction as written (joined), for history and messages
    original: str
    heredocs: tuple[Heredoc, ...] = ()

    def where(self, filename: str = "Dockerfile") -> str:
        return f"{filename}:{self.line}"


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    notes: list[str] = field(default_factory=list)


def error(where: str, detail: str) -> InvalidArgument:
    return InvalidArgument("parse Dockerfile", where, detail=detail)


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text (see the module docstring)."""
    lines = text.splitlines()
    escape = "\\"
    notes: list[str] = []
    index = 0
    seen: set[str] = set()
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index].strip())
        if not match or match.group(1).lower() not in ("escape", "syntax", "check") \
                or match.group(1).lower() in seen:
            break
        key, value = match.group(1).lower(), match.group(2)
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise error(f"{filename}:{index + 1}", f"escape must be \\ or `, not {value!r}")
            escape = value
        elif key == "syntax":
            notes.append(f"{filename}:{index + 1}: # syntax={value} noted: tsubo reads the "
                         "file as Dockerfile 1 itself")
        index += 1
    instructions: list[Instruction] = []
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    while index < len(lines):
        raw = lines[index]
        start = index
        index += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        text_line = raw.lstrip()
        while continuation.search(text_line):
            text_line = continuation.sub("", text_line)
            if index == len(lines):
                break
            following = lines[index]
            index += 1
            if not following.strip() or following.strip().startswith("#"):
                text_line += escape  # a comment or blank line inside: the instruction goes on
                continue
            text_line += following
        instruction, index = _instruction(text_line, start + 1, lines, index, escape,
                                          filename)
        instructions.append(instruction)
    if not instructions:
        raise error(filename, "the file has no instructions")
    return Dockerfile(instructions, escape, notes)


def _instruction(text: str, line: int, lines: list[str], index: int, escape: str,
                 filename: str) -> tuple[Instruction, int]:
    where = f"{filename}:{line}"
    keyword, _, rest = text.strip().partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = f"{more} {rest}"
    keyword = keyword.upper()
    if keyword not in INSTRUCTIONS:
        raise error(where, f"unknown instruction {keyword}")
    rest = rest.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--") and keyword != "ONBUILD":
        word, _, after = rest.partition(" ")
        name, sep, value = word[2:].partition("=")
        allowed = FLAGS.get(keyword, frozenset())
        if name not in allowed:
            raise error(where, f"{keyword} does not take --{name}" + (
                f" (it takes {', '.join('--' + f for f in sorted(allowed))})" if allowed else ""))
        flags[name] = value if sep else "true"
        rest = after.strip()
    heredocs: list[Heredoc] = []
    if keyword in ("RUN", "COPY", "ADD") and "<<" in rest:
        for match in _HEREDOC.finditer(rest):
            strip_tabs, quote, name = match.group(1), match.group(2), match.group(3)
            body: list[str] = []
            while True:
                if index >= len(lines):
                    raise error(where, f"heredoc <<{name} is not terminated")
                current = lines[index]
                index += 1
                if (current.lstrip("\t") if strip_tabs else current) == name:
                    break
                body.append(current.lstrip("\t") if strip_tabs else current)
            heredocs.append(Heredoc(name, "".join(f"{b}\n" for b in body), bool(quote)))
    json_words = _json_form(rest) if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY",
                                                 "ADD", "VOLUME", "HEALTHCHECK") else None
    if keyword == "SHELL" and json_words is None:
        raise error(where, "SHELL needs the JSON form: SHELL [\"executable\", \"parameters\"]")
    original = " ".join([keyword, *(f"--{k}={v}" for k, v in flags.items()), rest]).strip()
    return Instruction(keyword, rest, flags, json_words, line, original, tuple(heredocs)), index


def _json_form(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return None  # not JSON: the shell form, as Docker reads it
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return value
    return None


# --- words and variables ---------------------------------------------------------------------

def split_words(text: str, env: dict[str, str] | None, escape: str = "\\",
                where: str = "Dockerfile") -> list[str]:
    """Shell-like words of *text*: blanks split, quotes group and are removed, the escape
    character escapes; with *env*, ``$VAR`` forms are substituted (not inside single
    quotes)."""
    return _process(text, env, escape, where, split=True)


def expand(text: str, env: dict[str, str] | None, escape: str = "\\",
           where: str = "Dockerfile") -> str:
    """*text* as one word: variables substituted, quotes removed, blanks kept."""
    return "".join(_process(text, env, escape, where, split=False)) if text else ""


def _process(text: str, env: dict[str, str] | None, escape: str, where: str, *,
             split: bool) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    started = False
    quote = ""
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                current.append(char)
            index += 1
            continue
        if char == escape and index + 1 < length:
            following = text[index + 1]
            if quote == '"' and following not in ('"', escape, "$"):
                current.append(char)
            current.append(following)
            started = True
            index += 2
            continue
        if char in ("'", '"') and (not quote or quote == char):
            quote = "" if quote else char
            started = True
            index += 1
            continue
        if char == "$" and env is not None:
            value, index = _variable(text, index, env, escape, where)
            current.append(value)
            started = started or bool(value)
            continue
        if split and not quote and char in " \t\n":
            if started or current:
                words.append("".join(current))
            current, started = [], False
            index += 1
            continue
        current.append(char)
        started = True
        index += 1
    if quote:
        raise error(where, f"unterminated {quote} quote in {text!r}")
    if started or current:
        words.append("".join(current))
    return words


def substitute(text: str, env: dict[str, str], escape: str = "\\",
               where: str = "Dockerfile") -> str:
    """Only the ``$`` forms of *text* replaced (``\\$`` stays a ``$``), quotes and blanks
    kept: the body of a COPY heredoc whose delimiter is not quoted, as BuildKit reads it."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == escape and text[index + 1:index + 2] == "$":
            out.append("$")
            index += 2
        elif char == "$":
            value, index = _variable(text, index, env, escape, where)
            out.append(value)
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _variable(text: str, index: int, env: dict[str, str], escape: str, where: str
              ) -> tuple[str, int]:
    """The value of the ``$`` form starting at *index*, and the index after it."""
    if index + 1 < len(text) and text[index + 1] == "{":
        close = _closing_brace(text, index + 2)
        if close < 0:
            raise error(where, f"missing '}}' in {text!r}")
        body = text[index + 2:close]
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?$", body, re.S)
        if not match:
            raise error(where, f"bad substitution ${{{body}}}")
        name, operator, word = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if operator:
            word_value = expand(word, env, escape, where)
            empty_counts = operator.startswith(":")
            missing = value is None or (empty_counts and value == "")
            kind = operator[-1]
            if kind == "-":
                value = word_value if missing else value
            elif kind == "+":
                value = "" if missing else word_value
            elif kind == "?" and missing:
                raise error(where, f"{name}: {word_value or 'is not set'}")
        return value or "", close + 1
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[index + 1:])
    if not match:
        return "$", index + 1
    return env.get(match.group(0), ""), index + 1 + match.end()


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return position
    return -1


def key_values(text: str, env: dict[str, str] | None, escape: str, where: str,
               keyword: str) -> list[tuple[str, str]]:
    """``ENV``/``LABEL`` arguments: ``K=V K2="v 2"`` pairs, or the old ``K value...``."""
    words = split_words(text, env, escape, where)
    if not words:
        raise error(where, f"{keyword} needs at least one argument")
    if "=" not in words[0]:
        if keyword == "ENV" and len(words) >= 2:
            name, _, value = text.strip().partition(" ")
            return [(expand(name, env, escape, where),
                     expand(value.strip(), env, escape, where))]
        raise error(where, f"{keyword} needs KEY=VALUE, got {words[0]!r}")
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise error(where, f"{keyword} needs KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs


# --- instruction arguments --------------------------------------------------------------------

def parse_chmod(text: str, where: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text, 8)
    except ValueError:
        raise error(where, f"--chmod={text}: expected an octal mode") from None
    if not 0 <= value <= 0o7777:
        raise error(where, f"--chmod={text}: out of range")
    return value


def parse_port(word: str, where: str) -> str:
    number, _, protocol = word.partition("/")
    protocol = (protocol or "tcp").lower()
    low, _, high = number.partition("-")
    if not low.isdigit() or (high and not high.isdigit()) \
            or protocol not in ("tcp", "udp", "sctp"):
        raise error(where, f"EXPOSE: bad port {word!r}")
    return f"{number}/{protocol}"


_DURATION_UNITS = {"ns": 1, "us": 1000, "ms": 1000_000, "s": 1000_000_000,
                   "m": 60_000_000_000, "h": 3600_000_000_000}


def parse_duration(text: str, where: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise error(where, f"bad duration {text!r}")
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_healthcheck(instruction: Instruction, where: str) -> dict[str, Any]:
    rest = instruction.args.strip()
    kind, _, command = rest.partition(" ")
    if kind.upper() == "NONE":
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD" or not command.strip():
        raise error(where, "HEALTHCHECK needs CMD COMMAND or NONE")
    command = command.strip()
    json_form = _json_form(command)
    test = ["CMD", *json_form] if json_form is not None else ["CMD-SHELL", command]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in instruction.flags:
            check[key] = parse_duration(instruction.flags[flag], where)
    if "retries" in instruction.flags:
        retries = instruction.flags["retries"]
        if not retries.isdigit():
            raise error(where, f"--retries={retries}: expected a number")
        check["Retries"] = int(retries)
    return check
