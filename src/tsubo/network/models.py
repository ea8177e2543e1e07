"""The records of networking: a :class:`Network` and a container's :class:`Endpoint` on it.

Plain ``__slots__`` classes (no dataclasses: this module is on the ``run --network`` path)
holding validated, normalised values: addresses are dotted-quad text, subnets CIDR text with
no host bits. A dual-stack network (``--ipv6``) has an IPv6 subnet and gateway too
(``subnet6``/``gateway6``, canonical RFC 5952 text), and its endpoints an ``address6``.
:mod:`tsubo.network.store` keeps them in SQLite; ``to_json`` / ``from_json``
are the dicts ``network inspect`` prints and tests compare.
"""

from __future__ import annotations

import os

from tsubo.errors import InvalidArgument
from tsubo.state.clock import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NETWORK_ID_LENGTH = 64
SHORT_ID_LENGTH = 12
#: The only driver so far.
BRIDGE_DRIVER = "bridge"

NETWORK_FIELDS = ("id", "name", "driver", "subnet", "gateway", "ip_range", "internal", "mtu",
                  "bridge_name", "labels", "created_at", "ipv6", "subnet6", "gateway6")
ENDPOINT_FIELDS = ("container_id", "network_id", "ifname", "host_ifname", "mac", "address",
                   "prefix_len", "address6", "prefix_len6")


def new_network_id() -> str:
    """64 random hex digits, like Docker's network IDs."""
    return os.urandom(NETWORK_ID_LENGTH // 2).hex()


class Network:
    """One bridge network: its subnet, the gateway (the bridge's own address), the range
    addresses are handed out from (``ip_range``, "" = the whole subnet), and the bridge;
    with ``ipv6``, the IPv6 subnet and gateway as well."""

    __slots__ = NETWORK_FIELDS

    def __init__(
        self,
        id: str,
        name: str,
        subnet: str,
        gateway: str,
        bridge_name: str,
        *,
        driver: str = BRIDGE_DRIVER,
        ip_range: str = "",
        internal: bool = False,
        mtu: int = 0,
        labels: dict[str, str] | None = None,
        created_at: str = "",
        ipv6: bool = False,
        subnet6: str = "",
        gateway6: str = "",
    ) -> None:
        self.id = id
        self.name = name
        self.driver = driver
        self.subnet = subnet
        self.gateway = gateway
        #: the part of the subnet automatic allocation uses ("" = all of it)
        self.ip_range = ip_range
        #: no route out (no masquerade, no forwarding to the uplink)
        self.internal = internal
        #: 0 = take the MTU of the host's uplink route
        self.mtu = mtu
        self.bridge_name = bridge_name
        self.labels = dict(labels or {})
        self.created_at = created_at or now_rfc3339()
        #: dual stack (Docker's ``EnableIPv6``): subnet6 and gateway6 are set
        self.ipv6 = ipv6
        self.subnet6 = subnet6
        self.gateway6 = gateway6

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID_LENGTH]

    @property
    def prefix_len(self) -> int:
        """The subnet's prefix length (24 for ``10.1.2.0/24``)."""
        return int(self.subnet.rpartition("/")[2])

    @property
    def prefix_len6(self) -> int:
        """The IPv6 subnet's prefix length (0 without one)."""
        return int(self.subnet6.rpartition("/")[2]) if self.subnet6 else 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in NETWORK_FIELDS}
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        """The inverse of :meth:`to_json`; InvalidArgument for a malformed record."""
        _check_keys("network", data, NETWORK_FIELDS, required=(
            "id", "name", "subnet", "gateway", "bridge_name"))
        try:
            labels = data.get("labels") or {}
            if not isinstance(labels, dict):
                raise TypeError("labels must be an object")
            return cls(
                str(data["id"]), str(data["name"]), str(data["subnet"]),
                str(data["gateway"]), str(data["bridge_name"]),
                driver=str(data.get("driver") or BRIDGE_DRIVER),
                ip_range=str(data.get("ip_range") or ""),
                internal=bool(data.get("internal")),
                mtu=int(data.get("mtu") or 0),
                labels={str(k): str(v) for k, v in labels.items()},
                created_at=str(data.get("created_at") or ""),
                ipv6=bool(data.get("ipv6")),
                subnet6=str(data.get("subnet6") or ""),
                gateway6=str(data.get("gateway6") or ""),
            )
        except (TypeError, ValueError) as error:
            raise InvalidArgument("load network", str(data.get("name", "")),
                                  detail=f"malformed record: {error}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Network {self.short_id} {self.name!r} {self.subnet}>"


class Endpoint:
    """A container's attachment to one network: the interface inside (``eth0``...), the
    host end of its veth pair (on the bridge), the MAC and the address (without prefix;
    ``prefix_len`` is the network's), and on a dual-stack network the IPv6 address
    (``address6``, ``""`` without one)."""

    __slots__ = ENDPOINT_FIELDS

    def __init__(self, container_id: str, network_id: str, ifname: str, host_ifname: str,
                 mac: str, address: str, prefix_len: int, address6: str = "",
                 prefix_len6: int = 0) -> None:
        self.container_id = container_id
        self.network_id = network_id
        self.ifname = ifname
        self.host_ifname = host_ifname
        self.mac = mac
        self.address = address
        self.prefix_len = prefix_len
        self.address6 = address6
        self.prefix_len6 = prefix_len6

    @property
    def cidr(self) -> str:
        """``address/prefix_len``, as ``ip addr add`` takes it."""
        return f"{self.address}/{self.prefix_len}"

    @property
    def cidr6(self) -> str:
        """``address6/prefix_len6`` ("" without an IPv6 address)."""
        return f"{self.address6}/{self.prefix_len6}" if self.address6 else ""

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENDPOINT_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        """The inverse of :meth:`to_json`; InvalidArgument for a malformed record."""
        _check_keys("endpoint", data, ENDPOINT_FIELDS, required=ENDPOINT_FIELDS[:7])
        try:
            return cls(str(data["container_id"]), str(data["network_id"]),
                       str(data["ifname"]), str(data["host_ifname"]), str(data["mac"]),
                       str(data["address"]), int(data["prefix_len"]),
                       str(data.get("address6") or ""), int(data.get("prefix_len6") or 0))
        except (TypeError, ValueError) as error:
            raise InvalidArgument("load endpoint", "",
                                  detail=f"malformed record: {error}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<Endpoint {self.container_id[:SHORT_ID_LENGTH]} on "
                f"{self.network_id[:SHORT_ID_LENGTH]} {self.ifname} {self.cidr}>")


def _check_keys(what: str, data: object, known: tuple[str, ...],
                required: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise InvalidArgument(f"load {what}", "", detail="expected a JSON object")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidArgument(f"load {what}", ", ".join(unknown), detail="unknown field")
    missing = [key for key in required if key not in data]
    if missing:
        raise InvalidArgument(f"load {what}", ", ".join(missing), detail="missing field")
