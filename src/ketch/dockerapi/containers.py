"""``/containers/...``: create (Docker's config, host config and networking config made
ketch's CreateOptions), start, stop, kill, restart, wait, remove, list, inspect, logs, attach,
top, changes, export, pause, unpause, rename, prune, archive; and ``/exec/...``.

Containers are started under their own monitor, as ``ketch run -d`` starts them: the service
can end and they go on. ``attach`` and ``logs`` read the container's log as it grows and write
its stdin FIFO, as ``ketch attach`` does, so any number of clients may attach."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from aiohttp import web

from ketch.dockerapi import shapes
from ketch.dockerapi.server import Conflict, NotModified, Service
from ketch.dockerapi.streams import (
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    STDERR,
    STDOUT,
    Hijacked,
    frame,
    head_now,
    write_all,
)
from ketch.dockerapi.system import _filters
from ketch.errors import InvalidInputError, NotFoundError

RESTART_NAMES = {"": "", "no": "no", "always": "always", "on-failure": "on-failure", "unless-stopped": "unless-stopped"}


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"invalid {name} {value!r}: want a number") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json(loads=json.loads)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return data


def required(mapping, key: str, message: str) -> Any:
    """``mapping[key]`` (a body's field, a query parameter); InvalidInputError(``message``) when
    it is missing or empty."""
    value = mapping.get(key)
    if not value:
        raise InvalidInputError(message)
    return value


def _no_such_container(exc: NotFoundError, name: str) -> NotFoundError:
    return NotFoundError(f"No such container: {name}")


async def _record_id(service: Service, name: str) -> str:
    try:
        return (await service.call(service.engine.record, name)).id
    except NotFoundError as exc:
        raise _no_such_container(exc, name) from None


# -- create ------------------------------------------------------------------------------------

def create_options(body: dict[str, Any], name: str | None):
    """Docker's create body made ketch's CreateOptions (what is not understood is refused by
    name rather than ignored, where it would change what runs)."""
    from ketch.containers import CreateOptions
    from ketch.containers.volumes import parse_mount, parse_volume

    host = body.get("HostConfig") or {}
    networking = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mounts = [parse_volume(bind) for bind in host.get("Binds") or []]
    for mount in host.get("Mounts") or []:
        kind = (mount.get("Type") or "volume").lower()
        parts = [f"type={kind}"]
        if mount.get("Source"):
            parts.append(f"source={mount['Source']}")
        parts.append(f"target={mount.get('Target') or mount.get('Destination')}")
        if mount.get("ReadOnly"):
            parts.append("readonly")
        tmpfs = mount.get("TmpfsOptions") or {}
        if tmpfs.get("SizeBytes"):
            parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
        if tmpfs.get("Mode"):
            parts.append(f"tmpfs-mode={tmpfs['Mode']:o}")
        mounts.append(parse_mount(",".join(parts)))
    # Config.Volumes: an anonymous volume for each path that no bind or mount covers (as Docker's)
    covered = {m.destination for m in mounts}
    mounts += [parse_volume(path) for path in (body.get("Volumes") or {}) if os.path.normpath(path) not in covered]
    publish = []
    for container_port, bindings in (host.get("PortBindings") or {}).items():
        port, _, protocol = container_port.partition("/")
        for binding in bindings or [{}]:
            host_ip = (binding or {}).get("HostIp") or ""
            host_port = (binding or {}).get("HostPort") or ""
            spec = f"{host_ip}:{host_port}:{port}" if host_ip else (f"{host_port}:{port}" if host_port else port)
            publish.append(f"{spec}/{protocol or 'tcp'}")
    network = host.get("NetworkMode") or "bridge"
    if network == "default":
        network = "bridge"
    if network not in ("bridge", "host", "none", "private") and not network.startswith(("container:", "ns:")):
        names = [network] + [n for n in networking if n != network]
        network = ",".join(names)
    elif networking and network == "bridge":
        names = [n for n in networking if n not in ("bridge", "default")]
        if names:
            network = ",".join(names)
    aliases = {name: list(endpoint.get("Aliases") or []) for name, endpoint in networking.items()
               if endpoint and endpoint.get("Aliases")}
    first_endpoint = next(iter(networking.values()), None) or {}
    ip = ((first_endpoint.get("IPAMConfig") or {}).get("IPv4Address")) or None
    restart = host.get("RestartPolicy") or {}
    policy = RESTART_NAMES.get(restart.get("Name") or "", None)
    if policy is None:
        raise InvalidInputError(f"invalid restart policy {restart.get('Name')!r}")
    ulimits = [f"{u['Name']}={u.get('Soft', 0)}:{u.get('Hard', u.get('Soft', 0))}" for u in host.get("Ulimits") or []]
    devices = []
    for device in host.get("Devices") or []:
        devices.append(":".join(filter(None, [device.get("PathOnHost"), device.get("PathInContainer"),
                                               device.get("CgroupPermissions")])))
    tmpfs = [f"{path}:{opts}" if opts else path for path, opts in (host.get("Tmpfs") or {}).items()]
    security = host.get("SecurityOpt") or []
    seccomp = None
    no_new_privileges = False
    for entry in security:
        key, _, value = entry.partition("=")
        if key == "seccomp":
            seccomp = value
        elif key in ("no-new-privileges", "no_new_privileges") and value in ("", "true"):
            no_new_privileges = True
        elif key in ("label", "apparmor"):
            continue
        else:
            raise InvalidInputError(f"unsupported security option {entry!r}")
    from ketch.containers.engine import docker_healthcheck

    health = body.get("Healthcheck") or None
    healthcheck = docker_healthcheck(health)
    nano_cpus = host.get("NanoCpus") or 0
    entrypoint: Any = body.get("Entrypoint")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    command: Any = body.get("Cmd")
    if isinstance(command, str):
        command = [command]
    exposed = [p for p in (body.get("ExposedPorts") or {})]
    return CreateOptions(
        name=name or None, command=list(command) if command else None,
        entrypoint=list(entrypoint) if entrypoint is not None else None, env=list(body.get("Env") or []),
        workdir=body.get("WorkingDir") or None, user=body.get("User") or None, hostname=body.get("Hostname") or None,
        hostname_given=bool(body.get("Hostname")), interactive=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")), tty=bool(body.get("Tty")), labels=dict(body.get("Labels") or {}),
        stop_signal=body.get("StopSignal") or None,
        stop_timeout=body["StopTimeout"] if body.get("StopTimeout") is not None else 10,
        read_only=bool(host.get("ReadonlyRootfs")), tmpfs=tmpfs, cap_add=list(host.get("CapAdd") or []),
        cap_drop=list(host.get("CapDrop") or []), privileged=bool(host.get("Privileged")), seccomp_profile=seccomp,
        no_new_privileges=no_new_privileges, memory=host.get("Memory") or None,
        cpus=nano_cpus / 1e9 if nano_cpus else None, pids_limit=host.get("PidsLimit") or None, ulimits=ulimits,
        network=network, ip=ip, network_aliases=aliases, dns=list(host.get("Dns") or []),
        dns_search=list(host.get("DnsSearch") or []),
        dns_options=list(host.get("DnsOptions") or []),
        add_host=[_extra_host(h) for h in host.get("ExtraHosts") or []], publish=publish,
        publish_all=bool(host.get("PublishAllPorts")), mounts=[m.as_dict() for m in mounts],
        volumes_from=list(host.get("VolumesFrom") or []), restart_policy=policy,
        restart_retries=int(restart.get("MaximumRetryCount") or 0), remove=bool(host.get("AutoRemove")),
        init=bool(host.get("Init")), devices=devices, shm_size=host.get("ShmSize") or None,
        sysctls=dict(host.get("Sysctls") or {}), healthcheck=healthcheck,
        no_healthcheck=bool(health and health.get("Test") and health["Test"][0] == "NONE"),
        pid=host.get("PidMode") or None, ipc=_namespace(host.get("IpcMode")), uts=host.get("UTSMode") or None,
        expose=exposed, group_add=list(host.get("GroupAdd") or []), oom_score_adj=host.get("OomScoreAdj"),
        cpu_shares=host.get("CpuShares") or None, cpu_quota=host.get("CpuQuota") or None,
        cpu_period=host.get("CpuPeriod") or None, cpuset_cpus=host.get("CpusetCpus") or None,
        cpuset_mems=host.get("CpusetMems") or None, memory_reservation=host.get("MemoryReservation") or None,
        memory_swap=host.get("MemorySwap") or None, oom_kill_disable=bool(host.get("OomKillDisable")),
        cgroup_parent=host.get("CgroupParent") or None, create_command=["docker", "create"],
    )


def _extra_host(entry: str) -> str:
    # Docker's HOST:IP (an IPv6 address keeps its colons after the first)
    return entry


def _namespace(mode: str | None) -> str | None:
    if not mode or mode in ("private", "shareable"):
        return None
    return mode


async def create(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    body = await _json_body(request)
    image = required(body, "Image", "config.Image: the image to run is missing")
    options = create_options(body, request.query.get("name"))
    try:
        await service.call(service.store.lookup, image)
    except NotFoundError:
        raise NotFoundError(f"No such image: {image}") from None
    container_id = await service.call(service.engine.create, image, options, pull="never")
    return web.json_response({"Id": container_id, "Warnings": []}, status=201)


# -- lifecycle ---------------------------------------------------------------------------------

async def start(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    status = (await service.call(service.engine.status, container_id))["status"]
    if status in ("running", "paused"):
        raise NotModified("already running")
    await service.call(service.engine.start, container_id)
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    status = (await service.call(service.engine.status, container_id))["status"]
    if status not in ("running", "paused"):
        raise NotModified("already stopped")
    await service.call(service.engine.stop, container_id, _int(request, "t"))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    container_id = await _record_id(service, name)
    status = (await service.call(service.engine.status, container_id))["status"]
    if status not in ("running", "paused"):
        raise Conflict(f"Container {container_id} is not running")
    await service.call(service.engine.kill, container_id, request.query.get("signal") or "KILL")
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    status = (await service.call(service.engine.status, container_id))["status"]
    if status in ("running", "paused"):
        await service.call(service.engine.restart, container_id, _int(request, "t"))
    else:
        await service.call(service.engine.start, container_id)
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    await service.call(service.engine.pause, await _record_id(service, request.match_info["name"]))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    await service.call(service.engine.unpause, await _record_id(service, request.match_info["name"]))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    new_name = required(request.query, "name", "rename: the new name is missing")
    await service.call(service.engine.rename, await _record_id(service, request.match_info["name"]), new_name)
    return web.Response(status=204)


# Docker's UpdateConfig fields -> CreateOptions' names (a zero is "unchanged", as Docker reads it)
_UPDATE_FIELDS = {
    "Memory": "memory", "MemoryReservation": "memory_reservation", "MemorySwap": "memory_swap",
    "MemorySwappiness": "memory_swappiness", "CpuShares": "cpu_shares", "CpuQuota": "cpu_quota",
    "CpuPeriod": "cpu_period", "CpuRealtimePeriod": "cpu_rt_period", "CpuRealtimeRuntime": "cpu_rt_runtime",
    "CpusetCpus": "cpuset_cpus", "CpusetMems": "cpuset_mems", "PidsLimit": "pids_limit",
    "BlkioWeight": "blkio_weight",
}


def update_changes(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /containers/{id}/update``'s body as :meth:`Engine.update`'s changes."""
    changes = {name: body[key] for key, name in _UPDATE_FIELDS.items() if body.get(key) not in (None, 0, "")}
    if body.get("NanoCpus"):
        changes["cpus"] = body["NanoCpus"] / 1e9
    for key in ("KernelMemory", "KernelMemoryTCP", "CpuCount", "CpuPercent", "IOMaximumIOps",
                "IOMaximumBandwidth"):
        if body.get(key):
            raise InvalidInputError(f"update: {key} is not supported")
    restart = body.get("RestartPolicy") or {}
    if restart.get("Name"):
        policy = RESTART_NAMES.get(restart["Name"])
        if policy is None:
            raise InvalidInputError(f"invalid restart policy {restart['Name']!r}")
        changes["restart_policy"] = policy
        changes["restart_retries"] = int(restart.get("MaximumRetryCount") or 0)
    return changes


async def update(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    changes = update_changes(await _json_body(request))
    if changes:
        await service.call(service.engine.update, container_id, **changes)
    return web.json_response({"Warnings": []})


def commit_changes(config: dict[str, Any] | None, changes: list[str]) -> list[str]:
    """``POST /commit``'s ``changes`` (Dockerfile instructions) and its body (a container
    Config whose settings go into the image) as one list of instructions."""
    out = list(changes)
    config = config or {}
    for key, instruction in (("Cmd", "CMD"), ("Entrypoint", "ENTRYPOINT")):
        value = config.get(key)
        if value is not None:
            out.append(f"{instruction} {json.dumps([value] if isinstance(value, str) else value)}")
    out += [f"ENV {entry}" for entry in config.get("Env") or [] if "=" in entry]
    out += [f"EXPOSE {port}" for port in config.get("ExposedPorts") or {}]
    out += [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in (config.get("Labels") or {}).items()]
    out += [f"VOLUME {path}" for path in config.get("Volumes") or {}]
    for key, instruction in (("User", "USER"), ("WorkingDir", "WORKDIR"), ("StopSignal", "STOPSIGNAL")):
        if config.get(key):
            out.append(f"{instruction} {config[key]}")
    return out


async def commit(request: web.Request) -> web.Response:
    """``docker commit``: the image in Docker's format (as Docker makes it), named ``repo:tag``."""
    service: Service = request.app["service"]
    name = required(request.query, "container", "commit: the container is missing")
    container_id = await _record_id(service, name)
    body = await _json_body(request)
    repo, tag = request.query.get("repo") or "", request.query.get("tag") or ""
    image = (f"{repo}:{tag}" if tag else repo) or None
    changes = commit_changes(body or None, request.query.getall("changes", []))
    image_id = await service.call(service.engine.commit, container_id, image, changes=changes,
                                  message=request.query.get("comment") or "",
                                  author=request.query.get("author") or "", fmt="docker",
                                  pause=_flag(request, "pause", True))
    return web.json_response({"Id": f"sha256:{image_id}"}, status=201)


async def remove(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    force = _flag(request, "force")
    status = (await service.call(service.engine.status, container_id))["status"]
    if status in ("running", "paused") and not force:
        raise Conflict(f"You cannot remove a {status} container {container_id}. Stop the container before "
                       "attempting removal or force remove")
    try:
        await service.call(service.engine.remove, container_id, force=force, timeout=None,
                           volumes=_flag(request, "v"))
    except NotFoundError:
        pass  # (removed meanwhile: its --rm)
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """Until the container is ``not-running`` (the default), has exited after this request
    (``next-exit``) or is ``removed``; its exit code. A container removed by its own ``--rm``
    before it is seen exit still has its code in the event log."""
    service: Service = request.app["service"]
    name = request.match_info["name"]
    container_id = await _record_id(service, name)
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidInputError(f"invalid condition {condition!r}: not-running, next-exit or removed")
    first = await service.call(service.engine.status, container_id)
    seen_running = first["status"] in ("running", "paused")
    initial_finish = first.get("finished_at")
    # The head goes at once, the body when the wait is over: docker's client waits for the head
    # before it starts the container it waits for.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await head_now(request, response)
    code: int | None = None
    while code is None:
        try:
            current = await service.call(service.engine.status, container_id)
        except NotFoundError:
            code = await service.call(_exit_code_from_events, service, container_id)
            break
        running = current["status"] in ("running", "paused", "initialized")
        seen_running = seen_running or running
        if not running and condition != "removed":
            exited = current["status"] in ("exited", "stopped")
            if condition == "not-running" or (exited and (seen_running or current.get("finished_at") != initial_finish)):
                code = current.get("exit_code") or 0
                break
        if request.transport is None or request.transport.is_closing():
            return response
        await asyncio.sleep(0.05)
    await response.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
    await response.write_eof()
    return response


def _exit_code_from_events(service: Service, container_id: str) -> int:
    from ketch.storage.events import EventLog

    code = 0
    for record in EventLog(service.store.root).read():
        if record.get("ID") == container_id and record.get("Status") == "died":
            code = record.get("ContainerExitCode", 0)
    return code


# -- reading -----------------------------------------------------------------------------------

def _filter_list(filters: dict[str, list[str]]) -> list[str]:
    mapped = {"name": "name", "id": "id", "label": "label", "status": "status", "ancestor": "ancestor",
              "exited": "exited", "before": "before", "since": "since", "volume": "volume", "network": "network",
              "health": "health", "publish": "publish", "expose": "expose"}
    out = []
    for key, values in filters.items():
        if key not in mapped:
            raise InvalidInputError(f"invalid filter {key!r}")
        out += [f"{mapped[key]}={value}" for value in values]
    return out


def _listing(service: Service, everything: bool, filters: list[str], size: bool, limit: int | None) -> list[dict]:
    # (Docker's label filters must all match; the rest are the engine's, as podman's ps takes them)
    labels = [f.partition("=")[2] for f in filters if f.startswith("label=")]
    entries = service.engine.list(all=everything, filters=[f for f in filters if not f.startswith("label=")],
                                  size=size)
    for wanted in labels:
        key, has_value, value = wanted.partition("=")
        entries = [e for e in entries if key in (e.get("Labels") or {}) and
                   (not has_value or e["Labels"][key] == value)]
    entries.sort(key=lambda e: -e.get("Created", 0))
    if limit is not None and limit > 0:
        entries = entries[:limit]
    out = []
    for entry in entries:
        try:
            inspected = service.engine.inspect(entry["Id"])
        except NotFoundError:
            continue
        summary = shapes.container_summary(entry, inspected)
        if size and entry.get("Size"):
            summary["SizeRw"] = entry["Size"].get("rwSize", 0)
            summary["SizeRootFs"] = entry["Size"].get("rootFsSize", 0)
        out.append(summary)
    return out


async def list_containers(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    limit = _int(request, "limit")
    everything = _flag(request, "all") or (limit is not None and limit > 0)
    filters = _filter_list(_filters(request.query.get("filters")))
    return web.json_response(await service.call(_listing, service, everything, filters, _flag(request, "size"), limit))


async def inspect(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    try:
        data = await service.call(service.engine.inspect, name, size=_flag(request, "size"))
    except NotFoundError as exc:
        raise _no_such_container(exc, name) from None
    return web.json_response(shapes.container_inspect(data))


async def top(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    from ketch.containers.views import top_table

    processes = await service.call(service.engine.top, container_id)
    # Docker's columns (ps -ef's) from podman top's descriptors
    rows = top_table(processes, ["user", "pid", "ppid", "pcpu", "stime", "tty", "time", "args"])
    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    return web.json_response({"Titles": titles, "Processes": [[cell.strip() for cell in row] for row in rows[1:]]})


async def changes(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    listed = await service.call(service.engine.diff, container_id)
    kinds = {"C": 0, "A": 1, "D": 2}
    return web.json_response([{"Path": path, "Kind": kinds.get(kind, 0)} for kind, path in listed] or None)


async def logs(request: web.Request) -> web.StreamResponse:
    """The container's log, multiplexed (without a terminal) or raw; ``follow`` until it ends."""
    from ketch.containers import logs as logfiles

    service: Service = request.app["service"]
    name = request.match_info["name"]
    container_id = await _record_id(service, name)
    record = await service.call(service.engine.record, container_id)
    want = {"stdout": _flag(request, "stdout"), "stderr": _flag(request, "stderr")}
    if not any(want.values()):
        raise InvalidInputError("you must choose at least one stream")
    timestamps = _flag(request, "timestamps")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "", "-1") else int(tail_text)
    since = float(request.query["since"]) if request.query.get("since") not in (None, "", "0") else None
    until = float(request.query["until"]) if request.query.get("until") not in (None, "", "0") else None
    path = service.engine._log_path(record)
    tty = record.options.tty
    response = web.StreamResponse(headers={"Content-Type": RAW_STREAM if tty else MULTIPLEXED_STREAM})
    await response.prepare(request)

    def encode(entry) -> bytes:
        stream = entry[1]
        if not want.get(stream, False):
            return b""
        data = logfiles.render(entry, timestamps)
        return data if tty else frame(STDERR if stream == "stderr" else STDOUT, data)

    follower = logfiles.LogFollower(path)
    follower.offset = 0
    records = await service.call(logfiles.read_records, path, since=since, tail=tail, until=until)
    follower.offset = os.path.getsize(path) if os.path.exists(path) else 0
    chunk = b"".join(encode(entry) for entry in records)
    if chunk:
        await response.write(chunk)
    if _flag(request, "follow") and until is None:
        while True:
            status = (await service.call(service.engine.status, container_id))["status"]
            fresh = follower.new_records()
            chunk = b"".join(encode(entry) for entry in fresh)
            if chunk:
                await response.write(chunk)
            if status not in ("running", "paused", "initialized"):
                break
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.05)
    await response.write_eof()
    return response


async def attach(request: web.Request) -> web.StreamResponse:
    """A hijacked connection: the container's output from now on (``logs=1``: from its start)
    while it runs, and the client's input into its stdin."""
    from ketch.containers import logs as logfiles
    from ketch.containers.monitor import STDIN_FIFO

    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    record = await service.call(service.engine.record, container_id)
    tty = record.options.tty
    want = {"stdout": _flag(request, "stdout"), "stderr": _flag(request, "stderr")}
    with_stdin = _flag(request, "stdin") and record.options.interactive
    path = service.engine._log_path(record)
    follower = logfiles.LogFollower(path)
    if _flag(request, "logs"):
        follower.offset = 0
    connection = await Hijacked.accept(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    userdata = service.engine._userdata(container_id)
    stdin_task = None
    if with_stdin:
        stdin_task = asyncio.ensure_future(_feed_stdin(connection, os.path.join(userdata, STDIN_FIFO)))
    started = False
    try:
        while True:
            try:
                status = (await service.call(service.engine.status, container_id))["status"]
            except NotFoundError:
                status = "removed"
            started = started or status in ("running", "paused", "exited", "stopped", "removed")
            chunk = b""
            for entry in follower.new_records():
                if want.get(entry[1], False):
                    data = logfiles.render(entry, False)
                    chunk += data if tty else frame(STDERR if entry[1] == "stderr" else STDOUT, data)
            if chunk and not await connection.write(chunk):
                break
            if started and status not in ("running", "paused", "initialized"):
                break
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.03)
    finally:
        if stdin_task is not None:
            stdin_task.cancel()
    await connection.close()
    return connection.response


async def _feed_stdin(connection: Hijacked, fifo_path: str) -> None:
    """What the client sends, into the container's stdin FIFO; its end closes the FIFO (the
    monitor then closes the container's stdin)."""
    fd = None
    for _ in range(200):  # (the FIFO is made when the container is created; its reader when it starts)
        try:
            fd = os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError:
            await asyncio.sleep(0.05)
    if fd is None:
        return
    try:
        while data := await connection.read():
            try:
                await write_all(fd, data)
            except OSError:
                return  # (the container closed its stdin)
    finally:
        os.close(fd)


def _size(request: web.Request) -> tuple[int, int]:
    """``w`` and ``h`` (0 for either: the client knows no size, and nothing changes)."""
    width, height = _int(request, "w") or 0, _int(request, "h") or 0
    if width < 0 or height < 0:
        raise InvalidInputError("resize: h and w must not be negative")
    return width, height


async def resize(request: web.Request) -> web.Response:
    """The terminal of a running container made ``w`` by ``h``: set on its init's terminal (its
    stdin), whose foreground processes get SIGWINCH."""
    from ketch.dockerapi.streams import set_terminal_size

    service: Service = request.app["service"]
    width, height = _size(request)
    container_id = await _record_id(service, request.match_info["name"])
    if not width or not height:
        return web.Response(status=200)
    record = await service.call(service.engine.record, container_id)
    current = await service.call(service.engine.status, container_id)
    if not record.options.tty:
        raise Conflict(f"container {record.name} has no terminal to resize")
    if current["status"] not in ("running", "paused") or not current.get("pid"):
        raise Conflict(f"container {record.name} is not running")
    try:
        fd = os.open(f"/proc/{current['pid']}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Conflict(f"container {record.name}: its terminal cannot be reached: {exc.strerror}") from None
    try:
        set_terminal_size(fd, width, height)
    finally:
        os.close(fd)
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    filters = _filter_list(_filters(request.query.get("filters")))
    removed = await service.call(service.engine.prune, filters)
    return web.json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": 0})


async def export(request: web.Request) -> web.StreamResponse:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    return await written_response(request, service, lambda out: service.engine.export(container_id, out),
                                  "application/x-tar")


async def written_response(request: web.Request, service: Service, write, content_type: str,
                           headers: dict[str, str] | None = None) -> web.StreamResponse:
    """The response is what ``write(file)`` writes, as it writes it (on the pool, into a pipe);
    an error before its first byte is the API's error instead."""
    read_fd, write_fd = os.pipe()

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as out:
            write(out)

    job = asyncio.ensure_future(service.call(produce))
    reader = os.fdopen(read_fd, "rb")
    try:
        first = await service.call(reader.read1, 1 << 20)
        if not first:
            await job  # (its error, if it failed before writing anything)
        response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
        await response.prepare(request)
        while first:
            await response.write(first)
            first = await service.call(reader.read1, 1 << 20)
        await job
        await response.write_eof()
        return response
    finally:
        reader.close()


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{name}/json", inspect),
    ("POST", "/containers/{name}/start", start),
    ("POST", "/containers/{name}/stop", stop),
    ("POST", "/containers/{name}/kill", kill),
    ("POST", "/containers/{name}/restart", restart),
    ("POST", "/containers/{name}/pause", pause),
    ("POST", "/containers/{name}/unpause", unpause),
    ("POST", "/containers/{name}/rename", rename),
    ("POST", "/containers/{name}/update", update),
    ("POST", "/commit", commit),
    ("POST", "/containers/{name}/wait", wait),
    ("DELETE", "/containers/{name}", remove),
    ("GET", "/containers/{name}/top", top),
    ("GET", "/containers/{name}/changes", changes),
    ("GET", "/containers/{name}/logs", logs),
    ("POST", "/containers/{name}/attach", attach),
    ("POST", "/containers/{name}/resize", resize),
    ("GET", "/containers/{name}/export", export),
]


# -- archive: docker cp -------------------------------------------------------------------------

def _go_mode(st: os.stat_result) -> int:
    """A file's mode as Go's os.FileMode bits, which docker's client reads from the stat header."""
    import stat as stats

    mode = stats.S_IMODE(st.st_mode) & 0o777
    kind = stats.S_IFMT(st.st_mode)
    mode |= {stats.S_IFDIR: 1 << 31, stats.S_IFLNK: 1 << 27, stats.S_IFIFO: 1 << 25, stats.S_IFSOCK: 1 << 24,
             stats.S_IFBLK: 1 << 26, stats.S_IFCHR: (1 << 26) | (1 << 21)}.get(kind, 0)
    if st.st_mode & stats.S_ISUID:
        mode |= 1 << 23
    if st.st_mode & stats.S_ISGID:
        mode |= 1 << 22
    if st.st_mode & stats.S_ISVTX:
        mode |= 1 << 20
    return mode


def _path_stat(service: Service, container_id: str, path: str) -> str:
    """``X-Docker-Container-Path-Stat``: base64 of the JSON stat of PATH in the container."""
    import base64
    import time

    from ketch.containers.changes import Place

    engine = service.engine
    record = engine.record(container_id)
    if not path.startswith("/"):
        path = os.path.join(engine._workdir(record), path)
    with engine._container_root(record) as root:
        place = Place(root, path, f"{container_id}:{path}", container_id)
        try:
            target = place.resolve()
            st = os.lstat(target)
            link = os.readlink(target) if os.path.islink(target) else ""
        except OSError:
            raise NotFoundError(f"Could not find the file {path} in container {record.name}") from None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime)) + "Z"
    data = {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size, "mode": _go_mode(st),
            "mtime": stamp, "linkTarget": link}
    return base64.b64encode(json.dumps(data).encode()).decode()


async def archive_head(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    path = request.query.get("path") or "/"
    header = await service.call(_path_stat, service, container_id, path)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": header})


async def archive_get(request: web.Request) -> web.StreamResponse:
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    path = request.query.get("path") or "/"
    header = await service.call(_path_stat, service, container_id, path)
    response = await written_response(request, service, lambda out: service.engine.copy(
        f"{container_id}:{path}", "-", stdout=out), "application/x-tar",
        headers={"X-Docker-Container-Path-Stat": header})
    return response


async def archive_put(request: web.Request) -> web.Response:
    """A tar stream unpacked into the container's existing directory ``path``."""
    import tempfile

    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    path = request.query.get("path") or "/"
    await service.call(_path_stat, service, container_id, path)  # (a missing directory: 404 before the body)
    with tempfile.TemporaryFile(prefix="ketch-archive-") as spool:
        while chunk := await request.content.read(1 << 20):
            await service.call(spool.write, chunk)
        spool.seek(0)
        await service.call(service.engine.copy, "-", f"{container_id}:{path}", stdin=spool)
    return web.Response(status=200)


ROUTES += [
    ("HEAD", "/containers/{name}/archive", archive_head),
    ("GET", "/containers/{name}/archive", archive_get),
    ("PUT", "/containers/{name}/archive", archive_put),
]


# -- stats ---------------------------------------------------------------------------------------

def _docker_stats(entry: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Docker's stats message from ketch's sample (and the one before it, for the CPU deltas
    ``docker stats`` computes its percentage from)."""
    import time

    def cpu(sample: dict[str, Any] | None) -> dict[str, Any]:
        if sample is None:
            return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "system_cpu_usage": 0, "online_cpus": os.cpu_count() or 1,
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
        return {"cpu_usage": {"total_usage": sample["CPUNano"], "usage_in_kernelmode": 0,
                              "usage_in_usermode": sample["CPUNano"]},
                "system_cpu_usage": sample["SystemNano"] * (os.cpu_count() or 1), "online_cpus": os.cpu_count() or 1,
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}

    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    return {
        "read": now, "preread": now if previous else "0001-01-01T00:00:00Z", "id": entry["ContainerID"],
        "name": "/" + entry["Name"], "pids_stats": {"current": entry.get("PIDs", 0)},
        "cpu_stats": cpu(entry), "precpu_stats": cpu(previous),
        "memory_stats": {"usage": entry.get("MemUsage", 0), "limit": entry.get("MemLimit", 0), "stats": {}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": entry.get("BlockInput", 0)},
            {"major": 0, "minor": 0, "op": "write", "value": entry.get("BlockOutput", 0)}]},
        "networks": {"eth0": {"rx_bytes": entry.get("NetInput", 0), "tx_bytes": entry.get("NetOutput", 0),
                              "rx_packets": 0, "tx_packets": 0, "rx_errors": 0, "tx_errors": 0,
                              "rx_dropped": 0, "tx_dropped": 0}},
    }


async def stats(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/stats``: one message (``stream=0``), or one a second while it runs."""
    service: Service = request.app["service"]
    container_id = await _record_id(service, request.match_info["name"])
    stream = _flag(request, "stream", True)
    one_shot = _flag(request, "one-shot")
    previous = None
    if not one_shot:
        samples = await service.call(service.engine.stats, [container_id])
        previous = samples[0] if samples else None
        if not stream:
            await asyncio.sleep(0.5)  # (a second sample gives the CPU deltas a single message needs)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        samples = await service.call(service.engine.stats, [container_id])
        if not samples:
            break
        await response.write(json.dumps(_docker_stats(samples[0], previous)).encode() + b"\n")
        previous = samples[0]
        if not stream or request.transport is None or request.transport.is_closing():
            break
        status = (await service.call(service.engine.status, container_id))["status"]
        if status not in ("running", "paused"):
            break
        await asyncio.sleep(1)
    await response.write_eof()
    return response


ROUTES.append(("GET", "/containers/{name}/stats", stats))
