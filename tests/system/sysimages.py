"""Images for the system container tests: busybox plus ktest (tests/support/ktest.c, which
notifies systemd) and a layer of the test's own files, written as OCI layouts offline."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.support import images
from tests.support.images import LayoutWriter, _gzip_layer, _info


def write(target: Path, tags: dict[str, tuple[dict[str, object], dict]], base: str = "busybox-ktest") -> Path:
    """An OCI layout at ``target`` with one image per tag: ``base``'s layers, then a layer of
    ``files`` (path → bytes, or (bytes, mode), (target, "symlink"), or None for a directory), and ``config`` merged
    into ``base``'s config (``Labels``, ``Cmd``, ``Entrypoint``...)."""
    target.mkdir(parents=True, exist_ok=True)
    writer = LayoutWriter(target)
    lower, base_config = images.base_layers(base, target)
    for tag, (files, config) in tags.items():
        def tree(tar, files=files):
            made: set[str] = set()
            for path in sorted(files):
                images.add_parents(tar, path, made, files)
                value = files[path]
                if value is None:
                    tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
                    continue
                if isinstance(value, tuple) and value[1] == "symlink":
                    tar.addfile(_info(path, tarfile.SYMTYPE, 0o777, linkname=value[0]))
                    continue
                data, mode = value if isinstance(value, tuple) else (value, 0o644)
                tar.addfile(_info(path, mode=mode, size=len(data)), io.BytesIO(data))

        layers = list(lower)
        if files:
            layers.append(_gzip_layer(writer, tree, level=1))
        merged = dict(base_config.get("config") or {})
        merged.update(config)
        writer.add(writer.image(layers, {"config": merged, "history": base_config.get("history", [])}), tag)
    writer.finish()
    return target
