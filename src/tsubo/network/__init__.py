"""Container networking: networks, addresses, bridges, veth endpoints and the firewall.

Who owns what (each module's docstring says more):

- :mod:`~tsubo.network.models` -- the :class:`Network` and :class:`Endpoint` records (plain
  ``__slots__`` classes, JSON in and out).
- :mod:`~tsubo.network.names` -- every name tsubo gives a link (bridges ``tsb`` + 12 hex,
  host veth ends ``tsv`` + 12 hex: owner-marked and at most 15 bytes, the kernel's limit),
  MAC addresses, and the validation of ``--bridge-name`` / ``--mac-address`` / network names.
- :mod:`~tsubo.network.ipam` -- address management: parsing ``--subnet`` / ``--gateway`` /
  ``--ip-range`` / ``--ip``, choosing a free subnet from the pool (skipping host routes,
  nameservers and other networks), and allocating / releasing addresses in one SQLite
  ``BEGIN IMMEDIATE`` transaction each.
- :mod:`~tsubo.network.store` -- the tables of networks, leases, endpoints and the ledger of
  everything tsubo creates in the kernel ("recorded before it is created", so gc removes
  exactly what is ours).
- ``bridge`` and ``firewall`` -- the bridge driver and the ``inet tsubo`` nftables table.

Imports stay cheap: these modules sit on the ``tsubo run --network`` path, so nothing slow
(``ipaddress``, ``subprocess``, ``json``, ``typing``) is imported at module level.
"""
