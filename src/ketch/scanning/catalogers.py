"""Package catalogers: each reads one kind of package database or metadata file (bytes in,
:class:`Package` records out) and never trusts it. A file that does not parse gives a warning, not
an exception that ends the scan (:class:`CatalogError` is caught by the layer scanner).

Only what no maintained library reads is parsed here: the dpkg and apk databases are plain
text stanzas; rpm's header blobs have no maintained pure-Python reader (``rpmfile`` reads
package files, not the database); Go's build info has no Python reader at all.
"""

from __future__ import annotations

import re
import sqlite3
import struct

from ketch.scanning.model import Package


class CatalogError(Exception):
    """A package file that does not parse (reported as a warning)."""


def _stanzas(text: str) -> list[dict[str, str]]:
    """deb822-style stanzas (dpkg status, its status.d files): ``Field: value`` with indented
    continuation lines, stanzas separated by blank lines."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                current[last] += "\n" + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            current[last] = value.strip()
        else:
            raise CatalogError(f"not a control stanza line: {line[:60]!r}")
    if current:
        stanzas.append(current)
    return stanzas


def dpkg_status(data: bytes, path: str, *, require_installed: bool = True) -> list[Package]:
    """dpkg's status database (or one of distroless' ``status.d`` files)."""
    packages = []
    for stanza in _stanzas(data.decode("utf-8", "replace")):
        name, version = stanza.get("package", ""), stanza.get("version", "")
        if not name or not version:
            raise CatalogError("a stanza without Package or Version")
        status = stanza.get("status", "")
        if (require_installed or status) and not status.endswith(" installed"):
            continue  # (removed packages keep their config-files stanza)
        source, _, source_version = stanza.get("source", name).partition(" ")
        packages.append(Package("deb", name, version, path, arch=stanza.get("architecture", ""),
                                source_name=source, source_version=source_version.strip("()") or version))
    return packages


_LICENSE_LINE = re.compile(rb"^License:[ \t]*([^\s,][^\n]*)$", re.MULTILINE)


def dpkg_copyright_licenses(data: bytes) -> list[str]:
    """The licences a machine-readable debian/copyright (DEP-5) declares."""
    found: list[str] = []
    for match in _LICENSE_LINE.finditer(data):
        for name in re.split(r"\s+(?:or|and|and/or)\s+|\s*[|,]\s*", match.group(1).decode("utf-8", "replace").strip()):
            if name and len(name) < 64 and name not in found:
                found.append(name)
    return found


def apk_installed(data: bytes, path: str) -> list[Package]:
    """Alpine's ``lib/apk/db/installed``: blocks of ``X:value`` lines."""
    packages = []
    for block in data.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        files: list[str] = []
        directory = ""
        for line in block.splitlines():
            if len(line) < 2 or line[1] != ":":
                continue
            key, value = line[0], line[2:]
            if key == "F":
                directory = value
            elif key == "R":
                files.append(f"/{directory}/{value}" if directory else f"/{value}")
            elif key not in fields:
                fields[key] = value
        if "P" not in fields:
            continue
        if "V" not in fields:
            raise CatalogError(f"package {fields['P']} has no version")
        packages.append(Package("apk", fields["P"], fields["V"], path, arch=fields.get("A", ""),
                                source_name=fields.get("o", fields["P"]), source_version=fields["V"],
                                licenses=[fields["L"]] if fields.get("L") else [], files=files))
    return packages


# -- rpm ---------------------------------------------------------------------

RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE, RPMTAG_EPOCH = 1000, 1001, 1002, 1003
RPMTAG_LICENSE, RPMTAG_ARCH, RPMTAG_SOURCERPM = 1014, 1022, 1044
RPMTAG_DIRINDEXES, RPMTAG_BASENAMES, RPMTAG_DIRNAMES = 1116, 1117, 1118
_RPM_INT32, _RPM_STRING, _RPM_STRING_ARRAY, _RPM_I18NSTRING = 4, 6, 8, 9


def rpm_header(blob: bytes) -> dict[int, object]:
    """The tags of an rpm header blob as rpmdb.sqlite stores it (no lead, no magic): the index
    count and data length, the 16-byte index entries, then the data store."""
    if len(blob) < 8:
        raise CatalogError("an rpm header shorter than its counts")
    count, length = struct.unpack(">ii", blob[:8])
    if count < 0 or length < 0 or 8 + 16 * count + length > len(blob):
        raise CatalogError("an rpm header whose counts exceed it")
    store = blob[8 + 16 * count: 8 + 16 * count + length]
    tags: dict[int, object] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack(">iiii", blob[8 + 16 * i: 24 + 16 * i])
        if offset < 0 or offset > len(store) or n < 0 or n > len(store) + 1:
            raise CatalogError(f"rpm tag {tag} points outside the header")
        if kind == _RPM_INT32:
            if offset + 4 * n > len(store):
                raise CatalogError(f"rpm tag {tag} runs past the header")
            tags[tag] = list(struct.unpack(f">{n}i", store[offset: offset + 4 * n]))
        elif kind in (_RPM_STRING, _RPM_STRING_ARRAY, _RPM_I18NSTRING):
            values, position = [], offset
            for _ in range(1 if kind == _RPM_STRING else n):
                end = store.find(b"\0", position)
                if end < 0:
                    raise CatalogError(f"rpm tag {tag}: an unterminated string")
                values.append(store[position:end].decode("utf-8", "replace"))
                position = end + 1
            tags[tag] = values
    return tags


def _first(tags: dict, tag: int, default=""):
    value = tags.get(tag)
    return value[0] if isinstance(value, list) and value else default


def rpm_sqlite(db_path: str, path: str) -> list[Package]:
    """rpm's sqlite database (``rpmdb.sqlite``), opened read-only and immutable (never written,
    no journal looked for), with a bound on the work a hostile database can ask for."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot open the rpm database: {exc}") from exc
    steps = [0]

    def bounded() -> int:
        steps[0] += 1
        return 1 if steps[0] > 200_000 else 0  # (each call is 1000 virtual machine steps)

    conn.set_progress_handler(bounded, 1000)
    packages = []
    try:
        for (blob,) in conn.execute("SELECT blob FROM Packages"):
            tags = rpm_header(bytes(blob))
            name = _first(tags, RPMTAG_NAME)
            if not name or name == "gpg-pubkey":
                continue  # (imported keys are headers too)
            epoch = _first(tags, RPMTAG_EPOCH, None)
            version = f"{_first(tags, RPMTAG_VERSION)}-{_first(tags, RPMTAG_RELEASE)}"
            if epoch not in (None, 0):
                version = f"{epoch}:{version}"
            dirs: list = tags.get(RPMTAG_DIRNAMES, [])  # type: ignore[assignment]
            bases: list = tags.get(RPMTAG_BASENAMES, [])  # type: ignore[assignment]
            indexes: list = tags.get(RPMTAG_DIRINDEXES, [])  # type: ignore[assignment]
            files = [f"{dirs[i]}{base}" for i, base in zip(indexes, bases) if isinstance(i, int) and 0 <= i < len(dirs)]
            source = _first(tags, RPMTAG_SOURCERPM)
            source_name = re.sub(r"-[^-]+-[^-]+\.src\.rpm$", "", source) if source else name
            packages.append(Package("rpm", name, version, path, arch=_first(tags, RPMTAG_ARCH),
                                    source_name=source_name, source_version=version,
                                    licenses=[_first(tags, RPMTAG_LICENSE)] if _first(tags, RPMTAG_LICENSE) else [],
                                    files=files))
    except sqlite3.Error as exc:
        raise CatalogError(f"the rpm database does not read: {exc}") from exc
    finally:
        conn.close()
    return packages


# -- Python ------------------------------------------------------------------

def _metadata_headers(data: bytes) -> dict[str, list[str]]:
    """Core metadata (METADATA, PKG-INFO): RFC 822 headers up to the first blank line."""
    headers: dict[str, list[str]] = {}
    last = None
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and last:
            headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise CatalogError(f"not a metadata header: {line[:60]!r}")
        last = name.strip().lower()
        headers.setdefault(last, []).append(value.strip())
    return headers


def python_metadata(data: bytes, path: str) -> list[Package]:
    headers = _metadata_headers(data)
    name, version = (headers.get("name") or [""])[0], (headers.get("version") or [""])[0]
    if not name or not version:
        raise CatalogError("no Name or Version")
    licenses = headers.get("license-expression") or [
        c.rsplit("::", 1)[-1].strip() for c in headers.get("classifier", []) if c.startswith("License ::")]
    if not licenses and headers.get("license") and len(headers["license"][0]) < 80 and \
            headers["license"][0] not in ("UNKNOWN", ""):
        licenses = [headers["license"][0]]
    return [Package("pypi", re.sub(r"[-_.]+", "-", name).lower(), version, path, licenses=licenses)]


def python_record_files(data: bytes, site: str) -> list[str]:
    """The files a RECORD lists (CSV: path, hash, size), as absolute paths."""
    files = []
    for line in data.decode("utf-8", "replace").splitlines():
        relative = line.split(",", 1)[0]
        if relative and not relative.startswith("/"):
            files.append(f"/{site}/{relative}" if site else f"/{relative}")
    return files


# -- npm ---------------------------------------------------------------------

def npm_package(data: bytes, path: str) -> list[Package]:
    import json

    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise CatalogError(f"not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CatalogError("not a JSON object")
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []  # (a package.json of a project's own files, without a name or version)
    license_ = manifest.get("license")
    if isinstance(license_, dict):
        license_ = license_.get("type")
    namespace, _, short = name.rpartition("/")
    return [Package("npm", short, version, path, namespace=namespace,
                    licenses=[license_] if isinstance(license_, str) and license_ else [])]


# -- Java --------------------------------------------------------------------

def maven_properties(data: bytes, path: str) -> list[Package]:
    values = {}
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    if not values.get("artifactId") or not values.get("version"):
        raise CatalogError("no artifactId or version")
    return [Package("maven", values["artifactId"], values["version"], path, namespace=values.get("groupId", ""))]


MAX_ARCHIVE_MEMBER = 1 << 20


def java_archive(file, path: str, depth: int = 0) -> list[Package]:
    """The pom.properties in a Java archive (and in the archives it holds, one level down)."""
    import io
    import zipfile

    packages: list[Package] = []
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist()[:100_000]:
                name = info.filename
                if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
                    if info.file_size > MAX_ARCHIVE_MEMBER:
                        continue
                    with archive.open(info) as member:
                        packages += maven_properties(member.read(MAX_ARCHIVE_MEMBER), f"{path}:{name}")
                elif depth == 0 and name.endswith((".jar", ".war", ".ear")) and info.file_size <= 64 << 20:
                    with archive.open(info) as member:
                        packages += java_archive(io.BytesIO(member.read(64 << 20)), f"{path}:{name}", depth + 1)
    # (what a broken or hostile archive raises: zipfile's NotImplementedError is a compression
    # method it does not know, EOFError a member cut short)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CatalogError(f"not a readable Java archive: {exc}") from exc
    return packages


# -- Go ----------------------------------------------------------------------

_GO_MAGIC = b"\xff Go buildinf:"


def elf_section(file, name: bytes, limit: int = 1 << 20) -> bytes | None:
    """The bytes of one section of an ELF file, found through its section headers (the 64-byte
    header, the section table and the section-name table only: a full ELF library reads far
    more, and this runs on every executable of an image)."""
    header = file.read(64)
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) or header[5] not in (1, 2):
        return None
    wide, order = header[4] == 2, "<" if header[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(order + "Q", header, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", header, 0x3A)
    else:
        shoff, = struct.unpack_from(order + "I", header, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", header, 0x2E)
    if not shoff or not shnum or shnum > 4096 or shstrndx >= shnum or shentsize < (64 if wide else 40):
        return None
    file.seek(shoff)
    table = file.read(shentsize * shnum)
    if len(table) < shentsize * shnum:
        return None

    def section(index: int) -> tuple[int, int, int]:  # name offset, file offset, size
        base = index * shentsize
        if wide:
            name_at, = struct.unpack_from(order + "I", table, base)
            offset, size = struct.unpack_from(order + "QQ", table, base + 0x18)
        else:
            name_at, = struct.unpack_from(order + "I", table, base)
            offset, size = struct.unpack_from(order + "II", table, base + 0x10)
        return name_at, offset, size

    _, names_at, names_size = section(shstrndx)
    file.seek(names_at)
    names = file.read(min(names_size, 1 << 20))
    for index in range(shnum):
        name_at, offset, size = section(index)
        end = names.find(b"\0", name_at)
        if end >= 0 and names[name_at:end] == name:
            file.seek(offset)
            return file.read(min(size, limit))
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise CatalogError("a truncated varint in the Go build info")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def go_buildinfo(section: bytes, path: str) -> list[Package]:
    """The modules of a Go binary, from its ``.go.buildinfo`` section (Go 1.18 and newer keep the
    version and the module info inline, as length-prefixed strings after a 32-byte header)."""
    if not section.startswith(_GO_MAGIC):
        return []
    if len(section) < 32 or not section[15] & 0x2:
        raise CatalogError("Go build info of a toolchain older than 1.18 (pointer form) is not read")
    go_version_length, position = _varint(section, 32)
    go_version = section[position: position + go_version_length].decode("utf-8", "replace")
    position += go_version_length
    info_length, position = _varint(section, position)
    info = section[position: position + info_length]
    if len(info) > 32:  # the module info is framed by 16-byte sentinels
        info = info[16:-16]
    packages = []
    if go_version.startswith("go"):
        packages.append(Package("golang", "stdlib", "v" + go_version[2:].split()[0], path))
    last: Package | None = None
    for line in info.decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            last = Package("golang", fields[1], fields[2], path)
            packages.append(last)
        elif fields[0] == "=>" and len(fields) >= 3 and last is not None:
            # a replaced module: by a local directory (it keeps its name), or by another module (a fork)
            if not fields[1].startswith((".", "/")):
                last.name = fields[1]
            last.version = fields[2]
    return packages
