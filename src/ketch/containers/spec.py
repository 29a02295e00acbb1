"""The OCI runtime config of a container: the image's config, the user's options and the engine's
default security profile, laid out as podman lays them out (see docs/containers.md)."""

from __future__ import annotations

import os
import re

from ketch.containers import config as engine_config
from ketch.containers import users
from ketch.containers.options import CreateOptions
from ketch.errors import InvalidInputError
from ketch.userns import delegation_root, is_rootless

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.spectypes import Device, Linux, Mount, Namespace, Process, Spec

if TYPE_CHECKING:
    from ketch.oci.config import ImageConfig

INIT_IN_CONTAINER = "/run/ketch-init"
NOTIFY_DIR_IN_CONTAINER = "/run/notify"
CGROUP_PARENT = "/ketch"


def cgroup_path(options: CreateOptions, container_id: str) -> str | None:
    """The container's cgroup: under ``--cgroup-parent``, else ketch's; for a user, under the
    cgroup v2 subtree delegated to it (``ROOT/ketch/ID``, as podman's user.slice there), and none
    without one (as rootless podman: the container stays in its caller's cgroup)."""
    if is_rootless():
        root = delegation_root()
        if root is None:
            return None
        parent = options.cgroup_parent or f"{root}/ketch"
    else:
        parent = options.cgroup_parent or CGROUP_PARENT
    return f"{parent.rstrip('/')}/{container_id}"


SYSTEMD_INITS = ("/sbin/init", "/usr/sbin/init", "/usr/local/sbin/init")
SYSTEMD_STOP_SIGNAL = "SIGRTMIN+3"  # what makes systemd power off
SYSTEMD_TMPFS = ("/run", "/run/lock", "/tmp", "/var/log/journal")


def systemd_mode(image: ImageConfig, options: CreateOptions) -> bool:
    """podman's systemd mode: ``--systemd=always``, or (true, the default) a command that is
    systemd or an init."""
    if options.systemd == "always":
        return True
    if options.systemd != "true":
        return False
    try:
        program = command_of(image, options)[0]
    except InvalidInputError:
        return False
    return program in SYSTEMD_INITS or os.path.basename(program) == "systemd"


def stop_signal(image: ImageConfig, options: CreateOptions) -> str:
    """--stop-signal, else the image's, else SIGRTMIN+3 in systemd mode, else SIGTERM."""
    return options.stop_signal or image.container_config.get("StopSignal") or \
        (SYSTEMD_STOP_SIGNAL if systemd_mode(image, options) else "SIGTERM")


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


PROXY_VARIABLES = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY",
                   "NO_PROXY")


def _environment(image: ImageConfig, options: CreateOptions, conf: engine_config.EngineConfig, hostname: str,
                 home: str, extra: list[str]) -> list[str]:
    """podman's order: containers.conf's env, the image's, the host's (--env-host) and its proxy
    variables (--http-proxy), then -e/--env-file; --unsetenv takes the defaults away."""
    env: dict[str, str] = {}

    def put(entries: list[str]) -> None:
        for entry in entries:
            key, sep, value = entry.partition("=")
            if sep:
                env[key] = value
            elif key.endswith("*"):  # KEY* takes every host variable with that prefix
                env.update({k: v for k, v in os.environ.items() if k.startswith(key[:-1])})
            elif key in os.environ:  # a bare KEY takes our value, as podman does
                env[key] = os.environ[key]

    if not options.unsetenv_all:
        put(conf.env)
        put(list(image.container_config.get("Env") or []))
    if options.env_host or conf.env_host:
        env.update(os.environ)
    if options.http_proxy and conf.http_proxy:
        env.update({k: os.environ[k] for k in PROXY_VARIABLES if k in os.environ})
    for name in options.unsetenv:  # the image's and containers.conf's defaults (podman keeps HOSTNAME, HOME)
        env.pop(name, None)
    if not options.unsetenv_all:
        env.setdefault("HOSTNAME", hostname)
        env["container"] = "ketch"
        if options.tty:
            env.setdefault("TERM", "xterm")
        env.setdefault("HOME", home)
    put(options.env)
    put(extra)
    for entry in options.env_merge:  # podman's --env-merge: KEY=VALUE with ${KEY}s of what is set so far
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid --env-merge {entry!r}: want KEY=VALUE")
        env[key] = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)
    return [f"{k}={v}" for k, v in env.items()]


def build(*, container_id: str, rootfs: str, userdata: str, image: ImageConfig, options: CreateOptions,
          conf: engine_config.EngineConfig, listen_fds: int = 0, notify_socket: str | None = None,
          netns_path: str | None = None, extra_mounts: list[Mount] | None = None,
          namespace_paths: dict[str, str] | None = None, secret_env: list[str] | None = None) -> Spec:
    """The config.json for one start of the container. ``namespace_paths`` are namespaces to
    join (type -> path: another container's, or one given by path)."""
    from ketch.containers import keepid

    keep = keepid.parse(options.userns, is_rootless())
    user_spec = options.user if options.user is not None else \
        f"{keep.uid}:{keep.gid}" if keep is not None else (image.container_config.get("User") or "0")

    exec_user = users.resolve(rootfs, user_spec, options.group_add, include_primary=options.groups_include_primary)
    user_given = options.user is not None or keep is not None or bool(image.container_config.get("User"))
    if is_rootless() and user_given and exec_user.gid not in exec_user.additional_gids:
        # rootless podman gives a user that is asked for (--user, the image's USER, keep-id) its
        # primary group among its groups too; root's podman does not
        exec_user.additional_gids = sorted({*exec_user.additional_gids, exec_user.gid})
    hostname = options.hostname or container_id[:12]
    args = command_of(image, options)
    systemd = systemd_mode(image, options)
    if options.init:
        args = [INIT_IN_CONTAINER, "--", *args]
    extra_env = []
    if listen_fds:
        extra_env += [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
        if os.environ.get("LISTEN_FDNAMES"):
            extra_env.append(f"LISTEN_FDNAMES={os.environ['LISTEN_FDNAMES']}")
    if notify_socket and options.sdnotify == "container":
        extra_env.append(f"NOTIFY_SOCKET={NOTIFY_DIR_IN_CONTAINER}/{os.path.basename(notify_socket)}")
    if systemd:
        extra_env.append("container=ketch")  # (systemd's sign that it runs in a container, and whose)
    env = _environment(image, options, conf, hostname, exec_user.home, extra_env + list(secret_env or []))
    caps = engine_config.capabilities(conf.default_capabilities, options.cap_add, options.cap_drop, options.privileged)
    rlimits = [engine_config.parse_ulimit(u) for u in conf.default_ulimits] or engine_config.default_rlimits()
    for text in options.ulimits:
        limit = engine_config.parse_ulimit(text)
        rlimits = [r for r in rlimits if r["type"] != limit["type"]] + [limit]
    cwd = options.workdir or image.container_config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidInputError(f"the working directory {cwd!r} must be absolute")
    umask_text = options.umask or conf.umask or "0022"
    try:
        umask = int(umask_text, 8)
    except ValueError as exc:
        raise InvalidInputError(f"invalid umask {umask_text!r}: want an octal number such as 0022") from exc
    if not 0 <= umask <= 0o777:
        raise InvalidInputError(f"invalid umask {umask_text!r}: must be between 0000 and 0777")
    process: Process = {
        "terminal": options.tty,
        "user": {"uid": exec_user.uid, "gid": exec_user.gid, "umask": umask,
                 **({"additionalGids": exec_user.additional_gids} if exec_user.additional_gids else {})},
        "args": args, "env": env, "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
        "noNewPrivileges": options.no_new_privileges,
    }
    if options.oom_score_adj is not None:
        process["oomScoreAdj"] = options.oom_score_adj
    mounts: list[Mount] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     *(["gid=5"] if _gid_mapped(5) else [])]},  # (a single-id user namespace has no tty group)
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if options.privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if options.privileged or systemd else "ro"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777",
                     f"size={options.shm_size if options.shm_size is not None else conf.shm_size}"]},
    ]
    if options.ipc == "host":
        mounts[-1] = {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rw"]}
    if options.pid == "host" and is_rootless():
        # a user may not mount the proc of a pid namespace it does not own: the host's is bound (as podman)
        mounts[0] = {"destination": "/proc", "type": "bind", "source": "/proc",
                     "options": ["rbind", "nosuid", "noexec", "nodev"]}
    own_hosts = not (options.no_hosts or conf.no_hosts)
    for name in (("hosts",) if own_hosts else ()) + ("resolv.conf", "hostname"):
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(userdata, name),
                       "options": ["bind", "rprivate"]})
    timezone = options.tz or conf.tz
    if timezone:
        mounts.append({"destination": "/etc/localtime", "type": "bind", "source": zoneinfo_file(timezone),
                       "options": ["bind", "ro", "rprivate"]})
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
    if systemd:  # podman's systemd mode: what systemd wants fresh at each boot
        taken = {m["destination"] for m in mounts} | {e.partition(":")[0] for e in options.tmpfs}
        for destination in SYSTEMD_TMPFS:
            if destination not in taken:
                mounts.append({"destination": destination, "type": "tmpfs", "source": "tmpfs",
                               "options": ["rw", "rprivate", "nosuid", "nodev", "mode=755"
                                           if destination != "/tmp" else "mode=1777"]})
    if options.init:
        mounts.append({"destination": INIT_IN_CONTAINER, "type": "bind", "source": conf.init_binary(options.init_path),
                       "options": ["bind", "ro", "rprivate"]})
    if notify_socket and options.sdnotify == "container":
        mounts.append({"destination": NOTIFY_DIR_IN_CONTAINER, "type": "bind",
                       "source": os.path.dirname(notify_socket), "options": ["bind", "rprivate"]})
    for mount in extra_mounts or []:  # volumes and binds last: they cover what is beneath
        mounts = [m for m in mounts if m["destination"] != mount["destination"]] + [mount]
    joined = dict(namespace_paths or {})
    namespaces: list[Namespace] = []
    for kind, mode in (("pid", options.pid), ("ipc", options.ipc), ("uts", options.uts)):
        if kind in joined:
            namespaces.append({"type": kind, "path": joined[kind]})
        elif mode != "host":
            namespaces.append({"type": kind})
    namespaces.append({"type": "mount"})
    if options.cgroupns == "private" or (systemd and options.cgroupns is None and "cgroup" not in joined):
        # (systemd must see its own cgroup as the root of the tree it is given)
        namespaces.append({"type": "cgroup"})
    elif "cgroup" in joined:
        namespaces.append({"type": "cgroup", "path": joined["cgroup"]})
    if netns_path:
        namespaces.append({"type": "network", "path": netns_path})  # made and configured by ketch
    elif "network" in joined:
        namespaces.append({"type": "network", "path": joined["network"]})
    elif options.network != "host":
        namespaces.append({"type": "network"})
    own_name: str | None = hostname
    if options.uts == "host" or "uts" in joined:
        own_name = None  # the host's (or the other container's) name stays
    if keep is not None:
        namespaces.insert(0, {"type": "user"})
    linux: Linux = {
        "namespaces": namespaces,
        # every device denied (the runtime still allows the default nodes), all of them when privileged
        "resources": {"devices": [{"allow": options.privileged, "access": "rwm"}]},
    }
    cgroup = cgroup_path(options, container_id)
    if cgroup is not None:
        linux["cgroupsPath"] = cgroup
    if keep is not None:
        linux["uidMappings"] = keep.uid_mappings  # type: ignore[typeddict-item]
        linux["gidMappings"] = keep.gid_mappings  # type: ignore[typeddict-item]
    unmask_all = "ALL" in options.unmask or options.privileged
    if not unmask_all:
        masked = engine_config.MASKED_PATHS if options.masked_paths is None else options.masked_paths
        read_only = engine_config.READONLY_PATHS if options.readonly_paths is None else options.readonly_paths
        linux["maskedPaths"] = [p for p in masked if p not in options.unmask]
        linux["readonlyPaths"] = [p for p in read_only if p not in options.unmask]
    resources = linux["resources"]
    resources.update(limit_resources(options))
    if not options.privileged:
        resources["devices"] += [device_cgroup_rule(text) for text in options.device_cgroup_rules]
    if options.personality:
        linux["personality"] = {"domain": options.personality}
    if options.devices and not options.privileged and is_rootless():
        # a user cannot make device nodes: the host's are bound in, as rootless podman does (and
        # no device cgroup limits them: the user's own permissions on the node do)
        for text in options.devices:
            device, rule = device_entry(text)
            mounts.append({"destination": device["path"], "type": "bind", "source": text.split(":")[0],
                           "options": ["rbind", "nosuid", "noexec", "rw" if "w" in rule["access"] else "ro"]})
    elif options.devices and not options.privileged:
        linux["devices"] = []
        for text in options.devices:
            device, rule = device_entry(text)
            linux["devices"].append(device)
            resources["devices"].append(rule)
    sysctls = {}
    for entry in conf.default_sysctls:
        key, _, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith("net.") and options.network == "host":
            continue  # the host's network namespace is not ours to change (podman skips these too)
        sysctls[key] = value
    for key, value in options.sysctls.items():
        if key.startswith("net.") and options.network == "host":
            raise InvalidInputError(f"sysctl {key!r} is not allowed with --network host: it would change the "
                                    "host's network")
        if key.startswith("kernel.") and not key.startswith(("kernel.msg", "kernel.sem", "kernel.shm")):
            raise InvalidInputError(f"sysctl {key!r} is not namespaced: not allowed in a container")
        sysctls[key] = value
    if keep is not None and netns_path:
        # the container's own user namespace does not own the network namespace ketch made for it:
        # its net.* sysctls are written by ketch, from the namespace that owns it
        from ketch.containers.netns import write_sysctls

        write_sysctls(netns_path, {k: v for k, v in sysctls.items() if k.startswith("net.")})
        sysctls = {k: v for k, v in sysctls.items() if not k.startswith("net.")}
    if sysctls:
        linux["sysctl"] = sysctls
    if options.privileged:
        linux["devices"] = _host_devices()
    profile = options.seccomp_profile
    if not options.privileged and profile != "unconfined":
        path = profile or str(conf.seccomp_file())
        from pathlib import Path

        profile_json = engine_config.seccomp_for(Path(path), [c[4:] for c in caps])
        if profile_json is not None:
            linux["seccomp"] = profile_json
    # A bind mount that shares or receives mounts needs the container's tree to do so as well:
    # rshared for shared ones (a mount made in the container reaches the host), rslave for
    # slaves (the runtime's default); as podman and containerd set rootfsPropagation.
    bind_propagation = {o for m in mounts for o in m.get("options") or [] if o in ("shared", "rshared", "slave",
                                                                                    "rslave")}
    if bind_propagation & {"shared", "rshared"}:
        linux["rootfsPropagation"] = "rshared"
    elif bind_propagation:
        linux["rootfsPropagation"] = "rslave"
    config: Spec = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": options.read_only},
        "mounts": mounts,
        "annotations": dict(options.annotations),
        "linux": linux,
    }
    if own_name is not None:
        config["hostname"] = own_name
    return config


def zoneinfo_file(timezone: str) -> str:
    """--tz: ``local`` is the host's /etc/localtime; otherwise an Area/City of the host's zoneinfo."""
    if timezone == "local":
        return os.path.realpath("/etc/localtime")
    path = os.path.normpath(os.path.join("/usr/share/zoneinfo", timezone))
    if not path.startswith("/usr/share/zoneinfo/") or not os.path.isfile(path):
        raise InvalidInputError(f"--tz {timezone!r}: no such time zone in /usr/share/zoneinfo")
    return path


def device_cgroup_rule(text: str) -> dict[str, Any]:
    """``--device-cgroup-rule "TYPE MAJOR:MINOR ACCESS"`` (``c 1:3 mr``, ``b *:* rwm``): a rule of
    the container's device cgroup."""
    parts = text.split()
    numbers = parts[1].split(":") if len(parts) == 3 else []
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or len(numbers) != 2 or \
            not all(n == "*" or n.isdigit() for n in numbers) or not parts[2] or not set(parts[2]) <= set("rwm"):
        raise InvalidInputError(f"invalid device cgroup rule {text!r}: want TYPE MAJOR:MINOR ACCESS, as c 1:3 rwm")
    major, minor = (-1 if n == "*" else int(n) for n in numbers)
    return {"allow": True, "type": parts[0], "major": major, "minor": minor, "access": parts[2]}


def _block_device(text: str, what: str) -> tuple[str, dict[str, int]]:
    """``DEVICE:VALUE`` of the --blkio/--device-*-bps flags: the value, and the block device's numbers."""
    import stat

    path, sep, value = text.rpartition(":")
    if not sep or not path or not value:
        raise InvalidInputError(f"invalid {what} {text!r}: want DEVICE:VALUE")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidInputError(f"{what} {path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidInputError(f"{what} {path}: not a block device")
    return value, {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


def limit_resources(options: CreateOptions) -> dict[str, Any]:
    """The OCI ``linux.resources`` of the container's limits (memory, CPU, huge pages, PIDs,
    block I/O; not devices): what a container starts with, and what ``update`` gives a running one."""
    resources: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if options.memory:  # 0 means no limit, as podman reads it
        memory["limit"] = options.memory
    if options.memory_reservation:
        memory["reservation"] = options.memory_reservation
    if options.memory_swap:
        memory["swap"] = options.memory_swap
    if options.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if options.memory_swappiness is not None and options.memory_swappiness >= 0:
        memory["swappiness"] = options.memory_swappiness
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if options.cpus is not None:
        cpu.update(quota=int(options.cpus * 100000), period=100000)
    if options.cpu_quota is not None:
        cpu["quota"] = options.cpu_quota
    if options.cpu_period is not None:
        cpu["period"] = options.cpu_period
    if options.cpu_shares is not None:
        cpu["shares"] = options.cpu_shares
    if options.cpuset_cpus:
        cpu["cpus"] = options.cpuset_cpus
    if options.cpuset_mems:
        cpu["mems"] = options.cpuset_mems
    if options.cpu_rt_period is not None:
        cpu["realtimePeriod"] = options.cpu_rt_period
    if options.cpu_rt_runtime is not None:
        cpu["realtimeRuntime"] = options.cpu_rt_runtime
    if cpu:
        resources["cpu"] = cpu
    if options.hugepage_limits:
        resources["hugepageLimits"] = [{"pageSize": size, "limit": limit}
                                       for size, limit in sorted(options.hugepage_limits.items())]
    if options.pids_limit is not None and options.pids_limit > 0:
        resources["pids"] = {"limit": options.pids_limit}
    block_io = _block_io(options)
    if block_io:
        resources["blockIO"] = block_io
    return resources


def _block_io(options: CreateOptions) -> dict[str, Any]:
    from ketch.containers.options import parse_memory

    block_io: dict[str, Any] = {}
    if options.blkio_weight is not None:
        block_io["weight"] = options.blkio_weight
    for text in options.blkio_weight_devices:
        value, device = _block_device(text, "--blkio-weight-device")
        if not value.isdigit():
            raise InvalidInputError(f"invalid --blkio-weight-device {text!r}: the weight is a number")
        block_io.setdefault("weightDevice", []).append({**device, "weight": int(value)})
    for key, flag, entries in (("throttleReadBpsDevice", "--device-read-bps", options.device_read_bps),
                               ("throttleWriteBpsDevice", "--device-write-bps", options.device_write_bps),
                               ("throttleReadIOPSDevice", "--device-read-iops", options.device_read_iops),
                               ("throttleWriteIOPSDevice", "--device-write-iops", options.device_write_iops)):
        for text in entries:
            value, device = _block_device(text, flag)
            if "iops" in flag:
                if not value.isdigit():
                    raise InvalidInputError(f"invalid {flag} {text!r}: the rate is a number")
                rate = int(value)
            else:
                rate = parse_memory(value)
            block_io.setdefault(key, []).append({**device, "rate": rate})
    return block_io


def device_entry(text: str) -> tuple[Device, dict[str, Any]]:
    """``--device HOST[:CONTAINER][:PERMISSIONS]``: the device node and its cgroup rule."""
    import stat

    parts = text.split(":")
    host = parts[0]
    container = host
    permissions = "rwm"
    if len(parts) == 2:
        if set(parts[1]) <= set("rwm") and parts[1]:
            permissions = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, permissions = parts[1], parts[2]
    elif len(parts) > 3:
        raise InvalidInputError(f"invalid --device {text!r}: want HOST[:CONTAINER][:PERMISSIONS]")
    if not permissions or not set(permissions) <= set("rwm"):
        raise InvalidInputError(f"invalid --device {text!r}: permissions are made of r, w and m")
    try:
        st = os.stat(host)
    except OSError as exc:
        raise InvalidInputError(f"--device {host}: {exc.strerror}") from exc
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidInputError(f"--device {host}: not a device node")
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device: Device = {"path": container, "type": kind, "major": major, "minor": minor,
              "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0}
    return device, {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions}


def _host_devices() -> list[Device]:
    """--privileged: the host's device nodes (the top of /dev), as podman adds them."""
    import stat

    out: list[Device] = []
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


def hosts_base(hostname: str, name: str, options: CreateOptions, addresses: list[str],
               conf: engine_config.EngineConfig | None = None) -> str:
    """/etc/hosts without the other containers of the networks (added by the engine): the
    host's with --network host, containers.conf's base_hosts_file where it names one, else
    podman's minimal one; then the container's own names and --add-host entries."""
    base_file = conf.base_hosts_file if conf else ""
    if options.network == "host" or base_file:
        text = _read(base_file if base_file and base_file != "none" else "/etc/hosts") if base_file != "none" \
            else ""
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


def resolv_conf(options: CreateOptions, conf: engine_config.EngineConfig | None = None) -> str:
    """/etc/resolv.conf as podman writes it: the host's (without loopback servers, which a
    container's own network cannot reach; all of it with --network host), with --dns,
    --dns-search and --dns-option (or containers.conf's dns_servers, dns_searches, dns_options)
    in place of the host's servers, search domains and options."""
    servers = list(options.dns) or list(conf.dns_servers if conf else [])
    searches = list(options.dns_search) or list(conf.dns_searches if conf else [])
    extra_options = list(options.dns_options) or list(conf.dns_options if conf else [])
    host = _read("/etc/resolv.conf") if options.network != "none" or servers else ""
    host_servers, host_searches, host_options = [], [], []
    for line in host.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            host_servers.append(words[1])
        elif words[0] in ("search", "domain"):
            host_searches = words[1:]
        elif words[0] == "options":
            host_options += words[1:]
    if options.network == "host" and not (servers or searches or extra_options):
        return host
    if not servers:
        servers = [s for s in host_servers if not (s.startswith("127.") or s == "::1")] \
            if options.network != "host" else host_servers
        if options.network == "none":
            servers = []
    if searches == ["."]:
        searches = []
    elif not searches:
        searches = host_searches
    text = ""
    if searches:
        text += "search " + " ".join(searches) + "\n"
    text += "".join(f"nameserver {server}\n" for server in servers)
    opts = extra_options or host_options
    if opts:
        text += "options " + " ".join(opts) + "\n"
    return text


def etc_files(userdata: str, hostname: str, options: CreateOptions, image_name: str, image_id: str,
              container_id: str, name: str, hosts: str, conf: engine_config.EngineConfig | None = None) -> None:
    """/etc/hosts, /etc/resolv.conf, /etc/hostname and /run/.containerenv, as podman writes them."""
    _write(os.path.join(userdata, "hosts"), hosts)
    _write(os.path.join(userdata, "resolv.conf"), resolv_conf(options, conf))
    _write(os.path.join(userdata, "hostname"), hostname + "\n")
    _write(os.path.join(userdata, ".containerenv"),
           f'engine="ketch"\nname="{name}"\nid="{container_id}"\nimage="{image_name}"\n'
           f'imageid="{image_id}"\nrootless={1 if is_rootless() else 0}\n')


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


def _gid_mapped(gid: int) -> bool:
    """Whether ``gid`` exists in our user namespace (always, outside one)."""
    try:
        with open("/proc/self/gid_map") as f:
            for line in f:
                inside, _, size = (int(x) for x in line.split())
                if inside <= gid < inside + size:
                    return True
    except (OSError, ValueError):
        return True
    return False
