"""``ketch image ...``: skopeo's verbs (inspect, copy, list-tags, delete). ``image inspect``
without a transport inspects images of the local store, as podman's."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from ketch.cli.flags import (
    add_bool,
    add_platform_overrides,
    make_context,
    non_negative_int,
    policy_from,
    sigstore_passphrase,
)
from ketch.errors import InvalidInputError


def _add_registry_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """skopeo's per-side flags: --creds, --username/--password, --no-creds, --registry-token,
    --cert-dir, --tls-verify, --authfile, --shared-blob-dir (``prefix`` "src-" or "dest-")."""
    parser.add_argument(f"--{prefix}creds", metavar="USER[:PASS]", help="credentials for the registry")
    parser.add_argument(f"--{prefix}username", metavar="USER", help="user name for the registry")
    parser.add_argument(f"--{prefix}password", metavar="PASS", help="password for the registry")
    parser.add_argument(f"--{prefix}no-creds", action="store_true", help="access the registry anonymously")
    parser.add_argument(f"--{prefix}registry-token", metavar="TOKEN", help="a bearer token for the registry")
    parser.add_argument(f"--{prefix}cert-dir", metavar="DIR", help="CA certificates and client keys for the registry")
    add_bool(parser, f"--{prefix}tls-verify", help="require HTTPS and verify certificates (default true)")
    parser.add_argument(f"--{prefix}authfile", metavar="PATH", help="auth file to read credentials from")
    parser.add_argument(f"--{prefix}shared-blob-dir", metavar="DIR",
                        help="oci: layouts keep their blobs in DIR instead of their own blobs/")
    parser.add_argument(f"--{prefix}daemon-host", metavar="HOST", help="not supported: ketch has no docker daemon")


def _context(args: argparse.Namespace, prefix: str = ""):
    def get(name: str):
        return getattr(args, f"{prefix}{name}", None)

    if get("daemon_host"):
        raise InvalidInputError("docker-daemon: is not supported: ketch talks to no docker daemon")
    creds = get("creds")
    if get("username") is not None:
        if creds:
            raise InvalidInputError(f"--{prefix.replace('_', '-')}creds and --{prefix.replace('_', '-')}username "
                                    "cannot be used together")
        creds = f"{get('username')}:{get('password') or ''}"
    elif get("password") is not None:
        raise InvalidInputError(f"--{prefix.replace('_', '-')}password needs --{prefix.replace('_', '-')}username")
    ctx = make_context(args, creds=creds, tls_verify=get("tls_verify"),
                       authfile=get("authfile") or getattr(args, "authfile", None), cert_dir=get("cert_dir"))
    ctx.no_creds = bool(get("no_creds"))
    ctx.registry_token = get("registry_token")
    ctx.oci_shared_blob_dir = get("shared_blob_dir")
    return ctx


def _add_signing_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sign-by", metavar="FINGERPRINT",
                        help="sign the written manifest with this GnuPG key (simple signing)")
    parser.add_argument("--sign-by-sigstore-private-key", metavar="PATH",
                        help="sign the written manifest with this sigstore (cosign) private key")
    parser.add_argument("--sign-passphrase-file", metavar="PATH", help="the signing key's passphrase, in a file")
    parser.add_argument("--sign-identity", metavar="REFERENCE",
                        help="the image name the signature states (default: the destination's)")


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-times", type=non_negative_int, default=3, metavar="N",
                        help="times to retry a failed request (429, 5xx, broken connection) (default 3)")
    add_platform_overrides(parser)


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    image = subparsers.add_parser("image", help="manage images, and inspect and move them between transports",
                                  description="Images: skopeo's inspect, copy, list-tags and delete over any "
                                              "transport (docker://, oci:, dir:, oci-archive:, docker-archive:, "
                                              "containers-storage:), and podman's image commands on the store.")
    verbs = image.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    inspect = verbs.add_parser(
        "inspect", help="inspect a local image, or a remote one without pulling it",
        description="With a transport (docker://, oci:, ...): print a remote image's manifest and config details "
                    "without downloading its layers, as skopeo does. Without one: inspect images of the local "
                    "store, as podman does.")
    inspect.add_argument("image", nargs="+", metavar="[TRANSPORT:]IMAGE")
    inspect.add_argument("--raw", action="store_true", help="print the raw manifest (or config with --config)")
    inspect.add_argument("--config", action="store_true", help="print the image config instead")
    inspect.add_argument("-n", "--no-tags", action="store_true", help="do not list the repository's tags")
    inspect.add_argument("-f", "--format", metavar="TEMPLATE", help="Go template, e.g. '{{.Digest}}'")
    _add_registry_flags(inspect)
    _add_common_flags(inspect)
    inspect.set_defaults(func=cmd_inspect)

    copy = verbs.add_parser("copy", help="copy an image from one location to another",
                            description="Copy an image between transports, verifying every digest.")
    copy.add_argument("source", metavar="SOURCE-IMAGE")
    copy.add_argument("destination", metavar="DESTINATION-IMAGE")
    copy.add_argument("-a", "--all", action="store_true", help="copy every image of a multi-platform index")
    copy.add_argument("--multi-arch", choices=["system", "all"], help="system (the default) or all (as --all)")
    copy.add_argument("-q", "--quiet", action="store_true", help="print no progress")
    copy.add_argument("--screds", dest="src_creds", help=argparse.SUPPRESS)
    copy.add_argument("--dcreds", dest="dest_creds", help=argparse.SUPPRESS)
    _add_registry_flags(copy, "src-")
    _add_registry_flags(copy, "dest-")
    copy.add_argument("--authfile", metavar="PATH", help="auth file for both sides")
    copy.add_argument("--digestfile", metavar="PATH", help="write the destination manifest's digest here")
    copy.add_argument("-f", "--format", metavar="FORMAT", choices=["oci", "v2s2", "v2s1"],
                      help="manifest format to write: oci or v2s2 (default: keep the source's)")
    copy.add_argument("--dest-compress", action="store_true", help="compress layers (dir: destinations)")
    copy.add_argument("--dest-decompress", action="store_true", help="store layers uncompressed")
    copy.add_argument("--dest-compress-format", metavar="FORMAT", choices=["gzip", "zstd"],
                      help="recompress layers with gzip or zstd")
    copy.add_argument("--dest-compress-level", metavar="LEVEL", type=int,
                      help="compression level (gzip 1-9, zstd 1-22)")
    copy.add_argument("--dest-oci-accept-uncompressed-layers", action="store_true",
                      help="keep uncompressed layers uncompressed in an oci: destination")
    copy.add_argument("--preserve-digests", action="store_true",
                      help="fail rather than change the manifest's digest")
    copy.add_argument("--remove-signatures", action="store_true", help="do not copy the source's signatures")
    _add_signing_flags(copy)
    copy.add_argument("--additional-tag", action="append", default=[], metavar="NAME:TAG",
                      help="more tags for a docker-archive destination (repeatable)")
    _add_common_flags(copy)
    copy.set_defaults(func=cmd_copy)

    sign = verbs.add_parser("standalone-sign", help="sign a manifest file (skopeo's standalone-sign)",
                            description="Write a simple signing signature of MANIFEST for DOCKER-REFERENCE with "
                                        "the GnuPG key KEY-FINGERPRINT.")
    sign.add_argument("manifest", metavar="MANIFEST")
    sign.add_argument("docker_reference", metavar="DOCKER-REFERENCE")
    sign.add_argument("fingerprint", metavar="KEY-FINGERPRINT")
    sign.add_argument("-o", "--output", required=True, metavar="SIGNATURE", help="where to write the signature")
    sign.add_argument("--passphrase-file", metavar="PATH", help="the key's passphrase, in a file")
    sign.set_defaults(func=cmd_standalone_sign)
    keygen = verbs.add_parser("generate-sigstore-key", help="make a sigstore signing key pair (skopeo's)",
                              description="Write PREFIX.private (an ECDSA P-256 key, encrypted with a passphrase, "
                                          "in the sigstore/cosign format) and PREFIX.pub.")
    keygen.add_argument("--output-prefix", required=True, metavar="PREFIX", help="write PREFIX.private and PREFIX.pub")
    keygen.add_argument("--passphrase-file", metavar="PATH",
                        help="the passphrase, in a file (else asked on the terminal)")
    keygen.set_defaults(func=cmd_generate_sigstore_key)
    verify = verbs.add_parser("standalone-verify", help="verify a signature of a manifest file (skopeo's)",
                              description="Verify SIGNATURE of MANIFEST for DOCKER-REFERENCE, made by one of the "
                                          "keys KEY-FINGERPRINTS (comma-separated) of the user's GnuPG keyring.")
    verify.add_argument("manifest", metavar="MANIFEST")
    verify.add_argument("docker_reference", metavar="DOCKER-REFERENCE")
    verify.add_argument("fingerprints", metavar="KEY-FINGERPRINTS")
    verify.add_argument("signature", metavar="SIGNATURE")
    verify.set_defaults(func=cmd_standalone_verify)

    tags = verbs.add_parser("list-tags", help="list the tags of a repository",
                            description="List the tags of a repository in a registry, or the names in a docker "
                                        "archive.")
    tags.add_argument("repository", metavar="docker://REPOSITORY|docker-archive:PATH")
    _add_registry_flags(tags)
    _add_common_flags(tags)
    tags.set_defaults(func=cmd_list_tags)

    delete = verbs.add_parser("delete", help="delete an image from a registry",
                              description="Delete the manifest a docker:// reference names (tag or digest).")
    delete.add_argument("image", metavar="docker://IMAGE")
    _add_registry_flags(delete)
    _add_common_flags(delete)
    delete.set_defaults(func=cmd_delete)
    return verbs


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def cmd_inspect(args: argparse.Namespace) -> int:
    from ketch.cli.storage import is_transport_name, local_inspect
    from ketch.image import inspect as inspection

    if not any(is_transport_name(name) for name in args.image):
        return local_inspect(args)
    if len(args.image) != 1:
        raise InvalidInputError("exactly one argument expected")
    image = args.image[0]
    ctx = _context(args)
    if args.format and (args.raw or args.config):
        raise InvalidInputError("--format cannot be combined with --raw or --config")
    if args.config:
        config = inspection.inspect_config(image, ctx)
        if args.raw:
            sys.stdout.buffer.write(config.raw)
            sys.stdout.flush()
        else:
            _write(inspection.to_json(config.data))
        return 0
    if args.raw:
        sys.stdout.buffer.write(inspection.inspect_raw(image, ctx))
        sys.stdout.flush()
        return 0
    result = inspection.inspect_image(image, ctx, tags=not args.no_tags)
    data = result.skopeo_json()
    if args.format:
        from ketch.cli import report, reports

        sys.stdout.write(report.Formatter(args.format, name="inspect", default="").render(
            [reports.go_value(data)]))
    else:
        _write(inspection.to_json(data))
    return 0


def cmd_standalone_sign(args: argparse.Namespace) -> int:
    from ketch.image.signing import gpg_sign, payload
    from ketch.oci import Digest
    from ketch.oci.reference import parse_reference

    manifest = _read(args.manifest)
    signature = gpg_sign(payload(str(parse_reference(args.docker_reference)), str(Digest.of(manifest))),
                         args.fingerprint, passphrase_file=args.passphrase_file)
    with open(args.output, "wb") as file:
        file.write(signature)
    return 0


def cmd_standalone_verify(args: argparse.Namespace) -> int:
    from ketch.errors import PolicyDeniedError
    from ketch.image.trust import gpg_verify, parse_payload
    from ketch.oci import Digest
    from ketch.oci.reference import parse_reference

    manifest, signature = _read(args.manifest), _read(args.signature)
    payload, fingerprints = gpg_verify(signature)
    wanted = {f.strip().upper() for f in args.fingerprints.split(",") if f.strip()}
    if not fingerprints & wanted:
        raise PolicyDeniedError(f"signature by key {sorted(fingerprints)[0]}, not one of {', '.join(sorted(wanted))}")
    digest, identity = parse_payload(payload)
    if Digest.of(manifest, digest.algorithm) != digest:
        raise PolicyDeniedError(f"the signature is of manifest {digest}, not of {Digest.of(manifest)}")
    if str(parse_reference(identity)) != str(parse_reference(args.docker_reference)):
        raise PolicyDeniedError(f"the signature names {identity}, not {args.docker_reference}")
    print(f"Signature verified using fingerprint {sorted(fingerprints & wanted)[0]}, digest {digest}")
    return 0


def cmd_generate_sigstore_key(args: argparse.Namespace) -> int:
    from ketch.image.sigstore import generate_key_pair

    private, public = f"{args.output_prefix}.private", f"{args.output_prefix}.pub"
    for path in (private, public):
        if os.path.lexists(path):
            raise InvalidInputError(f"refusing to overwrite {path}")
    if args.passphrase_file:
        passphrase = _read(args.passphrase_file).split(b"\n", 1)[0]
    else:
        import getpass

        if not sys.stdin.isatty():
            raise InvalidInputError("no --passphrase-file and no terminal to ask for a passphrase")
        passphrase = getpass.getpass("Passphrase for the private key: ").encode()
        if getpass.getpass("Repeat it: ").encode() != passphrase:
            raise InvalidInputError("the passphrases differ")
    private_pem, public_pem = generate_key_pair(passphrase)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(private_pem)
    with open(public, "xb") as file:
        file.write(public_pem)
    print(f"Key written to {private} and {public}")
    return 0


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(64 << 20)
    except OSError as exc:
        raise InvalidInputError(f"reading {path}: {exc.strerror}") from exc


def cmd_copy(args: argparse.Namespace) -> int:
    from ketch.image.conversion import manifest_type_for_format
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.transports import parse_image_name

    src_ref, dst_ref = parse_image_name(args.source), parse_image_name(args.destination)
    if args.additional_tag:
        from ketch.image.docker_archive import DockerArchiveReference

        if not isinstance(dst_ref, DockerArchiveReference):
            raise InvalidInputError("--additional-tag is only for docker-archive: destinations")
    if args.dest_compress and args.dest_decompress:
        raise InvalidInputError("--dest-compress and --dest-decompress cannot be used together")
    if args.preserve_digests and (args.format or args.dest_compress_format or args.dest_compress or
                                  args.dest_decompress):
        raise InvalidInputError("--preserve-digests cannot be combined with a change of format or compression")
    dest_ctx = _context(args, "dest_")
    dest_ctx.oci_accept_uncompressed_layers = args.dest_oci_accept_uncompressed_layers
    options = CopyOptions(
        src_ctx=_context(args, "src_"),
        dest_ctx=dest_ctx,
        all_images=args.all or args.multi_arch == "all",
        manifest_type=manifest_type_for_format(args.format) if args.format else None,
        compress_format=args.dest_compress_format or ("gzip" if args.dest_compress else None),
        compress_level=args.dest_compress_level,
        decompress=args.dest_decompress,
        policy=policy_from(args),
        additional_tags=list(args.additional_tag),
        remove_signatures=args.remove_signatures,
        sign_by=args.sign_by, sign_passphrase_file=args.sign_passphrase_file, sign_identity=args.sign_identity,
        sign_by_sigstore_private_key=args.sign_by_sigstore_private_key, sign_passphrase=sigstore_passphrase(args),
    )
    with contextlib.ExitStack() as stack:
        if not args.quiet:
            from ketch.cli.storage import _progress

            options.progress = _progress(args, stack, sys.stdout)  # skopeo reports on stdout
        result = copy_image(src_ref, dst_ref, options)
    if args.digestfile:
        with open(args.digestfile, "w") as f:
            f.write(str(result.manifest_digest))
    return 0


def cmd_list_tags(args: argparse.Namespace) -> int:
    from ketch.image import inspect as inspection

    _write(inspection.to_json(inspection.list_tags(args.repository, _context(args))))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from ketch.image.docker.transport import delete_image

    delete_image(args.image, _context(args))
    return 0
