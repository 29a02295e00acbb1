"""What a scan finds: packages, findings, vulnerabilities, and the report that holds them.

Everything here converts to and from plain JSON (``to_json``/``from_json``): the per-layer cache
stores it that way, and ``ketch scan --format json`` prints it (the schema is in docs/scan.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Self

SEVERITIES = ("unknown", "info", "low", "medium", "high", "critical")


def _shallow(value) -> dict:
    """A record's fields as a dict (``dataclasses.asdict`` deep-copies every list: ten times slower)."""
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


class _Json:
    """to_json/from_json for the record dataclasses below (unknown keys in the JSON are ignored)."""

    def to_json(self) -> dict:
        return _shallow(self)

    @classmethod
    def from_json(cls, data: dict) -> Self:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})  # type: ignore[arg-type]


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


@dataclass
class Package(_Json):
    """One installed package, as its ecosystem's database or metadata file describes it."""
    type: str  # purl type: deb, rpm, apk, pypi, npm, golang, maven
    name: str
    version: str
    path: str  # the file it was read from, in the image (/var/lib/dpkg/status, .../METADATA)
    layer: str = ""  # the diff_id of the layer that brought it (set when layers are merged)
    arch: str = ""
    source_name: str = ""  # dpkg/rpm/apk: the source package (what Debian's advisories name)
    source_version: str = ""
    namespace: str = ""  # purl namespace: debian, alpine, a Maven group, a Go module's host path
    licenses: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    purl: str = ""

    @property
    def key(self) -> tuple:
        return (self.type, self.namespace, self.name, self.version, self.arch, self.path)



@dataclass
class Finding(_Json):
    """Something in the image worth a look: a setuid file, a private key, root as the user..."""
    kind: str  # setuid, setgid, world-writable, file-capabilities, private-key, credentials, secret-env,
    #            secret-history, root-user, no-user, no-healthcheck, modified-package-file, warning, scanner
    severity: str
    message: str
    path: str = ""  # in the image; "" for the image's configuration
    layer: str = ""
    scanner: str = "ketch"

    @property
    def key(self) -> tuple:
        return (self.kind, self.path, self.message, self.scanner)



@dataclass
class Vulnerability(_Json):
    """An advisory of the vulnerability database that names an installed package's version."""
    id: str
    package: str
    version: str
    ecosystem: str
    severity: str
    aliases: list[str] = field(default_factory=list)
    fixed: str = ""  # the first fixed version, "" when none is known
    summary: str = ""
    layer: str = ""
    purl: str = ""

    @property
    def key(self) -> tuple:
        return (self.id, self.ecosystem, self.package, self.version)



@dataclass
class Distro(_Json):
    """The operating system of the tree, from /etc/os-release."""
    id: str = ""  # debian, alpine, rhel, fedora, ...
    version_id: str = ""
    codename: str = ""
    pretty_name: str = ""


@dataclass
class ScanReport:
    """The result of scanning one target (an image, a container, a directory tree)."""
    target: str
    kind: str  # image, container, rootfs, remote
    image_id: str = ""
    layers: list[str] = field(default_factory=list)  # diff_ids, bottom first
    distro: Distro = field(default_factory=Distro)
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    scanners: list[str] = field(default_factory=list)  # "ketch 1", "clamav 1.4.6"...
    vuln_db: str = ""  # the vulnerability database's digest, when one was used
    cached_layers: int = 0  # how many layers' results came from the cache

    def worst_severity(self) -> str:
        ranks = [severity_rank(v.severity) for v in self.vulnerabilities] + \
                [severity_rank(f.severity) for f in self.findings]
        return SEVERITIES[max(ranks)] if ranks else "unknown"

    def to_json(self) -> dict:
        return {
            "target": self.target, "kind": self.kind, "image_id": self.image_id, "layers": self.layers,
            "distro": self.distro.to_json(), "scanners": self.scanners, "vuln_db": self.vuln_db,
            "cached_layers": self.cached_layers,
            "packages": [p.to_json() for p in self.packages],
            "findings": [f.to_json() for f in self.findings],
            "vulnerabilities": [v.to_json() for v in self.vulnerabilities],
        }

    @classmethod
    def from_json(cls, data: dict) -> ScanReport:
        return cls(data["target"], data["kind"], data.get("image_id", ""), data.get("layers", []),
                   Distro(**data.get("distro", {})), [Package.from_json(p) for p in data.get("packages", [])],
                   [Finding.from_json(f) for f in data.get("findings", [])],
                   [Vulnerability.from_json(v) for v in data.get("vulnerabilities", [])],
                   data.get("scanners", []), data.get("vuln_db", ""), data.get("cached_layers", 0))
