"""The container layer's tables in the store's database: networks, volumes and secrets.

They belong to this layer, not to :mod:`ketch.storage` (which owns images, layers, containers'
rows and mounts): their schema and migrations are declared here, and only this layer's modules
(``network``, ``volumes``, ``secrets``) read or write them, through :func:`database`.
Allocations that belong to the whole host (addresses, published ports, bridges) are not here but
in :mod:`ketch.containers.hostnet`, shared by every store on the machine.
"""

from __future__ import annotations

from ketch.storage.db import Database, TableSet

TABLES = TableSet("containers", 1, """
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
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
-- secrets' data is in secrets/filedriver/, as podman's file driver keeps it
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    driver TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
""")


def database(store) -> Database:
    """The store's database with this layer's tables made (or migrated)."""
    store.db.ensure(TABLES)
    return store.db
