"""The kernel side of bridge networks: a Linux bridge per network with the gateway's address,
a veth pair per container and network into the container's namespace, and one nftables table
(``ip ketch``) for masquerading and published ports, shared by every store on the host.

The netlink work goes through pyroute2, imported only here, only when a bridge is set up: it
costs ~100 ms to import, which ``--network none`` and ``host`` must not pay (a :class:`Helper`
child loads it while the caller goes on). nftables is driven through the ``nft`` command with
scripts (its Python binding is not on PyPI).
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import os
import socket

from ketch.containers.netns import in_namespace
from ketch.containers.network import TABLE, PortMapping
from ketch.errors import NetworkError, log_cleanup_failure

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


def _nft_program() -> str:
    import shutil

    return shutil.which("nft") or "/usr/sbin/nft"  # (a user's PATH may lack /usr/sbin)


def _nft(script: str) -> None:
    import subprocess

    result = subprocess.run([_nft_program(), "-f", "-"], input=script.encode(), capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise NetworkError(f"nftables: {message[0] if message else 'nft failed'}")


def _remove_table_if_empty() -> None:
    """Delete ketch's nftables table when no bridge of any store is in it any more."""
    import subprocess

    listing = subprocess.run([_nft_program(), "-j", "list", "set", "ip", TABLE, "bridges"], capture_output=True,
                             text=True)
    if listing.returncode == 0 and '"elem"' not in listing.stdout:
        subprocess.run([_nft_program(), "delete", "table", "ip", TABLE], capture_output=True)


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Bridges:
    """Bridges, veths and nftables entries of a store's networks (locks: the store's). A rootless
    store's are in the user's rootless network namespace (:mod:`ketch.containers.rootlessnet`),
    where the set-up's child and the removals enter first."""

    def __init__(self, store) -> None:
        self.store = store

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

            if subprocess.run([_nft_program(), "list", "table", "ip", TABLE], capture_output=True).returncode != 0:
                _nft(TABLE_SCRIPT)
            script = f"add element ip {TABLE} bridges {{ {network['bridge']} }}\n"
            if not network["internal"]:
                script += f"add element ip {TABLE} masquerade_subnets {{ {network['subnet']} }}\n"
            _nft(script)
        return index

    def teardown_bridge(self, network: dict, *, only_if_unused: bool = False) -> bool:
        """Delete the network's bridge and its elements of the nftables table, and the table
        once no bridge is left in it. With ``only_if_unused``, a bridge that still has ports (a
        container of any store is attached) stays. True if the bridge is gone."""
        if self.store.rootless:
            from ketch.containers import rootlessnet

            where = rootlessnet.existing(self.store)
            if where is None:
                return True  # (no rootless namespace: its bridges went with it)
            fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return bool(in_namespace(fd, lambda: self._teardown_bridge_here(network, only_if_unused)))
            finally:
                os.close(fd)
        return self._teardown_bridge_here(network, only_if_unused)

    def _teardown_bridge_here(self, network: dict, only_if_unused: bool) -> bool:
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
            except NetworkError as exc:
                log_cleanup_failure(__name__, f"bridge {network['bridge']}: its nftables elements (never set up?)", exc)
            _remove_table_if_empty()
        return True

    def setup_in_background(self, container_id: str, netns_path: str, records: builtins.list[tuple[dict, str]],
                            ports: builtins.list[PortMapping], helper: Helper | None = None, *,
                            first: int = 0) -> Helper:
        """The set-up in a child process (``helper``, started early, or one started now), so that
        loading the netlink library (~100 ms) overlaps the caller's own work until it
        ``wait()``s. The child uses no database connection (the network records are read by the
        caller and sent along)."""
        helper = helper or Helper.start(self.store)
        enter = None
        if self.store.rootless:
            from ketch.containers import rootlessnet

            enter = rootlessnet.path(self.store)
        helper.submit({"container_id": container_id, "netns_path": netns_path, "records": records,
                       "ports": [p.as_dict() for p in ports], "enter": enter, "first": first})
        return helper

    def _setup_job(self, job: dict) -> None:
        self._setup(job["container_id"], job["netns_path"], [tuple(r) for r in job["records"]],
                    [PortMapping.from_dict(p) for p in job["ports"]], first=job.get("first", 0))

    def _setup(self, container_id: str, netns_path: str, records: builtins.list[tuple[dict, str]],
               ports: builtins.list[PortMapping], *, first: int = 0) -> None:
        """Veth pairs from each network's bridge into the namespace at ``netns_path`` (eth0, eth1,
        ... from ``first``), addresses and, on eth0, the default route inside, and the published
        ports' DNAT entries."""
        IPRoute = _iproute()
        attachments = [(network["name"], address) for network, address in records]
        inside = []
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with IPRoute() as ipr:
                for n, (network, address) in enumerate(records, start=first):
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

    def remove_interface(self, netns_path: str, address: str) -> None:
        """Delete the interface holding ``address`` in the namespace at ``netns_path`` (its veth
        pair goes with it): a running container leaving a network."""
        def remove() -> bool:
            with _iproute()() as ipr:
                for entry in ipr.get_addr(family=socket.AF_INET):
                    if entry.get_attr("IFA_ADDRESS") == address:
                        ipr.link("del", index=entry["index"])
                        return True
            return False

        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            in_namespace(fd, remove)
        finally:
            os.close(fd)

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
                if job.get("enter"):  # (a rootless store's bridges: in the user's network namespace)
                    from ketch import syscalls

                    syscalls.setns(os.open(job["enter"], os.O_RDONLY), syscalls.CLONE_NEWNET)
                Bridges(store)._setup_job(job)
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
