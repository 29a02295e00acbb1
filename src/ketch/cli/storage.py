"""Local-store commands, as podman spells them: pull, push, images, rmi, tag, untag, history,
save, load (top level and under ``ketch image``: list/ls, rm, exists, prune, mount, unmount),
and ``storage check``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from ketch.cli.flags import add_bool, make_context, non_negative_int, policy_from, sigstore_passphrase
from ketch.errors import InUseError, InvalidInputError, KetchError, NotFoundError

TRANSPORT_PREFIXES = ("docker:", "oci:", "dir:", "oci-archive:", "docker-archive:", "ketch-storage:",
                      "containers-storage:")
EXIT_IMAGE_MISSING = 1  # podman rmi: one of the images did not exist
EXIT_IMAGE_IN_USE = 2  # podman rmi: one of the images is used by a container


def open_store(args: argparse.Namespace):
    from ketch.storage.store import Store

    return Store(args.root, args.runroot, args.storage_driver)


def storage_context(args: argparse.Namespace, store, **kwargs):
    ctx = make_context(args, **kwargs)
    ctx.store = store
    return ctx


def _progress(args, stack, stream=None):
    """podman's report of a pull or push: its lines on stderr (skopeo copy: ``stream`` stdout)
    unless ``--quiet``; bars as well on a terminal."""
    from ketch.cli.progress import LineReport
    from ketch.image.progress import NoProgress

    if getattr(args, "quiet", False):
        return NoProgress()
    bars = None
    if sys.stderr.isatty():
        from ketch.cli.progress import TerminalProgress

        bars = stack.enter_context(TerminalProgress())
    return LineReport(stream or sys.stderr, bars)


def register(commands: argparse._SubParsersAction, image_verbs: argparse._SubParsersAction | None,
             word: str | None = None) -> None:
    """The top-level verbs, and (when ``image_verbs`` is given) the same under ``ketch image``."""
    for verbs, under_image in ((commands, False), (image_verbs, True)):
        if verbs is None:
            continue
        _add_pull(verbs)
        _add_push(verbs)
        _add_images(verbs, "list" if under_image else "images", ["ls"] if under_image else [])
        _add_rmi(verbs, "rm" if under_image else "rmi")
        _add_tag(verbs)
        _add_untag(verbs)
        _add_save(verbs)
        _add_load(verbs)
        _add_import(verbs)
        _add_history(verbs)
    if image_verbs is not None:
        _add_image_only(image_verbs)
    storage = commands.add_parser("storage", help="check the store", description="Check and repair the store.")
    storage_verbs = storage.add_subparsers(dest="storage_verb", metavar="COMMAND", required=True)
    check = storage_verbs.add_parser("check", help="find problems in the store",
                                     description="Find dangling layers, half-written content, broken chains and "
                                                 "stale mounts; exit 1 when there are any.")
    check.add_argument("--repair", action="store_true", help="fix what is found")
    check.set_defaults(func=cmd_check)


def _add_pull(verbs) -> None:
    pull = verbs.add_parser("pull", help="pull an image into the local store",
                            description="Pull an image into the local store (short names resolved as podman "
                                        "does, through registries.conf; any transport: docker://, oci:, dir:, "
                                        "oci-archive:, docker-archive:).")
    pull.add_argument("images", nargs="+", metavar="IMAGE")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress")
    add_bool(pull, "--disable-content-trust", help="accepted (a no-op, as in podman)")
    pull.add_argument("--creds", metavar="USER[:PASS]")
    pull.add_argument("--authfile", metavar="PATH")
    pull.add_argument("--cert-dir", metavar="DIR")
    add_bool(pull, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pull this platform from an index")
    pull.add_argument("--arch", metavar="ARCH", help="pull this architecture from an index")
    pull.add_argument("--os", metavar="OS", help="pull this OS from an index")
    pull.add_argument("--variant", metavar="VARIANT", help="pull this variant from an index")
    pull.add_argument("-a", "--all-tags", action="store_true", help="pull every tag of the repository")
    pull.add_argument("--retry-times", "--retry", type=non_negative_int, default=3, metavar="N")
    pull.set_defaults(func=cmd_pull)


def _add_push(verbs) -> None:
    push = verbs.add_parser("push", help="push an image from the local store",
                            description="Push an image from the local store to a registry (or any transport).")
    push.add_argument("image", metavar="IMAGE")
    push.add_argument("destination", metavar="DESTINATION", nargs="?")
    push.add_argument("-q", "--quiet", action="store_true")
    add_bool(push, "--disable-content-trust", help="accepted (a no-op, as in podman)")
    push.add_argument("--creds", metavar="USER[:PASS]")
    push.add_argument("--authfile", metavar="PATH")
    push.add_argument("--cert-dir", metavar="DIR")
    add_bool(push, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    push.add_argument("-f", "--format", choices=["oci", "v2s2", "docker"], help="manifest format")
    push.add_argument("--compression-format", choices=["gzip", "zstd"], help="recompress layers")
    push.add_argument("--compress", action="store_true", help="compress layers when pushing to dir:")
    push.add_argument("--remove-signatures", action="store_true", help="copy no signatures")
    push.add_argument("--sign-by", metavar="FINGERPRINT", help="sign the pushed manifest with this GnuPG key")
    push.add_argument("--sign-by-sigstore-private-key", metavar="PATH",
                      help="sign the pushed manifest with this sigstore (cosign) private key")
    push.add_argument("--sign-passphrase-file", metavar="PATH", help="the signing key's passphrase, in a file")
    push.add_argument("--digestfile", metavar="PATH")
    push.add_argument("--retry-times", "--retry", type=non_negative_int, default=3, metavar="N")
    push.set_defaults(func=cmd_push)


def _add_images(verbs, name: str, aliases: list[str]) -> None:
    images = verbs.add_parser(name, aliases=aliases, help="list images in the local store",
                              description="List images (intermediate build images only with --all).")
    images.add_argument("filter_name", nargs="?", metavar="IMAGE")
    images.add_argument("-a", "--all", action="store_true", help="also intermediate images")
    images.add_argument("-q", "--quiet", action="store_true", help="print image ids only")
    images.add_argument("--digests", action="store_true", help="show digests")
    images.add_argument("--history", action="store_true", help="show the names the image had")
    images.add_argument("--no-trunc", action="store_true", help="do not shorten ids")
    images.add_argument("-n", "--noheading", action="store_true", help="no header row")
    images.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    images.add_argument("--sort", default="created", choices=["created", "id", "repository", "size", "tag"])
    images.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="reference=, before=, since=, dangling=, label=, id=, digest=, intermediate=, "
                             "containers=, readonly=, until=")
    images.set_defaults(func=cmd_images)


def _add_rmi(verbs, name: str) -> None:
    rmi = verbs.add_parser(name, help="remove images", description="Remove images from the local store.")
    rmi.add_argument("images", nargs="*", metavar="IMAGE")
    rmi.add_argument("-f", "--force", action="store_true", help="remove users (containers, mounts) first")
    rmi.add_argument("-a", "--all", action="store_true", help="remove every image")
    rmi.add_argument("-i", "--ignore", action="store_true", help="no error for an image that does not exist")
    rmi.add_argument("--no-prune", action="store_true", help="accepted; ketch removes no parent images")
    rmi.set_defaults(func=cmd_rmi)


def _add_tag(verbs) -> None:
    tag = verbs.add_parser("tag", help="add names to an image", description="Add names to an image.")
    tag.add_argument("image", metavar="IMAGE")
    tag.add_argument("names", nargs="+", metavar="NAME")
    tag.set_defaults(func=cmd_tag)


def _add_untag(verbs) -> None:
    untag = verbs.add_parser("untag", help="remove names from an image",
                             description="Remove names from an image (all of them when none are given).")
    untag.add_argument("image", metavar="IMAGE")
    untag.add_argument("names", nargs="*", metavar="NAME")
    untag.set_defaults(func=cmd_untag)


def _add_save(verbs) -> None:
    save = verbs.add_parser("save", help="save images to an archive", description="Save images to an archive.")
    save.add_argument("images", nargs="+", metavar="IMAGE")
    save.add_argument("-o", "--output", metavar="PATH", help="write here (default: standard output)")
    save.add_argument("--format", default="docker-archive",
                      choices=["docker-archive", "oci-archive", "oci-dir", "docker-dir"])
    save.add_argument("-m", "--multi-image-archive", action="store_true", help="several images in one docker archive")
    save.add_argument("--uncompressed", action="store_true",
                      help="keep layers uncompressed (oci-dir, docker-dir: as they are stored)")
    save.add_argument("--compress", action="store_true", help="compress layers (oci-dir, docker-dir)")
    save.add_argument("-q", "--quiet", action="store_true")
    save.set_defaults(func=cmd_save)


def _add_load(verbs) -> None:
    load = verbs.add_parser("load", help="load images from an archive", description="Load images from an archive.")
    load.add_argument("-i", "--input", metavar="PATH", help="read here (default: standard input)")
    load.add_argument("-q", "--quiet", action="store_true")
    load.set_defaults(func=cmd_load)


def _add_import(verbs) -> None:
    parser = verbs.add_parser("import", help="make an image of a file system's tarball",
                              description="Make an image of one layer from a tarball of a file system (a file, "
                                          "an http(s) URL, or - for standard input), as podman import.")
    parser.add_argument("path", metavar="PATH|URL|-")
    parser.add_argument("reference", metavar="REFERENCE", nargs="?")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="a Dockerfile instruction for the image's config (CMD, ENV, LABEL, ...)")
    parser.add_argument("-m", "--message", default="", help="the commit message of its history")
    parser.add_argument("--os", metavar="OS")
    parser.add_argument("--arch", metavar="ARCH")
    parser.add_argument("--variant", metavar="VARIANT")
    parser.add_argument("--format", default="oci", choices=["oci", "docker"], help="the image's format")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image id (all ketch prints)")
    parser.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from ketch.containers.commit import import_tarball
    from ketch.image.platform import host_platform

    system, arch, variant = host_platform()
    platform = (args.os or system, args.arch or arch, args.variant if args.variant is not None else
                (variant if not args.arch or args.arch == arch else ""))
    from ketch.containers.commit import open_tarball

    if args.path == "-" and sys.stdin.isatty():
        raise InvalidInputError("import: no tarball on standard input (use a file or a redirect)")
    store = open_store(args)
    with open_tarball(args.path, sys.stdin.buffer) as source:
        image_id = import_tarball(store, source, name=args.reference, changes=args.change, message=args.message,
                                  fmt=args.format, platform=platform)
    print(f"sha256:{image_id}")  # (podman's form)
    return 0


def _add_history(verbs) -> None:
    history = verbs.add_parser("history", help="show an image's history",
                               description="Show the history of a stored image.")
    history.add_argument("image", metavar="IMAGE")
    history.add_argument("--format", metavar="FORMAT", help="json, or a Go template")
    history.add_argument("--no-trunc", "--notruncate", action="store_true")
    add_bool(history, "-H", "--human", default=True, help="human-readable dates (default true)")
    history.add_argument("-q", "--quiet", action="store_true", help="ids only")
    history.set_defaults(func=cmd_history)


def _add_image_only(image_verbs) -> None:
    prune = image_verbs.add_parser("prune", help="remove unused images",
                                   description="Remove images without names (all unused images with -a).")
    prune.add_argument("-a", "--all", action="store_true")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")
    prune.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    prune.set_defaults(func=cmd_prune)

    mount = image_verbs.add_parser("mount", help="mount an image read-only",
                                   description="Mount images read-only (nosuid, nodev) and print the mount point; "
                                               "without arguments, list mounted images.")
    mount.add_argument("images", nargs="*", metavar="IMAGE")
    mount.add_argument("-a", "--all", action="store_true", help="mount every image")
    mount.add_argument("--format", metavar="FORMAT", help="json")
    mount.set_defaults(func=cmd_mount)

    unmount = image_verbs.add_parser("unmount", aliases=["umount"], help="unmount an image",
                                     description="Unmount images mounted with 'ketch image mount'.")
    unmount.add_argument("images", nargs="*", metavar="IMAGE")
    unmount.add_argument("-a", "--all", action="store_true", help="unmount every mounted image")
    unmount.add_argument("-f", "--force", action="store_true", help="unmount even if mounted several times")
    unmount.set_defaults(func=cmd_unmount)

    sign = image_verbs.add_parser("sign", help="sign images (GPG simple signing)",
                                  description="Sign registry images with a GnuPG key; the signatures go to the "
                                              "lookaside directory (--directory, else registries.d's staging "
                                              "location), where skopeo and podman look for them.")
    sign.add_argument("images", nargs="+", metavar="IMAGE")
    sign.add_argument("--sign-by", required=True, metavar="KEY", help="the GnuPG key (fingerprint, id or e-mail)")
    sign.add_argument("-d", "--directory", metavar="DIR", help="where the signatures go")
    sign.add_argument("-a", "--all", action="store_true", help="the images of a multi-platform index too")
    sign.add_argument("--authfile", metavar="PATH")
    sign.add_argument("--cert-dir", metavar="DIR")
    add_bool(sign, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    sign.set_defaults(func=cmd_sign)

    trust = image_verbs.add_parser("trust", help="show or set the trust policy (podman's image trust)",
                                   description="Show the trust policy and where signatures are read, or set the "
                                               "requirement of a registry or repository.")
    trust_verbs = trust.add_subparsers(dest="trust_verb", metavar="COMMAND", required=True)
    show = trust_verbs.add_parser("show", help="show the trust policy")
    show.add_argument("registry", nargs="?", metavar="REGISTRY", help="only this scope")
    show.add_argument("--policypath", metavar="PATH", help="the policy (default: the one in use)")
    show.add_argument("--registrypath", metavar="DIR", help="registries.d to read (default: the one in use)")
    show.add_argument("-j", "--json", action="store_true", help="as JSON")
    show.add_argument("--raw", action="store_true", help="print the policy file as it is")
    show.add_argument("-n", "--noheading", action="store_true", help="no heading line")
    show.set_defaults(func=cmd_trust_show)
    setter = trust_verbs.add_parser("set", help="set the requirement of a registry or repository (or default)")
    setter.add_argument("registry", metavar="REGISTRY", help="a registry or repository, or default")
    setter.add_argument("-t", "--type", required=True, choices=["accept", "reject", "signedBy", "sigstoreSigned"],
                        help="accept, reject, signedBy or sigstoreSigned")
    setter.add_argument("-f", "--pubkeysfile", action="append", default=[], metavar="PATH",
                        help="a public key for signedBy or sigstoreSigned (repeatable)")
    setter.add_argument("--policypath", metavar="PATH", help="the policy file to edit (default: the one in use)")
    setter.add_argument("--registrypath", metavar="DIR",
                        help="registries.d to edit for sigstoreSigned (default: /etc/containers/registries.d)")
    setter.set_defaults(func=cmd_trust_set)

    exists = image_verbs.add_parser("exists", help="exit 0 if an image is in the store, 1 if not",
                                    description="Check whether an image is in the local store.")
    exists.add_argument("image", metavar="IMAGE")
    exists.set_defaults(func=cmd_exists)


def is_transport_name(name: str) -> bool:
    return name.startswith(TRANSPORT_PREFIXES)


# -- commands ---------------------------------------------------------------


def _platform(args, ctx) -> None:
    if getattr(args, "platform", None):
        from ketch.image.platform import parse_platform

        ctx.override_os, ctx.override_arch, variant = parse_platform(args.platform)
        ctx.override_variant = variant or None
    for flag, attribute in (("arch", "override_arch"), ("os", "override_os"), ("variant", "override_variant")):
        if getattr(args, flag, None):
            setattr(ctx, attribute, getattr(args, flag))


def pull_image(args, store, name: str, stack) -> str:
    """Pull one name (short names through registries.conf; any transport); the image id."""
    from ketch.image.storage_transport import pull

    ctx = storage_context(args, store, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                          cert_dir=args.cert_dir)
    _platform(args, ctx)
    return pull(store, name, ctx, policy_from(args), _progress(args, stack))


def cmd_pull(args) -> int:
    store = open_store(args)
    ids = []
    with contextlib.ExitStack() as stack:
        for image in args.images:
            if args.all_tags:
                from ketch.image.inspect import list_tags

                ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                                   cert_dir=args.cert_dir)
                ref = ctx.registries().resolve_short_name(image.removeprefix("docker://"))[0]
                if ref.tag or ref.digest:
                    raise InvalidInputError("--all-tags takes a repository without a tag")
                ids += [pull_image(args, store, f"{ref.name}:{tag}", stack)
                        for tag in sorted(list_tags(f"docker://{ref.name}", ctx)["Tags"])]
            else:
                ids.append(pull_image(args, store, image, stack))
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
    fmt = {"docker": "v2s2"}.get(args.format, args.format)
    with contextlib.ExitStack() as stack:
        result = copy_image(StorageReference(record.id), parse_image_name(target), CopyOptions(
            src_ctx=ctx, dest_ctx=ctx, policy=policy_from(args), progress=_progress(args, stack),
            manifest_type=manifest_type_for_format(fmt) if fmt else None,
            compress_format=args.compression_format, remove_signatures=args.remove_signatures,
            sign_by=args.sign_by, sign_passphrase_file=args.sign_passphrase_file,
            sign_by_sigstore_private_key=args.sign_by_sigstore_private_key,
            sign_passphrase=sigstore_passphrase(args)))
    if args.digestfile:
        with open(args.digestfile, "w") as f:
            f.write(str(result.manifest_digest))
    return 0


def _policy_path(args) -> str:
    from ketch.image.policy import default_policy_path

    return args.policypath or getattr(args, "policy", None) or str(default_policy_path())


def cmd_trust_show(args) -> int:
    from ketch.cli.report import tabwrite
    from ketch.image.policy import trust_entries

    path = _policy_path(args)
    if args.raw:
        with open(path) as file:
            print(file.read())
        return 0
    entries = trust_entries(path, args.registrypath or getattr(args, "registries_d", None))
    if args.registry:
        entries = [e for e in entries if e.get("repo_name") == args.registry or e.get("name") == args.registry]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    lines = [] if args.noheading else ["TRANSPORT\tNAME\tTYPE\tID\tSTORE"]
    lines += [f"{e['transport']}\t{e.get('repo_name', '')}\t{e['type']}\t{e.get('gpg_id', '')}\t{e.get('sigstore', '')}"
              for e in entries]
    sys.stdout.write(tabwrite("\n".join(lines) + "\n"))
    return 0


def cmd_trust_set(args) -> int:
    from ketch.image.policy import set_trust

    set_trust(_policy_path(args), args.registry, args.type, args.pubkeysfile,
              args.registrypath or getattr(args, "registries_d", None))
    return 0


def image_entries(store, *, everything: bool, filters: list[str], name: str | None) -> list[dict]:
    """podman's ``images --format json`` entries, filtered as podman filters them."""
    from ketch.storage import filters as image_filters
    from ketch.storage import views

    records = store.images()
    counts: dict[str, int] = {}
    for c in store.containers():
        counts[c["image"]] = counts.get(c["image"], 0) + 1
    hidden = set() if everything else views.intermediate_ids(records)
    wanted = list(filters) + ([f"reference={name}"] if name else [])
    if name and filters:
        raise InvalidInputError("cannot specify an image and a filter(s)")
    matcher = image_filters.ImageFilter(wanted, records, counts)
    chosen = [r for r in records if r.id not in hidden and matcher(r)]
    return views.images_json(chosen, counts, intermediate=views.intermediate_ids(records),
                             parent_of=views.parents(records))


def _sorted_rows(rows, key: str):
    if key == "id":
        return sorted(rows, key=lambda r: r.ID)
    if key == "repository":
        return sorted(rows, key=lambda r: r.Repository)
    if key == "size":
        return sorted(rows, key=lambda r: r.entry["Size"])
    if key == "tag":
        return sorted(rows, key=lambda r: r.Tag)
    return sorted(rows, key=lambda r: -r.entry["Created"])


def cmd_images(args) -> int:
    from ketch.cli import report, reports

    store = open_store(args)
    entries = image_entries(store, everything=args.all, filters=args.filter, name=args.filter_name)
    rows = _sorted_rows(reports.image_rows(entries, args.no_trunc), args.sort)
    if report.is_json(args.format):
        out = []
        for row in rows:
            out.append({**row.entry, "RepoTags": None})
        print(json.dumps(out, indent=4) if out else "[]")
        return 0
    if args.quiet:
        for image_id in dict.fromkeys(row.ID for row in rows):
            print(image_id)
        return 0
    formatter = report.Formatter(args.format, name="images", noheading=args.noheading,
                                 default=reports.images_default_format(args.digests, args.history),
                                 headers=reports.IMAGE_HEADERS)
    formatter.write(rows)
    return 0


def cmd_rmi(args) -> int:
    """podman's statuses: 1 when an image does not exist, 2 when one is in use, 125 otherwise."""
    store = open_store(args)
    if args.all:
        names = [r.id for r in store.images()]
    elif args.images:
        names = args.images
    else:
        raise InvalidInputError("image name or ID must be specified")
    status = 0
    for name in names:
        try:
            for line in store.remove_image(name, force=args.force):
                print(line)
        except NotFoundError as exc:
            if args.ignore or args.force:  # (podman: --force ignores images that are not there)
                continue
            print(f"Error: {exc}", file=sys.stderr)
            status = status or EXIT_IMAGE_MISSING
        except InUseError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = EXIT_IMAGE_IN_USE
        except KetchError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            status = 125
    return status


def cmd_tag(args) -> int:
    open_store(args).tag(args.image, *args.names)
    return 0


def cmd_untag(args) -> int:
    open_store(args).untag(args.image, *args.names)
    return 0


def cmd_sign(args) -> int:
    from ketch.image.signing import sign_image

    ctx = make_context(args, creds=None, tls_verify=args.tls_verify, authfile=args.authfile, cert_dir=args.cert_dir)
    for name in args.images:
        sign_image(name, args.sign_by, directory=args.directory, all_instances=args.all, ctx=ctx)
    return 0


def cmd_exists(args) -> int:
    try:
        open_store(args).lookup(args.image)
    except NotFoundError:
        return 1
    return 0


def inspect_entries(store, names: list[str]) -> tuple[list[dict], list[KetchError]]:
    """podman image inspect's entries for ``names``, and the errors of those not found."""
    from ketch.storage import views

    found, errors = [], []
    for name in names:
        try:
            record = store.lookup(name)
        except KetchError as exc:
            errors.append(exc)
            continue
        dirs = [str(store.driver.content_dir(key)) for key in store.layer_contents(record.layers)]
        found.append(views.inspect_json(record, store.driver_name, dirs))
    return found, errors


def local_inspect(args) -> int:
    """``image inspect`` of stored images: podman's JSON list, or a template per image."""

    store = open_store(args)
    found, errors = inspect_entries(store, args.image)
    print_inspected(args.format, found, "inspect")
    return report_inspect_errors([str(exc) for exc in errors])


def report_inspect_errors(messages: list[str], what: str = "object") -> int:
    """podman's way with the names an inspect did not find: each after the first as a plain
    "error inspecting" line, then the first as the command's error; 125 if there were any."""
    for message in messages[1:]:
        print(f"error inspecting {what}: {message}", file=sys.stderr)
    if messages:
        print(f"Error: inspecting {what}: {messages[0]}", file=sys.stderr)
    return 125 if messages else 0


def print_inspected(fmt: str | None, entries: list[dict], name: str, as_go=None) -> None:
    """An inspect command's output: JSON (podman's indent), or a template run per entry (over
    ``as_go(entry)``, by default the JSON's own keys as Go fields)."""
    from ketch.cli import report, reports

    if fmt and not report.is_json(fmt):
        sys.stdout.write(report.Formatter(fmt, name=name, default="").render(
            [(as_go or reports.go_value)(e) for e in entries]))
    else:
        print(json.dumps(entries, indent=4) if entries else "[]")


def cmd_history(args) -> int:
    from ketch.cli import report, reports
    from ketch.storage import views

    store = open_store(args)
    record = store.lookup(args.image)
    entries = views.history_entries(record, store.images(), store.layer_sizes(record.layers))
    if args.quiet:
        for entry in entries:
            print(entry["ID"] if args.no_trunc or entry["ID"] == "<missing>" else entry["ID"][:12])
        return 0
    if report.is_json(args.format):
        out = []
        for n, entry in enumerate(entries):
            item = {"id": entry["ID"], "created": entry["created_text"], "CreatedBy": entry["CreatedBy"],
                    "size": entry["Size"]}
            if entry["Comment"]:
                item["comment"] = entry["Comment"]
            if entry["Tags"] and n:  # podman names the images below, not the one asked about
                item["tags"] = entry["Tags"]
            item["Created"] = entry["created_text"]
            out.append(item)
        print(json.dumps(out, separators=(",", ":")))
        return 0
    rows = [reports.HistoryRow(e, args.no_trunc, args.human) for e in entries]
    report.Formatter(args.format, name="history", default=reports.HISTORY_DEFAULT,
                     headers=reports.HISTORY_HEADERS).write(rows)
    return 0


def cmd_prune(args) -> int:
    store = open_store(args)
    for image_id in store.prune_images(all_images=args.all):
        print(image_id)
    return 0


def cmd_mount(args) -> int:
    store = open_store(args)
    names = [r.id for r in store.images()] if args.all else args.images
    if names:
        from ketch.cli.flags import require_unshare_for_mounts

        require_unshare_for_mounts()
    if not names:
        mounted = store.mounted_images()
        if args.format == "json":
            print(json.dumps([{"id": r.id, "Names": r.names, "Repositories": r.names, "mountpoint": str(p)}
                              for r, p in mounted], indent=4))
        else:
            for record, path in mounted:
                print(f"{record.id[:12]} {record.names[0] if record.names else '<none>'} {path}")
        return 0
    for name in names:
        path = store.mount_image(name)
        print(path if not args.all else f"{store.lookup(name).id} {path}")
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
    from ketch.image.docker_archive import save_images
    from ketch.image.policy import Policy
    from ketch.image.storage_transport import StorageReference
    from ketch.image.transports import parse_image_name

    store = open_store(args)
    directory = args.format in ("oci-dir", "docker-dir")
    if args.output is None and directory:
        raise InvalidInputError(f"--format {args.format} needs -o DIRECTORY")
    if args.output is None and sys.stdout.isatty():
        raise InvalidInputError("refusing to save to terminal. Use -o flag or redirect")
    if args.compress and args.uncompressed:
        raise InvalidInputError("--compress and --uncompressed cannot be combined")
    if len(args.images) > 1 and not (args.multi_image_archive and args.format == "docker-archive"):
        raise InvalidInputError("several images need -m and the docker-archive format")
    records = [(name, store.lookup(name)) for name in args.images]
    ctx = storage_context(args, store, creds=None, tls_verify=None, authfile=None)
    # (the store's own images: no policy to meet; their signatures are not saved, as podman's save
    # drops them -- archives cannot keep them)
    options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything(), remove_signatures=True)
    if directory:
        from ketch.image.conversion import manifest_type_for_format

        options.manifest_type = manifest_type_for_format("oci" if args.format == "oci-dir" else "v2s2")
        if args.uncompressed:
            options.decompress = True
        elif args.compress:
            options.compress_format = "gzip"
    with contextlib.ExitStack() as stack:
        options.progress = _SaveReport(_progress(args, stack))
        output = args.output
        if output is None:
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ketch-save-"))
            output = os.path.join(tmpdir, "archive.tar")
        tag_of = {}
        for name, record in records:
            named = next((n for n in store.candidates(name) if n in record.names), None)
            tag_of[record.id] = named or (record.names[0] if record.names else None)
        if args.format == "docker-archive":
            save_images(store, list(args.images), output, ctx, options.progress)
        else:
            name, record = records[0]
            tag = tag_of[record.id]
            if args.format == "oci-archive":
                target = f"oci-archive:{output}:{tag or ''}".rstrip(":")
            elif args.format == "oci-dir":
                target = f"oci:{output}:{tag or ''}".rstrip(":")
            else:
                target = f"dir:{output}"
            copy_image(StorageReference(record.id), parse_image_name(target), options)
        if args.output is None:
            with open(output, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return 0


class _SaveReport:
    """podman save's report: a copy's lines, less "Getting image source signatures"."""

    def __init__(self, report) -> None:
        self._report = report

    def message(self, text: str) -> None:
        if text != "Getting image source signatures":
            self._report.message(text)

    def __getattr__(self, name):
        return getattr(self._report, name)


def cmd_load(args) -> int:
    import tempfile

    from ketch.image.load import load_archive

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
        for name in load_archive(store, path, ctx, _progress(args, stack), policy_from(args)):
            print(f"Loaded image: {name}")
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
