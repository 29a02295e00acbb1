"""The flags of ``ketch run`` and ``ketch create``, as podman's, and the CreateOptions they make."""

from __future__ import annotations

import argparse
import os
import sys

from ketch.cli.flags import add_bool, non_negative_int
from ketch.errors import InvalidInputError

UNSUPPORTED_WITH_REASON = {
    "subuidname": "explicit id maps are not supported yet (--userns host, keep-id and auto are)",
    "subgidname": "explicit id maps are not supported yet (--userns host, keep-id and auto are)",
    "hostuser": "ketch does not add host users to the container's /etc/passwd",
    "passwd_entry": "ketch does not add entries to the container's /etc/passwd",
    "chrootdirs": "ketch does not manage chroot directories in containers",
    "init_ctr": "ketch's pods have no infra container (their namespaces are pinned), so no init containers",
    "cgroup_conf": "--cgroup-conf needs cgroup v2 (this host: v1 controllers)" if not os.path.exists(
        "/sys/fs/cgroup/cgroup.controllers") else "--cgroup-conf is not supported yet",
    "health_on_failure": "health check actions are not supported yet: a failing check only marks the container "
                         "unhealthy",
    "pod_id_file": "--pod-id-file is not supported: name the pod with --pod",
    "uidmap": "explicit id maps are not supported yet (--userns host, keep-id and auto are)",
    "gidmap": "explicit id maps are not supported yet (--userns host, keep-id and auto are)",
    "ip6": "ketch's networks are IPv4 only",
    "mac_address": "ketch does not set MAC addresses",
    "rootfs": "--rootfs is not supported: run an image",
}


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--help", action="help", help="show this help")
    parser.add_argument("--name", help="the container's name")
    parser.add_argument("--replace", action="store_true", help="remove a container of the same name first")
    parser.add_argument("--rm", action="store_true", help="remove the container (and its anonymous volumes) "
                                                          "when it exits")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    parser.add_argument("-a", "--attach", action="append", default=[], metavar="STDIN|STDOUT|STDERR",
                        help="the streams to attach (default all)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE")
    parser.add_argument("--env-host", action="store_true", help="every variable of ours, in the container")
    add_bool(parser, "--http-proxy", default=True, help="the host's proxy variables in the container "
                                                        "(default true)")
    parser.add_argument("--unsetenv", action="append", default=[], metavar="KEY",
                        help="leave out a default variable")
    parser.add_argument("--unsetenv-all", action="store_true", help="leave out every default variable")
    parser.add_argument("-w", "--workdir", metavar="DIR")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]")
    parser.add_argument("--group-add", action="append", default=[], metavar="GROUP")
    parser.add_argument("--entrypoint", metavar="CMD", help='a command, or a JSON array; "" clears it')
    parser.add_argument("--read-only", action="store_true", help="a read-only root file system")
    add_bool(parser, "--read-only-tmpfs", default=True, help="with --read-only, tmpfs on /tmp, /run, /var/tmp")
    parser.add_argument("--tmpfs", action="append", default=[], metavar="DEST[:OPTIONS]")
    parser.add_argument("-h", "--hostname", metavar="NAME")
    parser.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    parser.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    parser.add_argument("--privileged", action="store_true", help="every capability, no confinement")
    parser.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                        help="seccomp=PROFILE|unconfined, no-new-privileges, label=disable, unmask=PATHS|ALL")
    parser.add_argument("-m", "--memory", metavar="SIZE", help="memory limit (0: none)")
    parser.add_argument("--memory-reservation", metavar="SIZE")
    parser.add_argument("--memory-swap", metavar="SIZE", help="memory plus swap (-1: unlimited)")
    parser.add_argument("--cpus", type=float, metavar="N")
    parser.add_argument("-c", "--cpu-shares", type=int, metavar="N")
    parser.add_argument("--cpu-quota", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpu-period", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpuset-cpus", metavar="CPUS")
    parser.add_argument("--cpuset-mems", metavar="NODES")
    parser.add_argument("--pids-limit", type=int, metavar="N", help="-1 or 0: no limit")
    parser.add_argument("--oom-score-adj", type=int, metavar="N")
    parser.add_argument("--oom-kill-disable", action="store_true")
    parser.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    parser.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm (default 64m)")
    parser.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", action="append", default=[], metavar="HOST[:CONTAINER][:PERMISSIONS]")
    parser.add_argument("--umask", metavar="MASK", help="the process's umask (default 0022)")
    parser.add_argument("--tz", metavar="TIMEZONE", help="local, or an Area/City of /usr/share/zoneinfo")
    parser.add_argument("--network", "--net", default="bridge", metavar="MODE",
                        help="bridge (the default network), none, host, private, container:NAME, ns:PATH, or "
                             "network names (comma-separated)")
    parser.add_argument("--pid", metavar="MODE", help="host, private, container:NAME or ns:PATH")
    parser.add_argument("--ipc", metavar="MODE", help="host, private, shareable, container:NAME or ns:PATH")
    parser.add_argument("--uts", metavar="MODE", help="host, private, container:NAME or ns:PATH")
    parser.add_argument("--cgroupns", metavar="MODE", help="host or private")
    parser.add_argument("--ip", metavar="ADDRESS", help="the container's address on its (first) network")
    parser.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                        help="another name of the container on its networks (other containers resolve it)")
    parser.add_argument("--dns", action="append", default=[], metavar="ADDRESS")
    parser.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN")
    parser.add_argument("--dns-option", "--dns-opt", dest="dns_option", action="append", default=[],
                        metavar="OPTION")
    parser.add_argument("--add-host", action="append", default=[], metavar="NAME:IP")
    parser.add_argument("--no-hosts", action="store_true", help="no /etc/hosts of ketch's: the image's own")
    parser.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]PORT[/PROTO]")
    parser.add_argument("-P", "--publish-all", action="store_true", help="publish every exposed port")
    parser.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="[SOURCE:]DEST[:OPTIONS]")
    parser.add_argument("--mount", action="append", default=[],
                        metavar="type=bind|volume|tmpfs|image|devpts|ramfs,...")
    parser.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME[,type=mount|env][,target=...]")
    parser.add_argument("--preserve-fds", type=non_negative_int, default=0, metavar="N")
    parser.add_argument("--sdnotify", default="container", choices=["container", "conmon", "ignore"])
    parser.add_argument("--stop-signal", metavar="SIGNAL")
    parser.add_argument("--stop-timeout", type=non_negative_int, default=10, metavar="SECONDS")
    parser.add_argument("--timeout", type=non_negative_int, default=0, metavar="SECONDS",
                        help="kill the container after this many seconds")
    parser.add_argument("--restart", default="", metavar="POLICY", help="no, always, on-failure[:N], unless-stopped")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label-file", action="append", default=[], metavar="FILE")
    parser.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-driver", default=None, choices=["k8s-file", "none", "passthrough"])
    parser.add_argument("--log-opt", action="append", default=[], metavar="path=...|max-size=...|tag=...")
    parser.add_argument("--cidfile", metavar="FILE", help="write the container's id here")
    parser.add_argument("--pidfile", metavar="FILE", help="write the container's process id here")
    parser.add_argument("--init", action="store_true", help="run an init (catatonit) as the container's pid 1")
    parser.add_argument("--init-path", metavar="PATH", help="the init binary for --init")
    parser.add_argument("--health-cmd", metavar="COMMAND", help="a health check: a command line, or none")
    parser.add_argument("--health-interval", metavar="DURATION", help="between checks (default 30s; disable)")
    parser.add_argument("--health-retries", type=int, metavar="N", help="failures before unhealthy (default 3)")
    parser.add_argument("--health-start-period", metavar="DURATION", help="failures then do not count (default 0s)")
    parser.add_argument("--health-timeout", metavar="DURATION", help="longest a check may take (default 30s)")
    parser.add_argument("--no-healthcheck", action="store_true", help="no health check, not even the image's")
    parser.add_argument("--pull", default="missing", choices=["always", "missing", "never", "newer"])
    parser.add_argument("-q", "--quiet", action="store_true", help="no report of a pull")
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    parser.add_argument("--arch", metavar="ARCH")
    parser.add_argument("--os", metavar="OS")
    parser.add_argument("--variant", metavar="VARIANT")
    parser.add_argument("--authfile", metavar="PATH")
    parser.add_argument("--creds", metavar="USER[:PASS]")
    parser.add_argument("--cert-dir", metavar="DIR")
    parser.add_argument("--runtime", metavar="PATH", help="a runc-compatible runtime instead of ketch's own")
    parser.add_argument("--systemd", default="true", choices=["true", "false", "always"],
                        help="systemd mode (tmpfs /run, /run/lock, /tmp, /var/log/journal; a writable cgroup "
                             "in its own namespace; container=ketch; stop signal SIGRTMIN+3): always, or "
                             "true (the default) when the command is systemd or an init")
    parser.add_argument("--cgroup-manager", help=argparse.SUPPRESS)
    add_bool(parser, "--tls-verify", help="for pulling: require HTTPS and verify certificates")
    parser.add_argument("--pod", metavar="NAME", help="run in the pod's namespaces (ketch pod create)")
    parser.add_argument("--userns", default="", metavar="MODE",
                        help="host (the default), keep-id[:uid=UID,gid=GID] (rootless: your ids inside too) or "
                             "auto[:size=N] (root: a range of the containers user's subordinate ids)")
    for flag in ("--pod-id-file", "--uidmap", "--gidmap", "--ip6", "--mac-address"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--rootfs", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--subuidname", "--subgidname", "--hostuser", "--passwd-entry", "--chrootdirs", "--init-ctr",
                 "--cgroup-conf", "--health-on-failure"):
        parser.add_argument(flag, action="append", help=argparse.SUPPRESS)
    parser.add_argument("--device-cgroup-rule", action="append", default=[], metavar="'TYPE MAJOR:MINOR ACCESS'",
                        help="a rule of the container's device cgroup (c 1:3 rwm)")
    parser.add_argument("--blkio-weight", type=int, metavar="10-1000")
    parser.add_argument("--blkio-weight-device", action="append", default=[], metavar="DEVICE:WEIGHT")
    for flag, unit in (("--device-read-bps", "RATE"), ("--device-write-bps", "RATE"),
                       ("--device-read-iops", "N"), ("--device-write-iops", "N")):
        parser.add_argument(flag, action="append", default=[], metavar=f"DEVICE:{unit}")
    parser.add_argument("--memory-swappiness", type=int, metavar="0-100")
    parser.add_argument("--cpu-rt-period", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpu-rt-runtime", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cgroup-parent", metavar="PATH", help="the cgroup the container's goes under")
    parser.add_argument("--cgroups", default="enabled", choices=["enabled", "disabled", "no-conmon", "split"])
    parser.add_argument("--env-merge", action="append", default=[], metavar="KEY=VALUE",
                        help="a variable made of others: PATH=/app/bin:${PATH}")
    parser.add_argument("--conmon-pidfile", metavar="FILE", help="write the container's monitor's pid here")
    parser.add_argument("--image-volume", default="bind", choices=["bind", "tmpfs", "ignore"],
                        help="the image's VOLUMEs: new volumes (bind), tmpfs, or nothing")
    parser.add_argument("--personality", choices=["LINUX", "LINUX32"])
    parser.add_argument("--rmi", action="store_true", help="remove the image too after the container (implies --rm)")
    parser.add_argument("--requires", action="append", default=[], metavar="CONTAINER[,CONTAINER]",
                        help="containers to start first")
    parser.add_argument("--seccomp-policy", default="default", choices=["default", "image"])
    add_bool(parser, "--passwd", default=True, help="accepted: ketch never adds /etc/passwd entries")
    add_bool(parser, "--disable-content-trust", help="accepted (a no-op, as in podman)")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _comma_list(values: list[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def _labels(args) -> dict[str, str]:
    from ketch.containers.options import parse_key_values

    labels: dict[str, str] = {}
    for path in args.label_file:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip() and not line.strip().startswith("#")]
        except OSError as exc:
            raise InvalidInputError(f"--label-file {path}: {exc.strerror}") from exc
        labels.update(parse_key_values(lines, "label"))
    labels.update(parse_key_values(args.label, "label"))
    unit = os.environ.get("PODMAN_SYSTEMD_UNIT")
    if unit:  # (as podman: the unit that runs the container, for auto-update to restart)
        labels.setdefault("PODMAN_SYSTEMD_UNIT", unit)
    return labels


def _log_opts(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("path", "max-size", "tag", "size"):
            raise InvalidInputError(f"invalid --log-opt {item!r}: want path=, max-size= or tag=")
        out["max-size" if key == "size" else key] = value
    return out


def _namespace_flag(value: str | None) -> str | None:
    if value in (None, "", "private"):
        return value or None
    return value


def build_options(args):
    """CreateOptions from the parsed flags (one place, for run and create)."""
    from ketch.containers import CreateOptions
    from ketch.containers.health import parse_healthcheck
    from ketch.containers.options import parse_key_values, parse_memory, parse_restart, read_env_file
    from ketch.containers.secrets import parse_secret
    from ketch.containers.volumes import parse_mount, parse_volume

    for key, reason in UNSUPPORTED_WITH_REASON.items():
        if getattr(args, key, None):
            raise InvalidInputError(f"--{key.replace('_', '-')}: {reason}")
    if args.userns:
        from ketch.containers import keepid
        from ketch.userns import is_rootless

        keepid.parse(args.userns, is_rootless())  # (a bad mode refused before anything is pulled or made)
    if args.cgroups not in ("enabled", "split"):
        raise InvalidInputError(f"--cgroups {args.cgroups}: ketch always gives a container its own cgroup")
    if args.cgroups == "split":
        if args.cgroup_parent:
            raise InvalidInputError("--cgroups split and --cgroup-parent cannot be given together")
        from ketch.runtime.cgroups import own_cgroup

        # podman's split: the container's cgroup under the caller's (a systemd unit's)
        args.cgroup_parent = own_cgroup()
    if args.seccomp_policy == "image":
        raise InvalidInputError("--seccomp-policy image: ketch does not take seccomp profiles from images")
    env = [entry for path in args.env_file for entry in read_env_file(path)] + list(args.env)
    entrypoint = None
    if args.entrypoint is not None:
        from ketch.containers.commit import json_words

        entrypoint = json_words(args.entrypoint, "--entrypoint")
        if entrypoint is None:
            entrypoint = [args.entrypoint] if args.entrypoint else []
    seccomp = None
    no_new_privileges = False
    unmask: list[str] = []
    for opt in args.security_opt:
        key, _, value = opt.partition("=")
        if key == "seccomp":
            seccomp = value
        elif key in ("no-new-privileges", "no_new_privileges") and value in ("", "true"):
            no_new_privileges = True
        elif (key, value) in (("label", "disable"), ("label", "type:unconfined_t"), ("apparmor", "unconfined")):
            continue  # this host has neither SELinux nor AppArmor
        elif key == "unmask":
            unmask += value.split(":")
        else:
            raise InvalidInputError(f"unsupported --security-opt {opt!r}")
    policy, retries = parse_restart(args.restart) if args.restart else ("", 0)
    attach = [a.lower() for a in _comma_list(args.attach)]
    for stream in attach:
        if stream not in ("stdin", "stdout", "stderr"):
            raise InvalidInputError(f"invalid stream {stream!r} for --attach: must be STDIN, STDOUT, or STDERR")
    healthcheck = parse_healthcheck(args.health_cmd, args.health_interval, args.health_timeout,
                                    args.health_start_period, args.health_retries)
    if args.no_healthcheck and healthcheck is not None:
        raise InvalidInputError("--no-healthcheck and --health-cmd cannot be used together")
    sysctls = {}
    for item in args.sysctl:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid --sysctl {item!r}: want KEY=VALUE")
        sysctls[key] = value
    if args.umask is not None:
        try:
            int(args.umask, 8)
        except ValueError as exc:
            raise InvalidInputError(f"invalid umask string {args.umask}") from exc
    mounts = [parse_volume(v) for v in args.volume] + [parse_mount(m) for m in args.mount]
    log_driver = args.log_driver or "k8s-file"
    options = CreateOptions(
        pod=args.pod or None,
        command=list(args.command) or None, entrypoint=entrypoint, name=args.name, env=env, workdir=args.workdir,
        user=args.user, group_add=_comma_list(args.group_add), hostname=args.hostname, userns=args.userns or "",
        interactive=args.interactive, tty=args.tty, read_only=args.read_only, read_only_tmpfs=args.read_only_tmpfs,
        tmpfs=list(args.tmpfs), cap_add=_comma_list(args.cap_add), cap_drop=_comma_list(args.cap_drop),
        privileged=args.privileged, seccomp_profile=seccomp, no_new_privileges=no_new_privileges, unmask=unmask,
        memory=parse_memory(args.memory, zero=True) if args.memory else None, cpus=args.cpus,
        pids_limit=args.pids_limit, ulimits=list(args.ulimit), network=args.network,
        preserve_fds=args.preserve_fds, sdnotify=args.sdnotify, systemd=args.systemd, stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout, labels=_labels(args),
        annotations=parse_key_values(args.annotation, "annotation"),
        log_driver=log_driver, init=args.init, remove=args.rm or args.rmi, runtime=args.runtime or args.global_runtime,
        create_command=["ketch", *sys.argv[1:]], ip=args.ip, dns=list(args.dns), add_host=list(args.add_host),
        network_aliases={"": list(args.network_alias)} if args.network_alias else {},
        publish=list(args.publish), publish_all=args.publish_all, mounts=[m.as_dict() for m in mounts],
        volumes_from=list(args.volumes_from), restart_policy=policy, restart_retries=retries,
        cidfile=os.path.abspath(args.cidfile) if args.cidfile else None, tz=args.tz, timeout=args.timeout,
        log_opts=_log_opts(args.log_opt), dns_search=_comma_list(args.dns_search),
        dns_options=list(args.dns_option), http_proxy=args.http_proxy, devices=list(args.device),
        shm_size=parse_memory(args.shm_size) if args.shm_size else None, sysctls=sysctls, umask=args.umask,
        secrets=[parse_secret(s) for s in args.secret], healthcheck=healthcheck,
        no_healthcheck=args.no_healthcheck, pid=_namespace_flag(args.pid), ipc=_namespace_flag(args.ipc),
        uts=_namespace_flag(args.uts), cgroupns=args.cgroupns, expose=_comma_list(args.expose),
        no_hosts=args.no_hosts, pidfile=os.path.abspath(args.pidfile) if args.pidfile else None,
        unsetenv=list(args.unsetenv), unsetenv_all=args.unsetenv_all, env_host=args.env_host,
        memory_reservation=parse_memory(args.memory_reservation) if args.memory_reservation else None,
        memory_swap=-1 if args.memory_swap == "-1" else (parse_memory(args.memory_swap) if args.memory_swap
                                                         else None),
        cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus, cpuset_mems=args.cpuset_mems,
        cpu_quota=args.cpu_quota, cpu_period=args.cpu_period, oom_score_adj=args.oom_score_adj,
        oom_kill_disable=args.oom_kill_disable, init_path=args.init_path, hostname_given=args.hostname is not None,
        device_cgroup_rules=list(args.device_cgroup_rule), blkio_weight=args.blkio_weight,
        blkio_weight_devices=list(args.blkio_weight_device), device_read_bps=list(args.device_read_bps),
        device_write_bps=list(args.device_write_bps), device_read_iops=list(args.device_read_iops),
        device_write_iops=list(args.device_write_iops), memory_swappiness=args.memory_swappiness,
        cpu_rt_period=args.cpu_rt_period, cpu_rt_runtime=args.cpu_rt_runtime, cgroup_parent=args.cgroup_parent,
        env_merge=list(args.env_merge), conmon_pidfile=os.path.abspath(args.conmon_pidfile)
        if args.conmon_pidfile else None, image_volume=args.image_volume, personality=args.personality,
        remove_image=args.rmi, requires=_comma_list(args.requires),
    )  # (--rmi implies --rm, as podman's does)
    if options.discard_ports():
        print("Port mappings have been discarded as one of the Host, Container, Pod, and None network modes are "
              "in use", file=sys.stderr)
    return options, attach


def pull_context(args):
    """The registry settings for a pull, made only if one happens (the image code is heavy)."""

    def make():
        from ketch.cli.flags import make_context
        from ketch.cli.storage import _platform

        ctx = make_context(args, creds=getattr(args, "creds", None), tls_verify=args.tls_verify,
                           authfile=getattr(args, "authfile", None), cert_dir=getattr(args, "cert_dir", None))
        _platform(args, ctx)
        return ctx

    return make
