"""The commands that talk to a registry without the store: ``ketch login`` / ``ketch logout``
and ``ketch search``, as podman spells them."""

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

    search = subparsers.add_parser("search", help="search a registry for images",
                                   description="Search registries for images: REGISTRY/TERM searches that registry "
                                               "(REGISTRY/ lists all of it), a bare TERM each unqualified-search "
                                               "registry of registries.conf. Registries are searched through their "
                                               "repository list (/v2/_catalog), else /v1/search.")
    search.add_argument("term", metavar="TERM")
    search.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N results from each registry (default 25)")
    search.add_argument("--list-tags", action="store_true", help="list the tags of the repository TERM names")
    search.add_argument("-f", "--filter", action="append", default=[], metavar="KEY[=VALUE]",
                        help="stars=N, is-official[=BOOL], is-automated[=BOOL]")
    search.add_argument("--format", metavar="TEMPLATE", help="json or a Go template")
    search.add_argument("--no-trunc", action="store_true", help="do not cut descriptions short")
    search.add_argument("--compatible", action="store_true",
                        help="also the stars, official and automated columns (docker's)")
    search.add_argument("--authfile", metavar="PATH")
    search.add_argument("--creds", metavar="USER[:PASS]")
    search.add_argument("--cert-dir", metavar="DIR")
    add_bool(search, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    search.set_defaults(func=cmd_search, enter_userns=False)


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


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from ketch.cli.report import Formatter, is_json
    from ketch.image.search import DEFAULT_LIMIT, search, shortened

    filters = {}
    for text in args.filter:
        key, equals, value = text.partition("=")
        if key not in ("stars", "is-official", "is-automated") or (key == "stars" and not equals):
            raise InvalidInputError(f'invalid filter type "{text}"')
        filters[key] = value if equals else "true"
    ctx = make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                       cert_dir=args.cert_dir)
    term = args.term
    if args.list_tags:  # (a tag or digest in the term is left out, as podman leaves it)
        term = term.split("@", 1)[0]
        if ":" in term.rsplit("/", 1)[-1]:
            term = term.rsplit(":", 1)[0]
    limit = args.limit if args.limit and args.limit > 0 else DEFAULT_LIMIT  # (podman's: 0 or less is the default)
    results = search(term, ctx, limit=limit, list_tags=args.list_tags, filters=filters)
    if is_json(args.format):
        if args.list_tags:
            grouped: dict[str, list[str]] = {}
            for result in results:
                grouped.setdefault(result.Name, []).append(result.Tag)
            data: list = [{"Name": name, "Tags": tags} for name, tags in grouped.items()]
        else:
            data = [result.as_dict() for result in results]
        print(json.dumps(data, indent=4))
        return 0
    if not results:
        return 0  # (podman prints nothing, not even the headers)
    if not args.no_trunc:
        results = [shortened(result) for result in results]
    if args.list_tags:
        default = "table {{.Name}}\t{{.Tag}}"
    elif args.compatible:
        default = "table {{.Name}}\t{{.Description}}\t{{.Stars}}\t{{.Official}}\t{{.Automated}}"
    else:
        default = "table {{.Name}}\t{{.Description}}"
    Formatter(args.format, name="search", default=default).write(results)
    return 0
