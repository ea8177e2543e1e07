"""Parser and helpers for the output of the in-container probe (tests/probe.sh, at /probe).

Usage: `facts = parse_probe(result.stdout)`, then `one(facts, "pid") == "1"`,
`caps(facts, "CapEff") == {"CAP_KILL", ...}`, `facts["probe.done"] == ["1"]` (it ran to its
end). Keys are documented at the top of tests/probe.sh.
"""

from __future__ import annotations

from pathlib import Path

PROBE_SCRIPT = Path(__file__).with_name("probe.sh")

# Capability numbers (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (40).
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def parse_probe(output: str) -> dict[str, list[str]]:
    """`key=value` lines -> {key: [value, ...]} in output order.

    The line is split at its first `=`; lines without one are ignored. Repeated keys (mount,
    fd, dev, env.*, ...) keep every value in order.
    """
    facts: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key:
            continue
        facts.setdefault(key, []).append(value)
    return facts


def one(facts: dict[str, list[str]], key: str) -> str:
    """The single value of `key`; AssertionError (showing what there is) if not exactly one."""
    values = facts.get(key, [])
    assert len(values) == 1, f"probe fact {key!r}: expected one value, got {values!r}"
    return values[0]


def caps_from_hex(mask: str) -> set[str]:
    """A /proc/PID/status capability mask ("00000000a80425fb") -> capability names."""
    bits = int(mask, 16)
    names = {name for i, name in enumerate(CAP_NAMES) if bits >> i & 1}
    names |= {f"CAP_{i}" for i in range(len(CAP_NAMES), 64) if bits >> i & 1}
    return names


def caps(facts: dict[str, list[str]], which: str) -> set[str]:
    """Capability names of one set: which is CapInh, CapPrm, CapEff, CapBnd or CapAmb."""
    return caps_from_hex(one(facts, which))


def mounts(facts: dict[str, list[str]]) -> list[tuple[str, str]]:
    """[(mount point, fstype), ...] in mountinfo order."""
    out: list[tuple[str, str]] = []
    for value in facts.get("mount", []):
        mountpoint, _, fstype = value.rpartition(" ")
        out.append((mountpoint, fstype))
    return out


def fds(facts: dict[str, list[str]]) -> dict[int, str]:
    """{fd: target} of the probe shell's open fds, without ash's own fd on the script."""
    out: dict[int, str] = {}
    for value in facts.get("fd", []):
        num, _, target = value.partition(" ")
        out[int(num)] = target
    return out


def env(facts: dict[str, list[str]]) -> dict[str, str]:
    """The probe's initial environment {NAME: VALUE}."""
    return {k[len("env.") :]: v[-1] for k, v in facts.items() if k.startswith("env.")}
