"""Findings: what a file's metadata or contents, or the image's configuration, say about risk.

File contents are only searched for fixed markers (PEM private key headers, access key shapes,
credential files' auth fields); nothing of the image is run or interpreted beyond that.
"""

from __future__ import annotations

import json
import re
import stat

from ketch.scanning.model import Finding

_PRIVATE_KEY = re.compile(rb"-----BEGIN ((?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----")
_ACCESS_KEYS = (
    (b"AKIA", re.compile(rb"\b(AKIA[0-9A-Z]{16})\b"), "an AWS access key id"),
    (b"ASIA", re.compile(rb"\b(ASIA[0-9A-Z]{16})\b"), "an AWS temporary access key id"),
    (b"ghp_", re.compile(rb"\b(ghp_[A-Za-z0-9]{36})\b"), "a GitHub personal access token"),
    (b"glpat-", re.compile(rb"\b(glpat-[A-Za-z0-9_-]{20})\b"), "a GitLab personal access token"),
    (b"xox", re.compile(rb"\b(xox[baprs]-[A-Za-z0-9-]{10,})\b"), "a Slack token"),
    (b"\"service_account\"", re.compile(rb"\"private_key\"\s*:\s*\"-----BEGIN"), "a Google Cloud service account key"),
)
# name -> what to look for in it: files whose very presence with these fields is a credential
_CREDENTIAL_FILES = {
    ".git-credentials": (re.compile(rb"://[^/\s:@]+:[^/\s@]+@"), "Git credentials (a user and password in a URL)"),
    ".npmrc": (re.compile(rb"(?m)^\s*(?:\S*:)?_(?:authToken|auth|password)\s*="), "an npm registry token"),
    ".pypirc": (re.compile(rb"(?m)^\s*password\s*[=:]"), "a PyPI password"),
    ".netrc": (re.compile(rb"\bpassword\s+\S+"), "a netrc password"),
}
_SECRET_NAME = re.compile(r"(?i)(passw(or)?d|secret|token|api_?key|access_?key|private_?key|credential)")
_SECRET_VALUE_IN_LINE = re.compile(
    r"(?i)\b([A-Z0-9_]*(?:PASSW(?:OR)?D|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_]*)"
    r"=(\"[^\"]+\"|'[^']+'|[^\s\"']+)")


def file_metadata(path: str, st) -> list[Finding]:
    """Findings from a file's mode: setuid and setgid executables, world-writable entries."""
    found = []
    mode = st.st_mode
    if stat.S_ISREG(mode):
        if mode & stat.S_ISUID and mode & 0o111:
            found.append(Finding("setuid", "low", f"setuid executable (owner uid {st.st_uid})", path))
        if mode & stat.S_ISGID and mode & 0o111:
            found.append(Finding("setgid", "low", f"setgid executable (group gid {st.st_gid})", path))
        if mode & stat.S_IWOTH:
            found.append(Finding("world-writable", "medium", "a file anyone may write", path))
    elif stat.S_ISDIR(mode) and mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        found.append(Finding("world-writable", "medium", "a directory anyone may write, without the sticky bit", path))
    return found


def file_capabilities(path: str, raw: bytes) -> Finding:
    """A ``security.capability`` attribute (VFS_CAP_DATA): which capabilities the file grants."""
    import struct

    from ketch.runtime.capabilities import NAMES

    names: list[str] = []
    if len(raw) >= 12:
        words = struct.unpack_from(f"<{min(len(raw), 20) // 4}I", raw)
        permitted = words[1] | ((words[3] << 32) if len(words) >= 5 else 0)
        names = [NAMES[i] if i < len(NAMES) else str(i) for i in range(64) if permitted >> i & 1]
    return Finding("file-capabilities", "low", f"file capabilities: {', '.join(names) or 'unreadable'}", path)


def file_contents(path: str, data: bytes) -> list[Finding]:
    """Private keys, access keys and credential files in a file's text."""
    found = []
    if b"PRIVATE KEY" in data:
        match = _PRIVATE_KEY.search(data)
        if match:
            found.append(Finding("private-key", "high", f"a PEM {match.group(1).decode().lower()}", path))
    for marker, pattern, what in _ACCESS_KEYS:
        if marker in data and pattern.search(data):
            found.append(Finding("credentials", "high", what, path))
    name = path.rsplit("/", 1)[-1]
    credential = _CREDENTIAL_FILES.get(name)
    if credential and credential[0].search(data):
        found.append(Finding("credentials", "high", credential[1], path))
    if name == "config.json" and path.endswith(".docker/config.json"):
        try:
            config = json.loads(data)
        except ValueError:
            config = None
        auths = config.get("auths") if isinstance(config, dict) else None
        if isinstance(auths, dict) and any(isinstance(v, dict) and (v.get("auth") or v.get("identitytoken"))
                                           for v in auths.values()):
            found.append(Finding("credentials", "high",
                                 f"registry credentials for {', '.join(sorted(map(str, auths)))}", path))
    return found


def config_findings(config: dict, history: list) -> list[Finding]:
    """Findings from the image configuration: secrets in Env and in history, the user, health."""
    found = []
    for entry in config.get("Env") or []:
        name, _, value = str(entry).partition("=")
        if value and _SECRET_NAME.search(name):
            found.append(Finding("secret-env", "high", f"the environment sets {name} (a secret's name) to a value"))
    for number, step in enumerate(history or []):
        line = str(step.get("created_by", "")) if isinstance(step, dict) else ""
        for match in _SECRET_VALUE_IN_LINE.finditer(line):
            found.append(Finding("secret-history", "high",
                                 f"history step {number} sets {match.group(1)} (a secret's name) on its command line"))
        if _PRIVATE_KEY.search(line.encode("utf-8", "replace")):
            found.append(Finding("secret-history", "high", f"history step {number} holds a private key"))
    user = str(config.get("User") or "")
    if not user:
        found.append(Finding("no-user", "low", "the image sets no USER: its processes run as root"))
    elif user.split(":")[0] in ("root", "0"):
        found.append(Finding("root-user", "low", f"the image runs as root (USER {user})"))
    if not (config.get("Healthcheck") or {}).get("Test") or (config.get("Healthcheck") or {}).get("Test") == ["NONE"]:
        found.append(Finding("no-healthcheck", "info", "the image declares no health check"))
    return found
