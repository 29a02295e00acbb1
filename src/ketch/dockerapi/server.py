"""The service: aiohttp serving the Docker Engine API on a unix socket, 127.0.0.1:PORT or the
socket systemd passes (``LISTEN_FDS``), until it has been idle for ``--time`` seconds.

Why aiohttp: a maintained asyncio HTTP/1.1 server that serves unix sockets and already-bound
sockets, streams responses (logs, events, pull progress) and lets a handler take over an
upgraded connection (attach, exec: :mod:`ketch.dockerapi.streams`), many at once in one thread.
The engine's work is blocking (files, locks, child processes): it runs on a thread pool.

Paths are served unversioned and under ``/vX.Y`` for every API version from 1.24 to 1.43;
a newer one is refused as Docker refuses it. Errors are ``{"message": ...}`` with Docker's
statuses: 404 for what is not there, 409 for a conflict (a name in use, an image in use, a
container in the wrong state), 400 for bad input, 500 for the rest.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import stat
from concurrent import futures
from typing import Any

from aiohttp import web

from ketch.errors import (
    ContainerStateError,
    DuplicateNameError,
    InUseError,
    InvalidInputError,
    KetchError,
    NotFoundError,
    UnsupportedError,
)

log = logging.getLogger(__name__)

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
MAX_BODY = 16 * 1024 * 1024  # JSON bodies; archives and build contexts are streamed


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


class Conflict(KetchError):
    """A request that conflicts with the state of what it names (Docker's 409)."""


class NotModified(KetchError):
    """Nothing to do: the container is already as asked (Docker's 304)."""


def status_of(exc: BaseException) -> int:
    if isinstance(exc, NotModified):
        return 304
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (DuplicateNameError, InUseError, Conflict, ContainerStateError)):
        return 409
    if isinstance(exc, (InvalidInputError, UnsupportedError)):
        return 400
    return 500


def error(status: int, message: str) -> web.Response:
    # (exactly application/json: Docker's Go client reads the message only from that type)
    return web.Response(body=json.dumps({"message": message}).encode() + b"\n", status=status,
                        headers={"Content-Type": "application/json"})


class Service:
    """What every handler shares: the engine (one, used from the pool's threads: the store opens
    a database connection per thread), the pool, and the idle clock."""

    def __init__(self, root: str | None = None, runroot: str | None = None, *, idle: float = 5.0,
                 workers: int = 32) -> None:
        from ketch.containers import Engine

        self.engine = Engine(root=root, runroot=runroot)
        self.store = self.engine.store
        self.idle = idle
        self.active = 0
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dockerapi")
        self.last_request = 0.0
        self.stopped: asyncio.Event | None = None
        self.execs: dict[str, dict[str, Any]] = {}

    async def call(self, function, *args, **kwargs):
        """``function(*args, **kwargs)`` on the pool (the engine's calls block)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(function, *args, **kwargs))


@web.middleware
async def _middleware(request: web.Request, handler):
    service: Service = request.app["service"]
    service.active += 1
    try:
        version = request.match_info.get("_version")
        if version:
            wanted = _version_tuple(version[1:])
            if wanted > _version_tuple(API_VERSION):
                return error(400, f"client version {version[1:]} is too new. Maximum supported API version is "
                                  f"{API_VERSION}")
            if wanted < _version_tuple(MIN_API_VERSION):
                return error(400, f"client version {version[1:]} is too old. Minimum supported API version is "
                                  f"{MIN_API_VERSION}, please upgrade your client to a newer version")
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except json.JSONDecodeError as exc:
            return error(400, f"invalid JSON in the request body: {exc}")
        except KetchError as exc:
            status = status_of(exc)
            if status == 304:
                return web.Response(status=304)
            return error(status, str(exc))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the API's 500, the service goes on
            log.exception("%s %s failed", request.method, request.path)
            return error(500, f"{type(exc).__name__}: {exc}")
    finally:
        service.active -= 1
        service.last_request = asyncio.get_running_loop().time()


def make_app(service: Service) -> web.Application:
    from ketch.dockerapi import builds, containers, execs, images, system, volumes

    app = web.Application(middlewares=[_middleware], client_max_size=MAX_BODY)
    app["service"] = service
    routes: list[tuple[str, str, Any]] = [*system.ROUTES, *containers.ROUTES, *execs.ROUTES,
                                           *images.ROUTES, *volumes.ROUTES, *builds.ROUTES]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/{_version:v[0-9]+\.[0-9]+}" + path, handler)
    return app


# -- sockets -------------------------------------------------------------------------------------

def default_uri() -> str:
    """``unix:///run/ketch/ketch.sock``; a user's is under ``$XDG_RUNTIME_DIR/ketch``."""
    from ketch.userns import is_rootless, runtime_dir

    if is_rootless():
        return f"unix://{runtime_dir() / 'ketch' / 'ketch.sock'}"
    return "unix:///run/ketch/ketch.sock"


def listen(uri: str | None) -> tuple[socket.socket, str, str | None]:
    """The listening socket: systemd's (``LISTEN_FDS``, when no URI is given), a unix socket
    (a stale file of a service that is gone is replaced; a live one is refused) or TCP; where it
    listens, and the socket file this service made (removed when it ends: systemd's is not)."""
    if uri is None and os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")):
        fd = 3
        family = socket.AF_UNIX if stat.S_ISSOCK(os.fstat(fd).st_mode) else socket.AF_INET
        try:
            sock = socket.socket(fileno=fd)
            family = sock.family
        except OSError as exc:
            raise InvalidInputError(f"the socket systemd passed (fd 3) is not usable: {exc.strerror}") from exc
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
        return sock, "systemd's socket" if family == socket.AF_UNIX else "systemd's TCP socket", None
    uri = uri or default_uri()
    if uri.startswith("unix://"):
        path = uri[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidInputError(f"{uri}: a unix socket's path must be absolute (unix:///PATH)")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # (a service that is gone left it)
            else:
                raise InUseError(f"{path}: another service is listening there")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o660)
        sock.listen(128)
        return sock, path, path
    if uri.startswith("tcp://"):
        host, _, port = uri[len("tcp://"):].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInputError(f"{uri}: want tcp://HOST:PORT")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            sock.close()
            raise InUseError(f"{uri}: {exc.strerror}") from exc
        sock.listen(128)
        return sock, f"{host}:{sock.getsockname()[1]}", None
    raise InvalidInputError(f"{uri}: want unix:///PATH or tcp://HOST:PORT")


def serve(uri: str | None = None, *, root: str | None = None, runroot: str | None = None, idle: float = 5.0,
          ready=None) -> None:
    """Serve until idle for ``idle`` seconds (0: until SIGTERM or SIGINT); ``ready(where)`` is
    called once the socket listens."""
    sock, where, made = listen(uri)
    ours = os.stat(made).st_ino if made is not None else None
    try:
        service = Service(root, runroot, idle=idle)
        asyncio.run(_serve(service, sock, where, ready))
    finally:
        try:
            if made is not None and os.stat(made).st_ino == ours:  # (not a later service's socket)
                os.unlink(made)
        except FileNotFoundError:
            pass


async def _serve(service: Service, sock: socket.socket, where: str, ready) -> None:
    import signal

    loop = asyncio.get_running_loop()
    service.stopped = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, service.stopped.set)
    app = make_app(service)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    service.last_request = loop.time()
    if ready is not None:
        ready(where)
    try:
        while not service.stopped.is_set():
            try:
                await asyncio.wait_for(service.stopped.wait(), timeout=0.5)
            except TimeoutError:
                pass
            if service.idle and service.active == 0 and loop.time() - service.last_request >= service.idle:
                break
    finally:
        await runner.cleanup()
        service.pool.shutdown(wait=False, cancel_futures=True)
