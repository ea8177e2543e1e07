"""Linux capabilities: names, masks, and the order in which a process gives them up.

Numbers are from ``linux/capability.h``. :func:`apply` drops the bounding set, changes
identity with ``PR_SET_KEEPCAPS`` so permitted caps survive ``setresuid``, sets effective /
permitted / inheritable with capset(2), then raises the ambient set — the order
capabilities(7) requires (and runc/crun use).
"""

from __future__ import annotations

from tsubo.errors import InvalidArgument

CAPABILITY_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

#: Docker's default set (moby oci/caps/defaults.go), which the engine puts in its configs.
DOCKER_DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as cap_file:
            return int(cap_file.read())
    except OSError:
        return max(CAPABILITY_NUMBERS.values())


def bounding_set() -> int:
    """This process's bounding set (``CapBnd`` of ``/proc/self/status``): what a process
    it starts may ever hold."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (last_cap() + 1)) - 1  # pragma: no cover - every Linux has the line


def mask_of(names: list[str], where: str, highest: int) -> int:
    """Bit mask of capability *names*; unknown names are an error, ones newer than the
    kernel are left out (runc does the same)."""
    mask = 0
    for name in names:
        number = CAPABILITY_NUMBERS.get(name.upper())
        if number is None:
            raise InvalidArgument("load config", where, detail=f"unknown capability {name!r}")
        if number <= highest:
            mask |= 1 << number
    return mask


def names_of(mask: int) -> list[str]:
    """Capability names in *mask*, in number order."""
    return [name for name, number in CAPABILITY_NUMBERS.items() if mask >> number & 1]


class CapabilitySets:
    """The five sets as 64-bit masks."""

    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted")

    def __init__(self, bounding: int, effective: int, permitted: int, inheritable: int,
                 ambient: int) -> None:
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient


def drop_bounding(keep: int, highest: int) -> None:
    """Drop every capability not in *keep* from the bounding set (needs CAP_SETPCAP)."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import PR_CAPBSET_DROP

    for number in range(highest + 1):
        if not keep >> number & 1:
            syscalls.prctl(PR_CAPBSET_DROP, number)


def set_process_capabilities(sets: CapabilitySets) -> None:
    """capset(2) then the ambient set; call after the identity change."""
    from tsubo.kernel import syscalls
    from tsubo.kernel.flags import PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE

    syscalls.capset(sets.effective, sets.permitted, sets.inheritable)
    # The kernel raises an ambient capability only if it is also permitted and inheritable;
    # runc warns and goes on for the others, and so do we (runtime-spec configs, including
    # `runc spec`'s own, list ambient caps without inheritable ones).
    ambient = sets.ambient & sets.permitted & sets.inheritable
    if ambient:
        for number in range(64):
            if ambient >> number & 1:
                syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number)
