"""Helpers of the Dockerfile build tests: a context's files, a build, the image's config."""

from __future__ import annotations

import json


def write(directory, files: dict) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def build(env, context, *args, check=True):
    result = env.cli("build", *args, str(context), timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def store(env):
    from ketch.storage.store import Store

    return Store(str(env.root), str(env.runroot))


def config_of(env, image):
    return json.loads(store(env).lookup(image).config)
