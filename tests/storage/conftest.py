"""A private store per test (overlay by default), torn down with all its mounts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ketch.image.policy import Policy
from ketch.storage.store import Store
from tests.support import images

ANY = Policy.insecure_accept_anything()


class StoreEnv:
    def __init__(self, base: Path, driver: str) -> None:
        self.root = base / "root"
        self.runroot = base / "run"
        self.driver = driver

    def store(self) -> Store:
        return Store(self.root, self.runroot, self.driver)

    def ctx(self, **kwargs):
        from ketch import SystemContext

        return SystemContext(storage_root=str(self.root), storage_runroot=str(self.runroot),
                             storage_driver=self.driver, **kwargs)

    def add(self, fixture: str, name: str) -> str:
        """Copy a fixture layout into the store under ``name``; returns the image id."""
        from ketch import CopyOptions, copy_image

        ctx = self.ctx()
        copy_image(f"oci:{images.ensure(fixture)}:latest", f"ketch-storage:{name}",
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=ANY))
        return self.store().lookup(name).id


def _teardown(env: StoreEnv) -> None:
    try:
        env.store().reset()
    finally:
        shutil.rmtree(env.root.parent, ignore_errors=True)


def _env(base, driver, monkeypatch):
    env = StoreEnv(base, driver)
    monkeypatch.setenv("KETCH_ROOT", str(env.root))
    monkeypatch.setenv("KETCH_RUNROOT", str(env.runroot))
    try:
        yield env
    finally:
        _teardown(env)


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    yield from _env(tmp_path / "store", "overlay", monkeypatch)


@pytest.fixture(params=["overlay", "vfs"])
def any_driver_env(request, tmp_path, monkeypatch):
    yield from _env(tmp_path / f"store-{request.param}", request.param, monkeypatch)
