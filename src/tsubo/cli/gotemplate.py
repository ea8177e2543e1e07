"""Go's ``text/template``, the part Docker users type after ``--format``/``-f``.

``{{.State.Status}}``, ``{{json .Config}}``, ``{{index .Config.Labels "k"}}``,
``{{range .Mounts}}{{.Destination}} {{end}}``, ``{{range $k, $v := .Labels}}``,
``{{if .State.Running}}…{{else}}…{{end}}``, ``{{with}}``, pipes (``{{.Name | upper}}``),
variables, ``{{- trims -}}`` and Docker's functions (``json``, ``join``, ``split``,
``lower``, ``upper``, ``title``, ``truncate``, ``pad``, ``println``) plus Go's builtins
(``index``, ``len``, ``printf``, ``print``, ``eq``/``ne``/``lt``/``le``/``gt``/``ge``,
``and``/``or``/``not``). The data is JSON-shaped (dicts, lists, strings, numbers, bools,
None), as Docker's templates see ``inspect`` output decoded into maps: a missing key
prints ``<no value>``, as there. Values print as Go's ``fmt`` prints them
(``map[a:1]``, ``[x y]``, ``true``).

Nothing here evaluates Python: a template is parsed into a small tree and walked.
"""

from __future__ import annotations

import json
import re

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

NO_VALUE = "<no value>"
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""
    \s+
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<declare>:=)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<variable>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<identifier>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[()|,=])
""", re.X)


class Template:
    """A parsed template: ``Template(text).render(data)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._nodes = _Parser(text).parse()

    def render(self, data: Any) -> str:
        out: list[str] = []
        _run(self._nodes, _Scope(data, {"$": data}), out, self.text)
        return "".join(out)


def render(template: str, data: Any) -> str:
    return Template(template).render(data)


# --- parsing ----------------------------------------------------------------------------------

def _fail(text: str, detail: str) -> InvalidArgument:
    return InvalidArgument("parse --format", repr(text), detail=detail)


class _Pipeline:
    """``$a, $b := cmd arg | cmd2``: the declared variables and the commands."""

    __slots__ = ("commands", "declared")

    def __init__(self, declared: list[str], commands: list[list[Any]]) -> None:
        self.declared = declared
        self.commands = commands


class _Block:
    __slots__ = ("body", "kind", "otherwise", "pipeline")

    def __init__(self, kind: str, pipeline: _Pipeline) -> None:
        self.kind = kind  # if, range, with
        self.pipeline = pipeline
        self.body: list[Any] = []
        self.otherwise: list[Any] = []


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def parse(self) -> list[Any]:
        root: list[Any] = []
        stack: list[tuple[_Block, bool]] = []  # (block, in its else part)
        current = root
        position = 0
        pending_trim = False
        for match in _ACTION.finditer(self.text):
            literal = self.text[position:match.start()]
            if pending_trim:
                literal = literal.lstrip()
            if match.group(1):
                literal = literal.rstrip()
            if literal:
                current.append(literal)
            position = match.end()
            pending_trim = bool(match.group(3))
            body = match.group(2).strip()
            if body.startswith("/*"):
                continue  # a comment
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word):].strip()
            if word in ("if", "range", "with"):
                block = _Block(word, self._pipeline(rest))
                current.append(block)
                stack.append((block, False))
                current = block.body
            elif word == "else":
                if not stack or stack[-1][1]:
                    raise _fail(self.text, "unexpected {{else}}")
                block, _ = stack.pop()
                if rest.split(None, 1)[:1] in (["if"], ["with"]):  # {{else if X}}
                    inner = _Block(rest.split(None, 1)[0],
                                   self._pipeline(rest.split(None, 1)[1]
                                                  if " " in rest else ""))
                    block.otherwise.append(inner)
                    stack.append((block, True))
                    stack.append((inner, False))  # closed by the same {{end}}
                    current = inner.body
                    inner.kind += "-chained"
                    continue
                stack.append((block, True))
                current = block.otherwise
            elif word == "end":
                if not stack:
                    raise _fail(self.text, "unexpected {{end}}")
                block, _ = stack.pop()
                while block.kind.endswith("-chained"):
                    block.kind = block.kind.removesuffix("-chained")
                    block, _ = stack.pop()
                current = self._current(root, stack)
            elif not body:
                raise _fail(self.text, "missing value for command")
            else:
                current.append(self._pipeline(body))
        if stack:
            raise _fail(self.text, f"unexpected EOF: {{{{{stack[-1][0].kind}}}}} without "
                        "{{end}}")
        literal = self.text[position:]
        if "{{" in literal:
            raise _fail(self.text, "unclosed action")
        if pending_trim:
            literal = literal.lstrip()
        if literal:
            current.append(literal)
        return root

    @staticmethod
    def _current(root: list[Any], stack: list[tuple[_Block, bool]]) -> list[Any]:
        if not stack:
            return root
        block, in_else = stack[-1]
        return block.otherwise if in_else else block.body

    def _pipeline(self, text: str) -> _Pipeline:
        tokens = self._tokens(text)
        declared: list[str] = []
        if "declare" in (kind for kind, _ in tokens):
            index = [kind for kind, _ in tokens].index("declare")
            declared = [value for kind, value in tokens[:index] if kind == "variable"]
            tokens = tokens[index + 1:]
        commands, rest = self._commands(tokens)
        if rest:
            raise _fail(self.text, f"unexpected {rest[0][1]!r}")
        if not commands or any(not command for command in commands):
            raise _fail(self.text, "missing value for command")
        return _Pipeline(declared, commands)

    def _commands(self, tokens: list[tuple[str, str]]
                  ) -> tuple[list[list[Any]], list[tuple[str, str]]]:
        """Commands separated by ``|`` up to a closing parenthesis (left in the rest)."""
        commands: list[list[Any]] = [[]]
        while tokens:
            kind, value = tokens[0]
            if value == ")" and kind == "punct":
                break
            tokens = tokens[1:]
            if kind == "punct" and value == "|":
                commands.append([])
            elif kind == "punct" and value == "(":
                inner, tokens = self._commands(tokens)
                if not tokens or tokens[0][1] != ")":
                    raise _fail(self.text, "unclosed left paren")
                tokens = tokens[1:]
                path = ""
                if tokens and tokens[0][0] == "field" and tokens[0][1] != ".":
                    path, tokens = tokens[0][1], tokens[1:]  # (index .Mounts 0).Destination
                commands[-1].append(("pipeline", (_Pipeline([], inner), path)))
            elif kind == "punct":
                raise _fail(self.text, f"unexpected {value!r}")
            else:
                commands[-1].append((kind, value))
        return commands, tokens

    def _tokens(self, text: str) -> list[tuple[str, str]]:
        tokens = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise _fail(self.text, f"unexpected {text[position:position + 10]!r} in "
                            "command")
            position = match.end()
            kind = match.lastgroup
            if kind is not None:
                tokens.append((kind, match.group(kind)))
        return tokens


# --- running ------------------------------------------------------------------------------

class _Scope:
    __slots__ = ("dot", "variables")

    def __init__(self, dot: Any, variables: dict[str, Any]) -> None:
        self.dot = dot
        self.variables = variables

    def child(self, dot: Any) -> _Scope:
        return _Scope(dot, dict(self.variables))


class _Missing:
    """A key the data does not have: prints ``<no value>``, is false."""

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


def _run(nodes: list[Any], scope: _Scope, out: list[str], text: str) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Pipeline):
            value = _pipeline(node, scope, text)
            if not node.declared:
                out.append(go_string(value))
        else:
            _block(node, scope, out, text)


def _block(block: _Block, scope: _Scope, out: list[str], text: str) -> None:
    value = _pipeline(block.pipeline, scope, text, declare=block.kind != "range")
    if block.kind == "if":
        _run(block.body if _truth(value) else block.otherwise, scope, out, text)
    elif block.kind == "with":
        if _truth(value):
            _run(block.body, scope.child(value), out, text)
        else:
            _run(block.otherwise, scope, out, text)
    else:  # range
        if isinstance(value, dict):
            items = [(key, value[key]) for key in sorted(value)]  # Go: sorted map keys
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None or isinstance(value, _Missing):
            items = []
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(index, index) for index in range(value)]
        else:
            raise _fail(text, f"range can't iterate over {go_string(value)}")
        if not items:
            _run(block.otherwise, scope, out, text)
        names = block.pipeline.declared
        for key, item in items:
            inner = scope.child(item)
            if len(names) == 1:
                inner.variables[names[0]] = item
            elif len(names) == 2:
                inner.variables[names[0]] = key
                inner.variables[names[1]] = item
            _run(block.body, inner, out, text)


def _pipeline(pipeline: _Pipeline, scope: _Scope, text: str, *, declare: bool = True) -> Any:
    value: Any = MISSING
    for position, command in enumerate(pipeline.commands):
        value = _command(command, scope, text, value if position else None, position > 0)
    if declare and pipeline.declared:
        scope.variables[pipeline.declared[0]] = value
    return value


def _command(command: list[Any], scope: _Scope, text: str, piped: Any, has_piped: bool
             ) -> Any:
    kind, value = command[0]
    if kind == "identifier" and value not in ("true", "false", "nil"):
        function = FUNCTIONS.get(value)
        if function is None:
            raise _fail(text, f'function "{value}" not defined')
        args = [_operand(operand, scope, text) for operand in command[1:]]
        if has_piped:
            args.append(piped)
        try:
            return function(*args)
        except (TypeError, ValueError, KeyError, IndexError) as error:
            raise _fail(text, f"error calling {value}: {error}") from None
    if len(command) > 1 or has_piped:
        raise _fail(text, f"can't give argument to non-function {value}")
    return _operand(command[0], scope, text)


def _operand(operand: tuple[str, Any], scope: _Scope, text: str) -> Any:
    kind, value = operand
    if kind == "pipeline":
        inner, path = value
        return _fields(_pipeline(inner, scope, text, declare=False), path.split(".")[1:])
    if kind == "string":
        return json.loads(value) if value.startswith('"') else value[1:-1]
    if kind == "number":
        return float(value) if "." in value else int(value)
    if kind == "field":
        return _fields(scope.dot, value.split(".")[1:] if value != "." else [])
    if kind == "variable":
        name, *path = value.split(".")
        if name not in scope.variables:
            raise _fail(text, f"undefined variable {name!r}")
        return _fields(scope.variables[name], path)
    if kind == "identifier":
        return {"true": True, "false": False, "nil": None}.get(value)
    raise _fail(text, f"unexpected {value!r}")


def _fields(value: Any, path: list[str]) -> Any:
    for name in path:
        if not name:
            continue
        if isinstance(value, dict):
            value = value.get(name, MISSING)
        else:
            return MISSING
    return value


def _truth(value: Any) -> bool:
    return bool(value) and not isinstance(value, _Missing)


# --- printing, functions ----------------------------------------------------------------------

def go_string(value: Any) -> str:
    """*value* as Go's ``fmt.Sprint`` prints the decoded JSON value."""
    if isinstance(value, _Missing):
        return NO_VALUE
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_string(value[key])}"
                                 for key in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_string(item) for item in value) + "]"
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(None if isinstance(value, _Missing) else value, separators=(",", ":"),
                      ensure_ascii=False)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, MISSING) if isinstance(key, str) else MISSING
        elif isinstance(value, list):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TypeError(f"cannot index slice with {go_string(key)}")
            if not 0 <= key < len(value):
                raise IndexError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TypeError(f"can't index item of type {type(value).__name__}")
    return value


def _len(value: Any) -> int:
    if isinstance(value, (dict, list, str)):
        return len(value)
    raise TypeError(f"len of {go_string(value)}")


def _printf(form: str, *args: Any) -> str:
    """Go's verbs ``%s %v %d %q %%`` (enough for templates)."""
    values = iter(args)

    def verb(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        value = next(values, MISSING)
        if letter == "q":
            return json.dumps(go_string(value))
        return go_string(value)

    return re.sub(r"%[-+# 0-9.]*([svdqt%])", verb, form)


def _compare(operator: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(left: Any, *rights: Any) -> bool:
        return any(operator(left, right) for right in rights) if rights else False
    return compare


def _and(*values: Any) -> Any:
    for value in values:
        if not _truth(value):
            return value
    return values[-1] if values else MISSING


def _or(*values: Any) -> Any:
    for value in values:
        if _truth(value):
            return value
    return values[-1] if values else MISSING


def _truncate(value: Any, length: int) -> str:
    text = go_string(value)
    return text[:length]


def _pad(value: Any, before: int, after: int) -> str:
    return " " * before + go_string(value) + " " * after


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "len": _len,
    "print": lambda *args: "".join(go_string(arg) for arg in args),
    "println": lambda *args: " ".join(go_string(arg) for arg in args) + "\n",
    "printf": _printf,
    "join": lambda items, separator: separator.join(go_string(item) for item in items),
    "split": lambda text, separator: go_string(text).split(separator),
    "lower": lambda text: go_string(text).lower(),
    "upper": lambda text: go_string(text).upper(),
    "title": lambda text: go_string(text).title(),
    "truncate": _truncate,
    "pad": _pad,
    "eq": _compare(lambda a, b: a == b),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "and": _and,
    "or": _or,
    "not": lambda value: not _truth(value),
}


def format_inspected(records: list[Any], template: str) -> str:
    """What the ``inspect`` commands print: the JSON array (no *template*, or ``json``),
    else the template's text for each record, one line each (as Docker's)."""
    if not template or template == "json":
        return json.dumps(records, indent=4) + "\n"
    parsed = Template(template)
    return "".join(parsed.render(record) + "\n" for record in records)
