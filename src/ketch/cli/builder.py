"""``ketch builder``: buildah's primitives (from, mount, umount, run, copy, add, config, commit,
containers, rm, inspect, images). Failures of the builder itself exit 125, as buildah's; ``run``
exits with the command's status."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.cli.flags import add_bool
from ketch.errors import BuilderError, InvalidInputError, KetchError


def _builder(args):
    from ketch.builder import Builder

    return Builder(root=args.root, runroot=args.runroot, storage_driver=args.storage_driver)


def _buildah_statuses(func):
    """buildah's exit status for its own failures: 125 (a command's own status stays as it is)."""
    import functools

    @functools.wraps(func)
    def wrapper(args) -> int:
        try:
            return func(args)
        except BuilderError:
            raise  # (125, or a RUN step's own status)
        except KetchError as exc:
            if exc.exit_code != 1:
                raise
            raise BuilderError(str(exc)) from exc

    wrapper.fast_exit = True  # type: ignore[attr-defined]  # see ketch.cli.main.main
    return wrapper


def register_build(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", aliases=["bud"], help="build an image from a Dockerfile/Containerfile",
                                description="Build an image from a Containerfile or Dockerfile, without a daemon.")
    build.add_argument("context", nargs="?", default=".", metavar="CONTEXT", help="a directory, a tar file, or -")
    build.add_argument("-f", "--file", metavar="FILE")
    build.add_argument("-t", "--tag", action="append", default=[], metavar="NAME")
    build.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--target", metavar="STAGE")
    add_bool(build, "--layers", default=True, help="cache every step as an image (default true)")
    build.add_argument("--no-cache", action="store_true")
    build.add_argument("--squash", action="store_true", help="the new layers as one")
    build.add_argument("--squash-all", action="store_true", help="one layer of everything")
    build.add_argument("--format", default="oci", choices=["oci", "docker"])
    build.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--iidfile", metavar="FILE")
    build.add_argument("--pull", default="missing", nargs="?", const="always",
                       choices=["always", "missing", "never", "newer", "true", "false"])
    build.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH")
    build.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CONTAINER[:OPTIONS]")
    build.add_argument("--network", default="host", metavar="MODE",
                       help="for RUN steps: host (default), none, bridge, or a network's name")
    build.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    build.add_argument("-q", "--quiet", action="store_true")
    add_bool(build, "--rm", default=True, help="remove the build's working containers after a successful build")
    add_bool(build, "--force-rm", default=False, help="remove them after a failed build too")
    build.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                       help="the platform to build for: of the base images, and what TARGETPLATFORM, TARGETOS, "
                            "TARGETARCH and TARGETVARIANT name (default: this machine's)")
    add_bool(build, "--tls-verify", help="for pulling: require HTTPS and verify certificates")
    build.add_argument("--build-context", action="append", default=[], metavar="NAME=VALUE",
                       help="a named context for COPY --from=NAME, RUN --mount from=NAME and FROM NAME: a directory, "
                            "a git or tarball URL, docker-image://REF or container-image://REF")
    build.add_argument("--ignorefile", metavar="FILE", help="the ignore rules to use instead of the context's "
                                                            ".containerignore/.dockerignore")
    build.add_argument("-o", "--output", action="append", default=[], metavar="type=local,dest=DIR|type=tar,dest=FILE",
                       help="write the image's file system to a directory (DIR alone) or a tar file (- for stdout)")
    build.add_argument("--cache-from", action="append", default=[], metavar="REPOSITORY",
                       help="a registry repository to take cached steps from (buildah's layout)")
    build.add_argument("--cache-to", action="append", default=[], metavar="REPOSITORY",
                       help="a registry repository to push each built step to, for other machines' --cache-from")
    build.add_argument("--cache-ttl", metavar="DURATION", help="accepted: cached steps do not expire")
    build.add_argument("--manifest", metavar="LIST", help="add the image to this manifest list (made if missing)")
    build.set_defaults(func=cmd_build)


@_buildah_statuses
def cmd_build(args) -> int:
    from ketch.builder.interpreter import BuildOptions, build
    from ketch.containers.options import parse_key_values

    secrets = {}
    for spec in args.secret:
        fields = dict(item.partition("=")[::2] for item in spec.split(","))
        secret_id, source = fields.get("id"), fields.get("src") or fields.get("source")
        if not secret_id or not source:
            raise InvalidInputError(f"invalid --secret {spec!r}: want id=ID,src=PATH")
        import os

        if not os.path.isfile(source):
            raise InvalidInputError(f"--secret {secret_id}: {source} is not a file")
        secrets[secret_id] = os.path.abspath(source)
    pull = {"true": "always", "false": "missing"}.get(args.pull, args.pull)
    options = BuildOptions(file=args.file, tags=args.tag, build_args=parse_key_values(args.build_arg, "build arg"),
                           target=args.target, layers=args.layers and not args.squash, no_cache=args.no_cache,
                           squash=args.squash, squash_all=args.squash_all, format=args.format,
                           labels=parse_key_values(args.label, "label"),
                           annotations=parse_key_values(args.annotation, "annotation"), iidfile=args.iidfile,
                           pull=pull, secrets=secrets, volumes=list(args.volume), network=args.network,
                           cap_add=list(args.cap_add), quiet=args.quiet, remove=args.rm or args.force_rm,
                           force_remove=args.force_rm, platform=args.platform,
                           build_contexts=parse_key_values(args.build_context, "build context"),
                           ignorefile=args.ignorefile, outputs=list(args.output),
                           cache_from=[_repository(r, "--cache-from") for r in args.cache_from],
                           cache_to=[_repository(r, "--cache-to") for r in args.cache_to], manifest=args.manifest)
    # a tar on standard output: the report goes to stderr, and the id is not printed after it
    to_stdout = any(o == "-" or o.replace(" ", "").endswith("dest=-") for o in args.output)

    from ketch.cli.containers import pull_context
    from ketch.storage.store import Store

    store = Store(args.root, args.runroot, args.storage_driver)
    report = sys.stderr if to_stdout else sys.stdout
    log = (lambda text: None) if args.quiet else (lambda text: print(text, file=report, flush=True))
    image_id = build(store, args.context, options, log=log, pull_context=pull_context(args),
                     warn=lambda text: print(f"WARN: {text}", file=sys.stderr, flush=True))
    if not args.quiet:
        for tag in args.tag:
            print(f"Successfully tagged {store.normalize_name(tag)}", file=report)
    print(image_id, file=report)
    return 0


def _repository(text: str, flag: str) -> str:
    """A registry repository (no tag or digest: the cache keys are the tags)."""
    name = text[len("docker://"):] if text.startswith("docker://") else text
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" in last:
        raise InvalidInputError(f"{flag} {text}: give a repository without a tag or digest")
    return name


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("builder", help="build images step by step (buildah's primitives)",
                                description="Working containers filled by any script, committed into images.")
    verbs = group.add_subparsers(dest="builder_command", metavar="COMMAND", required=True)

    from_ = verbs.add_parser("from", help="a working container on an image (or scratch)",
                             description="Make a working container; print its name.")
    from_.add_argument("image", metavar="IMAGE|scratch")
    from_.add_argument("--name")
    from_.add_argument("--pull", default="missing", choices=["always", "missing", "never", "newer"])
    add_bool(from_, "--tls-verify", help="for pulling: require HTTPS and verify certificates")
    from_.add_argument("-q", "--quiet", action="store_true")
    from_.set_defaults(func=cmd_from)

    mount = verbs.add_parser("mount", help="mount a working container; print the mount point",
                             description="Mount working containers read-write.")
    mount.add_argument("names", nargs="*", metavar="CONTAINER")
    mount.set_defaults(func=cmd_mount)
    umount = verbs.add_parser("umount", aliases=["unmount"], help="unmount working containers",
                              description="Unmount working containers.")
    umount.add_argument("names", nargs="*", metavar="CONTAINER")
    umount.add_argument("-a", "--all", action="store_true")
    umount.set_defaults(func=cmd_umount)

    run = verbs.add_parser("run", help="run a command in a working container",
                           description="Run a command in a working container (build profile: + MKNOD, writable root).")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="SOURCE:DEST[:OPTIONS]")
    run.add_argument("--mount", action="append", default=[], metavar="type=...,source=...,target=...")
    run.add_argument("--user", metavar="USER[:GROUP]")
    run.add_argument("--workingdir", metavar="DIR")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--network", "--net", default="host", metavar="MODE",
                     help="host (default), none, bridge, or a network's name")
    run.add_argument("-t", "--tty", action="store_true")
    run.add_argument("name", metavar="CONTAINER")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    run.set_defaults(func=cmd_run)

    for verb, helptext in (("copy", "copy files into a working container"),
                           ("add", "copy files into a working container, unpacking local tar archives")):
        parser = verbs.add_parser(verb, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        parser.add_argument("--chown", metavar="USER[:GROUP]")
        parser.add_argument("--chmod", metavar="MODE")
        parser.add_argument("--from", dest="from_", metavar="IMAGE|CONTAINER")
        parser.add_argument("-q", "--quiet", action="store_true")
        parser.add_argument("name", metavar="CONTAINER")
        parser.add_argument("paths", nargs="+", metavar="SOURCE... DESTINATION")
        parser.set_defaults(func=cmd_copy, add=verb == "add")

    config = verbs.add_parser("config", help="change the image config being made",
                              description="Change the config of the image a working container will make.")
    for flag, dest, many in (("--env", "env", True), ("--label", "label", True), ("--annotation", "annotation", True),
                             ("--port", "port", True), ("--volume", "volume", True), ("--onbuild", "onbuild", True),
                             ("--entrypoint", "entrypoint", False), ("--cmd", "cmd", False),
                             ("--shell", "shell", False), ("--user", "user", False),
                             ("--workingdir", "workingdir", False), ("--stop-signal", "stop_signal", False),
                             ("--author", "author", False), ("--created-by", "created_by", False),
                             ("--history-comment", "history_comment", False), ("--healthcheck", "healthcheck", False),
                             ("--healthcheck-interval", "healthcheck_interval", False),
                             ("--healthcheck-timeout", "healthcheck_timeout", False),
                             ("--healthcheck-start-period", "healthcheck_start_period", False),
                             ("--healthcheck-retries", "healthcheck_retries", False), ("--arch", "arch", False),
                             ("--os", "os", False)):
        short = {"--env": ["-e"], "--label": ["-l"], "--port": ["-p"], "--volume": ["-v"], "--user": ["-u"]}.get(flag, [])
        if many:
            config.add_argument(*short, flag, dest=dest, action="append", default=[])
        else:
            config.add_argument(*short, flag, dest=dest)
    config.add_argument("name", metavar="CONTAINER")
    config.set_defaults(func=cmd_config)

    commit = verbs.add_parser("commit", help="make an image of a working container",
                              description="Make an image: the base image's layers plus one of the changes.")
    commit.add_argument("name", metavar="CONTAINER")
    commit.add_argument("image", nargs="?", metavar="IMAGE")
    commit.add_argument("-f", "--format", default="oci", choices=["oci", "docker"])
    commit.add_argument("--squash", action="store_true", help="one layer of the whole file system")
    commit.add_argument("--rm", action="store_true", help="remove the working container afterwards")
    commit.add_argument("--compression", default="gzip", choices=["gzip", "zstd"])
    commit.add_argument("--iidfile", metavar="FILE")
    commit.add_argument("--omit-history", action="store_true")
    commit.add_argument("-q", "--quiet", action="store_true")
    commit.set_defaults(func=cmd_commit)

    containers = verbs.add_parser("containers", help="list working containers", description="List working containers.")
    containers.add_argument("--format", metavar="FORMAT", help="json")
    containers.add_argument("-q", "--quiet", action="store_true")
    containers.add_argument("--notruncate", action="store_true")
    containers.set_defaults(func=cmd_containers)

    rm = verbs.add_parser("rm", help="remove working containers", description="Remove working containers.")
    rm.add_argument("names", nargs="*", metavar="CONTAINER")
    rm.add_argument("-a", "--all", action="store_true")
    rm.set_defaults(func=cmd_rm)

    inspect = verbs.add_parser("inspect", help="show a working container", description="Show a working container.")
    inspect.add_argument("name", metavar="CONTAINER")
    inspect.add_argument("-f", "--format", metavar="TEMPLATE")
    inspect.set_defaults(func=cmd_inspect)

    images = verbs.add_parser("images", help="list images", description="List the store's images.")
    images.add_argument("--format", metavar="FORMAT", help="json")
    images.add_argument("-q", "--quiet", action="store_true")
    images.set_defaults(func=cmd_images)


@_buildah_statuses
def cmd_from(args) -> int:
    from ketch.cli.containers import pull_context

    print(_builder(args).from_image(args.image, name=args.name, pull=args.pull, context=pull_context(args)))
    return 0


@_buildah_statuses
def cmd_mount(args) -> int:
    builder = _builder(args)
    if args.names:
        from ketch.cli.flags import require_unshare_for_mounts

        require_unshare_for_mounts()
    if not args.names:
        for entry in builder.containers():
            point = builder.inspect(entry["id"])["MountPoint"]
            if point:
                print(f"{entry['containername']} {point}")
        return 0
    for name in args.names:
        path = builder.mount(name)
        print(path if len(args.names) == 1 else f"{name} {path}")
    return 0


@_buildah_statuses
def cmd_umount(args) -> int:
    builder = _builder(args)
    names = [c["id"] for c in builder.containers()] if args.all else args.names
    if not names:
        raise InvalidInputError("give a working container, or --all")
    for name in names:
        try:
            builder.unmount(name)
        except InvalidInputError:
            if not args.all:
                raise
    return 0


@_buildah_statuses
def cmd_run(args) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return _builder(args).run(args.name, command, volumes=args.volume, mounts=args.mount, user=args.user,
                              workingdir=args.workingdir, env=args.env, network=args.network, tty=args.tty)


@_buildah_statuses
def cmd_copy(args) -> int:
    if len(args.paths) < 2:
        raise InvalidInputError(f"builder {'add' if args.add else 'copy'} needs SOURCE... DESTINATION")
    _builder(args).copy(args.name, args.paths[:-1], args.paths[-1], chown=args.chown, chmod=args.chmod,
                        from_=args.from_, add=args.add)
    return 0


@_buildah_statuses
def cmd_config(args) -> int:
    settings = {k: getattr(args, k) for k in (
        "env", "label", "annotation", "port", "volume", "onbuild", "entrypoint", "cmd", "shell", "user",
        "workingdir", "stop_signal", "author", "created_by", "history_comment", "healthcheck",
        "healthcheck_interval", "healthcheck_timeout", "healthcheck_start_period", "healthcheck_retries", "arch",
        "os")}
    _builder(args).configure(args.name, **settings)
    return 0


@_buildah_statuses
def cmd_commit(args) -> int:
    image_id = _builder(args).commit(args.name, args.image, fmt=args.format, squash=args.squash, remove=args.rm,
                                     compression=args.compression, omit_history=args.omit_history,
                                     iidfile=args.iidfile)
    print(image_id)
    return 0


@_buildah_statuses
def cmd_containers(args) -> int:
    entries = _builder(args).containers()
    if args.quiet:
        for entry in entries:
            print(entry["id"] if args.notruncate else entry["id"][:12])
    elif args.format == "json":
        print(json.dumps(entries, indent=4))
    else:
        print(f"{'CONTAINER ID':14}{'BUILDER':9}{'IMAGE ID':14}{'IMAGE NAME':34}CONTAINER NAME")
        for e in entries:
            print(f"{e['id'][:12]:14}{'*':9}{e['imageid'][:12]:14}{e['imagename'][:33]:34}{e['containername']}")
    return 0


@_buildah_statuses
def cmd_rm(args) -> int:
    builder = _builder(args)
    names = [c["id"] for c in builder.containers()] if args.all else args.names
    if not names:
        raise InvalidInputError("give a working container, or --all")
    status = 0
    for name in names:
        try:
            print(builder.remove(name))
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = 125
    return status


@_buildah_statuses
def cmd_inspect(args) -> int:
    from ketch.cli.main import _render_one
    from ketch.cli.reports import go_value

    data = _builder(args).inspect(args.name)
    if args.format:
        sys.stdout.write(_render_one(args.format, go_value(data), "inspect"))
    else:
        print(json.dumps(data, indent=4))
    return 0


@_buildah_statuses
def cmd_images(args) -> int:
    from ketch.cli.storage import cmd_images as images

    return images(argparse.Namespace(**{**vars(args), "all": False, "noheading": False, "no_trunc": False,
                                        "digests": False, "filter": [], "filter_name": None, "history": False,
                                        "sort": "created", "format": args.format, "quiet": args.quiet}))
