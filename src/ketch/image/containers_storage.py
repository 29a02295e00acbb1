"""The ``containers-storage:`` transport: images in podman's, buildah's and CRI-O's store
(containers/storage), read and written directly, so images move between podman and ketch with
no registry.

``containers-storage:[DRIVER@GRAPHROOT+RUNROOT]IMAGE`` (IMAGE: a name, ``@ID`` or ``NAME@ID``);
without the bracket, the store of ``storage.conf`` (``$CONTAINERS_STORAGE_CONF``, else
/etc/containers/storage.conf; default overlay in /var/lib/containers/storage).

The store's layout, as containers/storage 1.43 keeps it (podman 4.3):
- ``DRIVER-layers/layers.json`` (and ``ID.tar-split.gz`` per layer), ``DRIVER-images/images.json``
  (and ``ID/`` with the image's "big data": manifest, config...), each guarded by a ``.lock``
  file beside it: an fcntl lock (shared to read, exclusive to write) whose 64 bytes a writer
  replaces after each change, so that other processes know to reload.
- ``overlay/ID/{diff,link,lower,work,merged}`` and ``overlay/l/LINK`` for the overlay driver
  (whiteouts as 0:0 character devices, opaque directories by xattr); ``vfs/dir/ID`` (a full
  tree per layer) for vfs.

Reading gives each layer back as the very tar it was pulled as (from its tar-split), so digests
and the image id stay as podman has them; the manifest names the layers uncompressed, as
containers/image's storage source does. Writing follows containers/image's storage destination:
layer ids chain (the first is its diff_id, then sha256(PARENT + "+" + DIFF_ID)); a layer is
recorded "incomplete" before its content is made and complete after, so that containers/storage
itself cleans up a write that was killed; the image record and its big data come last.

Written by hand: containers/storage is a Go library with no Python binding; what is read and
written here is its on-disk format, which podman reads back (tested both ways).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import string
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ketch.errors import DestinationError, ImageFormatError, InvalidReferenceError, NotFoundError, UnsupportedError
from ketch.image.context import SystemContext
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest, parse_manifest
from ketch.oci import mediatypes as mt

TRANSPORT = "containers-storage"
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
DEFAULT_RUNROOT = "/run/containers/storage"
STORAGE_CONF = "/etc/containers/storage.conf"
COMPRESSION = {None: 0, "gzip": 2, "zstd": 4}  # containers/storage's archive.Compression values
_ID = re.compile(r"^[0-9a-f]{64}$")


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e9) % 10**9:09d}Z"


def store_settings(spec: str | None = None) -> tuple[str, str, str]:
    """(driver, graphroot, runroot): from ``[DRIVER@GRAPHROOT+RUNROOT]``, else storage.conf."""
    if spec:
        driver, at, roots = spec.partition("@")
        if not at:
            driver, roots = "", spec
        graphroot, _, runroot = roots.partition("+")
        if not graphroot:
            raise InvalidReferenceError(f"containers-storage: store specification [{spec}] names no graph root")
        conf = store_settings(None)
        return driver or conf[0], graphroot, runroot or conf[2]
    path = os.environ.get("CONTAINERS_STORAGE_CONF") or STORAGE_CONF
    section: dict = {}
    try:
        import tomllib

        with open(path, "rb") as f:
            section = tomllib.load(f).get("storage") or {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise InvalidReferenceError(f"{path}: {exc}") from exc
    return (section.get("driver") or "overlay", section.get("graphroot") or DEFAULT_GRAPHROOT,
            section.get("runroot") or DEFAULT_RUNROOT)


class ContainersStorageReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, spec: str | None, name: str | None, image_id: str | None) -> None:
        self.spec, self.name, self.image_id = spec, name, image_id

    @classmethod
    def parse(cls, text: str) -> ContainersStorageReference:
        spec = None
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                raise InvalidReferenceError(f"containers-storage: unclosed store specification in {text!r}")
            spec, text = text[1:close], text[close + 1:]
        name, at, image_id = text.rpartition("@") if "@" in text and _ID.match(text.rsplit("@", 1)[1]) \
            else (text, "", "")
        if not name and not image_id:
            if _ID.match(text):
                return cls(spec, None, text)
            raise InvalidReferenceError("containers-storage: needs an image name or id")
        if name:
            from ketch.errors import InvalidInputError
            from ketch.oci.reference import parse_reference

            try:  # normalized as containers/image does: busybox is docker.io/library/busybox:latest
                name = str(parse_reference(name).with_default_tag())
            except InvalidInputError as exc:
                raise InvalidReferenceError(f"containers-storage: invalid image name {name!r}: {exc}") from exc
        return cls(spec, name or None, image_id or None)

    def string_within_transport(self) -> str:
        spec = f"[{self.spec}]" if self.spec else ""
        if self.name and self.image_id:
            return f"{spec}{self.name}@{self.image_id}"
        return spec + (self.name or f"@{self.image_id}")

    def store(self) -> ContainersStore:
        return ContainersStore(*store_settings(self.spec))

    def new_source(self, ctx: SystemContext) -> ContainersStorageSource:
        return ContainersStorageSource(self, self.store())

    def new_destination(self, ctx: SystemContext) -> ContainersStorageDestination:
        return ContainersStorageDestination(self, self.store())


class ContainersStore:
    """One containers/storage store on disk (``driver``: overlay or vfs)."""

    def __init__(self, driver: str, graphroot: str, runroot: str) -> None:
        if driver not in ("overlay", "vfs"):
            raise InvalidReferenceError(f"containers-storage: the {driver} driver is not supported (overlay, vfs)")
        self.driver = driver
        self.root = Path(graphroot)
        self.runroot = Path(runroot)
        self.layers_dir = self.root / f"{driver}-layers"
        self.images_dir = self.root / f"{driver}-images"

    # -- locks and records -----------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, directory: Path, *, write: bool) -> Iterator[None]:
        """containers/storage's lock of a record file: fcntl on ``directory/NAME.lock``; after a
        change, a fresh 64-byte "last writer" token tells other processes to reload."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = "layers.lock" if directory == self.layers_dir else "images.lock"
        fd = os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            yield
            if write:
                token = struct.pack(">QQQ", os.getpid(), time.time_ns(), 0) + secrets.token_bytes(40)
                os.pwrite(fd, token, 0)
        finally:
            os.close(fd)  # the only fd this process has on the file: closing it drops just this lock

    def _read(self, path: Path) -> list[dict]:
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ImageFormatError(f"{path}: {exc}") from exc
        return data if isinstance(data, list) else []

    @staticmethod
    def _write(path: Path, records: list[dict]) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(records, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def layers(self) -> list[dict]:
        with self.locked(self.layers_dir, write=False):
            return [r for r in self._read(self.layers_dir / "layers.json")
                    if not (r.get("flags") or {}).get("incomplete")]

    def images(self) -> list[dict]:
        with self.locked(self.images_dir, write=False):
            return self._read(self.images_dir / "images.json")

    def find_image(self, name: str | None, image_id: str | None) -> dict:
        images = self.images()
        if image_id:
            found = [i for i in images if i["id"] == image_id or i["id"].startswith(image_id)]
            if len(found) == 1 and (not name or name in (found[0].get("names") or [])):
                return found[0]
        elif name:
            for image in images:
                if name in (image.get("names") or []):
                    return image
        raise NotFoundError(f"identifier is not an image: {name or image_id}")

    # -- big data ------------------------------------------------------------------------------

    @staticmethod
    def big_data_file(key: str) -> str:
        """containers/storage's file name for an image's big data: the key itself when it is
        made of [.0-9a-z], else "=" and its base64."""
        if key and all(c in ".0123456789abcdefghijklmnopqrstuvwxyz" for c in key):
            return key
        return "=" + base64.b64encode(key.encode()).decode()

    def big_data(self, image: dict, key: str) -> bytes:
        try:
            return (self.images_dir / image["id"] / self.big_data_file(key)).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"image {image['id'][:12]} has no {key!r} in the store") from exc

    # -- layers --------------------------------------------------------------------------------

    def layer_dir(self, layer_id: str) -> Path:
        """The tree a layer's files are read from: overlay's diff, vfs's whole tree."""
        if self.driver == "overlay":
            return self.root / "overlay" / layer_id / "diff"
        return self.root / "vfs" / "dir" / layer_id

    def chain(self, top: str | None) -> list[dict]:
        """The layers from the bottom to ``top``."""
        by_id = {layer["id"]: layer for layer in self.layers()}
        out: list[dict] = []
        while top:
            layer = by_id.get(top)
            if layer is None:
                raise NotFoundError(f"layer {top} is missing from the store")
            out.append(layer)
            top = layer.get("parent")
        return list(reversed(out))

    def layer_tar(self, layer: dict):
        """The layer's tar, as it came in (from its tar-split)."""
        from ketch.image.tarsplit import Reassembled

        split = self.layers_dir / f"{layer['id']}.tar-split.gz"
        if not split.exists():
            raise NotFoundError(f"layer {layer['id'][:12]} has no tar-split: it cannot be read back as it came")
        return Reassembled(str(split), str(self.layer_dir(layer["id"])))

    def put_layer(self, parent: str | None, tar_path: str, diff_digest: str, diff_size: int,
                  compressed: tuple[str, int, str | None] | None) -> str:
        """Add a layer from an uncompressed tar (its id, which may be there already)."""
        from ketch.image import tarsplit

        layer_id = diff_digest.split(":", 1)[1] if parent is None else \
            hashlib.sha256(f"{parent}+{diff_digest.split(':', 1)[1]}".encode()).hexdigest()
        with self.locked(self.layers_dir, write=True):
            records = self._read(self.layers_dir / "layers.json")
            existing = next((r for r in records if r["id"] == layer_id), None)
            if existing is not None and not (existing.get("flags") or {}).get("incomplete"):
                return layer_id
            records = [r for r in records if r["id"] != layer_id]
            record: dict[str, Any] = {"id": layer_id, "created": _rfc3339(time.time()),
                                      "flags": {"incomplete": True}}
            if parent:
                record["parent"] = parent
            records.append(record)
            self._write(self.layers_dir / "layers.json", records)  # a kill from here on: theirs to clean
            try:
                self._make_layer_content(layer_id, parent, tar_path, records)
                with open(self.layers_dir / f"{layer_id}.tar-split.gz", "wb") as split:
                    uids, gids = tarsplit.write(tar_path, split)
            except BaseException:
                self._remove_layer_content(layer_id)
                self._write(self.layers_dir / "layers.json", [r for r in records if r["id"] != layer_id])
                raise
            del record["flags"]
            if compressed is not None:
                record["compressed-diff-digest"], record["compressed-size"] = compressed[0], compressed[1]
            record.update({"diff-digest": diff_digest, "diff-size": diff_size,
                           "compression": COMPRESSION.get(compressed[2] if compressed else None, 0),
                           "uidset": sorted(uids), "gidset": sorted(gids)})
            self._write(self.layers_dir / "layers.json", records)
        return layer_id

    def _make_layer_content(self, layer_id: str, parent: str | None, tar_path: str, records: list[dict]) -> None:
        from ketch.storage.apply import apply_layer

        if self.driver == "vfs":
            target = self.layer_dir(layer_id)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(mode=0o555)
            if parent:
                from ketch.storage.apply import copy_tree

                copy_tree(str(self.layer_dir(parent)), str(target))
            with open(tar_path, "rb") as stream:
                apply_layer(stream, str(target), whiteouts="vfs", default_root_mode=None if parent else 0o555)
            return
        base = self.root / "overlay" / layer_id
        if base.exists():
            shutil.rmtree(base)
        (self.root / "overlay" / "l").mkdir(parents=True, exist_ok=True)
        base.mkdir(mode=0o700)
        (base / "diff").mkdir(mode=0o555)
        for sub in ("work", "merged"):
            (base / sub).mkdir(mode=0o700)
        link = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(26))
        (base / "link").write_text(link)
        os.symlink(f"../{layer_id}/diff", self.root / "overlay" / "l" / link)
        if parent:
            lowers = [f"l/{(self.root / 'overlay' / parent / 'link').read_text().strip()}"]
            parent_lower = self.root / "overlay" / parent / "lower"
            if parent_lower.exists():
                lowers += parent_lower.read_text().strip().split(":")
            (base / "lower").write_text(":".join(lowers))
        else:
            (base / "empty").mkdir(mode=0o700)
        with open(tar_path, "rb") as stream:
            apply_layer(stream, str(base / "diff"), whiteouts="overlay", default_root_mode=0o555)

    def _remove_layer_content(self, layer_id: str) -> None:
        if self.driver == "vfs":
            shutil.rmtree(self.layer_dir(layer_id), ignore_errors=True)
            return
        base = self.root / "overlay" / layer_id
        with contextlib.suppress(OSError):
            os.unlink(self.root / "overlay" / "l" / (base / "link").read_text().strip())
        shutil.rmtree(base, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self.layers_dir / f"{layer_id}.tar-split.gz")

    # -- images --------------------------------------------------------------------------------

    def put_image(self, image_id: str, top_layer: str | None, names: list[str], big_data: dict[str, bytes],
                  manifest_digest: str, created: str) -> None:
        """Record the image (or add names and big data to it), taking its names from any other
        image that had them, as containers/storage does."""
        with self.locked(self.images_dir, write=True):
            records = self._read(self.images_dir / "images.json")
            directory = self.images_dir / image_id
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for key, data in big_data.items():
                path = directory / self.big_data_file(key)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(data)
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            for other in records:
                if other["id"] != image_id and other.get("names"):
                    other["names"] = [n for n in other["names"] if n not in names]
            record = next((r for r in records if r["id"] == image_id), None)
            if record is None:
                record = {"id": image_id, "digest": manifest_digest, "names": [], "layer": top_layer,
                          "metadata": json.dumps({"signatures-sizes": {manifest_digest: []}}),
                          "big-data-names": [], "big-data-sizes": {}, "big-data-digests": {}, "created": created}
                if top_layer is None:
                    del record["layer"]
                records.append(record)
            record["names"] = list(dict.fromkeys((record.get("names") or []) + names))
            if names:
                record["names-history"] = list(dict.fromkeys(list(reversed(names)) +
                                                             (record.get("names-history") or [])))
            for key, data in big_data.items():
                if key not in record["big-data-names"]:
                    record["big-data-names"].append(key)
                record["big-data-sizes"][key] = len(data)
                record["big-data-digests"][key] = "sha256:" + hashlib.sha256(data).hexdigest()
            self._write(self.images_dir / "images.json", records)


def _uncompressed_type(media_type: str) -> str:
    docker = media_type.startswith("application/vnd.docker")
    return mt.DOCKER_LAYER if docker else mt.OCI_LAYER


class ContainersStorageSource(ImageSource):
    """An image of the store, its layers as the uncompressed tars they were pulled as."""
    reference: ContainersStorageReference  # (this transport's)

    def __init__(self, reference: ContainersStorageReference, store: ContainersStore) -> None:
        self.reference = reference
        self.store = store
        self.image = store.find_image(reference.name, reference.image_id)
        self.layers = store.chain(self.image.get("layer"))
        self._by_digest = {layer.get("diff-digest"): layer for layer in self.layers}

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """The manifest the image came with (so its digest is podman's)."""
        if instance is not None:
            raise NotFoundError("containers-storage: keeps single images, not indexes")
        raw = self.store.big_data(self.image, "manifest")
        manifest = json.loads(raw)
        media_type = manifest.get("mediaType") or (mt.OCI_MANIFEST if "config" in manifest else mt.DOCKER_MANIFEST)
        return raw, media_type

    def layer_infos_for_copy(self, manifest) -> list[Descriptor]:
        """The layers as the store gives them: the uncompressed tars they were pulled as."""
        if len(manifest.layers) != len(self.layers):
            raise ImageFormatError(f"image {self.image['id'][:12]}: its manifest lists {len(manifest.layers)} "
                                   f"layers, the store {len(self.layers)}")
        return [Descriptor(_uncompressed_type(original.media_type), Digest.parse(layer["diff-digest"]),
                           layer["diff-size"], dict(original.annotations))
                for original, layer in zip(manifest.layers, self.layers)]

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        digest = str(descriptor.digest)
        layer = self._by_digest.get(digest)
        if layer is not None:
            return self.store.layer_tar(layer), layer.get("diff-size")
        data = self.store.big_data(self.image, digest)
        return io.BytesIO(data), len(data)


class ContainersStorageDestination(ImageDestination):
    """Writes one image into the store: blobs are kept aside until ``commit`` makes the layers
    (in order, each on its parent) and then the image."""
    reference: ContainersStorageReference  # (this transport's)

    supported_manifest_types = (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
    desired_layer_compression = "preserve"

    def __init__(self, reference: ContainersStorageReference, store: ContainersStore) -> None:
        if reference.image_id and not reference.name:
            raise InvalidReferenceError("containers-storage: a destination needs a name, not only an id")
        self.reference = reference
        self.store = store
        try:
            (store.root / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
            self.work = Path(tempfile.mkdtemp(prefix="ketch-", dir=store.root / "tmp"))
        except OSError as exc:
            raise DestinationError(f"cannot write to {store.root}: {exc.strerror}") from exc
        self.blobs: dict[str, tuple[Path, str]] = {}  # digest -> (file, media type)
        self.config: bytes | None = None
        self.manifest: tuple[bytes, str] | None = None

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        return False

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        from ketch.image.conversion import is_layer

        hasher = hashlib.sha256()
        size = 0
        if not is_layer(info.media_type):
            data = b""
            while chunk := stream.read(1 << 20):
                data += chunk
            self.config = data
            return Descriptor(info.media_type, info.digest or Digest.of(data), len(data))
        fd, name = tempfile.mkstemp(dir=self.work, prefix="blob-")  # (layers arrive in parallel)
        path = Path(name)
        with open(fd, "wb") as f:
            while chunk := stream.read(1 << 20):
                f.write(chunk)
                hasher.update(chunk)
                size += len(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
        digest = info.digest or Digest("sha256", hasher.hexdigest())
        self.blobs[str(digest)] = (path, info.media_type)
        return Descriptor(info.media_type, digest, size)

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        if instance is None:
            self.manifest = (raw, media_type)

    def commit(self) -> None:
        from ketch.image import compression

        if self.manifest is None or self.config is None:
            raise DestinationError("containers-storage: commit before the manifest and config were written")
        raw, media_type = self.manifest
        manifest = parse_manifest(raw, media_type)
        if not hasattr(manifest, "layers"):
            raise UnsupportedError("containers-storage: keeps single images; copy one platform, not --all")
        config = json.loads(self.config)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest.layers):
            raise ImageFormatError(f"the config lists {len(diff_ids)} layers, the manifest {len(manifest.layers)}")
        parent = None
        for n, (layer, diff_id) in enumerate(zip(manifest.layers, diff_ids)):
            path, layer_type = self.blobs[str(layer.digest)]
            tar_path = self.work / f"layer-{n}.tar"
            with open(path, "rb") as blob, open(tar_path, "wb") as out:
                peek = compression.PeekableReader(blob)
                kind = compression.detect(peek.peek(4))
                reader = compression.DecompressingReader(peek, kind) if kind else peek
                hasher = hashlib.sha256()
                size = 0
                while chunk := reader.read(1 << 20):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
            if f"sha256:{hasher.hexdigest()}" != diff_id:
                raise ImageFormatError(f"layer {n}: its content is sha256:{hasher.hexdigest()}, the config says "
                                       f"{diff_id}")
            parent = self.store.put_layer(parent, str(tar_path), diff_id, size,
                                          (str(layer.digest), path.stat().st_size, kind))
            tar_path.unlink()
        image_id = hashlib.sha256(self.config).hexdigest()
        manifest_digest = str(Digest.of(raw))
        names = [self.reference.name] if self.reference.name else []
        self.store.put_image(image_id, parent, names,
                             {str(manifest.config.digest): self.config, f"manifest-{manifest_digest}": raw,
                              "manifest": raw}, manifest_digest, config.get("created") or _rfc3339(time.time()))
        self.image_id = image_id
