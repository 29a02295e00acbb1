"""The engine's file work on a container's tree: ``mount``/``umount``, ``diff``, ``cp``,
``export`` and ``commit`` (podman's words), as a part of :class:`~ketch.containers.engine.Engine`.

The tree is the container's own (its writable layer on its image) whether it runs or not: a
running container's is read through ``/proc/PID/root``, a stopped one's through a mount of the
store (see :meth:`ContainerFiles._with_rootfs`)."""

from __future__ import annotations

import builtins
import os
import sys

from ketch.containers import state as states
from ketch.errors import ContainerError, InvalidInputError, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.engine import ContainerRecord
    from ketch.containers.enginepart import EnginePart
    from ketch.containers.options import CreateOptions
else:
    EnginePart = object  # (what the engine's parts use of it matters to type checkers only)


class ContainerFiles(EnginePart):
    """``mount``, ``umount``, ``diff``, ``cp``, ``export``, ``commit``: mixed into the Engine."""

    def mount(self, name_or_id: str) -> str:
        """Mount the container's root file system (counted, as a running container's is); where."""
        record = self._record(name_or_id)
        path = str(self.store.mount_container(record.id))
        states.update(self._userdata(record.id), user_mounts=states.read(self._userdata(record.id)).get(
            "user_mounts", 0) + 1)
        self._record_event("mount", record)
        return path

    def unmount(self, name_or_id: str, *, force: bool = False) -> str:
        """Undo ``mount`` (all of its counts with ``force``); the container's id."""
        record = self._record(name_or_id)
        userdata = self._userdata(record.id)
        count = states.read(userdata).get("user_mounts", 0)
        if not count:
            raise ContainerError(f"container {record.id} is not mounted")
        for _ in range(count if force else 1):
            self.store.unmount_container(record.id)
        states.update(userdata, user_mounts=0 if force else count - 1)
        self._record_event("unmount", record)
        return record.id

    def mounted(self) -> builtins.list[tuple[str, str, str]]:
        """(id, name, mount point) of the containers mounted with ``mount``."""
        out = []
        for row in self.store.containers():
            if row["kind"] != "container":
                continue
            if states.read(self._userdata(row["id"])).get("user_mounts", 0) > 0:
                out.append((row["id"], row["name"], str(self.store.root / "mounts" / f"container-{row['id'][:32]}")))
        return out

    def diff(self, name_or_id: str) -> builtins.list[tuple[str, str]]:
        """(kind, path) of the container's changes against its image: A added, C changed, D deleted."""
        from ketch.containers import changes

        record = self._record(name_or_id)
        return changes.diff(self.store, record.id, record.image)

    def _with_rootfs(self, record: ContainerRecord):
        """The container's root file system, mounted for the caller (counted: a running
        container's mount is shared)."""
        import contextlib

        @contextlib.contextmanager
        def mounted():
            path = self.store.mount_container(record.id)
            try:
                yield str(path)
            finally:
                self.store.unmount_container(record.id)

        return mounted()

    def copy(self, source: str, destination: str, *, archive: bool = True, overwrite: bool = False,
             stdin=None, stdout=None) -> None:
        """``cp``: between a container and the host (``-`` for a tar stream on ``stdin`` or
        ``stdout``), or between two containers; relative container paths start at the container's
        working directory. A running container is reached through its init's root, so its
        volumes and mounts are where it sees them; a stopped one is mounted meanwhile. With
        ``archive``, what lands in a container belongs to its user."""
        import contextlib

        from ketch.containers import changes

        src_ctr, src_path = _split_container_path(source)
        dst_ctr, dst_path = _split_container_path(destination)
        if not src_ctr and not dst_ctr:
            raise InvalidInputError("copying between two host paths is not supported: one of them must be "
                                    "CONTAINER:PATH")
        with contextlib.ExitStack() as stack:
            places, owner = [], None
            for side, (ctr, path, text) in enumerate(((src_ctr, src_path, source), (dst_ctr, dst_path, destination))):
                if not ctr:
                    places.append(changes.Place(None, path, text))
                    continue
                record = self._record(ctr)
                root = stack.enter_context(self._container_root(record))
                if not path.startswith("/"):
                    path = os.path.join(self._workdir(record), path)
                places.append(changes.Place(root, path, text, ctr))
                if side == 1 and archive:
                    owner = self._user_ids(record, root)
            src, dst = places
            if dst.root is None and owner is None and self.store.rootless:
                owner = (0, 0)  # (to the host, a rootless copy is the user's, not a subordinate id's)
            if src.root is None and src.path == "-":
                changes.extract_tar(stdin or sys.stdin.buffer, dst, owner)
            elif dst.root is None and dst.path == "-":
                changes.write_tar(src, stdout or sys.stdout.buffer)
            else:
                changes.copy(src, dst, owner=owner, overwrite=overwrite)

    def _container_root(self, record: ContainerRecord):
        """The container's root file system for the caller: a running container's through its
        init (``/proc/PID/root``: the container's own view, mounts included), else mounted."""
        import contextlib

        current = self._status(record)
        if current["status"] in ("running", "paused") and current.get("pid"):
            return contextlib.nullcontext(f"/proc/{current['pid']}/root")
        return self._with_rootfs(record)

    def _workdir(self, record: ContainerRecord) -> str:
        options: CreateOptions = record.options
        if options.workdir:
            return options.workdir
        try:
            return self.store.lookup(record.image).parsed_config.container_config.get("WorkingDir") or "/"
        except KetchError:
            return "/"

    def _user_ids(self, record: ContainerRecord, root: str) -> tuple[int, int]:
        from ketch.containers import users

        options: CreateOptions = record.options
        spec = options.user
        if spec is None:
            try:
                spec = self.store.lookup(record.image).parsed_config.container_config.get("User")
            except KetchError:
                spec = None
        try:
            user = users.resolve(root, spec or "0")
        except KetchError:
            return 0, 0
        return user.uid, user.gid

    def export(self, name_or_id: str, output) -> None:
        """The container's file system as a tar stream written to ``output`` (a binary file)."""
        import subprocess

        record = self._record(name_or_id)
        with self._with_rootfs(record) as rootfs:
            proc = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", "-", "."],
                                  stdout=output, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise ContainerError(f"export: {proc.stderr.decode(errors='replace').strip()}")

    def commit(self, name_or_id: str, image: str | None = None, *, changes: builtins.list[str] | None = None,
               message: str = "", author: str = "", fmt: str = "oci", pause: bool = True,
               include_volumes: bool = False) -> str:
        """A new image from the container's changes; its id (``include_volumes``: the
        container's volumes become the image's VOLUMEs)."""
        from ketch.containers import commit as committer
        from ketch.userns import delegated_cgroup

        record = self._record(name_or_id)
        if include_volumes:
            changes = list(changes or []) + [f"VOLUME {m['destination']}" for m in record.options.mounts
                                             if m["kind"] == "volume"]
        paused = False
        # (a rootless container without a delegated cgroup cannot be frozen: committed running, as
        # podman commits, whose default is not to pause)
        if pause and self._status(record)["status"] == "running" and not record.options.runtime and \
                not (self.store.rootless and not delegated_cgroup()):
            self._driver(record.options).pause(record.id)
            paused = True
        try:
            image_id = committer.commit(self.store, record.id, record.image, name=image, changes=changes,
                                        message=message, author=author, fmt=fmt,
                                        created_by=" ".join(record.options.create_command))
            self._record_event("commit", record)
            return image_id
        finally:
            if paused:
                self._driver(record.options).resume(record.id)


def _split_container_path(text: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a host path (a path with a slash before any colon is the host's)."""
    head, sep, rest = text.partition(":")
    if sep and head and "/" not in head and not head.startswith("."):
        return head, rest or "."
    return None, text
