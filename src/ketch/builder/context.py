"""The build context: a directory, or a tar file (or stdin) unpacked into a staging directory."""

from __future__ import annotations

import os

from ketch.errors import InvalidInputError


def prepare_context(source: str, staging) -> str:
    """The build context as a directory: a directory as it is; a tar file or ``-`` (stdin)
    unpacked into ``staging``."""
    import subprocess
    import sys

    if source != "-" and os.path.isdir(source):
        return source
    target = os.path.join(str(staging), "context")
    os.makedirs(target)
    if source == "-":
        proc = subprocess.run(["tar", "-xf", "-", "-C", target, "--no-same-owner"], stdin=sys.stdin.buffer,
                              capture_output=True)
    elif os.path.isfile(source):
        proc = subprocess.run(["tar", "-xf", source, "-C", target, "--no-same-owner"], capture_output=True)
    else:
        raise InvalidInputError(f"build context {source}: no such directory or archive")
    if proc.returncode != 0:
        raise InvalidInputError(f"build context {source}: not a tar archive "
                                f"({proc.stderr.decode(errors='replace').strip()})")
    return target
