"""``ketch storage check`` and ``--repair``, ``system df`` and ``system reset`` of the store (the
:class:`~ketch.storage.store.Store` methods of those names call these; imported only then, not on a
container's start path): every kind of damage an interrupted process or a
lost file can leave is found (incomplete, unrecorded and missing content, broken parent chains,
layers without content, dangling layers, stale mounts, abandoned staging work, unrecorded blobs),
and repair removes it, dropping the images that cannot work any more. Work in progress (a staging
entry whose lock a live process holds) is neither reported nor touched."""

from __future__ import annotations

import contextlib

from ketch.records import Record
from ketch.storage import mounts
from ketch.storage.drivers import remove_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.storage.store import Store


class Problem(Record):
    kind: str
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.what}: {self.detail}"


def check(store: Store) -> list[Problem]:
    problems: list[Problem] = []
    for row in store.db.query("SELECT key FROM contents WHERE complete = 0"):
        problems.append(Problem("incomplete content", row["key"], "half-written layer content"))
    known = {r["key"] for r in store.db.query("SELECT key FROM contents")}
    for entry in store.driver.root.iterdir():
        if entry.name != "l" and entry.name not in known:
            problems.append(Problem("unrecorded content", entry.name, "a directory no record describes"))
    for row in store.db.query("SELECT key FROM contents WHERE complete = 1 AND key NOT LIKE 'diff-%'"):
        if not store.driver.content_dir(row["key"]).is_dir():
            problems.append(Problem("missing content", row["key"], "recorded but not on disk"))
    for row in store.db.query("SELECT id, parent FROM layers WHERE parent IS NOT NULL AND parent NOT IN "
                             "(SELECT id FROM layers)"):
        problems.append(Problem("broken parent chain", row["id"], f"parent {row['parent']} is missing"))
    for row in store.db.query("SELECT id FROM layers WHERE content NOT IN (SELECT key FROM contents)"):
        problems.append(Problem("layer without content", row["id"], "its content record is missing"))
    for row in store.db.query("SELECT id, top_layer FROM images WHERE top_layer IS NOT NULL AND top_layer "
                             "NOT IN (SELECT id FROM layers)"):
        problems.append(Problem("image without layers", row["id"], f"top layer {row['top_layer']} is missing"))
    used = store._layers_in_use()
    for row in store.db.query("SELECT id FROM layers"):
        if row["id"] not in used:
            problems.append(Problem("dangling layer", row["id"], "no image or container uses it"))
    for row in store.db.query("SELECT target, path, boot_id FROM mounts"):
        if row["boot_id"] != mounts.boot_id() or not mounts.is_mountpoint(row["path"]):
            problems.append(Problem("stale mount", row["target"], f"recorded at {row['path']} but not mounted"))
    for entry in (store.root / "staging").iterdir():
        if entry.suffix != ".lock" and store._staging_abandoned(entry):
            problems.append(Problem("staging leftover", entry.name, "work of an interrupted process"))
    for entry in (store.root / "blobs" / "sha256").iterdir():
        if entry.name.startswith(".") or store.db.one("SELECT 1 FROM blobs WHERE digest = ?",
                                                     (f"sha256:{entry.name}",)) is None:
            problems.append(Problem("unrecorded blob", entry.name, "a blob file no record describes"))
    return problems

def repair(store: Store) -> list[Problem]:
    """Fix what :meth:`check` finds; returns what was fixed."""
    problems = store.check()
    with store.gc_lock(shared=False):
        store._recover()
        doomed = {p.what for p in problems if p.kind in ("incomplete content", "missing content")}
        with store.db.write() as conn:
            for p in problems:
                if p.kind == "stale mount":
                    conn.execute("DELETE FROM mounts WHERE target = ?", (p.what,))
            # Layers on doomed or missing content, and everything above them, go.
            rows = conn.execute("SELECT l.id, l.parent, l.content, c.key AS known FROM layers l "
                                "LEFT JOIN contents c ON c.key = l.content").fetchall()
            parent_of = {r["id"]: r["parent"] for r in rows}
            bad = {r["id"] for r in rows if r["content"] in doomed or r["known"] is None}
            changed = True
            while changed:
                changed = False
                for layer, parent in parent_of.items():
                    if layer not in bad and parent is not None and (parent in bad or parent not in parent_of):
                        bad.add(layer)
                        changed = True
            # Images and containers standing on them cannot work: drop them (names too).
            for row in conn.execute("SELECT id, top_layer FROM images").fetchall():
                if row["top_layer"] in bad or (row["top_layer"] is not None and row["top_layer"] not in parent_of):
                    for container in conn.execute("SELECT id FROM containers WHERE image = ?",
                                                  (row["id"],)).fetchall():
                        conn.execute("DELETE FROM containers WHERE id = ?", (container["id"],))
                        remove_dir(store.root / "containers" / container["id"])
                    conn.execute("DELETE FROM names WHERE image = ?", (row["id"],))
                    conn.execute("DELETE FROM images WHERE id = ?", (row["id"],))
            while bad:
                leaves = [layer for layer in bad if not any(parent_of.get(o) == layer for o in bad)]
                conn.executemany("DELETE FROM layers WHERE id = ?", [(layer,) for layer in leaves])
                bad -= set(leaves)
            conn.executemany("DELETE FROM contents WHERE key = ?", [(key,) for key in doomed])
        for p in problems:
            if p.kind in ("unrecorded content", "incomplete content", "missing content"):
                remove_dir(store.driver.root / p.what)
            elif p.kind == "unrecorded blob":
                with contextlib.suppress(FileNotFoundError):
                    (store.root / "blobs" / "sha256" / p.what).unlink()
    store.collect_garbage()
    return problems

def df(store: Store) -> dict:
    images = store.images()
    contents = store.db.query("SELECT size FROM contents WHERE key NOT LIKE 'diff-%'")
    return {"images": len(images), "active_images": sum(1 for i in images if store.image_users(i.id)),
            "layers_size": sum(r["size"] for r in contents),
            "containers": len(store.containers()),
            "blobs_size": sum(f.stat().st_size for f in (store.root / "blobs" / "sha256").iterdir())}

def reset(store: Store) -> None:
    """Remove everything: unmount, then delete the root's content."""
    for row in store.db.query("SELECT path FROM mounts"):
        with contextlib.suppress(OSError):
            mounts.umount(row["path"], mounts.MNT_DETACH)
    mounts_dir = store.root / "mounts"
    for entry in mounts_dir.iterdir() if mounts_dir.exists() else []:
        with contextlib.suppress(OSError):
            mounts.umount(str(entry), mounts.MNT_DETACH)
    with contextlib.suppress(OSError):
        mounts.umount(str(mounts_dir), mounts.MNT_DETACH)
    store.db.close()
    for entry in store.root.iterdir():
        remove_dir(entry)
