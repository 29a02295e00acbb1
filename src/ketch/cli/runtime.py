"""``ketch-runtime``: a runc-compatible command line over :mod:`ketch.runtime`.

Spelled as runc spells it, because conmon, podman and CRI-O drive it the way
they drive runc: global ``--root``, ``--log``, ``--log-format``, ``--debug``,
``--systemd-cgroup``; then ``create``, ``start``, ``run``, ``state``,
``kill``, ``delete``, ``list``, ``ps``, ``spec``, ``features``. Errors go to
stderr and, when ``--log`` is given, to the log file (JSON lines with
``--log-format json``), where conmon looks for them.
"""

from __future__ import annotations

import sys
import time

from ketch import __version__
from ketch.errors import KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs milliseconds: not on ketch-runtime's path)
    from typing import Any, NoReturn

OCI_VERSION = "1.0.2"


def build_parser():
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(2, f"ketch-runtime: {message}\n")

    parser = _Parser(prog="ketch-runtime", description="ketch's OCI runtime (runc-compatible command line).")
    parser.add_argument("--version", "-v", action="store_true", help="print the version (handled in main)")
    parser.add_argument("--root", default=None,
                        help="state directory (default /run/ketch-runtime; $XDG_RUNTIME_DIR/ketch-runtime for users)")
    parser.add_argument("--log", metavar="PATH", help="also write errors to this file")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--systemd-cgroup", action="store_true",
                        help="read cgroupsPath as slice:prefix:name (laid out as systemd would)")
    parser.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    parser.add_argument("--criu", help="accepted for runc compatibility")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def creating(p):
        p.add_argument("id", metavar="CONTAINER-ID")
        p.add_argument("--bundle", "-b", default=".", help="the bundle directory (default: .)")
        p.add_argument("--pid-file", metavar="PATH", help="write the container's pid here")
        p.add_argument("--console-socket", metavar="PATH", help="send the pty master to this unix socket")
        p.add_argument("--no-pivot", action="store_true", help="chroot instead of pivot_root")
        p.add_argument("--no-new-keyring", action="store_true", help="accepted; no session keyring is made")
        p.add_argument("--preserve-fds", type=int, default=0, metavar="N", help="pass fds 3..3+N-1 on")

    create = commands.add_parser("create", help="create a container", description="Create a container.")
    creating(create)
    run = commands.add_parser("run", help="create and start a container", description="Create and start.")
    creating(run)
    run.add_argument("--detach", "-d", action="store_true", help="return once the container started")
    for name, text in (("start", "start a created container"), ("state", "print a container's state")):
        sub = commands.add_parser(name, help=text, description=text.capitalize() + ".")
        sub.add_argument("id", metavar="CONTAINER-ID")
    kill = commands.add_parser("kill", help="send a signal to a container", description="Send a signal.")
    kill.add_argument("id", metavar="CONTAINER-ID")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    kill.add_argument("--all", "-a", action="store_true", help="to every process of the container")
    delete = commands.add_parser("delete", help="delete a container", description="Delete a stopped container.")
    delete.add_argument("id", metavar="CONTAINER-ID")
    delete.add_argument("--force", "-f", action="store_true", help="kill it first if it runs")
    listing = commands.add_parser("list", help="list containers", description="List containers.")
    listing.add_argument("--format", "-f", default="table", choices=["table", "json"])
    listing.add_argument("--quiet", "-q", action="store_true")
    ps = commands.add_parser("ps", help="list a container's processes", description="List processes.")
    ps.add_argument("id", metavar="CONTAINER-ID")
    ps.add_argument("--format", "-f", default="table", choices=["table", "json"])
    spec = commands.add_parser("spec", help="write a default config.json", description="Write config.json.")
    spec.add_argument("--bundle", "-b", default=".")
    spec.add_argument("--rootless", action="store_true")
    commands.add_parser("features", help="print what this runtime supports", description="Print features.")
    execute = commands.add_parser("exec", help="run a process in a running container",
                                  description="Run a process in a container's namespaces and cgroup.")
    execute.add_argument("id", metavar="CONTAINER-ID")
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                         help="the process (or --process); everything after the id is its command line")
    execute.add_argument("--process", "-p", metavar="FILE", help="a runtime-spec process object as JSON")
    execute.add_argument("--detach", "-d", action="store_true", help="return once the process runs")
    execute.add_argument("--tty", "-t", action="store_true", help="give the process a terminal")
    execute.add_argument("--pid-file", metavar="PATH")
    execute.add_argument("--console-socket", metavar="PATH")
    execute.add_argument("--cwd", metavar="DIR")
    execute.add_argument("--env", "-e", action="append", default=[], metavar="NAME=VALUE")
    execute.add_argument("--user", "-u", metavar="UID[:GID]")
    execute.add_argument("--additional-gids", "-g", action="append", default=[], metavar="GID")
    execute.add_argument("--cap", "-c", action="append", default=[], metavar="CAP", help="add a capability")
    execute.add_argument("--no-new-privs", action="store_true")
    execute.add_argument("--preserve-fds", type=int, default=0, metavar="N")
    execute.add_argument("--apparmor", help="accepted; this host has no AppArmor")
    execute.add_argument("--process-label", help="accepted; this host has no SELinux")
    for name, text in (("pause", "freeze every process of a container"), ("resume", "thaw a paused container")):
        sub = commands.add_parser(name, help=text, description=text.capitalize() + ".")
        sub.add_argument("id", metavar="CONTAINER-ID")
    events = commands.add_parser("events", help="print a container's resource usage and OOM kills",
                                 description="Print JSON events as runc does: stats every --interval, and "
                                             "an oom event at each OOM kill, until the container stops.")
    events.add_argument("id", metavar="CONTAINER-ID")
    events.add_argument("--stats", action="store_true", help="print one stats event and exit")
    events.add_argument("--interval", default="5s", help="time between stats events (default 5s)")
    update = commands.add_parser("update", help="change a running container's resources",
                                 description="Change a container's cgroup resources.")
    update.add_argument("id", metavar="CONTAINER-ID")
    update.add_argument("--resources", "-r", metavar="FILE", help="linux.resources JSON ('-' for stdin)")
    for flag, help_text in (("--memory", "memory limit (bytes, or with k/m/g)"),
                            ("--memory-reservation", "memory soft limit"), ("--memory-swap", "memory plus swap limit"),
                            ("--kernel-memory", "accepted, ignored (deprecated by the kernel)"),
                            ("--cpu-share", "CPU shares"), ("--cpu-period", "CFS period (us)"),
                            ("--cpu-quota", "CFS quota (us)"), ("--cpu-rt-period", "realtime period (us)"),
                            ("--cpu-rt-runtime", "realtime runtime (us)"), ("--cpuset-cpus", "CPUs, as 0-3,5"),
                            ("--cpuset-mems", "memory nodes"), ("--pids-limit", "maximum number of processes"),
                            ("--blkio-weight", "block IO weight")):
        update.add_argument(flag, help=help_text)
    return parser


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def parse_size(text: str) -> int:
    """docker/runc memory sizes: 1024, 512k, 64m, 1g; -1 is unlimited."""
    from ketch.errors import InvalidInputError

    stripped = text.strip().lower()
    if stripped == "-1":
        return -1
    number = stripped.rstrip("kmgb")
    unit = stripped[len(number):]
    try:
        return int(float(number) * _SIZE_UNITS[unit])
    except (ValueError, KeyError) as exc:
        raise InvalidInputError(f"invalid size {text!r}") from exc


def exec_process(args, runtime) -> dict:
    """exec's process: --process FILE, or the container's own process with exec's flags applied."""
    import json

    from ketch.errors import InvalidInputError
    from ketch.runtime import spec as specs

    if args.process:
        try:
            with open(args.process) as f:
                process = json.load(f)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"reading the process from {args.process}: {exc}") from exc
        if not isinstance(process, dict):
            raise InvalidInputError(f"{args.process}: a process must be a JSON object")
        return process
    if not args.argv:
        raise InvalidInputError("exec: give a command, or --process FILE")
    state = runtime.state(args.id)
    try:
        base: dict[str, Any] = dict(specs.load(state["bundle"]).get("process") or {})
    except KetchError:
        base = {}
    process = {"args": list(args.argv), "env": list(base.get("env") or []) + list(args.env),
               "cwd": args.cwd or base.get("cwd") or "/", "terminal": args.tty,
               "user": dict(base.get("user") or {"uid": 0, "gid": 0}),
               "capabilities": dict(base.get("capabilities") or {}),
               "noNewPrivileges": bool(base.get("noNewPrivileges")) or args.no_new_privs,
               "rlimits": list(base.get("rlimits") or [])}
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError as exc:
            raise InvalidInputError(f"--user {args.user!r}: give numeric UID[:GID]") from exc
    if args.additional_gids:
        process["user"]["additionalGids"] = [int(g) for g in args.additional_gids]
    for cap in args.cap:
        for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            process["capabilities"].setdefault(kind, [])
            if cap not in process["capabilities"][kind] and kind != "inheritable":
                process["capabilities"][kind].append(cap)
    return process


def update_resources(args) -> dict:
    """linux.resources from update's flags (or its -r file)."""
    from ketch.errors import InvalidInputError

    if args.resources:
        import json

        try:
            text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
            given = json.loads(text)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"reading resources from {args.resources}: {exc}") from exc
        if not isinstance(given, dict):
            raise InvalidInputError("the resources must be a JSON object (linux.resources)")
        return given

    def number(flag, text):
        try:
            return int(text)
        except ValueError as exc:
            raise InvalidInputError(f"{flag}: {text!r} is not a number") from exc

    resources: dict = {}
    memory = {k: parse_size(v) for k, v in (("limit", args.memory), ("reservation", args.memory_reservation),
                                               ("swap", args.memory_swap)) if v is not None}
    cpu = {k: number(f, v) for k, f, v in (("shares", "--cpu-share", args.cpu_share),
                                            ("period", "--cpu-period", args.cpu_period),
                                            ("quota", "--cpu-quota", args.cpu_quota),
                                            ("realtimePeriod", "--cpu-rt-period", args.cpu_rt_period),
                                            ("realtimeRuntime", "--cpu-rt-runtime", args.cpu_rt_runtime))
           if v is not None}
    cpu.update({k: v for k, v in (("cpus", args.cpuset_cpus), ("mems", args.cpuset_mems)) if v})
    if memory:
        resources["memory"] = memory
    if cpu:
        resources["cpu"] = cpu
    if args.pids_limit is not None:
        resources["pids"] = {"limit": number("--pids-limit", args.pids_limit)}
    if args.blkio_weight is not None:
        resources["blockIO"] = {"weight": number("--blkio-weight", args.blkio_weight)}
    if not resources:
        raise InvalidInputError("update: nothing to change (give a flag or -r FILE)")
    return resources


def features() -> dict:
    from ketch.runtime import capabilities, seccomp
    from ketch.runtime.rootfs import MOUNT_FLAGS, PROPAGATION

    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(set(MOUNT_FLAGS) | set(PROPAGATION)),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities.NAMES[: capabilities.last_cap() + 1],
            # systemd: the slice:prefix:name form is laid out directly, without asking systemd
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS), "operators": sorted(seccomp.OPERATORS),
                        "archs": sorted(seccomp.ARCHITECTURES), "knownFlags": sorted(seccomp.FILTER_FLAGS),
                        "supportedFlags": sorted(seccomp.FILTER_FLAGS)},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
    }


def _log(args, level: str, message: str) -> None:
    if not args.log:
        return
    try:
        with open(args.log, "a") as f:
            if args.log_format == "json":
                from ketch.runtime import leanjson

                f.write(leanjson.dumps({"level": level, "msg": message,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            else:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {level}: {message}\n")
    except OSError:
        pass


def _pretty(value, indent) -> str:
    import json  # only for indented output: json costs milliseconds to import

    return json.dumps(value, indent=indent)


def _notify_socket() -> str | None:
    """systemd's notify socket, passed through to the container as runc does."""
    import os

    return os.environ.get("NOTIFY_SOCKET") or None


def dispatch(args) -> int:
    from ketch.runtime import leanjson
    from ketch.runtime.container import Runtime, parse_signal

    runtime = Runtime(args.root, systemd_cgroup=args.systemd_cgroup)
    command = args.command
    if command == "create":
        runtime.create(args.id, args.bundle, pid_file=args.pid_file, console_socket=args.console_socket,
                       no_pivot=args.no_pivot, preserve_fds=args.preserve_fds, notify_socket=_notify_socket())
    elif command == "run":
        return runtime.run(args.id, args.bundle, detach=args.detach, pid_file=args.pid_file,
                           console_socket=args.console_socket, no_pivot=args.no_pivot,
                           preserve_fds=args.preserve_fds, notify_socket=_notify_socket())
    elif command == "start":
        runtime.start(args.id)
    elif command == "state":
        print(_pretty(runtime.state(args.id), 2))
    elif command == "kill":
        runtime.kill(args.id, parse_signal(args.signal), all_processes=args.all)
    elif command == "delete":
        runtime.delete(args.id, force=args.force)
    elif command == "list":
        states = runtime.list()
        if args.quiet:
            for s in states:
                print(s["id"])
        elif args.format == "json":
            print(leanjson.dumps(states))
        else:
            print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} {'CREATED':<32} OWNER")
            for s in states:
                print(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} {s['created']:<32} root")
    elif command == "ps":
        pids = runtime.pids(args.id)
        print(leanjson.dumps(pids) if args.format == "json" else "PID\n" + "".join(f"{p}\n" for p in pids), end="\n"
              if args.format == "json" else "")
    elif command == "spec":
        import os

        from ketch.runtime.spec import default_spec

        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            raise KetchError(f"File {path} exists. Remove it first.")
        with open(path, "w") as f:
            f.write(_pretty(default_spec(rootless=args.rootless), "\t"))
    elif command == "features":
        print(_pretty(features(), 4))
    elif command == "exec":
        return runtime.exec(args.id, exec_process(args, runtime), detach=args.detach, pid_file=args.pid_file,
                            console_socket=args.console_socket, preserve_fds=args.preserve_fds)
    elif command == "pause":
        runtime.pause(args.id)
    elif command == "resume":
        runtime.resume(args.id)
    elif command == "update":
        runtime.update(args.id, update_resources(args))
    elif command == "events":
        if args.stats:
            print(leanjson.dumps(runtime.stats(args.id)), flush=True)
        else:
            import gc

            gc.enable()  # bin/ketch-runtime turns it off for short commands; this one runs on
            for event in runtime.events(args.id, _seconds(args.interval)):
                print(leanjson.dumps(event), flush=True)
    return 0


def _seconds(text: str) -> float:
    """Go-style durations as runc takes them: 5s, 500ms, 1m."""
    from ketch.errors import InvalidInputError

    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * factor
            except ValueError:
                break
    raise InvalidInputError(f"invalid interval {text!r} (like 5s or 500ms)")


# The commands conmon and podman run for every container take a fast path: argparse alone
# (import and building the parser) costs about as much as runc's whole run. Anything the fast
# parser does not know -- --help, a typo, another command -- goes to the full argparse parser.
_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format", "--rootless": "rootless",
                  "--criu": "criu"}
_GLOBAL_FLAGS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}
_VALUES = {"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file", "--console-socket": "console_socket",
           "--preserve-fds": "preserve_fds"}
_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring", "-d": "detach", "--detach": "detach",
          "--all": "all", "-a": "all", "--force": "force", "-f": "force"}
_ALLOWED = {"create": {"bundle", "pid_file", "console_socket", "preserve_fds", "no_pivot", "no_new_keyring"},
            "run": {"bundle", "pid_file", "console_socket", "preserve_fds", "no_pivot", "no_new_keyring", "detach"},
            "start": set(), "state": set(), "kill": {"all"}, "delete": {"force"}}


class _Args:
    def __init__(self, **values) -> None:
        self.__dict__.update(values)


def _fast_parse(argv: list[str]) -> _Args | None:
    values: dict = {"root": None, "log": None, "log_format": "text", "debug": False,
                    "systemd_cgroup": False, "rootless": "auto", "criu": None}
    words = list(argv)
    while words and words[0].startswith("-"):
        option, eq, value = words.pop(0).partition("=")
        if option in _GLOBAL_FLAGS and not eq:
            values[_GLOBAL_FLAGS[option]] = True
        elif option in _GLOBAL_VALUES:
            if not eq:
                if not words:
                    return None
                value = words.pop(0)
            values[_GLOBAL_VALUES[option]] = value
        else:
            return None
    if not words or words[0] not in _ALLOWED or values["log_format"] not in ("text", "json"):
        return None
    command = values["command"] = words.pop(0)
    allowed = _ALLOWED[command]
    values.update(bundle=".", pid_file=None, console_socket=None, preserve_fds=0, no_pivot=False,
                  no_new_keyring=False, detach=False, all=False, force=False)
    positional = []
    while words:
        word = words.pop(0)
        if word.startswith("-") and len(word) > 1 and not word.lstrip("-").isdigit():
            option, eq, value = word.partition("=")
            if option in _FLAGS and _FLAGS[option] in allowed and not eq:
                values[_FLAGS[option]] = True
            elif option in _VALUES and _VALUES[option] in allowed:
                if not eq:
                    if not words:
                        return None
                    value = words.pop(0)
                values[_VALUES[option]] = value
            else:
                return None
        else:
            positional.append(word)
    if command == "kill" and len(positional) in (1, 2):
        values["id"], values["signal"] = positional[0], positional[1] if len(positional) == 2 else "SIGTERM"
    elif len(positional) == 1:
        values["id"] = positional[0]
    else:
        return None
    try:
        values["preserve_fds"] = int(values["preserve_fds"])
    except ValueError:
        return None
    return _Args(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("--version", "-v"):
        # As runc prints it, one fact per line (argparse's version action folds the lines).
        print(f"ketch-runtime version {__version__}\nspec: {OCI_VERSION}")
        return 0
    args = _fast_parse(argv) or build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except KetchError as exc:
        _log(args, "error", str(exc))
        print(f"ketch-runtime: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        _log(args, "error", message)
        print(f"ketch-runtime: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
