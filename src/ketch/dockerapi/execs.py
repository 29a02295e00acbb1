"""``/containers/{id}/exec`` and ``/exec/{id}/...``: exec instances, started on a hijacked
connection (the multiplexed format without a terminal, raw with one), inspected for their exit
code afterwards, as ``docker exec`` does.

The process is run by a helper program (``python -m ketch.dockerapi.execs``), whose stdio are the
service's pipes, or which hands the terminal's master to the service through a console socket:
the runtime forks, and a fork of the service's threaded process could deadlock, where a new
program cannot."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
from typing import Any

from aiohttp import web

from ketch.dockerapi.containers import _json_body, _record_id
from ketch.dockerapi.server import Conflict, Service
from ketch.dockerapi.streams import MULTIPLEXED_STREAM, RAW_STREAM, STDERR, STDOUT, Hijacked, frame, write_all
from ketch.errors import InvalidInputError, NotFoundError


async def create(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    body = await _json_body(request)
    command = body.get("Cmd")
    if isinstance(command, str):
        command = [command]
    if not command:
        raise InvalidInputError("no exec command specified")
    container_id = await _record_id(service, request.match_info["name"])
    status = (await service.call(service.engine.status, container_id))["status"]
    if status != "running":
        raise Conflict(f"Container {container_id} is not running")
    _forget_old(service)
    exec_id = secrets.token_hex(32)
    service.execs[exec_id] = {
        "ID": exec_id, "ContainerID": container_id, "Running": False, "ExitCode": None, "Pid": 0,
        "OpenStdin": bool(body.get("AttachStdin")), "OpenStdout": bool(body.get("AttachStdout", True)),
        "OpenStderr": bool(body.get("AttachStderr", True)), "CanRemove": False, "DetachKeys": "",
        "ProcessConfig": {"tty": bool(body.get("Tty")), "entrypoint": command[0], "arguments": list(command[1:]),
                          "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
        "env": list(body.get("Env") or []), "workdir": body.get("WorkingDir") or None,
    }
    return web.json_response({"Id": exec_id}, status=201)


FORGET_AFTER = 600  # seconds an ended exec stays inspectable (Docker keeps them a while too)


def _forget_old(service: Service) -> None:
    import time

    now = time.monotonic()
    for exec_id, instance in list(service.execs.items()):
        if instance.get("ended") is not None and now - instance["ended"] > FORGET_AFTER:
            del service.execs[exec_id]


def _instance(service: Service, exec_id: str) -> dict[str, Any]:
    found = service.execs.get(exec_id)
    if found is None:
        raise NotFoundError(f"No such exec instance: {exec_id}")
    return found


async def inspect(request: web.Request) -> web.Response:
    service: Service = request.app["service"]
    instance = _instance(service, request.match_info["id"])
    return web.json_response({k: v for k, v in instance.items() if k not in ("env", "workdir", "master", "ended")})


async def resize(request: web.Request) -> web.Response:
    """A running exec's terminal made ``w`` by ``h`` (through the master the service holds)."""
    from ketch.dockerapi.containers import _size
    from ketch.dockerapi.streams import set_terminal_size

    instance = _instance(request.app["service"], request.match_info["id"])
    width, height = _size(request)
    if not width or not height:
        return web.Response(status=201)
    master = instance.get("master")
    if master is None:
        raise Conflict(f"exec {instance['ID']} has no terminal running")
    try:
        set_terminal_size(master, width, height)
    except OSError as exc:
        raise Conflict(f"exec {instance['ID']}: its terminal cannot be resized: {exc.strerror}") from None
    return web.Response(status=201)


async def start(request: web.Request) -> web.StreamResponse:
    service: Service = request.app["service"]
    instance = _instance(service, request.match_info["id"])
    if instance["Running"] or instance["ExitCode"] is not None:
        raise Conflict(f"exec {instance['ID']} has already been started")
    body = await _json_body(request)
    tty = bool(instance["ProcessConfig"]["tty"])
    plan = {"root": str(service.store.root), "runroot": str(service.store.runroot),
            "container": instance["ContainerID"],
            "command": [instance["ProcessConfig"]["entrypoint"], *instance["ProcessConfig"]["arguments"]],
            "tty": tty, "user": instance["ProcessConfig"]["user"] or None, "workdir": instance["workdir"],
            "env": instance["env"], "privileged": instance["ProcessConfig"]["privileged"],
            "interactive": instance["OpenStdin"]}
    instance["Running"] = True
    if body.get("Detach"):
        plan["detach"] = True
        process = await _helper(plan, (asyncio.subprocess.DEVNULL,) * 3)
        instance["ExitCode"] = await process.wait()
        instance["Running"] = False
        instance["ended"] = asyncio.get_running_loop().time()
        return web.Response(status=200)
    connection = await Hijacked.accept(request, RAW_STREAM if tty else MULTIPLEXED_STREAM)
    try:
        if tty:
            instance["ExitCode"] = await _run_with_terminal(plan, connection, instance)
        else:
            instance["ExitCode"] = await _run_with_pipes(plan, connection, instance)
    finally:
        instance["Running"] = False
        instance["ended"] = asyncio.get_running_loop().time()
        await connection.close()
    return connection.response


async def _helper(plan: dict[str, Any], stdio) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ketch.dockerapi.execs", json.dumps(plan),
                                                stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])


async def _run_with_pipes(plan: dict[str, Any], connection: Hijacked, instance: dict[str, Any]) -> int:
    process = await _helper(plan, (asyncio.subprocess.PIPE if plan["interactive"] else asyncio.subprocess.DEVNULL,
                                   asyncio.subprocess.PIPE, asyncio.subprocess.PIPE))
    instance["Pid"] = process.pid

    async def pump(reader: asyncio.StreamReader, stream: int) -> None:
        while data := await reader.read(65536):
            await connection.write(frame(stream, data))

    async def feed() -> None:
        assert process.stdin is not None
        try:
            while data := await connection.read():
                process.stdin.write(data)
                await process.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            process.stdin.close()

    assert process.stdout is not None and process.stderr is not None
    feeder = asyncio.ensure_future(feed()) if plan["interactive"] else None
    try:
        await asyncio.gather(pump(process.stdout, STDOUT), pump(process.stderr, STDERR))
        return await process.wait()
    finally:
        if feeder is not None:
            feeder.cancel()


async def _run_with_terminal(plan: dict[str, Any], connection: Hijacked, instance: dict[str, Any]) -> int:
    """The runtime sends the terminal's master to a console socket; its bytes go both ways."""
    loop = asyncio.get_running_loop()
    scratch = tempfile.mkdtemp(prefix="ketch-dapi-exec-")
    console = os.path.join(scratch, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(console)
    listener.listen(1)
    listener.setblocking(False)
    plan["console_socket"] = console
    process = await _helper(plan, (asyncio.subprocess.DEVNULL, asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE))
    master = None
    try:
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        ended = asyncio.ensure_future(process.wait())
        done, _ = await asyncio.wait({accept, ended}, return_when=asyncio.FIRST_COMPLETED)
        if accept not in done:
            accept.cancel()
            assert process.stderr is not None
            message = (await process.stderr.read()).decode(errors="replace").strip()
            if message:
                await connection.write(message.encode() + b"\r\n")
            return await ended
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            _, fds, _, _ = await loop.run_in_executor(None, socket.recv_fds, conn, 4096, 1)
        master = fds[0]
        instance["master"] = master  # (for resize, while it runs)
        os.set_blocking(master, False)
        output_done = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
                output_done.set()
                return
            asyncio.ensure_future(connection.write(data))

        loop.add_reader(master, readable)

        async def feed() -> None:
            while data := await connection.read():
                await write_all(master, data)

        feeder = asyncio.ensure_future(feed())
        code = await ended
        try:
            await asyncio.wait_for(output_done.wait(), timeout=2)
        except TimeoutError:
            pass
        feeder.cancel()
        loop.remove_reader(master)
        return code
    finally:
        listener.close()
        instance.pop("master", None)
        if master is not None:
            os.close(master)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


ROUTES = [
    ("POST", "/containers/{name}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]


def _main(plan: dict[str, Any]) -> int:
    """The helper: the exec, with this program's stdio (or the console socket); its status."""
    from ketch.containers import Engine
    from ketch.errors import KetchError

    try:
        engine = Engine(root=plan["root"], runroot=plan["runroot"])
        return engine.exec(plan["container"], plan["command"], interactive=plan["interactive"], tty=plan["tty"],
                           user=plan["user"], workdir=plan["workdir"], env=plan["env"],
                           detach=bool(plan.get("detach")), privileged=plan["privileged"],
                           stdio=None if plan["tty"] else (0, 1, 2), console_socket=plan.get("console_socket"))
    except KetchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", None) or 126


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
