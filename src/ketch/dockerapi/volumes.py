"""``/volumes/...`` and ``/networks/...``: create, list, inspect, remove, prune, connect and
disconnect."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ketch.dockerapi.containers import _flag, _json_body, required
from ketch.dockerapi.server import Service
from ketch.dockerapi.system import _filters
from ketch.errors import NotFoundError, UnsupportedError


def _volume(service: Service, name: str) -> dict[str, Any]:
    entry = service.engine.volumes().inspect(name)
    return {"Name": entry["Name"], "Driver": "local", "Mountpoint": entry["Mountpoint"],
            "CreatedAt": entry["CreatedAt"], "Labels": entry.get("Labels") or {}, "Scope": "local",
            "Options": entry.get("Options") or {}, "Status": {}}


def volume_list(service: Service, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    out = []
    for row in service.engine.volumes().list():
        volume = _volume(service, row["name"])
        if filters and not _volume_matches(volume, filters, service):
            continue
        out.append(volume)
    return out


def _volume_matches(volume: dict[str, Any], filters: dict[str, list[str]], service: Service) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in volume["Name"] for v in values):
            return False
        if key == "label":
            for value in values:
                name, _, wanted = value.partition("=")
                if name not in volume["Labels"] or (wanted and volume["Labels"][name] != wanted):
                    return False
        if key == "dangling":
            used = bool(service.engine.volumes().users(volume["Name"]))
            if (values[0].lower() in ("1", "true")) == used:
                return False
        if key == "driver" and "local" not in values:
            return False
    return True


async def list_volumes(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    volumes = await service.call(volume_list, service, _filters(request.query.get("filters")))
    return web.json_response({"Volumes": volumes, "Warnings": []})


async def create_volume(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    body = await _json_body(request)
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise UnsupportedError(f"volume driver {driver!r}: ketch has the local driver only")
    import secrets

    name = body.get("Name") or secrets.token_hex(32)

    def make() -> dict[str, Any]:
        service.engine.volumes().create(name, body.get("Labels") or {}, exist_ok=True,
                                        options=body.get("DriverOpts") or {})
        return _volume(service, name)

    return web.json_response(await service.call(make), status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    try:
        return web.json_response(await service.call(_volume, service, name))
    except NotFoundError:
        raise NotFoundError(f"get {name}: no such volume") from None


async def remove_volume(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    await service.call(service.engine.volumes().remove, name, force=_flag(request, "force"), engine=service.engine)
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    removed = await service.call(service.engine.volumes().prune)
    return web.json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": 0})


# -- networks ------------------------------------------------------------------------------------

def _network(service: Service, name: str) -> dict[str, Any]:
    networks = service.engine.networks()
    entry = networks.inspect(name)
    attached = networks.attached(entry["name"])
    containers = {}
    for container_id, address in attached.items():
        try:
            record = service.engine.record(container_id)
        except NotFoundError:
            continue
        prefix = entry["subnets"][0]["subnet"].split("/")[1]
        containers[container_id] = {"Name": record.name, "EndpointID": "", "MacAddress": "",
                                    "IPv4Address": f"{address}/{prefix}", "IPv6Address": ""}
    return {"Name": entry["name"], "Id": entry["id"], "Created": entry["created"], "Scope": "local",
            "Driver": entry["driver"], "EnableIPv6": False, "Internal": entry["internal"], "Attachable": False,
            "Ingress": False, "IPAM": {"Driver": "default", "Options": None, "Config": [
                {"Subnet": s["subnet"], "Gateway": s["gateway"]} for s in entry["subnets"]]},
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": {},  # (compose compares them with what it asked for: none)
            "Labels": entry.get("labels") or {}}


def _network_list(service: Service, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    out = []
    for row in service.engine.networks().list():
        network = _network(service, row["name"])
        if "name" in filters and not any(v in network["Name"] for v in filters["name"]):
            continue
        if "id" in filters and not any(network["Id"].startswith(v) for v in filters["id"]):
            continue
        if "label" in filters:
            labels = network["Labels"]
            if not all(v.partition("=")[0] in labels and (not v.partition("=")[2] or
                                                          labels[v.partition("=")[0]] == v.partition("=")[2])
                       for v in filters["label"]):
                continue
        out.append(network)
    return out


async def list_networks(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    return web.json_response(await service.call(_network_list, service, _filters(request.query.get("filters"))))


async def create_network(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    body = await _json_body(request)
    name = required(body, "Name", "network create: the name is missing")
    config = ((body.get("IPAM") or {}).get("Config") or [{}])
    subnet = (config[0] or {}).get("Subnet") if config else None
    gateway = (config[0] or {}).get("Gateway") if config else None
    def make() -> dict[str, Any]:
        created = service.engine.networks().create(name, subnet=subnet, gateway=gateway,
                                                   internal=bool(body.get("Internal")),
                                                   labels=body.get("Labels") or {},
                                                   driver=body.get("Driver") or "bridge")
        return {"Id": created["id"], "Warning": ""}

    return web.json_response(await service.call(make), status=201)


async def inspect_network(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    try:
        return web.json_response(await service.call(_network, service, _network_name(name)))
    except NotFoundError:
        raise NotFoundError(f"network {name} not found") from None


async def remove_network(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    await service.call(service.engine.networks().remove, name)
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    removed = await service.call(service.engine.networks().prune)
    return web.json_response({"NetworksDeleted": removed or None})


def _network_name(name: str) -> str:
    from ketch.containers.network import DEFAULT_NETWORK

    return DEFAULT_NETWORK if name == "bridge" else name  # (Docker's default network's name)


async def connect(request: web.Request) -> web.Response:
    """A container that does not run joins the network when it starts (compose connects the
    containers it has just created); a running one gets its interface at once."""
    service: Service = request.app["service"]
    body = await _json_body(request)
    container = required(body, "Container", "network connect: the container is missing")
    endpoint = body.get("EndpointConfig") or {}
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None
    await service.call(service.engine.connect_network, container, _network_name(request.match_info["name"]),
                       aliases=endpoint.get("Aliases") or [], ip=ip)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    body = await _json_body(request)
    container = required(body, "Container", "network disconnect: the container is missing")
    await service.call(service.engine.disconnect_network, container, _network_name(request.match_info["name"]))
    return web.Response(status=200)


ROUTES = [
    ("GET", "/volumes", list_volumes), ("POST", "/volumes/create", create_volume),
    ("POST", "/volumes/prune", prune_volumes), ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
    ("GET", "/networks", list_networks), ("POST", "/networks/create", create_network),
    ("POST", "/networks/prune", prune_networks), ("GET", "/networks/{name}", inspect_network),
    ("DELETE", "/networks/{name}", remove_network), ("POST", "/networks/{name}/connect", connect),
    ("POST", "/networks/{name}/disconnect", disconnect),
]
