"""What ``--format`` templates see: podman's field names over ketch's data.

A podman user's template names the fields of podman's Go types (``{{.ID}}``, ``{{.Names}}``,
``{{.Status}}``, ``{{.Repository}}:{{.Tag}}``), several of them computed (``.Names`` is one
string, ``.ID`` is cut to 12 characters unless ``--no-trunc``, ``.Size`` is "2.13 MB"). Each
class here is one of those types: its public attributes are the fields and methods a template
may use, computed from the JSON entries ketch's library returns. ``go_fields`` lists what
``{{.}}`` prints.
"""

from __future__ import annotations

import datetime
import re

from ketch.cli import humanize
from ketch.cli.gotemplate import GoStruct, GoTime

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~3 ms to import: not on ps's path)
    from typing import Any


class Row:
    go_type = "struct"
    go_fields: tuple[str, ...] = ()


def _time(seconds: float | int | None) -> GoTime:
    if not seconds or seconds < 0:
        return GoTime(datetime.datetime(1, 1, 1, tzinfo=datetime.UTC), 0)
    return GoTime.from_unix(seconds)


def ports_text(ports: list[dict] | None) -> str:
    """podman 4's PORTS column: ``0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp``."""
    parts = []
    for port in ports or []:
        host_ip = port.get("host_ip") or "0.0.0.0"
        span = port.get("range") or 1
        for protocol in (port.get("protocol") or "tcp").split(","):
            if span > 1:
                parts.append(f"{host_ip}:{port['host_port']}-{port['host_port'] + span - 1}->"
                             f"{port['container_port']}-{port['container_port'] + span - 1}/{protocol}")
            else:
                parts.append(f"{host_ip}:{port['host_port']}->{port['container_port']}/{protocol}")
    return ", ".join(parts)


def container_status(entry: dict) -> str:
    """podman 4.3's STATUS: "Up 5 seconds ago", "Exited (0) 3 minutes ago", "Created"..."""
    text = container_state(entry)
    health = entry.get("Health") or ""
    return f"{text} ({health})" if health else text


def container_state(entry: dict) -> str:
    """podman 4.3's psReporter.State(), which a template's .State calls (not the JSON's word)."""
    state = entry["State"]
    if state == "running":
        text = f"Up {humanize.since(entry['StartedAt'])} ago"
    elif state in ("exited", "stopped"):
        text = f"Exited ({entry['ExitCode']}) {humanize.since(entry['ExitedAt'])} ago"
    else:
        text = state[:1].upper() + state[1:]
    return text


class ContainerRow(Row):
    """podman ps's psReporter."""

    go_type = "containers.psReporter"
    go_fields = ("AutoRemove", "Command", "Created", "CreatedAt", "Exited", "ExitedAt", "ExitCode", "ID", "Image",
                 "ImageID", "IsInfra", "Labels", "Mounts", "Names", "Namespaces", "Networks", "Pid", "Pod",
                 "PodName", "Ports", "Size", "StartedAt", "State", "Status")

    def __init__(self, entry: dict[str, Any], no_trunc: bool = False) -> None:
        self.entry = entry
        self.no_trunc = no_trunc
        self.AutoRemove = entry["AutoRemove"]
        self.Created = _time(entry["Created"])
        self.Exited = entry["Exited"]
        self.ExitedAt = entry["ExitedAt"]
        self.ExitCode = entry["ExitCode"]
        self.Image = entry["Image"]
        self.IsInfra = entry["IsInfra"]
        self.Labels = entry["Labels"] or {}
        self.Mounts = entry["Mounts"] or []
        self.Pid = entry["Pid"]
        self.PodName = entry["PodName"]
        self.StartedAt = entry["StartedAt"]
        self.Namespaces = GoStruct({k: entry.get("Namespaces", {}).get(k, "") for k in
                                    ("Cgroup", "IPC", "MNT", "NET", "PIDNS", "UTS", "User")})

    @property
    def ID(self) -> str:  # noqa: N802 - the Go field names are the interface
        return self.entry["Id"] if self.no_trunc else self.entry["Id"][:12]

    @property
    def ImageID(self) -> str:  # noqa: N802
        return self.entry["ImageID"] if self.no_trunc else self.entry["ImageID"][:12]

    def Label(self, name: str) -> str:  # noqa: N802
        return self.Labels.get(name, "")

    @property
    def Pod(self) -> str:  # noqa: N802
        pod = self.entry["Pod"]
        return pod if self.no_trunc or not pod else pod[:12]

    @property
    def Status(self) -> str:  # noqa: N802
        return container_status(self.entry)

    @property
    def State(self) -> str:  # noqa: N802
        return container_state(self.entry)

    @property
    def Restarts(self) -> str:  # noqa: N802
        return str(self.entry.get("Restarts", 0))

    @property
    def RunningFor(self) -> str:  # noqa: N802
        return self.CreatedHuman

    @property
    def Command(self) -> str:  # noqa: N802
        command = " ".join(self.entry["Command"] or [])
        return command[:17] + "..." if not self.no_trunc and len(command) > 17 else command

    @property
    def Size(self) -> str:  # noqa: N802
        size = self.entry.get("Size")
        if not size:
            return ""
        return f"{humanize.human_size(size['RwSize'])} (virtual {humanize.human_size(size['RootFsSize'])})"

    @property
    def Names(self) -> str:  # noqa: N802
        return self.entry["Names"][0]

    @property
    def Networks(self) -> str:  # noqa: N802
        return ",".join(self.entry["Networks"] or [])

    @property
    def Ports(self) -> str:  # noqa: N802
        return ports_text(self.entry["Ports"])

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        return str(self.Created)

    @property
    def CreatedHuman(self) -> str:  # noqa: N802
        return humanize.since(self.entry["Created"]) + " ago"

    def __getattr__(self, name: str) -> str:
        if name in ("Cgroup", "IPC", "MNT", "NET", "PIDNS", "UTS", "User"):
            return self.Namespaces[name]
        raise AttributeError(name)


PS_HEADERS = {"Cgroup": "cgroupns", "CreatedHuman": "created", "ID": "container id", "IPC": "ipc", "MNT": "mnt",
              "NET": "net", "Networks": "networks", "PIDNS": "pidns", "Pod": "pod id", "PodName": "podname",
              "Restarts": "restarts", "RunningFor": "running for", "UTS": "uts", "User": "userns"}


def ps_default_format(namespaces: bool = False, pod: bool = False, size: bool = False) -> str:
    if namespaces:
        return ("table {{.ID}}\t{{.Names}}\t{{.Pid}}\t{{.Namespaces.Cgroup}}\t{{.Namespaces.IPC}}\t"
                "{{.Namespaces.MNT}}\t{{.Namespaces.NET}}\t{{.Namespaces.PIDNS}}\t{{.Namespaces.User}}\t"
                "{{.Namespaces.UTS}}")
    row = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedHuman}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if pod:
        row += "\t{{.Pod}}\t{{.PodName}}"
    if size:
        row += "\t{{.Size}}"
    return row


class ImageRow(Row):
    """podman images's imageReporter: one row per name (repository and tag)."""

    go_type = "images.imageReporter"
    go_fields = ("Repository", "Tag", "ID", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize",
                 "VirtualSize", "Labels", "Containers", "ReadOnly", "Dangling", "Names", "Digest", "History")

    def __init__(self, entry: dict[str, Any], repository: str, tag: str, no_trunc: bool = False) -> None:
        self.entry = entry
        self.Repository = repository
        self.Tag = tag
        self.no_trunc = no_trunc
        self.ParentId = entry.get("ParentId", "")
        self.RepoTags = entry.get("RepoTags")
        self.RepoDigests = entry.get("RepoDigests") or []
        self.SharedSize = entry.get("SharedSize", 0)
        self.VirtualSize = entry.get("VirtualSize", entry["Size"])
        self.Labels = entry.get("Labels") or {}
        self.Containers = entry.get("Containers", 0)
        self.ReadOnly = entry.get("ReadOnly", False)
        self.IsReadOnly = self.ReadOnly
        self.Dangling = entry.get("Dangling", False)
        self.Names = entry.get("Names") or []
        self.Digest = entry.get("Digest", "")
        self.Id = entry["Id"]

    @property
    def ID(self) -> str:  # noqa: N802
        full = self.entry["Id"]
        return full[:12] if not self.no_trunc and len(full) >= 12 else "sha256:" + full

    @property
    def Created(self) -> str:  # noqa: N802
        return humanize.since(self.entry["Created"]) + " ago"

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        return str(GoTime(datetime.datetime.fromtimestamp(self.entry["Created"], datetime.UTC)))

    @property
    def CreatedSince(self) -> str:  # noqa: N802
        return self.Created

    @property
    def CreatedTime(self) -> str:  # noqa: N802
        return self.CreatedAt

    @property
    def Size(self) -> str:  # noqa: N802
        return humanize.spaced_size(self.entry["Size"])

    @property
    def History(self) -> str:  # noqa: N802
        return ", ".join(self.entry.get("History") or [])


IMAGE_HEADERS = {"ID": "image id", "ReadOnly": "r/o"}


def images_default_format(digests: bool = False, history: bool = False) -> str:
    row = ["{{if .Repository}}{{.Repository}}{{else}}<none>{{end}}", "{{if .Tag}}{{.Tag}}{{else}}<none>{{end}}"]
    if digests:
        row.append("{{.Digest}}")
    row += ["{{.ID}}", "{{.Created}}", "{{.Size}}"]
    if history:
        row.append("{{if .History}}{{.History}}{{else}}<none>{{end}}")
    return "\t".join(row)


def split_repo_tag(name: str) -> tuple[str, str]:
    """``registry/repo:tag`` (or ``@digest``) into podman's REPOSITORY and TAG."""
    if not name or name == "<none>:<none>":
        return "<none>", "<none>"
    base = name.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = base.rpartition(":")
        return repo, tag or "<none>"
    return base, "<none>"


def image_rows(entries: list[dict], no_trunc: bool = False) -> list[ImageRow]:
    """One row per tagged name (an image without one: a single <none> row), as podman lists."""
    rows = []
    for entry in entries:
        names = entry.get("Names") or []
        tagged = []
        for name in names:
            repo, tag = split_repo_tag(name)
            if tag != "<none>":
                tagged.append(ImageRow(entry, repo, tag, no_trunc))
        if tagged:
            rows += tagged
        elif names:
            repo, tag = split_repo_tag(names[0])
            rows.append(ImageRow(entry, repo, tag, no_trunc))
        else:
            rows.append(ImageRow(entry, "<none>", "<none>", no_trunc))
    return rows


class HistoryRow(Row):
    """podman history's historyReporter."""

    go_type = "images.historyReporter"
    go_fields = ("ID", "Created", "CreatedBy", "Size", "Comment", "Tags")

    def __init__(self, entry: dict[str, Any], no_trunc: bool = False, human: bool = True) -> None:
        self.entry = entry
        self.no_trunc = no_trunc
        self.human = human
        self.Comment = entry.get("Comment", "")
        self.Tags = entry.get("Tags")

    @property
    def ID(self) -> str:  # noqa: N802
        full = self.entry["ID"]
        return full if self.no_trunc or len(full) < 12 or full == "<missing>" else full[:12]

    @property
    def Created(self) -> str:  # noqa: N802
        if not self.human:
            return GoTime.from_unix(self.entry["Created"]).moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return humanize.since(self.entry["Created"]) + " ago"

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        return GoTime.from_unix(self.entry["Created"]).moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def CreatedSince(self) -> str:  # noqa: N802
        return self.Created

    @property
    def CreatedBy(self) -> str:  # noqa: N802
        text = self.entry.get("CreatedBy", "")
        if not self.no_trunc and len(text) > 45:
            return text[:42] + "..."
        return text

    @property
    def Size(self) -> str:  # noqa: N802
        text = humanize.human_size(self.entry.get("Size", 0))
        cut = len(text.rstrip("BkMGTPEZY"))
        return text[:cut] + " " + text[cut:] if self.human else str(self.entry.get("Size", 0))


HISTORY_HEADERS = {"ID": "id", "Created": "created", "CreatedBy": "created by", "Size": "size", "Comment": "comment"}
HISTORY_DEFAULT = "{{.ID}}\t{{.Created}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


class VolumeRow(Row):
    """podman volume ls's volumeReporter (the inspect fields)."""

    go_type = "volumes.volumeReporter"

    def __init__(self, entry: dict[str, Any]) -> None:
        for key, value in entry.items():
            setattr(self, key, value)
        self.go_fields = tuple(entry)

    @property
    def Created(self) -> str:  # noqa: N802
        return self.__dict__.get("CreatedAt", "")


VOLUME_DEFAULT = "{{.Driver}}\t{{.Name}}"
VOLUME_HEADERS = {"Name": "volume name"}


class NetworkRow(Row):
    """podman network ls's ListPrintReports."""

    go_type = "network.ListPrintReports"

    def __init__(self, entry: dict[str, Any], no_trunc: bool = False) -> None:
        self.entry = entry
        self.no_trunc = no_trunc
        self.Name = entry["name"]
        self.Driver = entry["driver"]
        self.NetworkInterface = entry.get("network_interface", "")
        self.Created = entry.get("created", "")
        self.Subnets = entry.get("subnets") or []
        self.IPv6Enabled = entry.get("ipv6_enabled", False)
        self.Internal = entry.get("internal", False)
        self.DNSEnabled = entry.get("dns_enabled", False)
        self.Options = entry.get("options") or {}
        self.IPAMOptions = entry.get("ipam_options") or {}
        self.go_fields = ("Name", "ID", "Driver", "NetworkInterface", "Created", "Subnets", "IPv6Enabled", "Internal",
                          "DNSEnabled", "Labels", "Options", "IPAMOptions")

    @property
    def ID(self) -> str:  # noqa: N802
        return self.entry["id"] if self.no_trunc else self.entry["id"][:12]

    @property
    def Labels(self) -> str:  # noqa: N802 - podman's ListPrintReports.Labels(): "k=v,k=v"
        return ",".join(f"{k}={v}" for k, v in sorted((self.entry.get("labels") or {}).items()))

    def Label(self, name: str) -> str:  # noqa: N802
        return (self.entry.get("labels") or {}).get(name, "")


# netavark's JSON keys → the Go field names a template over podman's types.Network uses
_NETWORK_FIELDS = {"name": "Name", "id": "ID", "driver": "Driver", "network_interface": "NetworkInterface",
                   "created": "Created", "subnets": "Subnets", "ipv6_enabled": "IPv6Enabled", "internal": "Internal",
                   "dns_enabled": "DNSEnabled", "labels": "Labels", "options": "Options",
                   "ipam_options": "IPAMOptions", "subnet": "Subnet", "gateway": "Gateway",
                   "lease_range": "LeaseRange"}


def go_network(entry: dict[str, Any]) -> GoStruct:
    """A network as ``podman network inspect --format`` sees it (Go names, maps kept maps)."""
    struct = GoStruct({_NETWORK_FIELDS.get(k, k): go_value(v, _NETWORK_FIELDS.get(k, k)) for k, v in entry.items()
                       if k not in ("subnets",)})
    struct["Subnets"] = [GoStruct({_NETWORK_FIELDS.get(k, k): v for k, v in subnet.items()})
                         for subnet in entry.get("subnets") or []]
    for key in ("Labels", "Options", "IPAMOptions"):
        value = entry.get({"Labels": "labels", "Options": "options", "IPAMOptions": "ipam_options"}[key])
        struct[key] = dict(value or {})  # (a nil map prints as map[] too)
    struct.go_type = "types.Network"
    return struct


NETWORK_DEFAULT = "{{.ID}}\t{{.Name}}\t{{.Driver}}"
NETWORK_HEADERS = {"ID": "network id"}


class SecretRow(Row):
    go_type = "secrets.ListSecretsReply"
    go_fields = ("ID", "Name", "Driver", "CreatedAt", "UpdatedAt")

    def __init__(self, entry: dict[str, Any], no_trunc: bool = False) -> None:
        self.entry = entry
        self.no_trunc = no_trunc
        self.Name = entry["Spec"]["Name"]
        self.Driver = entry["Spec"]["Driver"]["Name"]

    @property
    def ID(self) -> str:  # noqa: N802
        return self.entry["ID"] if self.no_trunc else self.entry["ID"][:25]

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        return humanize.since(_unix(self.entry["CreatedAt"])) + " ago"

    @property
    def UpdatedAt(self) -> str:  # noqa: N802
        return humanize.since(_unix(self.entry["UpdatedAt"])) + " ago"


SECRET_DEFAULT = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
SECRET_HEADERS = {"ID": "id", "Name": "name", "Driver": "driver", "CreatedAt": "created", "UpdatedAt": "updated"}


def _unix(text: str) -> float:
    return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))).timestamp()


# -- inspect: the JSON of podman's inspect types, as Go structs --------------------------

# Keys whose objects are Go maps (printed map[...], ranged over by key); other objects are structs.
_MAP_KEYS = {"Labels", "Annotations", "Ports", "Networks", "Data", "Volumes", "ExposedPorts", "Tmpfs", "Options",
             "PortBindings", "Sysctls", "StorageOpt", "IPAMOptions"}
_TIME_KEY = re.compile(r"(At|Created|Time|Date)$")
_TIME_VALUE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def go_value(value: Any, key: str = "", go_type: str = "struct") -> Any:
    """JSON decoded from one of podman's types → the values its Go template sees: objects
    become structs (or maps, for the keys that are maps in Go), RFC 3339 times become
    time.Time, and ``.Id`` is also ``.ID`` (podman rewrites one into the other)."""
    if isinstance(value, dict):
        if key in _MAP_KEYS or any(not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", str(k)) for k in value):
            return {k: go_value(v) for k, v in value.items()}
        struct = GoStruct({k: go_value(v, k) for k, v in value.items()})
        if "Id" in struct and "ID" not in struct:
            struct["ID"] = struct["Id"]
        struct.go_type = go_type
        return struct
    if isinstance(value, list):
        return [go_value(v, key) for v in value]
    if isinstance(value, str) and _TIME_KEY.search(key) and _TIME_VALUE.match(value):
        return _parse_time(value)
    return value


def _parse_time(text: str) -> GoTime:
    match = re.match(r"^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert match is not None
    base, fraction, zone = match.groups()
    moment = datetime.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    nanos = int((fraction or "0").ljust(9, "0")[:9])
    if moment.year <= 1:
        return GoTime(moment, nanos)
    return GoTime(moment.astimezone(datetime.UTC), nanos)
