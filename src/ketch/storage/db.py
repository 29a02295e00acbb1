"""The store's metadata database (SQLite in WAL mode).

Rules, from DESIGN.md's pitfalls: ``isolation_level=None`` and every write
starts with ``BEGIN IMMEDIATE`` (a deferred transaction that later wants to
write fails at once under WAL); transactions stay short and never span
network or tar I/O; a connection is never shared across ``fork``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

from ketch.errors import KetchError

SCHEMA_VERSION = 4  # 2: networks, addresses, published ports, volumes; 3: build cache; 4: secrets

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
-- Container networks (ketch.containers.network) and what containers hold of them.
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    driver TEXT NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    bridge TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS network_addresses (
    network TEXT NOT NULL,
    ip TEXT NOT NULL,
    container TEXT NOT NULL,
    PRIMARY KEY (network, ip)
);
CREATE TABLE IF NOT EXISTS published_ports (
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    container TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (host_ip, host_port, protocol)
);
-- Dockerfile builds' layer cache (ketch.build.dockerfile_build): a step's key -> the image it made.
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    created REAL NOT NULL
);
-- Named volumes (ketch.containers.volumes).
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
-- Secrets (ketch.containers.secrets): their data is in secrets/filedriver/, as podman's file driver keeps it.
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    driver TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS names_by_image ON names(image);
CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
"""


class Database:
    """One connection per thread and process (opened lazily, never inherited across fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._migrated = False

    @property
    def conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
            except sqlite3.Error as exc:
                raise KetchError(f"opening the store database {self.path}: {exc}") from None
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
                    raise KetchError(f"store database {self.path}: {exc}") from None
                time.sleep(0.025)
        raise KetchError(f"store database {self.path} stayed locked")

    def _migrate(self) -> None:
        conn = self._local.conn
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) >= SCHEMA_VERSION:
                return  # created already: no write transaction at every start
        except sqlite3.OperationalError:
            pass  # no meta table yet
        with self.write() as conn:
            code = "\n".join(line.split("--", 1)[0] for line in SCHEMA.splitlines())
            for statement in code.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: everything in it happens, or none of it."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise KetchError(f"store database {self.path}: {exc}") from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise KetchError(f"store database {self.path}: {exc}") from None

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None
