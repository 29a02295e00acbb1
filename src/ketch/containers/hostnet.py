"""What containers' networks take from the host, recorded once for the whole host.

Bridges, their subnets, container addresses on them and published host ports belong to the host,
not to one store: two stores on one machine (a second ``--root``, the CRI server's) must never
hand out the same address or host port twice, nor put two networks on one subnet. So these
records live in one SQLite database under the run directory every store shares
(``/run/ketch/host/network.db``; ``$KETCH_HOST_RUNDIR`` moves it), as netavark keeps its IPAM
database under ``/run/containers/networks``. It is on tmpfs on purpose: what it records (bridges,
addresses, nftables entries) is gone after a reboot too. Every allocation is one ``BEGIN
IMMEDIATE`` transaction, so allocators in any process of any store are serialised.

Each record names its store (the store root's real path) and container; records of a store
that no longer exists (its database is gone) are dropped by the next allocation.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ketch.errors import InUseError, InvalidInputError, NetworkError
from ketch.storage.db import Database, TableSet

DEFAULT_DIR = "/run/ketch/host"

TABLES = TableSet("hostnet", 1, """
-- a bridge and the subnet it routes; several stores' networks may share one (the same bridge
-- with the same subnet, e.g. every store's default network)
CREATE TABLE IF NOT EXISTS bridges (
    bridge TEXT NOT NULL,
    subnet TEXT NOT NULL,
    store TEXT NOT NULL,
    network TEXT NOT NULL,
    PRIMARY KEY (store, network)
);
CREATE TABLE IF NOT EXISTS addresses (
    bridge TEXT NOT NULL,
    ip TEXT NOT NULL,
    store TEXT NOT NULL,
    network TEXT NOT NULL,
    container TEXT NOT NULL,
    PRIMARY KEY (bridge, ip)
);
CREATE TABLE IF NOT EXISTS ports (
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    store TEXT NOT NULL,
    container TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (host_ip, host_port, protocol)
);
CREATE INDEX IF NOT EXISTS addresses_by_container ON addresses(store, container);
CREATE INDEX IF NOT EXISTS ports_by_container ON ports(store, container);
""")

_databases: dict[str, Database] = {}


def host_dir() -> str:
    if os.environ.get("KETCH_HOST_RUNDIR"):
        return os.environ["KETCH_HOST_RUNDIR"]
    from ketch.userns import is_rootless, runtime_dir

    # (a user's networks are the user's: their records live in the user's run directory)
    return str(runtime_dir() / "ketch" / "host") if is_rootless() else DEFAULT_DIR


def _database() -> Database:
    directory = host_dir()
    db = _databases.get(directory)
    if db is None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        db = _databases[directory] = Database(Path(directory) / "network.db", TABLES)
    return db


class HostAllocations:
    """One store's view of the host-wide records: it allocates for its containers and sees
    everyone's allocations when choosing."""

    def __init__(self, store) -> None:
        self.store_id = os.path.realpath(str(store.root))
        self.db = _database()

    # -- bridges and subnets -------------------------------------------------------------

    def taken_subnets(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        """(bridge, subnet) of every network of every store but this store's."""
        return [(r["bridge"], ipaddress.IPv4Network(r["subnet"])) for r in self.db.query(
            "SELECT DISTINCT bridge, subnet FROM bridges WHERE store != ?", (self.store_id,))]

    def claim_bridge(self, network: str, bridge: str, subnet: str) -> None:
        """Record that this store's ``network`` is ``bridge`` on ``subnet``. Another store may
        have the same bridge only with the same subnet; no other bridge may overlap it."""
        wanted = ipaddress.IPv4Network(subnet)
        with self.db.write() as conn:
            self._drop_gone_stores(conn)
            for row in conn.execute("SELECT bridge, subnet FROM bridges WHERE store != ? OR network != ?",
                                    (self.store_id, network)):
                other = ipaddress.IPv4Network(row["subnet"])
                if row["bridge"] == bridge and other == wanted:
                    continue
                if row["bridge"] == bridge:
                    raise InUseError(f"bridge {bridge} is already used by another network on {other}")
                if other.overlaps(wanted):
                    raise InvalidInputError(f"subnet {wanted} overlaps {other}, which is in use")
            conn.execute("INSERT OR REPLACE INTO bridges VALUES (?, ?, ?, ?)", (bridge, subnet, self.store_id, network))

    def release_bridge(self, network: str) -> bool:
        """Drop this store's claim; True if no store uses that bridge any more."""
        with self.db.write() as conn:
            row = conn.execute("SELECT bridge FROM bridges WHERE store = ? AND network = ?",
                               (self.store_id, network)).fetchone()
            conn.execute("DELETE FROM bridges WHERE store = ? AND network = ?", (self.store_id, network))
            if row is None:
                return True
            return conn.execute("SELECT 1 FROM bridges WHERE bridge = ?", (row["bridge"],)).fetchone() is None

    def bridge_users(self, bridge: str) -> int:
        """Addresses any store holds on the bridge."""
        return len(self.db.query("SELECT 1 FROM addresses WHERE bridge = ?", (bridge,)))

    # -- addresses -----------------------------------------------------------------------

    def allocate_address(self, network: dict, container_id: str, requested_ip: str | None) -> str:
        """An address on the network's bridge for the container, unique on the host even against
        other stores and processes allocating at the same moment."""
        subnet = ipaddress.IPv4Network(network["subnet"])
        bridge, name = network["bridge"], network["name"]
        with self.db.write() as conn:
            self._drop_gone_stores(conn)
            conn.execute("INSERT OR IGNORE INTO bridges VALUES (?, ?, ?, ?)",
                         (bridge, network["subnet"], self.store_id, name))  # (a network made before these records)
            row = conn.execute("SELECT ip FROM addresses WHERE store = ? AND container = ? AND network = ?",
                               (self.store_id, container_id, name)).fetchone()
            if row is not None:
                return row["ip"]
            used = {r["ip"] for r in conn.execute("SELECT ip FROM addresses WHERE bridge = ?", (bridge,))}
            used.add(network["gateway"])
            if requested_ip:
                if requested_ip in used:
                    raise InUseError(f"address {requested_ip} is already in use on network {name}")
                chosen = requested_ip
            else:
                free = next((str(h) for h in subnet.hosts() if str(h) not in used), None)
                if free is None:
                    raise NetworkError(f"network {name} has no free address left")
                chosen = free
            conn.execute("INSERT INTO addresses VALUES (?, ?, ?, ?, ?)",
                         (bridge, chosen, self.store_id, name, container_id))
        return chosen

    def addresses_of(self, container_id: str) -> dict[str, str]:
        """network name -> address, of one container of this store."""
        return {r["network"]: r["ip"] for r in self.db.query(
            "SELECT network, ip FROM addresses WHERE store = ? AND container = ? ORDER BY rowid",
            (self.store_id, container_id))}

    def attached(self, network: str) -> dict[str, str]:
        """container id -> address, of this store's containers on ``network``."""
        return {r["container"]: r["ip"] for r in self.db.query(
            "SELECT container, ip FROM addresses WHERE store = ? AND network = ? ORDER BY rowid",
            (self.store_id, network))}

    def holds_addresses(self) -> bool:
        """Whether any container or pod of this store has an address on a network."""
        return self.db.one("SELECT 1 FROM addresses WHERE store = ? LIMIT 1", (self.store_id,)) is not None

    # -- published ports -----------------------------------------------------------------

    def reserve_ports(self, container_id: str, ports: list, free_port, check_bindable) -> list[tuple]:
        """(host_ip, host_port, protocol, container_port) for each wanted mapping: free ports
        chosen where 0 was asked, each checked against every store's containers and against
        listening sockets (``check_bindable``)."""
        out = []
        with self.db.write() as conn:
            self._drop_gone_stores(conn)
            conn.execute("DELETE FROM ports WHERE store = ? AND container = ?", (self.store_id, container_id))
            taken = {(r["host_ip"], r["host_port"], r["protocol"]) for r in conn.execute(
                "SELECT host_ip, host_port, protocol FROM ports")}
            for port in ports:
                host_port = port.host_port or free_port(port.host_ip, port.protocol, taken)
                clash = [t for t in taken if t[1] == host_port and t[2] == port.protocol
                         and (t[0] == port.host_ip or "0.0.0.0" in (t[0], port.host_ip))]
                if clash:
                    raise InUseError(f"host port {host_port}/{port.protocol} is already published by another "
                                     "container")
                check_bindable(port.host_ip, host_port, port.protocol)
                taken.add((port.host_ip, host_port, port.protocol))
                conn.execute("INSERT INTO ports VALUES (?, ?, ?, ?, ?, ?)",
                             (port.host_ip, host_port, port.protocol, self.store_id, container_id,
                              port.container_port))
                out.append((port.host_ip, host_port, port.protocol, port.container_port))
        return out

    def ports_of(self, container_id: str) -> list[tuple]:
        return [(r["host_ip"], r["host_port"], r["protocol"], r["container_port"]) for r in self.db.query(
            "SELECT * FROM ports WHERE store = ? AND container = ? ORDER BY host_port", (self.store_id, container_id))]

    # -- release -------------------------------------------------------------------------

    def release(self, container_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM addresses WHERE store = ? AND container = ?", (self.store_id, container_id))
            conn.execute("DELETE FROM ports WHERE store = ? AND container = ?", (self.store_id, container_id))

    def release_address(self, container_id: str, network: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM addresses WHERE store = ? AND container = ? AND network = ?",
                         (self.store_id, container_id, network))

    def adopt(self, addresses: list[tuple], ports: list[tuple]) -> None:
        """Records this store made before they were host-wide: (bridge, subnet, network, ip,
        container) and (host_ip, host_port, protocol, container, container_port). One already
        taken by another store stays that store's."""
        with self.db.write() as conn:
            for bridge, subnet, network, ip, container in addresses:
                conn.execute("INSERT OR IGNORE INTO bridges VALUES (?, ?, ?, ?)", (bridge, subnet, self.store_id, network))
                conn.execute("INSERT OR IGNORE INTO addresses VALUES (?, ?, ?, ?, ?)",
                             (bridge, ip, self.store_id, network, container))
            for host_ip, host_port, protocol, container, container_port in ports:
                conn.execute("INSERT OR IGNORE INTO ports VALUES (?, ?, ?, ?, ?, ?)",
                             (host_ip, host_port, protocol, self.store_id, container, container_port))

    def release_store(self) -> None:
        """Everything this store holds (``system reset``)."""
        with self.db.write() as conn:
            for table in ("addresses", "ports", "bridges"):
                conn.execute(f"DELETE FROM {table} WHERE store = ?", (self.store_id,))

    @staticmethod
    def _drop_gone_stores(conn) -> None:
        stores = {r[0] for r in conn.execute(
            "SELECT store FROM addresses UNION SELECT store FROM ports UNION SELECT store FROM bridges")}
        for store in stores:
            if not os.path.exists(os.path.join(store, "ketch.db")):
                for table in ("addresses", "ports", "bridges"):
                    conn.execute(f"DELETE FROM {table} WHERE store = ?", (store,))
