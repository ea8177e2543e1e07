"""IPv4 and IPv6 addresses as integers and text, and CIDR arithmetic: pure, no ``ipaddress`` (these
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


# --- IPv6 (pure as well: ``ipaddress`` and ``socket`` cost milliseconds to import) ---------

ALL_ONES6 = (1 << 128) - 1
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def ip6_to_int(text: str) -> int:
    """The 128-bit value of an IPv6 address (RFC 4291 text: hex groups, one ``::``, an
    IPv4 dotted quad as the last 32 bits); ValueError for anything else (a zone index
    ``%eth0`` included)."""
    if not isinstance(text, str) or not text.isascii() or text.count("::") > 1:
        raise ValueError(f"not an IPv6 address: {text!r}")
    double = "::" in text
    head, _, tail = text.partition("::") if double else (text, "", "")
    head_words = _ip6_words(head, text, last=not double)
    tail_words = _ip6_words(tail, text, last=True)
    missing = 8 - len(head_words) - len(tail_words)
    if (double and missing < 1) or (not double and missing != 0):
        raise ValueError(f"not an IPv6 address: {text!r}")
    value = 0
    for word in (*head_words, *([0] * missing), *tail_words):
        value = value << 16 | word
    return value


def _ip6_words(part: str, text: str, *, last: bool) -> list[int]:
    """The 16-bit words of one side of ``::`` (a dotted quad allowed at the very end)."""
    if not part:
        return []
    words = part.split(":")
    values: list[int] = []
    for index, word in enumerate(words):
        if last and index == len(words) - 1 and "." in word:
            value = ip_to_int(word)
            values += [value >> 16, value & 0xFFFF]
        elif 1 <= len(word) <= 4 and all(c in _HEX_DIGITS for c in word):
            values.append(int(word, 16))
        else:
            raise ValueError(f"not an IPv6 address: {text!r}")
    return values


def int_to_ip6(value: int) -> str:
    """The canonical text of a 128-bit value (RFC 5952: lower case, no leading zeros, the
    longest run of two or more zero groups, the first of equal ones, as ``::``)."""
    if not 0 <= value <= ALL_ONES6:
        raise ValueError(f"not an IPv6 address value: {value}")
    words = [value >> (112 - 16 * i) & 0xFFFF for i in range(8)]
    best_start, best_length, start = -1, 1, -1
    for index in range(9):
        if index < 8 and words[index] == 0:
            if start < 0:
                start = index
        elif start >= 0:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = -1
    if best_start < 0:
        return ":".join(f"{word:x}" for word in words)
    head = ":".join(f"{word:x}" for word in words[:best_start])
    tail = ":".join(f"{word:x}" for word in words[best_start + best_length:])
    return f"{head}::{tail}"


def cidr6_bounds(cidr: str) -> tuple[int, int]:
    """First and last address (as integers) of an IPv6 *cidr* (a bare address: a /128)."""
    address, slash, prefix_text = cidr.partition("/")
    if slash and not (prefix_text.isascii() and prefix_text.isdigit()
                      and int(prefix_text) <= 128):
        raise ValueError(f"not an IPv6 prefix length: {cidr!r}")
    prefix = int(prefix_text) if slash else 128
    size = 1 << (128 - prefix)
    first = ip6_to_int(address) & ~(size - 1) & ALL_ONES6
    return first, first + size - 1


def bounds(cidr: str) -> tuple[int, int]:
    """:func:`cidr_bounds` or :func:`cidr6_bounds`, by the family of *cidr*."""
    return cidr6_bounds(cidr) if ":" in cidr else cidr_bounds(cidr)
