"""Names tsubo gives to what it creates on the host, and the checks on names users give.

Interface names are limited to 15 bytes (``IFNAMSIZ`` is 16 with the NUL; the seed hit this
limit with veth names built from container names), so every generated name is a 3-letter
owner mark plus 12 hex digits, exactly 15 bytes:

- bridge of a network: ``tsb`` + the first 12 hex digits of the network ID (``tsb3f2a...``):
  the same short ID ``network ls`` shows, so the bridge is easy to match by eye.
  ``tsubo-`` + 8 digits would be as long, but 8 digits of a random ID collide sooner.
- host end of an endpoint's veth pair: ``tsv`` + 12 hex digits of a hash of the container ID
  and the network ID: deterministic (teardown and gc can recompute it from the database),
  and one per (container, network) pair.

The marks help a human and a sanity check (:func:`is_generated_link_name`); gc itself
removes only what the ledger (:mod:`tsubo.network.store`) recorded, never by pattern alone.
A user's ``--bridge-name`` is recorded the same way, so it needs no mark.
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

#: The kernel's limit on interface names (IFNAMSIZ - 1 for the NUL), in bytes.
IFNAME_MAX_BYTES = 15
BRIDGE_PREFIX = "tsb"
HOST_VETH_PREFIX = "tsv"
_GENERATED_DIGITS = 12
_HEX_DIGITS = frozenset("0123456789abcdef")
#: ``dev_valid_name()`` in net/core/dev.c refuses "/", ":" (alias syntax) and whitespace.
_IFNAME_FORBIDDEN = frozenset("/:")

MAX_NETWORK_NAME_LENGTH = 128
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")
#: ``--network`` values that are modes, not networks, so no network may take the name.
RESERVED_NETWORK_NAMES = frozenset(("none", "host"))


def validate_ifname(name: str, flag: str = "--bridge-name") -> str:
    """*name* if the kernel accepts it as an interface name (1 to 15 bytes, not "." or
    "..", no "/", ":" or whitespace); InvalidArgument naming *flag* otherwise."""
    size = len(name.encode("utf-8", "surrogateescape"))
    if size == 0:
        raise InvalidArgument(f"check {flag}", '""', detail="interface name is empty")
    if size > IFNAME_MAX_BYTES:
        raise InvalidArgument(
            f"check {flag}", repr(name),
            detail=f"interface name is {size} bytes; the kernel's limit is "
            f"{IFNAME_MAX_BYTES} bytes (IFNAMSIZ 16 with the NUL)",
            hint=f"use at most {IFNAME_MAX_BYTES} bytes")
    if name in (".", ".."):
        raise InvalidArgument(f"check {flag}", repr(name),
                              detail='"." and ".." are not interface names')
    if any(char in _IFNAME_FORBIDDEN or char.isspace() for char in name):
        raise InvalidArgument(f"check {flag}", repr(name),
                              detail='interface names cannot contain "/", ":" or whitespace')
    return name


def is_generated_link_name(name: str) -> bool:
    """Whether *name* has the shape of a name tsubo generates (``tsb``/``tsv`` + 12 hex)."""
    return (len(name) == len(BRIDGE_PREFIX) + _GENERATED_DIGITS
            and name[:3] in (BRIDGE_PREFIX, HOST_VETH_PREFIX)
            and _HEX_DIGITS.issuperset(name[3:]))


def bridge_name(network_id: str, requested: str = "") -> str:
    """The bridge of network *network_id*: *requested* (``--bridge-name``, validated) or
    ``tsb`` + the first 12 hex digits of the ID.

    A requested name shaped like a generated one is refused: it could collide with the
    bridge of another network, and would pass for ours in a listing.
    """
    if requested:
        validate_ifname(requested, "--bridge-name")
        if is_generated_link_name(requested):
            raise InvalidArgument(
                "check --bridge-name", repr(requested),
                detail=f'names of the form "{BRIDGE_PREFIX}"/"{HOST_VETH_PREFIX}" + '
                "12 hex digits are reserved for the bridges and veths tsubo names itself",
                hint="pick another name, or leave --bridge-name out")
        return requested
    digits = network_id[:_GENERATED_DIGITS]
    if len(digits) != _GENERATED_DIGITS or not _HEX_DIGITS.issuperset(digits):
        raise ValueError(f"not a network id: {network_id!r}")
    return BRIDGE_PREFIX + digits


def host_veth_name(container_id: str, network_id: str) -> str:
    """The host end of the veth pair joining *container_id* to *network_id*: ``tsv`` + 12
    hex digits of BLAKE2b(container_id "/" network_id) -- 48 bits, so the chance that two
    of 10,000 endpoints collide is below 1 in 5 million (and the store's UNIQUE constraint
    on host_ifname turns a collision into an error, never into a shared link)."""
    # _blake2 is built into CPython and imports in ~0.1 ms; hashlib costs ~10 ms (OpenSSL).
    from _blake2 import blake2b

    digest = blake2b(f"{container_id}/{network_id}".encode(),
                     digest_size=_GENERATED_DIGITS // 2).hexdigest()
    return HOST_VETH_PREFIX + digest


def container_ifname(index: int) -> str:
    """The interface name inside the container for its *index*-th network: ``eth0``..."""
    if index < 0:
        raise ValueError(f"negative interface index {index}")
    return f"eth{index:d}"


def mac_for(address: str) -> str:
    """Docker's MAC for an IPv4 address: ``02:42:`` + the four octets in hex (locally
    administered, unicast), so ``172.17.0.2`` gets ``02:42:ac:11:00:02``. Deterministic: an
    address reused by the next container keeps its MAC, and neighbours' ARP caches stay
    right."""
    octets = address.split(".")
    if len(octets) != 4:
        raise ValueError(f"not an IPv4 address: {address!r}")
    return "02:42:" + ":".join(f"{int(octet):02x}" for octet in octets)


def parse_mac(text: str, flag: str = "--mac-address") -> str:
    """``--mac-address``: six hex octets separated by ":" or "-", returned lower-case with
    ":". Multicast addresses (lowest bit of the first octet set) and all-zero are refused:
    the kernel will not give them to an Ethernet interface (EADDRNOTAVAIL)."""
    separator = "-" if "-" in text and ":" not in text else ":"
    octets = text.split(separator)
    if len(octets) != 6 or not all(
            len(octet) == 2 and _HEX_DIGITS.issuperset(octet.lower()) for octet in octets):
        raise InvalidArgument(f"parse {flag}", repr(text),
                              detail="expected a MAC address like 02:42:ac:11:00:02")
    value = ":".join(octet.lower() for octet in octets)
    if int(octets[0], 16) & 1:
        raise InvalidArgument(f"parse {flag}", value,
                              detail="a multicast MAC address (lowest bit of the first octet "
                              "set) cannot be an interface's address",
                              hint="use a unicast address such as 02:...")
    if value == "00:00:00:00:00:00":
        raise InvalidArgument(f"parse {flag}", value, detail="the all-zero MAC is not valid")
    return value


def validate_network_name(name: str) -> str:
    """*name* if it is a valid network name: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``, at most 128
    characters, not a ``--network`` mode (``none``, ``host``); InvalidArgument otherwise."""
    if (not name or len(name) > MAX_NETWORK_NAME_LENGTH or name[0] not in _NAME_FIRST
            or not _NAME_REST.issuperset(name)):
        raise InvalidArgument(
            "check network name", repr(name),
            detail="only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            f"1 to {MAX_NETWORK_NAME_LENGTH} characters")
    if name in RESERVED_NETWORK_NAMES:
        raise InvalidArgument("check network name", repr(name),
                              detail=f'"{name}" is a --network mode, not a network name')
    return name
