"""``ketch system ...`` (df, prune, reset, info) and ``ketch info``, as podman's."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.errors import InvalidInputError


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def register(commands: argparse._SubParsersAction) -> None:
    system = commands.add_parser("system", help="manage the store", description="Store-wide commands.")
    verbs = system.add_subparsers(dest="system_verb", metavar="COMMAND", required=True)
    df = verbs.add_parser("df", help="show disk usage", description="Show how much the store uses.")
    df.add_argument("--format", metavar="FORMAT", help="json, or a Go template (.Type .Total .Size ...)")
    df.add_argument("-v", "--verbose", action="store_true", help="accepted; the summary is shown")
    df.set_defaults(func=cmd_df)
    prune = verbs.add_parser("prune", help="remove unused data",
                             description="Remove stopped containers, unused networks and dangling images "
                                         "(unused images with -a, unused volumes with --volumes).")
    prune.add_argument("-a", "--all", action="store_true", help="every unused image, not only dangling ones")
    prune.add_argument("--volumes", action="store_true", help="unused volumes too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")
    prune.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    prune.set_defaults(func=cmd_prune)
    reset = verbs.add_parser("reset", help="remove everything from the store",
                             description="Stop and remove every container, network, volume, image and layer.")
    reset.add_argument("-f", "--force", action="store_true", help="do not ask")
    reset.set_defaults(func=cmd_reset)
    for parent, name in ((verbs, "info"), (commands, "info")):
        info = parent.add_parser(name, help="show ketch's view of the host and store",
                                 description="Show the host, the store and the engine's settings (YAML, as "
                                             "podman's).")
        info.add_argument("-f", "--format", metavar="FORMAT", help="json, or a Go template (.Host.Arch ...)")
        info.add_argument("-D", "--debug", action="store_true", help="accepted, as podman's")
        info.set_defaults(func=cmd_info)


def _ask(question: str, force: bool) -> bool:
    if force:
        return True
    if not sys.stdin.isatty():
        raise InvalidInputError("this removes data: confirm with --force")
    return input(question).strip().lower() in ("y", "yes")


def cmd_df(args) -> int:
    from ketch.cli import humanize, report
    from ketch.cli.gotemplate import GoStruct
    from ketch.containers import housekeeping

    rows = housekeeping.disk_usage(_engine(args))
    for row in rows:
        size, free = row["RawSize"], row["RawReclaimable"]
        row["Size"] = humanize.human_size(size, 4)
        row["Reclaimable"] = f"{humanize.human_size(free, 4)} ({int(round(100 * free / size)) if size else 0}%)"
    if report.is_json(args.format):
        print(json.dumps(rows, indent=4))
        return 0
    items = [GoStruct(r) for r in rows]
    report.Formatter(args.format, name="df", default="{{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t"
                                                      "{{.Reclaimable}}").write(items)
    return 0


def cmd_prune(args) -> int:
    from ketch.containers import housekeeping

    warning = ("WARNING! This command removes:\n\t- all stopped containers\n\t- all networks not used by at "
               "least one container\n" + ("\t- all volumes not used by at least one container\n" if args.volumes
                                          else "") +
               ("\t- all images without at least one container associated with them\n" if args.all else
                "\t- all dangling images\n") + "\nAre you sure you want to continue? [y/N] ")
    if not _ask(warning, args.force):
        return 0
    removed = housekeeping.prune(_engine(args), all_images=args.all, volumes=args.volumes)
    for kind in ("Containers", "Networks", "Volumes", "Images"):
        if removed[kind]:
            print(f"Deleted {kind}")
            for name in removed[kind]:
                print(name)
    return 0


def cmd_reset(args) -> int:
    from ketch.containers import housekeeping

    question = ("WARNING! This will remove:\n        - all containers\n        - all networks\n"
                "        - all images\n        - all volumes\n        - all build cache\n"
                "Are you sure you want to continue? [y/N] ")
    if not _ask(question, args.force):
        return 0
    housekeeping.reset(_engine(args))
    return 0


def info_go_fields(data):
    """ketch's info JSON (podman's lower-camel keys) → podman's Go field names."""
    if isinstance(data, dict):
        return _struct({_go_name(k): info_go_fields(v) for k, v in data.items()})
    if isinstance(data, list):
        return [info_go_fields(v) for v in data]
    return data


_GO_NAMES = {"ociRuntime": "OCIRuntime", "idMappings": "IDMappings", "cpus": "CPUs", "os": "OS",
             "cpuUtilization": "CPUUtilization", "apparmorEnabled": "AppArmorEnabled",
             "selinuxEnabled": "SELinuxEnabled", "buildahVersion": "BuildahVersion", "linkmode": "Linkmode",
             "uidmap": "UIDMap", "gidmap": "GIDMap", "memFree": "MemFree", "memTotal": "MemTotal",
             "graphOptions": "GraphOptions", "cgroupVersion": "CgroupsVersion", "swapFree": "SwapFree",
             "swapTotal": "SwapTotal", "eventLogger": "EventLogger", "cgroupControllers": "CgroupControllers",
             "seccompEnabled": "SECCOMPEnabled", "seccompProfilePath": "SECCOMPProfilePath",
             "serviceIsRemote": "ServiceIsRemote", "graphRootAllocated": "GraphRootAllocated",
             "graphRootUsed": "GraphRootUsed", "imageCopyTmpDir": "ImageCopyTmpDir", "configFile": "ConfigFile",
             "containersConf": "ContainersConf"}


def _go_name(key: str) -> str:
    return _GO_NAMES.get(key, key[:1].upper() + key[1:])


def _struct(fields: dict):
    from ketch.cli.gotemplate import GoStruct

    return GoStruct(fields)


def cmd_info(args) -> int:
    from ketch.cli import report
    from ketch.cli.main import _render_one

    data = _engine(args).info()
    if report.is_json(args.format):
        print(json.dumps(data, indent=4))
    elif args.format:
        sys.stdout.write(_render_one(args.format, info_go_fields(data), "info"))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
    return 0


for _command in (cmd_df, cmd_prune, cmd_reset, cmd_info):
    _command.fast_exit = True  # type: ignore[attr-defined]  # see ketch.cli.main.main
