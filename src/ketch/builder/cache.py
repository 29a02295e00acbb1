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
