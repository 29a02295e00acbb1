"""Rootless ketch: the user namespace an ordinary user's commands run in, and the user's own
directories.

As podman does it: a user who is not root gets a user namespace in which they are root (uid 0
inside is their uid outside) and their subordinate ids (``/etc/subuid``, ``/etc/subgid``) are
1 up, written by the standard setuid helpers ``newuidmap``/``newgidmap`` (Debian's ``uidmap``).
Every ketch command of the user makes the same mapping, so the files of the store always mean
the same owners; the command enters it in-process (no re-exec) right at the start, before any
thread exists, with a mount namespace of its own for the store's mounts. Without subordinate ids
the namespace maps the user alone, with a warning of what cannot work.

Paths follow podman's for users: the store under ``$XDG_DATA_HOME/ketch``
(``~/.local/share/ketch``), the run directory under ``$XDG_RUNTIME_DIR/ketch`` (a private
``/tmp/ketch-run-UID`` when it is unset), configuration under ``$XDG_CONFIG_HOME/containers``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from pathlib import Path

from ketch.errors import InvalidInputError, KetchError
from ketch.records import Record

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
_ENTERED_ENV = "_KETCH_ROOTLESS_UID"  # (the user's uid, for processes started inside the namespace)


class UserNamespaceError(KetchError):
    """The user namespace cannot be made (no helper, a helper without its setuid bit, ...)."""


class IDMap(Record, frozen=True):  # (a Record: dataclasses would cost every command ~13 ms)
    inside: int
    outside: int
    size: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.size}"


def _identity_map(path: str) -> bool:
    try:
        text = Path(path).read_text().split()
    except OSError:
        return True
    return text == ["0", "0", "4294967295"]


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the host's."""
    return not _identity_map("/proc/self/uid_map")


def host_uid() -> int:
    """The user's uid on the host: ours, or the one our uid 0 stands for inside our namespace."""
    if not in_user_namespace():
        return os.geteuid()
    if _ENTERED_ENV in os.environ:
        return int(os.environ[_ENTERED_ENV])
    for line in Path("/proc/self/uid_map").read_text().splitlines():
        inside, outside, size = (int(x) for x in line.split())
        if inside <= os.geteuid() < inside + size:
            return outside + os.geteuid() - inside
    return os.geteuid()


def is_rootless() -> bool:
    """Whether ketch runs for an ordinary user (outside or inside its namespace)."""
    return host_uid() != 0


def _home(uid: int) -> Path:
    home = os.environ.get("HOME")
    if home:
        return Path(home)
    try:
        return Path(pwd.getpwuid(uid).pw_dir)
    except KeyError:
        return Path("/")


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or _home(host_uid()) / ".local" / "share")


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or _home(host_uid()) / ".config")


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR``, or a private directory of the user's under /tmp when it is unset. A
    directory that is not the user's own and writable is refused (one line)."""
    uid = host_uid()
    given = os.environ.get("XDG_RUNTIME_DIR")
    if given:
        path = Path(given)
        if not os.access(path, os.W_OK | os.X_OK):
            raise InvalidInputError(f"XDG_RUNTIME_DIR={given} is not a directory you can write to; set it to one "
                                    "(systemd's /run/user/UID) or unset it")
        return path
    path = Path(f"/tmp/ketch-run-{uid}")
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    import stat

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise InvalidInputError(f"{path} is not a private directory of yours (owner {info.st_uid}, mode "
                                f"{oct(info.st_mode & 0o777)}); remove it or set XDG_RUNTIME_DIR")
    return path


def default_root() -> Path:
    return data_home() / "ketch" if is_rootless() else Path("/var/lib/ketch")


def default_runroot() -> Path:
    return runtime_dir() / "ketch" if is_rootless() else Path("/run/ketch")


# -- subordinate ids -------------------------------------------------------------

def subordinate_ranges(path: Path, uid: int) -> list[tuple[int, int]]:
    """The user's ranges in /etc/subuid or /etc/subgid (by name or by number), in file order."""
    try:
        names = {pwd.getpwuid(uid).pw_name, str(uid)}
    except KeyError:
        names = {str(uid)}
    ranges = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[2])))
    return ranges


def mappings(uid: int, gid: int) -> tuple[list[IDMap], list[IDMap]]:
    """podman's rootless mapping: 0 is the user, 1 up are the subordinate ranges in order."""
    def build(own: int, ranges: list[tuple[int, int]]) -> list[IDMap]:
        out = [IDMap(0, own, 1)]
        inside = 1
        for start, count in ranges:
            out.append(IDMap(inside, start, count))
            inside += count
        return out

    return build(uid, subordinate_ranges(SUBUID, uid)), build(gid, subordinate_ranges(SUBGID, uid))


def _helper(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserNamespaceError(f"{name} is not installed: rootless ketch needs the setuid helpers newuidmap and "
                                 "newgidmap (Debian: apt install uidmap)")
    info = os.stat(path)
    if not info.st_mode & 0o4000 or info.st_uid != 0:
        if not _has_file_capability(path):
            raise UserNamespaceError(f"{path} is neither setuid root nor given CAP_SETUID/CAP_SETGID: it cannot map "
                                     "subordinate ids (reinstall uidmap)")
    return path


def _has_file_capability(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def write_maps_of(pid: int, uid_map: list[IDMap], gid_map: list[IDMap],
                  helpers: tuple[str, str] | str | None) -> None:
    """Map the ids of process ``pid``'s new user namespace: through newuidmap/newgidmap
    (``helpers``: their paths, or ``"helpers"`` to find them), or (None: a single id, our own) by
    writing the maps ourselves."""
    if helpers == "helpers":
        helpers = (_helper("newuidmap"), _helper("newgidmap"))
    if helpers is None:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", uid_map[0].line()), ("gid_map", gid_map[0].line())):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(text)
        except OSError as exc:
            raise UserNamespaceError(f"writing the id map of the user namespace: {exc.strerror}") from exc
        return
    for helper, entries in zip(helpers, (uid_map, gid_map)):
        args = [str(x) for e in entries for x in (e.inside, e.outside, e.size)]
        import subprocess  # (not at the top: only a new namespace needs it, and it costs ~10 ms)

        result = subprocess.run([helper, str(pid), *args], capture_output=True)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise UserNamespaceError(f"{os.path.basename(helper)} failed: {message[-1] if message else 'no reason given'} "
                                     "(check /etc/subuid and /etc/subgid)")


def _pause_program() -> list[str]:
    catatonit = shutil.which("catatonit") or next((p for p in ("/usr/libexec/podman/catatonit",) if os.path.exists(p)),
                                                  None)
    return [catatonit, "-P"] if catatonit else ["sleep", "infinity"]


def _start_pause(uid: int, gid: int, quiet: bool) -> int:
    """The pause process: made in a new user namespace (mapped as podman maps it) and a mount
    namespace of its own, then it waits forever. Every command of the user joins its
    namespaces, so they all see the same mounts and the same owners, as podman's pause process
    does."""
    from ketch import syscalls as sc

    uid_map, gid_map = mappings(uid, gid)
    if len(uid_map) == 1 or len(gid_map) == 1:
        if not quiet:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            print(f"ketch: warning: no subordinate ids for {name} in /etc/subuid and /etc/subgid: only your own id is "
                  "mapped, so images with files owned by other ids cannot be used (add a range: usermod "
                  f"--add-subuids 100000-165535 --add-subgids 100000-165535 {name})", file=sys.stderr)
        uid_map, gid_map, helpers = uid_map[:1], gid_map[:1], None
    else:
        helpers = (_helper("newuidmap"), _helper("newgidmap"))
    program = _pause_program()
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            os.setsid()
            try:
                sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
            except OSError as exc:
                os.write(to_parent_w, f"E{exc.strerror}".encode())
                os._exit(1)
            os.write(to_parent_w, b"U")
            if os.read(to_child_r, 1) != b"M":
                os._exit(1)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 65536)
            os.chdir("/")
            os.execvp(program[0], program)
        except BaseException:  # noqa: BLE001 (a forked child never returns into the caller)
            os._exit(1)
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        answer = os.read(to_parent_r, 512)
        if not answer.startswith(b"U"):
            os.waitpid(child, 0)
            reason = answer[1:].decode(errors="replace") or "the helper died"
            raise UserNamespaceError(f"cannot make a user namespace: {reason} (is /proc/sys/user/max_user_namespaces "
                                     "0?)")
        try:
            write_maps_of(child, uid_map, gid_map, helpers)
        except UserNamespaceError:
            os.kill(child, 9)
            os.waitpid(child, 0)
            raise
        os.write(to_child_w, b"M")
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)
    return child


def _is_pause(pid: int, uid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid and \
            os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        return False


_session_before_entering: bool | None = None  # (set by enter(): what the caller's environment said)


def in_unshare_session() -> bool:
    """Whether this command was started inside the user's namespace by ``ketch unshare`` or
    ``podman unshare`` (where a user's mounts may be made), not merely entered by ketch itself
    (which also says so to the peers it runs)."""
    if _session_before_entering is not None:
        return _session_before_entering
    return os.environ.get("_CONTAINERS_USERNS_CONFIGURED") == "done"


def enter(*, quiet: bool = False) -> None:
    """Put this process in the user's namespaces (the pause process's user and mount namespaces,
    made by the first command): root inside, the subordinate ids mapped. Must run before any
    thread starts. Does nothing for root or when already inside a namespace."""
    if os.geteuid() == 0 or in_user_namespace():
        return
    import threading

    from ketch import syscalls as sc
    from ketch.filelocks import file_lock

    if threading.active_count() > 1:  # (the kernel refuses setns of a user namespace to a threaded process)
        raise UserNamespaceError("a rootless program must enter ketch's user namespace before it starts threads: "
                                 "call ketch.userns.enter() first")
    uid, gid = os.geteuid(), os.getegid()
    state = runtime_dir() / "ketch"
    state.mkdir(parents=True, exist_ok=True)
    pid_file = state / "pause.pid"
    with file_lock(state / "pause.lock"):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            pid = 0
        if not pid or not _is_pause(pid, uid):
            pid = _start_pause(uid, gid, quiet)
            temporary = pid_file.with_name(f".pause.pid.{os.getpid()}")
            temporary.write_text(str(pid))
            os.replace(temporary, pid_file)
        user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        mount_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.getcwd()
    try:
        sc.setns(user_fd, sc.CLONE_NEWUSER)
        sc.setns(mount_fd, sc.CLONE_NEWNS)
    except OSError as exc:
        raise UserNamespaceError(f"cannot join the user namespace of ketch's pause process {pid}: {exc.strerror}") \
            from exc
    finally:
        os.close(user_fd)
        os.close(mount_fd)
    os.environ[_ENTERED_ENV] = str(uid)
    global _session_before_entering
    _session_before_entering = os.environ.get("_CONTAINERS_USERNS_CONFIGURED") == "done"
    # podman's, skopeo's and buildah's names for "already in the user's namespace": run from a
    # process that entered ours (a user's program, `ketch unshare`), they use it as their own
    # (the mapping is the same) instead of taking this uid 0 for root
    os.environ["_CONTAINERS_USERNS_CONFIGURED"] = "done"
    os.environ["_CONTAINERS_ROOTLESS_UID"] = str(uid)
    os.environ["_CONTAINERS_ROOTLESS_GID"] = str(gid)
    try:
        os.setgroups([])
    except OSError:
        pass  # (a single-id namespace denies setgroups; our groups stay unmapped)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")


def delegated_cgroup() -> bool:
    """Whether this user may make cgroups: a cgroup v2 hierarchy in which our process's cgroup
    directory is writable (a subtree delegated to the user, as systemd delegates user@.service)."""
    return delegation_root() is not None


def delegation_root() -> str | None:
    """The top of the cgroup v2 subtree delegated to this user that holds our process (its path in
    the v2 tree, as ``/user.slice/user-1000.slice/user@1000.service``): our own cgroup if we may
    write it, and each parent up that we may write too. None without one."""
    try:
        with open("/proc/self/cgroup") as f:
            line = next(entry for entry in f.read().splitlines() if entry.startswith("0::"))
    except (OSError, StopIteration):
        return None
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(base, "cgroup.controllers")):
            path = line[3:].rstrip("/")
            if not path or not _writable_cgroup(base + path):
                return None
            while path.rpartition("/")[0] and _writable_cgroup(base + path.rpartition("/")[0]):
                path = path.rpartition("/")[0]
            return path
    return None


def _writable_cgroup(directory: str) -> bool:
    return os.access(directory, os.W_OK) and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK)
