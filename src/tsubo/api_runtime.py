"""The runtime's part of the Python API: what ``tsubo-runtime`` (``cli/runtime.py``) calls,
importable without :mod:`tsubo.api`.

``tsubo.api`` holds the engine's API (``Engine``, ``Container``, ``Lab``: ~80 KB of
bytecode) and re-exports these same names; loading it cost every runtime command ~0.7 ms,
paid four times per container by containerd's shim (create, start, delete, delete) and by
conmon — on a path whose goal is runc's speed (docs/performance.md). This module is the same
layer as ``tsubo.api`` (over the runtime, kernel, oci and state packages) and holds no code
of its own: :class:`Runtime` is imported with it (every runtime command needs it), the rest
on first access.
"""

from __future__ import annotations

from tsubo.runtime.container import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.kernel.signals import parse_signal
    from tsubo.oci.default_spec import default_spec
    from tsubo.runtime.container import read_caller_file
    from tsubo.runtime.exec import process_from_flags
    from tsubo.runtime.features import features
    from tsubo.state.clock import now_rfc3339

__all__ = ["Runtime", "default_spec", "features", "now_rfc3339", "parse_signal",
           "process_from_flags", "read_caller_file"]

#: name -> module: what this module re-exports besides Runtime, loaded on first access
_REEXPORTS = {
    "default_spec": "tsubo.oci.default_spec",
    "features": "tsubo.runtime.features",
    "now_rfc3339": "tsubo.state.clock",
    "parse_signal": "tsubo.kernel.signals",
    "process_from_flags": "tsubo.runtime.exec",
    "read_caller_file": "tsubo.runtime.container",
}


def __getattr__(name: str) -> object:
    module = _REEXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tsubo.api_runtime' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value
