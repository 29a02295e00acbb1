"""Local-store commands, as podman spells them: pull, push, images, rmi, tag,
untag, image inspect/history/prune/mount/unmount, save, load, system df/reset,
storage check."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys

from ketch.cli.flags import add_bool, make_context, non_negative_int, policy_from
from ketch.errors import InvalidInputError, KetchError

TRANSPORT_PREFIXES = ("docker:", "oci:", "dir:", "oci-archive:", "docker-archive:", "ketch-storage:")


def open_store(args: argparse.Namespace):
    from ketch.storage.store import Store

    return Store(args.root, args.runroot, args.storage_driver)


def storage_context(args: argparse.Namespace, store, **kwargs):
    ctx = make_context(args, **kwargs)
    ctx.store = store  # type: ignore[attr-defined]
    return ctx


def _progress(args, stack):
    from ketch.image.progress import NoProgress

    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return NoProgress()
    from ketch.cli.progress import TerminalProgress

    return stack.enter_context(TerminalProgress())


def register(commands: argparse._SubParsersAction, image_verbs: argparse._SubParsersAction) -> None:
    pull = commands.add_parser("pull", help="pull an image from a registry into the local store",
                               description="Pull an image into the local store (short names resolved as podman "
                                           "does, through registries.conf).")
    pull.add_argument("image", metavar="IMAGE")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress")
    pull.add_argument("--creds", metavar="USER[:PASS]")
    pull.add_argument("--authfile", metavar="PATH")
    pull.add_argument("--cert-dir", metavar="DIR")
    add_bool(pull, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pull this platform from an index")
    pull.add_argument("-a", "--all-tags", action="store_true", help="pull every tag of the repository")
    pull.add_argument("--retry-times", type=non_negative_int, default=3, metavar="N")
    pull.set_defaults(func=cmd_pull)

    push = commands.add_parser("push", help="push an image from the local store",
                               description="Push an image from the local store to a registry (or any transport).")
    push.add_argument("image", metavar="IMAGE")
    push.add_argument("destination", metavar="DESTINATION", nargs="?")
    push.add_argument("-q", "--quiet", action="store_true")
    push.add_argument("--creds", metavar="USER[:PASS]")
    push.add_argument("--authfile", metavar="PATH")
    push.add_argument("--cert-dir", metavar="DIR")
    add_bool(push, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    push.add_argument("-f", "--format", choices=["oci", "v2s2"], help="manifest format")
    push.add_argument("--compression-format", choices=["gzip", "zstd"], help="recompress layers")
    push.add_argument("--digestfile", metavar="PATH")
    push.add_argument("--retry-times", type=non_negative_int, default=3, metavar="N")
    push.set_defaults(func=cmd_push)

    images = commands.add_parser("images", help="list images in the local store", description="List images.")
    images.add_argument("filter_name", nargs="?", metavar="NAME")
    images.add_argument("-q", "--quiet", action="store_true", help="print image ids only")
    images.add_argument("--digests", action="store_true", help="show digests")
    images.add_argument("--no-trunc", action="store_true", help="do not shorten ids")
    images.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    images.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="reference=, dangling=true|false, label=KEY[=VALUE], id=")
    images.set_defaults(func=cmd_images)

    rmi = commands.add_parser("rmi", help="remove images", description="Remove images from the local store.")
    rmi.add_argument("images", nargs="*", metavar="IMAGE")
    rmi.add_argument("-f", "--force", action="store_true", help="remove users (containers, mounts) first")
    rmi.add_argument("-a", "--all", action="store_true", help="remove every image")
    rmi.set_defaults(func=cmd_rmi)

    tag = commands.add_parser("tag", help="add names to an image", description="Add names to an image.")
    tag.add_argument("image", metavar="IMAGE")
    tag.add_argument("names", nargs="+", metavar="NAME")
    tag.set_defaults(func=cmd_tag)

    untag = commands.add_parser("untag", help="remove names from an image",
                                description="Remove names from an image (all of them when none are given).")
    untag.add_argument("image", metavar="IMAGE")
    untag.add_argument("names", nargs="*", metavar="NAME")
    untag.set_defaults(func=cmd_untag)

    save = commands.add_parser("save", help="save images to an archive", description="Save images to an archive.")
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument("-o", "--output", metavar="PATH", help="write here (default: standard output)")
    save.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive", "oci-dir"])
    save.add_argument("-m", "--multi-image-archive", action="store_true", help="several images in one docker archive")
    save.add_argument("-q", "--quiet", action="store_true")
    save.set_defaults(func=cmd_save)

    load = commands.add_parser("load", help="load images from an archive", description="Load images from an archive.")
    load.add_argument("-i", "--input", metavar="PATH", help="read here (default: standard input)")
    load.add_argument("-q", "--quiet", action="store_true")
    load.set_defaults(func=cmd_load)

    system = commands.add_parser("system", help="manage the store", description="Store-wide commands.")
    system_verbs = system.add_subparsers(dest="system_verb", metavar="COMMAND", required=True)
    df = system_verbs.add_parser("df", help="show disk usage", description="Show how much the store uses.")
    df.add_argument("--format", metavar="FORMAT", help="json")
    df.set_defaults(func=cmd_df)
    reset = system_verbs.add_parser("reset", help="remove everything from the store",
                                    description="Unmount and remove every image, layer and container.")
    reset.add_argument("-f", "--force", action="store_true", help="do not ask")
    reset.set_defaults(func=cmd_reset)

    storage = commands.add_parser("storage", help="check the store", description="Check and repair the store.")
    storage_verbs = storage.add_subparsers(dest="storage_verb", metavar="COMMAND", required=True)
    check = storage_verbs.add_parser("check", help="find problems in the store",
                                     description="Find dangling layers, half-written content, broken chains and "
                                                 "stale mounts; exit 1 when there are any.")
    check.add_argument("--repair", action="store_true", help="fix what is found")
    check.set_defaults(func=cmd_check)

    history = image_verbs.add_parser("history", help="show an image's history",
                                     description="Show the history of a stored image.")
    history.add_argument("image", metavar="IMAGE")
    history.add_argument("--format", metavar="FORMAT", help="json")
    history.add_argument("--no-trunc", action="store_true")
    history.set_defaults(func=cmd_history)

    prune = image_verbs.add_parser("prune", help="remove unused images",
                                   description="Remove images without names (all unused images with -a).")
    prune.add_argument("-a", "--all", action="store_true")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")
    prune.set_defaults(func=cmd_prune)

    mount = image_verbs.add_parser("mount", help="mount an image read-only",
                                   description="Mount images read-only (nosuid, nodev) and print the mount point; "
                                               "without arguments, list mounted images.")
    mount.add_argument("images", nargs="*", metavar="IMAGE")
    mount.add_argument("--format", metavar="FORMAT", help="json")
    mount.set_defaults(func=cmd_mount)

    unmount = image_verbs.add_parser("unmount", aliases=["umount"], help="unmount an image",
                                     description="Unmount images mounted with 'ketch image mount'.")
    unmount.add_argument("images", nargs="*", metavar="IMAGE")
    unmount.add_argument("-a", "--all", action="store_true", help="unmount every mounted image")
    unmount.add_argument("-f", "--force", action="store_true", help="unmount even if mounted several times")
    unmount.set_defaults(func=cmd_unmount)


def is_transport_name(name: str) -> bool:
    return name.startswith(TRANSPORT_PREFIXES)


# -- commands ---------------------------------------------------------------


def _platform(args, ctx) -> None:
    if args.platform:
        parts = args.platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInputError(f"invalid --platform {args.platform!r}: use OS/ARCH[/VARIANT]")
        ctx.override_os, ctx.override_arch = parts[0], parts[1]
        ctx.override_variant = parts[2] if len(parts) == 3 else None


def pull_image(args, store, name: str, stack) -> str:
    """Pull one name (short names through registries.conf); returns the image id."""
    from ketch.image.storage_transport import pull

    ctx = storage_context(args, store, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                          cert_dir=args.cert_dir)
    _platform(args, ctx)
    return pull(store, name, ctx, policy_from(args), _progress(args, stack))


def cmd_pull(args) -> int:
    store = open_store(args)
    with contextlib.ExitStack() as stack:
        if args.all_tags:
            from ketch.image.inspect import list_tags

            ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                               cert_dir=args.cert_dir)
            ref = ctx.registries().resolve_short_name(args.image)[0]
            if ref.tag or ref.digest:
                raise InvalidInputError("--all-tags takes a repository without a tag")
            ids = [pull_image(args, store, f"{ref.name}:{tag}", stack)
                   for tag in list_tags(f"docker://{ref.name}", ctx)["Tags"]]
        else:
            ids = [pull_image(args, store, args.image, stack)]
    for image_id in dict.fromkeys(ids):
        print(image_id)
    return 0


def cmd_push(args) -> int:
    from ketch.image.conversion import manifest_type_for_format
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.storage_transport import StorageReference
    from ketch.image.transports import parse_image_name

    store = open_store(args)
    record = store.lookup(args.image)
    if args.destination:
        target = args.destination
    elif record.names:
        # The name the user typed, as stored (``busybox`` -> docker.io/library/busybox:latest).
        target = next((n for n in store.candidates(args.image) if n in record.names), record.names[0])
    else:
        raise InvalidInputError("the image has no name; give a destination")
    if not is_transport_name(target):
        target = f"docker://{target}"  # normalized as docker references are (busybox: docker.io/library/...)
    ctx = storage_context(args, store, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                          cert_dir=args.cert_dir)
    with contextlib.ExitStack() as stack:
        result = copy_image(StorageReference(record.id), parse_image_name(target), CopyOptions(
            src_ctx=ctx, dest_ctx=ctx, policy=policy_from(args), progress=_progress(args, stack),
            manifest_type=manifest_type_for_format(args.format) if args.format else None,
            compress_format=args.compression_format))
    if args.digestfile:
        with open(args.digestfile, "w") as f:
            f.write(str(result.manifest_digest))
    return 0


def _age(ts: float) -> str:
    seconds = max(0, datetime.datetime.now().timestamp() - ts)
    for unit, size in (("years", 31536000), ("months", 2592000), ("weeks", 604800), ("days", 86400),
                       ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "Less than a minute ago"


def _config_time(record) -> float:
    created = record.parsed_config.created
    try:
        return datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return record.created


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} TB"


def _matches(record, filters: list[str], name: str | None) -> bool:
    import fnmatch

    if name and not any(fnmatch.fnmatch(n, f"*{name}*") for n in record.names):
        return False
    for item in filters:
        key, _, value = item.partition("=")
        if key == "reference":
            if not any(fnmatch.fnmatch(n, value) or fnmatch.fnmatch(n, f"*/{value}") or
                       fnmatch.fnmatch(n.rsplit(":", 1)[0], value) or fnmatch.fnmatch(n.rsplit(":", 1)[0], f"*/{value}")
                       for n in record.names):
                return False
        elif key == "dangling":
            if (value.lower() in ("true", "1")) != (not record.names):
                return False
        elif key == "label":
            labels = record.parsed_config.labels or {}
            label, _, wanted = value.partition("=")
            if label not in labels or (wanted and labels[label] != wanted):
                return False
        elif key == "id":
            if not record.id.startswith(value):
                return False
        else:
            raise InvalidInputError(f"unknown filter {key!r} (reference, dangling, label, id)")
    return True


def cmd_images(args) -> int:
    from ketch.cli import template
    from ketch.storage import views

    store = open_store(args)
    records = [r for r in store.images() if _matches(r, args.filter, args.filter_name)]
    counts: dict[str, int] = {}
    for c in store.containers():
        counts[c["image"]] = counts.get(c["image"], 0) + 1
    if args.quiet:
        for r in records:
            print(r.id if args.no_trunc else r.id[:12])
        return 0
    if args.format:
        data = views.images_json(records, counts)
        if args.format == "json":
            print(views.to_json(data))
        else:
            for item in data:
                print(template.render(args.format, item))
        return 0
    rows = []
    for r in records:
        for name in r.names or ["<none>:<none>"]:
            repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "<none>")
            row = [repo, tag]
            if args.digests:
                row.append(r.digest)
            row += [r.id if args.no_trunc else r.id[:12], _age(_config_time(r)), _human(r.size)]
            rows.append(row)
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    _table(header, rows)
    return 0


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)] if rows else [len(h) for h in header]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_rmi(args) -> int:
    store = open_store(args)
    if args.all:
        names = [r.id for r in store.images()]
    elif args.images:
        names = args.images
    else:
        raise InvalidInputError("name at least one image, or use --all")
    failed = None
    for name in names:
        try:
            for line in store.remove_image(name, force=args.force):
                print(line)
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed = exc
    if failed is not None:
        return failed.exit_code
    return 0


def cmd_tag(args) -> int:
    open_store(args).tag(args.image, *args.names)
    return 0


def cmd_untag(args) -> int:
    open_store(args).untag(args.image, *args.names)
    return 0


def local_inspect(args) -> int:
    from ketch.storage import views

    store = open_store(args)
    record = store.lookup(args.image)
    dirs = [str(store.driver.content_dir(store.db.one("SELECT content FROM layers WHERE id = ?", (layer,))["content"]))
            for layer in record.layers]
    data = views.inspect_json(record, store.driver_name, dirs)
    if args.format:
        from ketch.cli import template

        print(template.render(args.format, data))
    else:
        print(views.to_json([data]))
    return 0


def cmd_history(args) -> int:
    store = open_store(args)
    record = store.lookup(args.image)
    history = record.parsed_config.history
    if args.format == "json":
        print(json.dumps(history, indent=4))
        return 0
    rows = []
    for entry in reversed(history):
        created_by = entry.get("created_by", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:42] + "..."
        rows.append([entry.get("created", ""), created_by, "0 B" if entry.get("empty_layer") else "",
                     entry.get("comment", "")])
    _table(["CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)
    return 0


def cmd_prune(args) -> int:
    store = open_store(args)
    for image_id in store.prune_images(all_images=args.all):
        print(image_id)
    return 0


def cmd_mount(args) -> int:
    store = open_store(args)
    if not args.images:
        mounted = store.mounted_images()
        if args.format == "json":
            print(json.dumps([{"id": r.id, "Names": r.names, "mountpoint": str(p)} for r, p in mounted], indent=4))
        else:
            for record, path in mounted:
                print(f"{record.id[:12]} {record.names[0] if record.names else '<none>'} {path}")
        return 0
    for name in args.images:
        print(store.mount_image(name))
    return 0


def cmd_unmount(args) -> int:
    store = open_store(args)
    names = [r.id for r, _ in store.mounted_images()] if args.all else args.images
    if not names and not args.all:
        raise InvalidInputError("name an image, or use --all")
    for name in names:
        if store.unmount_image(name, force=args.force or args.all):
            print(store.lookup(name).id)
        else:
            raise InvalidInputError(f"image {name} is not mounted")
    return 0


def cmd_save(args) -> int:
    import tempfile

    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.docker_archive import DockerArchiveWriter
    from ketch.image.policy import Policy
    from ketch.image.storage_transport import StorageReference
    from ketch.image.transports import parse_image_name

    store = open_store(args)
    if args.output is None and sys.stdout.isatty():
        raise InvalidInputError("refusing to write an archive to a terminal; use -o FILE or a redirect")
    if len(args.images) > 1 and not (args.multi_image_archive and args.format == "docker-archive"):
        raise InvalidInputError("several images need -m and the docker-archive format")
    records = [(name, store.lookup(name)) for name in args.images]
    ctx = storage_context(args, store, creds=None, tls_verify=None, authfile=None)
    options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything())
    with contextlib.ExitStack() as stack:
        output = args.output
        if output is None:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ketch-save-"))
            output = os.path.join(tmpdir, "archive.tar")
        tag_of = {}
        for name, record in records:
            named = next((n for n in store.candidates(name) if n in record.names), None)
            tag_of[record.id] = named or (record.names[0] if record.names else None)
        if args.format == "docker-archive":
            writer = DockerArchiveWriter(output)
            try:
                for name, record in records:
                    tag = tag_of[record.id]
                    copy_image(StorageReference(record.id), writer.reference(tag) if tag else
                               writer.reference(None), options)
            except BaseException:
                writer.abandon()
                raise
            writer.close()
        else:
            name, record = records[0]
            tag = tag_of[record.id]
            transport = "oci-archive" if args.format == "oci-archive" else "oci"
            copy_image(StorageReference(record.id), parse_image_name(f"{transport}:{output}:{tag or ''}".rstrip(":")),
                       options)
        if args.output is None:
            with open(output, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return 0


def cmd_load(args) -> int:
    import tempfile

    from ketch.storage.load import load_archive

    store = open_store(args)
    with contextlib.ExitStack() as stack:
        path = args.input
        if path is None:
            if sys.stdin.isatty():
                raise InvalidInputError("no archive given (use -i FILE or a redirect)")
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ketch-load-"))
            path = os.path.join(tmpdir, "archive.tar")
            with open(path, "wb") as f:
                while chunk := sys.stdin.buffer.read(1 << 20):
                    f.write(chunk)
        ctx = storage_context(args, store, creds=None, tls_verify=None, authfile=None)
        for name in load_archive(store, path, ctx):
            print(f"Loaded image: {name}")
    return 0


def cmd_df(args) -> int:
    info = open_store(args).df()
    if args.format == "json":
        print(json.dumps(info, indent=4))
        return 0
    _table(["TYPE", "TOTAL", "ACTIVE", "SIZE"],
           [["Images", str(info["images"]), str(info["active_images"]), _human(info["layers_size"] + info["blobs_size"])],
            ["Containers", str(info["containers"]), "0", ""]])
    return 0


def cmd_reset(args) -> int:
    if not args.force:
        if not sys.stdin.isatty():
            raise InvalidInputError("system reset removes everything; confirm with --force")
        answer = input("This removes every image, layer and container of the store. Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    open_store(args).reset()
    return 0


def cmd_check(args) -> int:
    store = open_store(args)
    problems = store.repair() if args.repair else store.check()
    for problem in problems:
        print(("repaired " if args.repair else "") + str(problem))
    if args.repair:
        remaining = store.check()
        for problem in remaining:
            print(f"remaining {problem}")
        return 1 if remaining else 0
    return 1 if problems else 0
