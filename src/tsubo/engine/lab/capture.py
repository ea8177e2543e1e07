"""Packet capture on a lab interface: ``tcpdump`` run inside the node's network namespace.

What it owns
    The ``tcpdump`` command line of ``tsubo lab capture NODE:IFACE`` and where it runs (the
    node's pinned namespace; the host's for ``host:``, bridge and ``mgmt-net`` ends).

Decisions
    * Bounded: a capture ends after ``count`` packets or ``timeout`` seconds (default 10),
      whichever comes first; the program runs through the one helper runner
      (:func:`tsubo.kernel.helpers.run`), which kills it at the deadline.
    * ``-U`` with ``-w``: each packet is flushed to the pcap as it is captured, so a capture
      ended by the deadline is a complete file. ``-Z root``: Debian's tcpdump would
      otherwise write the file as user ``tcpdump``, who may not be allowed to.
    * Without ``-w`` the decoded packets (``-n -l``) are returned as text once it ends.
"""

from __future__ import annotations

import os

from tsubo.engine.lab.topology import HOST, MGMT_NET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.engine.lab.records import LabRecord

DEFAULT_TIMEOUT = 10.0


def capture(record: LabRecord, endpoint: str, *, write: str = "", count: int = 0,
            timeout: float | None = None, expression: Sequence[str] = ()) -> str:
    """Capture on *endpoint* (``node:iface``) of the deployed lab *record*, packets
    matching the filter *expression* (tcpdump's, e.g. ``["icmp"]``; passed as arguments,
    never through a shell); tcpdump's text (the packets without *write*, else its
    summary)."""
    from tsubo.errors import InvalidArgument, TsuboError
    from tsubo.kernel import helpers
    from tsubo.network.bridge import check_ifname

    node, sep, ifname = endpoint.partition(":")
    if not sep:
        raise InvalidArgument("lab capture", endpoint, detail="expected NODE:INTERFACE")
    check_ifname(ifname)
    if node in (HOST, MGMT_NET) or node in record.bridges:
        netns = None
    elif node in record.containers:
        netns = record.containers[node]
    else:
        raise InvalidArgument("lab capture", endpoint,
                              detail=f"lab {record.name} has no node {node}")
    argv = ["tcpdump", "-i", ifname, "-n", "-Z", "root"]
    if count:
        argv += ["-c", str(int(count))]
    argv += ["-U", "-w", os.path.abspath(write)] if write else ["-l"]
    argv += ["--", *expression]
    result = helpers.run(argv, netns=netns, timeout=timeout or DEFAULT_TIMEOUT,
                         operation="lab capture", obj=endpoint)
    if result.exit_code != 0 and not result.timed_out:
        raise TsuboError("lab capture", endpoint,
                         detail=helpers.error_line(result.stderr.decode(errors="replace"))
                         or f"tcpdump exited {result.exit_code}")
    text = result.stdout.decode(errors="replace")
    if write:
        text += result.stderr.decode(errors="replace")
    return text
