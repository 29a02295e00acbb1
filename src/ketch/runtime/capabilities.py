"""Linux capability names and numbers (linux/capability.h)."""

from __future__ import annotations

from ketch.errors import InvalidInputError
from ketch.runtime.paths import read_bytes

NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
NUMBERS = {name: i for i, name in enumerate(NAMES)}


_LAST_CAP: list[int] = []


def last_cap() -> int:
    """The highest capability number this kernel knows (read once per process)."""
    if not _LAST_CAP:
        try:
            _LAST_CAP.append(int(read_bytes("/proc/sys/kernel/cap_last_cap")))
        except (OSError, ValueError):
            _LAST_CAP.append(len(NAMES) - 1)
    return _LAST_CAP[0]


def mask(names: list[str] | None, what: str) -> int:
    """A bit mask of capability names; an unknown name is an error (the spec says so)."""
    value = 0
    for name in names or []:
        number = NUMBERS.get(name)
        if number is None:
            raise InvalidInputError(f"unknown capability {name!r} in process.capabilities.{what}")
        value |= 1 << number
    return value


def held() -> int:
    """The runtime's own permitted set."""
    with open("/proc/self/status") as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("CapPrm:"):
            return int(line.split()[1], 16)
    return 0
