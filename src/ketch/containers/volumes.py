"""Volumes and mounts of containers: ``-v``, ``--mount``, ``--volumes-from`` and named volumes.

A named volume is a directory ``ROOT/volumes/NAME/_data`` with a row in the store's database
(podman's ``local`` driver). The first time a volume that is still empty is mounted where the
image has content, that content is copied into it, as podman does.
"""

from __future__ import annotations

import builtins
import json
import os
import time

from ketch.errors import InUseError, InvalidInputError, KetchError, NotFoundError
from ketch.records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.runtime.spectypes import Mount

BIND_OPTIONS = {"ro", "rw", "z", "Z", "U", "private", "rprivate", "shared", "rshared", "slave", "rslave",
                "bind", "rbind", "nosuid", "nodev", "noexec", "suid", "dev", "exec", "copy", "nocopy"}


class NoSuchVolumeError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f'no volume with name "{name}" found: no such volume')


class MountSpec(Record):
    """One mount of a container, from -v, --mount or --volumes-from."""

    kind: str  # bind, volume (source "" until created: an anonymous one), tmpfs, image, devpts, ramfs
    source: str
    destination: str
    options: list[str] = field(default_factory=list)


def parse_volume(spec: str) -> MountSpec:
    """``-v SOURCE:DEST[:OPTIONS]``: a host path (absolute) is a bind mount, a name a volume;
    ``-v /DEST`` alone is an anonymous volume, made for the container."""
    parts = spec.split(":")
    if len(parts) == 1 and parts[0].startswith("/"):
        return MountSpec("volume", "", os.path.normpath(parts[0]), [])
    if len(parts) == 2 and parts[0].startswith("/") and set(parts[1].split(",")) <= BIND_OPTIONS:
        return MountSpec("volume", "", os.path.normpath(parts[0]), [o for o in parts[1].split(",") if o])
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidInputError(f"invalid volume {spec!r}: want SOURCE:DESTINATION[:OPTIONS] or /DESTINATION")
    source, destination = parts[0], parts[1]
    options = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o]
    if not destination.startswith("/"):
        raise InvalidInputError(f"invalid volume {spec!r}: the destination must be absolute")
    unknown = [o for o in options if o not in BIND_OPTIONS]
    if unknown:
        raise InvalidInputError(f"invalid volume {spec!r}: unknown option {unknown[0]!r}")
    if "ro" in options and "rw" in options:
        raise InvalidInputError(f"invalid volume {spec!r}: ro and rw together")
    if source.startswith("/") or source.startswith("."):
        return MountSpec("bind", os.path.abspath(source), os.path.normpath(destination), options)
    from ketch.containers.names import check_name

    try:
        check_name(source)
    except InvalidInputError as exc:
        raise InvalidInputError(f"invalid volume {spec!r}: {source!r} is neither an absolute path nor a "
                                "volume name") from exc
    return MountSpec("volume", source, os.path.normpath(destination), options)


def parse_mount(spec: str) -> MountSpec:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,ro][,...]``."""
    fields: dict[str, str] = {}
    flags: list[str] = []
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            if key in ("ro", "readonly"):
                flags.append("ro")
            elif key:
                flags.append(key)
            continue
        fields[key] = value
    kind = fields.pop("type", "")
    source = fields.pop("source", fields.pop("src", ""))
    destination = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    if fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1"):
        flags.append("ro")
    if not destination.startswith("/"):
        raise InvalidInputError(f"invalid --mount {spec!r}: target must be an absolute path")
    if kind == "tmpfs":
        options = []
        if "tmpfs-size" in fields:
            options.append(f"size={fields.pop('tmpfs-size')}")
        if "tmpfs-mode" in fields:
            options.append(f"mode={fields.pop('tmpfs-mode')}")
        if fields:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {next(iter(fields))!r}")
        return MountSpec("tmpfs", "tmpfs", os.path.normpath(destination), options + flags)
    if kind == "bind":
        propagation = fields.pop("bind-propagation", "")
        if fields:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {next(iter(fields))!r}")
        if not source.startswith("/"):
            raise InvalidInputError(f"invalid --mount {spec!r}: a bind source must be an absolute path")
        return MountSpec("bind", source, os.path.normpath(destination), flags + ([propagation] if propagation else []))
    if kind == "volume":
        if fields.pop("volume-nocopy", None):
            flags.append("nocopy")
        if fields:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {next(iter(fields))!r}")
        return MountSpec("volume", source, os.path.normpath(destination), flags)
    if kind == "image":
        writable = fields.pop("rw", fields.pop("readwrite", "false")) in ("true", "1")
        if fields:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {next(iter(fields))!r}")
        if not source:
            raise InvalidInputError(f"invalid --mount {spec!r}: an image mount needs source=IMAGE")
        if writable:
            raise InvalidInputError(f"invalid --mount {spec!r}: image mounts are read-only in ketch")
        return MountSpec("image", source, os.path.normpath(destination), ["ro"])
    if kind in ("devpts", "ramfs"):
        options = [f"{k}={v}" for k, v in fields.items() if k in ("uid", "gid", "mode", "max", "size")]
        unknown = [k for k in fields if k not in ("uid", "gid", "mode", "max", "size")]
        if unknown:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {unknown[0]!r}")
        return MountSpec(kind, kind, os.path.normpath(destination), options + flags)
    raise InvalidInputError(f"invalid --mount {spec!r}: type must be bind, volume, tmpfs, image, devpts or ramfs")


class Volumes:
    def __init__(self, store) -> None:
        self.store = store
        from ketch.containers.tables import database

        self.db = database(store)

    def path(self, name: str) -> str:
        return str(self.store.root / "volumes" / name / "_data")

    def create(self, name: str, labels: dict | None = None, *, exist_ok: bool = False, anonymous: bool = False,
               options: dict | None = None) -> dict:
        from ketch.containers.names import check_name

        check_name(name)
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone():
                if exist_ok:
                    return self.get(name)
                raise InUseError(f"volume with name {name} already exists: volume already exists")
            os.makedirs(self.path(name), exist_ok=True)
            conn.execute("INSERT INTO volumes VALUES (?, ?, ?, ?)",
                         (name, time.time(), json.dumps(labels or {}),
                          json.dumps({**(options or {}), **({"anonymous": True} if anonymous else {})})))
        self.store.events.emit("volume", "create", name=name)
        return self.get(name)

    def get(self, name: str) -> dict:
        row = self.db.one("SELECT * FROM volumes WHERE name = ?", (name,))
        if row is None:
            raise NoSuchVolumeError(name)
        return dict(row)

    def exists(self, name: str) -> bool:
        return self.db.one("SELECT 1 FROM volumes WHERE name = ?", (name,)) is not None

    def list(self) -> builtins.list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM volumes ORDER BY created")]

    def users(self, name: str) -> builtins.list[str]:
        """Containers whose mounts name the volume."""
        out = []
        for row in self.store.containers():
            meta = json.loads(row["metadata"])
            for spec in (meta.get("options") or {}).get("mounts") or []:
                if spec.get("kind") == "volume" and spec.get("source") == name:
                    out.append(row["name"])
                    break
        return out

    def inspect(self, name: str) -> dict:
        """podman's ``volume inspect`` entry."""
        volume = self.get(name)
        created = volume["created"]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1e9) % 10**9:09d}Z"
        fresh = not os.listdir(self.path(name)) if os.path.isdir(self.path(name)) else True
        extra = json.loads(volume["options"] or "{}")
        entry = {"Name": name, "Driver": "local", "Mountpoint": self.path(name), "CreatedAt": stamp,
                 "Labels": json.loads(volume["labels"]), "Scope": "local",
                 "Options": {k: v for k, v in extra.items() if k != "anonymous"},
                 "MountCount": 0, "NeedsCopyUp": fresh, "NeedsChown": fresh}
        if extra.get("anonymous"):
            entry["Anonymous"] = True
        return entry

    def export(self, name: str, output) -> None:
        """The volume's content as a tar stream into ``output`` (a binary file)."""
        import subprocess

        self.get(name)
        proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", self.path(name), "-cf", "-", "."],
                              stdout=output, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise KetchError(f"exporting volume {name}: {proc.stderr.decode(errors='replace').strip()}")

    def import_tar(self, name: str, source) -> None:
        """Unpack a tar stream (plain, gzip, bzip2, xz or zstd) from ``source`` into the volume,
        never outside it: the store's layer code, which refuses every escape, does the work."""
        import bz2
        import lzma

        from ketch.errors import ImageFormatError
        from ketch.image import compression
        from ketch.storage.apply import apply_layer

        self.get(name)
        peek = compression.PeekableReader(source)
        head = peek.peek(6)
        if head.startswith(b"BZh"):
            stream = bz2.BZ2File(peek)  # type: ignore[call-overload]  # (a readable stream is all it needs)
        elif head.startswith(b"\xfd7zXZ"):
            stream = lzma.LZMAFile(peek)  # type: ignore[arg-type]
        else:
            kind = compression.detect(head[:4])
            stream = compression.DecompressingReader(peek, kind) if kind else peek
        try:
            apply_layer(stream, self.path(name), whiteouts="vfs")
        except (ImageFormatError, OSError, EOFError, lzma.LZMAError) as exc:
            raise InvalidInputError(f"importing into volume {name}: {exc}") from exc

    def remove(self, name: str, *, force: bool = False, engine=None) -> None:
        self.get(name)
        users = self.users(name)
        if users:
            if not force or engine is None:
                raise InUseError(f"volume {name} is being used by container(s) {', '.join(users)}; remove them "
                                 "first, or use --force")
            for container in users:
                engine.remove(container, force=True)
        from ketch.storage.drivers import remove_dir

        with self.db.write() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        remove_dir(self.store.root / "volumes" / name)
        self.store.events.emit("volume", "remove", name=name)

    def prune(self) -> builtins.list[str]:
        removed = []
        for volume in self.list():
            if not self.users(volume["name"]):
                self.remove(volume["name"])
                removed.append(volume["name"])
        return removed


def to_oci(store, mounts: list[MountSpec], rootfs: str, user: tuple[int, int],
           mounted_images: list[str] | None = None) -> list[Mount]:
    """The runtime-spec mounts; volumes made (and filled from the image) on first use. Images
    mounted for ``type=image`` are appended to ``mounted_images`` (the caller unmounts them)."""
    from ketch.runtime.paths import resolve_in_root

    volumes = Volumes(store)
    out: list[Mount] = []
    for mount in mounts:
        options = list(mount.options)
        if mount.kind == "tmpfs":
            out.append({"destination": mount.destination, "type": "tmpfs", "source": "tmpfs",
                        "options": [o for o in options if o != "ro"] + ["nosuid", "nodev"]
                        + (["ro"] if "ro" in options else [])})
            continue
        if mount.kind == "devpts":
            out.append({"destination": mount.destination, "type": "devpts", "source": "devpts",
                        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"] + options})
            continue
        if mount.kind == "ramfs":
            out.append({"destination": mount.destination, "type": "ramfs", "source": "ramfs",
                        "options": ["nosuid", "nodev"] + options})
            continue
        if mount.kind == "image":
            record = store.lookup(mount.source)
            path = store.mount_image(record.id)
            if mounted_images is not None:
                mounted_images.append(record.id)
            out.append({"destination": mount.destination, "type": "bind", "source": str(path),
                        "options": ["rbind", "ro", "rprivate", "nosuid", "nodev"]})
            continue
        if mount.kind == "volume":
            fresh = False
            try:
                volumes.get(mount.source)
            except NotFoundError:
                volumes.create(mount.source, exist_ok=True)
                fresh = True
            source = volumes.path(mount.source)
            image_content = resolve_in_root(rootfs, mount.destination)
            if "nocopy" not in options and (fresh or not os.listdir(source)) and os.path.isdir(image_content) \
                    and os.listdir(image_content):
                from ketch.storage.apply import copy_tree

                try:
                    copy_tree(image_content, source)  # podman's copy-up of the image's content
                except OSError as exc:
                    raise KetchError(f"copying {mount.destination} of the image into volume {mount.source}: "
                                     f"{exc}") from exc
        else:
            source = mount.source
            if not os.path.exists(source):
                raise InvalidInputError(f"bind source {source} does not exist")
        if "U" in options:
            _chown_tree(source, *user)
        flags = ["rbind"]
        flags.append("ro" if "ro" in options else "rw")
        propagation = [o for o in options if o in ("private", "rprivate", "shared", "rshared", "slave", "rslave")]
        flags += propagation or ["rprivate"]
        flags += [o for o in options if o in ("nosuid", "nodev", "noexec", "suid", "dev", "exec")]
        out.append({"destination": mount.destination, "type": "bind", "source": source, "options": flags})
    return out


def _chown_tree(path: str, uid: int, gid: int) -> None:
    """``:U``: the source belongs to the container's user (podman's chown of the volume)."""
    os.lchown(path, uid, gid)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), uid, gid)
