"""Docker's JSON shapes, made from ketch's (podman-shaped) records: what ``docker ps``, ``docker
inspect``, ``docker images`` and the SDKs read. Docker's clients ignore fields they do not know,
so podman's extra fields stay where they do no harm; names, ids and types are Docker's."""

from __future__ import annotations

import datetime
import time
from typing import Any

from ketch.containers.views import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"


def _epoch(stamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with up to nanoseconds (None: the zero time)."""
    if not stamp or stamp.startswith("0001-"):
        return None
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None
    digits = "".join(c for c in fraction if c.isdigit())
    return seconds + (float("0." + digits) if digits else 0.0)


def status_text(state: dict[str, Any]) -> str:
    """``Up 2 minutes``, ``Exited (1) 3 seconds ago``, ``Created``: Docker's Status column."""
    now = time.time()
    status = state.get("Status", "")
    if status in ("running", "paused"):
        started = _epoch(state.get("StartedAt", ""))
        text = f"Up {human_duration(now - started) if started else 'Less than a second'}"
        return text + (" (Paused)" if status == "paused" else "")
    if status in ("exited", "stopped"):
        finished = _epoch(state.get("FinishedAt", ""))
        ago = f" {human_duration(now - finished)} ago" if finished else ""
        return f"Exited ({state.get('ExitCode', 0)}){ago}"
    if status == "created" or status == "configured":
        return "Created"
    return status.capitalize()


def _docker_state(status: str) -> str:
    return {"configured": "created", "stopped": "exited", "initialized": "created"}.get(status, status)


def _network_mode(mode: str) -> str:
    return "default" if mode in ("bridge", "private", "") else mode


def container_summary(entry: dict[str, Any], inspected: dict[str, Any]) -> dict[str, Any]:
    """An element of ``GET /containers/json`` from ``ps --format json``'s entry and the inspect
    data of the same container."""
    networks = inspected.get("NetworkSettings", {}).get("Networks") or {}
    ports = []
    for port in entry.get("Ports") or []:
        for offset in range(port.get("range", 1) or 1):
            ports.append({"IP": port.get("host_ip") or "0.0.0.0", "PrivatePort": port["container_port"] + offset,
                          "PublicPort": port["host_port"] + offset, "Type": port.get("protocol", "tcp")})
    command = " ".join(entry.get("Command") or [])
    return {
        "Id": entry["Id"], "Names": ["/" + name for name in entry.get("Names") or []],
        "Image": entry.get("Image", ""), "ImageID": "sha256:" + entry.get("ImageID", ""),
        "Command": command, "Created": entry.get("Created", 0), "Ports": ports, "Labels": entry.get("Labels") or {},
        "State": _docker_state(entry.get("State", "")), "Status": status_text(inspected.get("State") or {}),
        "HostConfig": {"NetworkMode": _network_mode(inspected.get("HostConfig", {}).get("NetworkMode", ""))},
        "NetworkSettings": {"Networks": {name: _endpoint(net) for name, net in networks.items()}},
        "Mounts": [_mount(m) for m in inspected.get("Mounts") or []],
    }


def _endpoint(net: dict[str, Any]) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": net.get("Aliases"), "MacAddress": net.get("MacAddress", ""),
            "NetworkID": net.get("NetworkID", ""), "EndpointID": net.get("EndpointID", ""),
            "Gateway": net.get("Gateway", ""), "IPAddress": net.get("IPAddress", ""),
            "IPPrefixLen": net.get("IPPrefixLen", 0), "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DriverOpts": None}


def _mount(mount: dict[str, Any]) -> dict[str, Any]:
    out = {"Type": mount.get("Type", "bind"), "Source": mount.get("Source", ""),
           "Destination": mount.get("Destination", ""), "Mode": ",".join(mount.get("Options") or []),
           "RW": mount.get("RW", True), "Propagation": mount.get("Propagation", "rprivate")}
    if mount.get("Name"):
        out["Name"] = mount["Name"]
        out["Driver"] = "local"
    return out


def container_inspect(data: dict[str, Any]) -> dict[str, Any]:
    """``GET /containers/{id}/json``: ketch's inspect made Docker's."""
    out = dict(data)
    out["Name"] = "/" + data.get("Name", "")
    out["Image"] = "sha256:" + data.get("Image", "")
    state = dict(data.get("State") or {})
    state["Status"] = _docker_state(state.get("Status", ""))
    health = state.get("Health") or {}
    if not health.get("Status"):
        state.pop("Health", None)
    out["State"] = state
    config = dict(data.get("Config") or {})
    config["Image"] = data.get("ImageName") or config.get("Image", "")
    if isinstance(config.get("StopSignal"), int):
        import signal

        try:
            config["StopSignal"] = signal.Signals(config["StopSignal"]).name
        except ValueError:
            config["StopSignal"] = str(config["StopSignal"])
    if not config.get("Entrypoint"):
        config["Entrypoint"] = None
    elif isinstance(config["Entrypoint"], str):
        config["Entrypoint"] = [config["Entrypoint"]]
    out["Config"] = config
    host = dict(data.get("HostConfig") or {})
    host["NetworkMode"] = _network_mode(host.get("NetworkMode", ""))
    log_config = dict(host.get("LogConfig") or {})
    if log_config.get("Type", "k8s-file") == "k8s-file":
        # (the log ketch keeps is read back by GET /logs, as Docker's json-file log is: clients
        # such as the SDK's containers.run read the output only from a log type they know)
        log_config = {"Type": "json-file", "Config": {}}
    host["LogConfig"] = log_config
    out["HostConfig"] = host
    settings = dict(data.get("NetworkSettings") or {})
    settings["Networks"] = {name: _endpoint(net) for name, net in (settings.get("Networks") or {}).items()}
    settings.setdefault("Ports", {})
    settings.setdefault("IPAddress", "")
    settings.setdefault("Gateway", "")
    settings.setdefault("MacAddress", "")
    settings.setdefault("Bridge", "")
    settings.setdefault("SandboxID", "")
    out["NetworkSettings"] = settings
    out["Mounts"] = [_mount(m) for m in data.get("Mounts") or []]
    out.setdefault("Platform", "linux")
    return out


def image_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An element of ``GET /images/json`` from ``images --format json``'s entry."""
    names = entry.get("Names") or []
    return {
        "Id": "sha256:" + entry["Id"], "ParentId": ("sha256:" + entry["ParentId"]) if entry.get("ParentId") else "",
        "RepoTags": names or ["<none>:<none>"], "RepoDigests": entry.get("RepoDigests") or [],
        "Created": entry.get("Created", 0), "Size": entry.get("Size", 0), "VirtualSize": entry.get("Size", 0),
        "SharedSize": -1, "Labels": entry.get("Labels") or {}, "Containers": entry.get("Containers", -1),
    }


def image_inspect(data: dict[str, Any]) -> dict[str, Any]:
    """``GET /images/{name}/json``: ketch's image inspect made Docker's."""
    out = dict(data)
    out["Id"] = "sha256:" + data["Id"]
    out["RepoTags"] = data.get("RepoTags") or []
    out["Parent"] = ("sha256:" + data["Parent"]) if data.get("Parent") else ""
    out.setdefault("ContainerConfig", data.get("Config") or {})
    out.setdefault("DockerVersion", data.get("Version", ""))
    out.setdefault("VirtualSize", data.get("Size", 0))
    out.setdefault("GraphDriver", {"Name": "overlay", "Data": None})
    out.setdefault("Metadata", {"LastTagTime": ZERO_TIME})
    return out
