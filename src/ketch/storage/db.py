"""The store's metadata database (SQLite in WAL mode).

Rules, from DESIGN.md's pitfalls: ``isolation_level=None`` and every write
starts with ``BEGIN IMMEDIATE`` (a deferred transaction that later wants to
write fails at once under WAL); transactions stay short and never span
network or tar I/O; a connection is never shared across ``fork``.

This module owns the store's own tables (:data:`SCHEMA`). A layer above the store keeps its
tables in the same file but owns them: it declares a :class:`TableSet` (its schema, version and
migrations) and reaches them only through its own code (``ketch.containers.tables``,
``ketch.builder.cache``); no layer writes SQL against another's tables. SQLite's constraint
errors are mapped here, once: a UNIQUE or PRIMARY KEY conflict is
:class:`~ketch.errors.DuplicateNameError`, anything else :class:`~ketch.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from ketch.errors import DuplicateNameError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

SCHEMA_VERSION = 4  # (2 to 4 added tables that now belong to the layers above: see TableSet)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Unpacked layer content. For overlay it is the layer's own diff, shared by
-- every chain that contains it; for vfs it is a full root file system.
CREATE TABLE IF NOT EXISTS contents (
    key TEXT PRIMARY KEY,             -- directory name under contents/
    diff_id TEXT NOT NULL,            -- digest of the uncompressed tar
    size INTEGER NOT NULL,            -- bytes of the uncompressed tar
    link TEXT NOT NULL,               -- short name under l/ (overlay)
    complete INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
-- The compressed blobs a layer was pulled as, so a second pull reuses it.
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,          -- compressed (or as-pulled) digest
    diff_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL
);
-- A layer is a content in a position: its id is the OCI chain id.
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY,
    parent TEXT REFERENCES layers(id),
    diff_id TEXT NOT NULL,
    content TEXT NOT NULL REFERENCES contents(key),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,              -- config digest, hex
    top_layer TEXT REFERENCES layers(id),
    manifest BLOB NOT NULL,
    manifest_type TEXT NOT NULL,
    config BLOB NOT NULL,
    digest TEXT NOT NULL,             -- manifest digest
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,            -- normalized, e.g. docker.io/library/busybox:latest
    image TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    image TEXT REFERENCES images(id),
    kind TEXT NOT NULL,               -- 'container' or 'builder'
    created REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS mounts (
    target TEXT PRIMARY KEY,          -- 'image:ID' or 'container:ID'
    path TEXT NOT NULL,
    count INTEGER NOT NULL,
    boot_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS names_by_image ON names(image);
CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
"""


class TableSet:
    """Tables a layer above the store keeps in the store's database, and owns: ``schema`` (``CREATE
    ... IF NOT EXISTS`` statements) makes version ``version``; ``migrations[n]`` turns version
    ``n - 1`` into ``n`` for a database made by an older ketch: SQL, or a function given the
    connection (inside the migration's transaction) and the caller's ``context``. The version is
    kept in ``meta`` under ``schema.OWNER``."""

    def __init__(self, owner: str, version: int, schema: str, migrations: dict | None = None) -> None:
        self.owner, self.version, self.schema, self.migrations = owner, version, schema, migrations or {}


def _statements(code: str) -> list[str]:
    code = "\n".join(line.split("--", 1)[0] for line in code.splitlines())
    return [statement for statement in code.split(";") if statement.strip()]


class Database:
    """One connection per thread and process (opened lazily, never inherited across fork)."""

    def __init__(self, path: Path, tables: TableSet | None = None) -> None:
        """``tables``: a database of its own holding only those tables (not a store's)."""
        self.path = path
        self._local = threading.local()
        self._migrated = False
        self._own = tables
        self._tables_ready: set[str] = set()

    @property
    def conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
            except sqlite3.Error as exc:
                raise StoreError(f"opening the store database {self.path}: {exc}") from exc
            self._wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.row_factory = sqlite3.Row
            local.conn, local.pid = conn, os.getpid()
            if not self._migrated:
                self._migrate()
                self._migrated = True
        return local.conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new database to WAL. Two processes doing it at once can get SQLITE_BUSY
        without the busy handler being asked (SQLite needs an exclusive lock for it), so retry."""
        for _ in range(400):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(f"store database {self.path}: {exc}") from exc
                time.sleep(0.025)
        raise StoreError(f"store database {self.path} stayed locked")

    def _migrate(self) -> None:
        if self._own is not None:
            self.ensure(self._own)
            return
        conn = self._local.conn
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) >= SCHEMA_VERSION:
                return  # created already: no write transaction at every start
        except sqlite3.OperationalError:
            pass  # no meta table yet
        with self.write() as conn:
            for statement in _statements(SCHEMA):
                conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def ensure(self, tables: TableSet, context: object = None) -> None:
        """Make (or migrate) a layer's tables, once per process; cheap when they are current."""
        if tables.owner in self._tables_ready:
            return
        key = f"schema.{tables.owner}"
        if self._own is not None:  # (its own database: the meta table first)
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or int(row[0]) < tables.version:
            with self.write() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                current = int(row[0]) if row is not None else 0
                if current < tables.version:
                    for version in range(current + 1, tables.version + 1):
                        step = tables.migrations.get(version, "")
                        if callable(step):
                            step(conn, context)
                            continue
                        for statement in _statements(step):
                            conn.execute(statement)
                    for statement in _statements(tables.schema):
                        conn.execute(statement)
                    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(tables.version)))
        self._tables_ready.add(tables.owner)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: everything in it happens, or none of it."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"store database {self.path}: {exc}") from exc
        try:
            yield conn
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            text = str(exc)
            if text.startswith(("UNIQUE constraint failed", "PRIMARY KEY constraint failed")):
                raise DuplicateNameError(f"{text.split(': ', 1)[-1]} is already in use") from exc
            raise StoreError(f"store database {self.path}: {text}") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"store database {self.path}: {exc}") from exc

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
