"""Entry point of the ``ketch`` console script.

Each command parses its flags, calls one library function and renders the
result. Every :class:`~ketch.errors.KetchError` becomes one line on stderr
and the error's exit status; no traceback for anything a user can cause.

Flags are parsed as the Go tools parse them: no abbreviations of long flags (``--pid`` is not
``--pids-limit``), booleans take ``--flag``, ``--flag=true`` or ``--flag=false``, and a usage
error exits 125 as podman's and buildah's do (1 for skopeo's verbs, as skopeo). Nothing of one
call of :func:`main` is kept for the next.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ketch import __version__
from ketch.cli.flags import GoBool, parse_bool
from ketch.errors import KetchError

# argparse translates its words through gettext, which looks for message catalogs on every call
# (and imports locale: ~1.5 ms of every command); the Go tools' words are English only.
argparse._ = lambda text: text  # type: ignore[attr-defined]

EXIT_USAGE = 125  # podman's and buildah's status for a command line they cannot parse
EXIT_SKOPEO_USAGE = 1
EXIT_INTERRUPTED = 130
SKOPEO_VERBS = ("copy", "list-tags", "delete", "sync", "standalone-sign", "standalone-verify",
                "generate-sigstore-key")


class UsageError(Exception):
    """The command line does not parse; ``prog`` is the (sub)command that said so."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse with the Go tools' rules (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        if kwargs.get("action") == "store_true":
            kwargs["action"] = GoBool
            kwargs.setdefault("default", False)
        # argparse makes a help formatter (which asks the terminal its size) for every argument,
        # only to check its metavar: one shared formatter does that (~6 ms of ketch run's start).
        self._checking = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._checking = False

    def _get_formatter(self):
        if getattr(self, "_checking", False):
            checker = Parser.__dict__.get("_checker")
            if checker is None:
                checker = argparse.HelpFormatter("ketch", width=80)
                Parser._checker = checker  # type: ignore[attr-defined]  # (one for the class, made on first use)
            return checker
        # The terminal's width as shutil would find it, without importing shutil (and with it
        # bz2 and lzma: ~2 ms of every command) for a formatter that usually prints nothing.
        try:
            width = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                width = 80
        return self.formatter_class(prog=self.prog, width=width - 2)  # type: ignore[call-arg]

    def error(self, message: str):  # noqa: D401 - argparse's hook
        command = re.match(r"argument ([^-][^:]*): invalid choice: '([^']*)'", message)
        if command:  # a command word, not a flag's value
            raise UsageError(f"unrecognized command `{self.prog} {command.group(2)}`", self.prog)
        raise UsageError(_go_message(message), self.prog)

    def _parse_optional(self, arg_string):
        parsed = super()._parse_optional(arg_string)
        if parsed is None:
            return parsed
        if isinstance(parsed, list):  # Python 3.12+: several candidate tuples
            return [self._go_bool(t, arg_string) for t in parsed]
        return self._go_bool(parsed, arg_string)

    def _go_bool(self, parsed, arg_string: str):
        action, option_string, *rest = parsed
        explicit = rest[-1]
        # only FLAG=VALUE: in -it, the "t" argparse offers as -i's value is another flag
        if isinstance(action, GoBool) and explicit is not None and option_string and \
                arg_string.startswith(option_string + "="):
            try:
                value = parse_bool(explicit)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"invalid argument {explicit!r} for {option_string!r} flag: {exc}",
                                 self.prog) from exc
            import copy

            chosen = copy.copy(action)
            chosen.const = value
            return (chosen, option_string, *rest[:-1], None)
        return parsed


def _go_message(message: str) -> str:
    """argparse's words, as the Go tools say them where scripts look for them."""
    needs = re.match(r"argument (\S+): expected one argument", message)
    if needs:  # cobra's words, for the form the user typed
        forms = needs.group(1).split("/")
        typed = next((f for f in forms if f.startswith("--") and any(a == f or a.startswith(f + "=")
                                                                       for a in sys.argv[1:])), forms[0])
        return f"flag needs an argument: {typed}" if typed.startswith("--") else \
            f"flag needs an argument: '{typed[1:]}' in {typed}"
    if message.startswith("unrecognized arguments: "):
        words = message[len("unrecognized arguments: "):].split()
        flags = [w for w in words if w.startswith("-")]
        if flags:
            return f"unknown flag: {flags[0].split('=')[0]}"
        return f"accepts no further arguments, received {' '.join(words)!r}"
    return message


# Which command words need which modules' parsers: building every subcommand costs tens of
# milliseconds, so a command builds only its own (``--help`` without a command builds all).
_ROUTES: dict[str, tuple[str, ...]] = {
    "version": (), "login": ("login",), "logout": ("login",), "search": ("login",), "builder": ("builder",),
    "build": ("build",),
    "bud": ("build",), "image": ("image", "storage"), "system": ("system",), "info": ("system",),
    "storage": ("storage",), "cri": ("cri",), "pod": ("pod",), "generate": ("units",), "auto-update": ("units",),
    "scan": ("scan",), "manifest": ("manifest",),
}
_STORAGE_COMMANDS = ("pull", "push", "images", "rmi", "tag", "untag", "save", "load", "history", "import")
_CONTAINER_COMMANDS = ("run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "inspect",
                       "wait", "container", "port", "pause", "unpause", "top", "rename", "diff", "cp",
                       "export", "commit", "network", "volume", "attach", "init", "mount", "umount", "unmount",
                       "events", "stats", "secret", "healthcheck", "update")
_OPTIONS_WITH_VALUES = {"--log-level", "--root", "--runroot", "--storage-driver", "--registries-conf", "--policy",
                        "--signature-policy",
                        "--override-arch", "--override-os", "--override-variant", "--cgroup-manager",
                        "--events-backend", "--runtime", "--storage-opt", "--conmon", "--tmpdir", "--registries.d"}


def _command_words(argv: list[str]) -> list[str]:
    """The words that are not global flags or their values, in order."""
    words: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = word in _OPTIONS_WITH_VALUES
            if not words:
                continue
        words.append(word)
    return words


def _command_word(argv: list[str]) -> str | None:
    words = _command_words(argv)
    return words[0] if words else None


def usage_status(argv: list[str]) -> int:
    """What an error of ketch itself exits with for this command line: 1 for skopeo's verbs
    (``image copy``, ``image inspect TRANSPORT:...``), 125 for podman's and buildah's."""
    words = _command_words(argv)
    if len(words) > 1 and words[0] == "image":
        if words[1] in SKOPEO_VERBS:
            return EXIT_SKOPEO_USAGE
        if words[1] == "inspect" and any(w.startswith(_TRANSPORTS) for w in words[2:]):
            return EXIT_SKOPEO_USAGE
    if words[:1] == ["storage"]:
        return 1  # ketch's own: ``storage check`` exits 1 for a damaged store
    return EXIT_USAGE


_TRANSPORTS = ("docker://", "oci:", "dir:", "oci-archive:", "docker-archive:", "containers-storage:",
               "ketch-storage:")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="ketch", description="ketch: a daemonless container toolkit.")
    parser.add_argument("--version", action="version", version=f"ketch version {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages and show tracebacks")
    parser.add_argument("--log-level", default="warn",
                        choices=["trace", "debug", "info", "warn", "warning", "error", "fatal", "panic"],
                        help="log messages at this level and above, to stderr (default warn)")
    parser.add_argument("--root", metavar="DIR",
                        help="store root (default $KETCH_ROOT, else /var/lib/ketch; a user's ~/.local/share/ketch)")
    parser.add_argument("--runroot", metavar="DIR",
                        help="store run directory (default /run/ketch; a user's $XDG_RUNTIME_DIR/ketch)")
    parser.add_argument("--storage-driver", metavar="DRIVER", choices=["overlay", "vfs"],
                        help="overlay (default) or vfs")
    parser.add_argument("--storage-opt", action="append", default=[], metavar="OPTION",
                        help="a storage option, as $STORAGE_OPTS: overlay.mount_program=PATH (fuse-overlayfs) for a "
                             "new store; others are accepted for podman's scripts")
    parser.add_argument("--registries-conf", metavar="PATH",
                        help="registries.conf to read instead of /etc/containers/registries.conf")
    parser.add_argument("--policy", "--signature-policy", dest="policy", metavar="PATH",
                        help="trust policy (default ~/.config/containers/policy.json, else /etc/containers/policy.json)")
    parser.add_argument("--registries.d", dest="registries_d", metavar="DIR",
                        help="read registries.d (where signatures live) from DIR alone")
    parser.add_argument("--insecure-policy", action="store_true",
                        help="accept any image, ignoring the trust policy")
    parser.add_argument("--override-arch", dest="global_override_arch", metavar="ARCH",
                        help="use ARCH instead of the host's architecture when choosing an image")
    parser.add_argument("--override-os", dest="global_override_os", metavar="OS",
                        help="use OS instead of the host's OS when choosing an image")
    parser.add_argument("--override-variant", dest="global_override_variant", metavar="VARIANT",
                        help="use VARIANT instead of the host's variant when choosing an image")
    parser.add_argument("--runtime", dest="global_runtime", metavar="PATH",
                        help="a runc-compatible runtime for containers instead of ketch's own")
    parser.add_argument("--cgroup-manager", choices=["cgroupfs"], default="cgroupfs",
                        help="cgroupfs (ketch manages cgroups itself; there is no systemd manager)")
    parser.add_argument("--events-backend", choices=["file", "none"], default=None,
                        help="where events go: file (the store's log, the default) or none")
    parser.add_argument("--noout", action="store_true", help="print nothing on standard output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)

    version = commands.add_parser("version", help="print ketch's version",
                                  description="Print ketch's version, as podman version lays it out.")
    version.add_argument("-f", "--format", metavar="FORMAT", help="json, or a Go template (.Client.Version)")
    version.set_defaults(func=cmd_version, enter_userns=False)
    unshare = commands.add_parser("unshare", help="run a command in rootless ketch's user namespace",
                                  description="Run COMMAND (default: your shell) in the user namespace rootless "
                                              "ketch uses, as podman unshare: root inside, your subordinate ids "
                                              "mapped, the store's files with their owners as containers see them.")
    unshare.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command and its arguments")
    unshare.set_defaults(func=cmd_unshare)
    word = _command_word(argv) if argv is not None else None
    if word in _ROUTES:
        groups = _ROUTES[word]
    elif word in _STORAGE_COMMANDS:
        groups = ("storage",)
    elif word in _CONTAINER_COMMANDS:
        groups = ("containers",)
    else:
        groups = ("image", "login", "storage", "containers", "builder", "build", "system", "cri", "pod", "units",
                  "scan", "manifest")
    if "image" in groups or "storage" in groups:
        from ketch.cli import image, storage

        image_verbs = image.register(commands) if "image" in groups else None
        storage.register(commands, image_verbs, word)
    if "system" in groups:
        from ketch.cli import system

        system.register(commands)
    if "units" in groups:
        from ketch.cli import units

        units.register(commands)
    if "scan" in groups:
        from ketch.cli import scan

        scan.register(commands)
    if "manifest" in groups:
        from ketch.cli import manifest

        manifest.register(commands)
    if "pod" in groups:
        from ketch.cli import pods

        pods.register(commands)
    if "cri" in groups:
        from ketch.cli import cri

        cri.register(commands)
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


def version_data() -> dict:
    """podman version's fields, for ketch (the language runtime in GoVersion's place)."""
    import platform

    from ketch.image.platform import host_platform

    client = {"APIVersion": __version__, "Version": __version__,
              "GoVersion": f"python{platform.python_version()}", "GitCommit": "", "BuiltTime": "", "Built": 0,
              "OsArch": f"linux/{host_platform()[1]}", "Os": "linux"}
    return {"Client": client}


def cmd_version(args: argparse.Namespace) -> int:
    from ketch.cli import report
    from ketch.cli.gotemplate import GoStruct

    data = version_data()
    if report.is_json(args.format):
        import json

        print(json.dumps(data, indent=4))
        return 0
    if args.format:
        structured = GoStruct({"Client": GoStruct(data["Client"])})
        structured.go_type = "*define.Version"
        sys.stdout.write(report.Formatter(args.format, name="version", default="").render(structured)
                         if report.is_table(args.format) else _render_one(args.format, structured, "version"))
        return 0
    client = data["Client"]
    rows = [("Client:", "ketch"), ("Version:", client["Version"]), ("API Version:", client["APIVersion"]),
            ("Python Version:", client["GoVersion"][len("python"):]), ("OS/Arch:", client["OsArch"])]
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}".rstrip())
    return 0


def _render_one(fmt: str, data, name: str) -> str:
    """A template run once over one object (podman's version and info)."""
    from ketch.cli import report
    from ketch.cli.gotemplate import Template

    return Template(report.normalize(fmt), name).execute(data)


def main(argv: list[str] | None = None) -> int:
    """The ``ketch`` command. Called without ``argv`` (as the console script), a container
    command ends the process itself once its work is done and its output flushed: the
    interpreter's own teardown (modules, the database's final checkpoint) would add ~10 ms to
    every ``ketch run``, after the container has already exited."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except UsageError as exc:
        hint = f"Try '{exc.prog} --help' for more information" if exc.message.startswith("unrecognized command") \
            else f"See '{exc.prog} --help'."  # (podman's two hints)
        print(f"Error: {exc.message}\n{hint}", file=sys.stderr)
        return usage_status(argv)
    level = "debug" if args.debug else {"warning": "warn", "trace": "debug", "fatal": "error",
                                         "panic": "error"}.get(args.log_level, args.log_level)
    if level != "warn":
        import logging

        logging.basicConfig(level=getattr(logging, {"warn": "WARNING"}.get(level, level.upper())),
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.noout:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    args.generic_status = usage_status(argv)
    status = _dispatch(args)
    if as_program and getattr(args.func, "fast_exit", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(status)
    return status


def cmd_unshare(args: argparse.Namespace) -> int:
    """``podman unshare``: as root, the command runs as it is (no namespace to enter)."""
    from ketch.userns import host_uid

    command = args.command or [os.environ.get("SHELL") or "/bin/sh"]
    os.environ["_CONTAINERS_USERNS_CONFIGURED"] = "done"  # (podman's name: scripts look for it)
    os.environ["_CONTAINERS_ROOTLESS_UID"] = str(host_uid())
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"Error: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if exc.errno == 2 else 126


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "storage_opt", None):
            os.environ["STORAGE_OPTS"] = ",".join(args.storage_opt)  # (containers/storage's variable)
        if getattr(args, "enter_userns", True) and os.geteuid() != 0:
            from ketch import userns  # (rootless: every command but a few runs as root of the user's namespace)

            userns.enter()
        return args.func(args)
    except UsageError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KetchError as exc:
        if args.debug:
            import logging

            logging.exception("command failed")
        print(f"Error: {exc}", file=sys.stderr)
        # an error of ketch itself: podman's and buildah's 125 (skopeo's 1); an error with a
        # status of its own (126, 127, 2...) keeps it
        return exc.exit_code if exc.exit_code != 1 else getattr(args, "generic_status", 1)
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
        return getattr(args, "generic_status", 1)


if __name__ == "__main__":
    sys.exit(main())
