"""``ketch system ...``: the store-wide verbs (df, prune, reset, info; ``ketch info``) as
podman's, and system containers (install, update, rollback, uninstall, list, status) as
``atomic install --system`` and its friends."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.cli.flags import add_bool
from ketch.errors import InvalidInputError


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def register(commands: argparse._SubParsersAction) -> None:
    system = commands.add_parser("system", help="manage the store and system containers",
                                 description="Store-wide commands, and system containers (units that boot with "
                                             "no ketch process running).")
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
    service = verbs.add_parser("service", help="serve the Docker API on a socket",
                               description="Serve the Docker Engine API (docker, docker-compose, the docker SDK) "
                                           "on URI: unix:///run/ketch/ketch.sock by default ($XDG_RUNTIME_DIR/ketch/"
                                           "ketch.sock for a user), tcp://127.0.0.1:PORT, or the socket systemd "
                                           "passes. The containers it starts do not depend on it.")
    service.add_argument("uri", nargs="?", metavar="URI", help="unix:///PATH or tcp://HOST:PORT")
    service.add_argument("-t", "--time", type=float, default=5, metavar="SECONDS",
                         help="exit after this many idle seconds (0: never; default 5)")
    service.set_defaults(func=cmd_service)
    _register_system_containers(verbs)
    for parent, name in ((verbs, "info"), (commands, "info")):
        info = parent.add_parser(name, help="show ketch's view of the host and store",
                                 description="Show the host, the store and the engine's settings (YAML, as "
                                             "podman's).")
        info.add_argument("-f", "--format", metavar="FORMAT", help="json, or a Go template (.Host.Arch ...)")
        info.add_argument("-D", "--debug", action="store_true", help="accepted, as podman's")
        info.set_defaults(func=cmd_info)


def _register_system_containers(verbs) -> None:
    def common(parser) -> None:
        parser.add_argument("--host-root", default="/", metavar="DIR",
                            help="the root whose /etc/systemd/system and /etc/tmpfiles.d get the units (default /)")
        parser.add_argument("--system-dir", metavar="DIR",
                            help="where deployments and their objects live (default ROOT/system)")

    def pulling(parser) -> None:
        parser.add_argument("--creds", metavar="USER[:PASS]")
        parser.add_argument("--authfile", metavar="PATH")
        parser.add_argument("--cert-dir", metavar="DIR")
        add_bool(parser, "--tls-verify", help="require HTTPS and verify certificates (default true)")
        parser.add_argument("-q", "--quiet", action="store_true", help="no pull progress")

    install = verbs.add_parser("install", help="install an image as a system container",
                               description="Pull IMAGE, check it out as a read-only deployment and install its "
                                           "systemd unit, enabled (atomic install --system).")
    install.add_argument("image", metavar="IMAGE")
    install.add_argument("-n", "--name", metavar="NAME", help="the unit's name (default: the image's)")
    install.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a template variable")
    install.add_argument("--runtime", metavar="RUNTIME",
                         help="the OCI runtime the unit runs: ketch-runtime (default), runc, crun or a path")
    common(install)
    pulling(install)
    install.set_defaults(func=cmd_install)
    update = verbs.add_parser("update", help="update a system container to its image's newest version",
                              description="Pull the image again; if it changed, deploy it, switch the unit to it "
                                          "and restart the unit. The previous deployment is kept for rollback.")
    update.add_argument("name", metavar="NAME")
    update.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a variable")
    update.add_argument("--runtime", metavar="RUNTIME")
    update.add_argument("--image", metavar="IMAGE", help="switch to another image")
    update.add_argument("-f", "--force", action="store_true", help="deploy again even if nothing changed")
    common(update)
    pulling(update)
    update.set_defaults(func=cmd_update)
    rollback = verbs.add_parser("rollback", help="switch a system container back to its previous deployment",
                                description="Switch the unit back to the previous deployment and restart it.")
    rollback.add_argument("name", metavar="NAME")
    common(rollback)
    rollback.set_defaults(func=cmd_rollback)
    uninstall = verbs.add_parser("uninstall", help="remove a system container",
                                 description="Stop and disable the unit; remove it, its tmpfiles.d file, the host "
                                             "files the image put there, and its deployments.")
    uninstall.add_argument("names", nargs="+", metavar="NAME")
    common(uninstall)
    uninstall.set_defaults(func=cmd_uninstall)
    listing = verbs.add_parser("list", help="list system containers", description="List system containers.")
    listing.add_argument("--format", metavar="FORMAT", help="json, or a Go template (.Name .Image .ImageID ...)")
    listing.add_argument("--noheading", "-n", action="store_true")
    common(listing)
    listing.set_defaults(func=cmd_list)
    status = verbs.add_parser("status", help="show a system container's deployments and unit",
                              description="Show the deployments (the active one, each image digest) and the unit.")
    status.add_argument("name", metavar="NAME")
    status.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    common(status)
    status.set_defaults(func=cmd_status)


def _system_containers(args):
    from ketch.storage.store import Store
    from ketch.system import SystemContainers

    store = Store(args.root, args.runroot, args.storage_driver)
    return SystemContainers(store, directory=args.system_dir, host_root=args.host_root)


def _puller(args, system, stack):
    from ketch.cli.storage import pull_image

    args.retry_times = getattr(args, "retry_times", 3)
    return lambda name: pull_image(args, system.store, name, stack)


def cmd_install(args) -> int:
    import contextlib

    from ketch.system.templates import parse_sets

    system = _system_containers(args)
    with contextlib.ExitStack() as stack:
        deployment = system.install(args.image, name=args.name, values=parse_sets(args.set), runtime=args.runtime,
                                    pull=_puller(args, system, stack))
    print(f"Extracted {deployment.image} to {deployment.path}")
    print(f"Installed {system.unit_path(deployment.name)} (enabled)"
          + ("" if system.systemd.running else "; systemd is not running: it starts at the next boot"))
    return 0


def cmd_update(args) -> int:
    import contextlib

    from ketch.system.templates import parse_sets

    system = _system_containers(args)
    with contextlib.ExitStack() as stack:
        deployment = system.update(args.name, values=parse_sets(args.set), runtime=args.runtime, image=args.image,
                                   force=args.force, pull=_puller(args, system, stack))
    if deployment is None:
        print(f"{args.name}: the latest version is already installed")
    else:
        print(f"Updated {args.name} to deployment {deployment.number} ({deployment.image_id[:12]}) at "
              f"{deployment.path}")
    return 0


def cmd_rollback(args) -> int:
    deployment = _system_containers(args).rollback(args.name)
    print(f"Rolled {args.name} back to deployment {deployment.number} ({deployment.image_id[:12]})")
    return 0


def cmd_uninstall(args) -> int:
    system = _system_containers(args)
    for name in args.names:
        system.uninstall(name)
        print(name)
    return 0


def cmd_list(args) -> int:
    from ketch.cli import humanize, report
    from ketch.cli.gotemplate import GoStruct

    rows = _system_containers(args).list()
    if report.is_json(args.format):
        print(json.dumps(rows, indent=4))
        return 0
    for row in rows:
        row["ID"] = row["ImageID"][:12]
        row["CreatedSince"] = humanize.since(row["Created"]) + " ago"
    report.Formatter(args.format, name="list", default="{{.Name}}\t{{.Image}}\t{{.ID}}\t{{.Deployment}}\t"
                                                       "{{.CreatedSince}}\t{{.State}}",
                     headers={"Name": "NAME", "Image": "IMAGE", "ID": "IMAGE ID", "Deployment": "DEPLOYMENT",
                              "CreatedSince": "CREATED", "State": "STATE"},
                     noheading=args.noheading).write([GoStruct(r) for r in rows])
    return 0


def cmd_status(args) -> int:
    from ketch.cli import report
    from ketch.cli.gotemplate import GoStruct

    status = _system_containers(args).status(args.name)
    if report.is_json(args.format):
        print(json.dumps(status, indent=4))
        return 0
    if args.format:
        report.Formatter(args.format, name="status", default="").write([GoStruct(status)])
        return 0
    print(f"{status['Name']}: unit {status['Unit']}, {status['UnitState']}"
          + (f" ({status['SubState']})" if status["SubState"] else ""))
    for d in status["Deployments"]:
        mark = "*" if d["Active"] else " "
        print(f"{mark} {d['Deployment']}  {d['Image']}  {d['Digest'] or d['ImageID']}  {d['Path']}")
    return 0


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


def cmd_service(args) -> int:
    """``podman system service``: the Docker API until idle for ``--time`` seconds."""
    from ketch.dockerapi.server import serve

    if args.time < 0:
        raise InvalidInputError("--time must not be negative (0: never stop)")
    serve(args.uri, root=args.root, runroot=args.runroot, idle=args.time)
    return 0
