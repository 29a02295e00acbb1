"""Bridge networks, as podman (netavark) has them: a Linux bridge per network with the gateway's
address, a veth pair per container and network, addresses handed out from the store's database
(so two processes never give one address twice), masquerading and published ports in one
nftables table (``ip ketch``), and /etc/hosts naming every container of the network.

The netlink work goes through pyroute2, imported only here, only when a bridge is set up: it
costs ~100 ms to import, which ``--network none`` and ``host`` must not pay. nftables is driven
through the ``nft`` command with scripts (its Python binding is not on PyPI).

A container's network namespace is made by ketch before the runtime runs (a bind-mounted nsfs
file under the run directory, as ``ip netns add`` makes them) and given to the runtime by path,
so it is configured fully before the container's first process starts, and removed after its
last one is gone.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import os
import socket
import time

from ketch.containers.netns import in_namespace, make_namespace, remove_namespace  # noqa: F401 - (their old home)
from ketch.errors import InUseError, InvalidInputError, NetworkError, NotFoundError, log_cleanup_failure

DEFAULT_NETWORK = "ketch"
DEFAULT_BRIDGE = "ketch0"
DEFAULT_SUBNET = "10.123.0.0/24"
AUTO_SUBNETS = "10.123.{}.0/24"  # network create without --subnet takes the next free one
TABLE = "ketch"


TABLE_SCRIPT = f"""
table ip {TABLE} {{
  set masquerade_subnets {{ type ipv4_addr; flags interval; }}
  set bridges {{ type ifname; }}
  map ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  map ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain publish {{
    dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
    fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
  }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump publish; }}
  chain output {{ type nat hook output priority -100; policy accept; fib daddr type local jump publish; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @masquerade_subnets ip daddr != @masquerade_subnets masquerade
    oifname @bridges ip saddr 127.0.0.0/8 masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname @bridges accept
    oifname @bridges ct state established,related accept
  }}
}}
"""


def _iproute():
    """pyroute2's IPRoute class. pyroute2's package ``__init__`` imports every part of the library,
    ~40 ms more than IPRoute needs, on each container start with a bridge. So when pyroute2 is not
    loaded yet, the package is entered without running its ``__init__``; the first name looked up
    on the package that is not there yet runs it then (``from pyroute2 import NDB`` in the same
    process still works). Any trouble: the plain import."""
    import sys

    if "pyroute2" not in sys.modules:
        import importlib
        import importlib.util

        try:
            spec = importlib.util.find_spec("pyroute2")
            if spec is None or spec.loader is None:
                raise ImportError("pyroute2")
            loader = spec.loader
            package = importlib.util.module_from_spec(spec)

            def load_the_rest(name: str):
                if name.startswith("__"):
                    raise AttributeError(name)
                try:  # ``from pyroute2 import config`` inside pyroute2: a submodule, not the rest
                    submodule = importlib.util.find_spec(f"pyroute2.{name}")
                except (ImportError, ValueError):
                    submodule = None
                if submodule is not None:
                    return importlib.import_module(f"pyroute2.{name}")
                del package.__getattr__
                loader.exec_module(package)
                return getattr(package, name)

            package.__getattr__ = load_the_rest  # type: ignore[method-assign]
            sys.modules["pyroute2"] = package
            from pyroute2.iproute.linux import IPRoute

            return IPRoute
        except Exception:  # noqa: BLE001 - another layout of pyroute2: import it the usual way
            for name in [n for n in sys.modules if n == "pyroute2" or n.startswith("pyroute2.")]:
                del sys.modules[name]
    from pyroute2 import IPRoute

    return IPRoute


def _nft(script: str) -> None:
    import subprocess

    result = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise NetworkError(f"nftables: {message[0] if message else 'nft failed'}")


def _remove_table_if_empty() -> None:
    """Delete ketch's nftables table when no bridge of any store is in it any more."""
    import subprocess

    listing = subprocess.run(["nft", "-j", "list", "set", "ip", TABLE, "bridges"], capture_output=True, text=True)
    if listing.returncode == 0 and '"elem"' not in listing.stdout:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


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
                container_port in self.host.reserve_ports(container_id, ports, _free_port, _check_bindable)]

    def ports_of(self, container_id: str) -> builtins.list[PortMapping]:
        return [PortMapping(host_ip, host_port, container_port, protocol)
                for host_ip, host_port, protocol, container_port in self.host.ports_of(container_id)]

    def addresses_of(self, container_id: str) -> dict[str, str]:
        return self.host.addresses_of(container_id)

    def release(self, container_id: str) -> None:
        self.host.release(container_id)

    # -- the kernel side --------------------------------------------------------------

    def _ensure_bridge(self, ipr, network: dict) -> int:
        """The network's bridge with its gateway address, forwarding on, and its nftables part
        (set up with the bridge: a bridge that exists had all of it done)."""
        found = ipr.link_lookup(ifname=network["bridge"])
        if found and os.path.exists(f"/proc/sys/net/ipv4/conf/{network['bridge']}/route_localnet"):
            with open(f"/proc/sys/net/ipv4/conf/{network['bridge']}/route_localnet") as f:
                if f.read().strip() == "1":
                    return found[0]
        with self.store.lock("network-setup"):
            found = ipr.link_lookup(ifname=network["bridge"])
            if found:
                index = found[0]
            else:
                ipr.link("add", ifname=network["bridge"], kind="bridge")
                index = ipr.link_lookup(ifname=network["bridge"])[0]
                prefix = ipaddress.IPv4Network(network["subnet"]).prefixlen
                ipr.addr("add", index=index, address=network["gateway"], prefixlen=prefix)
                ipr.link("set", index=index, state="up")
            _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
            _write_sysctl(f"/proc/sys/net/ipv4/conf/{network['bridge']}/route_localnet", "1")
            import subprocess

            if subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True).returncode != 0:
                _nft(TABLE_SCRIPT)
            script = f"add element ip {TABLE} bridges {{ {network['bridge']} }}\n"
            if not network["internal"]:
                script += f"add element ip {TABLE} masquerade_subnets {{ {network['subnet']} }}\n"
            _nft(script)
        return index

    def _teardown_bridge(self, network: dict, *, only_if_unused: bool = False) -> bool:
        """Delete the network's bridge and its elements of the nftables table, and the table
        once no bridge is left in it. With ``only_if_unused``, a bridge that still has ports (a
        container of any store is attached) stays. True if the bridge is gone."""
        IPRoute = _iproute()

        with self.store.lock("network-setup"):
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=network["bridge"])
                if found:
                    if only_if_unused and ipr.get_links(master=found[0]):
                        return False
                    ipr.link("del", index=found[0])
            script = f"delete element ip {TABLE} bridges {{ {network['bridge']} }}\n"
            if not network["internal"]:
                script += f"delete element ip {TABLE} masquerade_subnets {{ {network['subnet']} }}\n"
            try:
                _nft(script)
            except NetworkError:
                pass  # never set up
            _remove_table_if_empty()
        return True

    def remove_bridge_if_unused(self, network: dict) -> bool:
        """The host side of a network (its bridge, its nftables elements), when no container of
        any store uses it: what ``system reset`` leaves the host as it found it with."""
        return self._teardown_bridge(network, only_if_unused=True)

    def setup_in_background(self, container_id: str, netns_path: str, attachments: builtins.list[tuple[str, str]],
                            ports: builtins.list[PortMapping], helper: Helper | None = None) -> Helper:
        """``setup`` in a child process (``helper``, started early, or one started now), so that
        loading the netlink library (~100 ms) overlaps the caller's own work until it
        ``wait()``s. The child uses no database connection of ours (the network records are read
        here and sent along)."""
        records = [(self.get(name), address) for name, address in attachments]
        helper = helper or Helper.start(self.store)
        helper.submit({"container_id": container_id, "netns_path": netns_path, "records": records,
                       "ports": [p.as_dict() for p in ports]})
        return helper

    def setup(self, container_id: str, netns_path: str, attachments: builtins.list[tuple[str, str]],
              ports: builtins.list[PortMapping]) -> None:
        self.setup_in_background(container_id, netns_path, attachments, ports).wait()

    def _setup_job(self, store, job: dict) -> None:
        self.store, self.db = store, None  # type: ignore[assignment]  # the helper child: no database
        self._setup(job["container_id"], job["netns_path"], [tuple(r) for r in job["records"]],
                    [PortMapping.from_dict(p) for p in job["ports"]])

    def _setup(self, container_id: str, netns_path: str, records: builtins.list[tuple[dict, str]],
               ports: builtins.list[PortMapping]) -> None:
        """Veth pairs from each network's bridge into the namespace at ``netns_path`` (eth0, eth1,
        ...), addresses and a default route inside, and the published ports' DNAT entries."""
        IPRoute = _iproute()
        attachments = [(network["name"], address) for network, address in records]
        inside = []
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with IPRoute() as ipr:
                for n, (network, address) in enumerate(records):
                    bridge = self._ensure_bridge(ipr, network)
                    host_name = _veth_name(container_id, n)
                    for stale in ipr.link_lookup(ifname=host_name):
                        ipr.link("del", index=stale)
                    ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": f"eth{n}", "net_ns_fd": fd})
                    index = ipr.link_lookup(ifname=host_name)[0]
                    ipr.link("set", index=index, master=bridge, state="up")
                    inside.append((f"eth{n}", address, ipaddress.IPv4Network(network["subnet"]).prefixlen,
                                   network["gateway"] if n == 0 else None))
            in_namespace(fd, lambda: _configure_inside(inside))
        finally:
            os.close(fd)
        if ports:
            address = attachments[0][1]
            lines = []
            for port in ports:
                if port.host_ip == "0.0.0.0":
                    lines.append(f"add element ip {TABLE} ports_any {{ {port.protocol} . {port.host_port} : "
                                 f"{address} . {port.container_port} }}")
                else:
                    lines.append(f"add element ip {TABLE} ports_ip {{ {port.host_ip} . {port.protocol} . "
                                 f"{port.host_port} : {address} . {port.container_port} }}")
            _nft("\n".join(lines) + "\n")

    def teardown(self, container_id: str, attachments: int, ports: builtins.list[PortMapping]) -> None:
        """Undo ``setup``'s DNAT entries. The veths go with the namespace (the kernel destroys a
        veth pair when one end's namespace dies), so no netlink is needed here: a detached
        container's clean-up does not import pyroute2."""
        lines = []
        for port in ports:
            if port.host_ip == "0.0.0.0":
                lines.append(f"delete element ip {TABLE} ports_any {{ {port.protocol} . {port.host_port} }}")
            else:
                lines.append(f"delete element ip {TABLE} ports_ip {{ {port.host_ip} . {port.protocol} . "
                             f"{port.host_port} }}")
        if lines:
            try:
                _nft("\n".join(lines) + "\n")
            except NetworkError:
                for line in lines:  # one was gone already: the others one by one
                    try:
                        _nft(line + "\n")
                    except NetworkError as exc:
                        log_cleanup_failure(__name__, f"{container_id[:12]}: removing a published port", exc)


class Helper:
    """A child process that loads the netlink library at once and then does one network set-up
    sent to it: started as soon as a command knows it will need a bridge, it has the library
    loaded by the time the addresses are chosen."""

    def __init__(self, pid: int, jobs: int, answers: int) -> None:
        self.pid, self.jobs, self.answers = pid, jobs, answers

    @classmethod
    def start(cls, store) -> Helper:
        job_r, job_w = os.pipe()
        answer_r, answer_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(job_w)
                os.close(answer_r)
                _iproute()
                with os.fdopen(job_r, "rb") as pipe:
                    data = pipe.read()
                if not data:
                    os._exit(0)  # no set-up after all
                job = json.loads(data)
                Networks.__new__(Networks)._setup_job(store, job)
                os.write(answer_w, b"ok")
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, one line
                try:
                    os.write(answer_w, str(exc).encode()[:2000] or type(exc).__name__.encode())
                except OSError:
                    pass
            finally:
                os._exit(0)
        os.close(job_r)
        os.close(answer_w)
        return cls(pid, job_w, answer_r)

    def submit(self, job: dict) -> None:
        with os.fdopen(self.jobs, "wb") as pipe:
            pipe.write(json.dumps(job).encode())
        self.jobs = -1

    def wait(self) -> None:
        """The set-up's end (an error if it failed); with no job sent, the helper just goes."""
        if self.jobs >= 0:
            os.close(self.jobs)
            self.jobs = -1
        with os.fdopen(self.answers, "rb") as pipe:
            answer = pipe.read().decode(errors="replace")
        os.waitpid(self.pid, 0)
        if answer and answer != "ok":
            raise NetworkError(answer)


def _veth_name(container_id: str, n: int) -> str:
    return f"veth{container_id[:8]}{n}"  # 13 characters: IFNAMSIZ allows 15


def _configure_inside(interfaces: list[tuple[str, str, int, str | None]]) -> None:
    IPRoute = _iproute()

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        for name, address, prefix, gateway in interfaces:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=address, prefixlen=prefix)
            ipr.link("set", index=index, state="up")
            if gateway:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


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


def _check_bindable(host_ip: str, port: int, protocol: str) -> None:
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


def hosts_entries(store, network_names: list[str], exclude: str | None = None) -> list[tuple[str, str]]:
    """(address, name) of every container of this store on these networks, for /etc/hosts."""
    from ketch.containers.hostnet import HostAllocations

    host = HostAllocations(store)
    names = {row["id"]: row["name"] for row in store.containers()}
    out = []
    for network in network_names:
        for container_id, ip in host.attached(network).items():
            if container_id != exclude and container_id in names:
                out.append((ip, names[container_id]))
    return out
