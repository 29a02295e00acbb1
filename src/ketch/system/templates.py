"""What a system container's image carries under ``/exports`` (as Project Atomic defined it), and
the defaults for an image that carries nothing: the OCI config, the systemd unit and the
tmpfiles.d lines of one deployment.

Templates use ``$NAME``/``${NAME}`` variables (Python's ``string.Template``, the syntax atomic
used); a variable with no value is an error naming it, never an empty string in a unit.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass, field

from ketch.errors import InvalidInputError

EXPORTS = "exports"
CONFIG_TEMPLATE = "config.json.template"
SERVICE_TEMPLATE = "service.template"
TMPFILES_TEMPLATE = "tmpfiles.template"
MANIFEST = "manifest.json"
HOSTFS = "hostfs"

# Labels an image may carry to order its unit (a system container's name, or any unit) and to
# ask for Type=notify: the unit's own words, under our prefix.
LABEL_PREFIX = "io.ketch.system."
ORDERING_LABELS = ("after", "before", "requires", "wants")
NOTIFY_LABEL = LABEL_PREFIX + "notify"

# Variables only ketch sets (a --set of one is refused: the unit would lie about its deployment).
FIXED = ("NAME", "DESTDIR", "IMAGE_NAME", "IMAGE_ID", "UUID", "EXEC_START", "EXEC_STOP", "EXEC_STARTPRE",
         "EXEC_STOPPOST", "PIDFILE", "ALL_PROCESS_CAPABILITIES")

PODMAN_DEFAULT_CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                               "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
                               "CAP_SYS_CHROOT"]


@dataclass
class Exports:
    """The templates found in an image (None where it has none) and its manifest's defaults."""
    config: str | None = None
    service: str | None = None
    tmpfiles: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    has_hostfs: bool = False

    @classmethod
    def read(cls, rootfs: str) -> Exports:
        base = os.path.join(rootfs, EXPORTS)
        if os.path.islink(base):
            # (an absolute link resolves on the host, not in the image: templates and host files
            # could then be read from anywhere)
            raise InvalidInputError(f"/{EXPORTS} is a symbolic link in the image: refused")

        def text(name: str) -> str | None:
            path = os.path.join(base, name)
            if os.path.islink(path) or not os.path.isfile(path):
                return None  # (a link could point anywhere on the host: only real files are read)
            with open(path, encoding="utf-8", errors="strict") as f:
                return f.read()

        exports = cls(config=text(CONFIG_TEMPLATE), service=text(SERVICE_TEMPLATE),
                      tmpfiles=text(TMPFILES_TEMPLATE),
                      has_hostfs=os.path.isdir(os.path.join(base, HOSTFS)) and
                      not os.path.islink(os.path.join(base, HOSTFS)))
        manifest = text(MANIFEST)
        if manifest is not None:
            try:
                data = json.loads(manifest)
            except ValueError as exc:
                raise InvalidInputError(f"/{EXPORTS}/{MANIFEST} is not valid JSON: {exc}") from exc
            values = data.get("defaultValues") if isinstance(data, dict) else None
            if values is not None and not isinstance(values, dict):
                raise InvalidInputError(f"/{EXPORTS}/{MANIFEST}: defaultValues must be an object")
            exports.defaults = {str(k): str(v) for k, v in (values or {}).items()}
        return exports


def render(text: str, values: dict[str, str], what: str) -> str:
    try:
        return string.Template(text).substitute(values)
    except KeyError as exc:
        name = exc.args[0]
        raise InvalidInputError(f"{what} uses ${name}, which has no value: give one with --set {name}=VALUE") \
            from None
    except ValueError as exc:
        raise InvalidInputError(f"{what}: {exc}") from None


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` flags."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InvalidInputError(f"invalid --set {pair!r}: use KEY=VALUE (KEY a template variable name)")
        if key in FIXED:
            raise InvalidInputError(f"--set {key}: ketch sets ${key} itself")
        values[key] = value
    return values


def unit_names(text: str) -> list[str]:
    """A label's list of units: system container names get ``.service``."""
    names = []
    for word in re.split(r"[\s,]+", text.strip()):
        if word:
            names.append(word if re.search(r"\.[a-z]+$", word) else f"{word}.service")
    return names


def default_config(image_config: dict, user: tuple[int, int, list[int]], name: str, state_directory: str,
                   host_files: dict[str, bool]) -> dict:
    """The OCI config of an image with no config.json.template: its entrypoint, command,
    environment, working directory and user; a read-only root with tmpfs ``/run`` and ``/tmp``;
    ``$STATE_DIRECTORY/NAME`` bound read-write at ``/var/lib/NAME``; the host's network."""
    from ketch.runtime.spec import default_spec

    spec = default_spec()
    args = list(image_config.get("Entrypoint") or []) + list(image_config.get("Cmd") or [])
    if not args:
        raise InvalidInputError("the image has no entrypoint or command, and no /exports/config.json.template")
    env = list(image_config.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    uid, gid, groups = user
    caps = list(PODMAN_DEFAULT_CAPABILITIES)
    process = spec["process"]
    process.update({
        "terminal": False, "args": args, "env": env + ["container=ketch"],
        "cwd": image_config.get("WorkingDir") or "/",
        "user": {"uid": uid, "gid": gid, **({"additionalGids": groups} if groups else {})},
        "capabilities": {"bounding": caps, "effective": caps if uid == 0 else [], "permitted": caps if uid == 0
                         else [], "ambient": []},
        "noNewPrivileges": False,
    })
    spec.pop("hostname", None)  # (the uts namespace starts with the host's name)
    mounts = spec["mounts"]
    mounts += [
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": f"/var/lib/{name}", "type": "bind", "source": f"{state_directory}/{name}",
         "options": ["rbind", "rw"]},
    ]
    for path, present in sorted(host_files.items()):
        if present:
            mounts.append({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]})
    linux = spec["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    linux["cgroupsPath"] = f"ketch-{name}"
    return dict(spec)


def default_unit(values: dict[str, str], labels: dict[str, str]) -> str:
    """The unit of an image with no service.template: the runtime in the foreground (systemd's
    stop signal is forwarded to the container), ``Type=notify`` when the image's labels ask."""
    notify = labels.get(NOTIFY_LABEL, "").lower() in ("1", "true", "yes")
    lines = ["[Unit]", f"Description=ketch system container {values['NAME']} ({values['IMAGE_NAME']})"]
    for word in ORDERING_LABELS:
        units = unit_names(labels.get(LABEL_PREFIX + word, ""))
        if units:
            lines.append(f"{word.capitalize()}={' '.join(units)}")
    lines += ["", "[Service]", f"Type={'notify' if notify else 'simple'}"]
    if notify:
        lines.append("NotifyAccess=all")  # READY=1 comes from the container's process, not the runtime
    lines += [
        # (no ExecStartPre clearing a stale state: ExecStopPost runs after every stop, a failed
        # start included, and /run starts empty at boot; a process start is a third of a start)
        "ExecStart=$EXEC_START",
        "ExecStopPost=-$EXEC_STOPPOST",
        "WorkingDirectory=$DESTDIR",
        "KillMode=mixed",
        "Delegate=yes",
        "Restart=on-failure",
        "TimeoutStopSec=70",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def default_tmpfiles(values: dict[str, str]) -> str:
    return f"d {values['STATE_DIRECTORY']}/{values['NAME']} 0700 - - -\n"


def wanted_by(unit_text: str) -> list[tuple[str, str]]:
    """The ``[Install]`` section's WantedBy= and RequiredBy= targets (what enabling links)."""
    section, found = None, []
    for line in unit_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Install" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() in ("WantedBy", "RequiredBy"):
                kind = "wants" if key.strip() == "WantedBy" else "requires"
                found += [(unit, kind) for unit in value.split()]
    return found
