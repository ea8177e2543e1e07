"""Address management: subnets for networks, addresses for endpoints (IPv4, and IPv6 on
dual-stack networks).

**Parsing** (``--subnet``, ``--gateway``, ``--ip-range``, ``--ip``, ``--ip6``): strict,
normalised, and every error names the flag. A subnet with host bits set (``10.1.2.3/24``)
is refused rather than silently truncated, as Docker does ("invalid subnet"); the message
suggests the network address. ``--subnet`` and ``--gateway`` may be given once per family
(:func:`split_families`); an IPv6 ``--ip-range`` is :class:`~tsubo.errors.Unsupported`.

**IPv6** (``network create --ipv6``): the network keeps its IPv4 subnet and gets an IPv6
one too -- ``--subnet fd..::/64`` (a prefix of /48 to /126: larger would claim a whole
site, smaller leaves no room), else a /64 of the ULA range fd00::/8 (RFC 4193) whose
40-bit global ID comes from the network's ID (:func:`choose_subnet6`: deterministic per
network, and two tsubo hosts, or a host and its VPN, are unlikely to pick the same one);
a candidate overlapping another network, a host IPv6 route or nameserver is skipped (the
next /64 of that /48). Link-local, multicast, loopback and the unspecified address are
refused as subnets. An IPv6 ``--subnet`` without ``--ipv6`` is refused ("add --ipv6"):
Docker up to 26 silently created an IPv4-only network from it, the classic surprise. The
gateway is the subnet's first address (``::1``) unless ``--gateway`` names one. IPv6 leases
live in the same table as IPv4 ones (``network/store.py``, :func:`allocate6`): the lowest
free address from ``::2`` up, starting at a hint as IPv4 does; the subnet-router anycast
address (``::``, offset 0) is never handed out.

**Choosing a subnet** (:func:`choose_subnet`, when ``network create`` gets no ``--subnet``):
the pool is Docker's ranges, 172.17.0.0/16 ... 172.31.0.0/16 then 192.168.0.0/16, but cut
into /24s (4096 candidates, in that order) where Docker hands out whole /16s and /20s: 253
addresses are plenty for one host's bridge, and a small footprint collides less often with
the routes of LANs and VPNs. A candidate is skipped when it overlaps another network, a
host nameserver or the networks' upstream resolver (:func:`nameservers_to_avoid`: they
could not be reached any more) or a host route -- any route of any table except the
default route (prefix length 0). A VPN's "redirect-gateway def1" pair,
0.0.0.0/1 and 128.0.0.0/1, therefore blocks every candidate (128.0.0.0/1 alone covers the
whole default pool; 0.0.0.0/1 would cover a 10.x pool): the VPN claims all addresses, and a
more specific bridge route would silently steal a range from it. That is the safe choice; the
error names the route and asks for ``--subnet``. An explicit ``--subnet`` is not checked
against host routes (the user knows the network; the seed's 192.168.10.0/24 is one).

**Allocating** (:func:`allocate`): one ``BEGIN IMMEDIATE`` transaction per address, so
concurrent engines never hand out the same one. The lowest free address of the allocation
range (``--ip-range``, else the subnet without its network and broadcast addresses) comes
first. The gateway holds a lease of its own (container "", taken by the store when the
network is inserted), so it is never handed out and needs no special case. Leases store
addresses as integers; the network keeps ``alloc_hint``, an address below which the whole
range is leased (raised by each allocation, lowered by each release). The search starts at
the hint and walks the ``(network_id, address)`` primary-key index from there to the first
gap, inside SQLite: the next container usually gets the address at the hint after one index
probe, O(log n), and never costs a Python loop over leases or endpoints -- the 200th
container allocates as fast as the first (measured: ~40-90 us per allocation, commit
included, on a /16 with 2000 leases). Worst case, the first allocation after a released
address was reused: one index walk over the leases between hint and the next gap, ~1 us
per lease passed (~0.25 ms for a full /24, ~2 ms for 2000 leases), after which the hint is
at the gap again.

An explicit ``--ip`` must lie in the subnet, but -- like Docker -- may lie outside
``--ip-range``: the range only bounds automatic allocation, which is what makes it useful
for keeping a part of the subnet for fixed addresses.

Reading the host's routes and nameservers (:func:`host_routes`, :func:`host_nameservers`)
happens only in ``network create`` without ``--subnet``, and in the monitor, which relays
names to :func:`dns_upstreams` (the host's nameservers, or the engine setting
``$TSUBO_DNS_UPSTREAM``); ``ipaddress`` (~3 ms) and the ``ip`` runner
(:mod:`tsubo.kernel.iproute`) are imported inside the functions that need them, never on
the ``run`` path.
"""

from __future__ import annotations

from tsubo.errors import AlreadyExists, InvalidArgument, TsuboError, Unsupported
from tsubo.network import names
from tsubo.network.addresses import ALL_ONES, cidr_bounds, int_to_ip, ip_to_int
from tsubo.network.models import Network, new_network_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from tsubo.network.store import NetworkStore

#: Candidate subnets: (block, prefix length of each candidate), in order.
DEFAULT_POOL: tuple[tuple[str, int], ...] = (
    *((f"172.{second}.0.0/16", 24) for second in range(17, 32)),
    ("192.168.0.0/16", 24),
)
#: The default network's (``bridge``): Docker's 172.17.0.0/16 whole when nothing overlaps
#: it, else a /24 of the pool as any network gets.
DEFAULT_NETWORK_POOL: tuple[tuple[str, int], ...] = (("172.17.0.0/16", 16), *DEFAULT_POOL)
#: The longest prefix ``--subnet`` may have: a /30 holds a gateway and one container.
MAX_SUBNET_PREFIX = 30
#: Where ``ip route`` is; a fixed path, not a PATH lookup (PATH is the user's).
RESOLV_CONF = "/etc/resolv.conf"
#: engine setting: the nameservers the networks' resolvers relay to (see dns_upstreams)
DNS_UPSTREAM_ENV = "TSUBO_DNS_UPSTREAM"


def allocation_range(network: Network) -> tuple[int, int]:
    """The addresses automatic allocation may use: the ip_range (or the subnet), minus
    the subnet's network and broadcast addresses."""
    first, last = cidr_bounds(network.subnet)
    low, high = first + 1, last - 1
    if network.ip_range:
        range_first, range_last = cidr_bounds(network.ip_range)
        low, high = max(low, range_first), min(high, range_last)
    return low, high


# --- parsing user input ------------------------------------------------------------------


def _reject_ipv6(text: str, flag: str) -> None:
    if ":" in text:
        if flag == "--ip":
            raise InvalidArgument("parse --ip", text, detail=f"invalid IPv4 address: {text}",
                                  hint="give an IPv6 address with --ip6")
        raise Unsupported(f"parse {flag}", text, detail="IPv6 is not supported here",
                          hint="give an IPv4 address")


def parse_ip(text: str, flag: str = "--ip") -> str:
    """An IPv4 address given as *flag*, normalised; InvalidArgument (or Unsupported for
    IPv6) naming the flag."""
    try:
        return int_to_ip(ip_to_int(text))
    except ValueError:
        pass
    _reject_ipv6(text, flag)
    raise InvalidArgument(f"parse {flag}", repr(text),
                          detail="not an IPv4 address (expected four numbers 0-255, "
                          "like 172.18.0.5)")


def parse_subnet(text: str, flag: str = "--subnet", max_prefix: int = 32) -> str:
    """An IPv4 network in CIDR notation given as *flag*, normalised (``10.1.0.0/16``);
    InvalidArgument naming the flag for bad syntax, a missing prefix length, host bits set
    or a prefix longer than *max_prefix*; Unsupported for IPv6."""
    _reject_ipv6(text, flag)
    import ipaddress  # ~3 ms: only network create parses CIDRs

    if "/" not in text:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail="expected CIDR notation with a prefix length, like "
                              "172.18.0.0/16")
    try:
        network = ipaddress.IPv4Network(text, strict=False)
        address = ipaddress.IPv4Address(text.partition("/")[0])
    except ValueError as error:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail=f"invalid subnet: {error}") from None
    if address != network.network_address:
        raise InvalidArgument(f"parse {flag}", text,
                              detail="invalid subnet: host bits are set",
                              hint=f"did you mean {network}?")
    if network.prefixlen > max_prefix:
        raise InvalidArgument(f"parse {flag}", text,
                              detail=f"a /{network.prefixlen} is too small: at most "
                              f"/{max_prefix} (room for the gateway and one container)")
    return str(network)


def resolve_addresses(subnet: str, gateway: str = "", ip_range: str = "",
                      ) -> tuple[str, str, str]:
    """Check a network's ``--subnet``, ``--gateway`` and ``--ip-range`` together and return
    them normalised; the gateway defaults to the subnet's first address.

    Refused, naming the flag: a subnet longer than /30; a gateway outside the subnet or
    equal to its network or broadcast address; an ip-range not inside the subnet, or one
    that leaves no address for containers.
    """
    subnet = parse_subnet(subnet, "--subnet", MAX_SUBNET_PREFIX)
    first, last = cidr_bounds(subnet)
    if gateway:
        gateway = parse_ip(gateway, "--gateway")
        value = ip_to_int(gateway)
        if not first <= value <= last:
            raise InvalidArgument("parse --gateway", gateway,
                                  detail=f"gateway is outside subnet {subnet}")
        if value in (first, last):
            which = "network" if value == first else "broadcast"
            raise InvalidArgument("parse --gateway", gateway,
                                  detail=f"gateway is the {which} address of subnet {subnet}")
    else:
        gateway = int_to_ip(first + 1)
    if ip_range:
        ip_range = parse_subnet(ip_range, "--ip-range")
        range_first, range_last = cidr_bounds(ip_range)
        if not (first <= range_first and range_last <= last):
            raise InvalidArgument("parse --ip-range", ip_range,
                                  detail=f"range is not inside subnet {subnet}")
        low, high = max(range_first, first + 1), min(range_last, last - 1)
        usable = high - low + 1 - (low <= ip_to_int(gateway) <= high)
        if usable <= 0:
            raise InvalidArgument("parse --ip-range", ip_range,
                                  detail="range leaves no address for containers (network, "
                                  "broadcast and gateway addresses are never handed out)")
    return subnet, gateway, ip_range


# --- IPv6 ----------------------------------------------------------------------------------

#: IPv6 subnet prefix lengths ``--subnet`` may have (see the module docstring)
MIN_SUBNET6_PREFIX = 48
MAX_SUBNET6_PREFIX = 126
#: what is never a network's IPv6 subnet: (first, last, what)
_SPECIAL6 = (("::/8", "reserved (unspecified, loopback, IPv4-mapped)"),
             ("fe80::/10", "link-local"), ("ff00::/8", "multicast"))


def parse_ip6(text: str, flag: str = "--ip6") -> str:
    """An IPv6 address given as *flag*, canonical (RFC 5952); InvalidArgument naming the
    flag (Docker's "invalid IPv6 address")."""
    from tsubo.network.addresses import int_to_ip6, ip6_to_int

    try:
        return int_to_ip6(ip6_to_int(text))
    except ValueError:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail=f"invalid IPv6 address: {text}") from None


def parse_subnet6(text: str, flag: str = "--subnet") -> str:
    """An IPv6 subnet in CIDR notation, canonical; InvalidArgument naming the flag for bad
    syntax, host bits set, a prefix outside /48../126, or a special range."""
    from tsubo.network.addresses import cidr6_bounds, int_to_ip6, ip6_to_int

    address, slash, prefix_text = text.partition("/")
    if not slash:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail="expected CIDR notation with a prefix length, like "
                              "fd00:1::/64")
    if not (prefix_text.isascii() and prefix_text.isdigit()) or int(prefix_text) > 128:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail=f"invalid subnet: bad prefix length {prefix_text!r}")
    try:
        value = ip6_to_int(address)
    except ValueError:
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail=f"invalid subnet: {address!r} is not an IPv6 "
                              "address") from None
    prefix = int(prefix_text)
    first, _ = cidr6_bounds(f"{address}/{prefix}")
    if value != first:
        raise InvalidArgument(f"parse {flag}", text, detail="invalid subnet: host bits are set",
                              hint=f"did you mean {int_to_ip6(first)}/{prefix}?")
    if not MIN_SUBNET6_PREFIX <= prefix <= MAX_SUBNET6_PREFIX:
        raise InvalidArgument(f"parse {flag}", text,
                              detail=f"an IPv6 subnet must be /{MIN_SUBNET6_PREFIX} to "
                              f"/{MAX_SUBNET6_PREFIX} (a /64 is usual), not /{prefix}")
    for special, what in _SPECIAL6:
        special_first, special_last = cidr6_bounds(special)
        if special_first <= value <= special_last:
            raise InvalidArgument(f"parse {flag}", text,
                                  detail=f"invalid subnet: {special} is {what}",
                                  hint="use a ULA subnet (fd00::/8) or one of yours")
    return f"{int_to_ip6(first)}/{prefix}"


def resolve_addresses6(subnet6: str, gateway6: str = "") -> tuple[str, str]:
    """Check an IPv6 ``--subnet`` and ``--gateway`` together; the gateway defaults to the
    subnet's first address (``::1``) and may not be its ``::`` (subnet-router anycast)."""
    from tsubo.network.addresses import cidr6_bounds, int_to_ip6, ip6_to_int

    subnet6 = parse_subnet6(subnet6)
    first, last = cidr6_bounds(subnet6)
    if not gateway6:
        return subnet6, int_to_ip6(first + 1)
    gateway6 = parse_ip6(gateway6, "--gateway")
    value = ip6_to_int(gateway6)
    if not first <= value <= last:
        raise InvalidArgument("parse --gateway", gateway6,
                              detail=f"gateway is outside subnet {subnet6}")
    if value == first:
        raise InvalidArgument("parse --gateway", gateway6,
                              detail=f"gateway is the subnet-router anycast address of "
                              f"{subnet6}")
    return subnet6, gateway6


def split_families(subnets: Sequence[str], gateways: Sequence[str]
                   ) -> tuple[str, str, str, str]:
    """``--subnet`` and ``--gateway`` given up to once per family, as (subnet, gateway,
    subnet6, gateway6) ("" = not given); InvalidArgument for two of one family or a
    gateway without a subnet of its family."""
    found: dict[str, list[str]] = {"subnet": ["", ""], "gateway": ["", ""]}
    for flag, values in (("subnet", subnets), ("gateway", gateways)):
        for value in values:
            if not value:
                continue
            family = 1 if ":" in value else 0
            if found[flag][family]:
                raise InvalidArgument(f"parse --{flag}", value,
                                      detail=f"more than one IPv{6 if family else 4} "
                                      f"--{flag} ({found[flag][family]} and {value})",
                                      hint="a network has one subnet per family")
            found[flag][family] = value
    for family in (0, 1):
        if found["gateway"][family] and not found["subnet"][family]:
            raise InvalidArgument("parse --gateway", found["gateway"][family],
                                  detail=f"--gateway needs an IPv{6 if family else 4} "
                                  "--subnet")
    return found["subnet"][0], found["gateway"][0], found["subnet"][1], found["gateway"][1]


def ula_block(network_id: str) -> str:
    """The network's own ULA /48 (RFC 4193): fd + 40 bits of SHA-256 of its ID."""
    from hashlib import sha256  # network create only

    from tsubo.network.addresses import int_to_ip6

    global_id = int.from_bytes(sha256(f"tsubo-ula:{network_id}".encode()).digest()[:5], "big")
    return f"{int_to_ip6((0xFD << 120) | (global_id << 80))}/48"


def choose_subnet6(network_id: str, taken: Iterable[str], host_routes: Iterable[str],
                   nameservers: Iterable[str] = (), *, network: str = "") -> str:
    """The first /64 of the network's ULA /48 (:func:`ula_block`) that overlaps none of
    *taken* (other networks' IPv6 subnets), *host_routes* (IPv6 CIDRs; ``::/0`` ignored)
    and *nameservers*; TsuboError naming the blockers when all 65536 do."""
    from tsubo.network.addresses import cidr6_bounds, int_to_ip6, ip6_to_int

    blockers: list[tuple[int, int, str]] = []
    for subnet in taken:
        blockers.append((*cidr6_bounds(subnet), f"network subnet {subnet}"))
    for route in host_routes:
        first, last = cidr6_bounds(route)
        if last - first < 1 << 127:  # the default route: everything overlaps it
            blockers.append((first, last, f"host route {route}"))
    for server in nameservers:
        value = ip6_to_int(server)
        blockers.append((value, value, f"host nameserver {server}"))
    block_first, block_last = cidr6_bounds(ula_block(network_id))
    size = 1 << 64
    start = block_first
    hit: list[str] = []
    while start <= block_last:
        blocker = next((b for b in blockers if b[0] <= start + size - 1 and start <= b[1]),
                       None)
        if blocker is None:
            return f"{int_to_ip6(start)}/64"
        hit.append(blocker[2])
        start = max(start + size, (blocker[1] // size + 1) * size)
    raise TsuboError("choose IPv6 subnet for network", network,
                     detail=f"every /64 of {ula_block(network_id)} overlaps "
                     f"{', '.join(dict.fromkeys(hit))}", hint="give one with --subnet")


def host_routes6() -> list[str]:
    """The host's IPv6 routes of every table (none when the host has no IPv6)."""
    import os

    if not os.path.isdir("/proc/sys/net/ipv6"):
        return []
    from tsubo.kernel import iproute

    output = iproute.query_text(["-6", "route", "show", "table", "all"], timeout=10,
                                hint="give an IPv6 --subnet")
    try:
        return parse_routes(output, ipv6=True)
    except (ValueError, AttributeError) as error:
        raise TsuboError("list host routes", "", detail=f"unexpected output: {error}",
                         hint="give an IPv6 --subnet") from None


def host_nameservers6(path: str = RESOLV_CONF) -> list[str]:
    """The IPv6 nameservers of the host's resolv.conf (a zone index dropped)."""
    from tsubo.network.addresses import int_to_ip6, ip6_to_int

    found: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError:
        return []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and ":" in words[1]:
            try:
                found.append(int_to_ip6(ip6_to_int(words[1].partition("%")[0])))
            except ValueError:
                continue
    return found


# --- the host's routes and nameservers ----------------------------------------------------


def parse_routes(output: str, *, ipv6: bool = False) -> list[str]:
    """The IPv4 (IPV6: IPv6) destinations (CIDR) in ``ip -4|-6 -j route show table all``
    output, default routes left out (a bare address becomes a /32 or /128)."""
    from tsubo import jsonwire
    from tsubo.network.addresses import cidr6_bounds, int_to_ip6

    bits, span, text = (128, cidr6_bounds, int_to_ip6) if ipv6 else (32, cidr_bounds,
                                                                      int_to_ip)
    routes: list[str] = []
    data = jsonwire.loads(output) if output.strip() else []
    if not isinstance(data, list):
        raise ValueError("ip route: expected a JSON list")
    for route in data:
        destination = route.get("dst", "") if isinstance(route, dict) else ""
        if not isinstance(destination, str) or destination in ("", "default"):
            continue
        if (":" in destination) != ipv6:
            continue  # the other family (not asked for, but harmless to skip)
        try:
            first, last = span(destination)
        except ValueError:
            continue  # "multicast ..." and other forms without a plain destination
        if first == 0 and last == (1 << bits) - 1:
            continue  # the default route spelt out (another table's)
        prefix = bits + 1 - (last - first + 1).bit_length()  # size 2**(bits - prefix)
        routes.append(f"{text(first)}/{prefix}")
    return routes


def _run_ip_route() -> str:
    from tsubo.kernel import iproute

    return iproute.query_text(["-4", "route", "show", "table", "all"], timeout=10,
                              hint="give --subnet")


def host_routes(run: Callable[[], str] = _run_ip_route) -> list[str]:
    """The host's IPv4 routes of every table (except default routes) as CIDRs; *run*
    returns the ``ip -4 -j route show table all`` output (injectable for tests)."""
    output = run()
    try:
        return parse_routes(output)
    except (ValueError, AttributeError) as error:
        raise TsuboError("list host routes", "", detail=f"unexpected output: {error}",
                         hint="give --subnet") from None


def parse_resolv_conf(text: str) -> list[str]:
    """The IPv4 ``nameserver`` addresses of a resolv.conf."""
    servers: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append(int_to_ip(ip_to_int(words[1])))
            except ValueError:
                continue  # IPv6 or garbage: the resolver ignores what it cannot parse too
    return servers


def host_nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The IPv4 nameservers of the host's resolv.conf (none if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return parse_resolv_conf(file.read())
    except OSError:
        return []


def dns_upstreams(setting: str | None = None) -> list[str]:
    """The nameservers the networks' resolvers relay to: the IPv4 addresses of the engine
    setting :data:`DNS_UPSTREAM_ENV` (*setting* when given; separated by commas or blanks,
    anything else ignored as resolv.conf lines are) when it is set, else the host's own
    (:func:`host_nameservers`). Like Docker's ``dockerd --dns``: for a host whose
    resolv.conf names a stub the containers should not use, and for tests, which point it
    at a resolver of their own."""
    if setting is None:
        import os

        setting = os.environ.get(DNS_UPSTREAM_ENV, "")
    if not setting.strip():
        return host_nameservers()
    return parse_resolv_conf("\n".join(f"nameserver {word}"
                                       for word in setting.replace(",", " ").split()))


def nameservers_to_avoid() -> list[str]:
    """The host's nameservers and the resolvers' upstreams: no subnet may hide them."""
    return list(dict.fromkeys([*host_nameservers(), *dns_upstreams()]))


# --- choosing a subnet ---------------------------------------------------------------------


def choose_subnet(taken: Iterable[str], host_routes: Iterable[str],
                  nameservers: Iterable[str],
                  pool: Sequence[tuple[str, int]] = DEFAULT_POOL, *,
                  network: str = "") -> str:
    """The first candidate of *pool* overlapping none of *taken* (other networks'
    subnets), *host_routes* (CIDRs; prefix-0 routes are ignored, every other one counts)
    and *nameservers*; TsuboError naming the blockers when there is none.

    Candidates blocked by the same thing are skipped in one jump, so a broad route costs
    one step, not one per candidate.
    """
    blockers: list[tuple[int, int, str]] = []
    for subnet in taken:
        blockers.append((*cidr_bounds(subnet), f"network subnet {subnet}"))
    for route in host_routes:
        first, last = cidr_bounds(route)
        if first == 0 and last == ALL_ONES:
            continue  # the default route: everything overlaps it
        blockers.append((first, last, f"host route {route}"))
    for server in nameservers:
        value = ip_to_int(server)
        blockers.append((value, value, f"host nameserver {server}"))
    hit: dict[str, None] = {}  # the blockers met, in order (a dict as an ordered set)
    for block, prefix in pool:
        block_first, block_last = cidr_bounds(block)
        size = 1 << (32 - prefix)
        start = block_first
        while start + size - 1 <= block_last:
            end = start + size - 1
            blocker = next((b for b in blockers if b[0] <= end and start <= b[1]), None)
            if blocker is None:
                return f"{int_to_ip(start)}/{prefix}"
            hit[blocker[2]] = None
            # Jump to the first aligned candidate past the blocker.
            start = max(start + size, (blocker[1] // size + 1) * size)
    described = list(hit)
    if len(described) > 5:
        described = [*described[:5], f"and {len(described) - 5} more"]
    pool_text = ", ".join(f"{block} in /{prefix}s" for block, prefix in pool)
    broad = [b[2] for b in blockers if b[2] in hit and b[1] - b[0] >= 1 << 24]
    hint = "choose a free one with --subnet"
    if broad:
        hint += (f" ({broad[0]} covers much of the pool: a VPN sending all traffic "
                 "through its tunnel? pick a subnet the VPN does not use)")
    raise TsuboError("choose subnet for network", network,
                     detail=f"no free subnet in the pool ({pool_text}): every candidate "
                     f"overlaps {', '.join(described) or 'something'}", hint=hint)


# --- networks ------------------------------------------------------------------------------


def create_network(
    store: NetworkStore,
    name: str,
    *,
    subnet: str = "",
    gateway: str = "",
    ip_range: str = "",
    internal: bool = False,
    mtu: int = 0,
    bridge_name: str = "",
    labels: dict[str, str] | None = None,
    routes: Callable[[], list[str]] = host_routes,
    nameservers: Callable[[], list[str]] = nameservers_to_avoid,
    network_id: str = "",
    pool: Sequence[tuple[str, int]] = DEFAULT_POOL,
    ipv6: bool = False,
    subnet6: str = "",
    gateway6: str = "",
    routes6: Callable[[], list[str]] = host_routes6,
) -> Network:
    """Validate ``network create``'s flags, choose a subnet when none is given, and
    record the network (with the gateway's lease) -- the choice and the insert in one
    transaction, so two engines creating networks at once never pick the same subnet.
    Host routes and nameservers are read (only when no subnet is given) before the
    transaction: no subprocess runs under the database's write lock. IPV6: dual stack,
    SUBNET6 / GATEWAY6 (or a ULA /64, see :func:`choose_subnet6`)."""
    names.validate_network_name(name)
    if not 0 <= mtu <= 65535 or 0 < mtu < 68:
        raise InvalidArgument("parse --mtu", str(mtu),
                              detail="MTU must be 68 to 65535 (or 0: the uplink's)")
    network_id = network_id or new_network_id()
    bridge = names.bridge_name(network_id, bridge_name)
    if (subnet6 or gateway6) and not ipv6:
        raise InvalidArgument("parse --subnet", subnet6 or gateway6,
                              detail="an IPv6 subnet needs an IPv6 network",
                              hint="add --ipv6")
    host_route6_list: list[str] = []
    if subnet6:
        subnet6, gateway6 = resolve_addresses6(subnet6, gateway6)
    elif ipv6:
        host_route6_list = routes6()
    host_route_list: list[str] = []
    nameserver_list: list[str] = []
    if subnet:
        subnet, gateway, ip_range = resolve_addresses(subnet, gateway, ip_range)
    else:
        if gateway or ip_range:
            flag = "--gateway" if gateway else "--ip-range"
            raise InvalidArgument(f"parse {flag}", gateway or ip_range,
                                  detail=f"{flag} needs --subnet")
        host_route_list = routes()
        nameserver_list = nameservers()
    with store.transaction():
        if not subnet:
            taken = [existing.subnet for existing in store.list_networks()]
            chosen = choose_subnet(taken, host_route_list, nameserver_list, pool,
                                   network=name)
            subnet, gateway, ip_range = resolve_addresses(chosen)
        if ipv6 and not subnet6:
            taken6 = [existing.subnet6 for existing in store.list_networks()
                      if existing.subnet6]
            subnet6, gateway6 = resolve_addresses6(choose_subnet6(
                network_id, taken6, host_route6_list, host_nameservers6(), network=name))
        network = Network(network_id, name, subnet, gateway, bridge, ip_range=ip_range,
                          internal=internal, mtu=mtu, labels=labels, ipv6=ipv6,
                          subnet6=subnet6, gateway6=gateway6)
        store.insert_network(network)
    return network


# --- addresses -----------------------------------------------------------------------------


def allocate(store: NetworkStore, network: Network, requested: str | None = None, *,
             container_id: str) -> str:
    """Lease an address of *network* to *container_id* and return it: *requested*
    (``--ip``) if given and free, else the lowest free address of the allocation range.

    One ``BEGIN IMMEDIATE`` transaction. Refused: *requested* outside the subnet or equal
    to its network/broadcast address (InvalidArgument), already leased or the gateway
    (AlreadyExists, naming the holder); no free address left (TsuboError, with the count).
    """
    if not container_id:
        raise ValueError("allocate: empty container id")
    with store.transaction():
        if requested:
            return _allocate_requested(store, network, requested, container_id)
        low, high = allocation_range(network)
        hint = store.allocation_hint(network.id)
        value = store.first_free_address(network.id, max(low, hint), high)
        if value is None and hint > low:
            # The hint promises all below it is leased; if a lease vanished without
            # release() (a hand-edited database), look there too rather than fail.
            value = store.first_free_address(network.id, low, high)
        if value is None:
            in_use = store.lease_count(network.id, low, high)
            where = f"subnet {network.subnet}"
            if network.ip_range:
                where += f", ip range {network.ip_range}"
            raise TsuboError("allocate address", "",
                             detail=f"network {network.name} has no free address "
                             f"({where}, {in_use} in use)",
                             hint="remove containers from it, or create a larger network")
        store.add_lease(network.id, value, container_id)
        store.set_allocation_hint(network.id, value + 1)
        return int_to_ip(value)


def _allocate_requested(store: NetworkStore, network: Network, requested: str,
                        container_id: str) -> str:
    address = parse_ip(requested, "--ip")
    value = ip_to_int(address)
    first, last = cidr_bounds(network.subnet)
    if not first <= value <= last:
        raise InvalidArgument("parse --ip", address,
                              detail=f"address is outside subnet {network.subnet} of "
                              f"network {network.name}")
    if value in (first, last):
        which = "network" if value == first else "broadcast"
        raise InvalidArgument("parse --ip", address,
                              detail=f"address is the {which} address of network "
                              f"{network.name} ({network.subnet})")
    _check_free(store, network, value, address, "--ip")
    store.add_lease(network.id, value, container_id)
    return address


def allocate6(store: NetworkStore, network: Network, requested: str | None = None, *,
              container_id: str) -> str:
    """Lease an IPv6 address of the dual-stack *network* to *container_id*: *requested*
    (``--ip6``) if free, else the lowest free one from the hint up (``::2`` first, ``::1``
    being the gateway by default). One ``BEGIN IMMEDIATE`` transaction; errors as
    :func:`allocate`'s."""
    from tsubo.network.addresses import cidr6_bounds, ip6_to_int
    from tsubo.network.store import lease_address, lease_key, lease_key6

    if not container_id:
        raise ValueError("allocate6: empty container id")
    if not network.subnet6:
        raise InvalidArgument("parse --ip6", requested or network.name,
                              detail=f"network {network.name} has no IPv6 subnet (it was "
                              "created without --ipv6)")
    first, last = cidr6_bounds(network.subnet6)
    with store.transaction():
        if requested:
            address = parse_ip6(requested)
            value = ip6_to_int(address)
            if not first <= value <= last:
                raise InvalidArgument("parse --ip6", address,
                                      detail=f"address is outside subnet {network.subnet6} "
                                      f"of network {network.name}")
            if value == first:
                raise InvalidArgument("parse --ip6", address,
                                      detail="address is the subnet-router anycast address "
                                      f"of network {network.name} ({network.subnet6})")
            _check_free(store, network, lease_key(address), address, "--ip6")
            store.add_lease(network.id, lease_key(address), container_id)
            return address
        hint = store.allocation_hint6(network.id)
        value = max(first + 1, int(hint[2:], 16) if hint else 0)
        while value <= last and store.lease_holder(network.id, lease_key6(value)) \
                is not None:
            value += 1
        if value > last:
            raise TsuboError("allocate address", "",
                             detail=f"network {network.name} has no free IPv6 address "
                             f"(subnet {network.subnet6})",
                             hint="remove containers from it, or create a larger network")
        key = lease_key6(value)
        store.add_lease(network.id, key, container_id)
        store.set_allocation_hint6(network.id, lease_key6(value + 1))
        return lease_address(key)


def _check_free(store: NetworkStore, network: Network, key: int | str, address: str,
                flag: str) -> None:
    holder = store.lease_holder(network.id, key)
    if holder is None:
        return
    if holder == "":
        detail = f"address is the gateway of network {network.name}"
    else:
        detail = (f"address is already in use on network {network.name} by container "
                  f"{holder[:12]}")
    raise AlreadyExists("allocate address", address, detail=detail,
                        hint=f"pick another {flag}, or leave it out")


def release(store: NetworkStore, network_id: str, address: str) -> bool:
    """Give *address* (IPv4 or IPv6) of *network_id* back; False if it was not leased. The
    gateway's lease is never released (it goes with the network)."""
    from tsubo.network.store import lease_key

    return store.remove_lease(network_id, lease_key(address))
