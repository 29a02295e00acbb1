"""``/images/...``: create (a pull, with Docker's progress messages), list, inspect, history,
tag, remove, push, save (``get``), load, prune, search; and ``/build``."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

from aiohttp import web

from ketch.dockerapi import shapes
from ketch.dockerapi.containers import _flag, required, written_response
from ketch.dockerapi.server import Service
from ketch.dockerapi.system import _filters
from ketch.errors import InvalidInputError, KetchError, NotFoundError


def _listing(service: Service, everything: bool, filters: list[str]) -> list[dict[str, Any]]:
    from ketch.storage import filters as image_filters
    from ketch.storage import views

    store = service.store
    records = store.images()
    counts: dict[str, int] = {}
    for container in store.containers():
        counts[container["image"]] = counts.get(container["image"], 0) + 1
    hidden = set() if everything else views.intermediate_ids(records)
    matcher = image_filters.ImageFilter(filters, records, counts)
    chosen = [r for r in records if r.id not in hidden and matcher(r)]
    entries = views.images_json(chosen, counts, intermediate=views.intermediate_ids(records),
                                parent_of=views.parents(records))
    return [shapes.image_summary(entry) for entry in sorted(entries, key=lambda e: -e.get("Created", 0))]


async def image_list(service: Service, *, everything: bool = False, filters: list[str] | None = None) -> list[dict]:
    return await service.call(_listing, service, everything, filters or [])


async def list_images(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    filters = [f"{key}={value}" for key, values in _filters(request.query.get("filters")).items() for value in values]
    if request.query.get("filter"):
        filters.append(f"reference={request.query['filter']}")
    return web.json_response(await image_list(service, everything=_flag(request, "all"), filters=filters))


def _lookup(service: Service, name: str):
    try:
        return service.store.lookup(name)
    except NotFoundError:
        raise NotFoundError(f"No such image: {name}") from None


def _inspect(service: Service, name: str) -> dict[str, Any]:
    from ketch.storage import views

    store = service.store
    record = _lookup(service, name)
    dirs = [str(store.driver.content_dir(key)) for key in store.layer_contents(record.layers)]
    return shapes.image_inspect(views.inspect_json(record, store.driver_name, dirs))


async def inspect(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    return web.json_response(await service.call(_inspect, service, request.match_info["name"]))


def _history(service: Service, name: str) -> list[dict[str, Any]]:
    from ketch.storage import views

    store = service.store
    record = _lookup(service, name)
    entries = views.history_entries(record, store.images(), store.layer_sizes(record.layers))
    out = []
    for entry in entries:
        identifier = entry.get("ID") or "<missing>"
        out.append({"Id": identifier if identifier == "<missing>" else "sha256:" + identifier,
                    "Created": int(entry.get("Created") or 0), "CreatedBy": entry.get("CreatedBy", ""),
                    "Tags": entry.get("Tags"), "Size": entry.get("Size", 0), "Comment": entry.get("Comment", "")})
    return out


async def history(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    return web.json_response(await service.call(_history, service, request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    repo = required(request.query, "repo", "tag: the repository is missing")
    target = f"{repo}:{request.query.get('tag') or 'latest'}"
    record = await service.call(_lookup, service, request.match_info["name"])
    await service.call(service.store.tag, record.id, target)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    name = request.match_info["name"]
    await service.call(_lookup, service, name)
    lines = await service.call(service.store.remove_image, name, force=_flag(request, "force"))
    out = []
    for line in lines:
        kind, _, value = line.partition(": ")
        if kind == "Untagged":
            out.append({"Untagged": value})
        elif kind == "Deleted":
            out.append({"Deleted": "sha256:" + value})
    return web.json_response(out)


async def prune(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    filters = _filters(request.query.get("filters"))
    dangling_only = (filters.get("dangling") or ["true"])[0].lower() in ("1", "true")

    def run() -> list[str]:
        removed = []
        records = service.store.images()
        used = {c["image"] for c in service.store.containers()}
        for record in records:
            if record.id in used or (dangling_only and record.names):
                continue
            try:
                removed += service.store.remove_image(record.id)
            except KetchError:
                continue
        return removed

    lines = await service.call(run)
    deleted = [{"Deleted": "sha256:" + line.partition(": ")[2]} for line in lines if line.startswith("Deleted")]
    return web.json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": 0})


# -- pull and push: Docker's progress messages ----------------------------------------------------

class _Progress:
    """ketch's copy progress as Docker's JSON messages, queued for the response from the copy's
    thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, verb: str) -> None:
        self.loop, self.queue, self.verb = loop, queue, verb
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.lock = threading.Lock()

    def _send(self, message: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    @staticmethod
    def _short(descriptor) -> str:
        return str(descriptor.digest).split(":")[-1][:12]

    def blob_started(self, descriptor) -> None:
        with self.lock:
            self.totals[self._short(descriptor)] = descriptor.size
            self.done[self._short(descriptor)] = 0
        self._send({"status": "Pulling fs layer" if self.verb == "pull" else "Preparing", "progressDetail": {},
                    "id": self._short(descriptor)})

    def blob_advanced(self, descriptor, nbytes: int) -> None:
        key = self._short(descriptor)
        with self.lock:
            self.done[key] = self.done.get(key, 0) + nbytes
            current = self.done[key]
        self._send({"status": "Downloading" if self.verb == "pull" else "Pushing",
                    "progressDetail": {"current": current, "total": self.totals.get(key, 0)}, "id": key})

    def blob_finished(self, descriptor, *, skipped: bool) -> None:
        if self.verb == "pull":
            status = "Already exists" if skipped else "Pull complete"
        else:
            status = "Layer already exists" if skipped else "Pushed"
        self._send({"status": status, "progressDetail": {}, "id": self._short(descriptor)})

    def message(self, text: str) -> None:
        pass


def _context(request: web.Request, service: Service, reference: str):
    """The registry context of a pull or push: the client's ``X-Registry-Auth`` credentials, and
    plain HTTP allowed for a registry on the loopback (as Docker's daemon allows 127.0.0.0/8)."""
    from ketch.image.context import SystemContext

    ctx = SystemContext(storage_root=str(service.store.root), storage_runroot=str(service.store.runroot))
    header = request.headers.get("X-Registry-Auth")
    if header:
        try:
            padded = header + "=" * (-len(header) % 4)
            auth = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except (ValueError, json.JSONDecodeError):
            raise InvalidInputError("X-Registry-Auth: not base64url-encoded JSON") from None
        if isinstance(auth, dict) and auth.get("username"):
            ctx.username, ctx.password = auth["username"], auth.get("password", "")
        elif isinstance(auth, dict) and auth.get("identitytoken"):
            ctx.registry_token = auth["identitytoken"]
    if "/" in reference and on_loopback(reference):
        ctx.tls_verify = False
    return ctx


async def search_images(request: web.Request) -> web.Response:
    """``GET /images/search``: podman's search (the registry's repository list, else its
    /v1/search), in the Engine API's result shape, as podman's service answers it."""
    from ketch.image.search import DEFAULT_LIMIT, search

    service: Service = request.app["service"]
    term = required(request.query, "term", "search: the term is missing")
    try:
        limit = int(request.query.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        raise InvalidInputError(f"search: limit {request.query['limit']!r} is not a number") from None
    filters = {key: values[-1] for key, values in _filters(request.query.get("filters")).items() if values}
    ctx = _context(request, service, term)
    if request.query.get("tlsVerify") == "false":
        ctx.tls_verify = False
    results = await service.call(search, term, ctx, limit=limit, list_tags=_flag(request, "listTags"),
                                 filters=filters)
    return web.json_response([{"description": r.Description, "is_official": r.Official == "[OK]",
                               "is_automated": r.Automated == "[OK]", "name": r.Name, "star_count": r.Stars}
                              for r in results])


def on_loopback(reference: str) -> bool:
    """Whether the registry of ``reference`` (HOST[:PORT][/...]) is on the loopback, which
    Docker's daemon reaches over plain HTTP (127.0.0.0/8 is insecure by default there)."""
    host = reference.split("/", 1)[0].rsplit(":", 1)[0] if not reference.startswith("[") else \
        reference.split("]", 1)[0] + "]"
    return host in ("localhost", "[::1]") or host.startswith("127.")


async def _progress_response(request: web.Request, work, verb: str) -> web.StreamResponse:
    """Run ``work(progress)`` on the pool while its progress streams to the client as JSON
    lines; a failure is the stream's last message (``errorDetail``), as Docker's."""
    service: Service = request.app["service"]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    progress = _Progress(loop, queue, verb)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    job = asyncio.ensure_future(service.call(work, progress))
    while True:
        getter = asyncio.ensure_future(queue.get())
        finished, _ = await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
        if getter in finished:
            await response.write(json.dumps(getter.result()).encode() + b"\r\n")
            continue
        getter.cancel()
        while not queue.empty():
            await response.write(json.dumps(queue.get_nowait()).encode() + b"\r\n")
        break
    try:
        for message in job.result() or []:
            await response.write(json.dumps(message).encode() + b"\r\n")
    except KetchError as exc:
        await response.write(json.dumps({"errorDetail": {"message": str(exc)}, "error": str(exc)}).encode() + b"\r\n")
    await response.write_eof()
    return response


async def create(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=NAME&tag=TAG``: a pull; ``?fromSrc=-|URL``: an import."""
    from ketch.containers.images import pull

    service: Service = request.app["service"]
    if request.query.get("fromSrc"):
        return await _import(request, service)
    source = request.query.get("fromImage")
    if not source:
        raise InvalidInputError("fromImage or fromSrc is missing")
    wanted_tag = request.query.get("tag")
    reference = source
    if wanted_tag:
        reference = f"{source}@{wanted_tag}" if wanted_tag.startswith("sha256:") else f"{source}:{wanted_tag}"
    elif "@" not in source and ":" not in source.rsplit("/", 1)[-1]:
        reference = f"{source}:latest"
    ctx = _context(request, service, reference)

    def work(progress) -> list[dict[str, Any]]:
        image_id = pull(service.store, reference, ctx, progress=progress)
        record = service.store.lookup(image_id)
        return [{"status": f"Digest: {record.digest}"},
                {"status": f"Status: Downloaded newer image for {reference}"}]

    return await _progress_response(request, work, "pull")


async def _import(request: web.Request, service: Service) -> web.Response:
    """``docker import``: the body (``fromSrc=-``) or a URL's, as an image of one layer."""
    import os
    import tempfile

    from ketch.containers.commit import import_tarball, open_tarball

    location = request.query["fromSrc"]
    repo, tag = request.query.get("repo") or "", request.query.get("tag") or ""
    name = (f"{repo}:{tag}" if tag else repo) or None  # (docker import sends the whole reference as repo)
    platform = None
    if request.query.get("platform"):
        from ketch.image.platform import parse_platform

        platform = parse_platform(request.query["platform"])
    changes = request.query.getall("changes", [])

    def work(path: str) -> str:
        with open_tarball(location if location != "-" else path) as source:
            return import_tarball(service.store, source, name=name, changes=changes,
                                  message=request.query.get("message") or "", fmt="docker", platform=platform)

    if location != "-":
        image_id = await service.call(work, "")
    else:
        handle, path = tempfile.mkstemp(prefix="ketch-import-", suffix=".tar")
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := await request.content.read(1 << 20):
                    await service.call(out.write, chunk)
            image_id = await service.call(work, path)
        finally:
            os.unlink(path)
    return web.Response(body=json.dumps({"status": f"sha256:{image_id}"}).encode() + b"\r\n",
                        content_type="application/json")


async def push(request: web.Request) -> web.StreamResponse:
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.policy import Policy

    service: Service = request.app["service"]
    name = request.match_info["name"]
    reference = f"{name}:{request.query['tag']}" if request.query.get("tag") else name
    record = await service.call(_lookup, service, reference)
    ctx = _context(request, service, reference)

    def work(progress) -> list[dict[str, Any]]:
        options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything(), progress=progress)
        copy_image(f"ketch-storage:{reference}", f"docker://{reference}", options)
        tag_name = reference.rsplit(":", 1)[-1] if ":" in reference.rsplit("/", 1)[-1] else "latest"
        return [{"status": f"{tag_name}: digest: {record.digest} size: {len(record.manifest)}"},
                {"progressDetail": {}, "aux": {"Tag": tag_name, "Digest": record.digest,
                                               "Size": len(record.manifest)}}]

    return await _progress_response(request, work, "push")


async def save(request: web.Request) -> web.StreamResponse:
    """``GET /images/{name}/get`` and ``GET /images/get?names=...``: a docker-archive tarball."""
    service: Service = request.app["service"]
    names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
    if not names:
        raise InvalidInputError("names: the images to save are missing")
    for name in names:
        await service.call(_lookup, service, name)

    def write(out) -> None:
        import os
        import shutil
        import tempfile

        from ketch.image.docker_archive import save_images

        with tempfile.TemporaryDirectory(prefix="ketch-save-") as scratch:
            path = os.path.join(scratch, "archive.tar")
            save_images(service.store, names, path, _context(request, service, ""))
            with open(path, "rb") as archive:
                shutil.copyfileobj(archive, out, 1 << 20)

    return await written_response(request, service, write, "application/x-tar")


async def load(request: web.Request) -> web.StreamResponse:
    """``POST /images/load``: a docker-archive (or oci-archive) tarball in the body."""
    import os
    import tempfile

    service: Service = request.app["service"]
    handle, path = tempfile.mkstemp(prefix="ketch-load-", suffix=".tar")
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := await request.content.read(1 << 20):
                await service.call(out.write, chunk)

        def work() -> list[str]:
            from ketch.image.load import load_archive

            return load_archive(service.store, path, _context(request, service, ""))

        loaded = await service.call(work)
    finally:
        os.unlink(path)
    stream = "".join(json.dumps({"stream": f"Loaded image: {name}\n"}) + "\r\n" for name in loaded)
    return web.Response(body=stream.encode(), content_type="application/json")


ROUTES = [
    ("GET", "/images/json", list_images),
    ("GET", "/images/search", search_images),
    ("POST", "/images/create", create),
    ("POST", "/images/prune", prune),
    ("GET", "/images/get", save),
    ("POST", "/images/load", load),
    ("GET", "/images/{name:.+}/json", inspect),
    ("GET", "/images/{name:.+}/history", history),
    ("POST", "/images/{name:.+}/tag", tag),
    ("POST", "/images/{name:.+}/push", push),
    ("GET", "/images/{name:.+}/get", save),
    ("DELETE", "/images/{name:.+}", remove),
]
