"""Manifest lists made locally (``ketch manifest create/add/inspect/push``, ``build --manifest``), as
podman's: a named list of images of several platforms, pushed as one index.

A list is kept in the store's database (its own table, owned here): its name, an id, and its
entries: each one an image's manifest digest, size, media type and platform, with where the image
is (``ketch-storage:ID`` for the store's, or the ``docker://`` reference it was added from). Pushing
copies every image and the list into a temporary OCI layout, then the layout to the destination
with all its images, through the one copy path every other transport uses."""

from __future__ import annotations

import hashlib
import json
import os
import time

from ketch.errors import InUseError, InvalidInputError, NotFoundError
from ketch.storage.db import TableSet

TABLES = TableSet("manifests", 1, """
CREATE TABLE IF NOT EXISTS manifest_lists (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    entries TEXT NOT NULL,
    created REAL NOT NULL
);
""")

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ManifestLists:
    def __init__(self, store) -> None:
        self.store = store
        store.db.ensure(TABLES)

    # -- the lists -----------------------------------------------------------------------

    def create(self, name: str) -> str:
        """A new, empty list; its id (InUseError when the name is taken)."""
        name = self.store.normalize_name(name)
        list_id = hashlib.sha256(f"{name}\0{time.time()}\0{os.urandom(8).hex()}".encode()).hexdigest()
        with self.store.db.write() as conn:
            if conn.execute("SELECT 1 FROM manifest_lists WHERE name = ?", (name,)).fetchone():
                raise InUseError(f"a manifest list named {name} exists already")
            conn.execute("INSERT INTO manifest_lists VALUES (?, ?, ?, ?)", (name, list_id, "[]", time.time()))
        return list_id

    def get(self, name: str) -> dict:
        row = self.store.db.one("SELECT * FROM manifest_lists WHERE name = ? OR id = ? OR id LIKE ?",
                                (self.store.normalize_name(name), name, f"{name}%" if len(name) >= 12 else "-"))
        if row is None:
            raise NotFoundError(f"{name}: no such manifest list")
        return {"name": row["name"], "id": row["id"], "entries": json.loads(row["entries"])}

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except NotFoundError:
            return False
        return True

    def remove(self, name: str) -> dict:
        found = self.get(name)
        with self.store.db.write() as conn:
            conn.execute("DELETE FROM manifest_lists WHERE name = ?", (found["name"],))
        return found

    def _save(self, found: dict) -> None:
        with self.store.db.write() as conn:
            conn.execute("UPDATE manifest_lists SET entries = ? WHERE name = ?",
                         (json.dumps(found["entries"]), found["name"]))

    # -- entries -------------------------------------------------------------------------

    def add_local(self, name: str, image: str, *, create: bool = False, platform: dict | None = None,
                  annotations: dict | None = None) -> str:
        """Add an image of the store (replacing an entry of the same digest); the list's id.
        ``create``: make the list when there is none (``build --manifest``)."""
        if create and not self.exists(name):
            self.create(name)
        record = self.store.lookup(image)
        config = json.loads(record.config)
        digest = "sha256:" + hashlib.sha256(record.manifest).hexdigest()
        entry = {"mediaType": record.manifest_type, "size": len(record.manifest), "digest": digest,
                 "platform": platform or _platform_of(config), "source": f"ketch-storage:{record.id}"}
        return self._add(name, entry, annotations)

    def add_remote(self, name: str, reference: str, ctx, *, all_platforms: bool = False,
                   platform: dict | None = None, annotations: dict | None = None) -> str:
        """Add an image of another transport (``docker://REF``: read, not pulled). When it names
        a list: the image for this platform (``ctx``'s overrides), or every one with
        ``all_platforms``. The list's id."""
        from ketch.image.inspect import _read_config
        from ketch.image.platform import choose_instance
        from ketch.image.transports import parse_image_name
        from ketch.oci.manifest import Index, parse_manifest

        ref = parse_image_name(reference)
        source = ref.new_source(ctx)
        base = reference.split("@", 1)[0]
        if ref.transport == "docker" and ":" in base.rsplit("/", 1)[-1]:
            base = base.rsplit(":", 1)[0]
        try:
            raw, media_type = source.get_manifest()
            top = parse_manifest(raw, media_type)
            chosen = list(top.manifests) if isinstance(top, Index) and all_platforms else \
                [choose_instance(top, ctx)] if isinstance(top, Index) else [None]
            list_id = ""
            for descriptor in chosen:
                child_raw, child_type = (raw, media_type) if descriptor is None else \
                    source.get_manifest(descriptor.digest)
                child = parse_manifest(child_raw, child_type if descriptor is None else descriptor.media_type)
                config = json.loads(_read_config(source, child.config).raw)  # type: ignore[union-attr]
                digest = "sha256:" + hashlib.sha256(child_raw).hexdigest()
                where = f"{base}@{digest}" if ref.transport == "docker" else reference
                entry = {"mediaType": child.media_type, "size": len(child_raw), "digest": digest,
                         "platform": platform if platform and len(chosen) == 1 else _platform_of(config),
                         "source": where}
                list_id = self._add(name, entry, annotations)
        finally:
            source.close()
        return list_id

    def _add(self, name: str, entry: dict, annotations: dict | None) -> str:
        found = self.get(name)
        if annotations:
            entry["annotations"] = dict(annotations)
        found["entries"] = [e for e in found["entries"] if e["digest"] != entry["digest"]] + [entry]
        self._save(found)
        return found["id"]

    def remove_entry(self, name: str, digest: str) -> str:
        found = self.get(name)
        kept = [e for e in found["entries"] if e["digest"] != digest]
        if len(kept) == len(found["entries"]):
            raise NotFoundError(f"{digest}: not in manifest list {found['name']}")
        found["entries"] = kept
        self._save(found)
        return found["id"]

    # -- as an index -----------------------------------------------------------------------

    def index(self, name: str) -> bytes:
        """The list as ``manifest inspect`` prints it (indented, as podman's): Docker's manifest
        list when every image is in Docker's format, else an OCI index (the type a copy of it
        gets, as skopeo copies lists)."""
        found = self.get(name)
        return json.dumps(_index(found["entries"]), indent=4).encode()

    def push(self, name: str, destination: str, ctx, *, fmt: str | None = None, policy=None) -> str:
        """Every image of the list and the list to ``destination`` (a transport reference, or a
        registry reference for docker://); ``fmt`` (oci or v2s2) converts the images to that
        format on the way (and the list with them). The digest of the list as pushed."""
        import tempfile

        from ketch.image.conversion import manifest_type_for_format
        from ketch.image.copy import CopyOptions, copy_image
        from ketch.image.policy import Policy

        wanted = manifest_type_for_format(fmt) if fmt else None
        found = self.get(name)
        if not found["entries"]:
            raise InvalidInputError(f"manifest list {found['name']} has no images to push")
        if "://" not in destination and not destination.startswith(("oci:", "oci-archive:", "dir:")):
            destination = f"docker://{destination}"
        policy = policy or Policy.insecure_accept_anything()
        ctx.store = self.store
        with tempfile.TemporaryDirectory(prefix="ketch-manifest-") as work:
            layout = os.path.join(work, "layout")
            written = []
            for n, entry in enumerate(found["entries"]):
                result = copy_image(entry["source"], f"oci:{layout}:instance-{n}",
                                    CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=policy))
                digest = str(result.manifest_digest)
                size = os.path.getsize(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]))
                written.append({**entry, "digest": digest, "size": size, "mediaType": result.media_type})
            index = json.dumps(_index(written), separators=(",", ":")).encode()
            digest = "sha256:" + hashlib.sha256(index).hexdigest()
            with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
                f.write(index)
            top = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": json.loads(index)["mediaType"], "digest": digest, "size": len(index),
                 "annotations": {"org.opencontainers.image.ref.name": "list"}}]}
            with open(os.path.join(layout, "index.json"), "w") as f:
                json.dump(top, f)
            result = copy_image(f"oci:{layout}:list", destination,
                                CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=policy, all_images=True,
                                            manifest_type=wanted))
        return str(result.manifest_digest)


def _index(entries: list[dict]) -> dict:
    docker = bool(entries) and all(e["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
                                   for e in entries)
    manifests = []
    for entry in entries:
        item = {"mediaType": entry["mediaType"], "size": entry["size"], "digest": entry["digest"],
                "platform": entry["platform"]}
        if entry.get("annotations") and not docker:
            item["annotations"] = entry["annotations"]
        manifests.append(item)
    return {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX, "manifests": manifests or None}


def _platform_of(config: dict) -> dict:
    platform = {"architecture": config.get("architecture") or "amd64", "os": config.get("os") or "linux"}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    return platform
