"""What runs inside the new container, from fork to exec.

Only this process and the short-lived intermediate child run this code; both
are single-threaded (forked from the single-threaded runtime). Any failure is
reported to the runtime over the sync socket as ``error MESSAGE`` and the
process exits; nothing here returns to the caller.

Everything this code needs is imported before the fork: after ``pivot_root``
the host's Python library is out of reach, so a lazy import would fail. What
only some configurations need (seccomp, a terminal's fcntl and termios) is
imported by ``preload`` for those, which the runtime calls before it forks;
the local imports here then find it in ``sys.modules``.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from ketch import syscalls as sc
from ketch.runtime import capabilities, hooks, leanjson
from ketch.runtime.paths import resolve_in_root, write_bytes
from ketch.runtime.private import signal_module as _signal  # (see private.py: start-up cost)
from ketch.runtime.private import socket_module as _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def preload(process: dict[str, Any], linux: dict[str, Any]) -> None:
    """Import, before the fork, what this configuration needs beyond the modules above (see the
    module's header): each costs a fraction of a millisecond at every start that does not."""
    if linux.get("seccomp"):
        from ketch.runtime import seccomp  # noqa: F401
    if process.get("terminal"):
        import fcntl  # noqa: F401
        import termios  # noqa: F401


NS_FLAGS = {"pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "mount": sc.CLONE_NEWNS, "ipc": sc.CLONE_NEWIPC,
            "uts": sc.CLONE_NEWUTS, "user": sc.CLONE_NEWUSER, "cgroup": sc.CLONE_NEWCGROUP,
            "time": sc.CLONE_NEWTIME}
NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
            "cgroup": "cgroup", "time": "time"}

MOUNT_FLAGS = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False), "nosuid": (sc.MS_NOSUID, True),
    "suid": (sc.MS_NOSUID, False), "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False), "sync": (sc.MS_SYNCHRONOUS, True),
    "async": (sc.MS_SYNCHRONOUS, False), "dirsync": (sc.MS_DIRSYNC, True), "remount": (sc.MS_REMOUNT, True),
    "mand": (sc.MS_MANDLOCK, True), "nomand": (sc.MS_MANDLOCK, False), "atime": (sc.MS_NOATIME, False),
    "noatime": (sc.MS_NOATIME, True), "diratime": (sc.MS_NODIRATIME, False),
    "nodiratime": (sc.MS_NODIRATIME, True), "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
    "strictatime": (sc.MS_STRICTATIME, True), "nostrictatime": (sc.MS_STRICTATIME, False),
    "lazytime": (sc.MS_LAZYTIME, True), "nolazytime": (sc.MS_LAZYTIME, False),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, True), "symfollow": (sc.MS_NOSYMFOLLOW, False),
}
PROPAGATION = {"private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC, "shared": sc.MS_SHARED,
               "rshared": sc.MS_SHARED | sc.MS_REC, "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
               "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC}
DEFAULT_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
                   ("tty", 5, 0)]
# asm-generic/ioctls.h (termios does not export them): unlock a pty, get its number.
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


_CGROUP_PATH = ""  # the container's cgroup, relative to each hierarchy (set in the init)


class SetupError(Exception):
    """A set-up step failed. ``exit_status`` is set when the program itself cannot be run:
    127 when it is not found, 126 when it cannot be executed (as a shell and podman report it)."""

    def __init__(self, message: str, exit_status: int | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _write(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def send(sock: _socket.socket, message: str) -> None:
    sock.send(message.encode()[:65000])


def fail(sock: _socket.socket, message: str) -> None:
    try:
        send(sock, "error " + message)
    finally:
        os._exit(1)


# -- the intermediate child --------------------------------------------------------


def _internal_error() -> str:
    exc = sys.exc_info()[1]
    return f"internal error: {type(exc).__name__}: {exc}"


def _report_and_exit(sync: _socket.socket, body) -> None:
    """Run ``body``; any failure goes to the runtime as one ``error`` line and the process exits."""
    try:
        body()
    except SetupError as exc:
        fail(sync, f"[{exc.exit_status}] {exc}" if exc.exit_status else str(exc))
    except OSError as exc:
        fail(sync, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except BaseException:  # noqa: BLE001 - reported to the runtime, whatever it was
        fail(sync, _internal_error())


def _join_cgroups(directories: list[str], *, user_namespace_next: bool) -> int | None:
    """Join the container's cgroups; the children we fork next are born inside.

    Writing a pid into ``cgroup.procs`` takes the kernel's global threadgroup lock, and its first
    taking waits for an RCU grace period (5-20 ms here, most of a container's start). So, as we
    are single-threaded: in a v1 hierarchy we move our one thread through ``tasks``, which skips
    that lock; the v2 directory is returned opened, for the fork to be born in (clone3). That fork
    comes after a user namespace is entered, where the host's cgroup is not ours to write: then the
    v2 cgroup is joined now, the slow way."""
    single = single_threaded()
    v2_fd = None
    for directory in directories:
        try:
            if os.path.exists(os.path.join(directory, "tasks")):
                _write(os.path.join(directory, "tasks" if single else "cgroup.procs"), "0")
            elif single and not user_namespace_next:
                v2_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                _write(os.path.join(directory, "cgroup.procs"), "0")
        except OSError as exc:
            raise SetupError(f"joining the cgroup {directory}: {exc.strerror}") from exc
    return v2_fd


def _fork(v2_cgroup_fd: int | None) -> int:
    if v2_cgroup_fd is None:
        return os.fork()
    try:
        pid = sc.clone(0, v2_cgroup_fd)
    except OSError as exc:
        raise SetupError(f"starting a process in the cgroup: {exc.strerror}") from exc
    if pid:
        os.close(v2_cgroup_fd)
    return pid


def direct_clone_flags(linux: dict[str, Any]) -> int | None:
    """The clone flags that create the container's init directly in its new namespaces, or None
    when the configuration needs the intermediate process: a new user namespace (the cgroups are
    joined before it is entered), a pid or user namespace joined by path (setns into those applies
    to children, or comes first) or a time namespace (its offsets are written before its first
    process exists). The caller must be single-threaded too (``single_threaded``): a raw clone is
    for a single thread.

    The direct way saves a fork and a process's work: about a millisecond of every start."""
    if linux.get("timeOffsets"):
        return None  # the intermediate writes them (or refuses them without a time namespace)
    flags = 0
    for ns in linux.get("namespaces") or []:
        kind = ns.get("type")
        if kind not in NS_FLAGS:
            return None  # the intermediate reports it
        if kind in ("user", "time") or (ns.get("path") and kind == "pid"):
            return None
        if not ns.get("path") and kind != "cgroup":  # the cgroup namespace: made once the cgroups are joined
            flags |= NS_FLAGS[kind]
    return flags


def single_threaded() -> bool:
    return len(os.listdir("/proc/self/task")) == 1


def clone_init(config: dict[str, Any], sync: _socket.socket, runtime_end: _socket.socket, init_args: dict[str, Any],
               flags: int) -> int:
    """Create the container's init with one clone3, in its new namespaces (``flags``, from
    ``direct_clone_flags``) and its cgroup v2 directory; its pid. In the child this does not
    return: it closes the runtime's end of the sync socket (so that a runtime killed meanwhile
    is seen as end-of-file), joins its v1 cgroups and the namespaces given by path, then goes on
    as ``container_init``."""
    directories = init_args.pop("cgroup_dirs")
    v2 = [d for d in directories if not os.path.exists(os.path.join(d, "tasks"))]
    v2_fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if v2 else None
    try:
        pid = sc.clone(flags, v2_fd)
    except OSError as exc:
        if v2_fd is not None:
            os.close(v2_fd)
        raise SetupError(f"creating the container's init: {exc.strerror}") from exc
    if pid == 0:
        runtime_end.close()
        _report_and_exit(sync, lambda: _cloned_init(config, sync, init_args,
                                                    [d for d in directories if d not in v2]))
    if v2_fd is not None:
        os.close(v2_fd)
    return pid


def _cloned_init(config, sync, init_args, v1_directories) -> None:
    init_args["fifo_fd"] = os.open(init_args.pop("fifo"), os.O_PATH | os.O_CLOEXEC)
    _join_cgroups(v1_directories, user_namespace_next=False)
    namespaces = (config.get("linux") or {}).get("namespaces") or []
    _join_namespaces([n for n in namespaces if n.get("path")])
    # The host's /proc is still mounted: /proc/self names us by our pid there.
    host_pid = int(os.readlink("/proc/self"))
    make_cgroupns = any(n.get("type") == "cgroup" and not n.get("path") for n in namespaces)
    container_init(config, sync, host_pid=host_pid, make_cgroupns=make_cgroupns, **init_args)


def _join_namespaces(joined: list[dict[str, Any]]) -> None:
    """setns into the namespaces given by path, the user namespace first (it owns the others)."""
    for ns in sorted(joined, key=lambda n: n["type"] != "user"):
        fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, NS_FLAGS[ns["type"]])
        except OSError as exc:
            raise SetupError(f"joining the {ns['type']} namespace {ns['path']}: {exc.strerror}") from exc
        finally:
            os.close(fd)


def intermediate(config: dict[str, Any], sync: _socket.socket, init_args: dict[str, Any]) -> None:
    """Join and create namespaces, then fork the container's init and exit."""
    _report_and_exit(sync, lambda: _intermediate(config, sync, init_args))


def _intermediate(config, sync, init_args) -> None:
    # The FIFO is opened (O_PATH) while the state directory is still reachable: in a user
    # namespace the init's root is another host uid, which may not search it.
    init_args["fifo_fd"] = os.open(init_args.pop("fifo"), os.O_PATH | os.O_CLOEXEC)
    # Into the container's cgroups before anything else: all it runs is accounted and limited.
    linux = config.get("linux") or {}
    namespaces = linux.get("namespaces") or []
    v2_cgroup_fd = _join_cgroups(init_args.pop("cgroup_dirs"),
                                 user_namespace_next=any(n.get("type") == "user" for n in namespaces))
    _join_namespaces([n for n in namespaces if n.get("path")])
    new = [n["type"] for n in namespaces if not n.get("path")]
    if "user" in new:
        sc.unshare(sc.CLONE_NEWUSER)
        send(sync, "idmap")
        if sync.recv(64) != b"idmap-ok":
            raise SetupError("the runtime did not write the id mappings")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if v2_cgroup_fd is not None and "cgroup" in new:
        # A cgroup namespace is rooted where its maker is: the init, born in the v2 cgroup, makes it.
        new.remove("cgroup")
        init_args["make_cgroupns"] = True
    flags = 0
    for kind in new:
        if kind != "user":
            flags |= NS_FLAGS[kind]
    if flags:
        try:
            sc.unshare(flags)
        except OSError as exc:
            raise SetupError(f"creating namespaces {', '.join(k for k in new if k != 'user')}: "
                             f"{exc.strerror}") from exc
    offsets = linux.get("timeOffsets") or {}
    if offsets:
        if "time" not in new:
            raise SetupError("linux.timeOffsets need a new time namespace")
        # Only before the namespace's first process exists: the init, forked next.
        lines = []
        for clock in ("monotonic", "boottime"):
            if clock in offsets:
                value = offsets[clock]
                lines.append(f"{clock} {int(value.get('secs', 0))} {int(value.get('nanosecs', 0))}\n")
        unknown = set(offsets) - {"monotonic", "boottime"}
        if unknown:
            raise SetupError(f"unknown clock in linux.timeOffsets: {', '.join(sorted(unknown))}")
        try:
            _write("/proc/self/timens_offsets", "".join(lines))
        except OSError as exc:
            raise SetupError(f"writing linux.timeOffsets: {exc.strerror}") from exc
    # The init waits until its pid was reported (messages of two senders are not ordered).
    gate_read, gate_write = os.pipe()
    pid = _fork(v2_cgroup_fd)  # a new pid namespace applies to children: the init is its pid 1
    if pid == 0:
        if v2_cgroup_fd is not None:
            os.close(v2_cgroup_fd)
        os.close(gate_write)
        host_pid = int(os.read(gate_read, 32) or b"0")  # our pid as the runtime sees it
        os.close(gate_read)
        container_init(config, sync, host_pid=host_pid, **init_args)
    os.close(gate_read)
    send(sync, f"pid {pid}")
    os.write(gate_write, str(pid).encode())
    os._exit(0)


# -- the container's init ----------------------------------------------------------


def container_init(config: dict[str, Any], sync: _socket.socket, *, bundle: str, rootfs: str, fifo_fd: int,
                   console_fd: int | None, no_pivot: bool, preserve_fds: int, keep_fds: list[int],
                   container_id: str, host_pid: int, cgroup_path: str, seccomp_program: bytes | None,
                   make_cgroupns: bool = False, stdio: tuple[int, int, int] | None = None,
                   devices_after_setup: bool = False) -> None:
    global _CGROUP_PATH
    _CGROUP_PATH = cgroup_path
    _install_stdio(stdio)
    if make_cgroupns:
        try:
            sc.unshare(sc.CLONE_NEWCGROUP)
        except OSError as exc:
            fail(sync, f"creating the cgroup namespace: {exc.strerror}")
    state = {"ociVersion": "1.0.2", "id": container_id, "status": "creating", "pid": host_pid, "bundle": bundle,
             "annotations": dict(config.get("annotations") or {})}
    _report_and_exit(sync, lambda: _setup_and_exec(config, sync, bundle, rootfs, fifo_fd, console_fd, no_pivot,
                                                   preserve_fds, keep_fds, state, seccomp_program,
                                                   devices_after_setup))


def _setup_and_exec(config, sync, bundle, rootfs, fifo_fd, console_fd, no_pivot, preserve_fds, keep_fds,
                    state, seccomp_program, devices_after_setup) -> None:
    linux = config.get("linux") or {}
    process = config.get("process") or {}
    namespaces = {n["type"] for n in linux.get("namespaces") or []}
    new_namespaces = {n["type"] for n in linux.get("namespaces") or [] if not n.get("path")}
    config_hooks = config.get("hooks") or {}
    os.setsid()

    def before_root_change() -> None:
        # The runtime runs these hooks in its own namespaces, and sets the device rules once the
        # device nodes are made.
        if config_hooks.get("prestart") or config_hooks.get("createRuntime") or devices_after_setup:
            send(sync, "hooks")
            answer = sync.recv(65536).decode(errors="replace")
            if answer != "hooks-ok":
                raise SetupError(answer[6:] if answer.startswith("error ") else "the runtime's hooks failed")
        if config_hooks.get("createContainer"):
            try:
                hooks.run("createContainer", config_hooks["createContainer"], leanjson.dumps(state))
            except hooks.HookError as exc:
                raise SetupError(str(exc)) from exc

    if "mount" in namespaces:
        _setup_rootfs(config, bundle, rootfs, no_pivot, new_namespaces, before_root_change)
    else:
        before_root_change()
        os.chroot(rootfs)
        os.chdir("/")
    if "uts" in namespaces:
        if config.get("hostname"):
            sc.sethostname(config["hostname"])
        if config.get("domainname"):
            sc.setdomainname(config["domainname"])
    elif config.get("hostname") or config.get("domainname"):
        raise SetupError("hostname and domainname need a uts namespace")
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            _write(path, str(value))
        except OSError as exc:
            raise SetupError(f"sysctl {key}={value}: {exc.strerror}") from exc
    if process.get("terminal"):
        # Before the root turns read-only: the pty's slave is bound onto /dev/console.
        _setup_console(console_fd, process.get("consoleSize"), bind_console="mount" in new_namespaces)
    if "mount" in namespaces:
        _finalize_rootfs(config)
    path, env = prepare_process(process, linux, seccomp_program)
    keep = set(range(3, 3 + preserve_fds)) | set(keep_fds)
    send(sync, "ready")
    # Go on only once the runtime recorded us: if it was killed first, nobody could ever
    # start or delete this container, so it must not outlive the failed create.
    if sync.recv(16) != b"ok":
        os._exit(1)
    sync.close()
    _close_fds(keep | {fifo_fd})
    # Wait for start: opening the FIFO for writing blocks until ``start`` opens it for reading.
    try:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        os._exit(1)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    if config_hooks.get("startContainer"):
        try:
            hooks.run("startContainer", config_hooks["startContainer"], leanjson.dumps({**state, "status": "created"}))
        except hooks.HookError as exc:
            os.write(2, f"ketch-runtime: {exc}\n".encode())
            os._exit(1)
    if process.get("noNewPrivileges"):
        _load_seccomp(seccomp_program, linux)  # as close to exec as it can be
    try:
        os.execve(path, process["args"], dict(e.split("=", 1) for e in env if "=" in e))
    except OSError as exc:
        os.write(2, f"ketch-runtime: exec {process['args'][0]}: {exc.strerror}\n".encode())
        os._exit(126 if exc.errno in (errno.EACCES, errno.ENOEXEC) else 127)


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
    os.setgroups(list(user.get("additionalGids") or []))
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


def exec_child(sync: _socket.socket, *, target_pid: int, process: dict[str, Any], linux: dict[str, Any],
               cgroup_dirs: list[str], console_fd: int | None, preserve_fds: int, keep_fds: list[int],
               seccomp_program: bytes | None, stdio: tuple[int, int, int] | None = None) -> None:
    """``exec``'s intermediate: join the container's cgroup and namespaces, fork the process.

    The process execs with the sync socket still open (close-on-exec): the runtime reads
    end-of-file as success, or an ``error`` line from a process that could not be started."""
    _install_stdio(stdio)
    _report_and_exit(sync, lambda: _exec_child(sync, target_pid, process, linux, cgroup_dirs, console_fd,
                                               preserve_fds, keep_fds, seccomp_program))


def _exec_child(sync, target_pid, process, linux, cgroup_dirs, console_fd, preserve_fds, keep_fds,
                seccomp_program) -> None:
    try:
        other_user_ns = os.stat(f"/proc/{target_pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
    except OSError:
        other_user_ns = True
    v2_cgroup_fd = _join_cgroups(cgroup_dirs, user_namespace_next=other_user_ns)
    # All opened first: once in the container's mount namespace, /proc is the container's.
    joined = []
    for name, kind in (("user", "user"), ("cgroup", "cgroup"), ("ipc", "ipc"), ("uts", "uts"),
                       ("net", "network"), ("pid", "pid"), ("time", "time"), ("mnt", "mount")):
        path = f"/proc/{target_pid}/ns/{name}"
        try:
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            joined.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue  # a namespace kind this kernel lacks
    for kind, fd in joined:
        try:
            sc.setns(fd, NS_FLAGS[kind])
        except OSError as exc:
            raise SetupError(f"joining the container's {kind} namespace: {exc.strerror}") from exc
        finally:
            os.close(fd)
    gate_read, gate_write = os.pipe()
    pid = _fork(v2_cgroup_fd)  # a joined pid namespace applies to children
    if pid == 0:
        try:
            os.close(gate_write)
            os.read(gate_read, 1)
            os.close(gate_read)
            os.setsid()
            if process.get("terminal"):
                _setup_console(console_fd, process.get("consoleSize"), bind_console=False)
            path, env = prepare_process(process, linux, seccomp_program)
            _close_fds(set(range(3, 3 + preserve_fds)) | set(keep_fds), spare={sync.fileno()})
            if seccomp_program is not None and process.get("noNewPrivileges"):
                from ketch.runtime import seccomp  # preloaded

                seccomp.load(seccomp_program, seccomp.flags_of(linux.get("seccomp") or {}))
            os.execve(path, process["args"], dict(e.split("=", 1) for e in env if "=" in e))
        except SetupError as exc:
            fail(sync, f"[{exc.exit_status}] {exc}" if exc.exit_status else str(exc))
        except OSError as exc:
            cannot = "[126] " if exc.errno in (errno.EACCES, errno.ENOEXEC) else "[127] " \
                if exc.errno == errno.ENOENT else ""
            fail(sync, f"{cannot}exec {process['args'][0]}: {exc.strerror or exc}")
        except BaseException:  # noqa: BLE001 - reported to the runtime, whatever it was
            fail(sync, _internal_error())
    os.close(gate_read)
    send(sync, f"pid {pid}")
    os.close(gate_write)
    os._exit(0)


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
EXTENSION_OPTIONS = {"tmpcopyup", "notmpcopyup", "copy", "nocopy", "z", "Z", "U", "idmap", "private-shared"}


def _parse_options(options: list[str]) -> tuple[int, int, list[str]]:
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in EXTENSION_OPTIONS:
            continue
        if option in MOUNT_FLAGS:
            bit, on = MOUNT_FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, data


def _secure_join(root: str, path: str) -> str:
    """``path`` inside ``root``, following symlinks as if ``root`` were ``/``."""
    try:
        return resolve_in_root(root, path)
    except OSError as exc:
        raise SetupError(f"too many symlinks under {path}") from exc


def _make_target(target: str, source_is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    if source_is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _mount_one(rootfs: str, mount: dict[str, Any], bundle_dir: str, real_root: str) -> None:
    """One ``mounts`` entry; ``real_root`` is ``rootfs`` with its symbolic links resolved."""
    kind = mount.get("type") or ""
    options = list(mount.get("options") or [])
    source = mount.get("source") or kind or "none"
    flags, propagation, data = _parse_options(options)
    is_bind = bool(flags & sc.MS_BIND) or kind == "bind"
    if is_bind:
        flags |= sc.MS_BIND
        if not os.path.isabs(source):
            source = os.path.join(bundle_dir, source)
        if not os.path.exists(source):
            raise SetupError(f"bind mount source {source} does not exist")
    target = _secure_join(rootfs, mount["destination"])
    real_target = os.path.realpath(target)
    if real_target != real_root and not real_target.startswith(real_root.rstrip("/") + "/"):
        raise SetupError(f"mount destination {mount['destination']} resolves outside the root file system")
    _make_target(target, os.path.isdir(source) if is_bind else True)
    if kind == "cgroup":
        _mount_cgroups(target, flags)
    else:
        try:
            if is_bind:
                sc.mount(source, target, None, flags & (sc.MS_BIND | sc.MS_REC))
                if flags & ~(sc.MS_BIND | sc.MS_REC):
                    sc.mount(None, target, None, flags | sc.MS_REMOUNT | sc.MS_BIND)
            elif kind == "tmpfs" and "tmpcopyup" in options and os.listdir(target):
                _tmpfs_copy_up(target, flags, ",".join(data) or None)
            else:
                sc.mount(source, target, kind or None, flags, ",".join(data) or None)
        except OSError as exc:
            if kind == "sysfs" and exc.errno == errno.EPERM:
                # sysfs needs a network namespace of our own: bind the host's read-only, as runc does.
                sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
                sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID
                         | sc.MS_NODEV | sc.MS_NOEXEC)
            elif kind == "mqueue" and exc.errno == errno.EPERM:
                sc.mount("/dev/mqueue", target, None, sc.MS_BIND | sc.MS_REC)
            else:
                raise SetupError(f"mounting {kind or 'bind'} {source} on {mount['destination']}: "
                                 f"{exc.strerror}") from exc
    if propagation:
        sc.mount(None, target, None, propagation)


def _tmpfs_copy_up(target: str, flags: int, data: str | None) -> None:
    """A tmpfs that starts with the image's content of ``target`` (podman's tmpcopyup, as runc does it)."""
    import subprocess  # still before pivot_root: the host's library is reachable

    staging = target + ".ketch-tmpcopyup"
    os.mkdir(staging)
    try:
        sc.mount("tmpfs", staging, "tmpfs", flags, data)
        subprocess.run(["cp", "-a", f"{target}/.", staging], check=True, capture_output=True)
        sc.mount(staging, target, None, sc.MS_MOVE)
    finally:
        os.rmdir(staging)


def _mount_cgroups(target: str, flags: int) -> None:
    """The container's own cgroup of each hierarchy, read-only, as runc lays out v1 (a tmpfs of
    per-controller mounts); on a unified host, cgroup2 itself (in the cgroup namespace, if any)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        try:
            sc.mount("cgroup2", target, "cgroup2", flags)
        except OSError:
            sc.mount("/sys/fs/cgroup", target, None, sc.MS_BIND | sc.MS_REC)  # outside a cgroup namespace
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
                     | sc.MS_NOEXEC)
        return
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for entry in sorted(os.listdir("/sys/fs/cgroup")):
        source = os.path.join("/sys/fs/cgroup", entry)
        own = source + _CGROUP_PATH if _CGROUP_PATH and _CGROUP_PATH != "/" else source
        if os.path.isdir(own) and not os.path.islink(source):
            source = own
        if os.path.islink(source):
            os.symlink(os.readlink(source), os.path.join(target, entry))
        elif os.path.isdir(source):
            os.makedirs(os.path.join(target, entry), exist_ok=True)
            sc.mount(source, os.path.join(target, entry), None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, os.path.join(target, entry), None,
                     sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    if flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _setup_devices(rootfs: str, linux: dict[str, Any], dev_is_tmpfs: bool) -> None:
    dev = os.path.join(rootfs, "dev")
    os.makedirs(dev, exist_ok=True)
    devices: list[dict[str, Any]] = [
        {"path": f"/dev/{n}", "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
        for n, ma, mi in DEFAULT_DEVICES] if dev_is_tmpfs else []
    devices += list(linux.get("devices") or [])
    for device in devices:
        target = _secure_join(rootfs, device["path"])
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        if device.get("type") not in kinds:
            raise SetupError(f"device {device.get('path')}: unknown type {device.get('type')!r}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        mode = device.get("fileMode", 0o666)
        try:
            os.mknod(target, mode | kinds[device["type"]], os.makedev(device.get("major", 0), device.get("minor", 0)))
        except PermissionError:
            # in a user namespace devices cannot be made: bind the host's, as runc does
            _make_target(target, False)
            sc.mount(device["path"], target, None, sc.MS_BIND)
            continue
        os.chmod(target, mode)
        os.chown(target, device.get("uid", 0), device.get("gid", 0))
    if dev_is_tmpfs:
        for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
            path = os.path.join(dev, link)
            if not os.path.lexists(path):
                os.symlink(to, path)
    ptmx = os.path.join(dev, "ptmx")
    if os.path.isdir(os.path.join(dev, "pts")) and not os.path.exists(ptmx) or \
            (os.path.lexists(ptmx) and not os.path.islink(ptmx) and dev_is_tmpfs):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def _setup_rootfs(config: dict[str, Any], bundle_dir: str, rootfs: str, no_pivot: bool,
                  new_namespaces: set[str], before_root_change) -> None:
    linux = config.get("linux") or {}
    # Keep our mounts from propagating back to the host (rootfsPropagation may share them later).
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    dev_is_tmpfs = False
    real_root = os.path.realpath(rootfs)
    for mount in config.get("mounts") or []:
        _mount_one(rootfs, mount, bundle_dir, real_root)
        if mount.get("destination", "").rstrip("/") == "/dev" and mount.get("type") in ("tmpfs", "devtmpfs"):
            dev_is_tmpfs = True
    _setup_devices(rootfs, linux, dev_is_tmpfs)
    propagation = linux.get("rootfsPropagation")
    before_root_change()
    os.chdir(rootfs)
    if no_pivot:
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
    else:
        # pivot_root(".", ".") stacks the old root under the new one; detach it at once.
        old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
        new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
        try:
            sc.pivot_root(".", ".")
            os.fchdir(old_root)
            sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
            sc.umount(".", sc.MNT_DETACH)
            os.fchdir(new_root)
        finally:
            os.close(old_root)
            os.close(new_root)
    os.chdir("/")
    if propagation:
        if propagation not in PROPAGATION:
            raise SetupError(f"unknown rootfsPropagation {propagation!r}")
        sc.mount(None, "/", None, PROPAGATION[propagation])


def _finalize_rootfs(config: dict[str, Any]) -> None:
    """Masked and read-only paths, a read-only root: after sysctls are written, as runc orders it."""
    linux = config.get("linux") or {}
    for path in linux.get("maskedPaths") or []:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    for path in linux.get("readonlyPaths") or []:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
                 | sc.MS_NOEXEC)
    if (config.get("root") or {}).get("readonly"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)


def _setup_console(console_fd: int | None, size: dict[str, int] | None = None, *, bind_console: bool) -> None:
    """Make a pty in the container's devpts, send its master to the console socket
    (connected by the runtime before the root changed), and take the slave as stdio.
    In a mount namespace of its own the slave is also /dev/console, as runc makes it."""
    if console_fd is None:
        raise SetupError("process.terminal is true: a --console-socket is needed")
    import fcntl  # preloaded
    import termios
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt
    number = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"), "little")
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if bind_console:
        try:
            if not os.path.lexists("/dev/console"):
                os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            sc.mount(slave_path, "/dev/console", None, sc.MS_BIND)
        except OSError as exc:
            raise SetupError(f"binding the terminal onto /dev/console: {exc.strerror}") from exc
    if size:
        winsize = b"".join(n.to_bytes(2, sys.byteorder) for n in (size.get("height", 0), size.get("width", 0), 0, 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
    # runc's console-socket protocol: the pty's path as data, its master as SCM_RIGHTS.
    sock = _socket.socket(fileno=console_fd)
    try:
        sock.sendmsg([slave_path.encode()],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder, signed=True))])
    finally:
        sock.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)
