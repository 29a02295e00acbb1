"""``ketch network``, ``ketch volume`` and ``ketch secret``, as podman's."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from ketch.errors import InvalidInputError, KetchError, NotFoundError


def _engine(args):
    from ketch.containers import Engine

    return Engine(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def register(commands: argparse._SubParsersAction, group: str) -> None:
    {"network": _register_network, "volume": _register_volume, "secret": _register_secret}[group](commands)


def _each(names: list[str], action, *, missing_status: int = 125, ignore: bool = False) -> int:
    status = 0
    for name in names:
        try:
            result = action(name)
            print(result if isinstance(result, str) else name)
        except NotFoundError as exc:
            if ignore:
                continue
            print(f"Error: {exc}", file=sys.stderr)
            status = missing_status
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = 2 if exc.__class__.__name__ == "InUseError" else 125
    return status


def _filters(items: list[str], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    from ketch.storage.filters import split_filters

    return split_filters(items, allowed)


def _labels_match(labels: dict, values: list[str], negate: bool = False) -> bool:
    def one(value: str) -> bool:
        name, has_value, wanted = value.partition("=")
        return name in labels and (not has_value or labels[name] == wanted)
    return not any(one(v) for v in values) if negate else any(one(v) for v in values)


# -- networks ---------------------------------------------------------------------------------


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
    create.add_argument("--ignore", action="store_true", help="no error when the network exists")
    create.add_argument("--disable-dns", action="store_true", help="accepted: ketch's networks have no DNS server")
    create.set_defaults(func=cmd_network_create)
    ls = verbs.add_parser("ls", aliases=["list"], help="list networks", description="List networks.")
    ls.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    ls.add_argument("--noheading", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name=, id=, driver=, label=, dangling=")
    ls.set_defaults(func=cmd_network_ls)
    inspect = verbs.add_parser("inspect", help="show networks", description="Show networks (podman's JSON).")
    inspect.add_argument("names", nargs="+", metavar="NETWORK")
    inspect.add_argument("-f", "--format", metavar="FORMAT")
    inspect.set_defaults(func=cmd_network_inspect)
    rm = verbs.add_parser("rm", help="remove networks", description="Remove networks.")
    rm.add_argument("names", nargs="+", metavar="NETWORK")
    rm.add_argument("-f", "--force", action="store_true", help="remove their containers too")
    rm.add_argument("-t", "--time", type=int, metavar="SECONDS", help="accepted: containers are killed with -f")
    rm.set_defaults(func=cmd_network_rm)
    prune = verbs.add_parser("prune", help="remove unused networks", description="Remove unused networks.")
    prune.add_argument("-f", "--force", action="store_true")
    prune.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    prune.set_defaults(func=cmd_network_prune)
    connect = verbs.add_parser("connect", help="connect a container to a network",
                               description="Connect a container to a network: a running one at once, another "
                                           "when it starts.")
    connect.add_argument("network", metavar="NETWORK")
    connect.add_argument("container", metavar="CONTAINER")
    connect.add_argument("--alias", action="append", default=[], metavar="NAME",
                         help="another name of the container on this network")
    connect.add_argument("--ip", metavar="ADDRESS", help="the container's address on this network")
    connect.set_defaults(func=cmd_network_connect)
    disconnect = verbs.add_parser("disconnect", help="disconnect a container from a network",
                                  description="Disconnect a container from a network.")
    disconnect.add_argument("network", metavar="NETWORK")
    disconnect.add_argument("container", metavar="CONTAINER")
    disconnect.add_argument("-f", "--force", action="store_true", help="accepted, as podman's")
    disconnect.set_defaults(func=cmd_network_disconnect)
    exists = verbs.add_parser("exists", help="exit 0 if a network exists, 1 if not",
                              description="Check whether a network exists.")
    exists.add_argument("name", metavar="NETWORK")
    exists.set_defaults(func=cmd_network_exists)


def cmd_network_create(args) -> int:
    from ketch.containers.options import parse_key_values
    from ketch.errors import InUseError

    nets = _engine(args).networks()
    name = args.name
    if name is None:
        existing = {n["name"] for n in nets.list()}
        name = next(f"ketch{n}" for n in range(1, 10000) if f"ketch{n}" not in existing)
    try:
        nets.create(name, subnet=args.subnet, gateway=args.gateway, internal=args.internal,
                    labels=parse_key_values(args.label, "label"), driver=args.driver)
    except InUseError:
        if not args.ignore:
            raise
    print(name)
    return 0


def network_entries(engine, filters: list[str]) -> list[dict]:
    nets = engine.networks()
    wanted = _filters(filters, ("name", "id", "driver", "label", "label!", "dangling", "until"))
    out = []
    for network in nets.list():
        entry = nets.inspect(network["name"])
        if "name" in wanted and not any(re.search(v, entry["name"]) for v in wanted["name"]):
            continue
        if "id" in wanted and not any(entry["id"].startswith(v) for v in wanted["id"]):
            continue
        if "driver" in wanted and entry["driver"] not in wanted["driver"]:
            continue
        if "label" in wanted and not _labels_match(entry.get("labels") or {}, wanted["label"]):
            continue
        if "label!" in wanted and not _labels_match(entry.get("labels") or {}, wanted["label!"], negate=True):
            continue
        if "dangling" in wanted and \
                (wanted["dangling"][0].lower() in ("true", "1")) == bool(nets.attached(entry["name"])):
            continue
        out.append(entry)
    return out


def cmd_network_ls(args) -> int:
    from ketch.cli import report, reports

    entries = sorted(network_entries(_engine(args), args.filter), key=lambda e: e["name"])  # podman's order
    if args.quiet:
        for entry in entries:
            print(entry["name"])
        return 0
    if report.is_json(args.format):
        print(json.dumps(entries, indent=2))  # (labels only when there are some, as netavark's)
        return 0
    rows = [reports.NetworkRow(e, args.no_trunc) for e in entries]
    report.Formatter(args.format, name="ls", noheading=args.noheading, default=reports.NETWORK_DEFAULT,
                     headers=reports.NETWORK_HEADERS).write(rows)
    return 0


def cmd_network_inspect(args) -> int:
    from ketch.cli.storage import print_inspected, report_inspect_errors

    nets = _engine(args).networks()
    found, errors = [], []
    for name in args.names:
        try:
            found.append(nets.inspect(name))
        except KetchError as exc:
            errors.append(f"network {name}: {exc}")
    from ketch.cli import reports

    print_inspected(args.format, found, "inspect", reports.go_network)
    return report_inspect_errors(errors)


def cmd_network_rm(args) -> int:
    engine = _engine(args)
    return _each(args.names, lambda name: engine.networks().remove(name, force=args.force, engine=engine),
                 missing_status=1)


def cmd_network_prune(args) -> int:
    for name in _engine(args).networks().prune():
        print(name)
    return 0


def cmd_network_connect(args) -> int:
    _engine(args).connect_network(args.container, args.network, aliases=args.alias, ip=args.ip)
    return 0


def cmd_network_disconnect(args) -> int:
    _engine(args).disconnect_network(args.container, args.network)
    return 0


def cmd_network_exists(args) -> int:
    try:
        _engine(args).networks().get(args.name)
    except NotFoundError:
        return 1
    return 0


# -- volumes ----------------------------------------------------------------------------------


def _register_volume(commands) -> None:
    group = commands.add_parser("volume", help="manage volumes", description="Manage named volumes.")
    verbs = group.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="create a volume", description="Create a named volume.")
    create.add_argument("name", metavar="NAME", nargs="?")
    create.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("-d", "--driver", default="local", help="local (the only driver)")
    create.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--ignore", action="store_true", help="no error when the volume exists")
    create.set_defaults(func=cmd_volume_create)
    ls = verbs.add_parser("ls", aliases=["list"], help="list volumes", description="List volumes.")
    ls.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--noheading", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="name=, label=, driver=, dangling=, opt=, until=")
    ls.set_defaults(func=cmd_volume_ls)
    inspect = verbs.add_parser("inspect", help="show volumes", description="Show volumes (podman's JSON).")
    inspect.add_argument("names", nargs="*", metavar="VOLUME")
    inspect.add_argument("-a", "--all", action="store_true")
    inspect.add_argument("-f", "--format", metavar="FORMAT")
    inspect.set_defaults(func=cmd_volume_inspect)
    rm = verbs.add_parser("rm", aliases=["remove"], help="remove volumes", description="Remove volumes.")
    rm.add_argument("names", nargs="*", metavar="VOLUME")
    rm.add_argument("-a", "--all", action="store_true")
    rm.add_argument("-f", "--force", action="store_true", help="remove the containers using them too")
    rm.add_argument("-t", "--time", type=int, metavar="SECONDS", help="accepted: containers are killed with -f")
    rm.set_defaults(func=cmd_volume_rm)
    prune = verbs.add_parser("prune", help="remove unused volumes", description="Remove unused volumes.")
    prune.add_argument("-f", "--force", action="store_true")
    prune.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    prune.set_defaults(func=cmd_volume_prune)
    exists = verbs.add_parser("exists", help="exit 0 if a volume exists, 1 if not",
                              description="Check whether a volume exists.")
    exists.add_argument("name", metavar="VOLUME")
    exists.set_defaults(func=cmd_volume_exists)
    export = verbs.add_parser("export", help="write a volume's content as a tar archive",
                              description="Write a volume's content as a tar archive.")
    export.add_argument("name", metavar="VOLUME")
    export.add_argument("-o", "--output", metavar="FILE")
    export.set_defaults(func=cmd_volume_export)
    import_ = verbs.add_parser("import", help="unpack a tar archive into a volume",
                               description="Unpack a tar archive (plain, gzip, bzip2, xz or zstd) into a volume.")
    import_.add_argument("name", metavar="VOLUME")
    import_.add_argument("source", metavar="FILE|-", nargs="?", default="-")
    import_.set_defaults(func=cmd_volume_import)


def cmd_volume_create(args) -> int:
    from ketch.containers.options import parse_key_values
    from ketch.errors import InUseError

    volumes = _engine(args).volumes()
    if args.driver != "local":
        raise InvalidInputError(f"volume driver {args.driver!r} is not supported: ketch has the local driver")
    name = args.name or os.urandom(32).hex()
    try:
        volumes.create(name, parse_key_values(args.label, "label"), options=parse_key_values(args.opt, "option"))
    except InUseError:
        if not args.ignore:
            raise
    print(name)
    return 0


def volume_entries(engine, filters: list[str]) -> list[dict]:
    volumes = engine.volumes()
    wanted = _filters(filters, ("name", "label", "label!", "driver", "dangling", "opt", "until", "scope"))
    out = []
    for volume in volumes.list():
        entry = volumes.inspect(volume["name"])
        if "name" in wanted and not any(v in entry["Name"] for v in wanted["name"]):
            continue
        if "driver" in wanted and entry["Driver"] not in wanted["driver"]:
            continue
        if "scope" in wanted and entry["Scope"] not in wanted["scope"]:
            continue
        if "label" in wanted and not _labels_match(entry["Labels"], wanted["label"]):
            continue
        if "label!" in wanted and not _labels_match(entry["Labels"], wanted["label!"], negate=True):
            continue
        if "opt" in wanted and not _labels_match(entry["Options"], wanted["opt"]):
            continue
        if "dangling" in wanted and (wanted["dangling"][0].lower() in ("true", "1")) == bool(
                volumes.users(entry["Name"])):
            continue
        if "until" in wanted:
            from ketch.storage.filters import parse_time

            if volume["created"] >= parse_time(wanted["until"][0]):
                continue
        out.append(entry)
    return out


def cmd_volume_ls(args) -> int:
    from ketch.cli import report, reports

    entries = sorted(volume_entries(_engine(args), args.filter), key=lambda e: e["Name"])  # podman's order
    if args.quiet:
        for entry in entries:
            print(entry["Name"])
        return 0
    if report.is_json(args.format):
        print(json.dumps(entries, indent=2))
        return 0
    rows = [reports.VolumeRow(reports.go_value(e)) for e in entries]
    report.Formatter(args.format, name="ls", noheading=args.noheading, default=reports.VOLUME_DEFAULT,
                     headers=reports.VOLUME_HEADERS).write(rows)
    return 0


def cmd_volume_inspect(args) -> int:
    from ketch.cli.storage import print_inspected, report_inspect_errors

    volumes = _engine(args).volumes()
    names = [v["name"] for v in volumes.list()] if args.all else args.names
    if not names and not args.all:
        raise InvalidInputError("provide one or more volume names or use --all")
    found, errors = [], []
    for name in names:
        try:
            found.append(volumes.inspect(name))
        except NotFoundError:
            errors.append(f"no such volume {name}")
        except KetchError as exc:
            errors.append(str(exc))
    print_inspected(args.format, found, "inspect")
    return report_inspect_errors(errors)


def cmd_volume_rm(args) -> int:
    engine = _engine(args)
    names = [v["name"] for v in engine.volumes().list()] if args.all else args.names
    if not names and not args.all:
        raise InvalidInputError("choose either one or more volumes or all")
    return _each(names, lambda name: engine.volumes().remove(name, force=args.force, engine=engine),
                 missing_status=1)


def cmd_volume_prune(args) -> int:
    for name in _engine(args).volumes().prune():
        print(name)
    return 0


def cmd_volume_exists(args) -> int:
    return 0 if _engine(args).volumes().exists(args.name) else 1


def cmd_volume_export(args) -> int:
    volumes = _engine(args).volumes()
    if args.output:
        with open(args.output, "wb") as f:
            volumes.export(args.name, f)
        return 0
    if sys.stdout.isatty():
        raise InvalidInputError("cannot write to terminal, use command-line redirection or the --output flag")
    sys.stdout.flush()
    volumes.export(args.name, sys.stdout.buffer)
    return 0


def cmd_volume_import(args) -> int:
    volumes = _engine(args).volumes()
    if args.source == "-":
        volumes.import_tar(args.name, sys.stdin.buffer)
    else:
        try:
            with open(args.source, "rb") as f:
                volumes.import_tar(args.name, f)
        except FileNotFoundError as exc:
            raise InvalidInputError(f"open {args.source}: no such file or directory") from exc
    return 0


# -- secrets ----------------------------------------------------------------------------------


def _register_secret(commands) -> None:
    group = commands.add_parser("secret", help="manage secrets", description="Manage secrets (podman's file driver).")
    verbs = group.add_subparsers(dest="secret_command", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="create a secret",
                              description="Create a secret from a file, standard input (-) or --env VARIABLE.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("source", metavar="FILE|-|VARIABLE")
    create.add_argument("-d", "--driver", default="file")
    create.add_argument("--driver-opts", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--env", action="store_true", help="SOURCE names an environment variable")
    create.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--replace", action="store_true", help="replace a secret of the same name")
    create.set_defaults(func=cmd_secret_create)
    ls = verbs.add_parser("ls", aliases=["list"], help="list secrets", description="List secrets.")
    ls.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    ls.add_argument("-n", "--noheading", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help="name=, id=")
    ls.set_defaults(func=cmd_secret_ls)
    inspect = verbs.add_parser("inspect", help="show secrets", description="Show secrets (never their data).")
    inspect.add_argument("names", nargs="*", metavar="SECRET")
    inspect.add_argument("-a", "--all", action="store_true", help="every secret")
    inspect.add_argument("-f", "--format", metavar="FORMAT")
    inspect.add_argument("--pretty", action="store_true")
    inspect.set_defaults(func=cmd_secret_inspect)
    rm = verbs.add_parser("rm", help="remove secrets", description="Remove secrets.")
    rm.add_argument("names", nargs="*", metavar="SECRET")
    rm.add_argument("-a", "--all", action="store_true")
    rm.set_defaults(func=cmd_secret_rm)


def _secrets(args):
    from ketch.containers.secrets import Secrets

    return Secrets(_engine(args).store)


def cmd_secret_create(args) -> int:
    from ketch.containers.options import parse_key_values

    if args.env:
        if args.source not in os.environ:
            raise InvalidInputError(f"environment variable {args.source} is not set")
        data = os.environ[args.source].encode()
    elif args.source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(args.source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InvalidInputError(f"{args.source}: {exc.strerror}") from exc
    print(_secrets(args).create(args.name, data, labels=parse_key_values(args.label, "label"), driver=args.driver,
                                replace=args.replace))
    return 0


def cmd_secret_ls(args) -> int:
    from ketch.cli import report, reports

    secrets = _secrets(args)
    wanted = _filters(args.filter, ("name", "id"))
    entries = []
    for secret in secrets.list():
        entry = secrets.inspect(secret["id"])
        if "name" in wanted and entry["Spec"]["Name"] not in wanted["name"]:
            continue
        if "id" in wanted and not any(entry["ID"].startswith(v) for v in wanted["id"]):
            continue
        entries.append(entry)
    if args.quiet:
        for entry in entries:
            print(entry["ID"])
        return 0
    if report.is_json(args.format):
        print(json.dumps(entries, indent=4))
        return 0
    rows = [reports.SecretRow(e) for e in entries]
    report.Formatter(args.format, name="ls", noheading=args.noheading, default=reports.SECRET_DEFAULT,
                     headers=reports.SECRET_HEADERS).write(rows)
    return 0


def cmd_secret_inspect(args) -> int:
    from ketch.cli.storage import print_inspected, report_inspect_errors

    secrets = _secrets(args)
    names = [entry["id"] for entry in secrets.list()] if args.all else args.names
    if not names and not args.all:
        raise InvalidInputError("requires at least 1 arg(s), only received 0")
    found, errors = [], []
    for name in names:
        try:
            found.append(secrets.inspect(name))
        except KetchError as exc:
            errors.append(exc)
    if args.pretty:
        for entry in found:
            print(f"ID:              {entry['ID']}\nName:            {entry['Spec']['Name']}\n"
                  f"Driver:          {entry['Spec']['Driver']['Name']}\nCreated at:      {entry['CreatedAt']}\n"
                  f"Updated at:      {entry['UpdatedAt']}")
    else:
        print_inspected(args.format, found, "inspect")
    return report_inspect_errors([str(exc) for exc in errors], "secret")


def cmd_secret_rm(args) -> int:
    secrets = _secrets(args)
    names = [s["id"] for s in secrets.list()] if args.all else args.names
    if not names and not args.all:
        raise InvalidInputError("at least one argument is required")
    return _each(names, secrets.remove)


for _command in (cmd_network_create, cmd_network_ls, cmd_network_inspect, cmd_network_rm, cmd_network_prune,
                 cmd_network_exists, cmd_volume_create, cmd_volume_ls, cmd_volume_inspect, cmd_volume_rm,
                 cmd_volume_prune, cmd_volume_exists, cmd_volume_export, cmd_volume_import, cmd_secret_create,
                 cmd_secret_ls, cmd_secret_inspect, cmd_secret_rm):
    _command.fast_exit = True  # type: ignore[attr-defined]  # see ketch.cli.main.main
