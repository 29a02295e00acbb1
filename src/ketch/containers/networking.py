"""A container's place on its bridge networks, as a part of
:class:`~ketch.containers.engine.Engine`: attaching (its namespace, addresses, published ports,
veths set up in a child while the engine goes on) and releasing, as one owner. Each step is
recorded in the container's ``state.json`` before it is taken, so whichever ketch process ends
the container (the monitor, ``rm``, a later start finding a killed one) releases exactly what was
taken; :meth:`ContainerNetworking._network_attached` releases at once when the start fails."""

from __future__ import annotations

import builtins
import os

from ketch.containers import state as states
from ketch.errors import InvalidInputError, KetchError, log_cleanup_failure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.engine import ContainerRecord
    from ketch.containers.enginepart import EnginePart
    from ketch.containers.options import CreateOptions
else:
    EnginePart = object  # (what the engine's parts use of it matters to type checkers only)


class ContainerNetworking(EnginePart):
    """Networks of containers: mixed into the Engine."""

    def _network_attached(self, record: ContainerRecord, image) -> _Attached:
        """Attach the container to its networks for a ``with`` block, which gets (namespace path or
        None, its addresses). If the block fails, everything is released (a set-up still running
        is waited for first); if it succeeds, the attachment stays with the container until
        :meth:`_release_network`."""
        return _Attached(self, record, image)

    def _release_network(self, record: ContainerRecord) -> None:
        """Undo what state.json says was taken: ports' nftables entries, the namespace (its veths
        go with it), the host-wide records; the peers' /etc/hosts learn it is gone."""
        container_id = record.id
        userdata = self._userdata(container_id)
        current = states.read(userdata)
        if not (current.get("netns") or current.get("attachments")):  # (what _uses_networks reads)
            return
        from ketch.containers import netns, network

        if current.get("pasta") is not None:  # a rootless container's: pasta, and its namespace
            from ketch.containers import pasta

            netns.remove_namespace(current["netns"])
            pasta.stop(current.get("pasta"))
            states.update(userdata, netns=None, ports=[], attachments=0, pasta=None)
            return

        nets = self.networks()
        names = list(nets.addresses_of(container_id))
        ports = [network.PortMapping.from_dict(p) for p in current.get("ports") or []]
        if not self.store.rootless:  # (a rootless container's ports are a relay's: see rootlessnet)
            try:
                nets.teardown(container_id, current.get("attachments") or 0, ports)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"{record.name}: removing its published ports", exc)
        if current.get("netns"):
            netns.remove_namespace(current["netns"])
        nets.release(container_id)
        states.update(userdata, netns=None, ports=[], attachments=0)
        if self.store.rootless:
            from ketch.containers import rootlessnet

            rootlessnet.detach(self.store, current.get("relay"), nets.host.holds_addresses)
            states.update(userdata, relay=None)
        self._refresh_peer_hosts(names, container_id)

    def _network_names(self, options: CreateOptions) -> builtins.list[str]:
        if options.network in ("none", "host") or options.network.startswith(("container:", "ns:")):
            return []
        from ketch.containers.network import DEFAULT_NETWORK

        return [DEFAULT_NETWORK if n in ("bridge", "private") else n for n in options.network.split(",") if n]

    def _joined_namespaces(self, options: CreateOptions) -> dict[str, str]:
        """Namespaces the container joins: another container's (``container:NAME``, which must
        run) or one given by path (``ns:PATH``)."""
        joined = {}
        for kind, mode in (("network", options.network), ("pid", options.pid), ("ipc", options.ipc),
                           ("uts", options.uts), ("cgroup", options.cgroupns)):
            if not mode:
                continue
            if mode.startswith("ns:"):
                path = mode[3:]
                if not os.path.exists(path):
                    raise InvalidInputError(f"--{'network' if kind == 'network' else kind} {mode}: {path} does not "
                                            "exist")
                joined[kind] = path
            elif mode.startswith("container:"):
                other = self._record(mode.split(":", 1)[1])
                current = self._status(other)
                if current["status"] not in ("running", "paused"):
                    raise InvalidInputError(f"cannot join the {kind} namespace of container {other.name}: it is "
                                            f"{current['status']}")
                proc_name = {"network": "net"}.get(kind, kind)
                joined[kind] = f"/proc/{current['pid']}/ns/{proc_name}"
        return joined

    def connect_network(self, name_or_id: str, network: str, *, aliases: builtins.list[str] | None = None,
                        ip: str | None = None) -> None:
        """Put a container on one more network (with ``aliases`` there). A created or stopped one
        takes it when it starts (``network connect`` as compose does it); a running one gets a
        new interface now (eth1, eth2, ...), and its peers' /etc/hosts and its own learn of it."""
        record = self._record(name_or_id)
        found = self.networks().get(network)["name"]
        with self.store.lock(f"container-{record.id}"):
            record = self._record(record.id)
            options: CreateOptions = record.options
            names = [] if options.network in ("none", "") else [n for n in options.network.split(",") if n]
            if any(n.startswith(("container:", "ns:")) or n == "host" for n in names):
                raise InvalidInputError(f"container {record.name} shares another's network or the host's: it "
                                        "cannot join networks")
            on_it = found in names or (found == self._default_network() and bool(set(names) & {"bridge", "private"}))
            running = self._status(record)["status"] in ("running", "paused")
            if running and on_it:
                from ketch.errors import InUseError

                raise InUseError(f"container {record.name} is already connected to network {found}")
            if running and (not names or self._rootless_network(options)):
                from ketch.errors import UnsupportedError

                mode = "no network" if not names else "the rootless default network (pasta)"
                raise UnsupportedError(f"network connect: container {record.name} runs with {mode}; only a "
                                       "container on bridge networks can join one more while it runs")
            if not on_it:
                names.append(found)
            changed = options.as_dict()
            changed["network"] = ",".join(names)
            if aliases:
                changed["network_aliases"] = {**options.network_aliases, found: list(aliases)}
            if ip and names[0] == found:
                changed["ip"] = ip
            self.store.update_container_metadata(record.id, {"options": changed})
            if not running:
                return
            try:
                self._attach_running(record, found, ip)
            except BaseException:
                self.store.update_container_metadata(record.id, {"options": options.as_dict()})
                raise
        self._rewrite_hosts(record.id)
        self._refresh_peer_hosts([found], record.id)

    def _attach_running(self, record: ContainerRecord, network: str, ip: str | None) -> None:
        """One more veth into a running container's namespace, its index counted on in state.json
        (recorded first: whatever ends the container releases it with the namespace)."""
        userdata = self._userdata(record.id)
        current = states.read(userdata)
        index = current.get("attachments") or 0
        states.update(userdata, attachments=index + 1)
        nets = self.networks()
        address = nets.allocate(record.id, network, ip)
        try:
            nets.setup_in_background(record.id, current["netns"], [(network, address)], [], first=index).wait()
        except BaseException:
            nets.release_address(record.id, network)
            raise

    def disconnect_network(self, name_or_id: str, network: str) -> None:
        """Take a container off a network (``none`` once it has no network left); a running
        one loses that interface now, and its address on the network is free again."""
        record = self._record(name_or_id)
        found = self.networks().get(network)["name"]
        with self.store.lock(f"container-{record.id}"):
            record = self._record(record.id)
            options: CreateOptions = record.options
            names = [n for n in options.network.split(",") if n]
            default = found == self._default_network()
            kept = [n for n in names if n != found and not (default and n in ("bridge", "private"))]
            if len(kept) == len(names):
                raise InvalidInputError(f"container {record.name} is not connected to network {found}")
            running = self._status(record)["status"] in ("running", "paused")
            if running and self._rootless_network(options):
                from ketch.errors import UnsupportedError

                raise UnsupportedError(f"network disconnect: container {record.name} runs on the rootless default "
                                       "network (pasta), which cannot be taken from it while it runs")
            changed = options.as_dict()
            changed["network"] = ",".join(kept) or "none"
            changed["network_aliases"] = {k: v for k, v in options.network_aliases.items() if k != found}
            self.store.update_container_metadata(record.id, {"options": changed})
            if not running:
                return
            nets = self.networks()
            address = nets.addresses_of(record.id).get(found)
            netns_path = states.read(self._userdata(record.id)).get("netns")
            if address and netns_path:
                nets.bridges().remove_interface(netns_path, address)
                nets.release_address(record.id, found)
        self._rewrite_hosts(record.id)
        self._refresh_peer_hosts([found], record.id)

    def _refuse_running(self, record: ContainerRecord, what: str) -> None:
        from ketch.errors import UnsupportedError

        if self._status(record)["status"] in ("running", "paused"):
            raise UnsupportedError(f"{what}: container {record.name} is running; ketch sets up a container's "
                                   "networks when it starts (stop it first)")

    @staticmethod
    def _default_network() -> str:
        from ketch.containers.network import DEFAULT_NETWORK

        return DEFAULT_NETWORK

    def networks(self):
        from ketch.containers.network import Networks

        return Networks(self.store)

    def volumes(self):
        from ketch.containers.volumes import Volumes

        return Volumes(self.store)

    def _rootless_network(self, options: CreateOptions) -> bool:
        """Whether the container gets pasta's network: a rootless container in the default mode
        (``bridge``, ``private``, or ``pasta``/``slirp4netns`` by name). Named networks, the
        default one (``ketch``) too, are bridges in the user's rootless network namespace."""
        return self.store.rootless and options.network in ("bridge", "private", "pasta", "slirp4netns")

    @staticmethod
    def _wanted_ports(options: CreateOptions, image, *, any_address: str) -> builtins.list:
        """``-p`` mappings, and with ``-P`` the image's exposed ports not mapped yet (on
        ``any_address``, a host port chosen later)."""
        from ketch.containers import network

        wanted = [m for spec in options.publish for m in network.parse_publish(spec)]
        if options.publish_all and image is not None:
            for exposed in (image.container_config.get("ExposedPorts") or {}):
                port, _, protocol = exposed.partition("/")
                if port.isdigit() and not any(m.container_port == int(port) for m in wanted):
                    wanted.append(network.PortMapping(any_address, 0, int(port), protocol or "tcp"))
        return wanted

    def _setup_pasta(self, record: ContainerRecord, image) -> tuple[str | None, builtins.list[str]]:
        """A rootless container's network: a namespace of ours, given to pasta with the ports."""
        from ketch.containers import netns, pasta

        options: CreateOptions = record.options
        userdata = self._userdata(record.id)
        netns_path = str(self.store.runroot / "netns" / f"ketch-{record.id[:32]}")
        os.makedirs(os.path.dirname(netns_path), exist_ok=True)
        states.update(userdata, netns=netns_path, attachments=0, pasta=0)
        netns.pin_namespaces({"net": netns_path})
        ports = pasta.assign_ports(self._wanted_ports(options, image, any_address=""))
        states.update(userdata, ports=[p.as_dict() for p in ports])
        pid = pasta.start(netns_path, ports, os.path.join(userdata, "pasta.pid"))
        states.update(userdata, pasta=pid)
        return netns_path, []

    def _setup_network(self, record: ContainerRecord, image) -> tuple[str | None, builtins.list[str]]:
        """For bridge networks: a namespace of ours, addresses, veths, published ports."""
        options: CreateOptions = record.options
        names = self._network_names(options)
        if not names:
            return None, []
        if self._rootless_network(options):
            return self._setup_pasta(record, image)
        from ketch.containers import netns

        container_id = record.id
        userdata = self._userdata(container_id)
        nets = self.networks()
        netns_path = str(self.store.runroot / "netns" / f"ketch-{container_id[:32]}")
        states.update(userdata, netns=netns_path, attachments=len(names))
        netns.make_namespace(netns_path)
        attachments = [(name, nets.allocate(container_id, name, options.ip if n == 0 else None))
                       for n, name in enumerate(names)]
        wanted = self._wanted_ports(options, image, any_address="0.0.0.0")
        ports = nets.reserve_ports(container_id, wanted) if wanted else []
        states.update(userdata, ports=[p.as_dict() for p in ports])
        kernel_ports = ports
        if self.store.rootless:  # (after the addresses are recorded: see rootlessnet)
            from ketch.containers import rootlessnet

            kernel_ports = []
            states.update(userdata, relay=rootlessnet.attach(self.store, netns_path, attachments[0][1], ports))
        # The kernel side runs in a child while this process goes on; start() waits for it.
        helper, self._network_helper = self._network_helper, None
        self._pending_network = nets.setup_in_background(container_id, netns_path, attachments, kernel_ports, helper)
        self._refresh_peer_hosts(names, container_id)
        return netns_path, [address for _, address in attachments]

    def _network_ready_quietly(self) -> None:
        try:
            self._network_ready()
        except KetchError as exc:
            log_cleanup_failure(__name__, "the network set-up of a container that did not start", exc)

    def _network_ready(self) -> None:
        """Wait for the network set-up started by ``_prepare`` (before the container starts)."""
        pending, self._pending_network = self._pending_network, None
        if pending is not None:
            pending.wait()
        unused, self._network_helper = self._network_helper, None
        if unused is not None:
            unused.wait()  # started early, but no set-up came: it just goes

    def _start_network_helper(self, options: CreateOptions) -> None:
        """A bridge will be set up: load the netlink library in a child from now on."""
        if self._network_names(options) and self._network_helper is None and not self._rootless_network(options):
            from ketch.containers.bridge import Helper

            self._network_helper = Helper.start(self.store)

    def _peer_hosts(self, container_id: str) -> str:
        if not self._uses_networks(container_id) or states.read(self._userdata(container_id)).get("pasta") is not None:
            return ""  # (no network, or pasta's: no peers, and no network module to import)
        from ketch.containers.network import hosts_entries

        names = list(self.networks().addresses_of(container_id))
        return "".join(f"{ip}\t{name}\n" for ip, name in hosts_entries(self.store, names, exclude=container_id))

    def _uses_networks(self, container_id: str) -> bool:
        """Whether the container holds anything of a network: its state says so (``netns`` and
        ``attachments`` are recorded before anything is allocated and cleared after all of it is
        released), so a container without networks never opens the host-wide records nor
        imports the network modules."""
        current = states.read(self._userdata(container_id))
        return bool(current.get("netns") or current.get("attachments"))

    def _refresh_peer_hosts(self, network_names: builtins.list[str], changed: str) -> None:
        """Every other running container of these networks learns who is there now."""
        from ketch.containers.network import attached_containers

        for peer_id in attached_containers(self.store, network_names, exclude=changed):
            self._rewrite_hosts(peer_id)

    def _rewrite_hosts(self, container_id: str) -> None:
        """A running container's /etc/hosts, rewritten in place (it is bind-mounted by inode):
        what it was made with, and the peers on its networks now."""
        userdata = self._userdata(container_id)
        base = states.read(userdata).get("hosts_base")
        if base is None:
            return
        try:
            with open(os.path.join(userdata, "hosts"), "r+") as f:
                f.seek(0)
                f.write(base + self._peer_hosts(container_id))
                f.truncate()
        except OSError as exc:
            log_cleanup_failure(__name__, f"{container_id[:12]}: rewriting its /etc/hosts", exc)


class _Attached:
    """The context manager of :meth:`ContainerNetworking._network_attached` (a class: contextlib is
    not imported on ``ketch run``'s path)."""

    def __init__(self, owner: ContainerNetworking, record: ContainerRecord, image) -> None:
        self.owner, self.record, self.image = owner, record, image

    def __enter__(self) -> tuple[str | None, builtins.list[str]]:
        try:
            return self.owner._setup_network(self.record, self.image)
        except BaseException:
            self._release()
            raise

    def __exit__(self, kind, exc, traceback) -> None:
        if exc is not None:
            self._release()

    def _release(self) -> None:
        self.owner._network_ready_quietly()
        self.owner._release_network(self.record)
