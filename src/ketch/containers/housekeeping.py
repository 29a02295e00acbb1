"""Store-wide housekeeping over containers, images, volumes and networks: ``system df``,
``system prune`` and ``system reset``, as podman does them."""

from __future__ import annotations

import logging
import os
from typing import Any

from ketch.errors import KetchError, NotFoundError

log = logging.getLogger(__name__)


def tree_size(path: str) -> int:
    """Bytes of the regular files under ``path`` (hard links once), without following links."""
    total = 0
    seen = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def disk_usage(engine) -> list[dict[str, Any]]:
    """``system df``: images, containers and volumes: how many, how many in use, their size and
    what removing the unused ones would give back."""
    store = engine.store
    images = store.images()
    used_images = {c["image"] for c in store.containers() if c["image"]}
    image_size = store.df()["layers_size"]
    unused_size = sum(r.size for r in images if r.id not in used_images and not store.image_users(r.id))
    containers = engine.list(all=True)
    running = [c for c in containers if c["State"] in ("running", "paused")]
    sizes = {c["Id"]: tree_size(str(store.container_upper(c["Id"]))) for c in containers}
    volumes = engine.volumes().list()
    volume_sizes = {v["name"]: tree_size(engine.volumes().path(v["name"])) for v in volumes}
    used_volumes = [v["name"] for v in volumes if engine.volumes().users(v["name"])]
    return [
        {"Type": "Images", "Total": len(images), "Active": len(used_images & {r.id for r in images}),
         "RawSize": image_size, "RawReclaimable": unused_size},
        {"Type": "Containers", "Total": len(containers), "Active": len(running),
         "RawSize": sum(sizes.values()),
         "RawReclaimable": sum(s for cid, s in sizes.items() if cid not in {c["Id"] for c in running})},
        {"Type": "Local Volumes", "Total": len(volumes), "Active": len(used_volumes),
         "RawSize": sum(volume_sizes.values()),
         "RawReclaimable": sum(s for name, s in volume_sizes.items() if name not in used_volumes)},
    ]


def prune(engine, *, all_images: bool = False, volumes: bool = False) -> dict[str, list[str]]:
    """``system prune``: stopped containers, unused networks, dangling (with ``all_images``:
    unused) images, and with ``volumes`` unused volumes; what went, by kind."""
    removed: dict[str, list[str]] = {"Containers": engine.prune(), "Networks": [], "Images": [], "Volumes": []}
    removed["Networks"] = engine.networks().prune(engine)
    if volumes:
        removed["Volumes"] = engine.volumes().prune()
    removed["Images"] = engine.store.prune_images(all_images=all_images)
    return removed


def reset(engine) -> None:
    """``system reset``: every container stopped and removed, every network's bridge and its
    part of the host's nftables table gone (bridges still used by another store's containers
    stay), every volume and image removed, the store emptied."""
    for entry in engine.list(all=True):
        try:
            engine.remove(entry["Id"], force=True)
        except NotFoundError:
            pass
    nets = engine.networks()
    for network in nets.list():
        try:
            if nets.host.release_bridge(network["name"]):
                nets.remove_bridge_if_unused(network)
        except KetchError as exc:
            log.warning("system reset: network %s: %s", network["name"], exc)
    nets.host.release_store()
    engine.store.reset()
