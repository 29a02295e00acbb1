"""Scanning one layer's directory: every entry is looked at through directory file descriptors,
never through a symbolic link, so nothing a layer holds (links out of the tree, loops, fifos,
device nodes, huge files) can lead the scan outside it, block it or make it read without bound.

The result (:class:`LayerScan`) is what the layer itself holds: its entries, whiteouts and
opaque directories, and for each file that told something, the packages and findings it gave.
It depends only on the layer's content, so it is cached by the layer's diff_id
(:mod:`ketch.scanning.cache`) and the merge of an image's layers (:mod:`ketch.scanning.merge`) decides
what is still visible at the top.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field

from ketch.scanning import catalogers, findings
from ketch.scanning.catalogers import CatalogError
from ketch.scanning.model import Finding, Package
from ketch.storage.apply import is_opaque

# Bump when what a layer scan records changes: it is part of every cache key.
SCANNER_VERSION = "1"

MAX_DATABASE = 64 << 20  # a package database larger than this is reported, not read
MAX_CONTENT = 1 << 20  # files searched for keys and credentials
_NOT_SEARCHED = re.compile(r"^usr/share/(doc|man|info|locale|i18n|zoneinfo|terminfo)/|\.(gz|xz|bz2|zst|mo)$")
_USRMERGED = ("bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/")
_DPKG_INFO = "var/lib/dpkg/info/"
_RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
_RPM_OTHER = ("var/lib/rpm/Packages", "var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")
_DATABASES = ("var/lib/dpkg/status", "lib/apk/db/installed", *_RPM_SQLITE, *_RPM_OTHER)


@dataclass
class LayerScan:
    paths: list[str] = field(default_factory=list)  # every entry but directories
    dirs: list[str] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    # path -> what that file told: "packages", "findings" (JSON lists), "dpkg_list" {package, arch,
    # files}, "copyright" {package, licenses}, "md5sums" {package, mtime}, "os_release" {...}
    items: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"paths": self.paths, "dirs": self.dirs, "whiteouts": self.whiteouts, "opaque": self.opaque,
                "items": self.items}

    @classmethod
    def from_json(cls, data: dict) -> LayerScan:
        return cls(data["paths"], data["dirs"], data["whiteouts"], data["opaque"], data["items"])


def usrmerge_candidates(path: str) -> tuple[str, ...]:
    """Where a path a package lists may be in a tree whose /bin, /lib... are links into /usr."""
    return (path, "usr/" + path) if path.startswith(_USRMERGED) else (path,)


class _LayerScanner:
    def __init__(self, root: str, snapshot: bool) -> None:
        self.root = root
        self.snapshot = snapshot
        self.result = LayerScan()
        self.mtimes: dict[str, float] = {}  # regular files (for the dpkg check after the walk)

    # -- helpers --------------------------------------------------------------

    def add(self, path: str, key: str, value) -> None:
        entry = self.result.items.setdefault(path, {})
        if key in ("packages", "findings"):
            entry.setdefault(key, []).extend(v.to_json() for v in value)
        else:
            entry[key] = value

    def warn(self, path: str, message: str) -> None:
        self.add(path, "findings", [Finding("warning", "info", message, "/" + path)])

    @staticmethod
    def read(dir_fd: int, name: str, limit: int) -> bytes:
        return read_bounded(dir_fd, name, limit)

    def catalog(self, path: str, what, *args, **kwargs) -> None:
        try:
            found = what(*args, **kwargs)
        except CatalogError as exc:
            self.warn(path, f"{path}: {exc}; its packages are not listed")
            return
        if found:
            self.add(path, "packages", found)

    # -- the walk -------------------------------------------------------------

    def walk(self) -> LayerScan:
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pending = [""]
            while pending:
                relative = pending.pop()
                try:
                    fd = os.open(relative, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=root_fd) if relative else os.dup(root_fd)
                except OSError as exc:
                    self.warn(relative, f"/{relative}: cannot be listed ({exc.strerror})")
                    continue
                try:
                    self.directory(relative, fd, pending)
                finally:
                    os.close(fd)
        finally:
            os.close(root_fd)
        self.check_dpkg_files()
        return self.result

    def directory(self, relative: str, fd: int, pending: list[str]) -> None:
        with os.scandir(fd) as listing:
            entries = list(listing)
        prefix = relative + "/" if relative else ""
        for entry in entries:
            path = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # (gone since the listing)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                self.result.dirs.append(path)
                if not self.snapshot:
                    if is_opaque(f"{self.root}/{path}"):
                        self.result.opaque.append(path)
                if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                    self.add(path, "findings", findings.file_metadata("/" + path, st))
                pending.append(path)
                continue
            if not self.snapshot and stat.S_ISCHR(mode) and st.st_rdev == 0:
                self.result.whiteouts.append(path)
                continue
            self.result.paths.append(path)
            if stat.S_ISREG(mode):
                self.mtimes[path] = st.st_mtime
                try:
                    self.regular(path, fd, entry.name, st)
                except OSError as exc:
                    self.warn(path, f"/{path}: cannot be read ({exc.strerror or exc})")
            elif path in _DATABASES or path.startswith("var/lib/dpkg/status.d/") or \
                    path.endswith("/package.json") and "node_modules/" in path:
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "a fifo" if stat.S_ISFIFO(mode) else \
                    "not a regular file"
                self.warn(path, f"/{path} is {kind}; not read")

    def regular(self, path: str, dir_fd: int, name: str, st) -> None:
        mode, size = st.st_mode, st.st_size
        if mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH):
            self.add(path, "findings", findings.file_metadata("/" + path, st))
        is_database = path in _DATABASES or path.startswith(("var/lib/dpkg/status.d/", _DPKG_INFO)) or \
            name in ("METADATA", "PKG-INFO", "package.json", "pom.properties", "installed")
        if is_database and size > MAX_DATABASE:
            self.warn(path, f"/{path} is {size >> 20} MiB, over the {MAX_DATABASE >> 20} MiB a package "
                            "database may be; not read")
            return
        if path == "var/lib/dpkg/status":
            self.catalog(path, catalogers.dpkg_status, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
        elif path.startswith("var/lib/dpkg/status.d/") and "/" not in path[23:]:
            if name.endswith(".md5sums"):
                self.add(path, "md5sums", {"package": name[:-8].split(":")[0], "mtime": st.st_mtime})
            elif not name.startswith("."):
                self.catalog(path, catalogers.dpkg_status, self.read(dir_fd, name, MAX_DATABASE), "/" + path,
                             require_installed=False)
        elif path.startswith(_DPKG_INFO) and "/" not in path[len(_DPKG_INFO):]:
            if name.endswith(".list"):
                package, _, arch = name[:-5].partition(":")
                files = [line for line in self.read(dir_fd, name, MAX_DATABASE).decode("utf-8", "replace")
                         .splitlines() if line.startswith("/") and line != "/."]
                self.add(path, "dpkg_list", {"package": package, "arch": arch, "files": files})
            elif name.endswith(".md5sums"):
                self.add(path, "md5sums", {"package": name[:-8].split(":")[0], "mtime": st.st_mtime})
        elif path.startswith("usr/share/doc/") and name == "copyright" and path.count("/") == 4:
            licenses = catalogers.dpkg_copyright_licenses(self.read(dir_fd, name, 4 << 20))
            if licenses:
                self.add(path, "copyright", {"package": path.split("/")[3], "licenses": licenses})
        elif path == "lib/apk/db/installed":
            self.catalog(path, catalogers.apk_installed, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
        elif path in _RPM_SQLITE:
            self.catalog(path, catalogers.rpm_sqlite, f"{self.root}/{path}", "/" + path)
        elif path in _RPM_OTHER:
            self.warn(path, f"/{path}: an rpm database in the BerkeleyDB or ndb format, which ketch does "
                            "not read (rpm 4.16 and newer keep rpmdb.sqlite; rpmdb --rebuilddb converts)")
        elif path in ("etc/os-release", "usr/lib/os-release"):
            self.add(path, "os_release", _os_release(self.read(dir_fd, name, 64 << 10)))
        elif name == "METADATA" and path.endswith(".dist-info/METADATA") or \
                name == "PKG-INFO" and path.endswith(".egg-info/PKG-INFO"):
            self.catalog(path, catalogers.python_metadata, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
            if name == "METADATA" and path in self.result.items and "packages" in self.result.items[path]:
                self.python_files(path, dir_fd)
        elif path.endswith(".egg-info") and size < MAX_DATABASE:  # (an egg-info file, not a directory)
            self.catalog(path, catalogers.python_metadata, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
        elif name == "package.json" and _npm_installed(path):
            self.catalog(path, catalogers.npm_package, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
        elif name == "pom.properties" and "/META-INF/maven/" in "/" + path:
            self.catalog(path, catalogers.maven_properties, self.read(dir_fd, name, MAX_DATABASE), "/" + path)
        elif name.endswith((".jar", ".war", ".ear")):
            with os.fdopen(open_regular(dir_fd, name), "rb") as archive:
                self.catalog(path, catalogers.java_archive, archive, "/" + path)
            return
        if mode & 0o111 and size >= 64:
            if self.executable(path, dir_fd, name):
                return  # (an ELF file: not searched for text)
        if size <= MAX_CONTENT and size and not _NOT_SEARCHED.search(path):
            data = self.read(dir_fd, name, MAX_CONTENT)
            if b"\0" not in data[:8192]:
                found = findings.file_contents("/" + path, data)
                if found:
                    self.add(path, "findings", found)

    def executable(self, path: str, dir_fd: int, name: str) -> bool:
        """File capabilities, and the modules of a Go binary. True if the file is ELF."""
        try:
            raw = os.getxattr(f"{self.root}/{path}", "security.capability", follow_symlinks=False)
        except OSError:
            raw = b""
        if raw:
            self.add(path, "findings", [findings.file_capabilities("/" + path, raw)])
        with os.fdopen(open_regular(dir_fd, name), "rb") as file:
            if file.read(4) != b"\x7fELF":
                return False
            file.seek(0)
            try:
                section = catalogers.elf_section(file, b".go.buildinfo")
            except (OSError, ValueError, OverflowError):
                section = None
        if section:
            self.catalog(path, catalogers.go_buildinfo, section, "/" + path)
        return True

    def python_files(self, path: str, dir_fd: int) -> None:
        site = path.rsplit("/", 2)[0]
        try:
            data = self.read(dir_fd, "RECORD", MAX_DATABASE)
        except OSError:
            return
        packages = self.result.items[path]["packages"]
        packages[0]["files"] = catalogers.python_record_files(data, site)

    def check_dpkg_files(self) -> None:
        """Files a package installed and this same layer changed afterwards: newer than the package's
        md5sums list (written when dpkg installed it), and with another MD5 than it lists."""
        by_time = sorted((mtime, path) for path, mtime in self.mtimes.items())
        times = [mtime for mtime, _ in by_time]
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for path, item in list(self.result.items.items()):
                if "md5sums" not in item:
                    continue
                installed = item["md5sums"]["mtime"]
                listing = read_listing(root_fd, path)
                newer = [p for _, p in by_time[bisect.bisect_right(times, installed + 1):]]
                for modified in changed_package_files(listing, dict.fromkeys(newer), lambda _p, _v: True,
                                                      lambda p, _v: md5_of(root_fd, p)):
                    self.add(modified, "findings", [Finding(
                        "modified-package-file", "medium",
                        f"changed since dpkg installed it (package {item['md5sums']['package']}: its MD5 differs)",
                        "/" + modified)])
        finally:
            os.close(root_fd)


def open_regular(dir_fd: int, path: str) -> int:
    """A file descriptor of the regular file at ``path`` (relative to ``dir_fd``), opened without
    following a link or blocking on a fifo; OSError for anything else (or anything swapped in
    since it was listed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    return fd


def read_bounded(dir_fd: int, path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file at ``path`` (OSError if it is not one)."""
    fd = open_regular(dir_fd, path)
    try:
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_listing(root_fd: int, path: str) -> bytes:
    """A package database file of the tree at ``root_fd`` ("" if it cannot be read)."""
    try:
        return read_bounded(root_fd, path, MAX_DATABASE)
    except OSError:
        return b""


def changed_package_files(listing: bytes, present: dict, suspect, md5) -> list[str]:
    """The files of an md5sums ``listing`` that are in ``present`` (path -> anything) with
    ``suspect(path, value)`` true, and whose ``md5(path, value)`` differs from the listed one."""
    changed = []
    for line in listing.decode("utf-8", "replace").splitlines():
        expected, _, listed = line.partition("  ")
        if len(expected) != 32 or not listed:
            continue
        for candidate in usrmerge_candidates(listed.lstrip("/")):
            if candidate in present:
                value = present[candidate]
                if suspect(candidate, value) and md5(candidate, value) not in (expected, None):
                    changed.append(candidate)
                break
    return changed


def md5_of(root_fd: int, path: str) -> str | None:
    try:
        fd = open_regular(root_fd, path)
    except OSError:
        return None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _npm_installed(path: str) -> bool:
    """``node_modules/NAME/package.json`` or ``node_modules/@SCOPE/NAME/package.json``."""
    parts = path.split("/")
    return len(parts) >= 3 and (parts[-3] == "node_modules" or
                                len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@"))


def _os_release(data: bytes) -> dict:
    values = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip().isidentifier():
            values[name.strip()] = value.strip().strip("\"'")
    return {k: values.get(k, "") for k in ("ID", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME")}


def scan_layer(root: str, *, snapshot: bool = False) -> LayerScan:
    """What the layer (or whole tree, for a ``snapshot``) at ``root`` holds and tells."""
    return _LayerScanner(root, snapshot).walk()


__all__ = ["LayerScan", "Package", "scan_layer", "SCANNER_VERSION"]
