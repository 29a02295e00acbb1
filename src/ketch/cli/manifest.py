"""``ketch manifest``: manifest lists, as podman manifest (create, add, inspect, push, rm, exists,
remove); on :mod:`ketch.image.manifests`."""

from __future__ import annotations

import sys

from ketch.cli.flags import add_bool
from ketch.errors import InvalidInputError, NotFoundError


def register(commands) -> None:
    group = commands.add_parser("manifest", help="manage manifest lists",
                                description="Make manifest lists of images of several platforms, and push them.")
    verbs = group.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)
    create = verbs.add_parser("create", help="create a manifest list", description="Create a manifest list.")
    create.add_argument("name", metavar="LIST")
    create.add_argument("images", nargs="*", metavar="IMAGE", help="images to add at once")
    create.add_argument("--all", action="store_true", help="of an image that is a list, add every image")
    add_bool(create, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    create.set_defaults(func=cmd_create)
    add = verbs.add_parser("add", help="add an image to a manifest list",
                           description="Add an image (the store's, or a transport reference such as docker://REF) "
                                       "to a manifest list.")
    add.add_argument("name", metavar="LIST")
    add.add_argument("image", metavar="IMAGE")
    add.add_argument("--all", action="store_true", help="of an image that is a list, add every image")
    add.add_argument("--arch", metavar="ARCH", help="the architecture the entry names")
    add.add_argument("--os", metavar="OS", help="the OS the entry names")
    add.add_argument("--variant", metavar="VARIANT", help="the variant the entry names")
    add.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--creds", metavar="USER[:PASS]")
    add.add_argument("--authfile", metavar="PATH")
    add_bool(add, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    add.set_defaults(func=cmd_add)
    inspect = verbs.add_parser("inspect", help="show a manifest list", description="Show a manifest list's JSON.")
    inspect.add_argument("name", metavar="LIST")
    inspect.set_defaults(func=cmd_inspect)
    push = verbs.add_parser("push", help="push a manifest list and its images",
                            description="Push a manifest list's images and the list (to DESTINATION, by default "
                                        "the list's name).")
    push.add_argument("name", metavar="LIST")
    push.add_argument("destination", metavar="DESTINATION", nargs="?")
    push.add_argument("--all", action="store_true", default=True, help="push every image of the list (always)")
    push.add_argument("-f", "--format", choices=["oci", "v2s2"],
                      help="convert the images to this format first (the list's follows them)")
    push.add_argument("--rm", action="store_true", help="remove the list after pushing it")
    push.add_argument("--creds", metavar="USER[:PASS]")
    push.add_argument("--authfile", metavar="PATH")
    push.add_argument("--cert-dir", metavar="DIR")
    push.add_argument("--digestfile", metavar="FILE", help="write the pushed list's digest here")
    push.add_argument("-q", "--quiet", action="store_true")
    add_bool(push, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    push.set_defaults(func=cmd_push)
    rm = verbs.add_parser("rm", help="remove manifest lists", description="Remove manifest lists.")
    rm.add_argument("names", nargs="+", metavar="LIST")
    rm.set_defaults(func=cmd_rm)
    exists = verbs.add_parser("exists", help="exit 0 if a manifest list exists, 1 if not",
                              description="Check whether a manifest list exists.")
    exists.add_argument("name", metavar="LIST")
    exists.set_defaults(func=cmd_exists)
    remove = verbs.add_parser("remove", help="remove an image from a manifest list",
                              description="Remove the entry of a digest from a manifest list.")
    remove.add_argument("name", metavar="LIST")
    remove.add_argument("digest", metavar="DIGEST")
    remove.set_defaults(func=cmd_remove)


def _lists(args):
    from ketch.cli.storage import open_store
    from ketch.image.manifests import ManifestLists

    return ManifestLists(open_store(args))


def _context(args, lists):
    from ketch.cli.storage import storage_context

    return storage_context(args, lists.store, creds=getattr(args, "creds", None), tls_verify=args.tls_verify,
                           authfile=getattr(args, "authfile", None), cert_dir=getattr(args, "cert_dir", None))


def _add_one(args, lists, name: str, image: str, *, platform=None, annotations=None) -> str:
    """The store's image when it has one by that name (or ``ketch-storage:``/``containers-storage:``
    names it), else a transport reference (a bare one is docker://)."""
    for prefix in ("ketch-storage:", "containers-storage:"):
        if image.startswith(prefix):
            return lists.add_local(name, image[len(prefix):], platform=platform, annotations=annotations)
    if "://" not in image and not image.startswith(("oci:", "oci-archive:", "docker-archive:", "dir:")):
        try:
            return lists.add_local(name, image, platform=platform, annotations=annotations)
        except NotFoundError:
            image = f"docker://{image}"
    return lists.add_remote(name, image, _context(args, lists), all_platforms=args.all, platform=platform,
                            annotations=annotations)


def cmd_create(args) -> int:
    lists = _lists(args)
    list_id = lists.create(args.name)
    for image in args.images:
        _add_one(args, lists, args.name, image)
    print(list_id)
    return 0


def cmd_add(args) -> int:
    from ketch.containers.options import parse_key_values

    lists = _lists(args)
    platform = None
    if args.arch or args.os or args.variant:
        from ketch.image.platform import host_platform

        host_os, host_arch, _ = host_platform()
        platform = {"architecture": args.arch or host_arch, "os": args.os or host_os}
        if args.variant:
            platform["variant"] = args.variant
    print(_add_one(args, lists, args.name, args.image, platform=platform,
                   annotations=parse_key_values(args.annotation, "annotation") or None))
    return 0


def cmd_inspect(args) -> int:
    sys.stdout.write(_lists(args).index(args.name).decode() + "\n")
    return 0


def cmd_push(args) -> int:
    lists = _lists(args)
    found = lists.get(args.name)
    destination = args.destination or found["name"]
    digest = lists.push(args.name, destination, _context(args, lists), fmt=args.format)
    if args.digestfile:
        with open(args.digestfile, "w") as f:
            f.write(digest)
    if args.rm:
        lists.remove(args.name)
    if not args.quiet:
        print(digest)
    return 0


def cmd_rm(args) -> int:
    lists = _lists(args)
    missing = []
    for name in args.names:
        try:
            removed = lists.remove(name)
        except NotFoundError:
            missing.append(name)
            continue
        print(f"Untagged: {removed['name']}")
        print(f"Deleted: {removed['id']}")
    if missing:
        raise InvalidInputError(f"{', '.join(missing)}: no such manifest list")
    return 0


def cmd_exists(args) -> int:
    return 0 if _lists(args).exists(args.name) else 1


def cmd_remove(args) -> int:
    print(_lists(args).remove_entry(args.name, args.digest))
    return 0
