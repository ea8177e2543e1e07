"""nftables: the only module that drives nftables (and the xtables CLIs, for chains iptables
owns).

What it owns
    * :func:`apply` — one JSON batch, as ``nft -j -f -`` takes it. nftables sends the whole
      batch to the kernel as ONE netlink transaction: either every command takes effect or
      none does (a failing batch leaves the ruleset exactly as it was; ``tests/kernel`` checks
      it).
    * :func:`list_table` / :func:`list_ruleset` — ``nft -j list ...``, parsed to a list of
      objects (``{"table": {...}}``, ``{"chain": {...}}``, ``{"rule": {...}}``, ...); with
      ``terse``, without the elements of sets and maps (``nft -t``: then nftables does not
      even fetch them, and a table with thousands of published ports lists in ~1 ms
      instead of ~70).
    * :data:`committed_here` — who committed this process's recent transactions, so a
      watcher of the kernel's change notifications can tell its own changes from others'.
    * :func:`xtables` — ``iptables``/``ip6tables`` (``-nft`` or ``-legacy``), for the one
      rule tsubo puts in the host's ``filter FORWARD`` chain (see ``network/firewall.py``).
      Chains created by iptables-nft must be changed through iptables-nft: a rule written by
      ``nft`` itself makes iptables refuse the whole table ("table `filter' is incompatible").
    * :func:`legacy_tables` — which iptables-legacy tables exist (``/proc/net/ip_tables_names``).

Decisions
    * In the current network namespace, nftables runs in-process through ``libnftables.so.1``
      (the library ``nft`` itself is built on; Debian's ``nftables`` depends on it), with
      :mod:`ctypes`: a 32-rule batch commits in ~0.4 ms against ~2.7 ms for an ``nft``
      process, which also competes for the cores with the container being started (a
      ``run -d`` with 32 published ports: docs/performance.md). A context per call (~15 µs):
      its netlink socket is then always the calling thread's network namespace's (a thread
      may have entered another with ``InNetns``), never shared with a forked child, and
      never left open. Its output and errors are buffered, never printed. The result has
      the shape of an ``nft`` run (exit code 0/1, stdout, stderr), so errors read the
      same; its ``pid`` is the calling thread's id, which the kernel names in its change
      notification. Without the library (or for another netns) ``nft`` runs as a program.
      So it does in a process whose next file descriptor would be near 1024: libnftables
      waits for the kernel's answer with ``select(2)``, and glibc aborts the whole process
      ("bit out of range 0 - FD_SETSIZE") for a socket numbered 1024 or more (a monitor
      died with SIGABRT at ~340 containers; ``tests/kernel/test_nft_committers.py`` pins
      the fallback). The monitor keeps what it holds per container above that range
      (``engine.background.above_select_range``), so it stays in-process at any count.
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

import collections
import os

from tsubo import jsonwire
from tsubo.errors import TsuboError
from tsubo.kernel import helpers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tsubo.kernel.helpers import HelperResult


# ---------------------------------------------------------------------------------------------
# nft

#: the pids (thread ids, in-process) that committed this process's latest transactions
#: (:func:`apply` adds each): the kernel's change notification names the committer
committed_here: collections.deque[int] = collections.deque(maxlen=256)


def apply(batch: object, *, netns: str | None = None) -> int:
    """Apply one JSON batch (``{"nftables": [...]}``, or its text) as one transaction; the
    pid (thread id, in-process) that committed it (the kernel's change notification names
    it), also left in :data:`committed_here`."""
    text = batch if isinstance(batch, str) else jsonwire.dumps(batch)
    pid = _nft(["-f", "-"], text, netns).check().pid
    committed_here.append(pid)
    return pid


def list_table(
    family: str = "inet", name: str = "tsubo", *, netns: str | None = None,
    terse: bool = False,
) -> list[dict[str, object]] | None:
    """``nft -j list table FAMILY NAME`` as a list of objects (TERSE: without set and map
    elements); None when there is no such table."""
    return _list_if_there(["table", family, name], netns, terse=terse)


def list_map(family: str, table: str, name: str, *, netns: str | None = None
             ) -> list[dict[str, object]] | None:
    """``nft -j list map FAMILY TABLE NAME`` as a list of objects; None when there is no
    such table or map."""
    return _list_if_there(["map", family, table, name], netns)


def _list_if_there(what: list[str], netns: str | None, *, terse: bool = False
                   ) -> list[dict[str, object]] | None:
    """``nft -j list WHAT...``; None when nft says it does not exist."""
    result = _nft(["list", *what], " ".join(["list", *what]), netns, terse=terse)
    if result.exit_code != 0 and "No such file or directory" in result.stderr_text():
        return None
    return _objects(result.check())


def list_ruleset(*, netns: str | None = None, terse: bool = False) -> list[dict[str, object]]:
    """``nft -j list ruleset`` as a list of objects (every table, chain, set and rule; set
    and map elements unless TERSE)."""
    return _objects(_nft(["list", "ruleset"], "list ruleset", netns, terse=terse).check())


def _nft(args: list[str], commands: str, netns: str | None, *,
         terse: bool = False) -> HelperResult:
    """``nft -j [-t] ARGS`` (*commands* its input, or the same commands as text): in-process
    through libnftables when it loads and *netns* is the current one, else as a program."""
    argv = ["nft", "-j", *(["-t"] if terse else []), *args]
    if netns is None:
        library = _Library.get()
        if library is not None:
            result = library.run(argv, commands, terse=terse)
            if result is not None:
                return result
    stdin = commands.encode() if args[:2] == ["-f", "-"] else b""
    return helpers.run(argv, stdin=stdin, netns=netns, operation="nft")


class _Library:
    """libnftables through ctypes (see the module docstring)."""

    _loaded: _Library | None = None
    _failed = False
    _OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON: JSON out, and JSON in is parsed first
    _OUTPUT_TERSE = 1 << 11  # NFT_CTX_OUTPUT_TERSE: no set elements (``nft -t``)
    #: the lowest free fd above which the library is not used (select(2)'s FD_SETSIZE is
    #: 1024; the margin is for fds other threads open meanwhile and the library's own)
    FD_LIMIT = 896

    def __init__(self) -> None:
        import ctypes
        import threading

        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for function in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, function).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for function in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, function).argtypes = [ctypes.c_void_p]
            getattr(lib, function).restype = ctypes.c_char_p  # copied out as bytes
        self.lib = lib
        self.lock = threading.Lock()

    @classmethod
    def get(cls) -> _Library | None:
        """The loaded library; None when it cannot be loaded (then ``nft`` runs)."""
        if cls._loaded is None and not cls._failed:
            try:
                cls._loaded = cls()
            except (OSError, AttributeError):
                cls._failed = True
        return cls._loaded

    def run(self, argv: list[str], commands: str, *, terse: bool = False
            ) -> HelperResult | None:
        """The commands' result; None when this process's fds are too many for the
        library's select(2) (see the module docstring): then run ``nft``."""
        import threading

        lib = self.lib
        with self.lock:
            lowest_free = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            os.close(lowest_free)
            if lowest_free >= self.FD_LIMIT:
                return None
            context = lib.nft_ctx_new(0)
            if not context:
                raise TsuboError("nft", "nft_ctx_new", detail="libnftables made no context")
            try:
                lib.nft_ctx_output_set_flags(
                    context, self._OUTPUT_JSON | (self._OUTPUT_TERSE if terse else 0))
                lib.nft_ctx_buffer_output(context)
                lib.nft_ctx_buffer_error(context)
                status = lib.nft_run_cmd_from_buffer(context, commands.encode())
                out = lib.nft_ctx_get_output_buffer(context) or b""
                err = lib.nft_ctx_get_error_buffer(context) or b""
            finally:
                lib.nft_ctx_free(context)
        return helpers.HelperResult(argv, "libnftables.so.1", 1 if status else 0, out, err,
                                    operation="nft", pid=threading.get_native_id())


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

