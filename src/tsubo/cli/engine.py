"""``tsubo``: the Docker-like engine command line.

The engine (containers by name, images, networks) is built on the runtime in later
milestones; today this face offers ``version`` and hands ``tsubo runtime ...`` to the OCI
runtime so one binary reaches both.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_USAGE = """usage: tsubo <command> [arguments]

commands:
   version    print the version
   runtime    the OCI runtime (same as tsubo-runtime): tsubo runtime --help
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 1
    if args[0] in ("version", "--version", "-v"):
        from tsubo import OCI_VERSION, __version__

        sys.stdout.write(f"tsubo version {__version__} (OCI runtime spec {OCI_VERSION})\n")
        return 0
    if args[0] == "runtime":
        from tsubo.cli import runtime

        return runtime.main(args[1:])
    sys.stderr.write(f"tsubo: unknown command {args[0]!r} (see 'tsubo --help')\n")
    return 125


if __name__ == "__main__":
    sys.exit(main())
