"""podman-shaped views of stored images (``images --format json``, ``image inspect``, ``history``)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from ketch.oci import parse_manifest
from ketch.storage.store import ImageRecord


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


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


def images_json(records: list[ImageRecord], containers: dict[str, int]) -> list[dict[str, Any]]:
    """The list ``podman images --format json`` prints."""
    out = []
    for r in records:
        config = r.parsed_config
        created = _created(r)
        try:
            stamp = int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            stamp = int(r.created)
        out.append({
            "Id": r.id, "ParentId": "", "RepoTags": None, "RepoDigests": _repo_digests(r),
            "Size": r.size, "SharedSize": 0, "VirtualSize": r.size, "Labels": config.labels,
            "Containers": containers.get(r.id, 0), "Names": r.names or None, "Digest": r.digest,
            "History": r.names or None, "Created": stamp, "CreatedAt": created,
        })
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
        "Size": record.size,
        "VirtualSize": record.size,
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
