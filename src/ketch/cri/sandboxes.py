"""The CRI's pods and containers on ketch's: what each RuntimeService request does to the store,
independent of gRPC (the servicer in :mod:`ketch.cri.server` turns messages into these calls and
errors into statuses).

A pod sandbox is a :class:`ketch.containers.pods.PodRecord` whose ``data["cri"]`` keeps the
kubelet's config (as the JSON of its message) and whose ``data["network"]`` keeps the CNI
attachment; a container is an engine container whose record's ``meta["cri"]`` keeps the
kubelet's metadata, labels and annotations (returned unaltered, as the API asks).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ketch.containers import pods as pod_model
from ketch.containers.options import CreateOptions
from ketch.cri.config import CRIConfig
from ketch.errors import DuplicateNameError, InvalidInputError, KetchError, NotFoundError, log_cleanup_failure

log = logging.getLogger(__name__)

# the CRI's MountPropagation (as the JSON form of its message names it) as a mount option
PROPAGATION = {"PROPAGATION_PRIVATE": "rprivate", "PROPAGATION_HOST_TO_CONTAINER": "rslave",
               "PROPAGATION_BIDIRECTIONAL": "rshared"}


class NoSuchSandboxError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"pod sandbox {name!r} not found")


def pod_name(metadata: dict) -> str:
    """The store's unique name of a pod: the kubelet's metadata, attempt included (as
    containerd names it), so a second RunPodSandbox of the same attempt is refused."""
    for key in ("name", "namespace", "uid"):
        if not metadata.get(key):
            raise InvalidInputError(f"the pod sandbox's metadata.{key} is empty")
    return f"k8s_{metadata['name']}_{metadata['namespace']}_{metadata['uid']}_{metadata.get('attempt', 0)}"


def cgroup_parent(parent: str, driver: str) -> str | None:
    """The kubelet's cgroup parent as a cgroupfs path. With the systemd driver a slice name
    (``kubepods-burstable-pod1.slice``) expands as systemd places it
    (``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice``)."""
    if not parent:
        return None
    if parent.endswith(".slice") and "/" not in parent:
        stem = parent[:-len(".slice")]
        parts = stem.split("-")
        path = ""
        for n in range(1, len(parts) + 1):
            path += "/" + "-".join(parts[:n]) + ".slice"
        return path
    if driver == "systemd" and ":" in parent:  # slice:prefix:name
        return cgroup_parent(parent.split(":", 1)[0], driver)
    return parent if parent.startswith("/") else "/" + parent


def _own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _can_lower_oom_score_adj() -> bool:
    """Whether this process has CAP_SYS_RESOURCE (needed to set a value below its own)."""
    from ketch.runtime import capabilities

    try:
        return bool(capabilities.held() & (1 << capabilities.NUMBERS["CAP_SYS_RESOURCE"]))
    except OSError:
        return False


class Sandboxes:
    """RuntimeService's work on one store (one per server thread: an engine is not shared)."""

    def __init__(self, config: CRIConfig, engine, remove_later=None) -> None:
        """``remove_later(container_id)``: finishes a removal after the request has answered
        (a long-running server's; without it a removal is done before the answer)."""
        from ketch.cri.cni import Network

        self.config = config
        self.engine = engine
        self.remove_later = remove_later
        self.store = engine.store
        self.pods = pod_model.Pods(self.store)
        self.network = Network(config.cni_conf_dirs, config.cni_bin_dirs)

    # -- pods ------------------------------------------------------------------------------

    def sandbox(self, pod_id: str) -> pod_model.PodRecord:
        if not pod_id:
            raise InvalidInputError("the pod sandbox id is empty")
        try:
            record = self.pods.get(pod_id)
        except NotFoundError as exc:
            raise NoSuchSandboxError(pod_id) from exc
        if "cri" not in record.data:
            raise NoSuchSandboxError(pod_id)  # a pod of ``ketch pod``, not the kubelet's
        return record

    def run_pod(self, config: dict, handler: str) -> str:
        """RunPodSandbox: pinned namespaces, the CNI network (unless the host's), ready."""
        self.config.handler(handler)
        metadata = config.get("metadata") or {}
        name = pod_name(metadata)
        linux = config.get("linux") or {}
        security = linux.get("securityContext") or {}
        namespaces = security.get("namespaceOptions") or {}
        host_network = namespaces.get("network", "POD") == "NODE"
        host_ipc = namespaces.get("ipc", "POD") == "NODE"
        sysctls = dict(linux.get("sysctls") or {})
        if host_network and any(k.startswith("net.") for k in sysctls):
            raise InvalidInputError("net.* sysctls cannot be set for a pod in the host's network namespace")
        if host_ipc and any(k.startswith(("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")) for k in sysctls):
            raise InvalidInputError("IPC sysctls cannot be set for a pod in the host's IPC namespace")
        data = {"cri": config, "handler": handler or self.config.default_handler}
        record = self.pods.create(name, hostname=config.get("hostname", "") if not host_network else "",
                                  share_pid=namespaces.get("pid", "POD") == "POD", host_network=host_network,
                                  host_ipc=host_ipc, sysctls=sysctls, data=data,
                                  pid_holder=self.config.pid_namespace_holder)
        try:
            if not host_network:
                self._network_up(record, config)
            self._write_resolv_conf(record, config.get("dnsConfig") or {})
            return self.pods.ready(record.id).id
        except BaseException:
            try:
                self.remove_pod(record.id)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"pod {name}: undoing RunPodSandbox", exc)
            raise

    def _network_up(self, record: pod_model.PodRecord, config: dict) -> None:
        metadata = config.get("metadata") or {}
        ports = [{"hostPort": p.get("hostPort", 0), "containerPort": p.get("containerPort", 0),
                  "protocol": p.get("protocol", "TCP").lower(), "hostIP": p.get("hostIp", "")}
                 for p in config.get("portMappings") or [] if p.get("hostPort")]
        args = {"K8S_POD_NAMESPACE": metadata.get("namespace", ""), "K8S_POD_NAME": metadata.get("name", ""),
                "K8S_POD_INFRA_CONTAINER_ID": record.id, "K8S_POD_UID": metadata.get("uid", "")}
        netns = record.namespace_path("net")
        # recorded before ADD: a server killed during it leaves what DEL needs
        self.pods.update_data(record.id, network_pending={"args": args, "ports": ports})
        attachment = self.network.add(record.id, netns or "", args, ports)
        self.pods.update_data(record.id, network=attachment, network_pending=None)

    def _network_down(self, record: pod_model.PodRecord) -> None:
        attachment = record.data.get("network")
        pending = record.data.get("network_pending")
        if attachment is None and pending:  # ADD was under way: DEL with the config as it is now
            from ketch.cri.cni import find_config

            found = find_config(self.config.cni_conf_dirs)
            if found is not None:
                attachment = {"config": found[1], "result": None, "args": pending["args"],
                              "runtime_config": {"portMappings": pending["ports"]} if pending["ports"] else {}}
        if attachment is None:
            return
        netns = record.namespace_path("net")
        self.network.delete(record.id, netns if netns and os.path.exists(netns) else None, attachment)
        self.pods.update_data(record.id, network=None, network_pending=None, released_ips=self.pod_ips(record))

    def _write_resolv_conf(self, record: pod_model.PodRecord, dns: dict) -> None:
        if not (dns.get("servers") or dns.get("searches") or dns.get("options")):
            return
        lines = [f"search {' '.join(dns['searches'])}"] if dns.get("searches") else []
        lines += [f"nameserver {s}" for s in dns.get("servers") or []]
        lines += [f"options {' '.join(dns['options'])}"] if dns.get("options") else []
        path = os.path.join(str(self.store.runroot), "pods", record.id, "resolv.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.pods.update_data(record.id, resolv_conf=path)

    def containers_of(self, pod_id: str, *, removing: bool = False) -> list:
        """The pod's containers (``removing``: with those removed whose removal is not finished)."""
        return [r for r in self.engine.records() if (r.meta.get("cri") or {}).get("pod") == pod_id and
                (removing or not r.meta["cri"].get("removing"))]

    def stop_pod(self, pod_id: str) -> None:
        """StopPodSandbox: its containers killed, its network given back; idempotent for a pod
        that exists (an id never known is NotFound, as containerd answers; the kubelet takes
        that as stopped)."""
        record = self.sandbox(pod_id)
        for container in self.containers_of(record.id):
            self.stop_container(container.id, 0)
        self._network_down(record)
        self.pods.stop(record.id)

    def remove_pod(self, pod_id: str) -> None:
        """RemovePodSandbox: its containers removed, then the pod; idempotent."""
        try:
            record = self.sandbox(pod_id)
        except NotFoundError:
            return
        for container in self.containers_of(record.id, removing=True):
            self.finish_removal(container.id)
        self._network_down(record)
        self.pods.remove(record.id)

    def check_network(self, record: pod_model.PodRecord) -> str:
        """CNI CHECK of a ready pod's network: "ok", or what is wrong ("" without a CNI network)."""
        from ketch.cri.cni import CNIError

        attachment = record.data.get("network")
        netns = record.namespace_path("net")
        if attachment is None or record.state != pod_model.READY or not netns:
            return ""
        try:
            self.network.check(record.id, netns, attachment)
        except CNIError as exc:
            return str(exc)
        return "ok"

    def pod_ips(self, record: pod_model.PodRecord) -> list[str]:
        from ketch.cri.cni import pod_ips

        attachment = record.data.get("network") or {}
        return pod_ips(attachment.get("result") or {})

    # -- containers ------------------------------------------------------------------------

    def create_container(self, pod_id: str, config: dict, sandbox_config: dict, image: dict) -> str:
        """CreateContainer: an engine container in the pod's namespaces, not started."""
        record = self.sandbox(pod_id)
        if record.state != pod_model.READY:
            raise InvalidInputError(f"pod sandbox {pod_id} is not ready: cannot create containers in it")
        metadata = config.get("metadata") or {}
        if not metadata.get("name"):
            raise InvalidInputError("the container's metadata.name is empty")
        name = f"{record.name}_{metadata['name']}_{metadata.get('attempt', 0)}"
        pod_config = record.data["cri"]
        options = self._options(record, pod_config, config, name)
        log_path = ""
        if pod_config.get("logDirectory") and config.get("logPath"):
            log_path = os.path.join(pod_config["logDirectory"], config["logPath"])
        else:
            log_path = os.path.join(self.config.log_directory, record.id, f"{metadata['name']}_"
                                    f"{metadata.get('attempt', 0)}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        options.log_opts = {"path": log_path}
        meta = {"cri": {"pod": record.id, "metadata": metadata, "labels": config.get("labels") or {},
                        "annotations": config.get("annotations") or {}, "image": config.get("image") or {},
                        "image_ref": image["ref"], "log_path": log_path, "mounts": config.get("mounts") or [],
                        "resources": (config.get("linux") or {}).get("resources") or {}}}
        try:
            return self.engine.create(image["id"], options, pull="never", extra_meta=meta)
        except DuplicateNameError:
            # the name may be held by a container removed whose removal is not finished yet
            try:
                previous = self.engine.record(name)
            except NotFoundError:
                previous = None  # (its removal finished meanwhile)
            if previous is not None:
                if not (previous.meta.get("cri") or {}).get("removing"):
                    raise
                self.finish_removal(previous.id)
            return self.engine.create(image["id"], options, pull="never", extra_meta=meta)

    def _options(self, pod: pod_model.PodRecord, pod_config: dict, config: dict, name: str) -> CreateOptions:
        linux = config.get("linux") or {}
        security = linux.get("securityContext") or {}
        resources = linux.get("resources") or {}
        handler = self.config.handler(pod.data.get("handler", ""))
        options = CreateOptions(name=name, log_driver="k8s-file", read_only_tmpfs=False, image_volume="ignore",
                                http_proxy=False, no_healthcheck=True, stop_timeout=0)
        options.runtime = handler.path or None
        command, args = list(config.get("command") or []), list(config.get("args") or [])
        options.entrypoint = command or None
        options.command = args or ([] if command else None)
        if config.get("workingDir"):
            options.workdir = config["workingDir"]
        options.env = [f"{e.get('key', '')}={e.get('value', '')}" for e in config.get("envs") or []]
        options.interactive = bool(config.get("stdin"))
        options.stdin_once = bool(config.get("stdinOnce"))
        options.tty = bool(config.get("tty"))
        options.labels = dict(config.get("labels") or {})
        options.annotations = dict(config.get("annotations") or {})
        # namespaces: the pod's pinned ones, or the host's, or the container's own PID namespace
        pod_security = (pod_config.get("linux") or {}).get("securityContext") or {}
        pod_namespaces = pod_security.get("namespaceOptions") or {}
        namespaces = security.get("namespaceOptions") or {}
        if pod_namespaces.get("network") == "NODE":
            options.network = "host"
        else:
            options.network = f"ns:{pod.namespace_path('net')}"
        options.ipc = "host" if pod_namespaces.get("ipc") == "NODE" else f"ns:{pod.namespace_path('ipc')}"
        options.uts = "host" if pod_namespaces.get("network") == "NODE" else f"ns:{pod.namespace_path('uts')}"
        pid_mode = namespaces.get("pid", "POD")  # (the API's default; the kubelet sends CONTAINER for its pods)
        if pid_mode == "NODE":
            options.pid = "host"
        elif pid_mode == "POD":
            path = pod.namespace_path("pid")
            if path is None:
                raise InvalidInputError("the pod does not share a PID namespace (its holder is gone)")
            options.pid = f"ns:{path}"
        elif pid_mode == "TARGET":
            if not namespaces.get("targetId"):
                raise InvalidInputError("namespace mode TARGET needs a target_id")
            options.pid = f"container:{namespaces['targetId']}"
        dns = pod_config.get("dnsConfig") or {}
        if options.network != "host":
            options.dns = list(dns.get("servers") or [])
            options.dns_search = list(dns.get("searches") or [])
            options.dns_options = list(dns.get("options") or [])
        options.hostname = pod_config.get("hostname") or None
        parent = cgroup_parent((pod_config.get("linux") or {}).get("cgroupParent", ""), self.config.cgroup_driver)
        if parent:
            options.cgroup_parent = parent
        options.mounts = [self._mount(m) for m in config.get("mounts") or []]
        options.devices = [f"{d['hostPath']}:{d.get('containerPath') or d['hostPath']}:{d.get('permissions') or 'rwm'}"
                           for d in config.get("devices") or []]
        self._security(options, security)
        self._resources(options, resources)
        return options

    @staticmethod
    def _mount(mount: dict) -> dict:
        if mount.get("image"):
            raise InvalidInputError("image volume mounts are not supported yet")
        source = mount.get("hostPath", "")
        destination = mount.get("containerPath", "")
        if not source or not destination.startswith("/"):
            raise InvalidInputError(f"invalid mount {source!r} -> {destination!r}: both paths are needed, the "
                                    "container's absolute")
        real = os.path.realpath(source)  # a symbolic link: its target is mounted, as the API asks
        if not os.path.exists(real):
            raise InvalidInputError(f"the host path {source} of a mount does not exist")
        options = ["rbind", "ro" if mount.get("readonly") else "rw",
                   PROPAGATION.get(mount.get("propagation", ""), "rprivate")]
        return {"kind": "bind", "source": real, "destination": destination, "options": options}

    def _security(self, options: CreateOptions, security: dict) -> None:
        if security.get("runAsUsername"):
            user = security["runAsUsername"]
        elif "runAsUser" in security:
            user = str(security["runAsUser"].get("value", 0))
        else:
            user = None
        if "runAsGroup" in security:
            if user is None:
                raise InvalidInputError("run_as_group needs run_as_user or run_as_username")
            user = f"{user}:{security['runAsGroup'].get('value', 0)}"
        options.user = user
        options.groups_include_primary = True  # as containerd and the kubelet's other runtimes set groups
        options.group_add = [str(g) for g in security.get("supplementalGroups") or []]
        options.read_only = bool(security.get("readonlyRootfs"))
        options.privileged = bool(security.get("privileged"))
        capabilities = security.get("capabilities") or {}
        added = [c.upper().removeprefix("CAP_") for c in capabilities.get("addCapabilities") or []]
        dropped = [c.upper().removeprefix("CAP_") for c in capabilities.get("dropCapabilities") or []]
        # the CRI's default set (containerd's and Docker's, configurable) over the engine's (podman's)
        engine_defaults = {c.upper().removeprefix("CAP_") for c in self.engine.conf.default_capabilities}
        extra = [c for c in self.config.default_capabilities if c not in engine_defaults and c not in dropped]
        gone = [c for c in engine_defaults if c not in self.config.default_capabilities]
        options.cap_add = ([] if "ALL" in dropped else extra) + added
        options.cap_drop = gone + dropped
        options.no_new_privileges = bool(security.get("noNewPrivs"))
        if security.get("maskedPaths"):
            options.masked_paths = list(security["maskedPaths"])
        if security.get("readonlyPaths"):
            options.readonly_paths = list(security["readonlyPaths"])
        seccomp = security.get("seccomp")
        if seccomp is not None:
            kind = seccomp.get("profileType", "RuntimeDefault")
            if kind == "Unconfined":
                options.seccomp_profile = "unconfined"
            elif kind == "Localhost":
                path = seccomp.get("localhostRef", "")
                if not path.startswith("/") or not os.path.isfile(path):
                    raise InvalidInputError(f"seccomp profile {path!r} not found (a Localhost profile is an "
                                            "absolute path on the node)")
                options.seccomp_profile = path
        else:
            legacy = security.get("seccompProfilePath", "")
            if legacy in ("", "unconfined"):
                options.seccomp_profile = "unconfined"  # the CRI's default: no profile
            elif legacy.startswith("localhost/"):
                options.seccomp_profile = legacy[len("localhost"):]
        apparmor = security.get("apparmor") or {}
        if apparmor.get("profileType") == "Localhost" or security.get("apparmorProfile", "").startswith("localhost/"):
            raise InvalidInputError("AppArmor is not enabled on this host: a Localhost AppArmor profile cannot be "
                                    "applied")
        if any((security.get("selinuxOptions") or {}).values()):
            log.warning("SELinux options of container %s ignored: SELinux is not enabled on this host", options.name)

    def _resources(self, options: CreateOptions, resources: dict) -> None:
        def number(key: str) -> int:
            return int(resources.get(key) or 0)

        options.cpu_period = number("cpuPeriod") or None
        options.cpu_quota = number("cpuQuota") or None
        options.cpu_shares = number("cpuShares") or None
        options.memory = number("memoryLimitInBytes") or None
        options.cpuset_cpus = resources.get("cpusetCpus") or None
        options.cpuset_mems = resources.get("cpusetMems") or None
        if number("memorySwapLimitInBytes"):
            options.memory_swap = number("memorySwapLimitInBytes")
        limits = {h["pageSize"]: int(h.get("limit") or 0) for h in resources.get("hugepageLimits") or []
                  if h.get("pageSize")}
        from ketch.containers.views import cgroup_controllers

        if limits and "hugetlb" not in cgroup_controllers():
            # the kubelet sends a limit for every page size the node has: without the controller
            # they are dropped, as containerd does (tolerate_missing_hugetlb_controller)
            log.info("container %s: hugepage limits ignored: no hugetlb cgroup controller here", options.name)
            limits = {}
        options.hugepage_limits = limits
        if "oomScoreAdj" in resources:
            options.oom_score_adj = self._oom_score_adj(number("oomScoreAdj"), options.name or "")

    def _oom_score_adj(self, wanted: int, name: str) -> int:
        restrict = self.config.restrict_oom_score_adj
        if restrict is None:
            restrict = not _can_lower_oom_score_adj()
        own = _own_oom_score_adj()
        if restrict and wanted < own:
            log.info("container %s: oom_score_adj %d raised to the server's own %d (this host does not let the "
                     "server lower it: no CAP_SYS_RESOURCE; restrict_oom_score_adj)", name, wanted, own)
            return own
        return wanted

    def start_container(self, container_id: str) -> None:
        record = self.container(container_id)
        current = self.engine.status(record.id)
        if current["status"] != "created" and not (current["status"] == "exited" and
                                                   not current.get("started_at")):
            raise InvalidInputError(f"container {container_id} is {current['status']}: only a created container "
                                    "can be started")
        pod = self.sandbox(record.meta["cri"]["pod"])
        if pod.state != pod_model.READY:
            raise InvalidInputError(f"the pod sandbox of container {container_id} is not ready")
        self.engine.start(record.id)

    def container(self, container_id: str):
        if not container_id:
            raise InvalidInputError("the container id is empty")
        record = self.engine.record(container_id)
        if "cri" not in record.meta or record.meta["cri"].get("removing"):
            raise NotFoundError(f"container {container_id!r} not found")
        return record

    def stop_container(self, container_id: str, timeout: int) -> None:
        """StopContainer: the stop signal, KILL after ``timeout`` seconds (0: at once); a stopped
        container is no error."""
        record = self.container(container_id)
        current = self.engine.status(record.id)
        if current["status"] in ("running", "paused"):
            self.engine.stop(record.id, max(0, int(timeout)))
            # its tree unmounted now, not at RemoveContainer (which the kubelet makes wait on)
            self.engine.cleanup(record.id)

    def remove_container(self, container_id: str) -> None:
        """RemoveContainer; idempotent. A container that does not run is marked removed in the
        store (from then on it is gone for every request) and removed after the answer, as
        containerd leaves its snapshots to a later collection; a server killed before that
        finishes it when it starts again (:meth:`finish_removals`)."""
        try:
            record = self.container(container_id)
        except NotFoundError:
            return  # (removed already: done, as the API asks)
        if self.remove_later is None or self.engine.status(record.id)["status"] in ("running", "paused"):
            self.engine.remove(record, force=True)
            return
        self.store.update_container_metadata(record.id, {"cri": {**record.meta["cri"], "removing": True}})
        self.remove_later(record.id)

    def finish_removal(self, container_id: str) -> None:
        """The removal of a container, done now (whether or not it was marked removed)."""
        try:
            self.engine.remove(self.engine.record(container_id), force=True)
        except NotFoundError:
            pass  # (finished by someone else meanwhile)

    def finish_removals(self) -> None:
        """Containers marked removed whose removal a killed server did not finish."""
        for record in self.engine.records():
            if (record.meta.get("cri") or {}).get("removing"):
                self.finish_removal(record.id)

    def container_state(self, record) -> tuple[str, dict[str, Any]]:
        """The CRI state of a container (CONTAINER_CREATED, _RUNNING, _EXITED, _UNKNOWN) and its
        engine state."""
        current = self.engine._status(record)  # (the record in hand: no second lookup)
        status = current.get("status")
        if status in ("running", "paused"):
            return "CONTAINER_RUNNING", current
        if status in ("created", "initialized", "configured"):
            return "CONTAINER_CREATED", current
        if status in ("exited", "stopped"):
            return ("CONTAINER_EXITED" if current.get("started_at") or current.get("exit_code") is not None
                    else "CONTAINER_CREATED"), current
        return "CONTAINER_UNKNOWN", current
