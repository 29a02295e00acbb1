"""``POST /build``: a build of the tar context in the body, or of a ``remote`` one (a git
repository or a tarball URL: ``docker build URL``), with ``dockerfile``, ``t``, ``buildargs``,
``target``, ``nocache``, ``labels``, ``pull``, ``q``, ``rm``, ``forcerm`` and ``platform``, on
ketch's builder, its output streamed as Docker's JSON messages.

The build runs in a helper program (``python -m ketch.dockerapi.builds``): its RUN steps fork,
which a threaded service must not do itself."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from typing import Any

from aiohttp import web

from ketch.dockerapi.containers import _flag
from ketch.dockerapi.server import Service
from ketch.dockerapi.system import json_query


def _json_query(request: web.Request, name: str) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in json_query(request.query.get(name), name).items()}


async def build(request: web.Request) -> web.StreamResponse:
    service: Service = request.app["service"]
    remote = request.query.get("remote") or None
    plan: dict[str, Any] = {
        "remote": remote,
        "root": str(service.store.root), "runroot": str(service.store.runroot),
        "file": request.query.get("dockerfile") or None, "tags": request.query.getall("t", []),
        "build_args": _json_query(request, "buildargs"), "labels": _json_query(request, "labels"),
        "target": request.query.get("target") or None, "no_cache": _flag(request, "nocache"),
        "pull": "always" if _flag(request, "pull") else "missing", "quiet": _flag(request, "q"),
        "remove": _flag(request, "rm", True) or _flag(request, "forcerm"), "force_remove": _flag(request, "forcerm"),
        "platform": request.query.get("platform") or None,
    }
    scratch = tempfile.mkdtemp(prefix="ketch-dapi-build-")
    try:
        archive = os.path.join(scratch, "context.tar")
        if not remote:
            with open(archive, "wb") as out:
                while chunk := await request.content.read(1 << 20):
                    await service.call(out.write, chunk)
        plan["context_archive"] = archive
        plan["context"] = os.path.join(scratch, "context")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ketch.dockerapi.builds", json.dumps(plan), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                message = json.loads(line)
                await response.write(json.dumps(message).encode() + b"\r\n")
        finally:
            if process.returncode is None and (request.transport is None or request.transport.is_closing()):
                process.kill()  # (the client left: the build stops, its half-made layers go with the helper)
            await process.wait()
        await response.write_eof()
        return response
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


ROUTES = [("POST", "/build", build)]


def _main(plan: dict[str, Any]) -> int:
    """The helper: the build, each line of its log and its result as a JSON message on stdout."""
    from ketch.builder.interpreter import BuildOptions
    from ketch.builder.interpreter import build as run_build
    from ketch.errors import KetchError
    from ketch.storage.apply import apply_layer
    from ketch.storage.store import Store

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        if not plan.get("remote"):
            os.makedirs(plan["context"])
            with open(plan["context_archive"], "rb") as archive:  # (the layer code refuses every escape)
                apply_layer(_decompressed(archive), plan["context"], whiteouts="vfs")
        store = Store(plan["root"], plan["runroot"])
        options = BuildOptions(file=plan["file"], tags=plan["tags"], build_args=plan["build_args"],
                               labels=plan["labels"], target=plan["target"], no_cache=plan["no_cache"],
                               pull=plan["pull"], quiet=plan["quiet"], remove=plan["remove"],
                               force_remove=plan["force_remove"], platform=plan["platform"], format="docker")
        if options.file and not os.path.isabs(options.file) and not plan.get("remote"):
            options.file = os.path.join(plan["context"], options.file)
        log = (lambda text: None) if plan["quiet"] else (lambda text: say({"stream": text + "\n"}))
        image_id = run_build(store, plan.get("remote") or plan["context"], options, log=log,
                             warn=lambda text: say({"stream": f"WARN: {text}\n"}))
        say({"aux": {"ID": f"sha256:{image_id}"}})
        if plan["quiet"]:
            say({"stream": f"sha256:{image_id}\n"})  # (what docker build -q prints)
        else:
            say({"stream": f"Successfully built {image_id[:12]}\n"})
            for tag in plan["tags"]:
                say({"stream": f"Successfully tagged {tag}\n"})
        return 0
    except KetchError as exc:
        say({"errorDetail": {"message": str(exc)}, "error": str(exc)})
        return 1


def _decompressed(archive):
    """The context tar, which the client may send compressed (gzip, bzip2 or xz, as Docker takes
    it: the docker CLI sends a tarball URL's body as it downloaded it)."""
    import bz2
    import gzip
    import lzma

    head = archive.read(6)
    archive.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=archive)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(archive)
    if head.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(archive)
    return archive


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
