"""Container lifecycle: create, start, state, kill, delete, run (runtime-spec).

``create`` makes the container's init directly in its new namespaces and cgroup with one
``clone3`` (:func:`ketch.runtime.init.clone_init`) when it can: a single-threaded caller and no
namespace to join that needs ``setns`` first. Otherwise it forks an intermediate that joins or
creates the namespaces, forks the init (pid 1 of a new pid namespace) and exits. Either way,
once ``create`` returns no runtime process stays between the init and its parent's nearest
subreaper (conmon, a monitor, or the ``run`` command itself). The init prepares everything,
reports ``ready`` over a socket pair, and blocks opening the exec FIFO until ``start`` opens it
from the other end; only then does it exec the user's program. Hooks, the terminal (console
socket and pty proxy) and signal forwarding are here too.
"""

from __future__ import annotations

import builtins
import os
import time

from ketch.errors import (
    CannotExecuteError,
    ExecutableNotFoundError,
    InvalidInputError,
    KetchError,
    NotFoundError,
    OCIRuntimeError,
)
from ketch.runtime import cgroups, hooks, leanjson
from ketch.runtime import spec as specs
from ketch.runtime.console import TerminalProxy as _TerminalProxy
from ketch.runtime.console import close_listener as _close_listener
from ketch.runtime.console import connect_console as _connect_console
from ketch.runtime.console import receive_fd as _receive_fd
from ketch.runtime.paths import unlink_if_present as _unlink
from ketch.runtime.paths import write_bytes
from ketch.runtime.private import signal_module as _signal  # (see private.py: start-up cost)
from ketch.runtime.private import socket_module as _socket
from ketch.runtime.state import FIFO, State, StateDir, now_rfc3339, process_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.spectypes import Linux

DEFAULT_ROOT = "/run/ketch-runtime"


def default_state_root() -> str:
    """Where container states live: root's /run/ketch-runtime, or for an ordinary user (as runc
    keeps $XDG_RUNTIME_DIR/runc) the user's run directory."""
    from ketch.userns import is_rootless, runtime_dir

    return str(runtime_dir() / "ketch-runtime") if is_rootless() else DEFAULT_ROOT
SIGNALS = {name: getattr(_signal, name) for name in dir(_signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(_signal, name), int)}




def _setup_failure(message: str) -> OCIRuntimeError:
    """The error for a set-up failure the init reported (``[127] text`` marks a program that
    cannot be run)."""
    if message.startswith("[12") and message[4:6] == "] " and message[1:4] in ("126", "127"):
        return (ExecutableNotFoundError if message[1:4] == "127" else CannotExecuteError)(message[6:])
    return OCIRuntimeError(message)


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not 0 < number < _signal.NSIG:
            raise InvalidInputError(f"invalid signal {text}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith(("SIGRTMIN+", "SIGRTMAX-")) and name[9:].isdigit():
        number = SIGNALS[name[:8]] + (int(name[9:]) if name[7] == "N" else -int(name[9:]))
        if SIGNALS["SIGRTMIN"] <= number <= SIGNALS["SIGRTMAX"]:
            return number
    if name not in SIGNALS:
        raise InvalidInputError(f"unknown signal {text!r}")
    return SIGNALS[name]


def _write_atomically(path: str, data: str) -> None:
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.tmp{os.getpid()}")
    _write(tmp, data)
    os.replace(tmp, path)


def _write(path: str, data: str) -> None:
    write_bytes(path, data.encode())


def _id_maps(pid: int, linux: dict[str, Any]) -> None:
    def render(entries):
        return "".join(f"{e['containerID']} {e['hostID']} {e['size']}\n" for e in entries or [])

    uid_map = render(linux.get("uidMappings"))
    gid_map = render(linux.get("gidMappings"))
    if not uid_map or not gid_map:
        raise OCIRuntimeError("a user namespace needs linux.uidMappings and linux.gidMappings")
    if os.geteuid() != 0:  # an ordinary user (runc's rootless mode)
        from ketch.userns import IDMap, UserNamespaceError, write_maps_of

        def entries(items):
            return [IDMap(e["containerID"], e["hostID"], e["size"]) for e in items or []]

        uids, gids = entries(linux.get("uidMappings")), entries(linux.get("gidMappings"))
        own = len(uids) == 1 == len(gids) and uids[0].outside == os.geteuid() and gids[0].outside == os.getegid() \
            and uids[0].size == 1 == gids[0].size
        try:
            # our own id alone: written by us (setgroups denied first, as the kernel asks); more:
            # through the setuid helpers, which check /etc/subuid and /etc/subgid
            write_maps_of(pid, uids, gids, None if own else "helpers")
        except UserNamespaceError as exc:
            raise OCIRuntimeError(str(exc)) from exc
        return
    try:
        _write(f"/proc/{pid}/uid_map", uid_map)
        _write(f"/proc/{pid}/gid_map", gid_map)
    except OSError as exc:
        raise OCIRuntimeError(f"writing the id mappings: {exc.strerror}") from exc


def _container_root(linux: Linux) -> tuple[int, int]:
    """The host uid and gid that are root inside the container."""
    def host(mappings):
        for m in mappings or []:
            if m.get("containerID", 0) <= 0 < m.get("containerID", 0) + m.get("size", 0):
                return m.get("hostID", 0) - m.get("containerID", 0)
        return 0

    if not any(n.get("type") == "user" for n in linux.get("namespaces") or []):
        return 0, 0
    return host(linux.get("uidMappings")), host(linux.get("gidMappings"))


NOTIFY_SOCKET_IN_CONTAINER = "/run/notify/notify.sock"


def _pass_notify_socket(config, notify_socket: str) -> None:
    """Give the container's process a notify socket: ``notify_socket`` (a foreground run's relay,
    see :class:`_NotifyRelay`; for create, systemd's own, which then needs ``NotifyAccess=all``)
    bound at ``/run/notify/notify.sock``, and ``NOTIFY_SOCKET`` set. An abstract socket
    (``@...``) is reachable as it is in the host's network namespace."""
    process = config["process"]
    env = [e for e in process.get("env") or [] if not e.startswith("NOTIFY_SOCKET=")]
    if notify_socket.startswith("@"):
        process["env"] = env + [f"NOTIFY_SOCKET={notify_socket}"]
        return
    config.setdefault("mounts", []).append({"destination": NOTIFY_SOCKET_IN_CONTAINER, "type": "bind",
                                            "source": notify_socket, "options": ["bind", "nosuid", "nodev",
                                                                                  "noexec"]})
    process["env"] = env + [f"NOTIFY_SOCKET={NOTIFY_SOCKET_IN_CONTAINER}"]


class _NotifyRelay:
    """A foreground ``run``'s notify socket, as runc's: the container's process writes to it, and
    the runtime (the unit's main process) passes each message on to systemd's socket. systemd
    finds a sender's unit from its pid, and a client that exits right after sending (``systemd-
    notify``, a script) is often gone before systemd looks: from the runtime, that never happens."""

    def __init__(self, state_root: str, container_id: str, target: str) -> None:
        os.makedirs(state_root, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_root, f".notify-{container_id}-{os.getpid()}.sock")
        self.target = "\0" + target[1:] if target.startswith("@") else target
        _unlink(self.path)
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # (the container's user may not be root)
        self.out = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        self.closed = False

    def start(self) -> None:
        import threading

        threading.Thread(target=self._relay, name="notify-relay", daemon=True).start()

    def _relay(self) -> None:
        # Signals are for the main thread, which forwards them to the container: one delivered
        # to this thread would wait for the main thread's next bytecode, and it waits in waitpid.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, range(1, _signal.NSIG))
        while True:
            try:
                message = self.sock.recv(65536)
            except OSError:
                return  # closed
            if self.closed:
                return
            try:
                self.out.sendto(message, self.target)
            except OSError as exc:
                _warn(f"passing a notification on to {self.target!r}: {exc.strerror}")

    def close(self) -> None:
        self.closed = True
        _unlink(self.path)
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)  # (wakes the thread's recv; a close alone would not)
        except OSError:
            pass
        self.sock.close()
        self.out.close()


def parse_cgroups_path(path: str, systemd: bool) -> dict[str, str]:
    """``linux.cgroupsPath``: with --systemd-cgroup ``slice:prefix:name``, else a path.

    The systemd form is laid out as systemd would (see :mod:`ketch.runtime.cgroups`).
    """
    if not path:
        return {}
    if systemd:
        parts = path.split(":")
        if len(parts) != 3 or not parts[2]:
            raise InvalidInputError(f"cgroupsPath {path!r}: with --systemd-cgroup it must be slice:prefix:name")
        slice_name = parts[0] or "system.slice"
        if not slice_name.endswith(".slice"):
            raise InvalidInputError(f"cgroupsPath {path!r}: {slice_name!r} is not a slice")
        unit = parts[2] if parts[2].endswith(".slice") else f"{parts[1]}-{parts[2]}.scope" if parts[1] else \
            f"{parts[2]}.scope"
        return {"manager": "systemd", "slice": slice_name, "unit": unit}
    if ".." in path.split("/"):
        raise InvalidInputError(f"cgroupsPath {path!r} must not contain '..'")
    if not path.startswith("/"):
        # runc's reading: a relative path is under the runtime's own cgroup, so a runtime that a
        # systemd unit starts puts the container inside the unit's cgroup
        path = cgroups.own_cgroup().rstrip("/") + "/" + path
    return {"manager": "cgroupfs", "path": path}


class Runtime:
    def __init__(self, root: str | None = None, *, systemd_cgroup: bool = False) -> None:
        self.states = StateDir(root or default_state_root())
        self.systemd_cgroup = systemd_cgroup

    # -- create / start ---------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
               stdio: tuple[int, int, int] | None = None, notify_socket: str | None = None) -> State:
        """Create the container; its init waits for ``start``. Its stdin, stdout and stderr are
        ours, or the three fds of ``stdio``. ``notify_socket``: systemd's (the runtime's
        ``NOTIFY_SOCKET``), passed through to the container's process."""
        specs.check_id(container_id)
        bundle = os.path.abspath(bundle)
        config = specs.load(bundle)
        if config.get("process") is None:
            raise InvalidInputError("config.json has no process to run")
        if notify_socket:
            _pass_notify_socket(config, notify_socket)
        if (config["process"].get("terminal")) and not console_socket:
            raise InvalidInputError("process.terminal is true: --console-socket is required")
        linux = config.get("linux") or {}
        cgroup = parse_cgroups_path(linux.get("cgroupsPath", ""), self.systemd_cgroup)
        config_hooks = hooks.check(config.get("hooks"))
        config["hooks"] = config_hooks  # type: ignore[typeddict-item]  # (checked: kind -> hooks)
        resources = linux.get("resources") or {}
        if resources and not isinstance(resources, dict):
            raise InvalidInputError("config.json: linux.resources must be an object")
        root_path = config["root"]["path"]
        rootfs = root_path if os.path.isabs(root_path) else os.path.join(bundle, root_path)
        directory = self.states.create(container_id)
        state = State(id=container_id, bundle=bundle, rootfs=rootfs, created=now_rfc3339(),
                      annotations=dict(config.get("annotations") or {}), status_override="creating",
                      creator=os.getpid(), creator_start=process_start_time(os.getpid()) or "", cgroup=cgroup,
                      hooks={k: v for k, v in config_hooks.items() if k in ("poststart", "poststop")})
        group = None
        try:
            group = cgroups.Cgroup(cgroups.relative_path(cgroup, container_id))
            if group.exists() and group.procs():
                raise InvalidInputError(f"cgroup {group.path} is in use by other processes")
            # Recorded before the directories exist: a create killed from here on leaves a state
            # that delete finds, with the cgroup to remove.
            state.cgroup_path, state.cgroup_dirs, state.cgroup_unified = group.path, group.dirs, group.unified
            self.states.save(state)
            cgroup_dirs = group.create(resources)
            if cgroup_dirs:
                group.apply({k: v for k, v in resources.items() if k != "devices"})
            else:
                group = None
                state.cgroup_path, state.cgroup_dirs, state.cgroup_unified = "", {}, False
                self.states.save(state)  # (with a cgroup, what is saved above stays true)
            fifo = os.path.join(directory, FIFO)
            os.mkfifo(fifo, 0o600)
            # Writable by all, as runc makes it: the init opens it after taking the container's user.
            os.chmod(fifo, 0o622)
            root_uid, root_gid = _container_root(config.get("linux") or {})
            # The init reopens the FIFO as the container's root: in a user namespace that is another host uid.
            os.chown(fifo, root_uid, root_gid)
            console_fd = _connect_console(console_socket) if console_socket else None
            def recorded(pid: int, final: bool = True) -> None:
                state.pid, state.pid_start = pid, process_start_time(pid) or ""
                if final:
                    state.status_override = ""
                self.states.save(state)
                if pid_file:
                    _write_atomically(pid_file, str(pid))

            device_rules = resources.get("devices") if group is not None and "devices" in resources else None
            if group is not None and group.unified and not device_rules:
                device_rules = None  # (v2: no rules, no filter program)
            if group is not None and device_rules is not None and not linux.get("devices"):
                # no device nodes of the config's to make (the default ones are always allowed): the
                # rules go in now, sparing the init a round trip
                group.apply_devices(device_rules)
                device_rules = None

            def run_hooks(init_pid: int) -> None:  # asked for by the init before its root changes
                if group is not None and device_rules is not None:
                    group.apply_devices(device_rules)
                if not (config_hooks.get("prestart") or config_hooks.get("createRuntime")):
                    return
                recorded(init_pid, final=False)  # (the hooks are given the state, with the pid)
                hooks.run("prestart", config_hooks.get("prestart") or [], leanjson.dumps(state.hook_state("created")))
                hooks.run("createRuntime", config_hooks.get("createRuntime") or [],
                          leanjson.dumps(state.hook_state("creating")))

            self._spawn(config, bundle, rootfs, fifo, console_fd, no_pivot, preserve_fds, recorded, run_hooks,
                        dict(container_id=container_id, cgroup_dirs=cgroup_dirs, cgroup_path=state.cgroup_path, stdio=stdio,
                             seccomp_program=self._seccomp_program(linux),
                             devices_after_setup=device_rules is not None))
            if console_fd is not None:
                os.close(console_fd)
        except BaseException:
            if state.pid:
                _kill(state.pid, _signal.SIGKILL)
            if group is not None:
                _kill_all(group.procs())
                try:
                    group.destroy()
                except KetchError:
                    pass
            _remove_tree(directory)
            raise
        return state

    def _seccomp_program(self, linux: Linux) -> bytes | None:
        if not linux.get("seccomp"):
            return None
        from ketch.runtime import seccomp

        return seccomp.program_for(linux["seccomp"], os.path.join(self.states.root, ".seccomp-cache"))

    def _spawn(self, config, bundle, rootfs, fifo, console_fd, no_pivot, preserve_fds, recorded, run_hooks,
               extra) -> int:
        from ketch.runtime import init

        linux = config.get("linux") or {}
        init.preload(config.get("process") or {}, linux)
        parent_end, child_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        keep = [] if console_fd is None else [console_fd]
        init_args = dict(bundle=bundle, rootfs=rootfs, fifo=fifo, console_fd=console_fd, no_pivot=no_pivot,
                         preserve_fds=preserve_fds, keep_fds=keep, **extra)
        direct_flags = init.direct_clone_flags(linux) if init.single_threaded() else None
        if direct_flags is not None:
            # The init is our child, made in its namespaces at once; no intermediate to reap.
            try:
                pid = init_pid = init.clone_init(config, child_end, parent_end, init_args, direct_flags)
            except init.SetupError as exc:
                parent_end.close()
                child_end.close()
                raise OCIRuntimeError(str(exc)) from exc
            child_end.close()
        else:
            pid = os.fork()
            if pid == 0:
                parent_end.close()
                init.intermediate(config, child_end, init_args)
                os._exit(1)  # not reached
            child_end.close()
            init_pid = 0
        error = None
        parent_end.settimeout(60)
        try:
            while True:
                try:
                    message = parent_end.recv(65536).decode(errors="replace")
                except TimeoutError:
                    error = "the container's set-up timed out"
                    break
                if not message:
                    error = error or "the container's set-up ended without a word"
                    break
                if message == "idmap":
                    _id_maps(pid, config.get("linux") or {})
                    parent_end.send(b"idmap-ok")
                elif message.startswith("pid "):
                    init_pid = int(message[4:])
                elif message == "hooks":
                    try:
                        run_hooks(init_pid)
                    except KetchError as exc:
                        error = str(exc)
                        parent_end.send(b"error " + error.encode()[:60000])
                        break
                    parent_end.send(b"hooks-ok")
                elif message == "ready":
                    if not init_pid:
                        error = "the container's init was not reported"
                        break
                    recorded(init_pid)
                    parent_end.send(b"ok")
                    break
                elif message.startswith("error "):
                    error = message[6:]
                    break
        finally:
            parent_end.close()
            if direct_flags is None:
                os.waitpid(pid, 0)  # the intermediate; the init is reaped by whoever waits for it
        if error is not None or not init_pid:
            if init_pid:
                _kill(init_pid, _signal.SIGKILL)
                if direct_flags is not None:
                    try:
                        os.waitpid(init_pid, 0)  # our own child
                    except ChildProcessError:  # a caller that ignores SIGCHLD: reaped already
                        pass
            raise _setup_failure(error or "the container's init never reported")
        return init_pid

    def start(self, container_id: str) -> None:
        state, directory = self.states.load(container_id)
        status = state.status(directory)
        if status != "created":
            raise InvalidInputError(f"cannot start container {container_id} in status {status}")
        fifo = os.path.join(directory, FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + 30
            pause = 0.00005
            while True:
                try:
                    if os.read(fd, 1) == b"0":
                        break
                except BlockingIOError:
                    pass  # the init has the FIFO open, its byte is on the way
                if not state.alive():
                    raise OCIRuntimeError(f"container {container_id} died before it was started")
                if time.monotonic() > deadline:
                    raise OCIRuntimeError(f"container {container_id} did not start")
                # Polled, not select()ed: importing select costs a start more than these waits, which
                # end within a fraction of a millisecond (the init is already blocked opening the FIFO).
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        finally:
            os.close(fd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
        if state.hooks.get("poststart"):
            for failure in hooks.run_all("poststart", state.hooks["poststart"],
                                         leanjson.dumps(state.hook_state("running"))):
                _warn(f"{failure} (the container runs on)")

    # -- queries ----------------------------------------------------------------

    def state(self, container_id: str) -> dict[str, Any]:
        state, directory = self.states.load(container_id)
        return state.spec_json(directory)

    def list(self) -> builtins.list[dict[str, Any]]:
        out = []
        for container_id in self.states.ids():
            try:
                out.append(self.state(container_id))
            except NotFoundError:
                pass
        return out

    def pids(self, container_id: str) -> builtins.list[int]:
        """Every process of the container: those in its init's pid namespace."""
        state, directory = self.states.load(container_id)
        if not state.alive():
            return []
        group = state.cgroup_handle()
        if group is not None:
            return group.procs()
        try:
            target = os.stat(f"/proc/{state.pid}/ns/pid").st_ino
            host = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            return []
        if target == host:
            return [state.pid]
        in_namespace, parents = [], {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}/ns/pid").st_ino == target:
                        in_namespace.append(int(entry))
                        with open(f"/proc/{entry}/stat") as f:
                            parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        if _is_namespace_init(state.pid):
            return sorted(in_namespace)
        # a pid namespace shared with others (a pod's, another container's): the init and its
        # descendants only, never the namespace's other processes
        ours, changed = {state.pid}, True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        return sorted(p for p in in_namespace if p in ours)

    # -- kill / delete ------------------------------------------------------------

    def kill(self, container_id: str, sig: int = _signal.SIGTERM, *, all_processes: bool = False) -> None:
        state, directory = self.states.load(container_id)
        status = state.status(directory)
        if status not in ("created", "running", "paused"):
            if all_processes and status == "stopped":
                # runc's answer: ``kill --all`` of a stopped container signals whatever is left
                # in its cgroup (nothing, usually) and succeeds; it can still be deleted
                group = state.cgroup_handle()
                try:
                    _kill_all(group.procs() if group is not None else [], sig)
                except (OSError, KetchError):
                    pass  # the cgroup is gone with its processes
                return
            raise InvalidInputError(f"container {container_id} is not running (status {status})")
        if not all_processes:
            _kill(state.pid, sig)
            return
        group = state.cgroup_handle()
        if group is None:
            _kill_all(self.pids(container_id), sig)
            return
        # Freeze, signal, thaw: no process can fork a new one the signal would miss (as runc does).
        paused = status == "paused"
        if not paused:
            group.freeze(True)
        try:
            _kill_all(group.procs(), sig)
        finally:
            if not paused or sig == _signal.SIGKILL:
                group.freeze(False)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        state, directory = self.states.load(container_id)
        status = state.status(directory)
        if status in ("created", "running", "paused"):
            if not force:
                raise InvalidInputError(f"cannot delete container {container_id} that is {status} "
                                        f"(stop it first, or use --force)")
            self.kill(container_id, _signal.SIGKILL, all_processes=True)
            deadline = time.monotonic() + 10
            while state.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        group = state.cgroup_handle()
        if group is not None:
            _kill_all(group.procs(), _signal.SIGKILL)  # whatever outlived its init
            group.destroy()
        _remove_tree(directory)
        if state.hooks.get("poststop"):
            for failure in hooks.run_all("poststop", state.hooks["poststop"],
                                         leanjson.dumps(state.hook_state("stopped"))):
                _warn(f"{failure} (the container is deleted)")

    # -- pause / resume / update / stats -----------------------------------------------

    def _running_cgroup(self, container_id: str, *statuses: str):
        state, directory = self.states.load(container_id)
        status = state.status(directory)
        if status not in statuses:
            raise InvalidInputError(f"container {container_id} is {status}, not {' or '.join(statuses)}")
        group = state.cgroup_handle()
        if group is None or not group.dirs:
            from ketch.userns import is_rootless

            if is_rootless():  # (podman says as much for rootless containers on cgroup v1)
                raise OCIRuntimeError(f"container {container_id} has no cgroup: a rootless container gets one only "
                                      "where a cgroup v2 subtree is delegated to the user (pause, resume and "
                                      "update need it)")
            raise OCIRuntimeError(f"container {container_id} has no cgroup")
        return state, group

    def pause(self, container_id: str) -> None:
        self._running_cgroup(container_id, "running", "created")[1].freeze(True)

    def resume(self, container_id: str) -> None:
        self._running_cgroup(container_id, "paused")[1].freeze(False)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change a live container's resources (runc update)."""
        self._running_cgroup(container_id, "created", "running", "paused")[1].apply(resources)

    def stats(self, container_id: str) -> dict[str, Any]:
        """``events --stats``: one stats event, as runc prints it."""
        _, group = self._running_cgroup(container_id, "created", "running", "paused")
        return {"type": "stats", "id": container_id, "data": group.stats()}

    def events(self, container_id: str, interval: float):
        """``events``: a stats event every ``interval`` seconds and an ``oom`` event at each OOM
        kill, as runc streams them, until the container stops."""
        state, group = self._running_cgroup(container_id, "created", "running", "paused")
        watch = group.oom_watch()
        try:
            next_stats = 0.0
            while True:
                now = time.monotonic()
                if now >= next_stats:
                    try:
                        yield self.stats(container_id)
                    except (NotFoundError, InvalidInputError):
                        return  # deleted or stopped
                    next_stats = now + interval
                wait = max(0.0, next_stats - time.monotonic())
                if watch is not None:
                    if watch.wait(min(wait, 1.0)):
                        yield {"type": "oom", "id": container_id}
                else:
                    time.sleep(min(wait, 1.0))
                if not state.alive():
                    return
        finally:
            if watch is not None:
                watch.close()

    # -- run ----------------------------------------------------------------------

    def run(self, container_id: str, bundle: str, *, detach: bool = False, pid_file: str | None = None,
            console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
            notify_socket: str | None = None) -> int:
        """create + start; in the foreground wait for the container and return its exit status.

        A foreground container with ``process.terminal`` and no console socket gets its pty
        proxied to the runtime's own stdin and stdout, as runc does.
        """
        from ketch import syscalls

        terminal = (specs.load(bundle).get("process") or {}).get("terminal")
        if terminal and not console_socket:
            if detach:
                raise InvalidInputError("cannot allocate tty if runc will detach without setting console socket")
            # the terminal is ours: without one (a script, a pipe) there is nothing to attach to,
            # and runc refuses at once rather than leave a shell waiting on a pty nobody reads
            try:
                os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC))
            except OSError as exc:
                raise InvalidInputError(f"open /dev/tty: {(exc.strerror or str(exc)).lower()}", errno=exc.errno) from exc
        if detach:
            self.create(container_id, bundle, pid_file=pid_file, console_socket=console_socket, no_pivot=no_pivot,
                        preserve_fds=preserve_fds, notify_socket=notify_socket)
            self.start(container_id)
            return 0
        was_subreaper = syscalls.set_child_subreaper(True)  # the init becomes our child again
        relay = _NotifyRelay(self.states.root, container_id, notify_socket) if notify_socket else None
        try:
            listener, console_socket = self._own_console(not console_socket and terminal, console_socket)
            master = None
            try:
                state = self.create(container_id, bundle, pid_file=pid_file, console_socket=console_socket,
                                    no_pivot=no_pivot, preserve_fds=preserve_fds,
                                    notify_socket=relay.path if relay else None)
                if listener is not None:
                    master = _receive_fd(listener)
            finally:
                _close_listener(listener, console_socket)
            if relay is not None:
                relay.start()  # (a thread: only now, the container forked)
            try:
                return _wait_foreground(lambda: state.pid, master, lambda: self.start(container_id))
            finally:
                self.delete(container_id, force=True)
        finally:
            if relay is not None:
                relay.close()
            syscalls.set_child_subreaper(was_subreaper)  # a library caller is not left adopting orphans

    def create_attached(self, container_id: str, bundle: str, *, terminal: bool,
                        stdio: tuple[int, int, int] | None = None, preserve_fds: int = 0) -> tuple[State, int | None]:
        """``create`` for a caller that stays the container's parent: with ``terminal``, the
        pty's master comes back to the caller (through a console socket of our own)."""
        listener, console_socket = self._own_console(terminal, None)
        master = None
        try:
            state = self.create(container_id, bundle, console_socket=console_socket, preserve_fds=preserve_fds,
                                stdio=stdio)
            if listener is not None:
                master = _receive_fd(listener)
        finally:
            _close_listener(listener, console_socket)
        return state, master

    @staticmethod
    def wait(pid: int, master: int | None = None, start=None, *, forward_signals: bool = True, pump=None,
             on_output=None, forward_stdin: bool = True) -> int:
        """Wait for our child ``pid`` (the init of a container we created), forwarding signals to it
        and copying its terminal (``master``, closed when done); its exit status (128+N for a
        signal). ``start`` is called once
        the signal handlers are in place; ``pump`` and ``on_output`` as for a terminal's copy."""
        return _wait_foreground(lambda: pid, master, start, forward_signals, pump, on_output, forward_stdin)

    def _own_console(self, wanted, console_socket):
        """A console socket of our own, for a foreground terminal without one given."""
        if not wanted:
            return None, console_socket
        os.makedirs(self.states.root, mode=0o700, exist_ok=True)
        console_socket = os.path.join(self.states.root, f".console-{os.getpid()}.sock")
        _unlink(console_socket)
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(console_socket)
        listener.listen(1)
        return listener, console_socket

    # -- exec ---------------------------------------------------------------------

    def exec(self, container_id: str, process: dict[str, Any], *, detach: bool = False,
             pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0,
             stdio: tuple[int, int, int] | None = None, forward_signals: bool = True) -> int:
        """Run another process in a running container: its namespaces, its cgroup, ``process``'s
        user, capabilities and environment. In the foreground, return its exit status; detached,
        return once it runs (it is then a child of the nearest subreaper, as create's init is)."""
        from ketch import syscalls

        state, directory = self.states.load(container_id)
        status = state.status(directory)
        if status not in ("created", "running"):
            raise InvalidInputError(f"cannot exec in container {container_id}: it is {status}")
        specs.validate_process(process)
        if process.get("terminal") and not console_socket and detach:
            raise InvalidInputError("a detached exec with a terminal needs --console-socket")
        try:
            linux = specs.load(state.bundle).get("linux") or {}
        except KetchError:
            linux = {}  # the bundle is gone: the process's own settings still apply
        was_subreaper = syscalls.set_child_subreaper(True) if not detach else None
        try:
            return self._exec(state, container_id, process, linux, detach, pid_file, console_socket, preserve_fds,
                              stdio, forward_signals)
        finally:
            if was_subreaper is not None:
                syscalls.set_child_subreaper(was_subreaper)

    def _exec(self, state, container_id, process, linux, detach, pid_file, console_socket, preserve_fds, stdio,
              forward_signals) -> int:
        listener, console_socket = self._own_console(process.get("terminal") and not console_socket and not detach,
                                                     console_socket)
        group = state.cgroup_handle()
        cgroup_dirs = sorted(set(group.dirs.values())) if group else []
        master = None
        try:
            console_fd = _connect_console(console_socket) if process.get("terminal") else None
            pid = self._spawn_exec(state.pid, process, linux, cgroup_dirs, console_fd, preserve_fds, stdio,
                                   self._seccomp_program(linux))
            if console_fd is not None:
                os.close(console_fd)
            if listener is not None:
                master = _receive_fd(listener)
        finally:
            _close_listener(listener, console_socket)
        if pid_file:
            _write_atomically(pid_file, str(pid))
        if detach:
            return 0
        return _wait_foreground(lambda: pid, master, None, forward_signals)

    def _spawn_exec(self, target_pid, process, linux, cgroup_dirs, console_fd, preserve_fds, stdio, program) -> int:
        from ketch.runtime import init

        init.preload(process, linux)
        parent_end, child_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        keep = [] if console_fd is None else [console_fd]
        child = os.fork()
        if child == 0:
            parent_end.close()
            init.exec_child(child_end, target_pid=target_pid, process=process, linux=linux,
                            cgroup_dirs=cgroup_dirs, console_fd=console_fd, preserve_fds=preserve_fds, stdio=stdio,
                            keep_fds=keep, seccomp_program=program)
            os._exit(1)  # not reached
        child_end.close()
        pid, error = 0, None
        try:
            while True:
                message = parent_end.recv(65536).decode(errors="replace")
                if not message:
                    break  # every copy closed: the process exec'd
                if message.startswith("pid "):
                    pid = int(message[4:])
                elif message.startswith("error "):
                    error = message[6:]
                    break
        finally:
            parent_end.close()
            os.waitpid(child, 0)
        if error is not None or not pid:
            raise _setup_failure(error or "the exec'd process never reported")
        return pid


def _wait_foreground(target, master: int | None, start, forward_signals: bool = True, pump=None,
                     on_output=None, forward_stdin: bool = True) -> int:
    """Forward every catchable signal to the process, copy its terminal, and return its exit
    status (128+N for a signal), as a shell reports it. ``start`` runs once the handlers are set.
    ``pump`` (``pump(timeout)`` and ``drain()``) is more copying to do while waiting;
    ``on_output(bytes)`` also gets what the terminal printed."""
    previous = {}
    for sig in range(1, _signal.NSIG) if forward_signals else ():
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD):
            try:
                previous[sig] = _signal.signal(sig, lambda number, frame: _kill(target(), number))
            except (OSError, ValueError):
                pass  # the C library's own real-time signals
    proxy = _TerminalProxy(master, on_output, forward_stdin) if master is not None else None
    copier = proxy or pump
    try:
        if start is not None:
            start()
        while True:
            if copier is not None and getattr(copier, "active", True):
                copier.pump(0.05)
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    continue
            else:
                try:
                    pid, status = os.waitpid(-1, 0)
                except InterruptedError:
                    continue
            if pid == target():
                if copier is not None:
                    copier.drain()
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    except ChildProcessError:
        return 0
    finally:
        if proxy is not None:
            proxy.close()
        for sig, handler in previous.items():
            try:
                _signal.signal(sig, handler)
            except (OSError, ValueError, TypeError):
                pass


def _remove_tree(directory: str) -> None:
    """The state directory holds only files (shutil would cost an import)."""
    try:
        for entry in os.listdir(directory):
            _unlink(os.path.join(directory, entry))
        os.rmdir(directory)
    except FileNotFoundError:
        pass


def _warn(message: str) -> None:
    os.write(2, f"ketch-runtime: warning: {message}\n".encode())


def _kill_all(pids: list[int], number: int = _signal.SIGKILL) -> None:
    for pid in pids:
        _kill(pid, number)


def _kill(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _is_namespace_init(pid: int) -> bool:
    """Whether ``pid`` is PID 1 of its own pid namespace (the last NSpid value)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return line.split()[-1] == "1"
    except OSError:
        pass
    return False
