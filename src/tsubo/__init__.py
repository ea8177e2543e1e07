"""tsubo: a daemonless container engine and OCI runtime for Linux.

The package namespace stays import-light: the runtime CLI's hot path imports only the
modules it needs. The engine API arrives with the engine (``tsubo.api``).
"""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
