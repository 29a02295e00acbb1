"""Container commands, as podman spells them: run, create, start, stop, kill, restart, rm, ps,
logs, exec, attach, init, wait, inspect, exists, port, pause, unpause, top, rename, diff, cp,
export, commit, mount, umount, stats, events, healthcheck (top-level and under ``ketch
container``), and the network, volume and secret groups (cli/resources.py).

Exit statuses follow podman: a container's own status from ``run``/``start -a``/``exec``;
125 when ketch itself fails; 126 when the command cannot be invoked; 127 when it is not found;
``rm``: 1 for a container that does not exist, 2 for one that runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ketch.cli.flags import add_bool, non_negative_int
from ketch.errors import (
    ContainerError,
    ContainerStateError,
    ExecNotStartedError,
    InvalidInputError,
    KetchError,
    NotFoundError,
)

EXIT_ENGINE = 125


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


class _engine_failures:  # noqa: N801 - used as a ``with`` statement, as contextlib's would be
    """podman's statuses for run/create/start/exec/attach: 125 (a ContainerError, with the error
    as its cause) unless the command itself could not run (126, 127: classes of their own). (A
    class, not contextlib's decorator: contextlib is not imported on ``ketch run``'s path.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> None:
        if isinstance(exc, KetchError) and not isinstance(exc, ContainerError):
            raise ContainerError(str(exc)) from exc


def pull_context(args):
    from ketch.cli.create_flags import pull_context as make

    return make(args)


VERBS = ("run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "inspect", "wait",
         "port", "pause", "unpause", "top", "rename", "diff", "cp", "export", "commit", "prune", "attach", "init",
         "mount", "umount", "unmount", "stats", "exists", "events", "healthcheck", "update")
GROUPS = ("network", "volume", "secret")
CONTAINER_ONLY = ("prune", "exists")


def register(commands: argparse._SubParsersAction, word: str | None = None, verb: str | None = None) -> None:
    """The container verbs, top-level and under ``ketch container``. For a command ``word`` (and,
    after ``container``, its ``verb``) only that parser is built: argparse's parsers cost
    milliseconds each, and ``run`` must start fast."""
    word = {"unmount": "umount"}.get(word or "", word)
    if word in VERBS and word not in CONTAINER_ONLY:
        _register_verbs(commands, {word})
        return
    from ketch.cli import resources

    if word in GROUPS:
        resources.register(commands, word)
        return
    verb = {"ls": "ps", "list": "ps", "unmount": "umount"}.get(verb or "", verb)
    wanted = {verb} if word == "container" and verb in VERBS else set(VERBS)
    if word != "container":
        _register_verbs(commands, set(VERBS) - set(CONTAINER_ONLY))
        for group in GROUPS:
            resources.register(commands, group)
    _register_verbs(_container_group(commands), wanted, under_container=True)


def _container_group(commands):
    group = commands.add_parser("container", help="manage containers", description="Manage containers.")
    return group.add_subparsers(dest="container_command", metavar="COMMAND", required=True)


def _register_verbs(commands, wanted: set[str], under_container: bool = False) -> None:
    for verb in VERBS:
        if verb in wanted and verb in _REGISTRARS:
            _REGISTRARS[verb](commands)
    if under_container and "inspect" in wanted:
        commands.choices["inspect"].set_defaults(type="container")  # podman's container inspect


def _add_latest(parser) -> None:
    parser.add_argument("-l", "--latest", action="store_true", help="act on the container created last")


def _add_selection(parser, *, cidfile: bool = True, filters: bool = True, short_filter: bool = True,
                   all_help: str = "every container") -> None:
    parser.add_argument("-a", "--all", action="store_true", help=all_help)
    _add_latest(parser)
    if cidfile:
        parser.add_argument("--cidfile", action="append", default=[], metavar="FILE",
                            help="read the container's id from FILE")
    if filters:
        parser.add_argument(*(["-f"] if short_filter else []), "--filter", action="append", default=[],
                            metavar="KEY=VALUE")


# -- registration --------------------------------------------------------------------------


def _register_run(commands) -> None:
    from ketch.cli.create_flags import add_create_flags

    run = commands.add_parser("run", help="run a command in a new container", add_help=False,
                              description="Run a command in a new container; its exit status is ours.")
    add_create_flags(run)
    run.add_argument("-d", "--detach", action="store_true", help="run in the background; print the id")
    add_bool(run, "--sig-proxy", default=True, help="forward every signal we get to the container")
    run.add_argument("--detach-keys", metavar="KEYS", help="accepted; ctrl-p,ctrl-q detaches a terminal")
    run.set_defaults(func=cmd_run)


def _register_create(commands) -> None:
    from ketch.cli.create_flags import add_create_flags

    create = commands.add_parser("create", help="create a container", add_help=False,
                                 description="Create a container (started later with start).")
    add_create_flags(create)
    create.set_defaults(func=cmd_create)


def _register_start(commands) -> None:
    start = commands.add_parser("start", help="start containers", description="Start one or more containers.")
    start.add_argument("-a", "--attach", action="store_true", help="attach: wait and pass its output through")
    start.add_argument("-i", "--interactive", action="store_true", help="with --attach, pass our stdin in")
    add_bool(start, "--sig-proxy", default=True, help="with --attach, forward signals")
    start.add_argument("--all", action="store_true", help="every container that does not run")
    start.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    start.add_argument("--detach-keys", metavar="KEYS", help="accepted")
    _add_latest(start)
    start.add_argument("names", nargs="*", metavar="CONTAINER")
    start.set_defaults(func=cmd_start)


def _register_stop(commands) -> None:
    stop = commands.add_parser("stop", help="stop containers", description="Stop one or more containers.")
    stop.add_argument("-t", "--time", type=non_negative_int, metavar="SECONDS",
                      help="seconds to wait before SIGKILL (default the container's stop timeout)")
    stop.add_argument("-i", "--ignore", action="store_true", help="no error for a missing container")
    _add_selection(stop, all_help="every running container")
    stop.add_argument("names", nargs="*", metavar="CONTAINER")
    stop.set_defaults(func=cmd_stop)


def _register_kill(commands) -> None:
    kill = commands.add_parser("kill", help="signal containers", description="Send a signal to containers.")
    kill.add_argument("-s", "--signal", default="KILL", metavar="SIGNAL")
    _add_selection(kill, filters=False, all_help="every running container")
    kill.add_argument("names", nargs="*", metavar="CONTAINER")
    kill.set_defaults(func=cmd_kill)


def _register_restart(commands) -> None:
    restart = commands.add_parser("restart", help="restart containers", description="Restart containers.")
    restart.add_argument("-t", "--time", type=non_negative_int, metavar="SECONDS")
    restart.add_argument("--running", action="store_true", help="with --all, only the running ones")
    _add_selection(restart)
    restart.add_argument("names", nargs="*", metavar="CONTAINER")
    restart.set_defaults(func=cmd_restart)


def _register_rm(commands) -> None:
    rm = commands.add_parser("rm", help="remove containers", description="Remove containers.")
    rm.add_argument("-f", "--force", action="store_true", help="stop running containers first")
    rm.add_argument("-i", "--ignore", action="store_true", help="no error for a missing container")
    rm.add_argument("-t", "--time", type=non_negative_int, metavar="SECONDS",
                    help="seconds to wait for a forced stop before SIGKILL (default the stop timeout)")
    rm.add_argument("-v", "--volumes", action="store_true", help="remove the container's anonymous volumes")
    rm.add_argument("--depend", action="store_true", help="accepted; ketch has no dependent containers")
    _add_selection(rm, short_filter=False)
    rm.add_argument("names", nargs="*", metavar="CONTAINER")
    rm.set_defaults(func=cmd_rm)


def _register_ps(commands) -> None:
    ps = commands.add_parser("ps", aliases=["ls", "list"],
                             help="list containers", description="List containers (running ones, or all).")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true", help="ids only")
    ps.add_argument("--no-trunc", action="store_true")
    ps.add_argument("--noheading", action="store_true", help="no header row")
    ps.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ps.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    ps.add_argument("--sort", choices=["command", "created", "id", "image", "names", "runningfor", "size", "status"])
    ps.add_argument("-s", "--size", action="store_true", help="the writable layer's size")
    ps.add_argument("-n", "--last", type=int, default=-1, metavar="N", help="the N containers created last")
    ps.add_argument("-p", "--pod", action="store_true", help="pod columns (ketch has no pods: empty)")
    ps.add_argument("--ns", action="store_true", help="namespace columns")
    ps.add_argument("--external", action="store_true", help="accepted: builder containers are not listed")
    ps.add_argument("--sync", action="store_true", help="accepted: the state is always checked")
    ps.add_argument("-w", "--watch", type=int, default=0, metavar="SECONDS", help="redraw every SECONDS")
    _add_latest(ps)
    ps.set_defaults(func=cmd_ps)


def _register_logs(commands) -> None:
    logs = commands.add_parser("logs", help="show a container's output", description="Show a container's logs.")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int, metavar="N")
    logs.add_argument("--since", metavar="TIME", help="RFC 3339 time, Unix seconds, or a duration (10m)")
    logs.add_argument("--until", metavar="TIME", help="RFC 3339 time, Unix seconds, or a duration (10m)")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("-n", "--names", action="store_true", help="the container's name before each line")
    logs.add_argument("--color", action="store_true", help="accepted")
    _add_latest(logs)
    logs.add_argument("containers", nargs="*", metavar="CONTAINER")
    logs.set_defaults(func=cmd_logs)


def _register_exec(commands) -> None:
    exec_ = commands.add_parser("exec", help="run a process in a running container",
                                description="Run a process in a running container.")
    exec_.add_argument("-i", "--interactive", action="store_true")
    exec_.add_argument("-t", "--tty", action="store_true")
    exec_.add_argument("-u", "--user", metavar="USER[:GROUP]")
    exec_.add_argument("-w", "--workdir", metavar="DIR")
    exec_.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    exec_.add_argument("--env-file", action="append", default=[], metavar="FILE")
    exec_.add_argument("-d", "--detach", action="store_true")
    exec_.add_argument("--privileged", action="store_true")
    exec_.add_argument("--preserve-fds", type=non_negative_int, default=0, metavar="N")
    exec_.add_argument("--detach-keys", metavar="KEYS", help="accepted")
    _add_latest(exec_)
    exec_.add_argument("name", metavar="CONTAINER")
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    exec_.set_defaults(func=cmd_exec)


def _register_inspect(commands) -> None:
    inspect = commands.add_parser("inspect", help="show objects in detail",
                                  description="Show containers, images, volumes or networks in detail (podman's "
                                              "JSON).")
    inspect.add_argument("-f", "--format", metavar="FORMAT", help="json, or a Go template")
    inspect.add_argument("-t", "--type", default="all",
                         choices=["all", "container", "image", "volume", "network", "pod"])
    inspect.add_argument("-s", "--size", action="store_true", help="the container's size too")
    _add_latest(inspect)
    inspect.add_argument("names", nargs="*", metavar="NAME")
    inspect.set_defaults(func=cmd_inspect)


def _register_wait(commands) -> None:
    wait = commands.add_parser("wait", help="wait for containers to stop",
                               description="Wait until containers stop; print their exit codes.")
    wait.add_argument("--condition", action="append", default=[], metavar="STATE",
                      help="stopped (the default), exited, running, paused, created, healthy, unhealthy")
    wait.add_argument("-i", "--interval", default="250ms", metavar="DURATION")
    _add_latest(wait)
    wait.add_argument("names", nargs="*", metavar="CONTAINER")
    wait.set_defaults(func=cmd_wait)


def _simple(commands, verb: str, help_text: str, func, *, many: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(verb, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    _add_latest(parser)
    parser.set_defaults(func=func, many=many)
    return parser


def _register_port(commands) -> None:
    parser = commands.add_parser("port", help="list a container's published ports",
                                 description="List a container's published ports.")
    parser.add_argument("-a", "--all", action="store_true")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER [PORT[/PROTO]]")
    parser.set_defaults(func=cmd_port)


def _register_pause(commands) -> None:
    parser = commands.add_parser("pause", help="freeze every process of containers",
                                 description="Freeze every process of containers.")
    _add_selection(parser, all_help="every running container")
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_pause)


def _register_unpause(commands) -> None:
    parser = commands.add_parser("unpause", help="thaw paused containers", description="Thaw paused containers.")
    _add_selection(parser, all_help="every paused container")
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_unpause)


def _register_top(commands) -> None:
    parser = commands.add_parser("top", help="show a container's processes",
                                 description="Show a container's processes (podman's descriptors: user, pid, "
                                             "ppid, pcpu, etime, tty, time, args, comm, ...).")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER [DESCRIPTOR...]")
    parser.set_defaults(func=cmd_top)


def _register_rename(commands) -> None:
    parser = commands.add_parser("rename", help="rename a container", description="Rename a container.")
    parser.add_argument("name", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW-NAME")
    parser.set_defaults(func=cmd_rename)


def _register_update(commands) -> None:
    parser = commands.add_parser("update", help="change a container's resource limits",
                                 description="Change a container's resource limits (a running one's at once) and "
                                             "restart policy.")
    parser.add_argument("name", metavar="CONTAINER")
    parser.add_argument("-m", "--memory", metavar="SIZE", help="memory limit (0: none)")
    parser.add_argument("--memory-reservation", metavar="SIZE")
    parser.add_argument("--memory-swap", metavar="SIZE", help="memory plus swap (-1: unlimited)")
    parser.add_argument("--memory-swappiness", type=int, metavar="0-100")
    parser.add_argument("--cpus", type=float, metavar="N")
    parser.add_argument("-c", "--cpu-shares", type=int, metavar="N")
    parser.add_argument("--cpu-quota", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpu-period", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpu-rt-period", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpu-rt-runtime", type=int, metavar="MICROSECONDS")
    parser.add_argument("--cpuset-cpus", metavar="CPUS")
    parser.add_argument("--cpuset-mems", metavar="NODES")
    parser.add_argument("--pids-limit", type=int, metavar="N")
    parser.add_argument("--blkio-weight", type=int, metavar="10-1000")
    parser.add_argument("--blkio-weight-device", action="append", metavar="DEVICE:WEIGHT")
    for flag, unit in (("--device-read-bps", "RATE"), ("--device-write-bps", "RATE"),
                       ("--device-read-iops", "N"), ("--device-write-iops", "N")):
        parser.add_argument(flag, action="append", metavar=f"DEVICE:{unit}")
    parser.add_argument("--restart", metavar="POLICY", help="no, on-failure[:N], always, unless-stopped")
    parser.set_defaults(func=cmd_update)


def cmd_update(args) -> int:
    from ketch.containers.options import parse_memory, parse_restart

    changes: dict = {}
    for name in ("memory_swappiness", "cpus", "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period",
                 "cpu_rt_runtime", "cpuset_cpus", "cpuset_mems", "pids_limit", "blkio_weight",
                 "blkio_weight_device", "device_read_bps", "device_write_bps", "device_read_iops",
                 "device_write_iops"):
        value = getattr(args, name)
        if value is not None:
            changes["blkio_weight_devices" if name == "blkio_weight_device" else name] = value
    if args.memory is not None:
        changes["memory"] = parse_memory(args.memory, zero=True) or None
    if args.memory_reservation is not None:
        changes["memory_reservation"] = parse_memory(args.memory_reservation)
    if args.memory_swap is not None:
        changes["memory_swap"] = -1 if args.memory_swap == "-1" else parse_memory(args.memory_swap)
    if args.restart is not None:
        changes["restart_policy"], changes["restart_retries"] = parse_restart(args.restart)
    if not changes:
        from ketch.errors import InvalidInputError

        raise InvalidInputError("update: nothing to change (give a limit, such as --memory, or --restart)")
    print(_engine(args).update(args.name, **changes))  # (podman prints the container's id)
    return 0


def _register_diff(commands) -> None:
    parser = _simple(commands, "diff", "show a container's changes to its image", cmd_diff, many=False)
    parser.add_argument("--format", metavar="FORMAT", help="json")


def _register_cp(commands) -> None:
    parser = commands.add_parser("cp", help="copy files between containers and the host",
                                 description="Copy CONTAINER:PATH to a host path (or - for a tar stream on standard "
                                             "output), a host path (or - for a tar stream on standard input) to "
                                             "CONTAINER:PATH, or between two containers.")
    add_bool(parser, "-a", "--archive", default=True, help="keep owners (default true)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow replacing a directory by a file and the other way round")
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
    parser.add_argument("--iidfile", metavar="FILE", help="write the image's id here")
    parser.add_argument("-s", "--squash", action="store_true", help="accepted; the changes are one layer")
    parser.add_argument("--include-volumes", action="store_true", help="the container's volumes as image volumes")
    add_bool(parser, "-p", "--pause", default=True, help="pause the container while committing (default true)")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.set_defaults(func=cmd_commit)


def _register_prune(commands) -> None:
    parser = commands.add_parser("prune", help="remove every stopped container",
                                 description="Remove every container that is not running.")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask (ketch never asks)")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    parser.set_defaults(func=cmd_prune)


def _register_attach(commands) -> None:
    parser = commands.add_parser("attach", help="attach to a running container",
                                 description="Follow a running container's output and send it our input (when it "
                                             "was created with -i); ctrl-p ctrl-q leaves a terminal.")
    parser.add_argument("--no-stdin", action="store_true", help="do not send our input")
    add_bool(parser, "--sig-proxy", default=True, help="forward signals to the container (default true)")
    parser.add_argument("--detach-keys", metavar="KEYS", help="accepted; ctrl-p,ctrl-q")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_attach)


def _register_init(commands) -> None:
    parser = commands.add_parser("init", help="initialize containers",
                                 description="Create the containers in the runtime, ready for start.")
    parser.add_argument("-a", "--all", action="store_true")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_init)


def _register_mount(commands) -> None:
    parser = commands.add_parser("mount", help="mount a container's root file system",
                                 description="Mount containers' root file systems and print where; without "
                                             "arguments, list the mounted containers.")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("--format", metavar="FORMAT", help="json")
    parser.add_argument("--no-trunc", action="store_true")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_mount)


def _register_umount(commands) -> None:
    parser = commands.add_parser("umount", aliases=["unmount"], help="unmount a container's root file system",
                                 description="Unmount containers' root file systems.")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("-f", "--force", action="store_true", help="even when mounted several times")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_umount)


def _register_stats(commands) -> None:
    parser = commands.add_parser("stats", help="show containers' resource use",
                                 description="Show the CPU, memory, network, block I/O and processes of containers.")
    parser.add_argument("-a", "--all", action="store_true", help="also containers that do not run")
    parser.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    parser.add_argument("-i", "--interval", type=int, default=5, metavar="SECONDS")
    parser.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    parser.add_argument("--no-reset", action="store_true", help="do not clear the screen between samples")
    parser.add_argument("--no-trunc", action="store_true")
    _add_latest(parser)
    parser.add_argument("names", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=cmd_stats)


def _register_exists(commands) -> None:
    parser = commands.add_parser("exists", help="exit 0 if a container exists, 1 if not",
                                 description="Check whether a container exists.")
    parser.add_argument("--external", action="store_true", help="accepted")
    parser.add_argument("name", metavar="CONTAINER")
    parser.set_defaults(func=cmd_exists)


def _register_events(commands) -> None:
    parser = commands.add_parser("events", help="show events",
                                 description="Show what happened to containers, images, volumes and networks (the "
                                             "store's event log); follows until interrupted unless --stream=false.")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="container=, image=, volume=, network=, type=, event=, label=")
    parser.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    parser.add_argument("--since", metavar="TIME")
    parser.add_argument("--until", metavar="TIME")
    add_bool(parser, "--stream", default=True, help="keep showing new events (default true)")
    add_bool(parser, "--no-trunc", default=True, help="full ids (default true)")
    parser.set_defaults(func=cmd_events)


def _register_healthcheck(commands) -> None:
    group = commands.add_parser("healthcheck", help="run health checks", description="Container health checks.")
    verbs = group.add_subparsers(dest="healthcheck_command", metavar="COMMAND", required=True)
    run = verbs.add_parser("run", help="run a container's health check once",
                           description="Run a container's health check; exit 0 when healthy, 1 when not.")
    run.add_argument("name", metavar="CONTAINER")
    run.set_defaults(func=cmd_healthcheck_run)


# -- shared helpers ----------------------------------------------------------------------


def _names(engine, args, *, states: tuple[str, ...] | None = None) -> list[str]:
    """The containers a verb acts on: its names, --cidfile's, --latest, or --all (with --filter),
    optionally only those in ``states``."""
    names = list(getattr(args, "names", None) or [])
    for path in getattr(args, "cidfile", None) or []:
        try:
            with open(path) as f:
                names.append(f.read().strip())
        except OSError as exc:
            if getattr(args, "ignore", False) and exc.errno == 2:
                continue
            raise InvalidInputError(f"reading CIDFile: {exc.strerror}: {path}") from exc
    if getattr(args, "latest", False):
        if names or getattr(args, "all", False):
            raise InvalidInputError("--latest and containers cannot be used together")
        return [engine.latest()]
    filters = getattr(args, "filter", None) or []
    if getattr(args, "all", False) or (filters and not names):
        if names:
            raise InvalidInputError("--all and containers cannot be used together")
        entries = engine.list(all=True, filters=filters)
        return [e["Id"] for e in entries if states is None or e["State"] in states]
    if not names:
        raise InvalidInputError("you must provide at least one name or id")
    return names


def _each(args, targets: list[str], action, *, missing_status: int = EXIT_ENGINE, quiet: bool = False) -> int:
    """Do ``action`` on each target and print it as given; errors are reported one line each,
    and the last one's status is ours (podman's behaviour for several containers)."""
    status = 0
    for name in targets:
        try:
            result = action(name)
            if not quiet:
                print(result if isinstance(result, str) and getattr(args, "all", False) else name)
        except NotFoundError as exc:
            if getattr(args, "ignore", False) or (getattr(args, "force", False) and missing_status == 1):
                continue  # (rm -f of a container that is not there: podman's success)
            print(f"Error: {exc}", file=sys.stderr)
            status = missing_status
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = exc.exit_code if exc.exit_code not in (1,) else EXIT_ENGINE
    return status


def _duration_or_time(text: str, what: str) -> float:
    from ketch.storage.filters import parse_time

    try:
        return parse_time(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"invalid {what} {text!r}: use RFC 3339, Unix seconds or a duration") from exc


# -- run, create, start ------------------------------------------------------------------


def cmd_run(args) -> int:
    from ketch.cli.create_flags import build_options

    with _engine_failures():
        options, attach = build_options(args)
        if args.detach and options.log_driver == "passthrough":
            raise InvalidInputError("--log-driver passthrough needs a foreground run")
        if args.detach and attach:
            raise InvalidInputError("-d and -a cannot be used together")
        engine = _engine(args)
        stdio = None
        if attach:
            null = os.open(os.devnull, os.O_RDWR)
            stdio = (0 if "stdin" in attach else null, 1 if "stdout" in attach else null,
                     2 if "stderr" in attach else null)
            if "stdin" in attach:
                options.interactive = True
        result = engine.run(args.image, options, detach=args.detach, pull=args.pull, context=pull_context(args),
                            sig_proxy=args.sig_proxy, stdio=stdio, replace=args.replace,
                            progress=_pull_progress(args))
    if args.detach or result.exit_code is None:
        print(result.container_id)
        return 0
    return result.exit_code


def _pull_progress(args):
    """podman's report of a pull done for run/create: lines on stderr, unless -q."""
    if args.quiet:
        return None
    from ketch.cli.progress import LineReport

    return LineReport(sys.stderr)


def cmd_create(args) -> int:
    from ketch.cli.create_flags import build_options

    with _engine_failures():
        options, _ = build_options(args)
        container_id = _engine(args).create(args.image, options, pull=args.pull, context=pull_context(args),
                                            replace=args.replace, progress=_pull_progress(args))
    print(container_id)
    return 0


def cmd_start(args) -> int:
    engine = _engine(args)
    if args.all:
        names = [e["Id"] for e in engine.list(all=True, filters=args.filter)
                 if e["State"] not in ("running", "paused")]
    elif args.filter and not args.names:
        names = [e["Id"] for e in engine.list(all=True, filters=args.filter)]
    else:
        names = _names(engine, args)
    if args.attach and len(names) > 1:
        raise InvalidInputError("you cannot start and attach multiple containers at once")
    status = 0
    for name in names:
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
            print(name)
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = EXIT_ENGINE if exc.exit_code not in (126, 127) else exc.exit_code
    return status


def cmd_stop(args) -> int:
    engine = _engine(args)
    return _each(args, _names(engine, args, states=("running", "paused")), lambda name: engine.stop(name, args.time))


def cmd_kill(args) -> int:
    engine = _engine(args)
    return _each(args, _names(engine, args, states=("running", "paused")),
                 lambda name: engine.kill(name, args.signal))


def cmd_restart(args) -> int:
    engine = _engine(args)
    names = _names(engine, args, states=("running", "paused") if args.running else None)
    return _each(args, names, lambda name: engine.restart(name, args.time))


def cmd_rm(args) -> int:
    """podman's statuses: 1 when a container does not exist, 2 when one runs, 125 otherwise."""
    engine = _engine(args)

    def remove(name: str) -> str:
        timeout = args.time
        if args.force and timeout is None:
            timeout = engine._record(name).options.stop_timeout
        return engine.remove(name, force=args.force, timeout=timeout, volumes=args.volumes)

    return _each(args, _names(engine, args), remove, missing_status=1)


# -- ps ----------------------------------------------------------------------------------


def _sort_key(field: str):
    keys = {"command": lambda e: " ".join(e["Command"] or []), "created": lambda e: e["Created"],
            "id": lambda e: e["Id"], "image": lambda e: e["Image"], "names": lambda e: e["Names"][0],
            "runningfor": lambda e: e["Created"], "size": lambda e: (e.get("Size") or {}).get("RwSize", 0),
            "status": lambda e: e["State"]}
    return keys[field]


def cmd_ps(args) -> int:
    from ketch.cli import report, reports

    if args.quiet and (args.size or args.ns):
        raise InvalidInputError("quiet conflicts with size and namespace")
    if args.size and args.ns:
        raise InvalidInputError("size and namespace options conflict")
    if args.last >= 0 and args.latest:
        raise InvalidInputError("last and latest are mutually exclusive")
    engine = _engine(args)
    size = args.size or bool(args.format and ".Size" in args.format)
    entries = engine.list(all=args.all or args.last >= 0 or args.latest, filters=args.filter, size=size,
                          namespaces=args.ns or bool(args.format and ".Namespaces" in args.format))
    # podman's order: by creation, oldest first (the engine lists them so, to the sub-second);
    # --last N: the N made last; --latest: the one made last.
    if args.latest:
        entries = entries[-1:]
    elif args.last > 0:  # (0, as podman has it: all)
        entries = entries[-args.last:]
    if args.sort:
        entries.sort(key=_sort_key(args.sort))
    if report.is_json(args.format):
        out = []
        for entry in entries:
            item = {k: v for k, v in entry.items() if k not in ("Health", "Restarts")}  # not in podman 4's
            item["CreatedAt"] = reports.ContainerRow(entry).CreatedHuman
            item["Status"] = reports.container_status(entry)
            out.append(item)
        print(json.dumps(out, indent=2))
        return 0
    if args.quiet and not args.format:
        for entry in entries:
            print(entry["Id"] if args.no_trunc else entry["Id"][:12])
        return 0
    rows = [reports.ContainerRow(e, args.no_trunc) for e in entries]
    formatter = report.Formatter(args.format, name="ps", noheading=args.noheading, headers=reports.PS_HEADERS,
                                 default=reports.ps_default_format(args.ns, args.pod, args.size))
    if args.watch > 0:
        import time

        while True:
            sys.stdout.write("\033[2J\033[H" + formatter.render(
                [reports.ContainerRow(e, args.no_trunc) for e in engine.list(all=args.all, filters=args.filter)]))
            sys.stdout.flush()
            time.sleep(args.watch)
    formatter.write(rows)
    return 0


# -- logs, exec, attach, wait ------------------------------------------------------------------


def cmd_logs(args) -> int:
    engine = _engine(args)
    names = [engine.latest()] if args.latest else list(args.containers)
    if not names:
        raise InvalidInputError("you must provide at least one name or id")
    since = _duration_or_time(args.since, "--since") if args.since else None
    until = _duration_or_time(args.until, "--until") if args.until else None
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}  # each record where it was written
    for name in names:
        prefix = f"{engine._record(name).name} ".encode() if args.names and len(names) > 1 else b""
        for stream, chunk in engine.logs(name, follow=args.follow, tail=args.tail, since=since, until=until,
                                         timestamps=args.timestamps):
            streams[stream].write(prefix + chunk)
            streams[stream].flush()
    return 0


def cmd_exec(args) -> int:
    from ketch.containers.options import read_env_file

    command = list(args.command)
    name = args.name
    if args.latest:  # the first word was the command
        command, name = [args.name] + command, _engine(args).latest()
    if not command:
        raise InvalidInputError("exec requires the name or ID of a container or the --latest flag")
    env = [entry for path in args.env_file for entry in read_env_file(path)] + list(args.env)
    try:
        return _engine(args).exec(name, command, interactive=args.interactive, tty=args.tty, user=args.user,
                                  workdir=args.workdir, env=env, detach=args.detach, privileged=args.privileged,
                                  preserve_fds=args.preserve_fds)
    except ContainerStateError as exc:
        if args.detach:
            raise
        raise ExecNotStartedError(str(exc)) from exc  # podman 4.3's 255: an exec that never started
    except ContainerError:
        raise
    except KetchError as exc:
        raise ContainerError(str(exc)) from exc


def cmd_attach(args) -> int:
    engine = _engine(args)
    names = _names(engine, args)
    if len(names) != 1:
        raise InvalidInputError("attach requires the name or id of one running container or the --latest flag")
    with _engine_failures():
        return engine.attach(names[0], stdin=not args.no_stdin, sig_proxy=args.sig_proxy)


def cmd_wait(args) -> int:
    from ketch.containers.options import parse_duration

    engine = _engine(args)
    interval = parse_duration(args.interval, "--interval")
    conditions = [c.lower() for c in args.condition] or ["stopped"]
    status = 0
    for name in _names(engine, args):
        try:
            print(engine.wait(name, interval=interval, conditions=conditions))
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = EXIT_ENGINE
    return status


# -- inspect, exists ---------------------------------------------------------------------------


def inspect_any(engine, name: str, kind: str, size: bool = False) -> dict:
    """One object for ``inspect``: a container, image, volume or network (``kind`` all: the
    first of those that has the name)."""
    from ketch.storage.store import Store  # noqa: F401 - the engine's store is one

    tried = ("container", "image", "volume", "network") if kind == "all" else (kind,)
    for what in tried:
        try:
            if what == "container":
                return engine.inspect(name, size=size)
            if what == "image":
                from ketch.cli.storage import inspect_entries

                found, errors = inspect_entries(engine.store, [name])
                if errors:
                    raise errors[0]
                return found[0]
            if what == "volume":
                return engine.volumes().inspect(name)
            if what == "network":
                return engine.networks().inspect(name)
            if what == "pod":
                from ketch.containers.pods import PodEngine

                return PodEngine(engine).inspect(name)
        except NotFoundError as exc:
            if kind != "all":  # podman's words for each kind
                message = {"container": f"no such container {name}", "volume": f"no such volume {name}",
                           "network": f"network {name}: {exc}"}.get(what, str(exc))
                raise NotFoundError(message) from exc
    raise NotFoundError(f'no such object: "{name}"')


def cmd_inspect(args) -> int:
    from ketch.cli.storage import print_inspected, report_inspect_errors

    engine = _engine(args)
    kind = getattr(args, "type", "container")
    names = [engine.latest()] if args.latest else list(args.names)
    if not names:
        raise InvalidInputError("no names or ids specified")
    found, status = [], 0
    errors = []
    for name in names:
        try:
            found.append(inspect_any(engine, name, kind, args.size))
        except KetchError as exc:
            errors.append(exc)
            status = EXIT_ENGINE
    print_inspected(args.format, found, "inspect")
    report_inspect_errors([str(exc) for exc in errors])
    return status


def cmd_exists(args) -> int:
    try:
        _engine(args)._record(args.name)
    except NotFoundError:
        return 1
    return 0


# -- the rest ---------------------------------------------------------------------------------


def cmd_port(args) -> int:
    engine = _engine(args)
    wanted = None
    if args.all or args.latest:
        names = [e["Id"] for e in engine.list()] if args.all else [engine.latest()]
        if args.names:
            wanted = args.names[0]
    else:
        if not args.names:
            raise InvalidInputError("you must supply a running container name or id")
        names = [args.names[0]]
        wanted = args.names[1] if len(args.names) > 1 else None
    for name in names:
        prefix = engine._record(name).id[:12] + "\t" if args.all else ""  # podman's: the id on each line
        for p in engine.ports(name):
            key = f"{p['container_port']}/{p['protocol']}"
            if wanted and wanted not in (key, str(p["container_port"])):
                continue
            host = p["host_ip"] if p["host_ip"] not in ("", "0.0.0.0") else "0.0.0.0"
            print(prefix + (f"{host}:{p['host_port']}" if wanted else f"{key} -> {host}:{p['host_port']}"))
    return 0


def cmd_pause(args) -> int:
    engine = _engine(args)
    return _each(args, _names(engine, args, states=("running",)), engine.pause)


def cmd_unpause(args) -> int:
    engine = _engine(args)
    return _each(args, _names(engine, args, states=("paused",)), engine.unpause)


def cmd_top(args) -> int:
    from ketch.containers.views import TOP_DESCRIPTORS, top_table

    engine = _engine(args)
    words = list(args.names)
    name = engine.latest() if args.latest else (words.pop(0) if words else None)
    if name is None:
        raise InvalidInputError("you must provide the name or id of a running container")
    descriptors = [d for word in words for d in word.split(",") if d] or \
        ["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"]
    unknown = [d for d in descriptors if d not in TOP_DESCRIPTORS]
    if unknown:
        raise InvalidInputError(f"unknown descriptor: {unknown[0]}")
    from ketch.cli.report import tabwrite

    rows = top_table(engine.top(name), descriptors)
    sys.stdout.write(tabwrite("".join("\t".join(row) + "\n" for row in rows)))
    return 0


def cmd_rename(args) -> int:
    _engine(args).rename(args.name, args.new_name)
    return 0


def cmd_diff(args) -> int:
    engine = _engine(args)
    name = engine.latest() if args.latest else (args.names[0] if args.names else None)
    if name is None:
        raise InvalidInputError("diff requires the name or id of one container or the --latest flag")
    changes = engine.diff(name)
    if args.format == "json":
        # podman's ChangesReportJSON: changed, added, deleted (each left out when empty), five-space indent
        out: dict[str, list[str]] = {"changed": [], "added": [], "deleted": []}
        for kind, path in changes:
            out[{"A": "added", "C": "changed", "D": "deleted"}[kind]].append(path)
        print(json.dumps({k: v for k, v in out.items() if v}, indent=5))
    elif args.format:
        raise InvalidInputError(f"unknown format {args.format!r}: diff takes json")
    else:
        for kind, path in changes:
            print(f"{kind} {path}")
    return 0


def cmd_cp(args) -> int:
    _engine(args).copy(args.source, args.destination, archive=args.archive, overwrite=args.overwrite)
    return 0


def cmd_export(args) -> int:
    engine = _engine(args)
    name = engine.latest() if args.latest else (args.names[0] if args.names else None)
    if name is None:
        raise InvalidInputError("export requires the name or id of one container")
    if args.output:
        with open(args.output, "wb") as f:
            engine.export(name, f)
    else:
        if sys.stdout.isatty():
            raise InvalidInputError("refusing to export to terminal. Use -o flag or redirect")
        sys.stdout.flush()
        engine.export(name, sys.stdout.buffer)
    return 0


def cmd_commit(args) -> int:
    image_id = _engine(args).commit(args.name, args.image, changes=args.change, message=args.message,
                                    author=args.author, fmt=args.format, pause=args.pause,
                                    include_volumes=args.include_volumes)
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write("sha256:" + image_id)
    print(image_id)
    return 0


def cmd_prune(args) -> int:
    for container_id in _engine(args).prune(filters=args.filter):
        print(container_id)
    return 0


def cmd_init(args) -> int:
    engine = _engine(args)
    if args.all:
        names = [e["Id"] for e in engine.list(all=True) if e["State"] in ("created", "exited")]
    else:
        names = _names(engine, args)
    return _each(args, names, engine.init)


def cmd_mount(args) -> int:
    engine = _engine(args)
    if args.names or args.all or args.latest:
        from ketch.cli.flags import require_unshare_for_mounts

        require_unshare_for_mounts()
    if not args.names and not args.all and not args.latest:
        mounted = engine.mounted()
        if args.format == "json":
            print(json.dumps([{"id": cid, "Names": [name], "mountpoint": path} for cid, name, path in mounted],
                             indent=1))
        else:
            for cid, _, path in mounted:
                print(f"{cid if args.no_trunc else cid[:12]} {path}")
        return 0
    names = _names(engine, args)
    for name in names:
        path = engine.mount(name)
        print(path if len(names) == 1 and not args.all else f"{engine._record(name).id} {path}")
    return 0


def cmd_umount(args) -> int:
    engine = _engine(args)
    names = [cid for cid, _, _ in engine.mounted()] if args.all else _names(engine, args)
    return _each(args, names, lambda name: engine.unmount(name, force=args.force or args.all))


def cmd_stats(args) -> int:
    import time

    from ketch.cli import humanize, report
    from ketch.cli.gotemplate import GoStruct
    from ketch.containers.stats import go_duration

    engine = _engine(args)
    names = [engine.latest()] if args.latest else list(args.names)
    previous: dict[str, dict] = {}
    first = True
    while True:
        samples = engine.stats(names or None, all=args.all)
        rows = []
        for sample in samples:
            before = previous.get(sample["ContainerID"])
            cpu = sample["CPU"]
            if before is not None and sample["SystemNano"] > before["SystemNano"]:
                cpu = 100.0 * (sample["CPUNano"] - before["CPUNano"]) / (sample["SystemNano"] - before["SystemNano"])
            previous[sample["ContainerID"]] = sample
            full = sample["ContainerID"]
            rows.append(GoStruct({
                "ID": full if args.no_trunc else full[:12], "ContainerID": full, "Name": sample["Name"],
                "CPUPerc": f"{cpu:.2f}%", "CPU": cpu, "AvgCPU": sample["AvgCPU"],
                "MemUsage": f"{humanize.human_size(sample['MemUsage'], 4)} / "
                            f"{humanize.human_size(sample['MemLimit'], 4)}",
                "MemUsageBytes": f"{humanize.bytes_size(sample['MemUsage'])} / "
                                 f"{humanize.bytes_size(sample['MemLimit'])}",
                "MemPerc": f"{sample['MemPerc']:.2f}%",
                "NetIO": f"{humanize.human_size(sample['NetInput'], 4)} / {humanize.human_size(sample['NetOutput'], 4)}",
                "BlockIO": f"{humanize.human_size(sample['BlockInput'], 4)} / "
                           f"{humanize.human_size(sample['BlockOutput'], 4)}",
                "PIDs": sample["PIDs"], "UpTime": go_duration(sample["UpTime"]),
                "CPUNano": sample["CPUNano"], "MemLimit": sample["MemLimit"]}))
        if report.is_json(args.format):
            print(json.dumps([{"id": r["ID"], "name": r["Name"], "cpu_time": r["UpTime"], "cpu_percent": r["CPUPerc"],
                               "avg_cpu": f"{r['AvgCPU']:.2f}%", "mem_usage": r["MemUsage"],
                               "mem_percent": r["MemPerc"], "net_io": r["NetIO"], "block_io": r["BlockIO"],
                               "pids": str(r["PIDs"])} for r in rows], indent=1))
        else:
            for row in rows:
                row["AvgCPU"] = f"{row['AvgCPU']:.2f}%"
            text = report.Formatter(args.format, name="stats", headers={
                "ID": "id", "UpTime": "cpu time", "CPUPerc": "cpu %", "AvgCPU": "avg cpu %",
                "MemUsage": "mem usage / limit", "MemPerc": "mem %", "NetIO": "net io", "BlockIO": "block io",
                "PIDs": "pids"}, default="{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
                                         "{{.BlockIO}}\t{{.PIDs}}\t{{.UpTime}}\t{{.AvgCPU}}").render(rows)
            if not args.no_stream and not args.no_reset and not first and sys.stdout.isatty():
                text = "\033[2J\033[H" + text
            sys.stdout.write(text)
            sys.stdout.flush()
        if args.no_stream:
            return 0
        first = False
        time.sleep(max(args.interval, 1))
    return 0  # (the loop ends only by returning)


def cmd_events(args) -> int:
    from ketch.cli import report
    from ketch.cli.gotemplate import GoStruct, GoTime
    from ketch.storage.events import TYPES, matches

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"invalid filter {item!r}")
        if key not in ("container", "event", "image", "label", "type", "volume", "network", "pod", "status"):
            raise InvalidInputError(f"{key} is an invalid filter")
        if key == "type" and value not in TYPES:
            raise InvalidInputError(f"{value} is an invalid event type")
        filters.setdefault(key, []).append(value)
    since = _duration_or_time(args.since, "--since") if args.since else None
    until = _duration_or_time(args.until, "--until") if args.until else None
    log = _engine(args).store.events
    template = None
    if args.format and not report.is_json(args.format):
        from ketch.cli.gotemplate import Template

        template = Template(report.normalize(args.format), "events")

    def show(event: dict) -> None:
        moment = GoTime.from_unix(event["Time"] / 1e9)
        if report.is_json(args.format):
            out = {"ID": event["ID"], "Image": event["Image"], "Name": event["Name"], "Status": event["Status"],
                   "Time": moment.moment.strftime("%Y-%m-%dT%H:%M:%S") +
                   (f".{event['Time'] % 10**9:09d}".rstrip("0").rstrip(".")) + "Z",
                   "Type": event["Type"], "Attributes": event["Attributes"] or None}
            if "ContainerExitCode" in event:
                out["ContainerExitCode"] = event["ContainerExitCode"]
            print(json.dumps({k: v for k, v in out.items() if v not in ("", None) or k == "Attributes"},
                             separators=(",", ":")))
        elif template is not None:
            data = GoStruct({"ID": event["ID"], "Image": event["Image"], "Name": event["Name"],
                             "Status": event["Status"], "Time": moment, "TimeNano": event["Time"],
                             "Type": event["Type"], "Attributes": event["Attributes"] or {},
                             "ContainerExitCode": event.get("ContainerExitCode", 0), "Network": ""})
            sys.stdout.write(template.execute(data))
        else:
            print(_human_event(event, moment))
        sys.stdout.flush()

    for event in log.read():
        when = event["Time"] / 1e9
        if (since is None or when >= since) and (until is None or when <= until) and matches(event, filters):
            show(event)
    if not args.stream or (until is not None):
        return 0
    import time

    for event in log.follow():
        if until is not None and time.time() > until:
            return 0
        if event is not None and matches(event, filters) and (since is None or event["Time"] / 1e9 >= since):
            show(event)
    return 0  # (the log's follower ended)


def _human_event(event: dict, moment) -> str:
    """podman's line: TIME TYPE STATUS ID (image=..., name=..., labels...)."""
    kind, status, ident = event["Type"], event["Status"], event["ID"]
    if kind == "container":
        text = f"{moment} {kind} {status} {ident} (image={event['Image']}, name={event['Name']}"
        for key, value in sorted((event.get("Attributes") or {}).items()):
            text += f", {key}={value}"
        return text + ")"
    if kind == "image":
        return f"{moment} {kind} {status} {ident} {event['Name']}"
    if kind == "network":
        return f"{moment} {kind} {status} {ident} (container={ident}, name={event['Name']})"
    return f"{moment} {kind} {status} {event['Name']}"


def cmd_healthcheck_run(args) -> int:
    from ketch.containers.health import HEALTHY

    result = _engine(args).healthcheck_run(args.name)
    if result == HEALTHY:
        return 0
    print(result)
    return 1


_REGISTRARS = {"run": _register_run, "create": _register_create, "start": _register_start, "stop": _register_stop,
               "kill": _register_kill, "restart": _register_restart, "rm": _register_rm, "ps": _register_ps,
               "logs": _register_logs, "exec": _register_exec, "inspect": _register_inspect, "wait": _register_wait,
               "port": _register_port, "pause": _register_pause, "unpause": _register_unpause, "top": _register_top,
               "rename": _register_rename, "update": _register_update, "diff": _register_diff, "cp": _register_cp,
               "export": _register_export,
               "commit": _register_commit, "prune": _register_prune, "attach": _register_attach,
               "init": _register_init, "mount": _register_mount, "umount": _register_umount,
               "stats": _register_stats, "exists": _register_exists, "events": _register_events,
               "healthcheck": _register_healthcheck}


for _command in (cmd_run, cmd_create, cmd_start, cmd_stop, cmd_kill, cmd_restart, cmd_rm, cmd_ps, cmd_logs, cmd_exec,
                 cmd_attach, cmd_wait, cmd_inspect, cmd_exists, cmd_port, cmd_pause, cmd_unpause, cmd_top,
                 cmd_rename, cmd_diff, cmd_cp, cmd_export, cmd_commit, cmd_prune, cmd_init, cmd_mount, cmd_umount,
                 cmd_stats, cmd_events, cmd_healthcheck_run):
    _command.fast_exit = True  # type: ignore[attr-defined]  # see ketch.cli.main.main
