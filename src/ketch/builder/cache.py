"""The layer cache of Dockerfile builds: a step's key -> the image it made.

The builder's own table in the store's database (declared and migrated here, read and written
only here)."""

from __future__ import annotations

import time

from ketch.errors import NotFoundError
from ketch.storage.db import TableSet

TABLES = TableSet("builder", 1, """
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    created REAL NOT NULL
);
""")


class BuildCache:
    def __init__(self, store) -> None:
        self.store = store
        store.db.ensure(TABLES)

    def lookup(self, key: str) -> str | None:
        """The id of the image a step with this key made, if that image still exists."""
        row = self.store.db.one("SELECT image FROM build_cache WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            return self.store.lookup(row["image"]).id
        except NotFoundError:
            return None

    def remember(self, key: str, image_id: str) -> None:
        with self.store.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO build_cache VALUES (?, ?, ?)", (key, image_id, time.time()))


class RegistryCache:
    """The layer cache in a registry repository (``--cache-to``/``--cache-from``): a step's image
    is pushed there tagged with its cache key, and a build on another machine pulls it by that
    tag, as buildah's registry cache does. Image ids are config digests, so a pulled step image
    has the id the first machine gave it, and the steps after it find their keys too."""

    def __init__(self, store, context=None) -> None:
        self.store = store
        self.context = context

    def _ctx(self):
        from ketch.image.context import SystemContext

        ctx = (self.context() if callable(self.context) else self.context) or SystemContext()
        ctx.store = self.store  # type: ignore[union-attr]  # (the store ketch-storage: reads)
        return ctx

    def fetch(self, repository: str, key: str) -> str:
        """The image tagged ``key`` in ``repository``, pulled (NotFoundError when there is none)."""
        from ketch.image.copy import CopyOptions, copy_image
        from ketch.image.docker.transport import DockerReference
        from ketch.image.policy import Policy
        from ketch.image.storage_transport import StorageReference

        ctx = self._ctx()
        copy_image(DockerReference.parse(f"//{repository}:{key}"), StorageReference(f"{repository}:{key}"),
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything()))
        image_id = self.store.lookup(f"{repository}:{key}").id
        self.store.untag(image_id, self.store.normalize_name(f"{repository}:{key}"))  # (a step's, not a name)
        return image_id

    def store_image(self, repository: str, key: str, image_id: str) -> None:
        from ketch.image.copy import CopyOptions, copy_image
        from ketch.image.docker.transport import DockerReference
        from ketch.image.policy import Policy
        from ketch.image.storage_transport import StorageReference

        ctx = self._ctx()
        copy_image(StorageReference(image_id), DockerReference.parse(f"//{repository}:{key}"),
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything()))
