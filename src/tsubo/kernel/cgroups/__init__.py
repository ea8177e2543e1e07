"""Control groups: the only package that touches cgroupfs (v1, v2 and hybrid hosts).

What it owns
    Creating, configuring, joining, freezing and removing one container's cgroup in every
    mounted hierarchy, and turning a validated ``linux.resources`` into cgroupfs writes.

Host layouts
    * **v2** — one ``cgroup2`` mount (usually ``/sys/fs/cgroup``) holds every controller.
    * **v1** — one ``cgroup`` mount per hierarchy (``cpu``, ``memory``, ``name=systemd`` ...).
    * **hybrid** — v1 hierarchies *plus* a ``cgroup2`` mount (systemd puts it at
      ``/sys/fs/cgroup/unified``). A controller lives in v2 only when no v1 hierarchy has it
      bound; the kernel lists those in the v2 root's ``cgroup.controllers``. Each controller
      is routed to the version that holds it (``plan.py``).

Plan, then apply (as the network code does)
    ``plan.py`` turns the resources, the container's directories and the host's layout into
    a tuple of :class:`~tsubo.kernel.cgroups.common.CgroupWrite` (pure but for what it asks
    the host's cgroupfs: which files exist, the current memory limit); ``common.py``'s
    applier makes each write through the one /proc and /sys writer. ``v1.py`` and ``v2.py``
    hold each version's files, order and value conversions; ``cgroup.py`` the
    :class:`Cgroup` object; ``resources.py`` the attributes read of ``linux.resources``
    (protocols: the values are ``oci/runtime_spec.py``'s, validated there). The decisions
    (joining without the global lock, hybrid routing, devices, OOM) are in docs/runtime.md.

Errors: every failed write raises :class:`~tsubo.errors.TsuboError` (or ``Unsupported``)
with operation ``"set cgroup"``, the file as object, and the errno.
"""

from tsubo.kernel.cgroups.cgroup import Cgroup
from tsubo.kernel.cgroups.common import CgroupLayout, CgroupWrite, resolve_cgroup_path

__all__ = ["Cgroup", "CgroupLayout", "CgroupWrite", "resolve_cgroup_path"]
