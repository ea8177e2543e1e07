"""tsubo: a daemonless container engine and OCI runtime for Linux.

``tsubo.Engine`` is the Python API (see :mod:`tsubo.api`). The package namespace stays
import-light: ``Engine`` is loaded on first access, so the runtime CLI's hot path, which
imports ``tsubo.cli.runtime``, never pays for the engine.
"""

from __future__ import annotations

from tsubo.version import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.api import Container, Engine, ExecResult, Lab
    from tsubo.errors import TsuboError

__all__ = ["OCI_VERSION", "Container", "Engine", "ExecResult", "Lab", "TsuboError",
           "__version__"]


def __getattr__(name: str) -> object:
    if name in ("Engine", "Container", "ExecResult", "Lab"):
        from tsubo import api

        return getattr(api, name)
    if name == "TsuboError":
        from tsubo.errors import TsuboError

        return TsuboError
    raise AttributeError(f"module 'tsubo' has no attribute {name!r}")
