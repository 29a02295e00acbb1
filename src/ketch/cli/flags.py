"""Flag helpers shared by the commands, spelled as the Go tools spell them."""

from __future__ import annotations

import argparse


class GoBool(argparse.Action):
    """A Go boolean flag: ``--rm`` is true, and ``--rm=false`` / ``--rm=true`` say so outright;
    a following word is never taken as its value (``--rm busybox`` is ``--rm`` then an image).
    The ``=VALUE`` form is read by :class:`ketch.cli.main.Parser`."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None, const=True,
                 metavar=None, type=None, nargs=None, choices=None):  # noqa: A002 - argparse's names
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, required=required,
                         help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "t", "yes", "y"):
        return True
    if lowered in ("false", "0", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r} (use true or false)")


def add_bool(parser: argparse.ArgumentParser, *names: str, help: str, default=None, dest=None) -> None:
    """A Go-style boolean with a default (None: "not said", for settings that fall back)."""
    kwargs = {"dest": dest} if dest else {}
    parser.add_argument(*names, action=GoBool, default=default, help=help, **kwargs)


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def add_platform_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--override-arch", metavar="ARCH", help="use ARCH instead of the host's architecture")
    parser.add_argument("--override-os", metavar="OS", help="use OS instead of the host's OS")
    parser.add_argument("--override-variant", metavar="VARIANT", help="use VARIANT instead of the host's variant")


def make_context(args: argparse.Namespace, *, creds: str | None, tls_verify: bool | None,
                 authfile: str | None, cert_dir: str | None = None):
    from ketch.image.context import SystemContext

    ctx = SystemContext.with_creds(creds)
    ctx.authfile = authfile or getattr(args, "authfile", None)
    ctx.tls_verify = tls_verify
    ctx.cert_dir = cert_dir
    ctx.registries_conf = getattr(args, "registries_conf", None)
    ctx.registries_d = getattr(args, "registries_d", None)
    ctx.signature_policy_path = getattr(args, "policy", None)
    ctx.insecure_policy = bool(getattr(args, "insecure_policy", False))
    ctx.retry_times = getattr(args, "retry_times", 3)
    for name in ("override_arch", "override_os", "override_variant"):
        value = getattr(args, name, None) or getattr(args, f"global_{name}", None)
        setattr(ctx, name, value)
    # ketch-storage: names the store of the global flags (--root, --runroot, --storage-driver)
    for flag, field in (("root", "storage_root"), ("runroot", "storage_runroot"), ("storage_driver", "storage_driver")):
        if getattr(args, flag, None):
            setattr(ctx, field, getattr(args, flag))
    return ctx


def policy_from(args: argparse.Namespace):
    """The trust policy the global flags ask for (``--policy``, ``--insecure-policy``)."""
    from ketch.image.policy import Policy

    if getattr(args, "insecure_policy", False):
        return Policy.insecure_accept_anything()
    if getattr(args, "policy", None):
        return Policy.load(args.policy)
    return Policy.load_default()


def sigstore_passphrase(args: argparse.Namespace) -> bytes | None:
    """The sigstore key's passphrase asked on the terminal, as skopeo asks it, when signing with
    one and no ``--sign-passphrase-file`` gives it (None: from the file, or empty)."""
    import getpass
    import sys

    if getattr(args, "sign_by_sigstore_private_key", None) and not getattr(args, "sign_passphrase_file", None) \
            and sys.stdin.isatty():
        return getpass.getpass("Key Passphrase: ").encode()
    return None


def require_unshare_for_mounts() -> None:
    """podman's and buildah's rule: a rootless mount lives in the user's mount namespace, so it is
    made only from inside ``ketch unshare``, where it can be used."""
    from ketch.errors import InvalidInputError
    from ketch.userns import in_unshare_session, is_rootless

    if is_rootless() and not in_unshare_session():
        raise InvalidInputError("cannot mount using driver overlay in rootless mode. You need to run it in a "
                                "`ketch unshare` session")
