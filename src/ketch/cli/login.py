"""``ketch login`` / ``ketch logout``, as podman spells them."""

from __future__ import annotations

import argparse
import getpass
import sys

from ketch.cli.flags import add_bool, make_context
from ketch.errors import InvalidInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    login = subparsers.add_parser("login", help="log in to a registry",
                                  description="Check credentials against a registry and store them in auth.json.")
    login.add_argument("registry", metavar="REGISTRY")
    login.add_argument("-u", "--username", help="user name")
    login.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.add_argument("--authfile", metavar="PATH", help="auth file to write (default: as podman)")
    login.add_argument("--cert-dir", metavar="DIR", help="CA certificates and client keys for the registry")
    add_bool(login, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    login.add_argument("--get-login", action="store_true", help="print the user logged in to REGISTRY")
    login.set_defaults(func=cmd_login, enter_userns=False)

    logout = subparsers.add_parser("logout", help="log out of a registry",
                                   description="Remove a registry's credentials from auth.json.")
    logout.add_argument("registry", metavar="REGISTRY", nargs="?")
    logout.add_argument("-a", "--all", action="store_true", help="remove the credentials of every registry")
    logout.add_argument("--authfile", metavar="PATH", help="auth file to change (default: as podman)")
    logout.set_defaults(func=cmd_logout, enter_userns=False)


def cmd_login(args: argparse.Namespace) -> int:
    from ketch.image import login as logins
    from ketch.image.credentials import lookup_credentials

    if args.get_login:
        creds = lookup_credentials(logins.normalize_key(args.registry), authfile=args.authfile)
        if not creds:
            raise InvalidInputError(f"not logged into {args.registry}")
        print(creds.username)
        return 0
    if args.password is not None and args.password_stdin:
        raise InvalidInputError("--password and --password-stdin cannot be used together")
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise InvalidInputError("no username given (use --username)")
        username = input("Username: ")
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise InvalidInputError("no password given (use --password-stdin)")
        password = getpass.getpass("Password: ")
    ctx = make_context(args, creds=None, tls_verify=args.tls_verify, authfile=args.authfile, cert_dir=args.cert_dir)
    logins.login(args.registry, username, password, ctx, args.authfile)
    print("Login Succeeded!")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from ketch.image import login as logins

    if not args.all and not args.registry:
        raise InvalidInputError("name a registry, or use --all")
    logins.logout(args.registry, args.authfile, all_registries=args.all)
    print("Removed login credentials for " + ("all registries" if args.all else args.registry))
    return 0
