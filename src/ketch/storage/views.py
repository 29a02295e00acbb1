"""podman-shaped views of stored images (``images --format json``, ``image inspect``, ``history``)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from ketch.oci import parse_manifest
from ketch.storage.store import ImageRecord


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def _repo_digests(record: ImageRecord) -> list[str]:
    repos = []
    for name in record.names:
        repo = name.split("@")[0].rsplit(":", 1)[0] if ":" in name.split("/")[-1] else name.split("@")[0]
        entry = f"{repo}@{record.digest}"
        if entry not in repos:
            repos.append(entry)
    return repos


def _created(record: ImageRecord) -> str:
    return record.parsed_config.created or _iso(record.created)


def reported_size(record: ImageRecord) -> int:
    """An image's size as podman reports it: its layers, and the metadata containers/storage
    keeps beside them (the config, and the manifest twice: by digest and as "manifest")."""
    return record.size + len(record.config) + 2 * len(record.manifest)


def images_json(records: list[ImageRecord], containers: dict[str, int], *, intermediate: set[str] | None = None,
                parent_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The list ``podman images --format json`` prints."""
    out = []
    for r in records:
        config = r.parsed_config
        created = _created(r)
        try:
            stamp = int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            stamp = int(r.created)
        entry = {
            "Id": r.id, "ParentId": (parent_of or {}).get(r.id, ""), "RepoTags": None,
            "RepoDigests": _repo_digests(r), "Size": reported_size(r), "SharedSize": 0,
            "VirtualSize": reported_size(r),
            "Labels": config.labels, "Containers": containers.get(r.id, 0), "Names": r.names or None,
            "Digest": r.digest, "History": r.names or None, "Created": stamp, "CreatedAt": created,
        }
        if not r.names and r.id not in (intermediate or set()):
            entry["Dangling"] = True
        out.append(entry)
    return out


def inspect_json(record: ImageRecord, driver: str, layer_dirs: list[str]) -> dict[str, Any]:
    """One element of ``podman image inspect``."""
    config = record.parsed_config
    data = config.data
    manifest = parse_manifest(record.manifest, record.manifest_type)
    cfg = data.get("config") or {}
    return {
        "Id": record.id,
        "Digest": record.digest,
        "RepoTags": record.names,
        "RepoDigests": _repo_digests(record),
        "Parent": "",
        "Comment": data.get("comment", ""),
        "Created": _created(record),
        "Config": cfg,
        "Version": data.get("docker_version", ""),
        "Author": data.get("author", ""),
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": reported_size(record),
        "VirtualSize": reported_size(record),
        "GraphDriver": {"Name": driver, "Data": {"UpperDir": layer_dirs[-1] if layer_dirs else "",
                                                 "LowerDir": ":".join(reversed(layer_dirs[:-1]))}},
        "RootFS": {"Type": "layers", "Layers": config.diff_ids},
        "Labels": config.labels,
        "Annotations": getattr(manifest, "annotations", {}) or {},
        "ManifestType": record.manifest_type,
        "User": cfg.get("User", ""),
        "History": config.history,
        "NamesHistory": record.names,
    }


def to_json(data: Any) -> str:
    return json.dumps(data, indent=4)


def _history_key(record: ImageRecord) -> list[tuple]:
    return [(h.get("created_by", ""), h.get("created", ""), bool(h.get("empty_layer")))
            for h in record.parsed_config.history or []]


def parents(records: list[ImageRecord]) -> dict[str, str]:
    """image id -> the id of its closest parent among ``records``: the image whose layers and
    history are a strict prefix of its own (what a build step's cache image is to the next)."""
    keyed = [(r, _history_key(r)) for r in records]
    out: dict[str, str] = {}
    for child, child_history in keyed:
        best = None
        for parent, parent_history in keyed:
            if parent.id == child.id or not parent_history or len(parent_history) >= len(child_history):
                continue
            if child_history[:len(parent_history)] != parent_history or \
                    child.layers[:len(parent.layers)] != parent.layers:
                continue
            if best is None or len(parent_history) > len(best[1]):
                best = (parent, parent_history)
        if best is not None:
            out[child.id] = best[0].id
    return out


def intermediate_ids(records: list[ImageRecord]) -> set[str]:
    """Images podman hides from ``images`` without ``-a``: no name, and another image's parent."""
    having_children = set(parents(records).values())
    return {r.id for r in records if not r.names and r.id in having_children}


def history_entries(record: ImageRecord, records: list[ImageRecord], layer_sizes: list[int]) -> list[dict[str, Any]]:
    """``podman history``: newest first; the image's own id on its top entry, a local parent's id on
    the entry that ends it, ``<missing>`` elsewhere; a layer's size on the entry that made it."""
    history = record.parsed_config.history or []
    own = _history_key(record)
    ends = {}
    for other in records:
        key = _history_key(other)
        if other.id != record.id and key and len(key) < len(own) and own[:len(key)] == key:
            ends[len(key) - 1] = other.id
    ends[len(history) - 1] = record.id
    sizes = list(layer_sizes)
    entries = []
    layer_index = 0
    for index, item in enumerate(history):
        size = 0
        if not item.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        created = item.get("created", "")
        try:
            stamp = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            stamp = 0
        entries.append({"ID": ends.get(index, "<missing>"), "Created": stamp, "CreatedBy": item.get("created_by", ""),
                        "Size": size, "Comment": item.get("comment", ""),
                        "Tags": record.names if index == len(history) - 1 else None,
                        "created_text": created})
    return list(reversed(entries))
