"""The merge of an image's layer scans into what the image holds at the top, by overlay's rules:
a layer's entry hides the same path below it, a whiteout hides a path and everything under it,
an opaque directory hides what lower layers hold under it, and a file replacing a directory
hides that directory's tree. A package or finding keeps the layer that first brought it while
the layers above keep it unchanged (the dpkg status file is rewritten by every layer that
installs a package; the packages it already listed stay attributed to their own layer)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ketch.scanning.layers import LayerScan, changed_package_files, md5_of, read_listing, usrmerge_candidates
from ketch.scanning.model import Distro, Finding, Package


@dataclass
class MergeLayer:
    scan: LayerScan
    label: str  # the layer's diff_id ("container" for a container's own layer)
    snapshot: bool = False  # the scan is of a whole tree (vfs), not of what the layer changed
    root: str = ""  # the layer's directory, to read files at the merge ("" when unavailable)


@dataclass
class Merged:
    packages: list[Package]
    findings: list[Finding]
    distro: Distro


def _identity(kind: str, value: dict) -> tuple:
    if kind == "packages":
        return (value["type"], value["namespace"], value["name"], value["version"], value["arch"])
    return (value["kind"], value["path"], value["message"])


def _inherit(old: dict | None, new: dict, label: str) -> dict:
    """``new`` (a layer's item) with each package and finding that ``old`` already had keeping
    the layer ``old`` gave it; the rest get ``label``."""
    merged = dict(new)
    for kind in ("packages", "findings"):
        if kind not in new:
            continue
        earlier = {_identity(kind, v): v["layer"] for v in (old or {}).get(kind, [])}
        merged[kind] = [{**v, "layer": earlier.get(_identity(kind, v), label)} for v in new[kind]]
    return merged


class _Tree:
    """What is visible at the top so far: path -> the index of the layer holding it."""

    def __init__(self) -> None:
        self.present: dict[str, int] = {}
        self.dirs: set[str] = set()
        self.items: dict[str, dict] = {}

    def drop_under(self, directory: str, *, itself: bool) -> None:
        prefix = directory + "/"
        for table in (self.present, self.items):
            for path in [p for p in table if p.startswith(prefix)]:
                del table[path]
            if itself:
                table.pop(directory, None)
        self.dirs = {d for d in self.dirs if not d.startswith(prefix) and not (itself and d == directory)}

    def apply(self, index: int, layer: MergeLayer) -> None:
        scan = layer.scan
        if layer.snapshot:
            old_items = self.items
            self.present = dict.fromkeys(scan.paths, index)
            self.dirs = set(scan.dirs)
            self.items = {p: _inherit(old_items.get(p), item, layer.label) for p, item in scan.items.items()}
            return
        for path in scan.whiteouts:
            self.drop_under(path, itself=True) if path in self.dirs else (
                self.present.pop(path, None), self.items.pop(path, None))
        for path in scan.opaque:
            if path in self.dirs:
                self.drop_under(path, itself=False)
        for path in scan.paths:
            if path in self.dirs:  # a file where a directory was: the tree under it goes
                self.drop_under(path, itself=True)
            self.present[path] = index
            if path not in scan.items:
                self.items.pop(path, None)  # (replaced by a file that tells nothing)
        for path in scan.dirs:
            self.dirs.add(path)
            if self.present.get(path) is not None:  # a directory where a file was
                del self.present[path]
                self.items.pop(path, None)
        for path, item in scan.items.items():
            self.items[path] = _inherit(self.items.get(path), item, layer.label)


def merge(layers: list[MergeLayer]) -> Merged:
    tree = _Tree()
    for index, layer in enumerate(layers):
        tree.apply(index, layer)
    findings = [Finding.from_json(f) for item in tree.items.values() for f in item.get("findings", [])]
    findings += _changed_across_layers(tree, layers)
    distro = Distro()
    for path in ("etc/os-release", "usr/lib/os-release"):
        release = tree.items.get(path, {}).get("os_release")
        if release:
            distro = Distro(release.get("ID", ""), release.get("VERSION_ID", ""), release.get("VERSION_CODENAME", ""),
                            release.get("PRETTY_NAME", ""))
            break
    packages = _packages(tree)
    return Merged(packages, findings, distro)


def _packages(tree: _Tree) -> list[Package]:
    lists: dict[tuple[str, str], list[str]] = {}
    licenses: dict[str, list[str]] = {}
    for item in tree.items.values():
        if "dpkg_list" in item:
            listing = item["dpkg_list"]
            lists[(listing["package"], listing["arch"])] = listing["files"]
        if "copyright" in item:
            licenses[item["copyright"]["package"]] = item["copyright"]["licenses"]
    packages = []
    for item in tree.items.values():
        for value in item.get("packages", []):
            package = Package.from_json(value)
            if package.type == "deb":
                package.files = package.files or lists.get((package.name, package.arch)) or \
                    lists.get((package.name, "")) or []
                package.licenses = package.licenses or licenses.get(package.name, [])
            packages.append(package)
    packages.sort(key=lambda p: (p.type, p.namespace, p.name, p.version, p.path))
    return packages


def _changed_across_layers(tree: _Tree, layers: list[MergeLayer]) -> list[Finding]:
    """Package files a layer above the package's own replaced with other contents (the
    package's layer found the ones it changed itself: :meth:`_LayerScanner.check_dpkg_files`)."""
    found: list[Finding] = []
    fds: dict[int, int] = {}

    def layer_fd(index: int) -> int:
        if index not in fds:
            fds[index] = os.open(layers[index].root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return fds[index]

    files_of = {item["dpkg_list"]["package"]: item["dpkg_list"]["files"] for item in tree.items.values()
                if "dpkg_list" in item}
    above: dict[int, dict[str, int]] = {}  # layer index -> the visible paths layers above it hold
    try:
        for path, item in tree.items.items():
            owner = tree.present.get(path)
            if "md5sums" not in item or owner is None or layers[owner].snapshot or not layers[owner].root:
                continue
            if owner not in above:
                above[owner] = {p: i for p, i in tree.present.items() if i > owner}
            upper = above[owner]
            package = item["md5sums"]["package"]
            listed = files_of.get(package)
            if not upper or listed is not None and not any(
                    c in upper for f in listed for c in usrmerge_candidates(f.lstrip("/"))):
                continue
            changed = changed_package_files(read_listing(layer_fd(owner), path), upper, lambda _p, _i: True,
                                            lambda p, index: md5_of(layer_fd(index), p)
                                            if layers[index].root else None)
            for modified in changed:
                found.append(Finding("modified-package-file", "medium",
                                     f"changed since dpkg installed it (package {package}: its MD5 differs)",
                                     "/" + modified, layers[tree.present[modified]].label))
    finally:
        for fd in fds.values():
            os.close(fd)
    return found
