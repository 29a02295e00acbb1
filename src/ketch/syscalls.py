"""Linux system calls Python does not offer (3.11 has no os.unshare/os.setns), made by the
small C extension ``ketch._linux`` (see its header for why it is not ctypes). Errors are OSError
with the errno and a message naming what failed.

Used by the runtime, the engine and the builder; depends on nothing else in ketch.
"""

from __future__ import annotations

import os

from ketch import _linux

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 0x2

# clone / unshare flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Resource limits (asm-generic/resource.h, which x86-64 and arm64 use), set here rather than
# through the resource module: one C extension fewer to load at every container start.
RLIMITS = {name: number for number, name in enumerate((
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"))}
RLIM_INFINITY = 2**64 - 1


def _check(result: int, what: str) -> int:
    if result < 0:
        raise OSError(-result, f"{what}: {os.strerror(-result)}")
    return result


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_linux.mount(source, target, fstype, flags, data), f"mount {fstype or source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_linux.umount2(target, flags), f"unmount {target}")


def unshare(flags: int) -> None:
    _check(_linux.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_linux.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_linux.pivot_root(new_root, put_old), "pivot_root")


def clone(flags: int, cgroup_fd: int | None = None) -> int:
    """fork(), with the child born in the new namespaces of ``flags`` (CLONE_NEW*) and, given
    ``cgroup_fd``, in that cgroup v2 directory (CLONE_INTO_CGROUP: writing a pid into
    ``cgroup.procs`` instead takes the kernel's global threadgroup lock, whose first taking waits
    for an RCU grace period, 5-20 ms here). clone3 inside os.fork's sequence (CPython's fork hooks
    around the system call); only for a single-threaded caller: like any raw clone, it skips
    glibc's fork handlers, and the child's cached thread id is its parent's (nothing we run uses
    it)."""
    what = "clone3 into a cgroup" if cgroup_fd is not None else "clone3"
    return _check(_linux.clone3(flags, -1 if cgroup_fd is None else cgroup_fd), what)


def seccomp_set_filter(flags: int, program: bytes) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER): ``program`` is the filter's struct sock_filter array."""
    _check(_linux.seccomp_set_filter(flags, program), "seccomp")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_linux.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_child_subreaper(on: bool) -> bool:
    """Make orphaned descendants ours (or stop); returns whether we were a subreaper before, so a
    library call that needs it for a while can put it back."""
    before = bool(_check(_linux.get_child_subreaper(), "prctl(PR_GET_CHILD_SUBREAPER)"))
    if before != on:
        prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)
    return before


def sethostname(name: str) -> None:
    _check(_linux.sethostname(name), "sethostname")


def setdomainname(name: str) -> None:
    _check(_linux.setdomainname(name), "setdomainname")


def personality(persona: int) -> None:
    _check(_linux.personality(persona), "personality")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    _check(_linux.setrlimit(resource, soft, hard), "setrlimit")


def getrlimit(resource: int) -> tuple[int, int]:
    limits = _linux.getrlimit(resource)
    if isinstance(limits, int):
        _check(limits, "getrlimit")
    return limits


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    _check(_linux.capset(effective, permitted, inheritable), "capset")
