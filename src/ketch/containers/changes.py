"""A container's file system seen from the host: its changes (``diff``) and copies in and out
(``cp``). Paths inside the container are resolved as the container sees them
(:func:`ketch.runtime.paths.resolve_in_root`): a symbolic link in it never leads out."""

from __future__ import annotations

import os
import stat

from ketch.errors import InvalidInputError, NotFoundError
from ketch.runtime.paths import resolve_in_root

# What the runtime makes in the upper directory as mount points for the files ketch binds in:
# not the container's own changes, as podman's diff leaves them out too.
MOUNT_POINTS = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}


def diff(store, container_id: str, image_id: str | None) -> list[tuple[str, str]]:
    """podman's ``diff``: A (added), C (changed, directories holding changes too), D (deleted), from
    the container's upper directory against its image."""
    from ketch.storage.drivers import OverlayDriver

    if not isinstance(store.driver, OverlayDriver):
        return _whole_tree_diff(store, container_id)
    upper = str(store.container_upper(container_id))
    lower = str(store.mount_image(image_id)) if image_id else None
    out: dict[str, str] = {}
    try:
        for top, dirs, files in os.walk(upper):
            rel_top = "/" + os.path.relpath(top, upper) if top != upper else "/"
            for name in sorted(dirs + files):
                path = os.path.join(top, name)
                rel = os.path.join(rel_top, name)
                st = os.lstat(path)
                in_lower = lower is not None and os.path.lexists(os.path.join(lower, rel.lstrip("/")))
                if _runtime_made(path, rel, st, added=not in_lower):
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    _note(out, rel, "D")  # overlay's whiteout
                else:
                    _note(out, rel, "C" if in_lower else "A")
    finally:
        if image_id:
            store.unmount_image(image_id)
    return sorted(((kind, path) for path, kind in out.items()), key=lambda item: item[1])


def _runtime_made(path: str, rel: str, st: os.stat_result, *, added: bool) -> bool:
    """An empty mount-point file the runtime made, or a new directory holding only such files:
    not the container's changes."""
    if rel in MOUNT_POINTS and stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return True
    return added and stat.S_ISDIR(st.st_mode) and _only_mount_points(path, rel)


def _note(out: dict[str, str], rel: str, kind: str) -> None:
    """Record a change; the directories holding it are changed too."""
    out[rel] = kind
    parent = os.path.dirname(rel)
    while parent != "/" and parent not in out:
        out[parent] = "C"
        parent = os.path.dirname(parent)


def _whole_tree_diff(store, container_id: str) -> list[tuple[str, str]]:
    """``diff`` of a vfs container: its whole tree against its image's, with the same rules as
    the overlay one (directories holding changes are changed; the runtime's empty mount points
    are not changes)."""
    from ketch.storage.diff import tree_changes

    lower, upper = store.container_base_tree(container_id)
    out: dict[str, str] = {}
    for kind, rel in tree_changes(lower, upper):
        path = os.path.join(upper, rel.lstrip("/"))
        if kind != "D" and _runtime_made(path, rel, os.lstat(path), added=kind == "A"):
            continue
        _note(out, rel, kind)
    return sorted(((kind, path) for path, kind in out.items()), key=lambda item: item[1])


class Place:
    """One side of a ``cp``: a path on the host (``root`` None) or in a container's root file
    system (``root``), as the user wrote it (``text``), and the container's name for messages."""

    def __init__(self, root: str | None, path: str, text: str, container: str = "") -> None:
        self.root, self.path, self.text, self.container = root, path, text, container

    def resolve(self) -> str:
        if self.root is None:
            return self.path
        return resolve_in_root(self.root, self.path)

    def missing(self) -> NotFoundError:
        if self.root is None:
            return NotFoundError(f'"{self.text}" could not be found on the host: no such file or directory')
        return NotFoundError(f'"{self.path}" could not be found on container {self.container}: no such file or '
                             "directory")


def copy(source: Place, destination: Place, *, owner: tuple[int, int] | None = None,
         overwrite: bool = False) -> None:
    """podman's (and docker's) ``cp`` rules. A file goes to DEST, or into DEST when DEST is a
    directory (a DEST ending in / must be one); a directory becomes DEST when DEST does not exist,
    else goes into it (its content alone with SRC/.). Owners, modes, times, links and xattrs are
    kept (``owner``: everything copied belongs to that uid and gid). Container paths never lead
    out of their container: every link in them resolves inside it."""
    src = source.resolve()
    if not os.path.lexists(src):
        raise source.missing()
    contents_only = source.path.endswith("/.") or source.path == "."
    dst = destination.resolve()
    src_is_dir = os.path.isdir(src) and not os.path.islink(src)
    if os.path.lexists(dst):
        dst_is_dir = os.path.isdir(dst) and not os.path.islink(dst)
        if src_is_dir and not dst_is_dir:
            if not overwrite:
                raise InvalidInputError(f"cannot copy a directory ({source.text}) onto a file ({destination.text})")
            os.unlink(dst)
            target, contents_only = dst, True
        elif dst_is_dir and not (src_is_dir and contents_only):
            target = os.path.join(dst, os.path.basename(src.rstrip("/")))
            if not src_is_dir and os.path.isdir(target) and not os.path.islink(target):
                if not overwrite:
                    raise InvalidInputError(f"cannot overwrite directory {target} with a file")
                import shutil

                shutil.rmtree(target)
        else:
            target = dst
            contents_only = src_is_dir
    else:
        if destination.path.endswith("/") and not src_is_dir:
            raise destination.missing()
        parent = os.path.dirname(dst.rstrip("/")) or "/"
        if not os.path.isdir(parent):
            raise destination.missing()
        target, contents_only = dst.rstrip("/"), src_is_dir
    if destination.root is not None and not os.path.realpath(os.path.dirname(target)).startswith(
            os.path.realpath(destination.root)):
        raise InvalidInputError(f"{destination.text} is outside the container")
    _cp(src, target, contents_only=contents_only and src_is_dir)
    if owner is not None:
        _chown_tree(target, *owner)


def extract_tar(stream, destination: Place, owner: tuple[int, int] | None = None) -> None:
    """``cp - CONTAINER:DIR``: a tar stream unpacked into an existing directory (never outside it:
    the layer code refuses every escape)."""
    from ketch.storage.apply import apply_layer

    target = destination.resolve()
    if not os.path.isdir(target):
        raise destination.missing()
    apply_layer(stream, target, whiteouts="vfs")
    if owner is not None:
        _chown_tree(target, *owner)


def write_tar(source: Place, output) -> None:
    """``cp SRC -``: SRC as a tar stream on ``output``."""
    import subprocess

    src = source.resolve()
    if not os.path.lexists(src):
        raise source.missing()
    parent, name = os.path.split(src.rstrip("/")) if not source.path.endswith("/.") else (src.rstrip("/."), ".")
    result = subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", parent or "/", "-cf", "-", name],
                            stdout=output, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise InvalidInputError(f"cp: {result.stderr.decode(errors='replace').strip()}")


def _cp(source: str, target: str, *, contents_only: bool) -> None:
    """GNU cp -a: owners, modes, times, links, xattrs."""
    import subprocess

    if contents_only:
        os.makedirs(target, exist_ok=True)
        command = ["cp", "-a", "-T", source.rstrip("/").removesuffix("/.") + "/.", target]
    else:
        command = ["cp", "-a", "--no-target-directory", source, target]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InvalidInputError(f"cp: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'failed'}")


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(top, name), uid, gid)


def _only_mount_points(directory: str, rel: str) -> bool:
    """A directory the runtime made only to hold mount points (``/run`` for .containerenv): it
    holds one, and nothing else (an empty directory a process made is a change)."""
    held = False
    for top, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(top, name)
            if os.path.join(rel, os.path.relpath(path, directory)) not in MOUNT_POINTS or os.path.getsize(path):
                return False
            held = True
    return held
