"""``registries.conf`` (v2 TOML, and the old v1 tables), read as containers/image reads it.

Files: ``--registries-conf`` / ``CONTAINERS_REGISTRIES_CONF``, else
``~/.config/containers/registries.conf`` when it exists, else
``/etc/containers/registries.conf``; then every ``*.conf`` in the matching
``registries.conf.d`` in name order, later files overriding earlier ones
(scalar keys replaced, ``[[registry]]`` entries replaced by prefix, aliases
merged).

Used for: mirrors (tried first, falling back to the primary location),
``insecure`` (TLS not verified, plain HTTP allowed), ``blocked``, prefix
rewriting (``location``), short-name aliases and unqualified-search
registries (for short names).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError, PolicyDeniedError
from ketch.oci.reference import Reference, parse_reference

SYSTEM_FILE = Path("/etc/containers/registries.conf")


@dataclass(frozen=True)
class Endpoint:
    """A place to fetch an image from: a mirror or the primary location."""

    location: str  # host[:port][/path]
    insecure: bool = False
    pull_from_mirror: str = ""  # "", "all", "digest-only", "tag-only" (mirrors only)

    @property
    def host(self) -> str:
        return self.location.split("/", 1)[0]


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Endpoint, ...] = ()


@dataclass
class RegistriesConf:
    unqualified_search: list[str] = field(default_factory=list)
    short_name_mode: str = "permissive"
    aliases: dict[str, str] = field(default_factory=dict)
    registries: list[RegistryEntry] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    # -- loading -----------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> RegistriesConf:
        main = Path(path or os.environ.get("CONTAINERS_REGISTRIES_CONF") or _default_file())
        conf = cls()
        files = [main] if main.exists() else []
        dropin_dir = main.parent / (main.name + ".d") if path else main.parent / "registries.conf.d"
        if dropin_dir.is_dir():
            files += sorted(p for p in dropin_dir.iterdir() if p.suffix == ".conf" and p.is_file())
        elif path is not None and not main.exists():
            raise InvalidInputError(f"registries.conf {main} does not exist")
        for file in files:
            conf._merge(file)
        return conf

    def _merge(self, file: Path) -> None:
        try:
            data = tomllib.loads(file.read_text())
        except OSError as exc:
            raise InvalidInputError(f"reading {file}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{file} is not valid TOML: {exc}") from exc
        self.files.append(str(file))
        if "registries" in data and isinstance(data["registries"], dict):
            data = _from_v1(data, file)
        if "unqualified-search-registries" in data:
            value = data["unqualified-search-registries"]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInputError(f"{file}: unqualified-search-registries must be a list of strings")
            self.unqualified_search = value
        if "short-name-mode" in data:
            mode = data["short-name-mode"]
            if mode not in ("enforcing", "permissive", "disabled"):
                raise InvalidInputError(f"{file}: short-name-mode must be enforcing, permissive or disabled")
            self.short_name_mode = mode
        aliases = data.get("aliases") or {}
        if not isinstance(aliases, dict):
            raise InvalidInputError(f"{file}: [aliases] must be a table")
        for name, target in aliases.items():
            self.aliases[name] = _check_alias(name, target, file)
        entries = data.get("registry") or []
        if not isinstance(entries, list):
            raise InvalidInputError(f"{file}: registry must be an array of tables ([[registry]])")
        for raw in entries:
            entry = _parse_entry(raw, file)
            self.registries = [r for r in self.registries if r.prefix != entry.prefix] + [entry]

    # -- lookups -----------------------------------------------------------

    def find(self, name: str) -> RegistryEntry | None:
        """The entry whose prefix matches ``name`` (``host/repo``) best."""
        best, best_len = None, -1
        for entry in self.registries:
            if _prefix_matches(entry.prefix, name) and len(entry.prefix) > best_len:
                best, best_len = entry, len(entry.prefix)
        return best

    def pull_endpoints(self, ref: Reference) -> list[tuple[Endpoint, Reference]]:
        """Where to pull ``ref`` from, in order: mirrors, then the primary location.

        Each endpoint comes with the reference rewritten for it. Raises
        :class:`PolicyDeniedError` if the registry is blocked.
        """
        entry = self.find(ref.name)
        primary = self.push_endpoint(ref)
        if entry is None:
            return [primary]
        endpoints = []
        for mirror in entry.mirrors:
            if mirror.pull_from_mirror == "digest-only" and ref.digest is None:
                continue
            if mirror.pull_from_mirror == "tag-only" and ref.digest is not None:
                continue
            endpoints.append((mirror, _rewrite(ref, entry.prefix, mirror.location)))
        return endpoints + [primary]

    def push_endpoint(self, ref: Reference) -> tuple[Endpoint, Reference]:
        """The primary location of ``ref``: where pushes go, and the last place pulls try."""
        entry = self.find(ref.name)
        if entry is None:
            return Endpoint(ref.domain), ref
        if entry.blocked:
            raise PolicyDeniedError(f"registry {ref.domain} is blocked in registries.conf (prefix {entry.prefix!r})")
        return Endpoint(entry.location, entry.insecure), _rewrite(ref, entry.prefix, entry.location)

    def resolve_short_name(self, name: str) -> list[Reference]:
        """Candidates for a name typed without a registry, as podman resolves it.

        A fully qualified name is returned as it is. An alias wins; otherwise
        each unqualified-search registry is tried in order. With
        ``short-name-mode = "disabled"`` or no search registries, docker.io
        is the only candidate, as the docker tools assume.
        """
        first = name.split("/", 1)[0]
        qualified = "/" in name and ("." in first or ":" in first or first == "localhost")
        if qualified:
            return [parse_reference(name)]
        base, tag, digest = _split_tag(name)
        alias = self.aliases.get(base)
        if alias is not None:
            return [parse_reference(alias + tag + digest)]
        registries = self.unqualified_search if self.short_name_mode != "disabled" else []
        if not registries:
            return [parse_reference(name)]
        return [parse_reference(f"{registry}/{name}") for registry in registries]


def _default_file() -> Path:
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    user = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "registries.conf"
    return user if user.exists() else SYSTEM_FILE


def _split_tag(name: str) -> tuple[str, str, str]:
    digest = ""
    if "@" in name:
        name, at, rest = name.partition("@")
        digest = at + rest
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, colon, rest = name.rpartition(":")
        tag = colon + rest
    return name, tag, digest


def _prefix_matches(prefix: str, name: str) -> bool:
    if prefix.startswith("*."):
        host = name.split("/", 1)[0].split(":")[0]
        return host.endswith(prefix[1:])
    return name == prefix or name.startswith(prefix + "/") or (":" not in prefix and
                                                               name.split("/", 1)[0].split(":")[0] == prefix)


def _rewrite(ref: Reference, prefix: str, location: str) -> Reference:
    if not location or prefix.startswith("*."):
        return ref
    if ref.name.startswith(prefix):
        rest = ref.name[len(prefix):]
    else:
        rest = "/" + ref.path
    new = parse_reference(location + rest)
    return Reference(new.domain, new.path, ref.tag, ref.digest)


def _check_alias(name: str, target: object, file: Path) -> str:
    if not isinstance(target, str):
        raise InvalidInputError(f"{file}: alias {name!r} must be a string")
    try:
        parse_reference(target)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{file}: alias {name!r}: {exc}") from exc
    return target


def _parse_entry(raw: object, file: Path) -> RegistryEntry:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{file}: each [[registry]] must be a table")
    location = raw.get("location", "")
    prefix = raw.get("prefix") or location
    if not isinstance(location, str) or not isinstance(prefix, str) or not prefix:
        raise InvalidInputError(f"{file}: a [[registry]] needs a prefix or a location")
    for key in ("insecure", "blocked"):
        if key in raw and not isinstance(raw[key], bool):
            raise InvalidInputError(f"{file}: registry {prefix!r}: {key} must be true or false")
    mirrors = []
    for mirror in raw.get("mirror") or []:
        if not isinstance(mirror, dict) or not isinstance(mirror.get("location"), str):
            raise InvalidInputError(f"{file}: registry {prefix!r}: each mirror needs a location")
        mode = mirror.get("pull-from-mirror", "all")
        if mode not in ("all", "digest-only", "tag-only"):
            raise InvalidInputError(f"{file}: registry {prefix!r}: bad pull-from-mirror {mode!r}")
        mirrors.append(Endpoint(mirror["location"], bool(mirror.get("insecure", False)), mode))
    return RegistryEntry(prefix=prefix, location=location or prefix, insecure=bool(raw.get("insecure", False)),
                         blocked=bool(raw.get("blocked", False)), mirrors=tuple(mirrors))


def _from_v1(data: dict, file: Path) -> dict:
    """The old ``[registries.search]``/``insecure``/``block`` tables, as v2 keys."""
    tables = data["registries"]
    out: dict = {"registry": []}
    search = (tables.get("search") or {}).get("registries")
    if search is not None:
        out["unqualified-search-registries"] = search
    for key, flag in (("insecure", "insecure"), ("block", "blocked")):
        for host in (tables.get(key) or {}).get("registries") or []:
            out["registry"].append({"location": host, flag: True})
    return out
