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
import sys

from ketch import syscalls as sc
from ketch.runtime import hooks, leanjson
from ketch.runtime import rootfs as rootfs_setup
from ketch.runtime.initbase import SetupError
from ketch.runtime.initbase import write_text as _write
from ketch.runtime.initprocess import _close_fds, _install_stdio, _load_seccomp, prepare_process
from ketch.runtime.private import socket_module as _socket
from ketch.runtime.rootfs import _finalize_rootfs, _setup_console, _setup_rootfs

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
    rootfs_setup.set_cgroup_path(cgroup_path)
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



