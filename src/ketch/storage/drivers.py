"""Storage drivers: how layer contents are laid out and mounted.

overlay: every layer's content is only its own diff (whiteouts in overlay
form); an image or container is an overlay mount of the chain, O(1) whatever
the image size. Lower directories are named by short links (``l/<26 random characters>``,
26 characters) so the mount options of a 100+ layer image stay under the
page-size limit; the mount is made from a child process that changed into the
driver's directory, because the link names are relative.

vfs: every layer's content is a full root file system (the parent's copied,
then the diff applied); a mount is a bind mount. Slow and large, but it works
where overlayfs does not.
"""

from __future__ import annotations

import os
from pathlib import Path

from ketch.errors import UnsupportedError
from ketch.storage import mounts

LINK_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LINK_LENGTH = 26


def new_link_name() -> str:
    return "".join(LINK_CHARS[b % len(LINK_CHARS)] for b in os.urandom(LINK_LENGTH))


def overlay_options() -> str:
    """The options every overlay mount of the store takes: no redirects, no index, no metacopy
    (so an upper directory is a plain diff). In a user namespace ``userxattr`` (overlay then reads
    the user.overlay.* attributes the store writes there; trusted.* are the host root's alone),
    and no explicit ``redirect_dir``, which the kernel refuses to unprivileged mounts (its module
    default, off, applies)."""
    from ketch.userns import in_user_namespace

    return "index=off,metacopy=off,userxattr" if in_user_namespace() else "redirect_dir=off,index=off,metacopy=off"


def overlay_supported() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


class Driver:
    name = ""
    whiteouts = ""

    def __init__(self, root: Path) -> None:
        self.root = root / self.name
        self.root.mkdir(parents=True, exist_ok=True)

    def content_dir(self, key: str) -> Path:
        return self.root / key / "diff"


def storage_option(name: str) -> str | None:
    """A containers/storage option from ``$STORAGE_OPTS`` (``--storage-opt`` sets it), such as
    ``overlay.mount_program``."""
    for item in os.environ.get("STORAGE_OPTS", "").split(","):
        key, _, value = item.strip().partition("=")
        if key == name and value:
            return value
    return None


def native_overlay_works(scratch: Path) -> bool:
    """Whether the kernel's overlay mounts here (a user namespace may be refused it: kernels before
    5.11, or a distribution's policy); tried in a forked child, so nothing stays mounted."""
    for sub in ("lower1", "lower2", "merged"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    try:
        mounts.mount_in_child(str(scratch), "overlay", str(scratch / "merged"), "overlay", mounts.MS_RDONLY,
                              f"lowerdir=lower1:lower2,{overlay_options()}")
    except OSError:
        return False
    mounts.umount(str(scratch / "merged"), mounts.MNT_DETACH)
    return True


class OverlayDriver(Driver):
    name = "overlay"
    whiteouts = "overlay"

    def __init__(self, root: Path, mount_program: str | None = None) -> None:
        if not overlay_supported() and not mount_program:
            raise UnsupportedError("overlayfs is not available here; use --storage-driver vfs")
        super().__init__(root)
        (self.root / "l").mkdir(exist_ok=True)
        # fuse-overlayfs where the kernel's overlay is refused (recorded with the store, as
        # containers/storage's overlay.mount_program)
        self.mount_program = mount_program

    def publish(self, key: str, link: str) -> None:
        """Create the short link for a content directory (idempotent)."""
        path = self.root / "l" / link
        if not path.is_symlink():
            tmp = self.root / "l" / f".tmp-{link}"
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(f"../{key}/diff", tmp)
            os.replace(tmp, path)
        (self.root / key / "link").write_text(link)

    def remove_link(self, link: str) -> None:
        try:
            (self.root / "l" / link).unlink()
        except FileNotFoundError:
            pass

    def mount(self, links: list[str], target: Path, *, upper: Path | None = None, work: Path | None = None,
              readonly: bool = True) -> None:
        """Mount the chain (``links`` top first) on ``target``."""
        if self.mount_program:
            self._mount_program(links, target, upper, work, {})
            return
        flags = mounts.MS_NOSUID | mounts.MS_NODEV | (mounts.MS_RDONLY if readonly and upper is None else 0)
        lowers = ":".join(f"l/{link}" for link in links)
        if upper is None and len(links) == 1:
            # overlayfs needs two lower directories without an upper one: a single layer is bound.
            mounts.mount(str(self.root / "l" / links[0]), str(target), None, mounts.MS_BIND)
            mounts.mount("none", str(target), None,
                         mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_RDONLY | mounts.MS_NOSUID | mounts.MS_NODEV)
            return
        options = f"lowerdir={lowers},{overlay_options()}"
        if upper is not None:
            options += f",upperdir={upper},workdir={work}"
        if len(options) >= 4000:
            raise UnsupportedError(f"{len(links)} layers are too many to mount (options over one page)")
        mounts.mount_in_child(str(self.root), "overlay", str(target), "overlay", flags, options)


    def mount_mapped(self, links: list[str], target: Path, upper: Path, work: Path, mappings: dict) -> None:
        """Mount the chain read-write through fuse-overlayfs, which shows every file's owner shifted
        by ``mappings`` (``{"uid": "C:H:N:...", "gid": ...}``, a container's id mappings), as
        podman mounts a rootless keep-id container. (The kernel's overlay cannot shift ids, and
        an idmapped mount of the store's file system needs the host's root.)"""
        self._mount_program(links, target, upper, work, mappings)

    def _mount_program(self, links: list[str], target: Path, upper: Path | None, work: Path | None,
                       mappings: dict) -> None:
        import shutil
        import subprocess

        program = self.mount_program or shutil.which("fuse-overlayfs")
        if program is None:
            raise UnsupportedError("this mount needs fuse-overlayfs (Debian: apt install fuse-overlayfs)")
        lowers = ":".join(str(self.root / "l" / link) for link in links)
        if not lowers:  # (an empty image: the upper directory alone, under an empty lower one)
            empty = self.root / "empty"
            empty.mkdir(exist_ok=True)
            lowers = str(empty)
        options = f"lowerdir={lowers}"
        if upper is not None:
            options += f",upperdir={upper},workdir={work}"
        if mappings:
            options += f",uidmapping={mappings['uid']},gidmapping={mappings['gid']}"
        options += ",allow_other"
        result = subprocess.run([program, "-o", options, str(target)], capture_output=True, timeout=60)
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            raise UnsupportedError(f"{os.path.basename(program)} could not mount: {lines[-1] if lines else 'failed'}")


class VfsDriver(Driver):
    name = "vfs"
    whiteouts = "vfs"

    def mount(self, rootfs: Path, target: Path, *, readonly: bool = True) -> None:
        mounts.mount(str(rootfs), str(target), None, mounts.MS_BIND)
        flags = mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_NOSUID | mounts.MS_NODEV
        mounts.mount("none", str(target), None, flags | (mounts.MS_RDONLY if readonly else 0))


def make_driver(name: str, root: Path, mount_program: str | None = None) -> Driver:
    if name == "overlay":
        return OverlayDriver(root, mount_program)
    if name == "vfs":
        return VfsDriver(root)
    raise UnsupportedError(f"unknown storage driver {name!r} (use overlay or vfs)")


def remove_dir(path: Path) -> None:
    """Remove a directory tree (overlay whiteout devices included) without crossing into another
    file system, as ``rm -rf --one-file-system``: a mount left inside is kept, not emptied.
    Done here rather than with rm, whose process start would cost every ``ketch run --rm``."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return

    def remove(directory: str) -> bool:
        """True when ``directory`` and all below it are gone."""
        complete = True
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if info.st_dev != top.st_dev:
                    complete = False  # a mount point: leave it
                elif entry.is_dir(follow_symlinks=False):
                    complete = remove(entry.path) and complete
                else:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
        if complete:
            try:
                os.rmdir(directory)
            except OSError:
                return False
        return complete

    remove(str(path))
