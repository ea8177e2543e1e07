"""IPv4 addresses as integers and text, and CIDR arithmetic: pure, no ``ipaddress`` (these
run on the hot path of attaching a container to a network)."""

from __future__ import annotations

ALL_ONES = 0xFFFFFFFF


def ip_to_int(text: str) -> int:
    """The 32-bit value of a dotted-quad IPv4 address; ValueError unless *text* is exactly
    four decimal octets 0..255 without leading zeros (``ipaddress``'s rule)."""
    octets = text.split(".")
    if len(octets) != 4:
        raise ValueError(f"not an IPv4 address: {text!r}")
    value = 0
    for octet in octets:
        if (not octet or len(octet) > 3 or not (octet.isascii() and octet.isdigit())
                or (len(octet) > 1 and octet[0] == "0") or int(octet) > 255):
            raise ValueError(f"not an IPv4 address: {text!r}")
        value = value << 8 | int(octet)
    return value


def int_to_ip(value: int) -> str:
    """The dotted quad of a 32-bit value."""
    if not 0 <= value <= ALL_ONES:
        raise ValueError(f"not an IPv4 address value: {value}")
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def cidr_bounds(cidr: str) -> tuple[int, int]:
    """First and last address (as integers) of *cidr* (``a.b.c.d/n``, or a bare address
    for a /32). Host bits are ignored: the bounds are those of the network."""
    address, slash, prefix_text = cidr.partition("/")
    if slash and not (prefix_text.isascii() and prefix_text.isdigit()
                      and int(prefix_text) <= 32):
        raise ValueError(f"not an IPv4 prefix length: {cidr!r}")
    prefix = int(prefix_text) if slash else 32
    size = 1 << (32 - prefix)
    first = ip_to_int(address) & ~(size - 1) & ALL_ONES
    return first, first + size - 1


def overlaps(one: str, other: str) -> bool:
    """Whether two CIDRs share any address."""
    first, last = cidr_bounds(one)
    other_first, other_last = cidr_bounds(other)
    return first <= other_last and other_first <= last
