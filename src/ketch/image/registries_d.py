"""``registries.d``: where the signatures of a registry's images live, as containers/image reads
it (containers-registries.d(5)).

Every ``*.yaml`` file of the directory (the user's ``~/.config/containers/registries.d`` first,
then ``/etc/containers/registries.d``; ``--registries.d DIR`` alone instead) may hold
``default-docker:`` and ``docker: {SCOPE: ...}`` entries with ``lookaside`` (read),
``lookaside-staging`` (write; the older ``sigstore``/``sigstore-staging`` names too) and
``use-sigstore-attachments``. A scope is ``host[:port][/path...]``; the most specific one that
is a prefix of the image's repository wins, then ``default-docker``.

A simple signature of an image lives at ``BASE/PATH@ALGO=HEX/signature-N`` (PATH: the repository
without its registry), N from 1 up; ``file://`` bases are directories, ``http(s)://`` ones are
read over HTTP (a 404 ends the list).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ketch.errors import InvalidInputError, RegistryError

USER_DIR = Path("~/.config/containers/registries.d")
SYSTEM_DIR = Path("/etc/containers/registries.d")
# containers/image's default where to write when nothing is configured (root's)
DEFAULT_STAGING = "file:///var/lib/containers/sigstore"
MAX_SIGNATURE_SIZE = 4 << 20  # containers/image's limit for one signature body
MAX_SIGNATURES = 128


def default_staging() -> str:
    """containers/image's default lookaside-staging: root's /var/lib/containers/sigstore, a
    user's ~/.local/share/containers/sigstore."""
    from ketch.userns import data_home, is_rootless

    return f"file://{data_home() / 'containers' / 'sigstore'}" if is_rootless() else DEFAULT_STAGING


@dataclass
class ScopeConfig:
    lookaside: str | None = None
    lookaside_staging: str | None = None
    use_sigstore_attachments: bool = False


def _entry(data, where: str) -> ScopeConfig:
    if not isinstance(data, dict):
        raise InvalidInputError(f"registries.d {where}: an entry must be a mapping")
    read = data.get("lookaside", data.get("sigstore"))
    write = data.get("lookaside-staging", data.get("sigstore-staging"))
    for value in (read, write):
        if value is not None and not (isinstance(value, str) and value.startswith(("file://", "http://", "https://"))):
            raise InvalidInputError(f"registries.d {where}: {value!r} is not a file://, http:// or https:// URL")
    return ScopeConfig(read, write, bool(data.get("use-sigstore-attachments", False)))


class RegistriesD:
    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        import yaml

        dirs = [Path(directory)] if directory else [USER_DIR.expanduser(), SYSTEM_DIR]
        self.default: ScopeConfig | None = None
        self.scopes: dict[str, ScopeConfig] = {}
        for base in dirs:
            try:
                files = sorted(base.glob("*.yaml"))
            except OSError:
                continue
            for path in files:
                try:
                    data = yaml.safe_load(path.read_text()) or {}
                except (OSError, yaml.YAMLError) as exc:
                    raise InvalidInputError(f"registries.d {path}: {exc}") from exc
                if not isinstance(data, dict):
                    raise InvalidInputError(f"registries.d {path}: not a mapping")
                if data.get("default-docker") is not None:
                    if self.default is not None:
                        raise InvalidInputError(f"registries.d {path}: default-docker is set in more than one file")
                    self.default = _entry(data["default-docker"], str(path))
                for scope, entry in (data.get("docker") or {}).items():
                    if scope in self.scopes:
                        raise InvalidInputError(f"registries.d {path}: docker scope {scope} is set twice")
                    self.scopes[scope] = _entry(entry, f"{path}: {scope}")

    def config_for(self, repository: str) -> ScopeConfig:
        """The entry for a repository (``host/path``): the longest matching scope, else the default."""
        candidate = repository
        while True:
            if candidate in self.scopes:
                return self.scopes[candidate]
            if "/" not in candidate:
                break
            candidate = candidate.rsplit("/", 1)[0]
        return self.default or ScopeConfig()

    def read_base(self, repository: str) -> str | None:
        return self.config_for(repository).lookaside

    def write_base(self, repository: str) -> str:
        config = self.config_for(repository)
        return config.lookaside_staging or config.lookaside or default_staging()


def signature_url(base: str, path: str, manifest_digest: str, index: int) -> str:
    algorithm, _, hex_digest = manifest_digest.partition(":")
    return f"{base.rstrip('/')}/{path}@{algorithm}={hex_digest}/signature-{index}"


def read_signatures(base: str, path: str, manifest_digest: str, ctx=None) -> list[bytes]:
    """The simple signatures of an image in a lookaside (none when there are none)."""
    signatures: list[bytes] = []
    http = None
    try:
        for index in range(1, MAX_SIGNATURES + 1):
            url = signature_url(base, path, manifest_digest, index)
            if url.startswith("file://"):
                try:
                    with open(url[len("file://"):], "rb") as file:
                        body = file.read(MAX_SIGNATURE_SIZE + 1)
                except FileNotFoundError:
                    break
                except OSError as exc:
                    raise RegistryError(f"reading signature {url}: {exc.strerror}") from exc
            else:
                import urllib3

                http = http or urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=30), retries=False)
                try:
                    response = http.request("GET", url, preload_content=False, redirect=True)
                except urllib3.exceptions.HTTPError as exc:
                    raise RegistryError(f"reading signature {url}: {exc}") from exc
                try:
                    if response.status == 404:
                        break
                    if response.status != 200:
                        raise RegistryError(f"reading signature {url}: HTTP status {response.status}")
                    body = response.read(MAX_SIGNATURE_SIZE + 1)
                finally:
                    response.release_conn()
            if len(body) > MAX_SIGNATURE_SIZE:
                raise RegistryError(f"signature {url} is larger than {MAX_SIGNATURE_SIZE >> 20} MiB")
            signatures.append(body)
    finally:
        if http is not None:
            http.clear()
    return signatures


def store_signatures(base: str, path: str, manifest_digest: str, signatures: list[bytes]) -> None:
    """Write ``signature-1``... of an image in a file:// lookaside (extra older ones removed)."""
    if not base.startswith("file://"):
        raise InvalidInputError(f"cannot write signatures to {base}: only a file:// lookaside-staging is writable "
                                "(configure lookaside-staging in registries.d)")
    directory = base[len("file://"):]
    index = 0
    for index, signature in enumerate(signatures, 1):
        target = Path(signature_url(directory, path, manifest_digest, index))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(signature)
        os.replace(temporary, target)
    while os.path.exists(extra := signature_url(directory, path, manifest_digest, index + 1)):
        os.unlink(extra)
        index += 1


def enable_sigstore_attachments(directory: str | os.PathLike | None, scope: str) -> Path:
    """Set ``use-sigstore-attachments: true`` for a docker scope: in the file that names the scope
    already, else in a new ``SCOPE.yaml`` (``directory``, else the system's registries.d). The file
    is replaced whole through a temporary file and a rename; returns it."""
    import yaml

    base = Path(directory) if directory else SYSTEM_DIR
    RegistriesD(base)  # (refuse to edit a directory that does not read)
    target = None
    for path in sorted(base.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        if scope in (data.get("docker") or {}):
            target, document = path, data
            break
    if target is None:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in scope)
        target, document = base / f"{name}.yaml", {}
        if target.exists():  # (a file of that name for another scope)
            document = yaml.safe_load(target.read_text()) or {}
    entry = document.setdefault("docker", {}).setdefault(scope, {}) or {}
    entry["use-sigstore-attachments"] = True
    document["docker"][scope] = entry
    base.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False))
    os.replace(temporary, target)
    return target
