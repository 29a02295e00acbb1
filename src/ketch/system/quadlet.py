"""Quadlet for ketch: ``.container``, ``.volume`` and ``.network`` files (podman's Quadlet
format, unchanged) turned into systemd services that run ``ketch``, by a systemd generator.

``foo.container`` becomes ``foo.service`` running ``ketch run`` of its image; ``foo.volume``
becomes ``foo-volume.service`` (a one-shot ``ketch volume create`` of ``systemd-foo``);
``foo.network`` becomes ``foo-network.service``. A container that names ``foo.volume`` or
``foo.network`` gets the resource's name and a dependency on its service, as Quadlet does.
The original file's ``[Unit]``, ``[Service]`` and ``[Install]`` sections are kept; its own
section is kept too, renamed ``[X-Container]`` (systemd ignores ``X-`` sections).

Unit files are parsed here (systemd's syntax: sections, repeated keys, backslash continuation,
``#``/``;`` comments, quoted words): there is no maintained Python library for systemd's unit
syntax, and configparser refuses repeated keys.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError

SYSTEM_DIRS = ("/etc/containers/systemd", "/usr/share/containers/systemd")
USER_DIRS = ("~/.config/containers/systemd", "/etc/containers/systemd/users")
EXTENSIONS = (".container", ".volume", ".network")
AUTOUPDATE_LABEL = "io.containers.autoupdate"


@dataclass
class UnitFile:
    """Ordered (section, key, value) entries; comments and blank lines are dropped."""
    entries: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, path: str = "unit file") -> UnitFile:
        unit, section = cls(), None
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            while line.endswith("\\") and i < len(lines):  # continuation: joined with a space
                nxt = lines[i].strip()
                i += 1
                if nxt.startswith(("#", ";")):
                    continue  # (a comment inside a continuation is skipped, as systemd does)
                line = line[:-1].rstrip() + " " + nxt
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise InvalidInputError(f"{path}: bad section header {line!r}")
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            if not sep or section is None:
                raise InvalidInputError(f"{path}: {line!r} is not KEY=VALUE inside a section")
            unit.entries.append((section, key.strip(), value.strip()))
        return unit

    def values(self, section: str, key: str) -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def last(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        return found[-1] if found else None

    def keys(self, section: str) -> list[str]:
        return [k for s, k, _ in self.entries if s == section]

    def section(self, section: str) -> list[tuple[str, str]]:
        return [(k, v) for s, k, v in self.entries if s == section]


def words(value: str) -> list[str]:
    """systemd's splitting of a value into words (quotes and backslash escapes)."""
    try:
        return shlex.split(value, posix=True)
    except ValueError as exc:
        raise InvalidInputError(f"{value!r}: {exc}") from None


def quote(word: str) -> str:
    """A word as systemd reads it back from an ExecStart= line."""
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bool(value: str | None, what: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("1", "yes", "true", "on"):
        return True
    if value.lower() in ("0", "no", "false", "off", ""):
        return False
    raise InvalidInputError(f"{what}={value}: not a boolean")


def _oneshot(args: list[str]) -> list[tuple[str, str]]:
    """The [Service] keys of a resource's unit: one command, done once, counted as running."""
    return [("Type", "oneshot"), ("RemainAfterExit", "yes"), ("ExecStart", " ".join(quote(a) for a in args)),
            ("SyslogIdentifier", "%N")]


class _Args:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, *items: str) -> None:
        self.items += items


# [Container] keys → ketch run flags: one value each, or one per word ("words"), or many lines.
_SIMPLE: dict[str, str | None] = {
    "ContainerName": None, "HostName": "--hostname", "IP": "--ip", "IP6": "--ip6", "LogDriver": "--log-driver",
    "Pull": "--pull", "ShmSize": "--shm-size", "StopTimeout": "--stop-timeout",
    "Timezone": "--tz", "UserNS": "--userns", "WorkingDir": "--workdir", "PidsLimit": "--pids-limit",
    "Memory": "--memory", "StopSignal": "--stop-signal", "HealthCmd": "--health-cmd",
    "HealthInterval": "--health-interval", "HealthRetries": "--health-retries",
    "HealthStartPeriod": "--health-start-period", "HealthTimeout": "--health-timeout",
    "HealthOnFailure": "--health-on-failure", "Entrypoint": "--entrypoint",
}
_MANY = {
    "PublishPort": "--publish", "Volume": "--volume", "Mount": "--mount", "Tmpfs": "--tmpfs",
    "EnvironmentFile": "--env-file", "Ulimit": "--ulimit", "Sysctl": "--sysctl", "AddDevice": "--device",
    "DNS": "--dns", "DNSSearch": "--dns-search", "DNSOption": "--dns-option", "ExposeHostPort": "--expose",
    "AddHost": "--add-host", "Secret": "--secret", "GroupAdd": "--group-add", "Network": "--network",
    "NetworkAlias": "--network-alias", "UIDMap": "--uidmap", "GIDMap": "--gidmap", "Device": "--device",
}
_WORDS = {"Label": "--label", "Annotation": "--annotation", "Environment": "--env"}
_HANDLED = {"Image", "Exec", "User", "Group", "AddCapability", "DropCapability", "Notify", "ReadOnly",
            "ReadOnlyTmpfs", "RunInit", "NoNewPrivileges", "EnvironmentHost", "PodmanArgs", "AutoUpdate",
            "SecurityLabelDisable", "VolatileTmp", "GlobalArgs", "SeccompProfile", "ServiceName",
            "HttpProxy"}
# (the other keys of podman's Quadlet -- Pod, Rootfs, SELinux labels, Mask/Unmask,
# ContainersConfModule, Retry -- are refused as unsupported, naming the key, rather than silently dropped)


@dataclass
class Generated:
    source: Path
    service: str
    text: str


class Generator:
    """Quadlet's conversions; ``ketch`` is the path the services run."""

    def __init__(self, ketch: str) -> None:
        self.ketch = ketch

    # -- resources a container refers to ------------------------------------------------------

    def _resource(self, value: str, kind: str, units: dict[str, UnitFile], deps: list[str]) -> str:
        """``foo.volume`` / ``foo.network`` → its name, with a dependency on its service."""
        stem = value[: -len(kind) - 1]
        unit = units.get(value)
        name = f"systemd-{stem}"
        if unit is not None:
            name = unit.last(kind.capitalize(), f"{kind.capitalize()}Name") or name
        deps.append(f"{stem}-{kind}.service")
        return name

    def _volume_arg(self, value: str, units, deps) -> str:
        source, sep, rest = value.partition(":")
        if source.endswith(".volume"):
            source = self._resource(source, "volume", units, deps)
        return source + sep + rest

    # -- .container -------------------------------------------------------------------------------

    def container(self, path: Path, unit: UnitFile, units: dict[str, UnitFile]) -> Generated:
        section = "Container"
        for key in unit.keys(section):
            if key not in _SIMPLE and key not in _MANY and key not in _WORDS and key not in _HANDLED:
                raise InvalidInputError(f"{path}: unsupported key {key!r} in group {section!r}")
        image = unit.last(section, "Image")
        if not image:
            raise InvalidInputError(f"{path}: no Image key specified")
        name = unit.last(section, "ServiceName") or path.name[: -len(".container")]
        deps: list[str] = []
        args = _Args()
        args.add(self.ketch)
        for value in unit.values(section, "GlobalArgs"):
            args.add(*words(value))
        args.add("run", f"--name={unit.last(section, 'ContainerName') or 'systemd-%N'}",
                 "--cidfile=%t/%N.cid", "--replace", "--rm", "--cgroups=split")
        notify = _bool(unit.last(section, "Notify"), "Notify")
        args.add("--sdnotify=container" if notify else "--sdnotify=conmon", "-d")
        for key, flag in _SIMPLE.items():
            simple = unit.last(section, key)
            if simple is not None and flag is not None:
                args.add(flag, simple)
        user, group = unit.last(section, "User"), unit.last(section, "Group")
        if group and not user:
            raise InvalidInputError(f"{path}: Group= needs User=")
        if user:
            args.add("--user", f"{user}:{group}" if group else user)
        for cap in (c for v in unit.values(section, "DropCapability") for c in words(v)):
            args.add(f"--cap-drop={cap.lower()}")
        for cap in (c for v in unit.values(section, "AddCapability") for c in words(v)):
            args.add(f"--cap-add={cap.lower()}")
        if _bool(unit.last(section, "ReadOnly"), "ReadOnly"):
            args.add("--read-only")
        if unit.last(section, "ReadOnlyTmpfs") is not None:
            args.add(f"--read-only-tmpfs={str(_bool(unit.last(section, 'ReadOnlyTmpfs'), 'ReadOnlyTmpfs')).lower()}")
        if _bool(unit.last(section, "VolatileTmp"), "VolatileTmp"):
            args.add("--tmpfs", "/tmp:rw,size=512M,mode=1777")
        if _bool(unit.last(section, "RunInit"), "RunInit"):
            args.add("--init")
        if _bool(unit.last(section, "NoNewPrivileges"), "NoNewPrivileges"):
            args.add("--security-opt=no-new-privileges")
        if _bool(unit.last(section, "EnvironmentHost"), "EnvironmentHost"):
            args.add("--env-host")
        if _bool(unit.last(section, "SecurityLabelDisable"), "SecurityLabelDisable"):
            args.add("--security-opt", "label=disable")
        if unit.last(section, "SeccompProfile") is not None:
            args.add("--security-opt", f"seccomp={unit.last(section, 'SeccompProfile')}")
        if unit.last(section, "HttpProxy") is not None:
            args.add(f"--http-proxy={str(_bool(unit.last(section, 'HttpProxy'), 'HttpProxy')).lower()}")
        for key, flag in _MANY.items():
            for value in unit.values(section, key):
                for item in (words(value) if key in ("PublishPort", "ExposeHostPort", "DNS", "DNSSearch",
                                                     "DNSOption", "GroupAdd") else [value]):
                    if key == "Volume":
                        item = self._volume_arg(item, units, deps)
                    elif key == "Mount":
                        item = re.sub(r"(^|,)(source|src)=([^,]+\.volume)(?=,|$)",
                                      lambda m: f"{m.group(1)}{m.group(2)}={self._resource(m.group(3), 'volume', units, deps)}",
                                      item)
                    elif key == "Network" and item.split(":", 1)[0].endswith(".network"):
                        network, _, opts = item.partition(":")
                        item = self._resource(network, "network", units, deps) + (f":{opts}" if opts else "")
                    args.add(flag, item)
        for key, flag in _WORDS.items():
            for value in unit.values(section, key):
                for item in words(value):
                    args.add(flag, item)
        autoupdate = unit.last(section, "AutoUpdate")
        if autoupdate:
            if autoupdate not in ("registry", "local"):
                raise InvalidInputError(f"{path}: AutoUpdate={autoupdate}: must be registry or local")
            args.add("--label", f"{AUTOUPDATE_LABEL}={autoupdate}")
        for value in unit.values(section, "PodmanArgs"):
            args.add(*words(value))
        args.add(image)
        for value in unit.values(section, "Exec"):
            args.add(*words(value))

        service_type = unit.last("Service", "Type")
        if service_type not in (None, "notify", "oneshot"):
            raise InvalidInputError(f"{path}: invalid service Type {service_type!r}")
        kill_mode = unit.last("Service", "KillMode")
        if kill_mode not in (None, "mixed", "control-group"):
            raise InvalidInputError(f"{path}: invalid KillMode {kill_mode!r}")
        rm = f"{self.ketch} rm -v -f -i --cidfile=%t/%N.cid"
        service: list[tuple[str, str]] = [("Environment", "PODMAN_SYSTEMD_UNIT=%n")]
        if kill_mode is None:
            service.append(("KillMode", "mixed"))
        service += [("ExecStartPre", "-rm -f %t/%N.cid"), ("ExecStop", rm), ("ExecStopPost", f"-{rm}"),
                    ("ExecStopPost", "-rm -f %t/%N.cid"), ("Delegate", "yes")]
        if service_type != "oneshot":
            service += [("Type", "notify"), ("NotifyAccess", "all")]
        if unit.last("Service", "SyslogIdentifier") is None:
            service.append(("SyslogIdentifier", "%N"))
        service.append(("ExecStart", " ".join(quote(a) for a in args.items)))
        return Generated(path, f"{name}.service", self._render(path, unit, section, deps, service,
                                                               "%t/containers"))

    # -- .volume and .network ---------------------------------------------------------------------

    def volume(self, path: Path, unit: UnitFile) -> Generated:
        section, stem = "Volume", path.name[: -len(".volume")]
        known = {"VolumeName", "Driver", "Label", "Device", "Type", "Options", "Copy", "User", "Group", "Image",
                 "PodmanArgs", "GlobalArgs", "ContainersConfModule"}
        self._check(path, unit, section, known)
        name = unit.last(section, "VolumeName") or f"systemd-{stem}"
        args = [self.ketch, "volume", "create", "--ignore"]
        driver = unit.last(section, "Driver")
        if driver:
            args += ["--driver", driver]
        for value in unit.values(section, "Label"):
            args += [a for item in words(value) for a in ("--label", item)]
        options = []
        if unit.last(section, "Type"):
            options.append(f"type={unit.last(section, 'Type')}")
        if unit.last(section, "Device"):
            options.append(f"device={unit.last(section, 'Device')}")
        if unit.last(section, "Options"):
            options.append(f"o={unit.last(section, 'Options')}")
        for key, opt in (("User", "uid"), ("Group", "gid")):
            if unit.last(section, key):
                options.append(f"{opt}={unit.last(section, key)}")
        if unit.last(section, "Copy") is not None and not _bool(unit.last(section, "Copy"), "Copy"):
            options.append("nocopy")
        for option in options:
            args += ["--opt", option]
        for value in unit.values(section, "PodmanArgs"):
            args += words(value)
        args.append(name)
        return Generated(path, f"{stem}-volume.service", self._render(path, unit, section, [], _oneshot(args), None))

    def network(self, path: Path, unit: UnitFile) -> Generated:
        section, stem = "Network", path.name[: -len(".network")]
        known = {"NetworkName", "Driver", "Label", "Subnet", "Gateway", "IPRange", "IPv6", "Internal",
                 "DisableDNS", "Options", "PodmanArgs", "GlobalArgs", "ContainersConfModule", "DNS", "IPAMDriver"}
        self._check(path, unit, section, known)
        name = unit.last(section, "NetworkName") or f"systemd-{stem}"
        args = [self.ketch, "network", "create", "--ignore"]
        driver = unit.last(section, "Driver")
        if driver:
            args += ["--driver", driver]
        for key, flag in (("Subnet", "--subnet"), ("Gateway", "--gateway"), ("IPRange", "--ip-range")):
            for value in unit.values(section, key):
                args += [flag, value]
        for key, flag in (("IPv6", "--ipv6"), ("Internal", "--internal"), ("DisableDNS", "--disable-dns")):
            if _bool(unit.last(section, key), key):
                args.append(flag)
        for value in unit.values(section, "Label"):
            args += [a for item in words(value) for a in ("--label", item)]
        for value in unit.values(section, "Options"):
            args += ["--opt", value]
        for value in unit.values(section, "PodmanArgs"):
            args += words(value)
        args.append(name)
        return Generated(path, f"{stem}-network.service", self._render(path, unit, section, [], _oneshot(args), None))

    @staticmethod
    def _check(path: Path, unit: UnitFile, section: str, known: set[str]) -> None:
        for key in unit.keys(section):
            if key not in known:
                raise InvalidInputError(f"{path}: unsupported key {key!r} in group {section!r}")

    @staticmethod
    def _render(path: Path, unit: UnitFile, section: str, deps: list[str], service: list[tuple[str, str]],
                mounts_for: str | None) -> str:
        out = ["# Automatically generated by ketch-quadlet", "#", f"[X-{section}]"]
        out += [f"{k}={v}" for k, v in unit.section(section)]
        out += ["", "[Unit]"]
        out += [f"{k}={v}" for k, v in unit.section("Unit")]
        if section == "Container" and _bool(unit.last("Quadlet", "DefaultDependencies") or "true", "x"):
            out += ["Wants=network-online.target", "After=network-online.target"]
        out.append(f"SourcePath={path}")
        if mounts_for:
            out.append(f"RequiresMountsFor={mounts_for}")
        for dep in dict.fromkeys(deps):
            out += [f"Requires={dep}", f"After={dep}"]
        out += ["", "[Service]"]
        out += [f"{k}={v}" for k, v in unit.section("Service")]
        out += [f"{k}={v}" for k, v in service]
        for other in dict.fromkeys(s for s, _, _ in unit.entries):
            if other not in (section, "Unit", "Service", "Quadlet"):
                out += ["", f"[{other}]"] + [f"{k}={v}" for k, v in unit.section(other)]
        return "\n".join(out) + "\n"


def source_dirs(user: bool) -> list[Path]:
    """Where unit files are read from: ``$QUADLET_UNIT_DIRS`` (colon-separated, podman's
    variable), else podman's directories."""
    override = os.environ.get("QUADLET_UNIT_DIRS")
    if override:
        return [Path(p) for p in override.split(":") if p]
    return [Path(os.path.expanduser(p)) for p in (USER_DIRS if user else SYSTEM_DIRS)]


def generate(dirs: list[Path], output: Path | None, ketch: str) -> tuple[list[Generated], list[str]]:
    """Convert every unit file of ``dirs`` (the first directory's file wins for a name); write
    the services into ``output`` unless it is None. Returns what was made and the errors (a
    file with an error is skipped, as Quadlet does)."""
    found: dict[str, Path] = {}
    for directory in dirs:
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            if entry.suffix in EXTENSIONS and entry.name not in found and entry.is_file():
                found[entry.name] = entry
    units, errors = {}, []
    for name, path in found.items():
        try:
            units[name] = UnitFile.parse(path.read_text(), str(path))
        except (InvalidInputError, OSError, UnicodeDecodeError) as exc:
            errors.append(f"{path}: {exc}")
    generator = Generator(ketch)
    made = []
    for name, unit in units.items():
        path = found[name]
        try:
            if path.suffix == ".container":
                made.append(generator.container(path, unit, units))
            elif path.suffix == ".volume":
                made.append(generator.volume(path, unit))
            else:
                made.append(generator.network(path, unit))
        except InvalidInputError as exc:
            errors.append(str(exc))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for item in made:
            temp = output / f".{item.service}.tmp"
            temp.write_text(item.text)
            os.rename(temp, output / item.service)
            for target, kind in _install_links(found[item.source.name], units[item.source.name]):
                link_dir = output / f"{target}.{kind}"
                link_dir.mkdir(exist_ok=True)
                link = link_dir / item.service
                if not os.path.lexists(link):
                    os.symlink(f"../{item.service}", link)
    return made, errors


def _install_links(path: Path, unit: UnitFile) -> list[tuple[str, str]]:
    """Generated units cannot be enabled: their [Install] section is applied by the generator
    (WantedBy=/RequiredBy= links in its output directory), as Quadlet does."""
    links = []
    for key, kind in (("WantedBy", "wants"), ("RequiredBy", "requires")):
        for value in unit.values("Install", key):
            links += [(target, kind) for target in words(value)]
    return links
