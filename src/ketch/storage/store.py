"""The store: layer contents, layers, images, names, working containers, mounts.

Layout under the root (default ``/var/lib/ketch``, ``--root``, ``KETCH_ROOT``)::

    ketch.db                 metadata (SQLite, WAL)
    blobs/sha256/HEX         compressed layer blobs as pulled (served again by push and save)
    overlay/KEY/diff         a layer's unpacked content (vfs/KEY/diff for the vfs driver)
    overlay/l/LINK           short links to contents (overlay)
    containers/ID/{diff,work} working containers' upper directories
    mounts/                  mount points (a private mount, so nothing leaks into namespaces)
    staging/                 work in progress, removed by recovery

and under the run directory (default ``/run/ketch``): lock files.

Crash safety: content is written under ``staging/`` and renamed into place,
then recorded complete; layers, images and names are recorded in one
transaction per logical change, after their content is complete. Whatever a
killed process leaves is either unreferenced (``check`` reports it,
``--repair`` and the next ``prune`` remove it) or reused by the next attempt.

This module holds blobs and contents, images and names, and working containers' records; the
counted mounts are in :mod:`ketch.storage.mounting` (mixed into :class:`Store`), check/repair/df/
reset in :mod:`ketch.storage.checking` (called by the methods of those names).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path

from ketch.errors import DuplicateNameError, InUseError, InvalidInputError, KetchError, NotFoundError, StoreError
from ketch.filelocks import file_lock, if_abandoned
from ketch.oci.config import ImageConfig
from ketch.oci.digest import Digest
from ketch.oci.reference import parse_reference
from ketch.records import Record, field
from ketch.storage.db import Database
from ketch.storage.drivers import Driver, OverlayDriver, VfsDriver, make_driver, new_link_name, remove_dir
from ketch.storage.mounting import StoreMounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from ketch.storage.checking import Problem

# Imported where used: hashlib (OpenSSL), tarfile (layers), the manifest parser. ``ketch run``
# opens the store on every start and needs none of them.

DEFAULT_ROOT = "/var/lib/ketch"
DEFAULT_RUNROOT = "/run/ketch"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainIDs: the identity of each layer in its position."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            import hashlib

            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


class ImageRecord(Record):
    id: str
    names: list[str]
    digest: str
    manifest: bytes
    manifest_type: str
    config: bytes
    top_layer: str | None
    created: float
    size: int = 0
    layers: list[str] = field(default_factory=list)

    @property
    def parsed_config(self) -> ImageConfig:
        return ImageConfig.parse(self.config)


class Store(StoreMounts):
    def __init__(self, root: str | os.PathLike | None = None, runroot: str | os.PathLike | None = None,
                 driver: str | None = None) -> None:
        from ketch import userns

        # a user's program (the Python API) works in the user's namespace, as the command line does:
        # entered here, once, for the whole process (nothing when root, or when entered already)
        userns.enter()
        self.rootless = userns.is_rootless()
        self.root = Path(root or os.environ.get("KETCH_ROOT") or userns.default_root())
        self.runroot = Path(runroot or os.environ.get("KETCH_RUNROOT") or userns.default_runroot())
        if self.rootless and self.root.exists() and self.root.stat().st_uid != os.geteuid():
            # (checked before anything is opened: SQLite would leave files of ours in another's store)
            raise InvalidInputError(f"store {self.root} was made by root or another user, not you: rootless ketch "
                                    f"cannot use it (yours is {userns.default_root()})")
        try:
            if self.rootless and not self.root.exists():
                # a user's store is the user's alone (podman keeps its rootless storage 0700 too)
                self.root.mkdir(mode=0o700, parents=True)
            for sub in ("blobs/sha256", "staging", "containers", "mounts", "views"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            (self.runroot / "locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if self.rootless and exc.errno in (errno.EACCES, errno.EPERM):
                raise KetchError(f"cannot use store {self.root} as uid {userns.host_uid()}: {exc.strerror} (a store "
                                 f"made by root is root's; yours is {userns.default_root()})", errno=exc.errno) from exc
            raise KetchError(f"cannot use store {self.root}: {exc.strerror}", errno=exc.errno) from exc
        self.db = Database(self.root / "ketch.db")
        self._check_owner()
        self.driver_name = self._choose_driver(driver)
        self.driver: Driver = make_driver(self.driver_name, self.root, self._mount_program)
        self._recover()

    # -- set-up ------------------------------------------------------------

    def _check_owner(self) -> None:
        """A store is root's or one user's (rootless): their overlay attributes differ (trusted.*
        against user.*), so neither may use the other's. Recorded when the store is made."""
        kind = "rootless" if self.rootless else "root"
        with self.db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='owner'").fetchone()
            if row is None:
                made = conn.execute("SELECT value FROM meta WHERE key='driver'").fetchone() is not None
                conn.execute("INSERT INTO meta VALUES ('owner', ?)", ("root" if made else kind,))
                recorded = "root" if made else kind  # (a store older than this record is root's)
            else:
                recorded = row["value"]
        if recorded != kind:
            raise InvalidInputError(f"store {self.root} was made by {'root' if recorded == 'root' else 'a user'} "
                                    f"and cannot be used {'rootless' if self.rootless else 'by root'}: use "
                                    "another --root")

    def _choose_driver(self, wanted: str | None) -> str:
        """The store's driver, chosen once when it is made and recorded so it never changes under
        existing layers: overlay, else vfs; for a rootless store, native overlay if the kernel
        lets the user namespace mount it, else overlay through fuse-overlayfs (the recorded
        ``overlay.mount_program``), else vfs. ``--storage-opt overlay.mount_program=PATH`` (or
        ``$STORAGE_OPTS``) asks for a mount program when the store is made."""
        from ketch.storage.drivers import native_overlay_works, overlay_supported, storage_option

        asked_program = storage_option("overlay.mount_program")
        with self.db.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='driver'").fetchone()
            if row is not None:
                if wanted and wanted != row["value"]:
                    raise InvalidInputError(
                        f"store {self.root} uses the {row['value']} driver, not {wanted} "
                        f"(reset it or use another --root)")
                program = conn.execute("SELECT value FROM meta WHERE key='overlay.mount_program'").fetchone()
                self._mount_program = program["value"] if program else None
                if asked_program and asked_program != self._mount_program:
                    made = f"with {self._mount_program}" if self._mount_program else "for the kernel's overlay"
                    raise InvalidInputError(f"store {self.root} was made {made}, not {asked_program} (use another "
                                            "--root)")
                return row["value"]
            chosen = wanted or ("overlay" if overlay_supported() or asked_program else "vfs")
            program = asked_program
            if chosen == "overlay" and program is None and self.rootless:
                import shutil
                import tempfile

                with tempfile.TemporaryDirectory(dir=self.root / "staging", prefix="overlay-probe-") as scratch:
                    native = native_overlay_works(Path(scratch))
                if not native:
                    program = shutil.which("fuse-overlayfs")
                    chosen = "overlay" if program else (wanted or "vfs")
            conn.execute("INSERT INTO meta VALUES ('driver', ?)", (chosen,))
            if chosen == "overlay" and program:
                conn.execute("INSERT INTO meta VALUES ('overlay.mount_program', ?)", (program,))
            self._mount_program = program if chosen == "overlay" else None
            return chosen

    def lock(self, name: str, *, shared: bool = False):
        return file_lock(self.runroot / "locks" / f"{name}.lock", shared=shared)

    @property
    def events(self):
        """The store's event log (``ketch events``)."""
        log = self.__dict__.get("_events")
        if log is None:
            from ketch.storage.events import EventLog

            log = self.__dict__["_events"] = EventLog(self.root)
        return log

    def gc_lock(self, *, shared: bool):
        """Writers that add content hold it shared; removal of unreferenced content holds it exclusively."""
        return self.lock("gc", shared=shared)

    def _recover(self) -> None:
        """Remove what interrupted processes left in staging/ (their locks are free)."""
        staging = self.root / "staging"
        for entry in list(staging.iterdir()):
            if entry.suffix == ".lock":
                continue
            lock_path = staging / f"{entry.name}.lock"
            with if_abandoned(lock_path, create=True) as abandoned:
                if abandoned:  # its writer is gone
                    remove_dir(entry)
                    with contextlib.suppress(FileNotFoundError):
                        lock_path.unlink()

    @staticmethod
    def _staging_abandoned(entry: Path) -> bool:
        """Whether a staging entry's writer is gone: its lock is free, or missing (a writer takes
        the lock before it makes the entry and drops it after removing it). A pull running right
        now holds it."""
        lock_path = entry.with_name(f"{entry.name}.lock")
        if not lock_path.exists():
            return entry.exists()
        with if_abandoned(lock_path) as abandoned:
            return abandoned

    @contextlib.contextmanager
    def staging_dir(self, purpose: str) -> Iterator[Path]:
        """A private directory under staging/, locked while alive, removed on exit."""
        name = f"{purpose}-{os.getpid()}-{os.urandom(6).hex()}"
        path = self.root / "staging" / name
        lock_path = self.root / "staging" / f"{name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            path.mkdir()
            yield path
        finally:
            remove_dir(path)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            os.close(fd)

    # -- blobs and contents ----------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def blob_info(self, digest: str) -> dict | None:
        row = self.db.one("SELECT b.diff_id, b.size, b.media_type FROM blobs b JOIN contents c "
                          "ON c.diff_id = b.diff_id AND c.complete = 1 WHERE b.digest = ?", (digest,))
        if row is None or not self.blob_path(digest).exists():
            return None
        return dict(row)

    def add_layer_blob(self, stream: BinaryIO, digest: str | None, media_type: str, decompressor) -> tuple[str, str, int]:
        """Store a compressed layer blob and unpack it (overlay); returns (digest, diff_id, size).

        ``stream`` yields the blob as it is pulled (verified by the caller's
        stream at EOF); ``decompressor(stream)`` gives the tar. Two processes
        storing the same blob: the second waits and reuses the first's work.
        """
        lock_name = f"blob-{_hex(digest)}" if digest else f"blob-anon-{os.urandom(8).hex()}"
        with self.gc_lock(shared=True), self.lock(lock_name):
            if digest:
                known = self.blob_info(digest)
                if known is not None:
                    return digest, known["diff_id"], known["size"]
            with self.staging_dir("layer") as work:
                blob_tmp = work / "blob"
                content = work / "diff"
                content.mkdir()
                tee = _TeeHash(stream, blob_tmp)
                try:
                    if isinstance(self.driver, OverlayDriver):
                        from ketch.storage.apply import apply_layer

                        diff_id, size = apply_layer(decompressor(tee), str(content), whiteouts="overlay",
                                                    default_root_mode=0o555)
                    else:
                        diff_id, size = _hash_tar(decompressor(tee))
                    tee.finish()
                finally:
                    tee.close()
                blob_digest = digest or f"sha256:{tee.hasher.hexdigest()}"
                if isinstance(self.driver, OverlayDriver):
                    self._publish_content(_hex(diff_id), diff_id, size, content)
                os.replace(blob_tmp, self.blob_path(blob_digest))
                with self.db.write() as conn:
                    conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)",
                                 (blob_digest, diff_id, size, media_type))
                    if not isinstance(self.driver, OverlayDriver):
                        # vfs contents are per chain; record the diff for lookups only.
                        conn.execute("INSERT OR IGNORE INTO contents VALUES (?, ?, ?, '', 1, ?)",
                                     (f"diff-{_hex(diff_id)}", diff_id, size, time.time()))
                return blob_digest, diff_id, size

    def _publish_content(self, key: str, diff_id: str, size: int, unpacked: Path) -> None:
        """Move an unpacked diff into place under ``key`` and record it complete."""
        row = self.db.one("SELECT complete FROM contents WHERE key = ?", (key,))
        if row is not None and row["complete"]:
            return
        final = self.driver.root / key
        if final.exists():
            remove_dir(final)  # an earlier attempt that never completed
        final.mkdir()
        os.replace(unpacked, final / "diff")
        link = new_link_name()
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO contents VALUES (?, ?, ?, ?, 0, ?)",
                         (key, diff_id, size, link, time.time()))
        if isinstance(self.driver, OverlayDriver):
            self.driver.publish(key, link)
        with self.db.write() as conn:
            conn.execute("UPDATE contents SET complete = 1 WHERE key = ?", (key,))

    def _ensure_vfs_chain(self, diff_ids: list[str], blobs: list[str], decompress) -> None:
        """Build full-copy contents for each chain position that lacks one (vfs)."""
        chains = chain_ids(diff_ids)
        for i, (chain, blob) in enumerate(zip(chains, blobs)):
            key = _hex(chain)
            with self.lock(f"content-{key}"):
                row = self.db.one("SELECT complete FROM contents WHERE key = ?", (key,))
                if row is not None and row["complete"]:
                    continue
                with self.staging_dir("vfs") as work:
                    rootfs = work / "diff"
                    rootfs.mkdir()
                    if i > 0:
                        from ketch.storage.apply import copy_tree

                        copy_tree(str(self.driver.content_dir(_hex(chains[i - 1]))), str(rootfs))
                    with open(self.blob_path(blob), "rb") as f:
                        tar = decompress(f) if decompress is not None else f
                        from ketch.storage.apply import apply_layer

                        diff_id, size = apply_layer(tar, str(rootfs), whiteouts="vfs",
                                                    default_root_mode=None if i > 0 else 0o555)
                    if diff_id != diff_ids[i]:
                        raise KetchError(f"layer {i}: content {diff_id} does not match diff_id {diff_ids[i]}")
                    self._publish_content(key, diff_ids[i], size, rootfs)

    def content_key(self, chain: str, diff_id: str) -> str:
        return _hex(diff_id) if isinstance(self.driver, OverlayDriver) else _hex(chain)

    # -- images -------------------------------------------------------------

    def create_image(self, manifest: bytes, manifest_type: str, config: bytes, layer_blobs: list[str],
                     names: list[str], *, decompress=None) -> str:
        """Record an image whose layer blobs are stored; returns its id (the config digest).
        ``decompress(stream)`` gives a stored blob's tar (the image layer's
        :func:`ketch.image.compression.decompressed`); the vfs driver unpacks blobs with it, and
        without it takes only uncompressed blobs."""
        from ketch.oci.manifest import parse_manifest

        parsed = parse_manifest(manifest, manifest_type)
        image_config = ImageConfig.parse(config)
        diff_ids = image_config.diff_ids
        if len(diff_ids) != len(layer_blobs):
            raise KetchError(f"the config lists {len(diff_ids)} layers, the manifest {len(layer_blobs)}")
        for i, (blob, diff_id) in enumerate(zip(layer_blobs, diff_ids)):
            info = self.blob_info(blob)
            if info is None:
                raise KetchError(f"layer {i} ({blob}) is not in the store")
            if info["diff_id"] != diff_id:
                raise KetchError(f"layer {i}: its uncompressed digest {info['diff_id']} does not match the "
                                 f"config's diff_id {diff_id}")
        image_id = Digest.of(config).encoded
        chains = chain_ids(diff_ids)
        with self.gc_lock(shared=True):
            if isinstance(self.driver, VfsDriver):
                self._ensure_vfs_chain(diff_ids, layer_blobs, decompress)
            now = time.time()
            with self.db.write() as conn:
                parent = None
                for chain, diff_id in zip(chains, diff_ids):
                    conn.execute("INSERT OR IGNORE INTO layers VALUES (?, ?, ?, ?, ?)",
                                 (chain, parent, diff_id, self.content_key(chain, diff_id), now))
                    parent = chain
                conn.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (image_id, chains[-1] if chains else None, manifest, parsed.media_type, config,
                              str(Digest.of(manifest)), now))
                for name in names:
                    conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (name, image_id))
        return image_id

    def _record(self, row) -> ImageRecord:
        names = [r["name"] for r in self.db.query("SELECT name FROM names WHERE image = ? ORDER BY rowid",
                                                  (row["id"],))]
        layers = self.image_layers(row["top_layer"])
        size = sum(r["size"] for r in self.db.query(
            f"SELECT c.size FROM layers l JOIN contents c ON c.key = l.content WHERE l.id IN "
            f"({','.join('?' * len(layers))})", tuple(layers))) if layers else 0
        return ImageRecord(row["id"], names, row["digest"], row["manifest"], row["manifest_type"], row["config"],
                           row["top_layer"], row["created"], size, layers)

    def layer_contents(self, layers: list[str]) -> list[str]:
        """The content key of each layer, in the order given."""
        keys = {}
        for row in self.db.query(f"SELECT id, content FROM layers WHERE id IN ({','.join('?' * len(layers))})",
                                 tuple(layers)):
            keys[row["id"]] = row["content"]
        return [keys[layer] for layer in layers if layer in keys]

    def layer_sizes(self, layers: list[str]) -> list[int]:
        """The uncompressed size of each layer (as its tar), in the order given."""
        sizes = {}
        for row in self.db.query(f"SELECT l.id, c.size FROM layers l JOIN contents c ON c.key = l.content "
                                 f"WHERE l.id IN ({','.join('?' * len(layers))})", tuple(layers)):
            sizes[row["id"]] = row["size"]
        return [sizes.get(layer, 0) for layer in layers]

    def file_owners(self, top: str | None) -> tuple[set[int], set[int]]:
        """The uids and gids that own the files of the layers up to ``top`` (containers/storage
        keeps them per layer, for ``--userns auto``'s size). Counted once per layer content and
        kept beside it, since a complete content never changes."""
        uids: set[int] = set()
        gids: set[int] = set()
        for key in self.layer_contents(self.image_layers(top)):
            content = self.driver.content_dir(key)
            record = content.parent / "owners.json"
            try:
                known = json.loads(record.read_text())
            except (OSError, ValueError):
                known = _count_owners(content)
                tmp = record.with_name(f".owners-{os.getpid()}")
                with contextlib.suppress(OSError):  # (kept for next time when it can be: a count is no less right)
                    tmp.write_text(json.dumps(known))
                    os.replace(tmp, record)
            uids.update(known["uids"])
            gids.update(known["gids"])
        return uids, gids

    def image_layers(self, top: str | None) -> list[str]:
        """Layer ids from the bottom to ``top``."""
        out = []
        seen = set()
        while top is not None:
            if top in seen:
                raise KetchError(f"layer chain loops at {top}")
            seen.add(top)
            out.append(top)
            row = self.db.one("SELECT parent FROM layers WHERE id = ?", (top,))
            if row is None:
                raise KetchError(f"layer {top} is missing (run 'ketch storage check --repair')")
            top = row["parent"]
        return list(reversed(out))

    def images(self) -> list[ImageRecord]:
        return [self._record(row) for row in self.db.query("SELECT * FROM images ORDER BY created DESC")]

    def candidates(self, name: str) -> list[str]:
        """Names to try for what a user typed, as podman finds local images."""
        out = [name]
        try:
            ref = parse_reference(name)
        except InvalidInputError:
            return out
        full = str(ref.with_default_tag())
        out.append(full)
        first = name.split("/", 1)[0]
        qualified = "/" in name and ("." in first or ":" in first or first == "localhost")
        if not qualified:
            tagged = name if ref.tag or ref.digest else f"{name}:latest"
            out.append(f"localhost/{tagged}")
        return list(dict.fromkeys(out))

    def lookup(self, name: str) -> ImageRecord:
        """Find an image by name, short name, id or id prefix (podman's rules)."""
        for candidate in self.candidates(name):
            row = self.db.one("SELECT i.* FROM names n JOIN images i ON i.id = n.image WHERE n.name = ?",
                              (candidate,))
            if row is not None:
                return self._record(row)
        hex_id = _hex(name)
        if len(hex_id) >= 3 and all(c in "0123456789abcdef" for c in hex_id):
            rows = self.db.query("SELECT * FROM images WHERE id LIKE ?", (hex_id + "%",))
            if len(rows) == 1:
                return self._record(rows[0])
            if len(rows) > 1:
                raise InvalidInputError(f"{name!r} matches {len(rows)} images; give more of the id")
        # Short names match any registry's image of that name (docker.io/x/app and quay.io/app for "app").
        if "/" not in name or not ("." in name.split("/", 1)[0] or ":" in name.split("/", 1)[0]):
            base, _, tag = name.partition(":")
            tag = tag or "latest"
            if "@" not in name:
                rows = self.db.query("SELECT i.*, n.name AS matched FROM names n JOIN images i ON i.id = n.image "
                                     "WHERE n.name LIKE ? OR n.name LIKE ?", (f"%/{base}:{tag}", f"%/library/{base}:{tag}"))
                ids = {r["id"] for r in rows}
                if len(ids) == 1:
                    return self._record(rows[0])
                if len(ids) > 1:
                    raise InvalidInputError(f"{name!r} is ambiguous: {', '.join(sorted(r['matched'] for r in rows))}")
        raise NotFoundError(f"{name}: image not known")

    def normalize_name(self, name: str) -> str:
        """How a new name is stored: ``app`` is ``localhost/app:latest`` (as buildah/podman tag)."""
        first = name.split("/", 1)[0]
        qualified = "/" in name and ("." in first or ":" in first or first == "localhost")
        ref = parse_reference(name if qualified else f"localhost/{name}")
        if ref.digest is not None:
            raise InvalidInputError(f"cannot tag with a digest: {name}")
        return str(ref.with_default_tag())

    def tag(self, image: str, *names: str) -> None:
        record = self.lookup(image)
        normalized = [self.normalize_name(n) for n in names]
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (record.id,)).fetchone() is None:
                raise NotFoundError(f"{image}: image not known")
            for name in normalized:
                conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (name, record.id))
        for name in normalized:
            self.events.emit("image", "tag", id=record.id, name=name)

    def untag(self, image: str, *names: str) -> None:
        record = self.lookup(image)
        with self.db.write() as conn:
            targets = [self.normalize_name(n) for n in names] if names else record.names
            for name in targets:
                deleted = conn.execute("DELETE FROM names WHERE name = ? AND image = ?", (name, record.id)).rowcount
                if names and not deleted:
                    raise NotFoundError(f"{name}: not a name of image {record.id[:12]}")
        for name in targets:
            self.events.emit("image", "untag", id=record.id, name=name)

    # -- users of images ----------------------------------------------------

    def image_users(self, image_id: str) -> list[str]:
        users = [f"working container {r['name']} ({r['id'][:12]}; see ketch builder containers)"
                 if r["kind"] == "builder" else f"container {r['name']} ({r['id'][:12]})" for r in
                 self.db.query("SELECT id, name, kind FROM containers WHERE image = ?", (image_id,))]
        if self._mount_count(f"image:{image_id}") > 0:
            users.append("a mount of the image (ketch image unmount)")
        if self.view_held(image_id):
            users.append("a read-only view of the image (a running ketch scan)")
        return users

    def remove_image(self, name: str, *, force: bool = False) -> list[str]:
        """``rmi``: untag NAME, or remove the image when no name is left (or an id was given).

        Refuses with :class:`InUseError` naming the users when the image is
        mounted or used by a container; ``force`` removes those users first.
        Returns what was untagged/deleted, as podman prints it.
        """
        record = self.lookup(name)
        by_id = _hex(name) and record.id.startswith(_hex(name)) and not any(
            c in record.names for c in self.candidates(name))
        result = []
        if not by_id and len(record.names) > 1:
            matched = next(c for c in self.candidates(name) if c in record.names) \
                if any(c in record.names for c in self.candidates(name)) else None
            if matched:
                with self.db.write() as conn:
                    conn.execute("DELETE FROM names WHERE name = ?", (matched,))
                self.events.emit("image", "untag", id=record.id, name=matched)
                return [f"Untagged: {matched}"]
        users = self.image_users(record.id)
        if users and not force:
            raise InUseError(f"image {record.names[0] if record.names else record.id[:12]} is in use by "
                             f"{', '.join(users)}; remove them first or use --force")
        if force:
            for row in self.db.query("SELECT id FROM containers WHERE image = ?", (record.id,)):
                self.remove_container(row["id"], force=True)
            self.unmount_image(record.id, force=True)
        with self.db.write() as conn:
            if self.image_users(record.id):
                raise InUseError(f"image {record.id[:12]} became in use while being removed")
            conn.execute("DELETE FROM names WHERE image = ?", (record.id,))
            conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
        for name in record.names:
            self.events.emit("image", "untag", id=record.id, name=name)
        self.events.emit("image", "remove", id=record.id, name=record.id)
        result += [f"Untagged: {n}" for n in record.names] + [f"Deleted: {record.id}"]
        result += self._remove_unused_parents(record)
        self.collect_garbage()
        return result

    def _remove_unused_parents(self, removed: ImageRecord) -> list[str]:
        """podman's rmi: the build-step images below a removed image go with it, while they have
        no name, no container and no other child."""
        from ketch.storage.views import parents

        result: list[str] = []
        child = removed
        while True:
            remaining = self.images()
            parent_id = parents(remaining + [child]).get(child.id)
            if parent_id is None:
                return result
            parent = next(r for r in remaining if r.id == parent_id)
            children = [c for c, p in parents(remaining).items() if p == parent_id]
            if parent.names or children or self.image_users(parent_id):
                return result
            with self.db.write() as conn:
                if self.image_users(parent_id):
                    return result
                conn.execute("DELETE FROM images WHERE id = ?", (parent_id,))
            self.events.emit("image", "remove", id=parent_id, name=parent_id)
            result.append(f"Deleted: {parent_id}")
            child = parent

    def prune_images(self, *, all_images: bool = False) -> list[str]:
        removed = []
        for record in self.images():
            if (not record.names or all_images) and not self.image_users(record.id):
                with self.db.write() as conn:
                    conn.execute("DELETE FROM names WHERE image = ?", (record.id,))
                    conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
                removed.append(record.id)
        self.collect_garbage()
        return removed

    def _layers_in_use(self) -> set[str]:
        """Every layer in the chain of an image or of a working container."""
        used: set[str] = set()
        tops = [row["top_layer"] for row in self.db.query("SELECT top_layer FROM images WHERE top_layer IS NOT NULL")]
        tops += [json.loads(row["metadata"]).get("top_layer") for row in self.db.query("SELECT metadata FROM containers")]
        for top in tops:
            if top:
                with contextlib.suppress(KetchError):
                    used.update(self.image_layers(top))
        return used

    def collect_garbage(self) -> dict[str, int]:
        """Remove layers no image or container uses, then unused contents and blobs."""
        counts = {"layers": 0, "contents": 0, "blobs": 0}
        with self.gc_lock(shared=False):
            used = self._layers_in_use()
            with self.db.write() as conn:
                # Children before parents, so the parent references stay valid.
                while True:
                    rows = conn.execute("SELECT id FROM layers l WHERE NOT EXISTS "
                                        "(SELECT 1 FROM layers c WHERE c.parent = l.id)").fetchall()
                    doomed = [r["id"] for r in rows if r["id"] not in used]
                    if not doomed:
                        break
                    conn.executemany("DELETE FROM layers WHERE id = ?", [(d,) for d in doomed])
                    counts["layers"] += len(doomed)
                used_contents = {r["content"] for r in conn.execute("SELECT content FROM layers")}
                used_diffs = {r["diff_id"] for r in conn.execute("SELECT diff_id FROM layers")}
                contents = conn.execute("SELECT key, link FROM contents").fetchall()
                doomed_contents = [r for r in contents if r["key"] not in used_contents and
                                   not (r["key"].startswith("diff-") and
                                        "sha256:" + r["key"][5:] in used_diffs)]
                conn.executemany("DELETE FROM contents WHERE key = ?", [(r["key"],) for r in doomed_contents])
                blobs = conn.execute("SELECT digest, diff_id FROM blobs").fetchall()
                doomed_blobs = [r["digest"] for r in blobs if r["diff_id"] not in used_diffs]
                conn.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d in doomed_blobs])
            for row in doomed_contents:
                if isinstance(self.driver, OverlayDriver) and row["link"]:
                    self.driver.remove_link(row["link"])
                remove_dir(self.driver.root / row["key"])
            for digest in doomed_blobs:
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(digest).unlink()
            counts["contents"], counts["blobs"] = len(doomed_contents), len(doomed_blobs)
        return counts

    # -- mounts -------------------------------------------------------------










    # -- working containers -------------------------------------------------

    def create_container(self, image: str | None, name: str | None = None, kind: str = "container",
                         metadata: dict | None = None) -> str:
        """A working file system on top of an image (or empty, for ``scratch``). ``metadata`` is
        kept with the record (written in the same transaction)."""
        record = self.lookup(image) if image else None
        container_id = os.urandom(32).hex()
        name = name or f"{kind}-{container_id[:12]}"
        base = self.root / "containers" / container_id
        (base / "diff").mkdir(parents=True)
        (base / "work").mkdir()
        if record is not None and record.top_layer is not None:
            # the container's root has the image's root's owner and mode (the upper dir decides them)
            with contextlib.suppress(OSError):
                top = self.driver.content_dir(self.layer_contents([record.top_layer])[0])
                st = os.stat(top)
                os.chown(base / "diff", st.st_uid, st.st_gid)
                os.chmod(base / "diff", stat.S_IMODE(st.st_mode))
        metadata = {**(metadata or {}), "top_layer": record.top_layer if record else None}
        try:
            with self.db.write() as conn:
                if record and conn.execute("SELECT 1 FROM images WHERE id = ?", (record.id,)).fetchone() is None:
                    raise NotFoundError(f"{image}: image was removed")
                conn.execute("INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?)",
                             (container_id, name, record.id if record else None, kind, time.time(),
                              json.dumps(metadata)))
        except DuplicateNameError as exc:
            remove_dir(base)
            raise DuplicateNameError(f"the name {name!r} is already in use") from exc
        except BaseException:
            remove_dir(base)
            raise
        return container_id

    def image_config(self, image_id: str) -> bytes | None:
        """The config bytes of a recorded image (None if there is no such image)."""
        row = self.db.one("SELECT config FROM images WHERE id = ?", (image_id,))
        return None if row is None else bytes(row["config"])

    def rename_container(self, container_id: str, new_name: str) -> None:
        """Give a container (of any kind) a new name; :class:`~ketch.errors.DuplicateNameError`
        when another has it."""
        with self.db.write() as conn:
            conn.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, container_id))


    def container(self, name_or_id: str) -> dict:
        row = self.db.one("SELECT * FROM containers WHERE id = ? OR name = ?", (name_or_id, name_or_id))
        if row is None and len(name_or_id) >= 3:
            rows = self.db.query("SELECT * FROM containers WHERE id LIKE ?", (name_or_id + "%",))
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NotFoundError(f"{name_or_id}: no such container")
        return dict(row)



    def remove_container(self, name_or_id: str, *, force: bool = False) -> None:
        info = self.container(name_or_id)
        if self._mount_count(f"container:{info['id']}") > 0 and not force:
            raise InUseError(f"container {info['name']} is mounted; unmount it first or use --force")
        self.unmount_container(info["id"], force=True)  # also a mount a killed process left uncounted
        with self.db.write() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (info["id"],))
        self._remove_tree(self.root / "containers" / info["id"])

    def remove_trees_in_background(self, executor) -> None:
        """From now on a removed container's files go to staging/ at once (one rename, under a
        lock this process holds) and ``executor`` deletes them afterwards: for a long-running
        caller (the CRI server) whose callers wait on each removal. What it has not deleted when
        it dies, the next recovery of any process deletes (the lock is free then)."""
        self._tree_remover = executor

    def _remove_tree(self, path: Path) -> None:
        executor = getattr(self, "_tree_remover", None)
        if executor is None:
            remove_dir(path)
            return
        name = f"removed-{path.name}-{os.urandom(4).hex()}"
        target = self.root / "staging" / name
        lock_path = self.root / "staging" / f"{name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)

        def finish() -> None:
            try:
                remove_dir(target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    lock_path.unlink()
                os.close(fd)

        try:
            os.rename(path, target)
        except FileNotFoundError:
            target = path  # (nothing to move: only the lock goes)
        try:
            executor.submit(finish)
        except RuntimeError:  # (the executor is shutting down: done here, now)
            finish()

    def update_container_metadata(self, name_or_id: str, changes: dict) -> dict:
        """Merge ``changes`` into a container's metadata, in one transaction; the new metadata."""
        info = self.container(name_or_id)
        with self.db.write() as conn:
            row = conn.execute("SELECT metadata FROM containers WHERE id = ?", (info["id"],)).fetchone()
            if row is None:
                raise NotFoundError(f"{name_or_id}: no such container")
            metadata = {**json.loads(row["metadata"]), **changes}
            conn.execute("UPDATE containers SET metadata = ? WHERE id = ?", (json.dumps(metadata), info["id"]))
        return metadata

    def containers(self) -> list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM containers ORDER BY created")]

    def container_upper(self, name_or_id: str) -> Path:
        return self.root / "containers" / self.container(name_or_id)["id"] / "diff"

    def container_base_tree(self, name_or_id: str) -> tuple[Path | None, Path]:
        """A vfs container's image tree and its own tree, whole (what ``commit`` and ``diff``
        compare). A container never mounted has no copy of its image yet, and so no change: its
        own tree is then the image's."""
        if not isinstance(self.driver, VfsDriver):
            raise StoreError("whole trees of a container are the vfs driver's")
        info = self.container(name_or_id)
        top = json.loads(info["metadata"] or "{}").get("top_layer")
        lower = self.driver.content_dir(self.layer_contents([top])[0]) if top else None
        upper = self.root / "containers" / info["id"] / "diff"
        if lower is not None and not any(upper.iterdir()):
            upper = lower
        return lower, upper

    # -- check, repair, df, reset -----------------------------------------------

    # -- check, repair, df, reset (ketch.storage.checking: imported only for them) ---------

    def check(self) -> list[Problem]:
        from ketch.storage import checking

        return checking.check(self)

    def repair(self) -> list[Problem]:
        from ketch.storage import checking

        return checking.repair(self)

    def df(self) -> dict:
        from ketch.storage import checking

        return checking.df(self)

    def reset(self) -> None:
        from ketch.storage import checking

        checking.reset(self)


class _TeeHash:
    """Reads a stream, hashing it and copying it to a file."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._file = open(path, "wb")
        import hashlib

        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self.hasher.update(data)
            self._file.write(data)
        return data

    def finish(self) -> None:
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        self._file.close()


def _hash_tar(stream) -> tuple[str, int]:
    import hashlib

    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(1 << 20):
        hasher.update(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


def _count_owners(root: Path) -> dict[str, list[int]]:
    """The distinct owners of a tree's entries (never following a link)."""
    uids, gids = set(), set()
    pending = [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                uids.add(info.st_uid)
                gids.add(info.st_gid)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return {"uids": sorted(uids), "gids": sorted(gids)}
