"""What the command lines import on their hot paths (docs/performance.md, "Runtime commands
one by one" and the engine's figures): every module is a cost paid by each command.

- ``tsubo-runtime``'s commands never load ``tsubo.api`` (the engine's API: ~80 KB of
  bytecode), only the runtime's part of it (``tsubo.api_runtime``); the thin commands a
  client's shim calls most (``delete`` of a missing container, ``state``) do not load the
  cgroup package or the plan either;
- ``tsubo``'s CLI loads the modules that hold other commands' flag tables (build, stats,
  pull...) only when that command runs, and the table is the same once loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after *code* (which prints nothing itself)."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = [{SRC!r}]\n{code}\n"
         "print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_runtime_thin_commands_skip_the_engine_api_and_the_cgroups(tmp_path: Path) -> None:
    root = str(tmp_path / "state")
    code = ("from tsubo.cli.runtime import main\n"
            f"assert main(['--root', {root!r}, 'delete', '--force', 'missing']) == 0\n"
            "import io, contextlib\n"
            "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
            f"    assert main(['--root', {root!r}, 'state', 'missing']) == 1\n"
            "assert 'does not exist' in err.getvalue(), err.getvalue()")
    loaded = _modules_after(code)
    assert "tsubo.runtime.container" in loaded  # the commands did run
    unwanted = {"tsubo.api", "tsubo.engine", "tsubo.kernel.cgroups", "tsubo.runtime.plan",
                "tsubo.oci.runtime_spec", "json", "re", "typing", "subprocess"}
    assert loaded & unwanted == set()


def test_runtime_api_reexports_the_runtime_names() -> None:
    from tsubo import api, api_runtime

    for name in api_runtime.__all__:
        assert getattr(api_runtime, name) is getattr(api, name), name


def test_engine_cli_loads_other_commands_flag_tables_on_use() -> None:
    loaded = _modules_after("import tsubo.cli.engine")
    assert {"tsubo.cli.build", "tsubo.cli.monitoring", "tsubo.cli.registry"} & loaded == set()

    from tsubo.cli import build, monitoring, registry
    from tsubo.cli.engine import COMMANDS

    assert COMMANDS["build"].options is build.BUILD_OPTIONS
    assert COMMANDS["stats"].options is monitoring.STATS_OPTIONS
    assert COMMANDS["pull"].options is registry.PULL_OPTIONS
