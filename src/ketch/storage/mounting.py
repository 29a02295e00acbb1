"""Mounts of the store's images and working containers, counted in the database with the boot
id (so a count from another boot, or a path that is not a mount point, counts as zero), as a part
of :class:`~ketch.storage.store.Store`. Overlay mounts use the short ``l/`` links of their
layers; a one-layer image is a read-only bind mount."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ketch.errors import NotFoundError, StoreError
from ketch.filelocks import if_abandoned
from ketch.records import Record
from ketch.storage import mounts
from ketch.storage.drivers import OverlayDriver, VfsDriver, overlay_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ketch.storage.db import Database
    from ketch.storage.drivers import Driver
    from ketch.storage.events import EventLog
    from ketch.storage.store import ImageRecord


class ViewLayer(Record, frozen=True):
    """One layer under a :class:`View`: its directory in the store, read directly (never
    executed). ``snapshot`` layers (the vfs driver's) hold the whole tree up to them; the others
    only what the layer changed, with overlay's whiteouts (0/0 character devices) and opaque
    directories (the ``trusted.overlay.opaque`` attribute)."""
    diff_id: str  # the layer's uncompressed digest ("" for a container's own layer)
    chain_id: str
    path: Path
    snapshot: bool


class View(Record, frozen=True):
    """A read-only view of an image or of a container's current tree (see ``Store.view``)."""
    path: Path  # the merged tree, ro,nosuid,nodev,noexec (through the holder's /proc/PID/root)
    image_id: str
    layers: list  # [ViewLayer], bottom first; a container's own layer last
    holder: int  # the PID of the process that holds the view's mount namespace


# The view's holder: in a mount namespace of its own (unshare), mount the view, say "ready", then
# wait on standard input, which reaches end of file when the caller closes it or dies. A program
# of its own rather than a fork of the caller: a fork would carry the caller's threads' libraries
# (gRPC's fork handlers, for one) into a process that lives as long as the view.
_VIEW_HOLDER = r"""set -e
target=$1
lowers=$2
if [ -n "$4" ]; then
    # A store whose overlay goes through fuse-overlayfs ($4): the program stays in the foreground,
    # killed with the holder (--pdeathsig), so a holder that ends in any way leaves no daemon and
    # no namespace behind.
    setpriv --pdeathsig KILL "$4" -f -o "ro,nosuid,nodev,noexec,allow_other,lowerdir=$lowers" "$target" &
    fuse=$!
    until mountpoint -q "$target"; do
        kill -0 "$fuse" 2>/dev/null || { wait "$fuse" || true; echo "$4 could not mount the view" >&2; exit 1; }
        sleep 0.01
    done
elif [ "${lowers#*:}" = "$lowers" ]; then
    mount --bind "$lowers" "$target"
    mount -o remount,bind,ro,nosuid,nodev,noexec "$target"
else
    mount -t overlay overlay -o "ro,nosuid,nodev,noexec,lowerdir=$lowers,$3" "$target"
fi
echo ready
read -r _ || true
if [ -n "$4" ]; then
    umount "$target"
    wait "$fuse" || true
fi
"""


class StoreMounts:
    """Counted mounts of images and working containers: mixed into the Store."""

    if TYPE_CHECKING:
        root: Path
        runroot: Path
        db: Database
        driver: Driver

        def lookup(self, name: str) -> ImageRecord: ...
        def image_layers(self, top: str | None) -> list[str]: ...
        def container(self, name_or_id: str) -> dict: ...
        def images(self) -> list[ImageRecord]: ...
        def lock(self, name: str, *, shared: bool = False) -> AbstractContextManager[None]: ...
        @property
        def events(self) -> EventLog: ...

    def _mount_count(self, target: str) -> int:
        row = self.db.one("SELECT path, count, boot_id FROM mounts WHERE target = ?", (target,))
        if row is None or row["boot_id"] != mounts.boot_id() or not mounts.is_mountpoint(row["path"]):
            return 0
        return row["count"]

    def _private_mounts_dir(self) -> Path:
        """Make mounts/ a private mount once, so mounts below never propagate."""
        path = self.root / "mounts"
        if not mounts.is_mountpoint(str(path)):
            with self.lock("mounts-dir"):
                if not mounts.is_mountpoint(str(path)):
                    mounts.mount(str(path), str(path), None, mounts.MS_BIND)
                    mounts.mount("none", str(path), None, mounts.MS_PRIVATE)
        return path

    def _layer_content(self, layer: str) -> str:
        row = self.db.one("SELECT content FROM layers WHERE id = ?", (layer,))
        if row is None:
            raise StoreError(f"layer {layer} is not recorded (ketch storage check --repair)")
        return row["content"]

    def _chain_links(self, top: str) -> list[str]:
        links = []
        for layer in reversed(self.image_layers(top)):
            row = self.db.one("SELECT c.link, c.key FROM layers l JOIN contents c ON c.key = l.content "
                              "WHERE l.id = ?", (layer,))
            if row is None:
                raise StoreError(f"layer {layer} has no recorded content (ketch storage check --repair)")
            links.append(row["link"])
        return links

    def _counted_mount(self, target: str, object_id: str, prefix: str, do_mount) -> Path:
        """Mount once per target (``do_mount(path)``), counting every caller."""
        with self.lock(f"mount-{object_id}"):
            path = self._private_mounts_dir() / f"{prefix}-{object_id[:32]}"
            count = self._mount_count(target)
            if count == 0:
                path.mkdir(exist_ok=True)
                if mounts.is_mountpoint(str(path)):
                    mounts.umount(str(path), mounts.MNT_DETACH)  # left from a previous boot's count
                do_mount(path)
            with self.db.write() as conn:
                conn.execute("INSERT OR REPLACE INTO mounts VALUES (?, ?, ?, ?)",
                             (target, str(path), count + 1, mounts.boot_id()))
        return path

    def _counted_unmount(self, target: str, object_id: str, prefix: str, force: bool) -> bool:
        """Drop one count (all with ``force``); unmount at zero. False if it was not mounted.

        At zero the mount point is unmounted even when no count was recorded: a process killed
        between its mount and the record of it left a mount nobody counted (the mount point's
        name is the object's, and counting happens under the same lock, so nobody else owns it)."""
        with self.lock(f"mount-{object_id}"):
            recorded = self.db.one("SELECT 1 FROM mounts WHERE target = ?", (target,)) is not None
            count = self._mount_count(target) if recorded else 0
            path = self.root / "mounts" / f"{prefix}-{object_id[:32]}"
            new = 0 if force else max(count - 1, 0)
            # (no mount point directory: nothing can be mounted there, and mountinfo is not read)
            if new == 0 and (count or force) and os.path.lexists(path) and mounts.is_mountpoint(str(path)):
                mounts.umount(str(path))
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            if recorded:  # (a stale record, from before a reboot or a lost mount, goes too)
                with self.db.write() as conn:
                    if new == 0:
                        conn.execute("DELETE FROM mounts WHERE target = ?", (target,))
                    else:
                        conn.execute("UPDATE mounts SET count = ? WHERE target = ?", (new, target))
        return count > 0

    def mount_image(self, name: str) -> Path:
        """Mount an image read-only (nosuid, nodev); counted, so each mount needs an unmount."""
        record = self.lookup(name)

        def do_mount(path: Path) -> None:
            if record.top_layer is None:
                mounts.mount("tmpfs", str(path), "tmpfs", mounts.MS_RDONLY | mounts.MS_NOSUID | mounts.MS_NODEV)
            elif isinstance(self.driver, OverlayDriver):
                self.driver.mount(self._chain_links(record.top_layer), path)
            else:
                assert isinstance(self.driver, VfsDriver)
                key = self._layer_content(record.top_layer)
                self.driver.mount(self.driver.content_dir(key), path)

        path = self._counted_mount(f"image:{record.id}", record.id, "image", do_mount)
        self.events.emit("image", "mount", id=record.id, name=name)
        return path

    def unmount_image(self, name: str, *, force: bool = False) -> bool:
        """Drop one mount count (all with ``force``); unmount at zero. False if it was not mounted."""
        record = self.lookup(name)
        return self._counted_unmount(f"image:{record.id}", record.id, "image", force)

    def mounted_images(self) -> list[tuple[ImageRecord, Path]]:
        out = []
        for row in self.db.query("SELECT target, path FROM mounts WHERE target LIKE 'image:%'"):
            if self._mount_count(row["target"]) > 0:
                with contextlib.suppress(NotFoundError):
                    out.append((self.lookup(row["target"][6:]), Path(row["path"])))
        return out

    def mount_record(self, target: str) -> dict | None:
        """The mount count row of ``image:ID`` or ``container:ID`` (path, count), if any."""
        row = self.db.one("SELECT path, count FROM mounts WHERE target = ?", (target,))
        return None if row is None else dict(row)

    def mount_container(self, name_or_id: str) -> Path:
        """Mount a working container read-write; counted like image mounts."""
        info = self.container(name_or_id)
        base = self.root / "containers" / info["id"]
        top = json.loads(info["metadata"]).get("top_layer")

        id_mappings = json.loads(info["metadata"]).get("id_mappings")

        def do_mount(path: Path) -> None:
            if isinstance(self.driver, OverlayDriver):
                links = self._chain_links(top) if top else []
                if id_mappings:  # the files seen through a container's own id mapping (keep-id)
                    self.driver.mount_mapped(links, path, base / "diff", base / "work", id_mappings)
                elif links:
                    self.driver.mount(links, path, upper=base / "diff", work=base / "work", readonly=False)
                else:
                    mounts.mount(str(base / "diff"), str(path), None, mounts.MS_BIND)
            else:
                if top and not any((base / "diff").iterdir()):
                    key = self._layer_content(top)
                    from ketch.storage.apply import copy_tree

                    copy_tree(str(self.driver.content_dir(key)), str(base / "diff"))
                mounts.mount(str(base / "diff"), str(path), None, mounts.MS_BIND)

        return self._counted_mount(f"container:{info['id']}", info["id"], "container", do_mount)

    def unmount_container(self, name_or_id: str, *, force: bool = False) -> bool:
        info = self.container(name_or_id)
        return self._counted_unmount(f"container:{info['id']}", info["id"], "container", force)

    # -- private read-only views (ketch scan) ---------------------------------

    def view_held(self, image_id: str) -> bool:
        """Whether a live process holds a view of the image (its lock is held: a dead one's is not)."""
        path = self.runroot / "locks" / f"view-{image_id}.lock"
        if not path.exists():
            return False
        with if_abandoned(path) as abandoned:
            return not abandoned

    @contextlib.contextmanager
    def view(self, name: str, *, container: bool = False):
        """A read-only (ro, nosuid, nodev, noexec) view of an image, or of a container's current
        tree (its own layer included), for reading without running anything.

        The view is mounted in a mount namespace of its own, held by a small holder process
        (``unshare`` running ``sh``: a program of its own, not a fork of the caller) that waits on
        its standard input, a pipe from the caller: whatever ends the caller (an exception, Ctrl-C, ``kill -9``), the pipe
        closes, the helper exits and the kernel takes the mount with its namespace. Nothing is
        counted, so nothing can be left counted; while the view lives the image is held by a
        shared lock that ``rmi`` sees (:meth:`image_users`), and the kernel drops with the process."""
        from ketch.storage.store import Store

        assert isinstance(self, Store)
        info = self.container(name) if container else None
        image_name = info["image"] if info is not None else name
        if info is not None and not image_name:
            raise StoreError(f"container {name} has no image to view")
        first = self.lookup(image_name)
        with self.lock(f"view-{first.id}", shared=True):
            with self.db.write():  # (serialized with rmi's check of the image's users and its delete)
                record = self.lookup(first.id)
            chains = self.image_layers(record.top_layer)
            layers = []
            parsed = record.parsed_config
            for chain, diff_id, key in zip(chains, parsed.diff_ids, self.layer_contents(chains)):
                layers.append(ViewLayer(diff_id, chain, self.driver.content_dir(key), isinstance(self.driver, VfsDriver)))
            lowers = [f"l/{link}" for link in self._chain_links(record.top_layer)] if (
                record.top_layer and isinstance(self.driver, OverlayDriver)) else []
            if isinstance(self.driver, VfsDriver) and layers:
                lowers = [str(layers[-1].path)]
            if info is not None:
                upper = self.root / "containers" / info["id"] / "diff"
                layers.append(ViewLayer("", "container:" + info["id"], upper, isinstance(self.driver, VfsDriver)))
                lowers = [str(upper)] if isinstance(self.driver, VfsDriver) else [str(upper)] + lowers
            if not lowers:
                empty = self.root / "views"  # an image with no layers: an empty tree
                lowers = [str(empty)]
            target = str(self.root / "views")
            joined = ":".join(lowers)
            if len(joined) >= 3900:
                raise StoreError(f"{len(lowers)} layers are too many to view (options over one page)")
            import subprocess

            mount_program = getattr(self.driver, "mount_program", None) or ""
            holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", _VIEW_HOLDER,
                                       "ketch-view", target, joined, overlay_options(), mount_program],
                                      cwd=str(self.driver.root),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                assert holder.stdout is not None and holder.stdin is not None
                if holder.stdout.readline() != b"ready\n":  # ("" if the mount failed and the holder ended)
                    holder.stdin.close()
                    error = holder.communicate()[1].decode(errors="replace").strip().splitlines()
                    raise StoreError(f"cannot mount a view of {name}: {error[-1] if error else 'the holder failed'}")
                yield View(Path(f"/proc/{holder.pid}/root{target}"), record.id, layers, holder.pid)
            finally:
                if holder.returncode is None:
                    holder.communicate()  # (closes its standard input: it unmounts by ending)
