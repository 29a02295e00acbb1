"""A container's file system seen from the host: its changes (``diff``) and copies in and out
(``cp``). Paths inside the container are resolved as the container sees them
(:func:`ketch.runtime.paths.resolve_in_root`): a symbolic link in it never leads out."""

from __future__ import annotations

import os
import stat

from ketch.runtime.paths import resolve_in_root
from ketch.errors import InvalidInputError, NotFoundError, UnsupportedError

OPAQUE_XATTR = "trusted.overlay.opaque"
# What the runtime makes in the upper directory as mount points for the files ketch binds in:
# not the container's own changes, as podman's diff leaves them out too.
MOUNT_POINTS = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}


def diff(store, container_id: str, image_id: str | None) -> list[tuple[str, str]]:
    """podman's ``diff``: A (added), C (changed, directories holding changes too), D (deleted), from
    the container's upper directory against its image."""
    from ketch.storage.drivers import OverlayDriver

    if not isinstance(store.driver, OverlayDriver):
        raise UnsupportedError("diff needs the overlay storage driver")
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
                if rel in MOUNT_POINTS and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    continue
                if stat.S_ISDIR(st.st_mode) and not in_lower and _only_mount_points(path, rel):
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    out[rel] = "D"  # overlay's whiteout
                else:
                    out[rel] = "C" if in_lower else "A"
                parent = rel_top
                while parent != "/" and parent not in out:
                    out[parent] = "C"
                    parent = os.path.dirname(parent)
    finally:
        if image_id:
            store.unmount_image(image_id)
    return sorted(((kind, path) for path, kind in out.items()), key=lambda item: item[1])


def copy_out(rootfs: str, container_path: str, host_path: str) -> None:
    source = resolve_in_root(rootfs, container_path)
    if not os.path.lexists(source):
        raise NotFoundError(f"{container_path}: no such file or directory in the container")
    _copy(source, host_path, contents_only=container_path.endswith("/."))


def copy_in(host_path: str, rootfs: str, container_path: str) -> None:
    if not os.path.lexists(host_path):
        raise NotFoundError(f"{host_path}: no such file or directory")
    target = resolve_in_root(rootfs, container_path)
    if not os.path.realpath(os.path.dirname(target) if not os.path.isdir(target) else target).startswith(
            os.path.realpath(rootfs)):
        raise InvalidInputError(f"{container_path} is outside the container")
    _copy(host_path, target, contents_only=host_path.endswith("/."))


def _copy(source: str, destination: str, *, contents_only: bool) -> None:
    """GNU cp -a semantics (owners, modes, times, links, xattrs): into ``destination`` when it is a
    directory, else to it."""
    import subprocess

    if contents_only:
        os.makedirs(destination, exist_ok=True)
        source = source.rstrip(".").rstrip("/") + "/."
    elif os.path.isdir(destination) and not os.path.islink(destination):
        destination = os.path.join(destination, os.path.basename(source.rstrip("/")))
    parent = os.path.dirname(destination.rstrip("/")) or "/"
    if not os.path.isdir(parent):
        raise NotFoundError(f"{parent}: no such directory")
    result = subprocess.run(["cp", "-a", "--no-target-directory" if not contents_only else "-T", source, destination],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise InvalidInputError(f"cp: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'failed'}")


def _only_mount_points(directory: str, rel: str) -> bool:
    """A directory the runtime made only to hold mount points (``/run`` for .containerenv)."""
    for top, dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(top, name)
            if os.path.join(rel, os.path.relpath(path, directory)) not in MOUNT_POINTS or os.path.getsize(path):
                return False
    return True
