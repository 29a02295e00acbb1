"""The container layer's tables in the store's database: networks, volumes, secrets and pods.

They belong to this layer, not to :mod:`ketch.storage` (which owns images, layers, containers'
rows and mounts): their schema and migrations are declared here, and only this layer's modules
(``network``, ``volumes``, ``secrets``, ``pods``) read or write them, through :func:`database`.
Allocations that belong to the whole host (addresses, published ports, bridges) are not here but
in :mod:`ketch.containers.hostnet`, shared by every store on the machine.
"""

from __future__ import annotations

from ketch.storage.db import Database, TableSet


def _adopt_host_records(conn, store) -> None:
    """Version 2: the addresses and published ports a store made before they were host-wide
    (its ``network_addresses`` and ``published_ports`` tables) go to the host-wide records, so
    the containers running across the upgrade keep theirs; the old tables go."""
    old = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                                      "('network_addresses', 'published_ports')")}
    if not old:
        return
    from ketch.containers.hostnet import HostAllocations

    host = HostAllocations(store)
    bridges = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT name, bridge, subnet FROM networks")} \
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'networks'").fetchone() else {}
    addresses = list(conn.execute("SELECT network, ip, container FROM network_addresses")) \
        if "network_addresses" in old else []
    ports = list(conn.execute("SELECT host_ip, host_port, protocol, container, container_port FROM published_ports")) \
        if "published_ports" in old else []
    host.adopt([(bridges[n][0], bridges[n][1], n, ip, c) for n, ip, c in addresses if n in bridges], ports)
    for table in old:
        conn.execute(f"DROP TABLE {table}")


TABLES = TableSet("containers", 3, """
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
-- a pod's namespaces are pinned under the run directory; data holds what its users gave (JSON)
CREATE TABLE IF NOT EXISTS pods (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
""", migrations={2: _adopt_host_records, 3: ""})


def database(store) -> Database:
    """The store's database with this layer's tables made (or migrated)."""
    store.db.ensure(TABLES, store)
    return store.db
