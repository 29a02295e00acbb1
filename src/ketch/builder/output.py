"""``ketch build --output``: the built image's file system written out, as podman build -o does:
``type=local,dest=DIR`` (or just ``DIR``) a directory, ``type=tar,dest=FILE`` a tar file (``-``
standard output; ``-o -`` alone is a tar on standard output too)."""

from __future__ import annotations

import os
import subprocess
import sys

from ketch.errors import BuildError, InvalidInputError


def parse_output(spec: str) -> tuple[str, str]:
    """(kind, destination) of one ``--output``: kind ``local`` or ``tar``."""
    if "=" not in spec:
        return ("tar", "-") if spec == "-" else ("local", spec)
    fields = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"invalid --output {spec!r}: want type=local,dest=DIR or type=tar,dest=FILE")
        fields[key.strip()] = value.strip()
    kind = fields.pop("type", "local")
    dest = fields.pop("dest", None)
    if kind not in ("local", "tar"):
        raise InvalidInputError(f"--output type={kind}: ketch writes type=local and type=tar")
    if not dest:
        raise InvalidInputError(f"invalid --output {spec!r}: dest= is missing")
    if fields:
        raise InvalidInputError(f"--output: unknown option {sorted(fields)[0]!r}")
    return kind, dest


def export(store, image_id: str, spec: str) -> None:
    """Write image ``image_id``'s file system where ``spec`` says."""
    kind, dest = parse_output(spec)
    root = str(store.mount_image(image_id))
    try:
        if kind == "local":
            os.makedirs(dest, exist_ok=True)
            producer = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", "-", "."],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            consumer = subprocess.run(["tar", "--numeric-owner", "-xf", "-", "-C", dest], stdin=producer.stdout,
                                      capture_output=True)
            producer.stdout.close()  # type: ignore[union-attr]
            producer.wait()
            if producer.returncode != 0 or consumer.returncode != 0:
                raise BuildError(f"--output {dest}: {(consumer.stderr or b'').decode(errors='replace').strip()}")
        else:
            out = sys.stdout.buffer if dest == "-" else open(dest, "wb")
            try:
                out.flush()
                result = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", root, "-cf", "-",
                                         "."], stdout=out, stderr=subprocess.PIPE)
            finally:
                if out is not sys.stdout.buffer:
                    out.close()
            if result.returncode != 0:
                raise BuildError(f"--output {dest}: {result.stderr.decode(errors='replace').strip()}")
    finally:
        store.unmount_image(image_id)
