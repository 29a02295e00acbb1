"""Container commands, as podman spells them: run, create, start, stop, kill, restart, rm, ps,
logs, exec, inspect, wait, info (and the same under ``ketch container``).

Exit statuses follow podman: a container's own status from ``run``/``start -a``/``exec``;
125 when ketch itself fails; 126 when the command cannot be invoked; 127 when it is not found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ketch.cli.flags import add_bool, non_negative_int
from ketch.errors import InvalidInputError, KetchError

EXIT_ENGINE = 125


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def _engine_failure(exc: KetchError) -> KetchError:
    """podman's statuses for run/create/start/exec: 125 unless the command itself could not run."""
    if getattr(exc, "exit_code", 1) not in (126, 127):
        exc.exit_code = EXIT_ENGINE
    return exc


def _comma_list(values: list[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def _add_create_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--help", action="help", help="show this help")
    parser.add_argument("--name", help="the container's name")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE")
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
    parser.add_argument("-m", "--memory", metavar="SIZE")
    parser.add_argument("--cpus", type=float, metavar="N")
    parser.add_argument("--pids-limit", type=int, metavar="N")
    parser.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    parser.add_argument("--network", "--net", default="bridge", metavar="MODE",
                        help="bridge (the default network), none, host, or network names (comma-separated)")
    parser.add_argument("--ip", metavar="ADDRESS", help="the container's address on its (first) network")
    parser.add_argument("--dns", action="append", default=[], metavar="ADDRESS")
    parser.add_argument("--add-host", action="append", default=[], metavar="NAME:IP")
    parser.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]PORT[/PROTO]")
    parser.add_argument("-P", "--publish-all", action="store_true", help="publish every exposed port")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="SOURCE:DEST[:OPTIONS]")
    parser.add_argument("--mount", action="append", default=[], metavar="type=...,source=...,target=...")
    parser.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")
    parser.add_argument("--preserve-fds", type=non_negative_int, default=0, metavar="N")
    parser.add_argument("--sdnotify", default="container", choices=["container", "conmon", "ignore"])
    parser.add_argument("--stop-signal", metavar="SIGNAL")
    parser.add_argument("--stop-timeout", type=non_negative_int, default=10, metavar="SECONDS")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-driver", default=None, choices=["k8s-file", "none", "passthrough"])
    parser.add_argument("--init", action="store_true", help="run an init (catatonit) as the container's pid 1")
    parser.add_argument("--pull", default="missing", choices=["always", "missing", "never", "newer"])
    parser.add_argument("--runtime", metavar="PATH", help="a runc-compatible runtime instead of ketch's own")
    add_bool(parser, "--tls-verify", help="for pulling: require HTTPS and verify certificates")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def _options(args):
    from ketch.containers import CreateOptions
    from ketch.containers.options import parse_key_values, parse_memory, read_env_file
    from ketch.containers.volumes import parse_mount, parse_volume

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
    log_driver = args.log_driver or "k8s-file"
    return CreateOptions(
        command=list(args.command) or None, entrypoint=entrypoint, name=args.name, env=env, workdir=args.workdir,
        user=args.user, group_add=_comma_list(args.group_add), hostname=args.hostname,
        interactive=args.interactive, tty=args.tty, read_only=args.read_only, read_only_tmpfs=args.read_only_tmpfs,
        tmpfs=list(args.tmpfs), cap_add=_comma_list(args.cap_add), cap_drop=_comma_list(args.cap_drop),
        privileged=args.privileged, seccomp_profile=seccomp, no_new_privileges=no_new_privileges, unmask=unmask,
        memory=parse_memory(args.memory) if args.memory else None, cpus=args.cpus, pids_limit=args.pids_limit,
        ulimits=list(args.ulimit), network=args.network, preserve_fds=args.preserve_fds, sdnotify=args.sdnotify,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        labels=parse_key_values(args.label, "label"), annotations=parse_key_values(args.annotation, "annotation"),
        log_driver=log_driver, init=args.init, remove=args.rm, runtime=args.runtime,
        create_command=["ketch", *sys.argv[1:]], ip=args.ip, dns=list(args.dns), add_host=list(args.add_host),
        publish=list(args.publish), publish_all=args.publish_all,
        mounts=[m.as_dict() for m in ([parse_volume(v) for v in args.volume] + [parse_mount(m) for m in args.mount])],
        volumes_from=list(args.volumes_from),
    )


def pull_context(args):
    """The registry settings for a pull, made only if one happens (the image code is heavy)."""

    def make():
        from ketch.image.context import SystemContext

        ctx = SystemContext()
        ctx.tls_verify = args.tls_verify
        ctx.registries_conf = getattr(args, "registries_conf", None)
        return ctx

    return make


VERBS = ("run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "inspect", "wait",
         "info", "port", "pause", "unpause", "top", "rename", "diff", "cp", "export", "commit", "prune")
GROUPS = ("network", "volume")


def register(commands: argparse._SubParsersAction, word: str | None = None, verb: str | None = None) -> None:
    """The container verbs, top-level and under ``ketch container``. For a command ``word`` (and,
    after ``container``, its ``verb``) only that parser is built: argparse's parsers cost
    milliseconds each, and ``run`` must start fast."""
    if word in GROUPS:
        (_register_network if word == "network" else _register_volume)(commands)
        return
    if word in VERBS and word != "prune":
        _register_verbs(commands, {word})
        return
    verb = "ps" if verb in ("ls", "list") else verb
    wanted = {verb} if word == "container" and verb in VERBS else set(VERBS)
    if word != "container":
        _register_verbs(commands, set(VERBS) - {"prune"})
        _register_network(commands)
        _register_volume(commands)
    _register_verbs(_container_group(commands), wanted)


def _container_group(commands):
    group = commands.add_parser("container", help="manage containers", description="Manage containers.")
    return group.add_subparsers(dest="container_command", metavar="COMMAND", required=True)


def _register_verbs(commands, wanted: set[str]) -> None:
    if "run" in wanted:
        _register_run(commands)
    if "create" in wanted:
        create = commands.add_parser("create", help="create a container", add_help=False,
                                     description="Create a container (started later with start).")
        _add_create_flags(create)
        create.set_defaults(func=cmd_create)
    for verb, registrar in _REGISTRARS.items():
        if verb in wanted:
            registrar(commands)


def _register_run(commands) -> None:
    run = commands.add_parser("run", help="run a command in a new container", add_help=False,
                              description="Run a command in a new container; its exit status is ours.")
    _add_create_flags(run)
    run.add_argument("-d", "--detach", action="store_true", help="run in the background; print the id")
    add_bool(run, "--sig-proxy", default=True, help="forward every signal we get to the container")
    run.set_defaults(func=cmd_run)


def _register_start(commands) -> None:
    start = commands.add_parser("start", help="start containers", description="Start one or more containers.")
    start.add_argument("-a", "--attach", action="store_true", help="attach: wait and pass its output through")
    start.add_argument("-i", "--interactive", action="store_true", help="with --attach, pass our stdin in")
    add_bool(start, "--sig-proxy", default=True, help="with --attach, forward signals")
    start.add_argument("names", nargs="+", metavar="CONTAINER")
    start.set_defaults(func=cmd_start)


def _register_stop(commands) -> None:
    stop = commands.add_parser("stop", help="stop containers", description="Stop one or more containers.")
    stop.add_argument("-t", "--time", type=non_negative_int, metavar="SECONDS",
                      help="seconds to wait before SIGKILL (default the container's stop timeout)")
    stop.add_argument("-a", "--all", action="store_true")
    stop.add_argument("-i", "--ignore", action="store_true", help="no error for a missing container")
    stop.add_argument("names", nargs="*", metavar="CONTAINER")
    stop.set_defaults(func=cmd_stop)


def _register_kill(commands) -> None:
    kill = commands.add_parser("kill", help="signal containers", description="Send a signal to containers.")
    kill.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL")
    kill.add_argument("-a", "--all", action="store_true")
    kill.add_argument("names", nargs="*", metavar="CONTAINER")
    kill.set_defaults(func=cmd_kill)


def _register_restart(commands) -> None:
    restart = commands.add_parser("restart", help="restart containers", description="Restart containers.")
    restart.add_argument("-t", "--time", type=non_negative_int, metavar="SECONDS")
    restart.add_argument("names", nargs="+", metavar="CONTAINER")
    restart.set_defaults(func=cmd_restart)


def _register_rm(commands) -> None:
    rm = commands.add_parser("rm", help="remove containers", description="Remove containers.")
    rm.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    rm.add_argument("-a", "--all", action="store_true")
    rm.add_argument("-i", "--ignore", action="store_true", help="no error for a missing container")
    rm.add_argument("names", nargs="*", metavar="CONTAINER")
    rm.set_defaults(func=cmd_rm)


def _register_ps(commands) -> None:
    ps = commands.add_parser("ps", aliases=["ls", "list"],
                             help="list containers", description="List containers (running ones, or all).")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true", help="ids only")
    ps.add_argument("--no-trunc", action="store_true")
    ps.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ps.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    ps.set_defaults(func=cmd_ps)


def _register_logs(commands) -> None:
    logs = commands.add_parser("logs", help="show a container's output", description="Show a container's logs.")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int, metavar="N")
    logs.add_argument("--since", metavar="TIME", help="RFC 3339 time, Unix seconds, or a duration (10m)")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("names", nargs="+", metavar="CONTAINER")
    logs.set_defaults(func=cmd_logs)


def _register_exec(commands) -> None:
    exec_ = commands.add_parser("exec", help="run a process in a running container",
                                description="Run a process in a running container.")
    exec_.add_argument("-i", "--interactive", action="store_true")
    exec_.add_argument("-t", "--tty", action="store_true")
    exec_.add_argument("-u", "--user", metavar="USER[:GROUP]")
    exec_.add_argument("-w", "--workdir", metavar="DIR")
    exec_.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    exec_.add_argument("-d", "--detach", action="store_true")
    exec_.add_argument("--privileged", action="store_true")
    exec_.add_argument("name", metavar="CONTAINER")
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    exec_.set_defaults(func=cmd_exec)


def _register_inspect(commands) -> None:
    inspect = commands.add_parser("inspect", help="show containers in detail",
                                  description="Show containers in detail (podman's JSON).")
    inspect.add_argument("-f", "--format", metavar="FORMAT", help="json, or a Go template")
    inspect.add_argument("names", nargs="+", metavar="CONTAINER")
    inspect.set_defaults(func=cmd_inspect)


def _register_wait(commands) -> None:
    wait = commands.add_parser("wait", help="wait for containers to stop",
                               description="Wait until containers stop; print their exit codes.")
    wait.add_argument("names", nargs="+", metavar="CONTAINER")
    wait.set_defaults(func=cmd_wait)


def _register_info(commands) -> None:
    info = commands.add_parser("info", help="show ketch's view of the host and store",
                               description="Show the host, the store and the engine's settings.")
    info.add_argument("-f", "--format", metavar="FORMAT", help="json (default), or a Go template")
    info.set_defaults(func=cmd_info)


def cmd_run(args) -> int:
    try:
        options = _options(args)
        if args.detach and options.log_driver == "passthrough":
            raise InvalidInputError("--log-driver passthrough needs a foreground run")
        engine = _engine(args)
        result = engine.run(args.image, options, detach=args.detach, pull=args.pull, context=pull_context(args),
                            sig_proxy=args.sig_proxy)
    except KetchError as exc:
        raise _engine_failure(exc) from None
    if args.detach:
        print(result)
        return 0
    return result.exit_code


def cmd_create(args) -> int:
    try:
        options = _options(args)
        container_id = _engine(args).create(args.image, options, pull=args.pull, context=pull_context(args))
    except KetchError as exc:
        raise _engine_failure(exc) from None
    print(container_id)
    return 0


def cmd_start(args) -> int:
    engine = _engine(args)
    if args.attach and len(args.names) > 1:
        raise InvalidInputError("start --attach takes one container")
    for name in args.names:
        try:
            if args.attach:
                null = None if args.interactive else os.open("/dev/null", os.O_RDONLY)
                try:
                    return engine.start(name, attach=True, stdio=(0, 1, 2) if null is None else (null, 1, 2),
                                        sig_proxy=args.sig_proxy)
                finally:
                    if null is not None:
                        os.close(null)
            engine.start(name)
        except KetchError as exc:
            raise _engine_failure(exc) from None
        print(name)
    return 0


def _targets(engine, args, *, running_only: bool = False) -> list[str]:
    if getattr(args, "all", False):
        return [entry["Id"] for entry in engine.list(all=not running_only)]
    if not args.names:
        raise InvalidInputError("give at least one container, or --all")
    return list(args.names)


def _each(args, targets: list[str], action) -> int:
    """Do ``action`` on each target and print its name; errors are reported one line each, and the
    last error's status is ours (podman's behaviour for several containers)."""
    from ketch.errors import NotFoundError

    status = 0
    for name in targets:
        try:
            action(name)
            print(name)
        except NotFoundError as exc:
            if getattr(args, "ignore", False):
                continue
            print(f"Error: {exc}", file=sys.stderr)
            status = exc.exit_code
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = exc.exit_code if exc.exit_code != 1 else EXIT_ENGINE
    return status


def cmd_stop(args) -> int:
    engine = _engine(args)
    return _each(args, _targets(engine, args, running_only=True), lambda name: engine.stop(name, args.time))


def cmd_kill(args) -> int:
    engine = _engine(args)
    return _each(args, _targets(engine, args, running_only=True), lambda name: engine.kill(name, args.signal))


def cmd_restart(args) -> int:
    engine = _engine(args)
    return _each(args, args.names, lambda name: engine.restart(name, args.time))


def cmd_rm(args) -> int:
    engine = _engine(args)
    return _each(args, _targets(engine, args), lambda name: engine.remove(name, force=args.force))


def cmd_ps(args) -> int:
    from ketch.cli import template

    entries = _engine(args).list(all=args.all, filters=args.filter)
    if args.quiet:
        for entry in entries:
            print(entry["Id"] if args.no_trunc else entry["Id"][:12])
        return 0
    if args.format == "json":
        print(json.dumps(entries, indent=4))
        return 0
    if args.format:
        for entry in entries:
            print(template.render(args.format, entry))
        return 0
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]]
    for entry in entries:
        command = " ".join(entry["Command"])
        rows.append([entry["Id"] if args.no_trunc else entry["Id"][:12], entry["Image"],
                     command if args.no_trunc or len(command) <= 20 else command[:17] + "...",
                     entry["CreatedAt"], entry["Status"], ",".join(entry["Names"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _since(text: str) -> float:
    import datetime
    import time

    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInputError(f"invalid --since {text!r}: use RFC 3339, Unix seconds or a duration") from None


def cmd_logs(args) -> int:
    engine = _engine(args)
    since = _since(args.since) if args.since else None
    out = sys.stdout.buffer
    for name in args.names:
        for chunk in engine.logs(name, follow=args.follow, tail=args.tail, since=since, timestamps=args.timestamps):
            out.write(chunk)
            out.flush()
    return 0


def cmd_exec(args) -> int:
    if not args.command:
        raise InvalidInputError("exec needs a command")
    try:
        return _engine(args).exec(args.name, args.command, interactive=args.interactive, tty=args.tty,
                                  user=args.user, workdir=args.workdir, env=args.env, detach=args.detach,
                                  privileged=args.privileged)
    except KetchError as exc:
        raise _engine_failure(exc) from None


def cmd_inspect(args) -> int:
    engine = _engine(args)
    found, status = [], 0
    for name in args.names:
        try:
            found.append(engine.inspect(name))
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = exc.exit_code
    _print_json_or_template(args.format, found)
    return status


def cmd_wait(args) -> int:
    engine = _engine(args)
    for name in args.names:
        print(engine.wait(name))
    return 0


def cmd_info(args) -> int:
    from ketch.cli import template

    data = _engine(args).info()
    print(template.render(args.format, data) if args.format and args.format != "json" else json.dumps(data, indent=4))
    return 0


def _simple(commands, verb: str, help_text: str, func, *, many: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(verb, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    parser.add_argument("names", nargs="+" if many else None, metavar="CONTAINER")
    parser.set_defaults(func=func)
    return parser


def _register_port(commands) -> None:
    parser = _simple(commands, "port", "list a container's published ports", cmd_port, many=False)
    parser.add_argument("private", nargs="?", metavar="PORT[/PROTO]")


def _register_pause(commands) -> None:
    _simple(commands, "pause", "freeze every process of containers", cmd_pause)


def _register_unpause(commands) -> None:
    _simple(commands, "unpause", "thaw paused containers", cmd_unpause)


def _register_top(commands) -> None:
    _simple(commands, "top", "show a container's processes", cmd_top, many=False)


def _register_rename(commands) -> None:
    parser = commands.add_parser("rename", help="rename a container", description="Rename a container.")
    parser.add_argument("name", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW-NAME")
    parser.set_defaults(func=cmd_rename)


def _register_diff(commands) -> None:
    parser = _simple(commands, "diff", "show a container's changes to its image", cmd_diff, many=False)
    parser.add_argument("--format", metavar="FORMAT", help="json")


def _register_cp(commands) -> None:
    parser = commands.add_parser("cp", help="copy files between a container and the host",
                                 description="Copy CONTAINER:PATH to a host path, or a host path to CONTAINER:PATH.")
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("destination", metavar="DESTINATION")
    parser.set_defaults(func=cmd_cp)


def _register_export(commands) -> None:
    parser = _simple(commands, "export", "write a container's file system as a tar archive", cmd_export, many=False)
    parser.add_argument("-o", "--output", metavar="FILE")


def _register_commit(commands) -> None:
    parser = commands.add_parser("commit", help="make an image of a container's changes",
                                 description="Make an image of a container's changes.")
    parser.add_argument("name", metavar="CONTAINER")
    parser.add_argument("image", nargs="?", metavar="IMAGE")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION")
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("-a", "--author", default="")
    parser.add_argument("-f", "--format", default="oci", choices=["oci", "docker"])
    add_bool(parser, "-p", "--pause", default=True, help="pause the container while committing (default true)")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.set_defaults(func=cmd_commit)


def _register_prune(commands) -> None:
    parser = commands.add_parser("prune", help="remove every stopped container",
                                 description="Remove every container that is not running.")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask (ketch never asks)")
    parser.set_defaults(func=cmd_prune)


def _register_network(commands) -> None:
    group = commands.add_parser("network", help="manage networks", description="Manage bridge networks.")
    verbs = group.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="create a network", description="Create a bridge network.")
    create.add_argument("name", metavar="NAME", nargs="?")
    create.add_argument("--subnet", metavar="CIDR")
    create.add_argument("--gateway", metavar="ADDRESS")
    create.add_argument("--internal", action="store_true", help="no masquerading to the outside")
    create.add_argument("-d", "--driver", default="bridge")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(func=cmd_network_create)
    ls = verbs.add_parser("ls", aliases=["list"], help="list networks", description="List networks.")
    ls.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(func=cmd_network_ls)
    inspect = verbs.add_parser("inspect", help="show networks", description="Show networks (podman's JSON).")
    inspect.add_argument("names", nargs="+", metavar="NETWORK")
    inspect.add_argument("-f", "--format", metavar="FORMAT")
    inspect.set_defaults(func=cmd_network_inspect)
    rm = verbs.add_parser("rm", help="remove networks", description="Remove networks.")
    rm.add_argument("names", nargs="+", metavar="NETWORK")
    rm.add_argument("-f", "--force", action="store_true", help="remove their containers too")
    rm.set_defaults(func=cmd_network_rm)
    prune = verbs.add_parser("prune", help="remove unused networks", description="Remove unused networks.")
    prune.add_argument("-f", "--force", action="store_true")
    prune.set_defaults(func=cmd_network_prune)


def _register_volume(commands) -> None:
    group = commands.add_parser("volume", help="manage volumes", description="Manage named volumes.")
    verbs = group.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="create a volume", description="Create a named volume.")
    create.add_argument("name", metavar="NAME", nargs="?")
    create.add_argument("--label", "-l", action="append", default=[], metavar="KEY=VALUE")
    create.set_defaults(func=cmd_volume_create)
    ls = verbs.add_parser("ls", aliases=["list"], help="list volumes", description="List volumes.")
    ls.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(func=cmd_volume_ls)
    inspect = verbs.add_parser("inspect", help="show volumes", description="Show volumes (podman's JSON).")
    inspect.add_argument("names", nargs="+", metavar="VOLUME")
    inspect.set_defaults(func=cmd_volume_inspect)
    rm = verbs.add_parser("rm", help="remove volumes", description="Remove volumes.")
    rm.add_argument("names", nargs="+", metavar="VOLUME")
    rm.add_argument("-f", "--force", action="store_true", help="remove the containers using them too")
    rm.set_defaults(func=cmd_volume_rm)
    prune = verbs.add_parser("prune", help="remove unused volumes", description="Remove unused volumes.")
    prune.add_argument("-f", "--force", action="store_true")
    prune.set_defaults(func=cmd_volume_prune)


_REGISTRARS = {"port": _register_port, "pause": _register_pause, "unpause": _register_unpause, "top": _register_top,
               "rename": _register_rename, "diff": _register_diff, "cp": _register_cp, "export": _register_export,
               "commit": _register_commit, "prune": _register_prune,
               "start": _register_start, "stop": _register_stop, "kill": _register_kill, "restart": _register_restart,
               "rm": _register_rm, "ps": _register_ps, "logs": _register_logs, "exec": _register_exec,
               "inspect": _register_inspect, "wait": _register_wait, "info": _register_info}


for _command in (cmd_run, cmd_create, cmd_start, cmd_stop, cmd_kill, cmd_restart, cmd_rm, cmd_ps, cmd_logs, cmd_exec,
                 cmd_inspect, cmd_wait, cmd_info):
    _command.fast_exit = True  # type: ignore[attr-defined]  # see ketch.cli.main.main


def cmd_port(args) -> int:
    ports = _engine(args).ports(args.names)
    for p in ports:
        key = f"{p['container_port']}/{p['protocol']}"
        if args.private and args.private not in (key, str(p["container_port"])):
            continue
        print(f"{key} -> {p['host_ip']}:{p['host_port']}")
    return 0


def cmd_pause(args) -> int:
    return _each(args, args.names, _engine(args).pause)


def cmd_unpause(args) -> int:
    return _each(args, args.names, _engine(args).unpause)


def cmd_top(args) -> int:
    rows = _engine(args).top(args.names)
    columns = ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    table = [columns] + [[row[c] for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def cmd_rename(args) -> int:
    _engine(args).rename(args.name, args.new_name)
    return 0


def cmd_diff(args) -> int:
    changes = _engine(args).diff(args.names)
    if args.format == "json":
        out: dict[str, list[str]] = {}
        for kind, path in changes:
            out.setdefault({"A": "added", "C": "changed", "D": "deleted"}[kind], []).append(path)
        print(json.dumps(out, indent=4))
    else:
        for kind, path in changes:
            print(f"{kind} {path}")
    return 0


def cmd_cp(args) -> int:
    _engine(args).copy(args.source, args.destination)
    return 0


def cmd_export(args) -> int:
    engine = _engine(args)
    if args.output:
        with open(args.output, "wb") as f:
            engine.export(args.names, f)
    else:
        if sys.stdout.isatty():
            raise InvalidInputError("refusing to write a tar archive to a terminal: use -o FILE or a redirect")
        sys.stdout.flush()
        engine.export(args.names, sys.stdout.buffer)
    return 0


def cmd_commit(args) -> int:
    image_id = _engine(args).commit(args.name, args.image, changes=args.change, message=args.message,
                                    author=args.author, fmt=args.format, pause=args.pause)
    print(image_id)
    return 0


def cmd_prune(args) -> int:
    for container_id in _engine(args).prune():
        print(container_id)
    return 0


def cmd_network_create(args) -> int:
    from ketch.containers.options import parse_key_values

    engine = _engine(args)
    nets = engine.networks()
    name = args.name
    if name is None:
        existing = {n["name"] for n in nets.list()}
        name = next(f"ketch{n}" for n in range(1, 10000) if f"ketch{n}" not in existing)
    nets.create(name, subnet=args.subnet, gateway=args.gateway, internal=args.internal,
                labels=parse_key_values(args.label, "label"), driver=args.driver)
    print(name)
    return 0


def _print_json_or_template(fmt: str | None, entries: list[dict]) -> None:
    from ketch.cli import template

    if fmt and fmt != "json":
        for entry in entries:
            print(template.render(fmt, entry))
    else:
        print(json.dumps(entries, indent=4))


def _print_listing(args, entries: list[dict], key: str, header: str, row) -> None:
    """``ls`` of networks and volumes: names only (-q), JSON, a Go template, or a table."""
    from ketch.cli import template

    if args.quiet:
        print("\n".join(e[key] for e in entries))
    elif args.format == "json":
        print(json.dumps(entries, indent=4))
    elif args.format:
        for entry in entries:
            print(template.render(args.format, entry))
    else:
        print(header)
        for entry in entries:
            print(row(entry))


def cmd_network_ls(args) -> int:
    nets = _engine(args).networks()
    _print_listing(args, [nets.inspect(n["name"]) for n in nets.list()], "name", f"{'NETWORK ID':14}{'NAME':20}DRIVER",
                   lambda e: f"{e['id'][:12]:14}{e['name']:20}{e['driver']}")
    return 0


def cmd_network_inspect(args) -> int:
    nets = _engine(args).networks()
    _print_json_or_template(args.format, [nets.inspect(name) for name in args.names])
    return 0


def cmd_network_rm(args) -> int:
    engine = _engine(args)
    return _each(args, args.names, lambda name: engine.networks().remove(name, force=args.force, engine=engine))


def cmd_network_prune(args) -> int:
    for name in _engine(args).networks().prune():
        print(name)
    return 0


def cmd_volume_create(args) -> int:
    from ketch.containers.options import parse_key_values

    volumes = _engine(args).volumes()
    name = args.name or os.urandom(32).hex()
    volumes.create(name, parse_key_values(args.label, "label"))
    print(name)
    return 0


def cmd_volume_ls(args) -> int:
    volumes = _engine(args).volumes()
    _print_listing(args, [volumes.inspect(v["name"]) for v in volumes.list()], "Name", f"{'DRIVER':10}VOLUME NAME",
                   lambda e: f"{e['Driver']:10}{e['Name']}")
    return 0


def cmd_volume_inspect(args) -> int:
    volumes = _engine(args).volumes()
    print(json.dumps([volumes.inspect(name) for name in args.names], indent=4))
    return 0


def cmd_volume_rm(args) -> int:
    engine = _engine(args)
    return _each(args, args.names, lambda name: engine.volumes().remove(name, force=args.force, engine=engine))


def cmd_volume_prune(args) -> int:
    for name in _engine(args).volumes().prune():
        print(name)
    return 0


for _command in (cmd_port, cmd_pause, cmd_unpause, cmd_top, cmd_rename, cmd_diff, cmd_cp, cmd_export, cmd_commit,
                 cmd_prune, cmd_network_create, cmd_network_ls, cmd_network_inspect, cmd_network_rm, cmd_network_prune,
                 cmd_volume_create, cmd_volume_ls, cmd_volume_inspect, cmd_volume_rm, cmd_volume_prune):
    _command.fast_exit = True  # type: ignore[attr-defined]
