"""Paths inside a container's root file system, resolved as the container would see them: by the
runtime's init for mount targets and device nodes, and by the engine and the builder for copies;
and the small reads and writes of the runtime's start path (state, cgroup and /proc files).
Only ``os`` is imported: the init imports this before it changes its root."""

from __future__ import annotations

import os


def resolve_in_root(root: str, path: str, *, max_links: int = 40) -> str:
    """The host path of ``path`` inside ``root``: symbolic links are followed as if ``root`` were
    ``/``, so a link in an image can never lead out of it. The result may not exist."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                raise OSError(40, "too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


# Whole small files through os rather than open(): io's file objects cost an fstat, an ioctl and
# an lseek more per file, and some microseconds each, over the dozens of files a start touches.

def read_bytes(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes, mode: int = 0o666) -> None:
    """Create or truncate ``path`` and write ``data`` (one write: what cgroup files expect)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
