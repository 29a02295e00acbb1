"""Known vulnerabilities, offline: an OSV database the user downloaded, matched against the
packages a scan found with each ecosystem's own version order (univers: dpkg epochs and tildes,
rpm, apk, PEP 440, semver, Go pseudo-versions, Maven).

The database is a directory of OSV JSON files, or OSV's per-ecosystem zip files (``all.zip``,
as https://osv-vulnerabilities.storage.googleapis.com publishes them), or a directory of those.
It is indexed once into SQLite beside the scan cache, keyed by the database's digest, so a scan
reads only the advisories of the packages it has.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import zipfile
from pathlib import Path

from ketch.errors import ScanError
from ketch.scanning.model import Distro, Package, Vulnerability

INDEX_VERSION = "1"

# The OSV ecosystem of an rpm distribution, by os-release ID
_RPM_ECOSYSTEMS = {"rocky": "Rocky Linux", "almalinux": "AlmaLinux", "rhel": "Red Hat", "opensuse-leap": "openSUSE",
                   "sles": "SUSE", "mariner": "Mariner", "azurelinux": "Azure Linux"}


def _normal_name(ecosystem: str, name: str) -> str:
    base = ecosystem.split(":", 1)[0]
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def _version_class(ecosystem: str):
    from univers import versions

    base = ecosystem.split(":", 1)[0]
    return {
        "Debian": versions.DebianVersion, "Ubuntu": versions.DebianVersion,
        "Alpine": versions.AlpineLinuxVersion,
        "Rocky Linux": versions.RpmVersion, "AlmaLinux": versions.RpmVersion, "Red Hat": versions.RpmVersion,
        "openSUSE": versions.RpmVersion, "SUSE": versions.RpmVersion, "Mariner": versions.RpmVersion,
        "Azure Linux": versions.RpmVersion,
        "PyPI": versions.PypiVersion, "npm": versions.SemverVersion, "Go": versions.GolangVersion,
        "Maven": versions.MavenVersion,
    }.get(base)


def ecosystem_of(package: Package, distro: Distro) -> tuple[str, str, str] | None:
    """(OSV ecosystem, name, version) to look a package up by; None when OSV has no ecosystem for it.
    Distribution packages go by their source package, as the distributions' advisories name them."""
    if package.type == "deb":
        release = {"debian": "Debian", "ubuntu": "Ubuntu"}.get(distro.id)
        if not release or not distro.version_id:
            return None
        return f"{release}:{distro.version_id}", package.source_name or package.name, \
            package.source_version or package.version
    if package.type == "apk":
        if distro.id != "alpine" or not distro.version_id:
            return None
        major_minor = ".".join(distro.version_id.split(".")[:2])
        return f"Alpine:v{major_minor}", package.source_name or package.name, package.version
    if package.type == "rpm":
        base = _RPM_ECOSYSTEMS.get(distro.id)
        if not base:
            return None
        major = distro.version_id.split(".")[0]
        return (f"{base}:{major}" if major and base != "Red Hat" else base), package.source_name or package.name, \
            package.version
    if package.type == "pypi":
        return "PyPI", package.name, package.version
    if package.type == "npm":
        return "npm", f"{package.namespace}/{package.name}" if package.namespace else package.name, package.version
    if package.type == "golang":
        return "Go", package.name, package.version
    if package.type == "maven":
        return "Maven", f"{package.namespace}:{package.name}", package.version
    return None


def _score_severity(score: float) -> str:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else "unknown"


def severity_of(record: dict, affected: dict) -> str:
    """The advisory's severity: a CVSS vector's base score (computed with the cvss library), else
    the qualitative rating the database gives (GHSA's, a distribution's), else unknown."""
    for entry in record.get("severity") or []:
        vector = str(entry.get("score", "")) if isinstance(entry, dict) else ""
        try:
            if vector.startswith("CVSS:3"):
                from cvss import CVSS3

                return _score_severity(float(CVSS3(vector).scores()[0]))
            if vector.startswith("CVSS:4"):
                from cvss import CVSS4

                return _score_severity(float(CVSS4(vector).base_score))
        except Exception:  # noqa: BLE001 (the cvss library raises its own several errors on bad vectors)
            continue
    for specific in (affected.get("ecosystem_specific"), affected.get("database_specific"),
                     record.get("database_specific")):
        rating = str((specific or {}).get("severity", "")).lower() if isinstance(specific, dict) else ""
        rating = {"moderate": "medium", "important": "high", "negligible": "low", "unimportant": "low"}.get(
            rating, rating)
        if rating in ("low", "medium", "high", "critical"):
            return rating
    return "unknown"


def affected_by(version: str, affected: dict, ecosystem: str) -> tuple[bool, str]:
    """Whether ``version`` is affected, by the OSV rules (a listed version, or within a range's
    introduced..fixed / ..last_affected events, evaluated in version order); and the first fixed
    version above it, if known."""
    listed = version in (affected.get("versions") or [])
    make = _version_class(ecosystem)
    if make is None:
        return listed, ""
    try:
        current = make(version.lstrip("v") if make.__name__ == "SemverVersion" else version)
    except Exception:  # noqa: BLE001 (univers raises several kinds of errors for versions it cannot parse)
        return listed, ""
    hit = listed
    first_fixed = ""
    for ranged in affected.get("ranges") or []:
        if not isinstance(ranged, dict) or ranged.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        events = []
        for event in ranged.get("events") or []:
            if not isinstance(event, dict) or len(event) != 1:
                continue
            (kind, value), = event.items()
            if kind == "introduced" and value == "0":
                events.append((0, None, kind, value))
                continue
            try:
                parsed = make(str(value).lstrip("v") if make.__name__ == "SemverVersion" else str(value))
            except Exception:  # noqa: BLE001 (as above)
                continue
            events.append((1, parsed, kind, value))
        events.sort(key=_EventOrder)
        in_range = False
        for _, parsed, kind, value in events:
            if parsed is not None and current < parsed:
                if in_range and kind == "fixed":
                    first_fixed = first_fixed or value
                break
            if kind == "introduced":
                in_range = True
            elif kind == "fixed" or kind == "last_affected" and current > parsed:
                in_range = False
            elif kind == "limit":
                in_range = False
        if in_range:
            hit = True
    return hit, first_fixed


class _EventOrder:
    """Sorts OSV events: "introduced: 0" first, then by version."""

    def __init__(self, event) -> None:
        self.event = event

    def __lt__(self, other: _EventOrder) -> bool:
        if self.event[0] != other.event[0]:
            return self.event[0] < other.event[0]
        if self.event[1] is None or other.event[1] is None:
            return False
        return self.event[1] < other.event[1]


class VulnerabilityDatabase:
    """An OSV database on disk, indexed by (ecosystem, package name) in ``index_dir``."""

    def __init__(self, path: str | os.PathLike, index_dir: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ScanError(f"vulnerability database {self.path}: no such file or directory")
        self.files = self._files()
        if not self.files:
            raise ScanError(f"vulnerability database {self.path}: no OSV JSON files or zip files in it")
        self.digest = self._digest()
        self.index_path = index_dir / f"osv-{self.digest[7:39]}.sqlite"
        if not self.index_path.exists():
            self._build_index(index_dir)
        self.conn = sqlite3.connect(f"file:{self.index_path}?mode=ro", uri=True, check_same_thread=False)

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.rglob("*") if p.suffix in (".json", ".zip") and p.is_file())

    def _digest(self) -> str:
        """Of the files' names, sizes and modification times (the files are the user's download,
        replaced as a whole when updated), and of the index's own version."""
        digest = hashlib.sha256(INDEX_VERSION.encode())
        for file in self.files:
            st = file.stat()
            digest.update(f"{file.relative_to(self.path) if file != self.path else file.name}\0{st.st_size}\0"
                          f"{st.st_mtime_ns}\n".encode())
        return "sha256:" + digest.hexdigest()

    def _records(self):
        for file in self.files:
            if file.suffix == ".zip":
                try:
                    with zipfile.ZipFile(file) as archive:
                        for info in archive.infolist():
                            if info.filename.endswith(".json") and info.file_size < 64 << 20:
                                yield f"{file.name}:{info.filename}", archive.read(info)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise ScanError(f"vulnerability database {file}: not a readable zip file ({exc})") from exc
            else:
                yield str(file), file.read_bytes()

    def _build_index(self, index_dir: Path) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.index_path.with_name(f".{self.index_path.name}.{os.getpid()}")
        conn = sqlite3.connect(temporary)
        try:
            conn.execute("CREATE TABLE advisories (ecosystem TEXT, name TEXT, record TEXT)")
            rows = []
            for name, data in self._records():
                try:
                    record = json.loads(data)
                except ValueError as exc:
                    raise ScanError(f"vulnerability database: {name} is not JSON ({exc.args[0][:80]})") from exc
                if not isinstance(record, dict) or not isinstance(record.get("id"), str) or \
                        not isinstance(record.get("affected", []), list):
                    raise ScanError(f"vulnerability database: {name} is not an OSV record (no id or affected list)")
                text = json.dumps(record)
                for affected in record.get("affected") or []:
                    package = affected.get("package") if isinstance(affected, dict) else None
                    if isinstance(package, dict) and package.get("ecosystem") and package.get("name"):
                        ecosystem = str(package["ecosystem"])
                        rows.append((ecosystem, _normal_name(ecosystem, str(package["name"])), text))
                if len(rows) > 10_000:
                    conn.executemany("INSERT INTO advisories VALUES (?, ?, ?)", rows)
                    rows = []
            conn.executemany("INSERT INTO advisories VALUES (?, ?, ?)", rows)
            conn.execute("CREATE INDEX by_package ON advisories (ecosystem, name)")
            conn.commit()
        except BaseException:
            conn.close()
            temporary.unlink(missing_ok=True)
            raise
        conn.close()
        os.replace(temporary, self.index_path)

    def match(self, packages: list[Package], distro: Distro) -> list[Vulnerability]:
        found: dict[tuple, Vulnerability] = {}
        for package in packages:
            lookup = ecosystem_of(package, distro)
            if lookup is None:
                continue
            ecosystem, name, version = lookup
            rows = self.conn.execute("SELECT record FROM advisories WHERE ecosystem = ? AND name = ?",
                                     (ecosystem, _normal_name(ecosystem, name))).fetchall()
            for (text,) in rows:
                record = json.loads(text)
                for affected in record.get("affected") or []:
                    named = (affected.get("package") or {})
                    if named.get("ecosystem") != ecosystem or \
                            _normal_name(ecosystem, str(named.get("name"))) != _normal_name(ecosystem, name):
                        continue
                    hit, fixed = affected_by(version, affected, ecosystem)
                    if not hit:
                        continue
                    vulnerability = Vulnerability(record["id"], package.name, package.version, ecosystem,
                                                  severity_of(record, affected), list(record.get("aliases") or []),
                                                  fixed, str(record.get("summary") or "")[:200], package.layer,
                                                  package.purl)
                    found.setdefault(vulnerability.key, vulnerability)
        return sorted(found.values(), key=lambda v: (v.package, v.id))

    def close(self) -> None:
        self.conn.close()
