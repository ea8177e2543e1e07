"""nftables: the only module that runs ``nft`` (and the xtables CLIs, for chains iptables owns).

What it owns
    * :func:`apply` — one JSON batch through ``nft -j -f -``. nft sends the whole batch to the
      kernel as ONE netlink transaction: either every command takes effect or none does (a
      failing batch leaves the ruleset exactly as it was; ``tests/kernel`` checks it).
    * :func:`list_table` / :func:`list_ruleset` — ``nft -j list ...``, parsed to a list of
      objects (``{"table": {...}}``, ``{"chain": {...}}``, ``{"rule": {...}}``, ...).
    * :func:`xtables` — ``iptables``/``ip6tables`` (``-nft`` or ``-legacy``), for the one
      rule tsubo puts in the host's ``filter FORWARD`` chain (see ``network/firewall.py``).
      Chains created by iptables-nft must be changed through iptables-nft: a rule written by
      ``nft`` itself makes iptables refuse the whole table ("table `filter' is incompatible").
    * :func:`legacy_tables` — which iptables-legacy tables exist (``/proc/net/ip_tables_names``).

Decisions
    * Every tool runs through :func:`tsubo.kernel.helpers.run` (posix_spawn, memfds, no
      :mod:`subprocess`; ``netns`` through ``nsenter --net``: see there).
    * JSON in and out (``nft -j``) through :mod:`tsubo.jsonwire`, the one bounded JSON
      reader and writer, which sits below every layer (as :mod:`tsubo.errors` does).
    * Errors are :class:`~tsubo.kernel.helpers.HelperError` with operation ``nft`` (or the
      xtables binary's name), the command as object, and as detail the exit status plus the
      tool's error line (``exit status 1: Error: Could not process rule: No such file or
      directory``).
"""

from __future__ import annotations

from tsubo import jsonwire
from tsubo.errors import TsuboError
from tsubo.kernel import helpers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.kernel.helpers import HelperResult


# ---------------------------------------------------------------------------------------------
# nft


def apply(batch: object, *, netns: str | None = None) -> int:
    """Apply one JSON batch (``{"nftables": [...]}``, or its text) as one transaction; the
    pid of the ``nft`` that committed it (the kernel's change notification names it)."""
    text = batch if isinstance(batch, str) else jsonwire.dumps(batch)
    return helpers.run(["nft", "-j", "-f", "-"], stdin=text.encode(), netns=netns,
                       operation="nft").check().pid


def list_table(
    family: str = "inet", name: str = "tsubo", *, netns: str | None = None
) -> list[dict[str, object]] | None:
    """``nft -j list table FAMILY NAME`` as a list of objects; None when there is no such
    table."""
    result = helpers.run(["nft", "-j", "list", "table", family, name], netns=netns,
                         operation="nft")
    if result.exit_code != 0 and "No such file or directory" in result.stderr_text():
        return None
    return _objects(result.check())


def list_ruleset(*, netns: str | None = None) -> list[dict[str, object]]:
    """``nft -j list ruleset`` as a list of objects (every table, chain, set and rule)."""
    return _objects(helpers.run(["nft", "-j", "list", "ruleset"], netns=netns,
                                operation="nft").check())


def _objects(result: HelperResult) -> list[dict[str, object]]:
    text = result.text()
    if not text.strip():
        return []
    try:
        document = jsonwire.loads(text)
    except ValueError as e:
        raise TsuboError("nft", " ".join(result.argv), detail=f"unreadable JSON: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("nftables"), list):
        raise TsuboError("nft", " ".join(result.argv), detail="no 'nftables' list in output")
    return [item for item in document["nftables"] if isinstance(item, dict)]


# ---------------------------------------------------------------------------------------------
# xtables (iptables / ip6tables)


def xtables(binary: str, args: Sequence[str], *, netns: str | None = None) -> HelperResult:
    """Run ``BINARY -w ARGS...`` (e.g. ``iptables-nft``); the caller reads the exit code
    (``-C`` answers 1 for "no such rule")."""
    return helpers.run([binary, "-w", *args], netns=netns, operation=binary)


def has_tool(name: str) -> bool:
    return helpers.which(name) is not None


def legacy_tables(family: str = "ip", *, netns: str | None = None) -> frozenset[str]:
    """Names of the iptables-legacy tables that exist (``filter``, ``nat``, ...) in the
    current or the named netns; empty when the legacy modules are not loaded. Reading the
    file loads nothing and creates nothing."""
    path = "/proc/net/ip_tables_names" if family == "ip" else "/proc/net/ip6_tables_names"
    if netns is None:
        try:
            with open(path) as f:
                return frozenset(f.read().split())
        except OSError:
            return frozenset()
    result = helpers.run(["cat", path], netns=netns)
    return frozenset(result.text().split()) if result.exit_code == 0 else frozenset()

