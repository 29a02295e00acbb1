"""Pods: containers that share a network, IPC and UTS namespace (and, when asked, a PID namespace),
as podman's pods and the CRI's pod sandboxes are.

No infra container and no pause image hold the namespaces: they are made by a forked child and
pinned by bind mounts of its ``/proc/PID/ns/*`` files under the run directory (as CRI-O's
``pinns`` does), so they outlive every process in them and nothing runs for an idle pod. A PID
namespace cannot be pinned that way (it dies with its first process), so a pod that shares one
has a holder: catatonit in pause mode, PID 1 of that namespace, its own session, owned by no
ketch process.

A pod is a row in the store's ``pods`` table (see :mod:`ketch.containers.tables`), written before
anything is made and updated after each step, so that whatever a killed ``create`` made is found
and undone by ``remove``. What a pod is to its users (the CRI's config, podman's published ports)
is the caller's, kept in the row's ``data``.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from typing import Any

from ketch.errors import (
    DuplicateNameError,
    InvalidInputError,
    KetchError,
    NotFoundError,
    log_cleanup_failure,
)
from ketch.records import Record

# The namespaces pinned for every pod, by their /proc/PID/ns names.
PINNED = ("net", "ipc", "uts")
CGROUP_PARENT = "/libpod_parent"  # what podman reports for a pod without a cgroup of its own
READY = "ready"
NOT_READY = "notready"
CREATING = "creating"  # made in part: a create still runs, or was killed (remove cleans it)


class NoSuchPodError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no pod with name or ID {name} found: no such pod")
        self.subject = name


class PodRecord(Record):
    id: str
    name: str
    created: float
    state: str
    data: dict[str, Any]

    def namespace_path(self, kind: str) -> str | None:
        """The pinned namespace file of ``kind`` (net, ipc, uts), or the holder's pid namespace."""
        if kind == "pid":
            holder = self.data.get("pid_holder") or {}
            return f"/proc/{holder['pid']}/ns/pid" if holder and _alive(holder) else None
        return (self.data.get("namespaces") or {}).get(kind)

    def intact(self) -> bool:
        """Whether what the pod's containers join is still there: each pinned namespace (a
        reboot, or an unmounted run directory, loses them) and the PID namespace's holder (when
        it dies, the shared PID namespace is gone with it)."""
        nsfs = os.stat("/proc/self/ns/net").st_dev
        for path in (self.data.get("namespaces") or {}).values():
            try:
                if os.stat(path).st_dev != nsfs:
                    return False
            except OSError:
                return False
        holder = self.data.get("pid_holder")
        return not holder or _alive(holder)


def _alive(holder: dict) -> bool:
    from ketch.containers import state

    if not state.alive(holder.get("pid"), holder.get("start")):
        return False
    # A PID namespace's init that was killed stays in its exit until every process of the
    # namespace is reaped (which the host's init may take its time over): it is dying already.
    try:
        with open(f"/proc/{holder['pid']}/stat", "rb") as f:
            data = f.read()
        flags = int(data[data.rindex(b")") + 2:].split()[6])
    except (OSError, ValueError, IndexError):
        return False
    return not flags & 0x4  # PF_EXITING


class Pods:
    def __init__(self, store) -> None:
        from ketch.containers.tables import database

        self.store = store
        self.db = database(store)

    def _dir(self, pod_id: str) -> str:
        return str(self.store.runroot / "pods" / pod_id)

    # -- records ---------------------------------------------------------------------------

    def get(self, name_or_id: str) -> PodRecord:
        row = self.db.one("SELECT * FROM pods WHERE id = ? OR name = ?", (name_or_id, name_or_id))
        if row is None and len(name_or_id) >= 3:
            rows = self.db.query("SELECT * FROM pods WHERE id LIKE ?", (name_or_id + "%",))
            if len(rows) > 1:
                raise InvalidInputError(f"more than one pod matches {name_or_id!r}: give more of its id")
            row = rows[0] if rows else None
        if row is None:
            raise NoSuchPodError(name_or_id)
        return _record(row)

    def list(self) -> builtins.list[PodRecord]:
        return [_record(r) for r in self.db.query("SELECT * FROM pods ORDER BY created")]

    def _update(self, pod_id: str, *, state: str | None = None, **data: Any) -> PodRecord:
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM pods WHERE id = ?", (pod_id,)).fetchone()
            if row is None:
                raise NoSuchPodError(pod_id)
            record = _record(row)
            record.data.update(data)
            conn.execute("UPDATE pods SET state = ?, data = ? WHERE id = ?",
                         (state or record.state, json.dumps(record.data), pod_id))
        return self.get(pod_id)

    def update_data(self, pod_id: str, **data: Any) -> PodRecord:
        return self._update(pod_id, **data)

    # -- life ------------------------------------------------------------------------------

    def create(self, name: str, *, hostname: str = "", share_pid: bool = False, host_network: bool = False,
               host_ipc: bool = False, sysctls: dict[str, str] | None = None, data: dict[str, Any] | None = None,
               pid_holder: str = "catatonit") -> PodRecord:
        """A pod with pinned namespaces (``host_network``/``host_ipc``: the host's instead), in
        state ``notready`` until the caller has set up its network and calls :meth:`ready`.
        ``pid_holder``: the program (catatonit, or one that pauses as ``catatonit -P``) that is PID 1
        of a shared PID namespace."""
        from ketch.containers import netns

        pod_id = secrets.token_hex(32)
        try:
            with self.db.write() as conn:
                conn.execute("INSERT INTO pods (id, name, created, state, data) VALUES (?, ?, ?, ?, ?)",
                             (pod_id, name, time.time(), CREATING, json.dumps(dict(data or {}))))
        except DuplicateNameError as exc:  # (podman's words)
            raise DuplicateNameError(f'adding pod to state: name "{name}" is in use: pod already exists') from exc
        try:
            kinds = [k for k in PINNED if not (k == "net" and host_network) and not (k == "ipc" and host_ipc)]
            directory = os.path.join(self._dir(pod_id), "ns")
            paths = {kind: os.path.join(directory, kind) for kind in kinds}
            self._update(pod_id, namespaces=paths)  # recorded first: a killed create leaves them findable
            _check_sysctls(sysctls or {})
            netns.pin_namespaces(paths, hostname=hostname, sysctls=sysctls or {})
            if share_pid:
                self._update(pod_id, pid_holder=_start_pid_holder(pid_holder))
            return self._update(pod_id, state=NOT_READY)
        except BaseException:
            try:
                self.remove(pod_id)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"pod {name}: undoing its create", exc)
            raise

    def ready(self, pod_id: str, **data: Any) -> PodRecord:
        return self._update(pod_id, state=READY, **data)

    def stop(self, pod_id: str) -> PodRecord:
        """Not ready any more: its PID namespace holder ends (the caller stops the containers and
        the network first). Its pinned namespaces stay until :meth:`remove`."""
        record = self.get(pod_id)
        holder = record.data.get("pid_holder") or {}
        if holder and _alive(holder):
            try:
                os.kill(holder["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self._update(record.id, state=NOT_READY)

    def remove(self, pod_id: str) -> None:
        """The pod's namespaces unpinned, its directory and its row gone; a missing piece is no
        error (a create killed half-way, or a remove run twice)."""
        from ketch.containers import netns

        record = self.get(pod_id)
        self.stop(record.id)
        for path in (record.data.get("namespaces") or {}).values():
            netns.remove_namespace(path)
        shutil.rmtree(self._dir(record.id), ignore_errors=True)
        with self.db.write() as conn:
            conn.execute("DELETE FROM pods WHERE id = ?", (record.id,))


def _record(row) -> PodRecord:
    return PodRecord(row["id"], row["name"], row["created"], row["state"], json.loads(row["data"]))


def _check_sysctls(sysctls: dict[str, str]) -> None:
    for key in sysctls:
        if not key or "/" in key or ".." in key or not os.path.exists("/proc/sys/" + key.replace(".", "/")):
            raise InvalidInputError(f"invalid sysctl {key!r}: not a kernel setting here")


def _start_pid_holder(program: str = "catatonit") -> dict[str, Any]:
    """catatonit in pause mode (``-P``) as PID 1 of a new PID namespace, in a session of its own
    (it must outlive this process); its host pid and start time."""
    from ketch import syscalls
    from ketch.containers import state

    catatonit = (program if "/" in program else shutil.which(program)) or "/usr/libexec/podman/catatonit"
    if not os.access(catatonit, os.X_OK):
        raise InvalidInputError(f"a pod that shares its PID namespace needs {program} (Debian's catatonit package)")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setsid()
            syscalls.unshare(syscalls.CLONE_NEWPID)
            child = subprocess.Popen([catatonit, "-P"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
            os.write(write_end, str(child.pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    if not answer.isdigit():
        raise InvalidInputError("starting the pod's PID namespace holder (catatonit -P) failed")
    holder = int(answer)
    return {"pid": holder, "start": state.start_time(holder)}


def _rfc3339(seconds: float) -> str:
    from ketch.containers import state

    return state.now_rfc3339(seconds)


class PodEngine:
    """podman's pod verbs on the same pods: a pod of ``ketch pod create`` gets its network from
    ketch's bridge networks (an address, its published ports) in its pinned namespace; its
    containers are engine containers made with ``--pod`` (``CreateOptions.pod``)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.pods = Pods(engine.store)

    def containers(self, pod_id: str) -> builtins.list:
        return [r for r in self.engine.records() if r.options.pod == pod_id]

    def create(self, name: str | None = None, *, hostname: str | None = None, publish: builtins.list[str] | None = None,
               network: str = "bridge", share: builtins.list[str] | None = None,
               labels: dict[str, str] | None = None, create_command: builtins.list[str] | None = None) -> str:
        from ketch.containers import names
        from ketch.containers.network import DEFAULT_NETWORK, parse_publish

        share = list(share if share is not None else ["net", "ipc", "uts"])
        unknown = [s for s in share if s not in ("net", "ipc", "uts", "pid")]
        if unknown:
            raise InvalidInputError(f"invalid --share {unknown[0]!r}: net, ipc, uts or pid")
        if "net" not in share and (publish or network not in ("bridge", "host")):
            raise InvalidInputError("a pod that does not share its network cannot publish ports or join networks")
        wanted = [m for spec in publish or [] for m in parse_publish(spec)]
        name = name or names.generate()
        host_network = network == "host" or "net" not in share
        data = {"kind": "ketch", "labels": dict(labels or {}), "share": share, "network": network,
                "hostname": hostname or name, "create_command": builtins.list(create_command or [])}
        record = self.pods.create(name, hostname=hostname or name, share_pid="pid" in share, host_network=host_network,
                                  host_ipc="ipc" not in share, data=data)
        try:
            if not host_network and network in ("bridge", "private", "pasta", "slirp4netns") and \
                    self.engine.store.rootless:
                # a rootless pod: pasta on its pinned namespace, publishing its ports (as a container's)
                from ketch.containers import pasta

                ports = pasta.assign_ports(wanted)
                self.pods.update_data(record.id, ports=[p.as_dict() for p in ports], pasta=0)
                pid_file = str(self.engine.store.runroot / f"pod-{record.id[:32]}-pasta.pid")
                pid = pasta.start(record.namespace_path("net") or "", ports, pid_file)
                self.pods.update_data(record.id, pasta=pid)
            elif not host_network and network != "none":
                nets = self.engine.networks()
                networks = [DEFAULT_NETWORK if n in ("bridge", "private") else n for n in network.split(",") if n]
                self.pods.update_data(record.id, attachments=len(networks), ports=[])
                attachments = [(n, nets.allocate(record.id, n)) for n in networks]
                ports = nets.reserve_ports(record.id, wanted) if wanted else []
                self.pods.update_data(record.id, ports=[p.as_dict() for p in ports])
                netns_path = record.namespace_path("net") or ""
                if self.engine.store.rootless:  # a rootless pod's: in the user's network namespace, a relay
                    from ketch.containers import rootlessnet

                    relay = rootlessnet.attach(self.engine.store, netns_path, attachments[0][1], ports)
                    self.pods.update_data(record.id, relay=relay)
                    ports = []
                nets.setup_in_background(record.id, netns_path, attachments, ports).wait()
            return self.pods.ready(record.id).id
        except BaseException:
            try:
                self._release(self.pods.get(record.id))
                self.pods.remove(record.id)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"pod {name}: undoing its create", exc)
            raise

    def _release(self, record: PodRecord) -> None:
        from ketch.containers.network import PortMapping

        if record.data.get("pasta"):
            from ketch.containers import pasta

            pasta.stop(record.data["pasta"])  # (it also quits when the pinned namespace goes)
            self.pods.update_data(record.id, pasta=0, ports=[])
            return
        if not record.data.get("attachments"):
            return
        nets = self.engine.networks()
        ports = [PortMapping.from_dict(p) for p in record.data.get("ports") or []]
        if not self.engine.store.rootless:
            try:
                nets.teardown(record.id, record.data["attachments"], ports)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"pod {record.name}: removing its network", exc)
        nets.release(record.id)
        self.pods.update_data(record.id, attachments=0, ports=[])
        if self.engine.store.rootless:
            from ketch.containers import rootlessnet

            rootlessnet.detach(self.engine.store, record.data.get("relay"), nets.host.holds_addresses)

    def _pod(self, name_or_id: str) -> PodRecord:
        record = self.pods.get(name_or_id)
        if record.data.get("kind") != "ketch":
            raise NoSuchPodError(name_or_id)  # the kubelet's pods are the CRI server's
        return record

    def start(self, name_or_id: str) -> str:
        record = self._pod(name_or_id)
        if not self.containers(record.id):
            raise InvalidInputError(f"no containers in pod {record.id} have no dependencies, cannot start pod: no such "
                                "container")
        for container in self.containers(record.id):
            if self.engine.status(container.id)["status"] not in ("running", "paused"):
                self.engine.start(container.id)
        return record.id

    def stop(self, name_or_id: str, timeout: int | None = None) -> str:
        record = self._pod(name_or_id)
        for container in self.containers(record.id):
            if self.engine.status(container.id)["status"] in ("running", "paused"):
                self.engine.stop(container.id, timeout)
        return record.id

    def remove(self, name_or_id: str, *, force: bool = False, timeout: int | None = None) -> str:
        record = self._pod(name_or_id)
        containers = self.containers(record.id)
        running = [c.name for c in containers if self.engine.status(c.id)["status"] in ("running", "paused")]
        if running and not force:
            from ketch.errors import InUseError

            raise InUseError(f"pod {record.name} has running containers ({', '.join(running)}): stop them "
                             "first or use --force")
        for container in containers:
            self.engine.remove(container.id, force=True, timeout=timeout)
        self._release(record)
        self.pods.remove(record.id)
        return record.id

    def status_of(self, record: PodRecord) -> str:
        """podman's pod status: Created, Running, Degraded or Exited."""
        states = [self.engine.status(c.id)["status"] for c in self.containers(record.id)]
        running = sum(s in ("running", "paused") for s in states)
        if not states or all(s in ("created", "configured") for s in states):
            return "Created"
        if running == len(states):
            return "Running"
        return "Degraded" if running else "Exited"

    def list(self) -> builtins.list[dict[str, Any]]:
        """podman's ``pod ps --format json`` entries."""
        out = []
        for record in self.pods.list():
            if record.data.get("kind") != "ketch":
                continue
            containers = self.containers(record.id)
            addresses = self._addresses(record)
            out.append({
                "Cgroup": CGROUP_PARENT, "Containers": [
                    {"Id": c.id, "Names": c.name, "Status": self.engine.status(c.id)["status"]} for c in containers],
                "Created": _rfc3339(record.created), "Id": record.id, "InfraId": "", "Name": record.name,
                "Namespace": "", "Networks": builtins.list(addresses), "Status": self.status_of(record),
                "Labels": record.data.get("labels") or {},
            })
        return out

    def _addresses(self, record: PodRecord) -> dict[str, str]:
        return self.engine.networks().addresses_of(record.id) if record.data.get("attachments") else {}

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        """podman's ``pod inspect``, with what ketch's pods have instead of an infra container
        (``SharedNamespaces``, ``InfraConfig``: the pod's networks, ports and pinned namespaces)."""
        record = self._pod(name_or_id)
        containers = self.containers(record.id)
        addresses = self._addresses(record)
        inspected: dict[str, Any] = {
            "Id": record.id, "Name": record.name, "Created": _rfc3339(record.created),
            "CreateCommand": record.data.get("create_command") or [], "ExitPolicy": "continue",
            "State": self.status_of(record), "Hostname": record.data.get("hostname", ""),
            "Labels": record.data.get("labels") or {}, "CreateCgroup": False, "CgroupParent": CGROUP_PARENT,
            "CreateInfra": False, "NumContainers": len(containers),
            "SharedNamespaces": [{"net": "net", "ipc": "ipc", "uts": "uts", "pid": "pid"}[k]
                                 for k in record.data.get("share") or []],
            "InfraConfig": {"Networks": builtins.list(addresses), "PortBindings": record.data.get("ports") or [],
                            "Addresses": addresses, "PinnedNamespaces": record.data.get("namespaces") or {},
                            "PidNamespaceHolder": (record.data.get("pid_holder") or {}).get("pid")},
        }
        if containers:
            inspected["Containers"] = [{"Id": c.id, "Name": c.name, "State": self.engine.status(c.id)["status"]}
                                       for c in containers]
        return inspected

    def join_options(self, options) -> None:
        """A container of the pod (``--pod``): its namespaces are the pod's, unless the caller
        chose another; ports are the pod's to publish (podman refuses them too)."""
        record = self._pod(options.pod)
        options.pod = record.id
        if options.publish or options.publish_all:
            raise InvalidInputError("published ports must be defined when the pod is created (ketch pod create -p)")
        share = record.data.get("share") or []
        if "net" in share and options.network == "bridge":
            path = record.namespace_path("net")
            options.network = f"ns:{path}" if path else "host"
        for kind in ("ipc", "uts"):
            if kind in share and getattr(options, kind) is None:
                setattr(options, kind, f"ns:{record.namespace_path(kind)}")
        if "pid" in share and options.pid is None:
            path = record.namespace_path("pid")
            if path is None:
                raise InvalidInputError(f"pod {record.name}: its PID namespace holder is gone; recreate the pod")
            options.pid = f"ns:{path}"
        if options.hostname is None and "uts" in share:
            options.hostname = record.data.get("hostname") or None
