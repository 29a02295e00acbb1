"""``ketch-quadlet``: the systemd generator of Quadlet units for ketch, invoked as podman's
``quadlet`` is: ``ketch-quadlet [-v] [-user] [-dryrun] [-no-kmsg-log] OUTPUT_DIR [EARLY_DIR LATE_DIR]``.
Installed as a generator under its own name (``/etc/systemd/system-generators/
ketch-system-generator``, a link to this program), never podman's."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _ketch_path() -> str:
    beside = Path(sys.executable).parent / "ketch"
    if beside.exists():
        return str(beside)
    import shutil

    return shutil.which("ketch") or "/usr/bin/ketch"


def _log(message: str, kmsg: bool) -> None:
    print(f"ketch-quadlet: {message}", file=sys.stderr)
    if kmsg:  # a generator's stderr goes nowhere early at boot: the kernel log is what is read
        try:
            with open("/dev/kmsg", "w") as f:
                f.write(f"ketch-quadlet: {message}\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    from ketch.errors import KetchError
    from ketch.system import quadlet

    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a.lstrip("-") for a in args if a.startswith("-")}
    positional = [a for a in args if not a.startswith("-")]
    unknown = flags - {"v", "user", "dryrun", "no-kmsg-log", "version", "help", "h"}
    if unknown or "help" in flags or "h" in flags:
        print("usage: ketch-quadlet [-v] [-user] [-dryrun] [-no-kmsg-log] OUTPUT_DIR [EARLY_DIR LATE_DIR]",
              file=sys.stderr)
        return 0 if not unknown else 1
    if "version" in flags:
        from ketch import __version__

        print(f"ketch-quadlet {__version__}")
        return 0
    dryrun = "dryrun" in flags
    if not dryrun and not positional:
        print("ketch-quadlet: missing the output directory", file=sys.stderr)
        return 1
    kmsg = not dryrun and "no-kmsg-log" not in flags and os.getuid() == 0 and "v" not in flags
    user = "user" in flags or os.path.basename(sys.argv[0]).endswith("user-generator")
    try:
        made, errors = quadlet.generate(quadlet.source_dirs(user), None if dryrun else Path(positional[0]),
                                        _ketch_path())
    except (KetchError, OSError) as exc:
        _log(str(exc), kmsg)
        return 1
    for error in errors:
        _log(error, kmsg)
    for item in made:
        if dryrun:
            print(f"---{item.service}---")
            print(item.text)
        elif "v" in flags:
            print(f"ketch-quadlet: {item.source} -> {item.service}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
