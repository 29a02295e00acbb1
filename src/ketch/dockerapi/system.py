"""``/_ping``, ``/version``, ``/info``, ``/events`` and ``/system/df``."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from typing import Any

from aiohttp import web

from ketch.dockerapi.server import API_VERSION, MIN_API_VERSION, Service


def _ping_headers() -> dict[str, str]:
    return {"API-Version": API_VERSION, "Docker-Experimental": "false", "OSType": "linux", "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.Response:
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, content_type="text/plain", headers=_ping_headers())


def _ketch_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ketch")
    except metadata.PackageNotFoundError:
        return "0"


def version_data() -> dict[str, Any]:
    uname = os.uname()
    ketch_version = _ketch_version()
    return {
        "Platform": {"Name": f"ketch {ketch_version}"},
        "Components": [{"Name": "Engine", "Version": ketch_version,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                                    "Arch": _arch(), "KernelVersion": uname.release,
                                    "GoVersion": f"python{platform.python_version()}"}}],
        "Version": ketch_version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": _arch(),
        "KernelVersion": uname.release, "BuildTime": "",
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_data())


async def info(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    data = await service.call(service.engine.info)
    host = data.get("host") or {}
    store = data.get("store") or {}
    from ketch.dockerapi.images import image_list

    entries = await service.call(service.engine.list, all=True)
    every_image = await image_list(service, everything=True)
    states = [e.get("State") for e in entries]
    uname = os.uname()
    return web.json_response({
        "ID": "ketch", "Containers": len(entries), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(entries) - states.count("running") - states.count("paused"),
        "Images": len(every_image), "Driver": store.get("graphDriverName", "overlay"),
        "DriverStatus": [], "DockerRootDir": str(service.store.root), "SystemTime": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "k8s-file", "CgroupDriver": "cgroupfs", "CgroupVersion": "1" if os.path.exists(
            "/sys/fs/cgroup/memory") else "2",
        "KernelVersion": uname.release, "OperatingSystem": host.get("distribution", {}).get("distribution", "linux"),
        "OSType": "linux", "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
        "MemTotal": host.get("memTotal", 0), "Name": uname.nodename, "ServerVersion": _ketch_version(),
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": {}, "Labels": [],
        "ExperimentalBuild": False, "SecurityOptions": ["name=seccomp,profile=default"] + (
            ["name=rootless"] if service.store.rootless else []),
        "Runtimes": {"ketch-runtime": {"path": "ketch-runtime"}}, "DefaultRuntime": "ketch-runtime",
        "Swarm": {"LocalNodeState": "inactive"}, "Plugins": {"Volume": ["local"], "Network": ["bridge"],
                                                              "Log": ["k8s-file"]},
        "Warnings": [],
    })


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: the store's event log as Docker's messages, past ones from ``since``, and
    new ones as they come until ``until`` (or the client leaves); ``filters`` as Docker's."""
    from ketch.storage.events import EventLog

    service: Service = request.app["service"]
    filters = _filters(request.query.get("filters"))
    since = _time(request.query.get("since"))
    until = _time(request.query.get("until"))
    log = EventLog(service.store.root)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    started = time.time_ns()
    seen = 0
    first = True
    while True:
        records = await service.call(lambda: list(log.read()))
        fresh, seen = records[seen:], len(records)
        for record in fresh:
            stamp = record.get("Time", 0)
            if first and since is None and stamp < started:
                continue
            if since is not None and stamp < since:
                continue
            if until is not None and stamp > until:
                continue
            message = docker_event(record)
            if message is None or not _event_matches(message, filters):
                continue
            await response.write(json.dumps(message).encode() + b"\n")
        first = False
        if until is not None and time.time_ns() > until:
            break
        if request.transport is None or request.transport.is_closing():
            break
        await asyncio.sleep(0.2)
    return response


def docker_event(record: dict[str, Any]) -> dict[str, Any] | None:
    kind = (record.get("Type") or "").lower()
    action = record.get("Status") or ""
    if kind not in ("container", "image", "volume", "network"):
        return None
    attributes = dict(record.get("Attributes") or {})
    if record.get("Name"):
        attributes["name"] = record["Name"]
    if record.get("Image"):
        attributes["image"] = record["Image"]
    if "ContainerExitCode" in record:
        attributes["exitCode"] = str(record["ContainerExitCode"])
    action = {"died": "die"}.get(action, action)
    identifier = record.get("ID") or record.get("Name") or ""
    nanos = int(record.get("Time", 0))
    message: dict[str, Any] = {"Type": kind, "Action": action, "Actor": {"ID": identifier, "Attributes": attributes},
                               "scope": "local", "time": nanos // 1_000_000_000, "timeNano": nanos}
    if kind == "container":
        message.update({"status": action, "id": identifier, "from": record.get("Image", "")})
    return message


def _event_matches(message: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "type" and message["Type"] not in values:
            return False
        if key == "event" and message["Action"] not in values:
            return False
        if key in ("container", "image", "volume", "network") and (
                message["Type"] != key or not any(v in (message["Actor"]["ID"], message["Actor"]["Attributes"].get(
                    "name")) or message["Actor"]["ID"].startswith(v) for v in values)):
            return False
        if key == "label":
            attributes = message["Actor"]["Attributes"]
            for value in values:
                name, _, wanted = value.partition("=")
                if name not in attributes or (wanted and attributes[name] != wanted):
                    return False
    return True


def json_query(text: str | None, name: str) -> dict:
    """A query parameter holding a JSON object (``filters``, ``buildargs``, ``labels``); {} if absent."""
    if not text:
        return {}
    from ketch.errors import InvalidInputError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"invalid {name}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"invalid {name}: want a JSON object")
    return data


def _filters(text: str | None) -> dict[str, list[str]]:
    """Docker's ``filters`` query parameter: ``{"key": ["value"]}`` (or ``{"key": {"value": true}}``)."""
    out = {}
    for key, value in json_query(text, "filters").items():
        out[key] = [k for k, v in value.items() if v] if isinstance(value, dict) else [str(v) for v in value]
    return out


def _time(text: str | None) -> int | None:
    """``since``/``until``: Unix seconds (with a fraction) as nanoseconds."""
    if not text:
        return None
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        from ketch.errors import InvalidInputError

        raise InvalidInputError(f"invalid time {text!r}: want Unix seconds") from None


async def system_df(request: web.Request) -> web.Response:
    from ketch.dockerapi import images

    service: Service = request.app["service"]
    image_list = await images.image_list(service, everything=True)
    entries = await service.call(service.engine.list, all=True, size=True)
    containers = []
    for entry in entries:
        size = entry.get("Size") or {}
        containers.append({"Id": entry["Id"], "Names": ["/" + n for n in entry.get("Names") or []],
                           "Image": entry.get("Image", ""), "ImageID": "sha256:" + entry.get("ImageID", ""),
                           "Command": " ".join(entry.get("Command") or []), "Created": entry.get("Created", 0),
                           "State": entry.get("State", ""), "SizeRw": size.get("rwSize", 0),
                           "SizeRootFs": size.get("rootFsSize", 0), "Labels": entry.get("Labels") or {}})
    volumes = await service.call(_volumes_with_sizes, service)
    return web.json_response({"LayersSize": sum(i["Size"] for i in image_list), "Images": image_list,
                              "Containers": containers, "Volumes": volumes, "BuildCache": []})


def _volumes_with_sizes(service: Service) -> list[dict[str, Any]]:
    from ketch.dockerapi import volumes

    return [{**v, "UsageData": {"Size": -1, "RefCount": len(service.engine.volumes().users(v["Name"]))}}
            for v in volumes.volume_list(service)]


async def auth(request: web.Request) -> web.Response:
    """``POST /auth`` (``docker login``): the registry is asked whether it takes the
    credentials; the client keeps them (in its own config), as Docker's daemon leaves it to."""
    from ketch.dockerapi.containers import _json_body
    from ketch.errors import AuthenticationError
    from ketch.image.login import verify_credentials

    service: Service = request.app["service"]
    body = await _json_body(request)
    registry = (body.get("serveraddress") or "docker.io").removeprefix("https://").removeprefix("http://")
    registry = registry.rstrip("/").removesuffix("/v1").removesuffix("/v2")
    from ketch.dockerapi.images import on_loopback

    try:
        await service.call(verify_credentials, registry, body.get("username") or "", body.get("password") or "",
                           insecure=True if on_loopback(registry) else None)
    except AuthenticationError as exc:
        return web.Response(body=json.dumps({"message": f"login attempt to {registry} failed: {exc}"}).encode(),
                            status=401, headers={"Content-Type": "application/json"})
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


ROUTES = [
    ("POST", "/auth", auth),
    ("GET", "/_ping", ping), ("HEAD", "/_ping", ping), ("GET", "/version", version), ("GET", "/info", info),
    ("GET", "/events", events), ("GET", "/system/df", system_df),
]
