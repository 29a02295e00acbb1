"""Volumes and mounts of containers: ``-v``, ``--mount``, ``--volumes-from`` and named volumes.

A named volume is a directory ``ROOT/volumes/NAME/_data`` with a row in the store's database
(podman's ``local`` driver). The first time a volume that is still empty is mounted where the
image has content, that content is copied into it, as podman does.
"""

from __future__ import annotations

import json
import os
import time

from ketch.errors import InUseError, InvalidInputError, KetchError, NotFoundError
from ketch.records import Record

BIND_OPTIONS = {"ro", "rw", "z", "Z", "U", "private", "rprivate", "shared", "rshared", "slave", "rslave",
                "bind", "rbind", "nosuid", "nodev", "noexec", "suid", "dev", "exec", "copy", "nocopy"}


class MountSpec(Record):
    """One mount of a container, from -v, --mount or --volumes-from."""

    __slots__ = ("kind", "source", "destination", "options")
    _defaults = {"options": list}
    kind: str  # bind, volume or tmpfs
    source: str
    destination: str
    options: list[str]


def parse_volume(spec: str) -> MountSpec:
    """``-v SOURCE:DEST[:OPTIONS]``: a host path (absolute) is a bind mount, a name a volume."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidInputError(f"invalid volume {spec!r}: want SOURCE:DESTINATION[:OPTIONS]")
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
    except InvalidInputError:
        raise InvalidInputError(f"invalid volume {spec!r}: {source!r} is neither an absolute path nor a "
                                "volume name") from None
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
        if fields:
            raise InvalidInputError(f"invalid --mount {spec!r}: unknown field {next(iter(fields))!r}")
        if not source:
            raise InvalidInputError(f"invalid --mount {spec!r}: a volume needs source=NAME")
        return MountSpec("volume", source, os.path.normpath(destination), flags)
    raise InvalidInputError(f"invalid --mount {spec!r}: type must be bind, volume or tmpfs")


class Volumes:
    def __init__(self, store) -> None:
        self.store = store
        self.db = store.db

    def path(self, name: str) -> str:
        return str(self.store.root / "volumes" / name / "_data")

    def create(self, name: str, labels: dict | None = None, *, exist_ok: bool = False) -> dict:
        from ketch.containers.names import check_name

        check_name(name)
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone():
                if exist_ok:
                    return self.get(name)
                raise InUseError(f"volume {name} already exists")
            os.makedirs(self.path(name), exist_ok=True)
            conn.execute("INSERT INTO volumes VALUES (?, ?, ?, ?)", (name, time.time(), json.dumps(labels or {}),
                                                                     "{}"))
        return self.get(name)

    def get(self, name: str) -> dict:
        row = self.db.one("SELECT * FROM volumes WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(f"no such volume {name}")
        return dict(row)

    def list(self) -> list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM volumes ORDER BY created")]

    def users(self, name: str) -> list[str]:
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
        volume = self.get(name)
        return {"Name": name, "Driver": "local", "Mountpoint": self.path(name),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(volume["created"])),
                "Labels": json.loads(volume["labels"]), "Scope": "local", "Options": {}}

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

    def prune(self) -> list[str]:
        removed = []
        for volume in self.list():
            if not self.users(volume["name"]):
                self.remove(volume["name"])
                removed.append(volume["name"])
        return removed


def to_oci(store, mounts: list[MountSpec], rootfs: str, user: tuple[int, int]) -> list[dict]:
    """The runtime-spec mounts; volumes made (and filled from the image) on first use."""
    from ketch.runtime.paths import resolve_in_root

    volumes = Volumes(store)
    out = []
    for mount in mounts:
        options = list(mount.options)
        if mount.kind == "tmpfs":
            out.append({"destination": mount.destination, "type": "tmpfs", "source": "tmpfs",
                        "options": [o for o in options if o != "ro"] + ["nosuid", "nodev"]
                        + (["ro"] if "ro" in options else [])})
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
                                     f"{exc}") from None
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
