"""External scanners, as atomic scan ran them: programs on the host, pointed at the image's
read-only view, each defined by a TOML file in a scanners directory::

    name = "clamav"
    description = "ClamAV: known malware signatures"
    command = ["clamscan", "--recursive", "--infected", "--database={database}", "{rootfs}"]
    version-command = ["clamscan", "--version"]
    format = "clamav"        # how its results read: clamav, xccdf, sarif, lines
    exit-codes = [0, 1]      # statuses that mean "ran" (clamscan exits 1 when it found something)
    timeout = 600            # seconds
    severity = "critical"    # of each result, for formats that carry none
    [options]                # values for placeholders, overridden by --scanner-opt NAME=VALUE
    database = "/var/lib/clamav"

Placeholders: ``{rootfs}`` (the tree, read-only), ``{output}`` (an empty directory for result
files), ``{image}`` (the target's name) and each option. A scanner runs in a network namespace
of its own (no network at all: ``unshare --net``), in a session of its own that is killed as a
whole at the time limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError, NotFoundError, ScanError
from ketch.scanning.model import SEVERITIES, Finding

# the administrator's, then those shipped with ketch (ClamAV, OpenSCAP)
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()

DEFAULT_DIRS = ("/etc/ketch/scanners.d", str(Path(__file__).with_name("scanners.d")))
FORMATS = ("clamav", "xccdf", "sarif", "lines")


@dataclass
class ScannerDefinition:
    name: str
    command: list[str]
    format: str
    description: str = ""
    version_command: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=lambda: [0])
    timeout: float = 600
    severity: str = "medium"
    options: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def version(self) -> str:
        """The first line the version command prints (part of the cache key); "" if none."""
        if not self.version_command:
            return ""
        try:
            result = subprocess.run(self.version_command, capture_output=True, text=True, timeout=30,
                                    stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return (result.stdout.strip().splitlines() or [""])[0]


def _definition(path: Path) -> ScannerDefinition:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"scanner definition {path}: {exc}") from exc
    name = data.get("name", path.stem)
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise InvalidInputError(f"scanner definition {path}: command must be a list of strings")
    if data.get("format") not in FORMATS:
        raise InvalidInputError(f"scanner definition {path}: format must be one of {', '.join(FORMATS)}")
    severity = data.get("severity", "medium")
    if severity not in SEVERITIES:
        raise InvalidInputError(f"scanner definition {path}: severity must be one of {', '.join(SEVERITIES)}")
    return ScannerDefinition(
        str(name), command, data["format"], str(data.get("description", "")),
        list(data.get("version-command", [])), [int(c) for c in data.get("exit-codes", [0])],
        float(data.get("timeout", 600)), severity, {str(k): str(v) for k, v in (data.get("options") or {}).items()},
        str(path))


def load_definitions(dirs: list[str] | tuple[str, ...] = DEFAULT_DIRS) -> dict[str, ScannerDefinition]:
    """Definitions by name; a name in an earlier directory wins over a later one."""
    found: dict[str, ScannerDefinition] = {}
    for directory in dirs:
        for path in sorted(Path(directory).glob("*.toml")) if Path(directory).is_dir() else []:
            definition = _definition(path)
            found.setdefault(definition.name, definition)
    return found


def find(name: str, dirs: list[str] | tuple[str, ...] = DEFAULT_DIRS) -> ScannerDefinition:
    definitions = load_definitions(dirs)
    if name not in definitions:
        raise NotFoundError(f"no scanner named {name} (ketch scan --list-scanners; definitions are read "
                            f"from {', '.join(dirs)})")
    return definitions[name]


def _expand(words: list[str], values: dict[str, str], definition: ScannerDefinition) -> list[str]:
    try:
        return [word.format(**values) for word in words]
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInputError(f"scanner {definition.name}: its command names {exc} that is not a placeholder "
                                "or an option") from exc


def run(definition: ScannerDefinition, rootfs: str, image: str, options: dict[str, str] | None = None,
        workdir: str | os.PathLike | None = None) -> list[Finding]:
    """Run the scanner against ``rootfs``; its results as findings (paths as the image sees them).
    Its ``{output}`` directory is made under ``workdir`` (a store's staging directory, which the
    next command clears when a killed scan left it), else under the system's temporary directory."""
    unknown = set(options or {}) - set(definition.options)
    if unknown:
        raise InvalidInputError(f"scanner {definition.name} has no option {sorted(unknown)[0]} "
                                f"(it has: {', '.join(sorted(definition.options)) or 'none'})")
    with tempfile.TemporaryDirectory(prefix="ketch-scanner-", dir=workdir) as output:
        values = {**definition.options, **(options or {}), "rootfs": rootfs, "output": output, "image": image}
        # setpriv --pdeathsig: the scanner is killed when ketch dies (even by kill -9), rather than
        # scanning on in a session of its own
        command = ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--",
                   *_expand(definition.command, values, definition)]
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=output)
        except OSError as exc:
            raise ScanError(f"scanner {definition.name}: cannot run {definition.command[0]}: {exc.strerror}") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        try:
            stdout, stderr = process.communicate(timeout=definition.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.communicate()
            raise ScanError(f"scanner {definition.name} ran over its time limit of {definition.timeout:g} s "
                            "and was killed") from None
        except BaseException:
            _kill(process)
            process.wait()
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
        if process.returncode not in definition.exit_codes:
            last = (stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise ScanError(f"scanner {definition.name} exited {process.returncode}: {last[:200]}")
        return _parse(definition, stdout.decode(errors="replace"), Path(output), rootfs)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_all() -> None:
    """Kill every scanner still running (the scan was interrupted: its threads are waiting on them)."""
    with _RUNNING_LOCK:
        for process in list(_RUNNING):
            _kill(process)


def _image_path(path: str, rootfs: str) -> str:
    return "/" + path[len(rootfs):].lstrip("/") if path.startswith(rootfs) else path


def _parse(definition: ScannerDefinition, stdout: str, output: Path, rootfs: str) -> list[Finding]:
    found = []
    if definition.format == "clamav":
        for line in stdout.splitlines():
            if line.endswith(" FOUND") and ": " in line:
                path, _, signature = line[:-len(" FOUND")].rpartition(": ")
                found.append(Finding("malware", definition.severity, f"ClamAV: {signature}",
                                     _image_path(path, rootfs), scanner=definition.name))
    elif definition.format == "lines":
        found = [Finding("scanner", definition.severity, line.strip(), scanner=definition.name)
                 for line in stdout.splitlines() if line.strip()]
    elif definition.format == "xccdf":
        found = _xccdf(definition, output)
    elif definition.format == "sarif":
        found = _sarif(definition, output, rootfs)
    return found


def _xccdf(definition: ScannerDefinition, output: Path) -> list[Finding]:
    import xml.etree.ElementTree as ElementTree

    results = sorted(output.glob("*.xml"))
    if not results:
        raise ScanError(f"scanner {definition.name} wrote no XCCDF results file in {{output}}")
    found = []
    try:
        tree = ElementTree.parse(results[0])
    except ElementTree.ParseError as exc:
        raise ScanError(f"scanner {definition.name}: its results are not XML ({exc})") from exc
    for element in tree.iter():
        if element.tag.endswith("}rule-result") or element.tag == "rule-result":
            result = next((child.text for child in element if child.tag.endswith("result")), "")
            if result == "fail":
                severity = element.get("severity", definition.severity)
                severity = severity if severity in SEVERITIES else definition.severity
                found.append(Finding("compliance", severity, f"rule {element.get('idref')} failed",
                                     scanner=definition.name))
    return found


def _sarif(definition: ScannerDefinition, output: Path, rootfs: str) -> list[Finding]:
    found = []
    levels = {"error": "high", "warning": "medium", "note": "low"}
    for path in sorted(output.glob("*.sarif")):
        try:
            log = json.loads(path.read_text())
            for run_ in log.get("runs", []):
                for result in run_.get("results", []):
                    locations = result.get("locations") or [{}]
                    uri = locations[0].get("physicalLocation", {}).get("artifactLocation", {}).get("uri", "")
                    found.append(Finding("scanner", levels.get(result.get("level"), definition.severity),
                                         result.get("message", {}).get("text", ""), _image_path(uri, rootfs),
                                         scanner=definition.name))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ScanError(f"scanner {definition.name}: {path.name} is not SARIF ({exc})") from exc
    return found
