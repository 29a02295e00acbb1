"""Scan reports for people and machines: the JSON document (schema in docs/scan.md), SARIF 2.1.0
for CI systems, the difference between two scans, and the exit status ``--fail-on`` asks for."""

from __future__ import annotations

from ketch import __version__
from ketch.scanning.model import SEVERITIES, ScanReport, severity_rank

SCHEMA_VERSION = 1
_SARIF_LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note",
                 "unknown": "note"}


def json_document(reports: list[ScanReport]) -> dict:
    return {"schemaVersion": SCHEMA_VERSION, "scanner": f"ketch {__version__}",
            "reports": [report.to_json() for report in reports]}


def sarif_document(reports: list[ScanReport]) -> dict:
    """One SARIF run per target: each finding and vulnerability a result, with a rule per kind
    of finding and per advisory."""
    runs = []
    for report in reports:
        rules: dict[str, dict] = {}
        results = []
        for finding in report.findings:
            rule = f"{finding.scanner}/{finding.kind}"
            rules.setdefault(rule, {"id": rule, "shortDescription": {"text": finding.kind.replace("-", " ")},
                                    "defaultConfiguration": {"level": _SARIF_LEVELS[finding.severity]}})
            result: dict[str, object] = {"ruleId": rule, "level": _SARIF_LEVELS[finding.severity],
                      "message": {"text": finding.message},
                      "properties": {"severity": finding.severity, "layer": finding.layer}}
            if finding.path:
                result["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": finding.path.lstrip("/")}}}]
            results.append(result)
        for vulnerability in report.vulnerabilities:
            rules.setdefault(vulnerability.id, {
                "id": vulnerability.id, "shortDescription": {"text": vulnerability.summary or vulnerability.id},
                "defaultConfiguration": {"level": _SARIF_LEVELS[vulnerability.severity]},
                "properties": {"aliases": vulnerability.aliases}})
            fixed = f"; fixed in {vulnerability.fixed}" if vulnerability.fixed else ""
            results.append({
                "ruleId": vulnerability.id, "level": _SARIF_LEVELS[vulnerability.severity],
                "message": {"text": f"{vulnerability.package} {vulnerability.version} ({vulnerability.ecosystem}) "
                                    f"is affected by {vulnerability.id}{fixed}"},
                "properties": {"severity": vulnerability.severity, "layer": vulnerability.layer,
                               "purl": vulnerability.purl}})
        runs.append({"tool": {"driver": {"name": "ketch", "version": __version__,
                                         "informationUri": "https://github.com/ketch/ketch",
                                         "rules": list(rules.values())}},
                     "automationDetails": {"id": f"ketch-scan/{report.target}"},
                     "properties": {"target": report.target, "imageId": report.image_id},
                     "results": results})
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": runs}


def fails(reports: list[ScanReport], threshold: str | None) -> bool:
    """Whether a finding or vulnerability at ``threshold`` or above was found (warnings and
    "info" never count)."""
    if not threshold:
        return False
    limit = severity_rank(threshold)
    return any(severity_rank(f.severity) >= limit for r in reports for f in r.findings if f.kind != "warning") or \
        any(severity_rank(v.severity) >= limit for r in reports for v in r.vulnerabilities)


def diff(old: ScanReport, new: ScanReport) -> dict:
    """Packages, findings and vulnerabilities in ``new`` and not in ``old`` (added) and the reverse."""
    def packages(report):
        return {(p.type, p.namespace, p.name, p.version, p.arch): p for p in report.packages}

    def findings(report):
        return {(f.kind, f.path, f.message, f.scanner): f for f in report.findings}

    def vulns(report):
        return {(v.id, v.package, v.version): v for v in report.vulnerabilities}

    out: dict = {"old": old.target, "new": new.target}
    for name, keyed in (("packages", packages), ("findings", findings), ("vulnerabilities", vulns)):
        before, after = keyed(old), keyed(new)
        out[name] = {"added": [after[k].to_json() for k in sorted(set(after) - set(before))],
                     "removed": [before[k].to_json() for k in sorted(set(before) - set(after))]}
    return out


def render_table(console, reports: list[ScanReport], *, show_packages: bool) -> None:
    """The human report (rich tables): a summary, findings and vulnerabilities by severity."""
    from rich.table import Table

    for report in reports:
        distro = report.distro.pretty_name or report.distro.id or "unknown"
        console.print(f"[bold]{report.target}[/bold] ({report.kind}{', ' + report.image_id[:12] if report.image_id else ''}"
                      f"; {distro}; {len(report.layers)} layers, {report.cached_layers} from the cache)")
        counts: dict[str, int] = {}
        for package in report.packages:
            counts[package.type] = counts.get(package.type, 0) + 1
        console.print("packages: " + (", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "none"))
        if show_packages and report.packages:
            table = Table("TYPE", "NAME", "VERSION", "LAYER", "LICENSES")
            for package in report.packages:
                table.add_row(package.type, f"{package.namespace}/{package.name}" if package.namespace else
                              package.name, package.version, package.layer[7:19], ", ".join(package.licenses[:3]))
            console.print(table)
        if report.vulnerabilities:
            table = Table("SEVERITY", "ID", "ALIASES", "PACKAGE", "VERSION", "FIXED", "LAYER")
            for v in sorted(report.vulnerabilities, key=lambda v: (-severity_rank(v.severity), v.package, v.id)):
                table.add_row(v.severity, v.id, ", ".join(v.aliases[:2]), v.package, v.version, v.fixed or "-",
                              v.layer[7:19])
            console.print(table)
        if report.findings:
            table = Table("SEVERITY", "KIND", "PATH", "MESSAGE")
            for f in sorted(report.findings, key=lambda f: (-severity_rank(f.severity), f.kind, f.path)):
                table.add_row(f.severity, f.kind, f.path or "-", f.message)
            console.print(table)
        else:
            console.print("findings: none")
        worst = report.worst_severity()
        console.print(f"vulnerabilities: {len(report.vulnerabilities)}; findings: {len(report.findings)}; "
                      f"worst severity: {worst if worst in SEVERITIES else 'none'}\n")
