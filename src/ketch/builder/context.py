"""The build context: a directory; a tar file (or stdin) unpacked into a staging directory; or a
remote one: a git repository (``https://host/repo.git#ref:subdir``) checked out, or an http(s)
URL's tarball unpacked (a plain file there is the Containerfile of an empty context, as podman
takes it)."""

from __future__ import annotations

import os
import subprocess

from ketch.errors import InvalidInputError


def prepare_context(source: str, staging) -> str:
    """The build context as a directory: a directory as it is; anything else made in ``staging``."""
    import sys

    from ketch.builder import remote

    if source != "-" and os.path.isdir(source):
        return source
    target = os.path.join(str(staging), "context")
    if remote.is_git(source):
        return remote.clone(source, target)[0]
    os.makedirs(target)
    if source.startswith(("http://", "https://")):
        downloaded = remote.download(source, os.path.join(str(staging), "download"))
        if not _is_tar(downloaded.path):
            os.rename(downloaded.path, os.path.join(target, "Dockerfile"))
            return target
        source = downloaded.path
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


def _is_tar(path: str) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False
