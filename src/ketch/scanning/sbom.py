"""Package URLs and software bills of materials: SPDX 2.3 JSON (spdx-tools) and CycloneDX 1.5
JSON (cyclonedx-python-lib), both validated by their libraries before they are written."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from ketch import __version__
from ketch.errors import ScanError
from ketch.scanning.model import Distro, Package, ScanReport


def purl_of(package: Package, distro: Distro) -> str:
    from packageurl import PackageURL

    qualifiers: dict[str, str] = {}
    namespace = package.namespace or None
    name = package.name
    if package.type in ("deb", "rpm", "apk"):
        namespace = distro.id or {"deb": "debian", "apk": "alpine"}.get(package.type)
        if package.arch:
            qualifiers["arch"] = package.arch
        if distro.id and distro.version_id:
            qualifiers["distro"] = f"{distro.id}-{distro.version_id}"
        if package.source_name and package.source_name != package.name:
            qualifiers["upstream"] = package.source_name
    elif package.type == "golang" and "/" in name:
        namespace, name = name.rsplit("/", 1)
    return PackageURL(type=package.type, namespace=namespace, name=name, version=package.version,
                      qualifiers=qualifiers or None).to_string()


_SPDX_IDS: set[str] = set()


def _spdx_license(names: list[str]):
    """A declared licence as an SPDX expression, when every name is an SPDX licence id; else None
    (Debian's copyright files use their own short names, such as GPL-2+)."""
    if not names:
        return None
    from license_expression import ExpressionError, get_spdx_licensing

    licensing = get_spdx_licensing()
    if not _SPDX_IDS:
        _SPDX_IDS.update(symbol.key for symbol in licensing.known_symbols.values())
    if not all(name in _SPDX_IDS for name in names):
        return None
    try:
        return licensing.parse(" AND ".join(names), validate=True, strict=True)
    except ExpressionError:
        return None


def spdx_document(report: ScanReport) -> str:
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        CreationInfo,
        Document,
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.model import Package as SpdxPackage
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    created = datetime.now(UTC).replace(microsecond=0)
    info = CreationInfo("SPDX-2.3", "SPDXRef-DOCUMENT", report.target,
                        f"https://ketch.invalid/spdx/{uuid.uuid4()}", [Actor(ActorType.TOOL, f"ketch-{__version__}")],
                        created)
    root = SpdxPackage("SPDXRef-Image", report.target, SpdxNoAssertion(), files_analyzed=False,
                       version=report.image_id[:12] or None,
                       comment=f"{report.kind} scanned by ketch; layers: {', '.join(report.layers) or 'none'}")
    packages = [root]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-Image")]
    for index, package in enumerate(report.packages):
        spdx_id = f"SPDXRef-Package-{package.type}-{index}"
        declared = _spdx_license(package.licenses)
        refs = [ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", package.purl)] \
            if package.purl else []
        packages.append(SpdxPackage(
            spdx_id, package.name, SpdxNoAssertion(), version=package.version or None, files_analyzed=False,
            license_declared=declared if declared is not None else SpdxNoAssertion(),
            license_concluded=SpdxNoAssertion(),
            license_comment=None if declared is not None or not package.licenses else
            f"declared (not SPDX identifiers): {', '.join(package.licenses)}",
            external_references=refs,
            comment=f"found in {package.path}; layer {package.layer or 'unknown'}; "
                    f"{len(package.files)} files listed by its database"))
        relationships.append(Relationship("SPDXRef-Image", RelationshipType.CONTAINS, spdx_id))
    document = Document(info, packages=packages, relationships=relationships)
    problems = validate_full_spdx_document(document)
    if problems:
        raise ScanError(f"the SPDX document does not validate: {problems[0].validation_message}")
    import io

    stream = io.StringIO()
    write_document_to_stream(document, stream, validate=False)
    return stream.getvalue()


def cyclonedx_document(report: ScanReport) -> str:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.output.json import JsonV1Dot5
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    bom = Bom()
    bom.metadata.component = Component(name=report.target, type=ComponentType.CONTAINER,
                                       version=report.image_id[:12] or None, bom_ref="image")
    for index, package in enumerate(report.packages):
        licenses: list = []
        declared = _spdx_license(package.licenses)
        if declared is not None and len(package.licenses) > 1:
            licenses = [LicenseExpression(str(declared))]
        elif declared is not None:
            licenses = [DisjunctiveLicense(id=package.licenses[0])]
        else:
            licenses = [DisjunctiveLicense(name=name) for name in package.licenses]
        properties = [Property(name="ketch:layer", value=package.layer or "unknown"),
                      Property(name="ketch:path", value=package.path)]
        if package.source_name and package.source_name != package.name:
            properties.append(Property(name="ketch:source", value=f"{package.source_name} {package.source_version}"))
        occurrences = [Occurrence(location=file) for file in package.files]
        component = Component(
            name=package.name, version=package.version or None, group=package.namespace or None,
            bom_ref=f"pkg-{index}", purl=PackageURL.from_string(package.purl) if package.purl else None,
            licenses=licenses, properties=properties,
            evidence=ComponentEvidence(occurrences=occurrences) if occurrences else None)
        bom.components.add(component)
        bom.register_dependency(bom.metadata.component, [component])
    text = JsonV1Dot5(bom).output_as_string()
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if error is not None:
        raise ScanError(f"the CycloneDX document does not validate: {str(error)[:200]}")
    return json.dumps(json.loads(text), indent=2)
