"""tsubo's own version and the OCI runtime spec version it implements (imports nothing)."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
