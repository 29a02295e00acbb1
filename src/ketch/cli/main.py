"""Entry point of the ``ketch`` console script.

Each command parses its flags, calls one library function and renders the
result. Every :class:`~ketch.errors.KetchError` becomes one line on stderr
and the error's exit status; no traceback for anything a user can cause.
"""

from __future__ import annotations

import argparse
import os
import sys

from ketch import __version__
from ketch.errors import KetchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    usage_status = EXIT_USAGE  # container commands use podman's 125

    def error(self, message: str) -> None:  # one line, as every other error
        self.exit(_Parser.usage_status, f"Error: {message}\nSee '{self.prog} --help'.\n")


# Which command words need which modules' parsers: building every subcommand costs tens of
# milliseconds, so a command builds only its own (``--help`` without a command builds all).
_GROUPS = {"version": (), "image": ("image", "storage"), "login": ("login",), "logout": ("login",),
           "builder": ("builder",), "build": ("build",), "bud": ("build",)}
_STORAGE_COMMANDS = ("pull", "push", "images", "rmi", "tag", "untag", "save", "load", "system", "storage")
_CONTAINER_COMMANDS = ("run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "inspect",
                       "wait", "info", "container", "port", "pause", "unpause", "top", "rename", "diff", "cp",
                       "export", "commit", "network", "volume")
_OPTIONS_WITH_VALUES = {"--log-level", "--root", "--runroot", "--storage-driver", "--registries-conf", "--policy",
                        "--override-arch", "--override-os", "--override-variant"}


def _command_word(argv: list[str]) -> str | None:
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = word in _OPTIONS_WITH_VALUES
            continue
        return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="ketch", description="ketch: a daemonless container toolkit.")
    parser.add_argument("--version", action="version", version=f"ketch version {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages and show tracebacks")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"], help="logging level (default warning)")
    parser.add_argument("--root", metavar="DIR",
                        help="store root (default $KETCH_ROOT or /var/lib/ketch)")
    parser.add_argument("--runroot", metavar="DIR", help="store run directory (default /run/ketch)")
    parser.add_argument("--storage-driver", metavar="DRIVER", choices=["overlay", "vfs"],
                        help="overlay (default) or vfs")
    parser.add_argument("--registries-conf", metavar="PATH",
                        help="registries.conf to read instead of /etc/containers/registries.conf")
    parser.add_argument("--policy", metavar="PATH", help="trust policy (default /etc/containers/policy.json)")
    parser.add_argument("--insecure-policy", action="store_true",
                        help="accept any image, ignoring the trust policy")
    parser.add_argument("--override-arch", dest="global_override_arch", metavar="ARCH",
                        help="use ARCH instead of the host's architecture when choosing an image")
    parser.add_argument("--override-os", dest="global_override_os", metavar="OS",
                        help="use OS instead of the host's OS when choosing an image")
    parser.add_argument("--override-variant", dest="global_override_variant", metavar="VARIANT",
                        help="use VARIANT instead of the host's variant when choosing an image")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)

    version = commands.add_parser("version", help="print ketch's version", description="Print ketch's version.")
    version.set_defaults(func=cmd_version)
    word = _command_word(argv) if argv is not None else None
    if word in _CONTAINER_COMMANDS:
        groups: tuple[str, ...] = ("containers",)
        _Parser.usage_status = 125
    else:
        groups = _GROUPS.get(word, ("storage",) if word in _STORAGE_COMMANDS else
                             ("image", "login", "storage", "containers", "builder", "build"))
    if "image" in groups or "storage" in groups:
        from ketch.cli import image, storage

        image_verbs = image.register(commands)
        storage.register(commands, image_verbs)
    if "login" in groups:
        from ketch.cli import login

        login.register(commands)
    if "builder" in groups:
        from ketch.cli import builder

        builder.register(commands)
    if "build" in groups:
        from ketch.cli import builder

        builder.register_build(commands)
    if "containers" in groups:
        from ketch.cli import containers

        verb = None
        if word == "container" and argv is not None:
            rest = argv[argv.index("container") + 1:]
            verb = _command_word(rest)
        containers.register(commands, word, verb)
    return parser


def cmd_version(args: argparse.Namespace) -> int:
    print(f"ketch version {__version__}")
    print(f"Python {sys.version.split()[0]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``ketch`` command. Called without ``argv`` (as the console script), a container
    command ends the process itself once its work is done and its output flushed: the
    interpreter's own teardown (modules, the database's final checkpoint) would add ~10 ms to
    every ``ketch run``, after the container has already exited."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.debug or args.log_level != "warning":
        import logging

        level = logging.DEBUG if args.debug else getattr(logging, args.log_level.upper())
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    status = _dispatch(args)
    if as_program and getattr(args.func, "fast_exit", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(status)
    return status


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KetchError as exc:
        if args.debug:
            import logging

            logging.exception("command failed")
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except OSError as exc:
        if args.debug:
            import logging

            logging.exception("command failed")
        target = f" ({exc.filename})" if exc.filename else ""
        print(f"Error: {exc.strerror or exc}{target}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
