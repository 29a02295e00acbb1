"""The container's process, as its init (or an exec child) makes it just before ``exec``:
rlimits, OOM score, personality, user and groups, capabilities, no_new_privs, the seccomp
filter, the working directory, standard streams and inherited descriptors, and the program found
on the container's PATH (with the exit statuses a shell and podman give: 127 not found, 126 not
executable). Imported by :mod:`ketch.runtime.init` before the fork."""

from __future__ import annotations

import errno
import os
import stat

from ketch import syscalls as sc
from ketch.runtime import capabilities
from ketch.runtime.initbase import SetupError
from ketch.runtime.initbase import write_text as _write
from ketch.runtime.private import signal_module as _signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _install_stdio(stdio: tuple[int, int, int] | None) -> None:
    """Make ``stdio`` the process's fds 0-2 (a library caller's own streams for the container)."""
    if stdio is None:
        return
    copies = [os.dup(fd) for fd in stdio]  # first: a target may be another's source
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
        os.close(fd)


def prepare_process(process: dict[str, Any], linux: dict[str, Any],
                    seccomp_program: bytes | None = None) -> tuple[str, list[str]]:
    """Everything of ``process`` but the exec: rlimits, oom score, personality, the program's
    path, capabilities, user and groups, no_new_privs, working directory, clean signals.
    Shared by the container's init and ``exec``; returns the program's path and environment."""
    for limit in process.get("rlimits") or []:
        kind = sc.RLIMITS.get(limit.get("type", ""))
        if kind is None:
            raise SetupError(f"unknown rlimit {limit.get('type')!r}")
        try:
            sc.setrlimit(kind, limit["soft"], limit["hard"])
        except (TypeError, OverflowError, OSError) as exc:
            hard = sc.getrlimit(kind)[1]
            raise SetupError(f"setting {limit['type']} to {limit['soft']}:{limit['hard']} (the hard limit here is "
                             f"{'unlimited' if hard == sc.RLIM_INFINITY else hard}; raising it needs "
                             f"CAP_SYS_RESOURCE): {exc.strerror if isinstance(exc, OSError) else exc}") from exc
    if "oomScoreAdj" in process:
        try:
            _write("/proc/self/oom_score_adj", str(process["oomScoreAdj"]))
        except OSError as exc:
            raise SetupError(f"oomScoreAdj {process['oomScoreAdj']}: {exc.strerror}") from exc
    if linux.get("personality"):
        domain = linux["personality"].get("domain")
        personas = {"LINUX": 0x0000, "LINUX32": 0x0008}
        if domain not in personas:
            raise SetupError(f"unknown personality domain {domain!r}")
        sc.personality(personas[domain])
    # The user's program, found now so that a missing one fails create, not start.
    env = list(process.get("env") or [])
    path = _lookup(process["args"][0], env, process.get("cwd", "/"))
    user = process.get("user") or {}
    if seccomp_program is not None and not process.get("noNewPrivileges"):
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have
        # it, as runc does; the profile must then allow what the rest of the set-up calls.
        _load_seccomp(seccomp_program, linux)
    caps = process.get("capabilities")
    if caps is not None:
        bounding = capabilities.mask(caps.get("bounding"), "bounding")
        effective = capabilities.mask(caps.get("effective"), "effective")
        permitted = capabilities.mask(caps.get("permitted"), "permitted")
        inheritable = capabilities.mask(caps.get("inheritable"), "inheritable")
        ambient = capabilities.mask(caps.get("ambient"), "ambient")
        for cap in range(capabilities.last_cap() + 1):
            if not bounding & (1 << cap):
                try:
                    sc.prctl(sc.PR_CAPBSET_DROP, cap)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    groups = list(user.get("additionalGids") or [])
    try:
        os.setgroups(groups)
    except PermissionError:
        # a user namespace mapping its maker's ids alone denies setgroups (a rootless runtime):
        # as runc, go on without additional groups unless some besides the primary were asked for
        if set(groups) - {user.get("gid", 0)} or _setgroups_allowed():
            raise
    os.setresgid(user.get("gid", 0), user.get("gid", 0), user.get("gid", 0))
    os.setresuid(user.get("uid", 0), user.get("uid", 0), user.get("uid", 0))
    if "umask" in user:
        os.umask(user["umask"])
    if caps is not None:
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        try:
            sc.capset(effective, permitted, inheritable)
        except OSError as exc:
            missing = [capabilities.NAMES[i] for i in range(len(capabilities.NAMES))
                       if (permitted | effective) & (1 << i) and not capabilities.held() & (1 << i)]
            raise SetupError(f"setting capabilities: {exc.strerror}"
                             + (f" (not available to the runtime here: {', '.join(missing)})" if missing else "")) \
                from exc
        # The kernel allows an ambient capability only when it is permitted and inheritable; like
        # runc, ketch raises those and leaves the rest (runc's own default spec lists ambient
        # capabilities without inheritable ones).
        for cap in range(capabilities.last_cap() + 1):
            if ambient & permitted & inheritable & (1 << cap):
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, cap)
    if process.get("noNewPrivileges"):
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    try:
        os.chdir(process.get("cwd", "/"))
    except OSError as exc:
        raise SetupError(f"changing to the working directory {process.get('cwd')}: {exc.strerror}") from exc
    # Before exec: default signal dispositions, nothing blocked, only the intended fds.
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    return path, env


def _load_seccomp(program: bytes | None, linux: dict[str, Any]) -> None:
    """The filter goes on last, as close to exec as possible (as runc does with noNewPrivileges)."""
    if program is None:
        return
    from ketch.runtime import seccomp  # preloaded

    try:
        seccomp.load(program, seccomp.flags_of(linux.get("seccomp") or {}))
    except OSError as exc:
        os.write(2, f"ketch-runtime: loading the seccomp filter: {exc.strerror}\n".encode())
        os._exit(1)


def _close_fds(keep: set[int], spare: set[int] | frozenset[int] = frozenset()) -> None:
    """Close every fd but 0-2, ``keep`` (made inheritable) and ``spare`` (left as they are)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep and fd not in spare:
            try:
                os.close(fd)
            except OSError:
                pass
    for fd in keep:
        if fd > 2:
            try:
                os.set_inheritable(fd, True)
            except OSError:
                pass


def _lookup(program: str, env: list[str], cwd: str = "/") -> str:
    """The program's path: a name through $PATH; a relative path (``./pause``) from the working
    directory, which is where the program will run (runc looks it up after its chdir too)."""
    # runc's words and statuses (Go's exec.LookPath): a path that is not there, 127 with stat's
    # error; one that is not an executable file, 126; a name no $PATH entry has as an
    # executable file, 127.
    if "/" in program:
        candidate = program if program.startswith("/") else os.path.join(cwd, program)
        try:
            st = os.stat(candidate)
        except OSError as exc:
            raise SetupError(f'exec: "{program}": stat {program}: {(exc.strerror or str(exc)).lower()}', 127) from exc
        if not stat.S_ISREG(st.st_mode) or not os.access(candidate, os.X_OK):
            raise SetupError(f'exec: "{program}": permission denied', 126)
        return candidate
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", program)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{program}": executable file not found in $PATH', 127)


# -- the root file system ---------------------------------------------------------


# Options of podman's and the runtimes' own that are not mount(2) data.


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True
