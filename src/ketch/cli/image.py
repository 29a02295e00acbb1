"""``ketch image ...``: skopeo's verbs (inspect, copy, list-tags)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from ketch.cli import template
from ketch.cli.flags import add_bool, add_platform_overrides, make_context, non_negative_int, policy_from
from ketch.errors import InvalidInputError


def _add_common_registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authfile", metavar="PATH",
                        help="auth file to read credentials from (default: as podman, see docs)")
    parser.add_argument("--retry-times", type=non_negative_int, default=3, metavar="N",
                        help="times to retry a failed request (429, 5xx, broken connection) (default 3)")
    add_platform_overrides(parser)


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    image = subparsers.add_parser("image", help="inspect and move images between transports",
                                  description="Inspect and copy images (transports: docker://, oci:, dir:).")
    verbs = image.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    inspect = verbs.add_parser(
        "inspect", help="inspect a local image, or a remote one without pulling it",
        description="With a transport (docker://, oci:, ...): print a remote image's manifest and config details "
                    "without downloading its layers, as skopeo does. Without one: inspect an image of the local "
                    "store, as podman does.")
    inspect.add_argument("image", metavar="[TRANSPORT:]IMAGE")
    inspect.add_argument("--raw", action="store_true", help="print the raw manifest (or config with --config)")
    inspect.add_argument("--config", action="store_true", help="print the image config instead")
    inspect.add_argument("-n", "--no-tags", action="store_true", help="do not list the repository's tags")
    inspect.add_argument("-f", "--format", metavar="TEMPLATE", help="Go template, e.g. '{{.Digest}}'")
    inspect.add_argument("--creds", metavar="USER[:PASS]", help="credentials for the registry")
    inspect.add_argument("--cert-dir", metavar="DIR", help="CA certificates and client keys for the registry")
    add_bool(inspect, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    _add_common_registry_flags(inspect)
    inspect.set_defaults(func=cmd_inspect)

    copy = verbs.add_parser("copy", help="copy an image from one location to another",
                            description="Copy an image between transports, verifying every digest.")
    copy.add_argument("source", metavar="SOURCE-IMAGE")
    copy.add_argument("destination", metavar="DESTINATION-IMAGE")
    copy.add_argument("-a", "--all", action="store_true", help="copy every image of a multi-platform index")
    copy.add_argument("-q", "--quiet", action="store_true", help="print no progress")
    copy.add_argument("--src-creds", "--screds", metavar="USER[:PASS]", help="credentials for the source")
    copy.add_argument("--dest-creds", "--dcreds", metavar="USER[:PASS]", help="credentials for the destination")
    copy.add_argument("--src-authfile", metavar="PATH", help="auth file for the source")
    copy.add_argument("--dest-authfile", metavar="PATH", help="auth file for the destination")
    add_bool(copy, "--src-tls-verify", help="require HTTPS and verify certificates for the source")
    add_bool(copy, "--dest-tls-verify", help="require HTTPS and verify certificates for the destination")
    copy.add_argument("--src-cert-dir", metavar="DIR", help="CA certificates and client keys for the source")
    copy.add_argument("--dest-cert-dir", metavar="DIR", help="CA certificates and client keys for the destination")
    copy.add_argument("--digestfile", metavar="PATH", help="write the destination manifest's digest here")
    copy.add_argument("-f", "--format", metavar="FORMAT", choices=["oci", "v2s2", "v2s1"],
                      help="manifest format to write: oci or v2s2 (default: keep the source's)")
    copy.add_argument("--dest-compress-format", metavar="FORMAT", choices=["gzip", "zstd"],
                      help="recompress layers with gzip or zstd")
    copy.add_argument("--dest-compress-level", metavar="LEVEL", type=int,
                      help="compression level (gzip 1-9, zstd 1-22)")
    copy.add_argument("--remove-signatures", action="store_true",
                      help="do not copy signatures (ketch copies none yet; accepted for skopeo scripts)")
    copy.add_argument("--additional-tag", action="append", default=[], metavar="NAME:TAG",
                      help="more tags for a docker-archive destination (repeatable)")
    _add_common_registry_flags(copy)
    copy.set_defaults(func=cmd_copy)

    tags = verbs.add_parser("list-tags", help="list the tags of a repository",
                            description="List the tags of a repository in a registry.")
    tags.add_argument("repository", metavar="docker://REPOSITORY")
    tags.add_argument("--creds", metavar="USER[:PASS]", help="credentials for the registry")
    tags.add_argument("--cert-dir", metavar="DIR", help="CA certificates and client keys for the registry")
    add_bool(tags, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    _add_common_registry_flags(tags)
    tags.set_defaults(func=cmd_list_tags)

    delete = verbs.add_parser("delete", help="delete an image from a registry",
                              description="Delete the manifest a docker:// reference names (tag or digest).")
    delete.add_argument("image", metavar="docker://IMAGE")
    delete.add_argument("--creds", metavar="USER[:PASS]", help="credentials for the registry")
    delete.add_argument("--cert-dir", metavar="DIR", help="CA certificates and client keys for the registry")
    add_bool(delete, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    _add_common_registry_flags(delete)
    delete.set_defaults(func=cmd_delete)
    return verbs


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def cmd_inspect(args: argparse.Namespace) -> int:
    from ketch.cli.storage import is_transport_name, local_inspect
    from ketch.image import inspect as inspection

    if not is_transport_name(args.image):
        return local_inspect(args)
    ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                       cert_dir=args.cert_dir)
    if args.format and (args.raw or args.config):
        raise InvalidInputError("--format cannot be combined with --raw or --config")
    if args.config:
        config = inspection.inspect_config(args.image, ctx)
        if args.raw:
            sys.stdout.buffer.write(config.raw)
            sys.stdout.flush()
        else:
            _write(inspection.to_json(config.data))
        return 0
    if args.raw:
        sys.stdout.buffer.write(inspection.inspect_raw(args.image, ctx))
        sys.stdout.flush()
        return 0
    result = inspection.inspect_image(args.image, ctx, tags=not args.no_tags)
    data = result.skopeo_json()
    _write(template.render(args.format, data) if args.format else inspection.to_json(data))
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from ketch.image.conversion import manifest_type_for_format
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.transports import parse_image_name

    src_ref, dst_ref = parse_image_name(args.source), parse_image_name(args.destination)
    if args.additional_tag:
        from ketch.image.docker_archive import DockerArchiveReference

        if not isinstance(dst_ref, DockerArchiveReference):
            raise InvalidInputError("--additional-tag is only for docker-archive: destinations")
    options = CopyOptions(
        src_ctx=make_context(args, creds=args.src_creds, tls_verify=args.src_tls_verify,
                             authfile=args.src_authfile, cert_dir=args.src_cert_dir),
        dest_ctx=make_context(args, creds=args.dest_creds, tls_verify=args.dest_tls_verify,
                              authfile=args.dest_authfile, cert_dir=args.dest_cert_dir),
        all_images=args.all,
        manifest_type=manifest_type_for_format(args.format) if args.format else None,
        compress_format=args.dest_compress_format,
        compress_level=args.dest_compress_level,
        policy=policy_from(args),
        additional_tags=list(args.additional_tag),
    )
    show_progress = not args.quiet and sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        if show_progress:
            from ketch.cli.progress import TerminalProgress

            options.progress = stack.enter_context(TerminalProgress())
        result = copy_image(src_ref, dst_ref, options)
    if args.digestfile:
        with open(args.digestfile, "w") as f:
            f.write(str(result.manifest_digest))
    if show_progress:
        print(f"Writing manifest to image destination: {result.manifest_digest}", file=sys.stderr)
    return 0


def cmd_list_tags(args: argparse.Namespace) -> int:
    from ketch.image import inspect as inspection

    ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                       cert_dir=args.cert_dir)
    _write(inspection.to_json(inspection.list_tags(args.repository, ctx)))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from ketch.image.docker.transport import delete_image

    ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                       cert_dir=args.cert_dir)
    delete_image(args.image, ctx)
    return 0


