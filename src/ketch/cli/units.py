"""``ketch generate systemd`` and ``ketch auto-update``, as podman's."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ketch.cli.flags import add_bool


def register(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser("generate", help="generate systemd units",
                                   description="Generate structured data from containers.")
    verbs = generate.add_subparsers(dest="generate_verb", metavar="COMMAND", required=True)
    unit = verbs.add_parser("systemd", help="a systemd unit for a container",
                            description="Write a systemd unit that starts and stops a container (--new: that "
                                        "makes a new container from the same command at each start).")
    unit.add_argument("container", metavar="CONTAINER")
    unit.add_argument("--new", action="store_true", help="create a new container at each start, remove it at stop")
    unit.add_argument("-n", "--name", action="store_true", help="use the container's name, not its id")
    unit.add_argument("-f", "--files", action="store_true", help="write the unit to a file in the current directory")
    unit.add_argument("--format", metavar="FORMAT", help="json: {unit name: unit text}")
    unit.add_argument("--restart-policy", default="on-failure", metavar="POLICY")
    unit.add_argument("--restart-sec", type=int, metavar="SECONDS")
    unit.add_argument("-t", "--time", "--stop-timeout", dest="time", type=int, metavar="SECONDS",
                      help="stop timeout (default: the container's)")
    unit.add_argument("--container-prefix", default="container")
    unit.add_argument("--separator", default="-")
    unit.add_argument("--no-header", action="store_true")
    for flag in ("--wants", "--after", "--requires"):
        unit.add_argument(flag, action="append", default=[], metavar="UNIT")
    unit.set_defaults(func=cmd_generate_systemd)

    update = commands.add_parser("auto-update", help="update containers and system containers to newer images",
                                 description="Update the containers labelled io.containers.autoupdate (registry "
                                             "or local) that systemd units run, and system containers whose "
                                             "image has the label; restart their units, and roll back when the "
                                             "restarted unit fails.")
    update.add_argument("--dry-run", action="store_true", help="only report what would be updated")
    add_bool(update, "--rollback", default=True, help="roll back when the restarted unit fails (default true)")
    update.add_argument("--format", metavar="FORMAT", help="json, or a Go template (.Unit .Container .Image ...)")
    update.add_argument("--authfile", metavar="PATH")
    add_bool(update, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    update.add_argument("--system-dir", metavar="DIR", help="where system containers live (default ROOT/system)")
    update.set_defaults(func=cmd_auto_update)


def _ketch_path() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ketch")
    return beside if os.path.exists(beside) else os.path.abspath(sys.argv[0])


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def cmd_generate_systemd(args) -> int:
    from ketch.system.units import UnitOptions, generate

    options = UnitOptions(new=args.new, use_name=args.name, restart_policy=args.restart_policy,
                          restart_sec=args.restart_sec, stop_timeout=args.time,
                          container_prefix=args.container_prefix, separator=args.separator,
                          header=not args.no_header, wants=args.wants, after=args.after, requires=args.requires)
    name, text = generate(_engine(args), args.container, options, _ketch_path())
    if args.files:
        path = os.path.join(os.getcwd(), name)
        with open(path, "w") as f:
            f.write(text)
        print(path)
    elif args.format == "json":
        print(json.dumps({name: text}, indent=4))
    else:
        print(text, end="")
    return 0


def cmd_auto_update(args) -> int:
    from ketch.cli import report
    from ketch.cli.flags import make_context, policy_from
    from ketch.cli.gotemplate import GoStruct
    from ketch.system import SystemContainers
    from ketch.system.autoupdate import auto_update

    engine = _engine(args)
    ctx = make_context(args, creds=None, tls_verify=args.tls_verify, authfile=args.authfile)
    system = SystemContainers(engine.store, directory=args.system_dir)
    reports = auto_update(engine, system, ctx, policy_from(args), dry_run=args.dry_run, rollback=args.rollback)
    rows = [r.row() for r in reports]
    if report.is_json(args.format):
        print(json.dumps(rows, indent=4))
    else:
        report.Formatter(args.format, name="auto-update", default="{{.Unit}}\t{{.Container}}\t{{.Image}}\t"
                                                                 "{{.Policy}}\t{{.Updated}}",
                         headers={"Unit": "UNIT", "Container": "CONTAINER", "Image": "IMAGE", "Policy": "POLICY",
                                  "Updated": "UPDATED"}).write([GoStruct(r) for r in rows])
    return 1 if any(r.updated.startswith("failed") for r in reports) else 0
