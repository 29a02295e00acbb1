"""OCI layouts for the scan tests, written offline: a base image's layers (a cached fixture)
and layers of the test's own entries, including what a hostile image may hold."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from tests.support import images
from tests.support.images import EPOCH, LayoutWriter, _gzip_layer, _info


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def F(data: bytes | str = b"", mode: int = 0o644, mtime: int = EPOCH, **kw) -> dict:
    """A regular file entry."""
    return {"type": "file", "data": data.encode() if isinstance(data, str) else data, "mode": mode, "mtime": mtime, **kw}


def D(mode: int = 0o755, **kw) -> dict:
    return {"type": "dir", "mode": mode, **kw}


def L(target: str) -> dict:
    return {"type": "symlink", "target": target}


WHITEOUT = {"type": "whiteout"}
OPAQUE = {"type": "opaque"}
FIFO = {"type": "fifo"}


def _add(tar: tarfile.TarFile, entries: dict[str, dict]) -> None:
    made = set()
    for path in sorted(entries):
        entry = entries[path]
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in made and parent not in entries:
                made.add(parent)
                tar.addfile(_info(parent, tarfile.DIRTYPE, 0o755))
        kind = entry["type"]
        if kind == "whiteout":
            tar.addfile(_info("/".join(parts[:-1] + [".wh." + parts[-1]])))
        elif kind == "opaque":
            tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
            tar.addfile(_info(f"{path}/.wh..wh..opq"))
        elif kind == "dir":
            tar.addfile(_info(path, tarfile.DIRTYPE, entry["mode"]))
        elif kind == "symlink":
            tar.addfile(_info(path, tarfile.SYMTYPE, 0o777, linkname=entry["target"]))
        elif kind == "fifo":
            tar.addfile(_info(path, tarfile.FIFOTYPE, 0o644))
        else:
            info = _info(path, mode=entry["mode"], size=len(entry["data"]))
            info.mtime = entry["mtime"]
            if "xattrs" in entry:
                info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("latin-1") for k, v in entry["xattrs"].items()}
            tar.addfile(info, io.BytesIO(entry["data"]))


def write(target: Path, layers: list[dict[str, dict]], config: dict | None = None, *,
          base: str | None = None, tag: str = "latest") -> Path:
    """An OCI layout at ``target``: ``base``'s layers (a tests/support/images fixture), then one layer
    per dict of entries (path -> F()/D()/L()/WHITEOUT/OPAQUE/FIFO), with ``config``'s ``config``."""
    target.mkdir(parents=True, exist_ok=True)
    writer = LayoutWriter(target)
    descriptors: list[tuple[dict, str]] = []
    base_config: dict = {"config": {}}
    if base:
        source = images.ensure(base)
        index = json.loads((source / "index.json").read_text())
        manifest = json.loads(_blob(source, index["manifests"][0]["digest"]).read_bytes())
        base_config = json.loads(_blob(source, manifest["config"]["digest"]).read_bytes())
        for layer, diff in zip(manifest["layers"], base_config["rootfs"]["diff_ids"]):
            destination = _blob(target, layer["digest"])
            if not destination.exists():
                try:
                    os.link(_blob(source, layer["digest"]), destination)
                except OSError:
                    shutil.copyfile(_blob(source, layer["digest"]), destination)
            descriptors.append((layer, diff))
    for entries in layers:
        descriptors.append(_gzip_layer(writer, lambda tar, entries=entries: _add(tar, entries), level=1))
    merged = {"config": {**base_config.get("config", {}), **(config or {}).get("config", {})},
              "history": (config or {}).get("history", base_config.get("history", []))}
    writer.add(writer.image(descriptors, merged), tag)
    writer.finish()
    return target
