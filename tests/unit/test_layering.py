"""The layers of ARCHITECTURE.md, as a test: every import in src/tsubo goes down.

    cli -> api -> engine -> image | network | runtime -> kernel | oci | state -> errors

(``api_runtime``, the runtime's part of the API that ``tsubo-runtime`` imports without the
engine's, sits beside ``api``.)

(``errors``, ``version`` and ``jsonwire``, the one bounded JSON reader, are the bottom:
every layer may import them.)

Packages on one line do not import each other (``image``, ``network`` and ``runtime`` are
siblings; so are ``kernel``, ``oci`` and ``state``); ``lab`` and ``build`` sit beside each
other above ``engine``. Imports under ``if TYPE_CHECKING:`` count too: a type that must be
named from above is a sign the code is in the wrong layer. Inside a package, modules may
import each other, but not in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "tsubo"

#: what each top-level part of the package may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "__init__": {"api", "errors"},
    "cli": {"api", "api_runtime", "errors"},
    "api": {"engine", "lab", "build", "image", "network", "runtime", "kernel", "oci", "state",
            "errors", "undo"},
    "api_runtime": {"runtime", "kernel", "oci", "state", "errors"},
    "lab": {"engine", "image", "network", "runtime", "kernel", "oci", "state", "errors",
            "undo"},
    "build": {"engine", "image", "network", "runtime", "kernel", "oci", "state", "errors",
              "undo"},
    "engine": {"image", "network", "runtime", "kernel", "oci", "state", "errors", "undo"},
    "image": {"kernel", "oci", "state", "errors", "undo"},
    "network": {"kernel", "oci", "state", "errors", "undo"},
    "runtime": {"kernel", "oci", "state", "errors", "undo"},
    "kernel": {"errors", "undo"},
    "oci": {"errors"},
    "state": {"errors"},
    "undo": {"errors"},
    "errors": set(),
    "version": set(),
    "jsonwire": {"errors"},
}
for allowed in ALLOWED.values():
    # the bottom of everything: two constants, and the one bounded JSON reader
    allowed |= {"version", "jsonwire", "errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The tsubo modules *path* imports (``from tsubo import errors`` is tsubo.errors)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tsubo")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("tsubo"):
            if node.module == "tsubo":
                found |= {f"tsubo.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(SOURCE.rglob("*.py"))}


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    for module, targets in _graph().items():
        source = _part(module)
        for target in sorted(targets):
            destination = _part(target)
            if destination != source and destination not in ALLOWED[source]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports up or sideways:\n  " + "\n  ".join(wrong)


def test_no_import_cycles_inside_a_package() -> None:
    graph = _graph()
    modules = set(graph)

    def resolve(target: str) -> str:
        while target not in modules and "." in target:  # tsubo.x.name -> tsubo.x
            target = target.rsplit(".", 1)[0]
        return target

    edges = {module: {resolve(target) for target in targets} & modules - {module}
             for module, targets in graph.items()}
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)
