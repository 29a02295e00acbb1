"""OCI layouts for the scan tests, written offline: a base image's layers (a cached fixture)
and layers of the test's own entries, including what a hostile image may hold."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.support import images
from tests.support.images import EPOCH, LayoutWriter, _gzip_layer, _info


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
    made: set[str] = set()
    for path in sorted(entries):
        entry = entries[path]
        parts = path.split("/")
        images.add_parents(tar, path, made, entries)
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
        descriptors, base_config = images.base_layers(base, target)
    for entries in layers:
        descriptors.append(_gzip_layer(writer, lambda tar, entries=entries: _add(tar, entries), level=1))
    merged = {"config": {**base_config.get("config", {}), **(config or {}).get("config", {})},
              "history": (config or {}).get("history", base_config.get("history", []))}
    writer.add(writer.image(descriptors, merged), tag)
    writer.finish()
    return target
