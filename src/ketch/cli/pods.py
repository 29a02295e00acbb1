"""``ketch pod create|ps|inspect|start|stop|rm|exists``, as podman's: pods whose containers share
network, IPC and UTS namespaces (and the PID namespace with ``--share pid``), with published ports
on the pod. ``ketch run --pod NAME`` puts a container in one."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.errors import NotFoundError


def _pods(args):
    from ketch.containers import Engine
    from ketch.containers.pods import PodEngine

    return PodEngine(Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver))


def register(commands: argparse._SubParsersAction) -> None:
    pod = commands.add_parser("pod", help="manage pods", description="Pods: containers sharing namespaces.")
    verbs = pod.add_subparsers(dest="pod_verb", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="make a pod", description="Make a pod: its namespaces pinned, its "
                                                                      "network set up, no container in it yet.")
    create.add_argument("--name", "-n", help="the pod's name (default: a generated one)")
    create.add_argument("--hostname", help="the pod's hostname (default: its name)")
    create.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
                        help="publish a port of the pod")
    create.add_argument("--network", default="bridge", help="bridge (default), host, none or network names")
    create.add_argument("--share", default="ipc,net,uts", help="namespaces to share: ipc, net, uts, pid")
    create.add_argument("--label", "-l", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--infra", default="true", choices=["true", "false"],
                        help="accepted: ketch's pods never have an infra container")
    create.set_defaults(func=cmd_create)
    listing = verbs.add_parser("ps", aliases=["ls", "list"], help="list pods", description="List the pods.")
    listing.add_argument("--format", help="json, or a Go template ({{.Name}}, {{.Status}}, ...)")
    listing.add_argument("-q", "--quiet", action="store_true", help="ids only")
    listing.add_argument("--no-trunc", action="store_true")
    listing.set_defaults(func=cmd_ps)
    inspect = verbs.add_parser("inspect", help="show pods", description="Show pods (JSON).")
    inspect.add_argument("pods", nargs="+", metavar="POD")
    inspect.set_defaults(func=cmd_inspect)
    for name, what in (("start", "start every container of pods"), ("stop", "stop every container of pods"),
                       ("rm", "remove pods and their containers")):
        verb = verbs.add_parser(name, help=what, description=what.capitalize() + ".")
        verb.add_argument("pods", nargs="+", metavar="POD")
        if name != "start":
            verb.add_argument("-t", "--time", type=int, default=None, metavar="SECONDS",
                              help="seconds to wait before killing the containers")
        if name == "rm":
            verb.add_argument("-f", "--force", action="store_true", help="stop running containers first")
        verb.set_defaults(func=cmd_lifecycle)
    exists = verbs.add_parser("exists", help="exit 0 if a pod exists", description="Exit 0 if the pod exists, "
                                                                                 "1 if not.")
    exists.add_argument("pod", metavar="POD")
    exists.set_defaults(func=cmd_exists)


def cmd_create(args) -> int:
    from ketch.containers.options import parse_key_values

    pods = _pods(args)
    share = [s.strip() for s in args.share.split(",") if s.strip()]
    print(pods.create(args.name, hostname=args.hostname, publish=args.publish, network=args.network, share=share,
                      labels=parse_key_values(args.label, "--label"), create_command=["ketch", *sys.argv[1:]]))
    return 0


def cmd_ps(args) -> int:
    from ketch.cli import humanize, report
    from ketch.storage.filters import parse_time

    entries = _pods(args).list()
    if args.quiet:
        for entry in entries:
            print(entry["Id"] if args.no_trunc else entry["Id"][:12])
        return 0
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return 0
    if args.format:
        from ketch.cli.gotemplate import GoStruct, Template

        template = Template(report.normalize(args.format), "pod")
        for entry in entries:
            text = template.execute(GoStruct({**entry, "ID": entry["Id"][:12], "InfraID": "",
                                              "NumberOfContainers": len(entry["Containers"])}))
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    lines = ["POD ID\tNAME\tSTATUS\tCREATED\tINFRA ID\t# OF CONTAINERS"]
    for entry in entries:
        created = humanize.since(parse_time(entry["Created"]))
        lines.append("\t".join([entry["Id"] if args.no_trunc else entry["Id"][:12], entry["Name"], entry["Status"],
                                created + " ago", "",
                                str(len(entry["Containers"]))]))
    sys.stdout.write(report.tabwrite("\n".join(lines) + "\n"))
    return 0


def cmd_inspect(args) -> int:
    pods = _pods(args)
    try:
        out = [pods.inspect(name) for name in args.pods]
    except NotFoundError as exc:
        print("[]")  # (what podman prints before its error)
        raise NotFoundError(f"inspecting object: no such pod {getattr(exc, 'subject', args.pods[0])}") from exc
    print(json.dumps(out if len(out) > 1 else out[0], indent=5))
    return 0


def cmd_lifecycle(args) -> int:
    """podman's statuses: ``pod rm`` of a pod that is not there is 1 (0 with ``-f``), the
    other verbs' 125; the last failure's status is ours."""
    from ketch.cli.containers import _each

    pods = _pods(args)

    def action(name: str) -> None:
        if args.pod_verb == "start":
            pod_id = pods.start(name)
        elif args.pod_verb == "stop":
            pod_id = pods.stop(name, args.time)
        else:
            pod_id = pods.remove(name, force=args.force, timeout=args.time)
        print(pod_id)  # (the pod's full id, as podman prints it)

    return _each(args, args.pods, action, missing_status=1 if args.pod_verb == "rm" else 125, quiet=True)


def cmd_exists(args) -> int:
    try:
        _pods(args).inspect(args.pod)
    except NotFoundError:
        return 1
    return 0
