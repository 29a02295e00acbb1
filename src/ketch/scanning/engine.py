"""``ketch.scan``: what is inside images, containers and trees, without running any of it.

An image or container of the store is scanned through a read-only view
(:meth:`ketch.storage.store.Store.view`): its layers' directories, which the view's overlay mount
is made of, are read layer by layer (each layer's result cached by its diff_id) and merged by
overlay's rules; the merged mount is what external scanners and the cross-layer package checks
read. A remote image (``docker://``, ``oci:``, archives...) is pulled layer by layer into a
temporary store first, sharing the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError, NotFoundError
from ketch.scanning.cache import ScanCache
from ketch.scanning.findings import config_findings
from ketch.scanning.layers import SCANNER_VERSION, LayerScan, scan_layer
from ketch.scanning.merge import MergeLayer, merge
from ketch.scanning.model import ScanReport
from ketch.scanning.sbom import purl_of

REMOTE_TRANSPORTS = ("docker://", "oci:", "oci-archive:", "docker-archive:", "dir:")


@dataclass
class ScanOptions:
    vuln_db: str | None = None  # an OSV database (a directory, a zip file, or a directory of zips)
    scanners: list[str] = field(default_factory=list)  # external scanners to run, by name
    scanner_options: dict[str, str] = field(default_factory=dict)
    scanner_dirs: tuple[str, ...] | None = None  # None: external.DEFAULT_DIRS
    jobs: int = 1
    cache: bool = True
    findings: bool = True  # file and configuration findings (packages are always listed)


def scan(targets: list[str] | str | None = None, *, store=None, rootfs: str | None = None,
         options: ScanOptions | None = None, context=None, policy=None) -> list[ScanReport]:
    """Scan images or containers of ``store`` (a :class:`ketch.storage.store.Store`; the default
    store when None), remote images (``docker://...`` and the other transports), or the
    directory tree ``rootfs``. One report per target, in the order given. ``context`` (a
    :class:`~ketch.image.context.SystemContext`) and ``policy`` (a trust
    :class:`~ketch.image.policy.Policy`), or callables giving them, serve remote images."""
    from ketch.storage.store import Store

    options = options or ScanOptions()
    if isinstance(targets, str):
        targets = [targets]
    store = store if store is not None or rootfs is not None else Store()
    cache = ScanCache(store.root / "scan-cache" if store is not None and options.cache else None)
    database = None
    if options.vuln_db:
        from ketch.scanning.vulns import VulnerabilityDatabase

        index_dir = store.root / "scan-cache" / "osv" if store is not None else Path(
            os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ketch" / "osv"
        database = VulnerabilityDatabase(options.vuln_db, index_dir)
    definitions = []
    if options.scanners:  # (the scanners' module imports subprocess and tomllib: only when asked)
        from ketch.scanning import external

        definitions = [external.find(name, options.scanner_dirs or external.DEFAULT_DIRS) for name in options.scanners]
    scanner = _Scanner(store, cache, database, definitions, options, context, policy)
    try:
        if rootfs is not None:
            if targets:
                raise InvalidInputError("give either --rootfs or images and containers, not both")
            return [scanner.rootfs(rootfs)]
        if not targets:
            raise InvalidInputError("nothing to scan: name images or containers, or give --rootfs or --all")
        if options.jobs <= 1 or len(targets) == 1:
            return [scanner.target(target) for target in targets]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            try:
                return list(pool.map(scanner.target, targets))
            except BaseException:  # (Ctrl-C: the workers wait on scanners; end those so they end)
                if definitions:
                    from ketch.scanning import external

                    external.kill_all()
                raise
    finally:
        if database is not None:
            database.close()


class _Scanner:
    def __init__(self, store, cache: ScanCache, database, definitions, options: ScanOptions, context, policy) -> None:
        self.store = store
        self.cache = cache
        self.database = database
        self.definitions = definitions
        self.options = options
        self.context = context
        self.policy = policy

    def target(self, name: str) -> ScanReport:
        if name.startswith(REMOTE_TRANSPORTS):
            return self.remote(name)
        from ketch.errors import NotFoundError as Missing

        try:
            self.store.lookup(name)
            container = False
        except Missing:
            try:
                self.store.container(name)
            except Missing:
                raise NotFoundError(f"{name}: no such image or container in the store") from None
            container = True
        return self.stored(self.store, name, "container" if container else "image")

    def stored(self, store, name: str, kind: str, shown: str | None = None) -> ScanReport:
        with store.view(name, container=kind == "container") as view:
            record = store.lookup(view.image_id)
            scans = [self.layer(layer) for layer in view.layers]
            merged = merge([MergeLayer(scan, layer.diff_id or "container", layer.snapshot, str(layer.path))
                            for scan, layer in zip(scans, view.layers)])
            report = ScanReport(shown or name, kind, view.image_id, [layer.diff_id for layer in view.layers
                                                                      if layer.diff_id],
                                merged.distro, merged.packages, merged.findings)
            report.cached_layers = sum(1 for scan in scans if getattr(scan, "cached", False))
            config = json.loads(record.config)
            if self.options.findings:
                report.findings += config_findings(config.get("config") or {}, config.get("history") or [])
            else:
                report.findings = []
            self.finish(report, str(view.path), view.layers[-1].chain_id if view.layers else "empty",
                        cacheable=kind == "image")
            return report

    def layer(self, layer) -> LayerScan:
        if not layer.diff_id:  # a container's own layer changes: never cached
            return scan_layer(str(layer.path), snapshot=layer.snapshot)
        key = self.cache.key("layer", SCANNER_VERSION, layer.chain_id if layer.snapshot else layer.diff_id,
                             "snapshot" if layer.snapshot else "delta")
        cached = self.cache.get(key)
        if cached is None:
            with self.cache.computing(key):
                cached = self.cache.get(key)
                if cached is None:
                    result = scan_layer(str(layer.path), snapshot=layer.snapshot)
                    self.cache.put(key, result.to_json())
                    return result
        result = LayerScan.from_json(cached)
        result.cached = True  # type: ignore[attr-defined]
        return result

    def rootfs(self, path: str) -> ScanReport:
        if not os.path.isdir(path):
            raise NotFoundError(f"--rootfs {path}: no such directory")
        merged = merge([MergeLayer(scan_layer(path, snapshot=True), "rootfs", True, path)])
        report = ScanReport(path, "rootfs", distro=merged.distro, packages=merged.packages,
                            findings=merged.findings if self.options.findings else [])
        self.finish(report, os.path.abspath(path), "", cacheable=False)
        return report

    def remote(self, name: str) -> ScanReport:
        """Pull into a temporary store (under the store's staging directory, so a killed scan's is
        removed by the next command), then scan it there, sharing this store's cache."""
        from ketch.image.context import SystemContext
        from ketch.image.policy import Policy
        from ketch.image.storage_transport import pull
        from ketch.storage.store import Store

        if self.store is None:
            raise InvalidInputError("scanning a remote image needs a store")
        with self.store.staging_dir("scan") as staging:
            temporary = Store(staging / "root", staging / "run", self.store.driver.name)
            context = self.context() if callable(self.context) else (self.context or SystemContext())
            policy = self.policy() if callable(self.policy) else self.policy
            image_id = pull(temporary, name, context, policy or Policy.load_default())
            try:
                return self.stored(temporary, image_id, "remote", shown=name)
            finally:
                _release(temporary)

    def finish(self, report: ScanReport, tree: str, cache_id: str, *, cacheable: bool) -> None:
        distro = report.distro
        for package in report.packages:
            package.purl = purl_of(package, distro)
        report.scanners = [f"ketch {SCANNER_VERSION}"]
        for definition in self.definitions:
            from ketch.scanning import external

            version = definition.version()
            report.scanners.append(f"{definition.name} {version}".strip())
            key = self.cache.key("external", cache_id, definition.name, version,
                                 json.dumps(self.options.scanner_options, sort_keys=True)) if cacheable else None
            cached = self.cache.get(key) if key else None
            if cached is not None:
                from ketch.scanning.model import Finding

                report.findings += [Finding.from_json(f) for f in cached["findings"]]
                continue
            with (self.store.staging_dir("scanner") if self.store is not None else
                  contextlib.nullcontext(None)) as workdir:
                results = external.run(definition, tree, report.target, self.options.scanner_options, workdir)
            if key:
                self.cache.put(key, {"findings": [f.to_json() for f in results]})
            report.findings += results
        if self.database is not None:
            report.vuln_db = self.database.digest
            report.vulnerabilities = self.database.match(report.packages, distro)
        report.findings.sort(key=lambda f: (f.path, f.kind, f.message))


def _release(store) -> None:
    """Close a temporary store's database before its directory goes."""
    with contextlib.suppress(Exception):  # noqa: BLE001 (best effort: the directory is removed anyway)
        store.db.close()


def all_targets(store, *, images: bool = True, containers: bool = True) -> list[str]:
    """Every image (by id) and container (by name) of the store, for ``--all``."""
    names = [record.id for record in store.images()] if images else []
    names += [c["name"] for c in store.containers()] if containers else []
    return names
