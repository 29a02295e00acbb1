"""Bridge networks, as podman (netavark) has them: a store's networks (its own table), what its
containers hold of the host (addresses and published ports, recorded host-wide by
:mod:`ketch.containers.hostnet`, so two processes or stores never give one twice), ``-p``
parsing, and /etc/hosts naming every container of the network.

The rest lives beside it: the kernel side (bridges, veths, the ``ip ketch`` nftables table) in
:mod:`ketch.containers.bridge`, network namespaces (made by ketch before the runtime runs, given
to it by path, removed after the container's last process) in :mod:`ketch.containers.netns`.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import os
import socket
import time

from ketch.errors import InUseError, InvalidInputError, NetworkError, NotFoundError

DEFAULT_NETWORK = "ketch"
DEFAULT_BRIDGE = "ketch0"
DEFAULT_SUBNET = "10.123.0.0/24"
AUTO_SUBNETS = "10.123.{}.0/24"  # network create without --subnet takes the next free one
TABLE = "ketch"


def _host_address(text: str, subnet: ipaddress.IPv4Network, what: str) -> ipaddress.IPv4Address:
    """An address of ``subnet`` usable by a host (not its network or broadcast address)."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise InvalidInputError(f"invalid {what} {text!r}") from exc
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidInputError(f"{what} {text} is not a host address of {subnet}")
    return address


class PortMapping:
    """One published port: ``-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]``."""

    __slots__ = ("host_ip", "host_port", "container_port", "protocol")

    def __init__(self, host_ip: str, host_port: int, container_port: int, protocol: str) -> None:
        self.host_ip, self.host_port, self.container_port, self.protocol = host_ip, host_port, container_port, protocol

    def as_dict(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port, "container_port": self.container_port,
                "protocol": self.protocol}

    @classmethod
    def from_dict(cls, data: dict) -> PortMapping:
        return cls(data["host_ip"], data["host_port"], data["container_port"], data["protocol"])


def parse_publish(spec: str) -> list[PortMapping]:
    """podman's ``-p``: ``[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]``, ports or ranges (``8000-8009``);
    a host port of 0 or none is chosen when the container starts."""
    text, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise InvalidInputError(f"invalid -p {spec!r}: the protocol must be tcp or udp")
    host_ip = ""
    if text.startswith("["):
        raise InvalidInputError(f"invalid -p {spec!r}: IPv6 host addresses are not supported")
    parts = text.split(":")
    if len(parts) == 3:
        host_ip, host, container = parts
    elif len(parts) == 2:
        host, container = parts
    elif len(parts) == 1:
        host, container = "", parts[0]
    else:
        raise InvalidInputError(f"invalid -p {spec!r}: want [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]")
    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError as exc:
            raise InvalidInputError(f"invalid -p {spec!r}: {host_ip!r} is not an IPv4 address") from exc

    def port_range(value: str) -> list[int]:
        first, _, last = value.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError as exc:
            raise InvalidInputError(f"invalid -p {spec!r}: {value!r} is not a port or a range") from exc
        if not (0 <= low <= high <= 65535):
            raise InvalidInputError(f"invalid -p {spec!r}: ports are 1-65535")
        return list(range(low, high + 1))

    containers = port_range(container)
    if 0 in containers:
        raise InvalidInputError(f"invalid -p {spec!r}: the container port must not be 0")
    hosts = port_range(host) if host else [0] * len(containers)
    if len(hosts) == 1 and len(containers) > 1 and hosts[0] == 0:
        hosts = [0] * len(containers)
    if len(hosts) != len(containers):
        raise InvalidInputError(f"invalid -p {spec!r}: the host and container ranges differ in size")
    return [PortMapping(host_ip or "0.0.0.0", h, c, protocol) for h, c in zip(hosts, containers)]


class Networks:
    """A store's networks (its own table) and what its containers hold of the host: addresses
    and published ports, in the host-wide records (:mod:`ketch.containers.hostnet`)."""

    def __init__(self, store) -> None:
        from ketch.containers.hostnet import HostAllocations
        from ketch.containers.tables import database

        self.store = store
        self.db = database(store)
        self.host = HostAllocations(store)

    # -- records -----------------------------------------------------------------------

    def get(self, name: str) -> dict:
        row = self.db.one("SELECT * FROM networks WHERE name = ? OR id = ?", (name, name))
        if row is None:
            if name == DEFAULT_NETWORK:
                return self.ensure_default()
            raise NotFoundError(f"unable to find network with name or ID {name}: network not found")
        return dict(row)

    def ensure_default(self) -> dict:
        row = self.db.one("SELECT * FROM networks WHERE name = ?", (DEFAULT_NETWORK,))
        if row is not None:
            return dict(row)
        try:
            return self.create(DEFAULT_NETWORK, subnet=DEFAULT_SUBNET, bridge=DEFAULT_BRIDGE)
        except InUseError:
            return self.get(DEFAULT_NETWORK)

    def list(self) -> builtins.list[dict]:
        self.ensure_default()
        return [dict(r) for r in self.db.query("SELECT * FROM networks ORDER BY created")]

    def create(self, name: str, *, subnet: str | None = None, gateway: str | None = None, internal: bool = False,
               labels: dict | None = None, bridge: str | None = None, driver: str = "bridge") -> dict:
        from ketch.containers.names import check_name

        check_name(name)
        if driver != "bridge":
            raise InvalidInputError(f"network driver {driver!r} is not supported: ketch makes bridge networks")
        network = None
        if subnet:
            try:
                network = ipaddress.IPv4Network(subnet, strict=True)
            except ValueError as exc:
                raise InvalidInputError(f"invalid subnet {subnet!r}: {exc}") from exc
            if network.prefixlen > 30:
                raise InvalidInputError(f"subnet {subnet} is too small: /30 at most")
        network_id = os.urandom(32).hex()
        elsewhere = self.host.taken_subnets()
        with self.db.write() as conn:
            taken = [ipaddress.IPv4Network(r["subnet"]) for r in conn.execute("SELECT subnet FROM networks")]
            taken += [other for other_bridge, other in elsewhere if other_bridge != bridge]
            if conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise InUseError(f"network {name} already exists")
            host_routes = _host_routes()
            if network is None:
                for n in range(1, 255):
                    candidate = ipaddress.IPv4Network(AUTO_SUBNETS.format(n))
                    if not any(candidate.overlaps(t) for t in taken + host_routes):
                        network = candidate
                        break
                else:
                    raise NetworkError("no free subnet left in 10.123.0.0/16: give --subnet")
            else:
                for other in taken + host_routes:
                    if network.overlaps(other):
                        raise InvalidInputError(f"subnet {network} overlaps {other}, which is in use")
            gateway_ip = _host_address(gateway, network, "gateway") if gateway else next(network.hosts())
            if bridge is None:
                used = {r["bridge"] for r in conn.execute("SELECT bridge FROM networks")}
                used |= {other_bridge for other_bridge, _ in elsewhere}
                bridge = next(f"ketch{n}" for n in range(1, 10000) if f"ketch{n}" not in used)
            # the host-wide claim inside this store's transaction: a failed claim records nothing here
            self.host.claim_bridge(name, bridge, str(network))
            conn.execute("INSERT INTO networks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (name, network_id, driver, str(network), str(gateway_ip), bridge, int(internal), time.time(),
                          json.dumps(labels or {})))
        return self.get(name)

    def users(self, name: str) -> builtins.list[str]:
        return list(self.attached(name))

    def remove(self, name: str, *, force: bool = False, engine=None) -> None:
        network = self.get(name)
        users = self.users(network["name"])
        if users:
            if not force or engine is None:
                raise InUseError(f"network {network['name']} is in use by {len(users)} container(s); remove them "
                                 "first, or use --force")
            for container in users:
                engine.remove(container, force=True)
        if self.host.release_bridge(network["name"]):
            self._teardown_bridge(network)  # (no store's network uses the bridge any more)
        with self.db.write() as conn:
            conn.execute("DELETE FROM networks WHERE name = ?", (network["name"],))

    def prune(self, engine=None) -> builtins.list[str]:
        removed = []
        for network in self.list():
            if network["name"] != DEFAULT_NETWORK and not self.users(network["name"]):
                self.remove(network["name"])
                removed.append(network["name"])
        return removed

    def inspect(self, name: str) -> dict:
        """netavark's shape, as ``podman network inspect`` prints it."""
        network = self.get(name)
        return {
            "name": network["name"], "id": network["id"], "driver": network["driver"],
            "network_interface": network["bridge"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(network["created"])) + "Z",
            "subnets": [{"subnet": network["subnet"], "gateway": network["gateway"]}],
            "ipv6_enabled": False, "internal": bool(network["internal"]), "dns_enabled": False,
            **({"labels": json.loads(network["labels"])} if json.loads(network["labels"]) else {}),
            "ipam_options": {"driver": "host-local"},
        }

    def attached(self, name: str) -> dict[str, str]:
        """The containers of this store that have an address on network ``name``: id → address."""
        return self.host.attached(name)

    # -- a container's addresses and ports (host-wide records) ----------------------

    def allocate(self, container_id: str, name: str, requested_ip: str | None = None) -> str:
        """An address of network ``name`` for the container, unique on the host even against
        other stores and processes allocating at the same moment."""
        network = self.get(name)
        if requested_ip:
            requested_ip = str(_host_address(requested_ip, ipaddress.IPv4Network(network["subnet"]), "--ip"))
        return self.host.allocate_address(network, container_id, requested_ip)

    def reserve_ports(self, container_id: str, ports: builtins.list[PortMapping]) -> builtins.list[PortMapping]:
        """Host ports for the container: free ones chosen where 0 was asked, each checked against
        every container on the host (any store) and against listening sockets (by binding it)."""
        return [PortMapping(host_ip, host_port, container_port, protocol) for host_ip, host_port, protocol,
                container_port in self.host.reserve_ports(container_id, ports, _free_port, check_bindable)]

    def ports_of(self, container_id: str) -> builtins.list[PortMapping]:
        return [PortMapping(host_ip, host_port, container_port, protocol)
                for host_ip, host_port, protocol, container_port in self.host.ports_of(container_id)]

    def addresses_of(self, container_id: str) -> dict[str, str]:
        return self.host.addresses_of(container_id)

    def release(self, container_id: str) -> None:
        self.host.release(container_id)

    def release_address(self, container_id: str, name: str) -> None:
        """The container's address on one network (the others and its ports stay)."""
        self.host.release_address(container_id, name)

    # -- the kernel side (ketch.containers.bridge) --------------------------------------

    def bridges(self):
        from ketch.containers.bridge import Bridges

        return Bridges(self.store)

    def _teardown_bridge(self, network: dict, *, only_if_unused: bool = False) -> bool:
        return self.bridges().teardown_bridge(network, only_if_unused=only_if_unused)

    def remove_bridge_if_unused(self, network: dict) -> bool:
        """The host side of a network (its bridge, its nftables elements), when no container of
        any store uses it: what ``system reset`` leaves the host as it found it with."""
        return self._teardown_bridge(network, only_if_unused=True)

    def setup_in_background(self, container_id: str, netns_path: str, attachments: builtins.list[tuple[str, str]],
                            ports: builtins.list[PortMapping], helper=None, *, first: int = 0):
        """The kernel side of the container's attachments, in a child that loads the netlink
        library meanwhile (see :meth:`ketch.containers.bridge.Bridges.setup_in_background`);
        their interfaces are numbered from ``first`` (more than 0: joining a running container)."""
        records = [(self.get(name), address) for name, address in attachments]
        return self.bridges().setup_in_background(container_id, netns_path, records, ports, helper, first=first)

    def setup(self, container_id: str, netns_path: str, attachments: builtins.list[tuple[str, str]],
              ports: builtins.list[PortMapping]) -> None:
        self.setup_in_background(container_id, netns_path, attachments, ports).wait()

    def teardown(self, container_id: str, attachments: int, ports: builtins.list[PortMapping]) -> None:
        self.bridges().teardown(container_id, attachments, ports)



def _host_routes() -> list[ipaddress.IPv4Network]:
    """The host's own IPv4 routes (not ours): a new subnet must not overlap them."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[0].startswith("ketch") or fields[1] == "00000000":
                    continue
                dest = socket.inet_ntoa(int(fields[1], 16).to_bytes(4, "little"))
                mask = socket.inet_ntoa(int(fields[7], 16).to_bytes(4, "little"))
                out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except (OSError, StopIteration, ValueError):
        pass
    return out


def check_bindable(host_ip: str, port: int, protocol: str) -> None:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip, port))
        except OSError as exc:
            raise InUseError(f"host port {host_ip}:{port}/{protocol} is already in use: {exc.strerror}") from exc


def _free_port(host_ip: str, protocol: str, taken: set) -> int:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((host_ip, 0))
            port = probe.getsockname()[1]
        if not any(t[1] == port and t[2] == protocol for t in taken):
            return port
    raise NetworkError("no free host port found")


def attached_containers(store, network_names: list[str], exclude: str | None = None) -> list[str]:
    """Ids of this store's containers holding an address on any of these networks."""
    from ketch.containers.hostnet import HostAllocations

    host = HostAllocations(store)
    found = dict.fromkeys(c for network in network_names for c in host.attached(network) if c != exclude)
    return list(found)


def hosts_entries(store, network_names: list[str], exclude: str | None = None) -> list[tuple[str, str]]:
    """(address, name) of every container of this store on these networks, for /etc/hosts: its
    name, then its aliases on that network (``--network-alias``, compose's service names)."""
    from ketch.containers.hostnet import HostAllocations

    host = HostAllocations(store)
    rows = {row["id"]: row for row in store.containers()}
    out = []
    for network in network_names:
        for container_id, ip in host.attached(network).items():
            if container_id == exclude or container_id not in rows:
                continue
            out.append((ip, rows[container_id]["name"]))
            aliases = (json.loads(rows[container_id]["metadata"]).get("options") or {}).get("network_aliases") or {}
            for alias in dict.fromkeys([*aliases.get(network, []), *aliases.get("", [])]):
                out.append((ip, alias))
    return out
