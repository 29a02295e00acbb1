"""Files into a working container: copies with buildah's owners and modes, archives unpacked,
and digests of what a step reads (for the layer cache)."""

from __future__ import annotations

import hashlib
import os
import shutil

from ketch.errors import BuilderError


def is_archive(path: str) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def make_dirs(root: str, path: str, owner: tuple[int, int] | None) -> str:
    """The directory ``path`` inside ``root`` (links followed inside it), with every missing
    directory on the way made 0755 and owned by ``owner`` (root when None), as buildah makes a
    COPY's missing parents; what exists stays as it is. Its host path."""
    from ketch.runtime.paths import resolve_in_root

    parts = [p for p in path.split("/") if p and p != "."]
    for n in range(1, len(parts) + 1):
        inside = "/" + "/".join(parts[:n])
        host = resolve_in_root(root, inside)
        if not os.path.lexists(host):
            try:
                os.mkdir(host, 0o755)
                os.chmod(host, 0o755)  # (whatever the umask)
                os.lchown(host, *(owner or (0, 0)))
            except OSError as exc:
                raise BuilderError(f"cannot make the directory {inside}: {exc.strerror}") from exc
        elif not os.path.isdir(host):
            raise BuilderError(f"{inside} exists and is not a directory")
    return resolve_in_root(root, path)


def unpack(archive: str, target: str) -> None:
    """ADD: a local tar archive (any compression tar reads) unpacked at the destination, its
    members' owners and modes kept (buildah applies neither --chown nor --chmod to them)."""
    import subprocess

    result = subprocess.run(["tar", "--numeric-owner", "--same-owner", "-xf", archive, "-C", target],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BuilderError(f"unpacking {archive}: {result.stderr.strip().splitlines()[-1:]}")


def copy_into(source: str, target: str, *, into: bool, owner, mode, contents: bool) -> None:
    """cp -a semantics with --chown and --chmod applied to what was copied. A directory's
    contents are copied (buildah's COPY of a directory copies what is in it) into ``target``,
    which the caller made; the directory ``target`` (or the parent of the copy) must exist."""
    import subprocess

    if contents:
        pairs = [(os.path.join(source, name), os.path.join(target, name)) for name in sorted(os.listdir(source))]
    else:
        pairs = [(source, os.path.join(target, os.path.basename(source)) if into else target)]
    for origin, destination in pairs:
        result = subprocess.run(["cp", "-a", "-T", origin, destination], capture_output=True, text=True)
        if result.returncode != 0:
            raise BuilderError(f"copying {origin}: {result.stderr.strip()}")
    for _, top in pairs:
        if owner is None and mode is None:
            continue
        walk = [top] + ([os.path.join(d, n) for d, dirs, files in os.walk(top) for n in dirs + files]
                        if os.path.isdir(top) and not os.path.islink(top) else [])
        for path in walk:
            if owner is not None:
                os.lchown(path, *owner)
            if mode is not None and not os.path.islink(path):
                os.chmod(path, int(mode, 8))


def copy_file(source: str, target: str, owner, chmod, *, from_context: bool) -> None:
    if os.path.lexists(target) and (os.path.isdir(target) and not os.path.islink(target)):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
    else:
        shutil.copy2(source, target)
    st = os.lstat(source)
    uid, gid = owner if owner else ((0, 0) if from_context else (st.st_uid, st.st_gid))
    os.lchown(target, uid, gid)
    if chmod and not os.path.islink(target):
        os.chmod(target, int(chmod, 8))


def copy_tree(source: str, target: str, ignore, relative, owner, chmod, *, from_context: bool) -> None:
    """A directory's contents (not the directory itself, as Docker copies) into the directory
    ``target``, which the caller made (its own mode and owner are not the source's)."""
    for top, dirs, files in os.walk(source):
        rel_top = os.path.relpath(top, source)
        keep = []
        for d in sorted(dirs):
            rel = os.path.normpath(os.path.join(relative or "", rel_top, d))
            if ignore is not None and ignore.ignored(rel) and not ignore.may_include_below(rel):
                continue
            keep.append(d)
        dirs[:] = keep
        dest_top = os.path.normpath(os.path.join(target, rel_top))
        if rel_top != ".":
            os.makedirs(dest_top, exist_ok=True)
            st = os.stat(top)
            os.chmod(dest_top, int(chmod, 8) if chmod else st.st_mode & 0o7777)
            uid, gid = owner if owner else ((0, 0) if from_context else (st.st_uid, st.st_gid))
            os.lchown(dest_top, uid, gid)
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(relative or "", rel_top, name))
            if ignore is not None and ignore.ignored(rel):
                continue
            copy_file(os.path.join(top, name), os.path.join(dest_top, name), owner, chmod, from_context=from_context)
        for d in dirs:  # links to directories are copied as links
            if os.path.islink(os.path.join(top, d)):
                copy_file(os.path.join(top, d), os.path.join(dest_top, d), owner, chmod, from_context=from_context)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]


def tree_digest(path: str, ignore, relative: str | None) -> str:
    """Paths, types, modes, owners and contents of a file or tree (what a cache key must see);
    under a directory, what ``ignore`` ignores is left out, as the copy leaves it (its paths are
    ``relative`` joined with the path inside, as copy_tree names them)."""
    digest = hashlib.sha256()

    def add(p: str, rel: str) -> None:
        st = os.lstat(p)
        digest.update(f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
        if os.path.islink(p):
            digest.update(os.readlink(p).encode())
        elif os.path.isfile(p):
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)

    if os.path.isdir(path) and not os.path.islink(path):
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(top, name)
                rel = os.path.relpath(full, path)
                if ignore is not None and ignore.ignored(os.path.normpath(os.path.join(relative or "", rel))):
                    continue
                add(full, rel)
    elif os.path.lexists(path):
        add(path, os.path.basename(path))
    return digest.hexdigest()


def glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)


def missing_tops(rootfs: str, destinations: list[str]) -> list[str]:
    """For each mount destination missing in the root, the topmost path the runtime will create
    for it (a mount point: not part of what the step made)."""
    from ketch.runtime.paths import resolve_in_root

    tops = []
    for destination in destinations:
        parts = [p for p in destination.split("/") if p]
        for n in range(1, len(parts) + 1):
            path = resolve_in_root(rootfs, "/" + "/".join(parts[:n]))
            if not os.path.lexists(path):
                tops.append(path)
                break
    return sorted(set(tops))


def missing_leaves(rootfs: str, destinations: list[str]) -> list[str]:
    """The mount destinations missing in the root (each one itself, not its missing parents)."""
    from ketch.runtime.paths import resolve_in_root

    return sorted({path for path in (resolve_in_root(rootfs, d) for d in destinations) if not os.path.lexists(path)})


def remove_placeholders(paths: list[str]) -> None:
    """Remove mount points the runtime made, when they are still empty placeholders (empty files,
    directories holding nothing else); what the process put there stays."""
    def empty(path: str) -> bool:
        if os.path.islink(path):
            return False
        if os.path.isdir(path):
            return all(empty(os.path.join(path, entry)) for entry in os.listdir(path))
        return os.path.isfile(path) and os.path.getsize(path) == 0

    for path in sorted(paths, key=len, reverse=True):
        if os.path.lexists(path) and empty(path):
            if os.path.isdir(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
