"""``ketch scan``: packages, findings and known vulnerabilities of images, containers and trees,
read through read-only views without running anything (atomic scan's model)."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.cli.flags import add_bool, make_context, policy_from
from ketch.errors import InvalidInputError

SEVERITY_CHOICES = ("low", "medium", "high", "critical")


def register(commands: argparse._SubParsersAction) -> None:
    scan = commands.add_parser(
        "scan", help="list the packages, findings and known vulnerabilities of images",
        description="Scan images or containers of the store (mounted read-only, nosuid, nodev, noexec; nothing "
                    "of them runs), remote images (docker://... and the other transports, through a temporary "
                    "store) or a directory tree (--rootfs): packages (dpkg, rpm, apk, Python, npm, Go, Java), "
                    "findings (setuid files, keys, credentials, secrets in the configuration, root user...), "
                    "known vulnerabilities from an offline OSV database, and external scanners.")
    scan.add_argument("targets", nargs="*", metavar="IMAGE|CONTAINER")
    scan.add_argument("--rootfs", metavar="PATH", help="scan this directory tree instead")
    scan.add_argument("--all", action="store_true", help="every image and container of the store")
    scan.add_argument("--images", action="store_true", help="every image of the store")
    scan.add_argument("--containers", action="store_true", help="every container of the store")
    scan.add_argument("--format", default="table", choices=["table", "json", "sarif"],
                      help="table (default), json (docs/scan.md's schema) or sarif (SARIF 2.1.0)")
    scan.add_argument("--sbom", choices=["spdx", "cyclonedx"],
                      help="print a software bill of materials instead: SPDX 2.3 or CycloneDX 1.5 JSON")
    scan.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of standard output")
    scan.add_argument("--packages", action="store_true", help="list every package in the table")
    scan.add_argument("--vuln-db", metavar="PATH",
                      help="an OSV database: a directory of OSV JSON files, an OSV zip file, or a directory of them")
    scan.add_argument("--scanner", action="append", default=[], metavar="NAME",
                      help="also run this external scanner (repeatable; see --list-scanners)")
    scan.add_argument("--scanner-opt", action="append", default=[], metavar="NAME=VALUE",
                      help="set an option of the external scanners' definitions (repeatable)")
    scan.add_argument("--scanners-dir", action="append", default=[], metavar="DIR",
                      help="read scanner definitions from DIR (repeatable; default /etc/ketch/scanners.d, then "
                           "the definitions shipped with ketch)")
    scan.add_argument("--list-scanners", action="store_true", help="list the external scanners defined, and exit")
    scan.add_argument("--fail-on", choices=SEVERITY_CHOICES, metavar="SEVERITY",
                      help="exit 1 when a finding or vulnerability of this severity or worse is found "
                           "(low, medium, high, critical)")
    scan.add_argument("--diff", action="store_true",
                      help="show what the second of two images adds and removes against the first")
    scan.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="scan N images at a time (default 1)")
    scan.add_argument("--no-cache", action="store_true", help="neither use nor fill the per-layer cache")
    add_bool(scan, "--findings", default=True, help="look for findings, not only packages (default true)")
    # remote images (docker://...): how to reach the registry, as podman pull's flags
    scan.add_argument("--authfile", metavar="PATH", help="registry credentials (default: podman's auth.json)")
    scan.add_argument("--creds", metavar="USER[:PASSWORD]", help="registry credentials")
    scan.add_argument("--cert-dir", metavar="DIR", help="certificates for the registry")
    add_bool(scan, "--tls-verify", help="require HTTPS and verify certificates (default true)")
    scan.set_defaults(func=cmd_scan, generic_status=125)


def _scanner_dirs(args) -> tuple[str, ...] | None:
    return tuple(args.scanners_dir) or None


def _write(args, text: str) -> None:
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_scan(args) -> int:
    if args.list_scanners:
        from ketch.scanning import external

        definitions = external.load_definitions(_scanner_dirs(args) or external.DEFAULT_DIRS)
        if args.format == "json":
            print(json.dumps([{"name": d.name, "description": d.description, "format": d.format,
                               "options": d.options, "source": d.source} for d in definitions.values()], indent=2))
        else:
            print(f"{'NAME':<16}{'FORMAT':<10}DESCRIPTION")
            for definition in definitions.values():
                print(f"{definition.name:<16}{definition.format:<10}{definition.description}")
        return 0
    if args.jobs < 1:
        raise InvalidInputError("--jobs must be 1 or more")
    options = dict(_option(value) for value in args.scanner_opt)
    from ketch.scanning.engine import ScanOptions, all_targets, scan
    from ketch.storage.store import Store

    store = Store(args.root, args.runroot, args.storage_driver)
    targets = list(args.targets)
    if args.all or args.images or args.containers:
        if targets or args.rootfs:
            raise InvalidInputError("--all, --images and --containers take no names")
        targets = all_targets(store, images=args.all or args.images, containers=args.all or args.containers)
        if not targets:
            return 0
    if args.diff and (len(targets) != 2 or args.rootfs):
        raise InvalidInputError("--diff compares two images: name exactly two")
    if args.sbom and len(targets) + bool(args.rootfs) != 1:
        raise InvalidInputError("--sbom describes one image: name exactly one (or --rootfs)")
    scan_options = ScanOptions(vuln_db=args.vuln_db, scanners=args.scanner, scanner_options=options,
                               scanner_dirs=_scanner_dirs(args), jobs=args.jobs, cache=not args.no_cache,
                               findings=args.findings)
    reports = scan(targets or None, store=store, rootfs=args.rootfs, options=scan_options,
                   context=lambda: _context(args), policy=lambda: policy_from(args))
    from ketch.scanning import report as rendering

    if args.sbom:
        from ketch.scanning import sbom

        _write(args, (sbom.spdx_document if args.sbom == "spdx" else sbom.cyclonedx_document)(reports[0]) + "\n")
    elif args.diff:
        difference = rendering.diff(reports[0], reports[1])
        if args.format == "json":
            _write(args, json.dumps(difference, indent=2) + "\n")
        else:
            _write(args, _diff_text(difference))
    elif args.format == "json":
        _write(args, json.dumps(rendering.json_document(reports), indent=2) + "\n")
    elif args.format == "sarif":
        _write(args, json.dumps(rendering.sarif_document(reports), indent=2) + "\n")
    else:
        from rich.console import Console

        if args.output:
            with open(args.output, "w") as file:
                rendering.render_table(Console(file=file, width=160), reports, show_packages=args.packages)
        else:
            rendering.render_table(Console(width=None if sys.stdout.isatty() else 160), reports,
                                   show_packages=args.packages)
    return 1 if rendering.fails(reports, args.fail_on) else 0


def _option(value: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or not name:
        raise InvalidInputError(f"--scanner-opt {value!r}: expected NAME=VALUE")
    return name, setting


def _diff_text(difference: dict) -> str:
    lines = [f"--- {difference['old']}", f"+++ {difference['new']}"]
    for section in ("packages", "vulnerabilities", "findings"):
        for sign, side in (("-", "removed"), ("+", "added")):
            for entry in difference[section][side]:
                if section == "packages":
                    what = f"package {entry['type']} {entry['name']} {entry['version']}"
                elif section == "vulnerabilities":
                    what = f"vulnerability {entry['id']} in {entry['package']} {entry['version']}"
                else:
                    what = f"finding {entry['severity']} {entry['kind']} {entry['path'] or ''} {entry['message']}"
                lines.append(f"{sign}{what}")
    return "\n".join(lines) + "\n"


def _context(args):
    return make_context(args, creds=args.creds, tls_verify=args.tls_verify, authfile=args.authfile,
                        cert_dir=args.cert_dir)
