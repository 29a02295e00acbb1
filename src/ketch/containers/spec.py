"""The OCI runtime config of a container: the image's config, the user's options and the engine's
default security profile, laid out as podman lays them out (see docs/containers.md)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ketch.containers import config as engine_config
from ketch.containers import users
from ketch.containers.options import CreateOptions
from ketch.errors import InvalidInputError

if TYPE_CHECKING:
    from ketch.oci.config import ImageConfig

INIT_IN_CONTAINER = "/run/ketch-init"
NOTIFY_DIR_IN_CONTAINER = "/run/notify"
CGROUP_PARENT = "/ketch"


def command_of(image: ImageConfig, options: CreateOptions) -> list[str]:
    """Entrypoint + Cmd as podman combines them; ``--entrypoint`` replaces the image's and clears
    its Cmd."""
    entrypoint = list(image.container_config.get("Entrypoint") or []) if options.entrypoint is None else list(options.entrypoint)
    if options.command:
        cmd = list(options.command)
    elif options.entrypoint is not None:
        cmd = []
    else:
        cmd = list(image.container_config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidInputError("no command given and the image has no Entrypoint or Cmd")
    return args


def _environment(image: ImageConfig, options: CreateOptions, conf: engine_config.EngineConfig, hostname: str,
                 home: str, extra: list[str]) -> list[str]:
    env: dict[str, str] = {}

    def put(entries: list[str]) -> None:
        for entry in entries:
            key, sep, value = entry.partition("=")
            if sep:
                env[key] = value
            elif key in os.environ:  # a bare KEY takes our value, as podman does
                env[key] = os.environ[key]

    put(conf.env)
    put(list(image.container_config.get("Env") or []))
    env.setdefault("HOSTNAME", hostname)
    env["container"] = "ketch"
    if options.tty:
        env.setdefault("TERM", "xterm")
    env.setdefault("HOME", home)
    put(options.env)
    put(extra)
    return [f"{k}={v}" for k, v in env.items()]


def build(*, container_id: str, rootfs: str, userdata: str, image: ImageConfig, options: CreateOptions,
          conf: engine_config.EngineConfig, listen_fds: int = 0, notify_socket: str | None = None,
          netns_path: str | None = None, extra_mounts: list[dict] | None = None) -> dict[str, Any]:
    """The config.json for one start of the container."""
    user_spec = options.user if options.user is not None else (image.container_config.get("User") or "0")
    exec_user = users.resolve(rootfs, user_spec, options.group_add)
    hostname = options.hostname or container_id[:12]
    args = command_of(image, options)
    if options.init:
        args = [INIT_IN_CONTAINER, "--", *args]
    extra_env = []
    if listen_fds:
        extra_env += [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
        if os.environ.get("LISTEN_FDNAMES"):
            extra_env.append(f"LISTEN_FDNAMES={os.environ['LISTEN_FDNAMES']}")
    if notify_socket and options.sdnotify == "container":
        extra_env.append(f"NOTIFY_SOCKET={NOTIFY_DIR_IN_CONTAINER}/{os.path.basename(notify_socket)}")
    env = _environment(image, options, conf, hostname, exec_user.home, extra_env)
    caps = engine_config.capabilities(conf.default_capabilities, options.cap_add, options.cap_drop, options.privileged)
    rlimits = [engine_config.parse_ulimit(u) for u in conf.default_ulimits] or engine_config.default_rlimits()
    for text in options.ulimits:
        limit = engine_config.parse_ulimit(text)
        rlimits = [r for r in rlimits if r["type"] != limit["type"]] + [limit]
    cwd = options.workdir or image.container_config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidInputError(f"the working directory {cwd!r} must be absolute")
    process: dict[str, Any] = {
        "terminal": options.tty,
        "user": {"uid": exec_user.uid, "gid": exec_user.gid,
                 **({"additionalGids": exec_user.additional_gids} if exec_user.additional_gids else {})},
        "args": args, "env": env, "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
        "noNewPrivileges": options.no_new_privileges,
    }
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if options.privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if options.privileged else "ro"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]
    for name in ("hosts", "resolv.conf", "hostname"):
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(userdata, name),
                       "options": ["bind", "rprivate"]})
    mounts.append({"destination": "/run/.containerenv", "type": "bind",
                   "source": os.path.join(userdata, ".containerenv"), "options": ["bind", "rprivate"]})
    if options.read_only and options.read_only_tmpfs:
        for destination in ("/tmp", "/var/tmp", "/run"):
            mounts.append({"destination": destination, "type": "tmpfs", "source": "tmpfs",
                           "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]})
    for entry in options.tmpfs:
        destination, _, tmpfs_options = entry.partition(":")
        mounts = [m for m in mounts if m["destination"] != destination]
        mounts.append({"destination": destination, "type": "tmpfs", "source": "tmpfs",
                       "options": (tmpfs_options.split(",") if tmpfs_options else [])
                       + ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]})
    if options.init:
        mounts.append({"destination": INIT_IN_CONTAINER, "type": "bind", "source": conf.init_binary(),
                       "options": ["bind", "ro", "rprivate"]})
    if notify_socket and options.sdnotify == "container":
        mounts.append({"destination": NOTIFY_DIR_IN_CONTAINER, "type": "bind",
                       "source": os.path.dirname(notify_socket), "options": ["bind", "rprivate"]})
    for mount in extra_mounts or []:  # volumes and binds last: they cover what is beneath
        mounts = [m for m in mounts if m["destination"] != mount["destination"]] + [mount]
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if netns_path:
        namespaces.append({"type": "network", "path": netns_path})  # made and configured by ketch
    elif options.network != "host":
        namespaces.append({"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": f"{CGROUP_PARENT}/{container_id}",
        # every device denied (the runtime still allows the default nodes), all of them when privileged
        "resources": {"devices": [{"allow": options.privileged, "access": "rwm"}]},
    }
    unmask_all = "ALL" in options.unmask or options.privileged
    if not unmask_all:
        linux["maskedPaths"] = [p for p in engine_config.MASKED_PATHS if p not in options.unmask]
        linux["readonlyPaths"] = [p for p in engine_config.READONLY_PATHS if p not in options.unmask]
    resources = linux["resources"]
    if options.memory is not None:
        resources["memory"] = {"limit": options.memory}
    if options.cpus is not None:
        resources["cpu"] = {"quota": int(options.cpus * 100000), "period": 100000}
    if options.pids_limit is not None:
        resources["pids"] = {"limit": options.pids_limit}
    sysctls = {}
    for entry in conf.default_sysctls:
        key, _, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith("net.") and options.network == "host":
            continue  # the host's network namespace is not ours to change (podman skips these too)
        sysctls[key] = value
    if sysctls:
        linux["sysctl"] = sysctls
    if options.privileged:
        linux["devices"] = _host_devices()
    profile = options.seccomp_profile
    if not options.privileged and profile != "unconfined":
        path = profile or str(conf.seccomp_file())
        from pathlib import Path

        linux["seccomp"] = engine_config.seccomp_for(Path(path), [c[4:] for c in caps])
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": options.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": dict(options.annotations),
        "linux": linux,
    }


def _host_devices() -> list[dict[str, Any]]:
    """--privileged: the host's device nodes (the top of /dev), as podman adds them."""
    import stat

    out = []
    for entry in sorted(os.listdir("/dev")):
        path = os.path.join("/dev", entry)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if entry in ("console", "tty", "ptmx", "null", "zero", "full", "random", "urandom"):
                continue  # the runtime makes these
            out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def hosts_base(hostname: str, name: str, options: CreateOptions, addresses: list[str]) -> str:
    """/etc/hosts without the other containers of the networks (added by the engine)."""
    if options.network == "host":
        text = _read("/etc/hosts")
        text += "" if text.endswith("\n") or not text else "\n"
    else:
        text = "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n"
    own = addresses or ["127.0.1.1"]
    for address in own:
        text += f"{address}\t{hostname} {name}\n"
    for entry in options.add_host:
        host, _, address = entry.partition(":")
        text += f"{address}\t{host}\n"
    return text


def resolv_conf(options: CreateOptions) -> str:
    """--dns servers; else the host's file (without loopback servers, which a container's own
    network cannot reach); nothing without a network."""
    if options.dns:
        return "".join(f"nameserver {server}\n" for server in options.dns)
    if options.network == "none":
        return ""
    text = _read("/etc/resolv.conf")
    if options.network == "host":
        return text
    return "".join(line + "\n" for line in text.splitlines()
                   if not (line.startswith("nameserver") and line.split()[1:2] and
                           (line.split()[1].startswith("127.") or line.split()[1] == "::1")))


def etc_files(userdata: str, hostname: str, options: CreateOptions, image_name: str, image_id: str,
              container_id: str, name: str, hosts: str) -> None:
    """/etc/hosts, /etc/resolv.conf, /etc/hostname and /run/.containerenv, as podman writes them."""
    _write(os.path.join(userdata, "hosts"), hosts)
    _write(os.path.join(userdata, "resolv.conf"), resolv_conf(options))
    _write(os.path.join(userdata, "hostname"), hostname + "\n")
    _write(os.path.join(userdata, ".containerenv"),
           f'engine="ketch"\nname="{name}"\nid="{container_id}"\nimage="{image_name}"\n'
           f'imageid="{image_id}"\nrootless=0\n')


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
