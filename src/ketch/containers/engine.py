"""The container engine: podman's everyday container commands over the store and the runtime.

There is no daemon. A container is a record in the store (its options, in the same transaction
that makes its writable layer) plus ``userdata/`` beside it (config.json, the /etc files it gets,
``state.json``, the log). ``run`` and ``start --attach`` create the container from this process
through the runtime library, so its init is this process's child: exit status, signals, inherited
fds (socket activation) and sd_notify work as for any program. A detached container gets a
monitor (ketch.containers.monitor), one per container. Any ketch process sees and manages every
container of the store: state lives in files, and is checked against the process table.
"""

from __future__ import annotations

import builtins
import json
import os
import signal as signals
import sys
import time
from pathlib import Path

from ketch.containers import logs as logfiles
from ketch.containers import state as states
from ketch.containers import systemd
from ketch.containers.config import EngineConfig
from ketch.containers.files import ContainerFiles
from ketch.containers.networking import ContainerNetworking
from ketch.containers.options import CreateOptions
from ketch.containers.stdio import ContainerStdio, OutputTee
from ketch.errors import (
    CannotExecuteError,
    ContainerCommandError,
    ContainerCommandNotFoundError,
    ContainerError,
    ContainerRunningError,
    ContainerStateError,
    DuplicateNameError,
    InUseError,
    InvalidInputError,
    KetchError,
    NoSuchContainerError,
    NotFoundError,
    UnsupportedError,
    command_error,
    log_cleanup_failure,
)
from ketch.records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.spectypes import Spec

KIND = "container"
EXIT_ENGINE_FAILED = 125  # podman's: ketch itself failed


TIMEOUT_EXIT = 255  # what podman reports for a container ended by --timeout
MONITOR_PIDFILE = "conmon.pid"  # in userdata: the monitor's pid (podman's name, for generate systemd)


class ContainerRecord(Record):
    """A container as the engine knows it: its store row (id, name, image, creation time), its
    metadata and, parsed from it, its ``CreateOptions``. Its state is not here: it lives in files
    (``state.json``), checked against the process table (see :mod:`ketch.containers.state`)."""

    id: str
    name: str
    image: str  # the image id ("" for none: a container of the engine always has one)
    created: float
    meta: dict[str, Any]
    options: CreateOptions


class ProcessSetup(Record):
    """What a caller of :meth:`Engine.run_process` changes in the one path of a container's
    process: the image config to take the environment, user and working directory from (a
    working container's, not its base image's), the spec (a build's profile), mounts added last,
    and whether the run is recorded as container events (a build step's is not)."""

    image: Any = None  # ImageConfig | None: the record's image
    adjust_spec: Any = None  # Callable[[Spec], None] | None
    extra_mounts: list[Any] = field(default_factory=list)
    events: bool = True
    finished: Any = None  # Callable[[], None] | None: once the process is gone, before the release


class RunResult(Record):
    """What ``Engine.run`` returns: the container's id, and when it ran in the foreground its exit
    status (and its output, when captured). ``exit_code`` is None for a detached run."""

    exit_code: int | None
    container_id: str
    stdout: bytes | None = None
    stderr: bytes | None = None


def _signal_number(name: str | int) -> int:
    from ketch.runtime.container import parse_signal

    return parse_signal(str(name))


class Engine(ContainerNetworking, ContainerFiles, ContainerStdio):
    def __init__(self, store=None, *, root: str | None = None, runroot: str | None = None,
                 storage_driver: str | None = None, conf: EngineConfig | None = None) -> None:
        if store is None:
            from ketch.storage.store import Store

            store = Store(root, runroot, storage_driver)
        self.store = store
        self._conf = conf
        self._network_helper: Any = None  # a child loading the netlink library (bridge.Helper)
        self._pending_network: Any = None  # the network set-up of the container being started

    @property
    def conf(self) -> EngineConfig:
        if self._conf is None:
            self._conf = EngineConfig.load(cache_dir=str(self.store.runroot))
        return self._conf

    # -- records ------------------------------------------------------------------------

    def record(self, name_or_id: str) -> ContainerRecord:
        """The container's record (its metadata and options), by name, id or id prefix."""
        return self._record(name_or_id)

    def records(self) -> builtins.list[ContainerRecord]:
        """Every container's record, oldest first."""
        rows = sorted((dict(r) for r in self.store.containers() if r["kind"] == KIND), key=lambda r: r["created"])
        # a row whose metadata has not changed gives the record parsed before (a CRI server lists
        # every container every second; parsing the options is most of that)
        cache = self.__dict__.setdefault("_parsed_records", {})
        out = []
        for row in rows:
            key = (row["id"], row["name"], row["image"], row["metadata"])
            found = cache.get(row["id"])
            if found is None or found[0] != key:
                found = cache[row["id"]] = (key, self._record_of(row))
            out.append(found[1])
        for gone in set(cache) - {row["id"] for row in rows}:
            del cache[gone]
        return out

    def _record(self, name_or_id: str) -> ContainerRecord:
        try:
            row = self.store.container(name_or_id)
        except NotFoundError as exc:
            raise NoSuchContainerError(name_or_id) from exc
        if row["kind"] != KIND:
            raise NoSuchContainerError(name_or_id)
        return self._record_of(row)

    @staticmethod
    def _record_of(row: dict) -> ContainerRecord:
        meta = json.loads(row["metadata"])
        return ContainerRecord(row["id"], row["name"], row["image"] or "", row["created"], meta,
                               CreateOptions.from_dict(meta.get("options") or {}))

    def _image_record(self, image_id: str):
        """The image a container was made from; looked up once per image while ``list`` runs."""
        cache = self.__dict__.get("_listing_images")
        if cache is None:
            return self.store.lookup(image_id)
        if image_id not in cache:
            try:
                cache[image_id] = self.store.lookup(image_id)
            except KetchError as exc:
                cache[image_id] = exc
        found = cache[image_id]
        if isinstance(found, KetchError):
            raise found
        return found

    def _userdata(self, container_id: str) -> str:
        return str(self.store.root / "containers" / container_id / "userdata")

    def _driver(self, options: CreateOptions):
        from ketch.containers import driver

        return driver.for_container(options.runtime, str(self.store.runroot))

    def status(self, name_or_id: str) -> dict:
        """The container's state, checked against the process table."""
        record = self._record(name_or_id)
        return self._status(record)

    def _status(self, record: ContainerRecord) -> dict:
        current = states.read(self._userdata(record.id))
        if current.get("status") == "initialized" and not states.alive(current.get("monitor_pid"),
                                                                       current.get("monitor_start")):
            current.update(status="created")  # its monitor was killed: nothing waits to start it
        if current.get("status") == "running":
            if states.alive(current.get("pid"), current.get("pid_start")):
                # paused: as pause and unpause recorded it (asking the runtime, which reads the
                # cgroup's freezer, cost ps a third of its time per container)
                if current.get("paused"):
                    current["status"] = "paused"
                return current
            # Exited: its monitor records how in a moment (an exit status seen as missing would
            # be a lie); unless the monitor was killed too.
            deadline = time.monotonic() + 5
            while current.get("status") == "running" and time.monotonic() < deadline and \
                    current.get("monitor_pid") != os.getpid() and \
                    states.alive(current.get("monitor_pid"), current.get("monitor_start")):
                time.sleep(0.01)
                current = states.read(self._userdata(record.id))
            if current.get("status") == "running" and not states.alive(current.get("pid"), current.get("pid_start")):
                # gone without anyone recording how: the monitor or ``run`` was killed
                current.update(status="exited", exit_code=current.get("exit_code"), pid=0, stale=True)
            else:
                return self._status(record) if current.get("status") == "running" else current
        return current

    def latest(self) -> str:
        """The id of the container created last (podman's ``--latest``)."""
        rows = [r for r in self.store.containers() if r["kind"] == KIND]
        if not rows:
            raise NotFoundError("no containers to act on: there is no latest container")
        return max(rows, key=lambda r: r["created"])["id"]

    # -- create ---------------------------------------------------------------------------

    def create(self, image: str, options: CreateOptions | None = None, *, pull: str = "missing",
               context=None, replace: bool = False, progress=None, extra_meta: dict | None = None) -> str:
        """A new container of ``image`` (pulled as ``pull`` says); its id. ``replace``: a container
        of the same name is removed first (podman's ``--replace``). ``extra_meta``: what a layer
        above keeps in the container's record (the CRI server's metadata), under its own keys."""
        options = (options or CreateOptions()).check()
        from ketch.containers import names
        from ketch.containers.images import find_or_pull

        if options.pod and "cri" not in (extra_meta or {}):  # --pod: the pod's namespaces (the CRI sets its own)
            from ketch.containers.pods import PodEngine

            PodEngine(self).join_options(options)

        for name in self._network_names(options):
            self.networks().get(name)  # an unknown network fails now, not at start
        for mode in (options.network, options.pid, options.ipc, options.uts):
            if mode and mode.startswith("container:"):
                self._record(mode.split(":", 1)[1])  # the container to join must exist
        for name in options.requires:
            self._record(name)  # --requires: it must exist
        if options.cidfile and os.path.exists(options.cidfile):
            raise ContainerError(f"container id file exists. Ensure another container is not using it or delete "
                                 f"{options.cidfile}")
        if options.secrets:
            from ketch.containers.secrets import Secrets

            secrets = Secrets(self.store)
            for secret in options.secrets:
                secrets.get(secret["name"])  # an unknown secret fails now
        if options.volumes_from:
            options.mounts = list(options.mounts) + self._mounts_from(options.volumes_from)
        record = find_or_pull(self.store, image, pull, context, progress=progress)
        if options.init:
            self.conf.init_binary(options.init_path)  # fails now, not at start
        image_config = record.parsed_config.container_config
        options.labels = {**(image_config.get("Labels") or {}), **options.labels}
        if options.healthcheck is None and not options.no_healthcheck:
            options.healthcheck = docker_healthcheck(image_config.get("Healthcheck"))
        if options.no_healthcheck:
            options.healthcheck = None
        if replace and options.name:
            try:
                self.remove(options.name, force=True)
            except NotFoundError:
                pass
        from ketch.containers import keepid

        keep = keepid.parse(options.userns, self.store.rootless)  # (refused now, not at start)
        self._make_anonymous_volumes(options, image_config)
        meta = {**(extra_meta or {}), "options": options.to_dict(), "image_name": image}
        if keep is not None:  # (the store mounts the root file system through the mapping)
            meta["id_mappings"] = keep.fuse_options()
        elif options.userns.split(":", 1)[0] == "auto":
            taken = []
            for other in self.store.containers():  # (ranges of the store's other auto containers)
                mapping = json.loads(other["metadata"] or "{}").get("id_mappings")
                if mapping and json.loads(other["metadata"]).get("userns_auto"):
                    entry = keepid.mappings_of(mapping["uid"])[0]
                    taken.append((entry["hostID"], entry["size"]))
            # (the range's size from the owners of the image's files and its /etc/passwd and
            # /etc/group, as podman sizes it)
            uids, gids = self.store.file_owners(record.top_layer)
            image_root = str(self.store.mount_image(record.id)) if record.top_layer else None
            try:
                meta["id_mappings"] = keepid.allocate_auto(options.userns, taken, image_root,
                                                           max(uids | gids, default=-1))
            finally:
                if image_root:
                    self.store.unmount_image(record.id)
            meta["userns_auto"] = True
        name = options.name or names.generate()
        for _ in range(5):
            try:
                container_id = self.store.create_container(record.id, name, kind=KIND, metadata=meta)
                break
            except DuplicateNameError as exc:
                if options.name:
                    self._remove_volumes(options.anonymous_volumes)
                    raise DuplicateNameError(f"the container name \"{name}\" is already in use; remove that "
                                             "container or choose another name (or use --replace)") from exc
                name = names.generate()
        else:
            raise ContainerError("could not find a free container name")
        os.makedirs(self._userdata(container_id), exist_ok=True)
        if options.cidfile:
            try:
                with open(options.cidfile, "x") as f:
                    f.write(container_id)
            except OSError as exc:
                self.remove(container_id, force=True)
                raise ContainerError(f"writing the container id file {options.cidfile}: {exc.strerror}") from exc
        # (the image's name resolved, as podman's event has it)
        self._record_event("create", ContainerRecord(container_id, name, record.id, time.time(), meta, options))
        return container_id

    def _make_anonymous_volumes(self, options: CreateOptions, image_config: dict) -> None:
        """``-v /path`` and the image's VOLUMEs each get a new volume of their own (podman's
        anonymous volumes, removed with the container by ``rm -v`` or ``--rm``)."""
        covered = {m["destination"] for m in options.mounts} | {t.split(":", 1)[0] for t in options.tmpfs}
        wanted = [m for m in options.mounts if m["kind"] == "volume" and not m["source"]]
        for path in sorted(image_config.get("Volumes") or {}):
            clean = os.path.normpath(path)
            if options.image_volume == "ignore":
                continue  # podman's --image-volume ignore: the image's own directory, in the container's layer
            if options.image_volume == "tmpfs" and clean not in covered:
                options.tmpfs = list(options.tmpfs) + [clean]
                covered.add(clean)
                continue
            if clean not in covered:
                wanted.append({"kind": "volume", "source": "", "destination": clean, "options": []})
                options.mounts = list(options.mounts) + [wanted[-1]]
                covered.add(clean)
        seen: dict[str, str] = {}
        for mount in wanted:
            if mount["destination"] in seen:
                mount["source"] = seen[mount["destination"]]
                continue
            volume = os.urandom(32).hex()
            self.volumes().create(volume, anonymous=True)
            mount["source"] = seen[mount["destination"]] = volume
            options.anonymous_volumes.append(volume)
        if seen:  # the same anonymous volume named twice is one mount
            unique, kept = [], set()
            for mount in options.mounts:
                key = (mount["kind"], mount["source"], mount["destination"])
                if key not in kept:
                    kept.add(key)
                    unique.append(mount)
            options.mounts = unique

    def _remove_volumes(self, names: builtins.list[str]) -> None:
        for volume in names:
            try:
                self.volumes().remove(volume, force=True, engine=self)
            except (NotFoundError, InUseError):
                pass

    def _event(self, status: str, container_id: str, name: str, image: str, labels: dict | None = None,
               exit_code: int | None = None) -> None:
        self.store.events.emit("container", status, id=container_id, name=name, image=image,
                               attributes=dict(labels or {}), exit_code=exit_code)

    def _record_event(self, status: str, record: ContainerRecord, exit_code: int | None = None) -> None:
        # the image's name is looked up once per container and process (a run records ~7 events)
        names = self.__dict__.setdefault("_event_image_names", {})
        if record.id not in names:
            from ketch.containers import views

            names[record.id] = views.image_name(self, record)
        self._event(status, record.id, record.name, names[record.id], record.options.labels, exit_code)

    def _mounts_from(self, sources: builtins.list[str]) -> builtins.list[dict]:
        """--volumes-from CTR[:ro|rw]: that container's volumes and binds (podman's)."""
        out = []
        for entry in sources:
            name, _, mode = entry.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidInputError(f"invalid --volumes-from {entry!r}: the mode is ro or rw")
            for mount in self._record(name).options.mounts:
                if mount["kind"] == "tmpfs":
                    continue
                options = [o for o in mount["options"] if o not in ("ro", "rw")] + ([mode] if mode else
                                                                                    [o for o in mount["options"]
                                                                                     if o in ("ro", "rw")])
                out.append({**mount, "options": options})
        return out

    # -- start, attached or detached ---------------------------------------------------

    def _prepare(self, record: ContainerRecord, *, listen_fds: int = 0, setup: ProcessSetup | None = None,
                 notify_socket: str | None = None) -> tuple[str, Spec]:
        """Mount the root file system, attach the networks, write the bundle; the bundle directory
        and the config. On failure everything taken so far is released."""
        options: CreateOptions = record.options
        container_id = record.id
        userdata = self._userdata(container_id)
        os.makedirs(userdata, exist_ok=True)
        if setup is not None and setup.image is not None:
            image = setup.image
        else:
            image = self.store.lookup(record.image).parsed_config if record.image else None
        states.update(userdata, mounted=True)  # before the mount: a kill in between leaves it removable
        rootfs = str(self.store.mount_container(container_id))
        try:
            joined = self._joined_namespaces(options)
            with self._network_attached(record, image) as (netns_path, addresses):
                config = self._write_bundle(record, image, rootfs, userdata, joined, netns_path, addresses,
                                            listen_fds, setup, notify_socket)
        except BaseException:
            self._release(record)
            raise
        return userdata, config

    def _write_bundle(self, record: ContainerRecord, image, rootfs: str, userdata: str, joined: dict[str, str],
                      netns_path: str | None, addresses: builtins.list[str], listen_fds: int,
                      setup: ProcessSetup | None = None, notify_socket: str | None = None) -> Spec:
        """/etc files, volumes, secrets and the OCI config of one start, written to the bundle."""
        from ketch.containers import spec as specs

        options = record.options
        container_id = record.id
        hostname = options.hostname or container_id[:12]
        base = specs.hosts_base(hostname, record.name, options, addresses, self.conf)
        states.update(userdata, hosts_base=base)
        specs.etc_files(userdata, hostname, options, record.meta.get("image_name", ""), record.image or "",
                        container_id, record.name, base + self._peer_hosts(container_id), self.conf)
        extra_mounts = []
        from ketch.containers import users

        user = users.resolve(rootfs, options.user if options.user is not None else
                             (image.container_config.get("User") if image else None) or "0")
        image_workdir = image.container_config.get("WorkingDir") if image else None
        if image_workdir and not options.workdir:
            _make_workdir(rootfs, image_workdir, user.uid, user.gid)
        if options.mounts:
            from ketch.containers import volumes
            from ketch.containers.volumes import MountSpec

            image_mounts: builtins.list[str] = []
            try:
                extra_mounts = volumes.to_oci(self.store, [MountSpec(**m) for m in options.mounts], rootfs,
                                              (user.uid, user.gid), image_mounts)
            finally:
                if image_mounts:
                    states.update(userdata, image_mounts=image_mounts)
        secret_env: builtins.list[str] = []
        if options.secrets:
            from ketch.containers.secrets import Secrets

            secret_mounts, secret_env = Secrets(self.store).for_container(options.secrets, userdata,
                                                                          (user.uid, user.gid))
            extra_mounts = secret_mounts + extra_mounts
        if setup is not None:
            extra_mounts = extra_mounts + list(setup.extra_mounts)
        from ketch.containers import keepid

        keep = keepid.parse(options.userns, self.store.rootless)
        if keep is not None:
            workdir = options.workdir or (image.container_config.get("WorkingDir") if image else None) or "/"
            extra_mounts = extra_mounts + keepid.user_entries(userdata, rootfs, keep, workdir)
        notify = notify_socket or (os.environ.get("NOTIFY_SOCKET") if options.sdnotify == "container" else None)
        config = specs.build(container_id=container_id, rootfs=rootfs, userdata=userdata, image=image,
                             options=options, conf=self.conf, listen_fds=listen_fds,
                             notify_socket=notify if notify and not notify.startswith("@") else None,
                             netns_path=netns_path, extra_mounts=extra_mounts, namespace_paths=joined,
                             secret_env=secret_env)
        auto = record.meta.get("id_mappings") if record.meta.get("userns_auto") else None
        if auto:  # --userns auto: the container's own range, as the store mounts its files
            config["linux"]["namespaces"].insert(0, {"type": "user"})
            config["linux"]["uidMappings"] = keepid.mappings_of(auto["uid"])  # type: ignore[typeddict-item]
            config["linux"]["gidMappings"] = keepid.mappings_of(auto["gid"])  # type: ignore[typeddict-item]
        if setup is not None and setup.adjust_spec is not None:
            setup.adjust_spec(config)
        with open(os.path.join(userdata, "config.json.tmp"), "w") as f:
            f.write(json.dumps(config))  # dumps uses the C encoder; dump iterates in Python
        os.replace(os.path.join(userdata, "config.json.tmp"), os.path.join(userdata, "config.json"))
        return config












    def _release(self, record: ContainerRecord) -> None:
        """Runtime state, network and root file system mount of a container that is not running."""
        container_id = record.id
        userdata = self._userdata(container_id)
        current = states.read(userdata)
        if current.get("status") == "initialized":
            from ketch.containers.monitor import release_initialized

            release_initialized(userdata)
            states.update(userdata, status="created")
        try:
            self._driver(record.options).delete(container_id)
        except KetchError as exc:
            log_cleanup_failure(__name__, f"{record.name}: deleting its runtime state", exc)
        self._release_network(record)
        current = states.read(userdata)
        for image_id in current.get("image_mounts") or []:
            try:
                self.store.unmount_image(image_id)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"{record.name}: unmounting image {image_id[:12]}", exc)
        if current.get("image_mounts"):
            states.update(userdata, image_mounts=[])
        if current.get("mounted"):
            self.store.unmount_container(container_id, force=True)
            states.update(userdata, mounted=False)

    def _check_startable(self, record: ContainerRecord) -> None:
        current = self._status(record)
        if current["status"] in ("running", "paused", "initialized"):
            raise InvalidInputError(f"container {record.name} is already running")
        if current.get("mounted"):
            self._release(record)  # what a killed run or monitor left

    def start(self, name_or_id: str, *, attach: bool = False, stdio: tuple[int, int, int] | None = None,
              sig_proxy: bool = True) -> int | None:
        """Start a created or exited container. ``attach``: in this process, returning its exit
        status; otherwise under a monitor, returning once it runs."""
        record = self._record(name_or_id)
        if attach:
            return self._run_attached(record, stdio=stdio, sig_proxy=sig_proxy)
        if self._status(record)["status"] in ("running", "paused"):
            return None  # podman: starting a running container is not an error
        self._start_detached(record)
        return None

    def _start_required(self, options: CreateOptions) -> None:
        """--requires: those containers run first (started here when they do not)."""
        for name in options.requires:
            required = self._record(name)
            if self._status(required)["status"] not in ("running", "paused"):
                self._start_detached(required)

    def run_process(self, record: ContainerRecord, *, setup: ProcessSetup, stdio=None) -> int:
        """A process in a container's tree run to its end in this process, through the same path
        as ``ketch run`` in the foreground (mount, networks, /etc files, mounts, spec, bundle,
        create/start/wait, and the release of all of it on every exit path, each step recorded in
        the container's state first, so a later process can undo what a killed one took). For
        the builder's working containers (``builder run``, every Dockerfile ``RUN``) and the
        layers to come (the CRI server's one-shot work). Its exit status."""
        try:
            return self._run_attached(record, stdio=stdio, setup=setup)
        except BaseException:
            self._finish_process(setup)
            self.release_process(record)  # (what is left of it: nothing, once released already)
            raise

    def release_process(self, record: ContainerRecord) -> None:
        """Release what a process of :meth:`run_process` took and still holds (a run killed
        halfway: its runtime state, network namespace and addresses, mounts), as its state
        records them; nothing when it was released already."""
        with self.store.lock(f"container-{record.id}"):
            self._release(record)

    @staticmethod
    def _finish_process(setup: ProcessSetup) -> None:
        finished, setup.finished = setup.finished, None  # once
        if finished is not None:
            finished()

    def _run_attached(self, record: ContainerRecord, *, stdio=None, sig_proxy: bool = True,
                      setup: ProcessSetup | None = None) -> int:
        options: CreateOptions = record.options
        if setup is None:
            self._start_required(options)
        container_id = record.id
        null_stdin = None
        if stdio is None and not options.interactive:
            # podman's: without -i the container's stdin is not ours
            null_stdin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            stdio = (null_stdin, 1, 2)
        from ketch import syscalls

        was_subreaper = syscalls.set_child_subreaper(True)  # the init is reparented to us
        try:
            return self._run_attached_with(record, options, container_id, stdio, sig_proxy, setup)
        finally:
            syscalls.set_child_subreaper(was_subreaper)  # a library caller is not left adopting orphans
            if null_stdin is not None:
                os.close(null_stdin)

    def _run_attached_with(self, record, options, container_id, stdio, sig_proxy,
                           setup: ProcessSetup | None = None) -> int:
        events = setup is None or setup.events
        with self.store.lock(f"container-{container_id}"):
            self._check_startable(record)
            listen_fds = systemd.listen_fds() if setup is None else 0
            userdata, _ = self._prepare(record, listen_fds=listen_fds, setup=setup)
            preserve = max(options.preserve_fds, listen_fds)
            driver = self._driver(options)
            log = tee = None
            if options.log_driver == "k8s-file":
                log = logfiles.LogWriter(self._log_path(record))
                if not options.tty:  # a terminal's copy is logged as it is made
                    tee = OutputTee(stdio, log)
            try:
                pid, master = driver.create(container_id, userdata, terminal=options.tty,
                                            stdio=tee.container_stdio if tee else stdio, preserve_fds=preserve)
                self._network_ready()  # set up meanwhile; the container starts only after it
            except BaseException as exc:
                if tee is not None:
                    tee.close()
                if log is not None:
                    log.close()
                try:
                    self._network_ready()
                except KetchError as network_exc:
                    log_cleanup_failure(__name__, f"{record.name}: the network set-up", network_exc)
                if setup is not None:
                    self._finish_process(setup)  # (while the tree is still mounted)
                self._release(record)
                states.update(userdata, status="created")
                error = self._start_error(exc)
                if error is exc:
                    raise
                raise error from exc
            if tee is not None:
                tee.created()
            states.started(userdata, pid=pid, pid_start=states.start_time(pid), started_at=time.time(),
                           monitor_pid=os.getpid(), monitor_start=states.start_time(os.getpid()),
                           stopped_by_user=False)
            if options.pidfile:
                _write_pidfile(options.pidfile, pid)
            if options.conmon_pidfile:
                _write_pidfile(options.conmon_pidfile, os.getpid())  # this process watches the container
        if events:
            self._record_event("init", record)

        def start() -> None:
            driver.start(container_id)
            if events:
                self._record_event("start", record)
                self._record_event("attach", record)
            if options.sdnotify == "conmon":
                systemd.notify(f"MAINPID={os.getpid()}\nREADY=1\n")

        from ketch.runtime.container import Runtime

        watchdog = _start_watchdog(pid, options.timeout) if options.timeout else None
        try:
            status = Runtime.wait(pid, master, start, forward_signals=sig_proxy, pump=tee,
                                  on_output=(lambda data: log.write("stdout", data)) if log and master else None,
                                  forward_stdin=options.interactive)
        except BaseException:
            if states.alive(pid, states.start_time(pid)):
                driver.kill(container_id, signals.SIGKILL)
            raise
        finally:  # the terminal's master is closed by the copy that used it
            if tee is not None:
                tee.close()
            if log is not None:
                log.close()
            if watchdog is not None and _stop_watchdog(watchdog):
                status = TIMEOUT_EXIT
        states.exited(userdata, status)
        if setup is not None and not events:  # (a build step's: released here, no events, no restart policy)
            with self.store.lock(f"container-{container_id}"):
                self._finish_process(setup)
                self._release(record)
            return status
        self._record_event("died", record, status)
        if options.restart_policy not in ("", "no") and not options.remove and \
                _restart_wanted(options, status, states.read(userdata)):
            # podman: a foreground container with a restart policy goes on in the background
            self.cleanup(container_id)
            try:
                self._start_detached(self._record(container_id))
            except KetchError as exc:
                log_cleanup_failure(__name__, f"{container_id[:12]}: restarting it (its restart policy)", exc)
            return status
        self.cleanup(container_id, remove=options.remove)
        return status

    @staticmethod
    def _start_error(exc: BaseException) -> BaseException:
        if isinstance(exc, CannotExecuteError):
            return command_error(exc, "container")
        if isinstance(exc, KetchError) and not isinstance(exc, ContainerError):
            return ContainerError(str(exc))
        return exc

    def _log_path(self, record: ContainerRecord) -> str:
        return record.options.log_opts.get("path") or os.path.join(self._userdata(record.id), states.LOG_FILE)

    def _monitor_args(self, record: ContainerRecord) -> dict:
        """What the monitor needs beyond the bundle: the container's restart policy, timeout,
        health check, log settings and what its events say."""
        from ketch.containers import views

        options: CreateOptions = record.options
        userdata = self._userdata(record.id)
        args: dict[str, Any] = {
            "name": record.name, "image_name": views.image_name(self, record), "labels": dict(options.labels),
            "restart_policy": options.restart_policy, "restart_retries": options.restart_retries,
            "timeout": options.timeout, "interactive": options.interactive,
            "stdin_once": options.stdin_once and not options.tty,
            "log_max_size": _log_size(options.log_opts.get("max-size")),
        }
        check = options.healthcheck
        if check and check.get("interval", 0) > 0:
            import ketch

            program = os.path.join(os.path.dirname(sys.executable), "ketch")
            command = [program] if os.access(program, os.X_OK) else [sys.executable, "-m", "ketch.cli.main"]
            command += ["--root", str(self.store.root), "--runroot", str(self.store.runroot), "healthcheck", "run",
                        record.id]
            with open(os.path.join(userdata, "healthcheck.argv"), "wb") as f:
                f.write(b"\0".join(a.encode() for a in command) + b"\0")
            args["health_interval"] = check["interval"]
            del ketch
        return args

    def _start_detached(self, record: ContainerRecord, *, init_only: bool = False) -> None:
        options: CreateOptions = record.options
        container_id = record.id
        self._start_required(options)
        proxy = None
        notify = os.environ.get("NOTIFY_SOCKET")
        if options.sdnotify == "container" and notify and not init_only:
            proxy = systemd.NotifyProxy(os.path.join(str(self.store.runroot), "notify", container_id[:12]))
        try:
            self._start_detached_locked(record, init_only, proxy)
            if proxy is not None and notify:
                # podman's: the container's READY=1 reaches systemd from us, with MAINPID the monitor
                monitor_pid = states.read(self._userdata(container_id)).get("monitor_pid") or 0
                proxy.wait_ready(notify, monitor_pid, lambda: self._status(record).get("status") == "running",
                                 record.name)
        finally:
            if proxy is not None:
                proxy.close()

    def _start_detached_locked(self, record: ContainerRecord, init_only: bool, proxy) -> None:
        import subprocess

        import ketch

        options: CreateOptions = record.options
        container_id = record.id
        with self.store.lock(f"container-{container_id}"):
            current = self._status(record)
            if current["status"] == "initialized" and not init_only:
                self._start_initialized(record)
                return
            self._check_startable(record)
            states.update(self._userdata(container_id), stopped_by_user=False)
            listen_fds = systemd.listen_fds()
            userdata, config = self._prepare(record, listen_fds=listen_fds,
                                             notify_socket=proxy.path if proxy is not None else None)
            try:
                self._network_ready()
            except BaseException:
                self._release(record)
                raise
            preserve = max(options.preserve_fds, listen_fds)
            if config["linux"].get("seccomp") and not options.runtime:
                # compiled (and cached) now: the monitor runs without site-packages' pyseccomp
                from ketch.runtime.container import Runtime

                Runtime(str(self.store.runroot / "runtime"))._seccomp_program(config["linux"])
            report_r, report_w = os.pipe()
            import fcntl

            # above the fds passed on (3 .. 3+preserve-1), which keep their numbers
            moved = fcntl.fcntl(report_w, fcntl.F_DUPFD_CLOEXEC, 3 + preserve)
            os.close(report_w)
            notify = os.environ.get("NOTIFY_SOCKET") if options.sdnotify == "conmon" else None
            args = {
                "id": container_id, "userdata": userdata, "bundle": userdata, "tty": options.tty,
                "log_driver": "none" if options.log_driver == "none" else "k8s-file",
                "log_path": self._log_path(record), "preserve_fds": preserve,
                "runtime": options.runtime, "run_dir": str(self.store.runroot), "report_fd": moved,
                "sys_path": [p for p in sys.path if p], "root": str(self.store.root),
                "runroot": str(self.store.runroot), "driver": self.store.driver_name, "remove": options.remove,
                "notify_ready": notify, "init_only": init_only, **self._monitor_args(record),
            }
            package_parent = str(Path(ketch.__file__).resolve().parent.parent)
            boot = ("import sys; sys.path.insert(0, sys.argv[2]); "
                    "from ketch.containers.monitor import main; main()")
            try:
                subprocess.Popen([sys.executable, "-S", "-c", boot, json.dumps(args), package_parent],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 pass_fds=(moved, *range(3, 3 + preserve)), start_new_session=True,
                                 close_fds=True)
            finally:
                os.close(moved)
            with os.fdopen(report_r, "rb") as f:
                answer = f.read().decode(errors="replace")
            if not answer.startswith("ok "):
                states.update(userdata, status="created")
                text = answer[6:] if answer.startswith("error ") else "the container's monitor died before it " \
                                                                       "started the container"
                if text.startswith("exec: ") and ("executable file not found" in text or
                                                  "no such file or directory" in text):
                    raise ContainerCommandNotFoundError(text)
                if text.startswith("exec: ") and "permission denied" in text:
                    raise ContainerCommandError(text)
                raise ContainerError(text)
            if options.pidfile:
                _write_pidfile(options.pidfile, int(answer.split()[1]))
            monitor_pid = states.read(userdata).get("monitor_pid") or 0
            # where a unit of `generate systemd` finds its main process (podman's conmon.pid)
            _write_pidfile(os.path.join(userdata, MONITOR_PIDFILE), monitor_pid)
            if options.conmon_pidfile:
                _write_pidfile(options.conmon_pidfile, monitor_pid)
            # (the monitor recorded the init and start events, in their order)

    def _start_initialized(self, record: ContainerRecord) -> None:
        """Start a container ``init`` made: its monitor waits on the start FIFO."""
        from ketch.containers.monitor import START_FIFO

        userdata = self._userdata(record.id)
        fifo = os.path.join(userdata, START_FIFO)
        deadline = time.monotonic() + 10
        while not os.path.exists(fifo):
            if time.monotonic() > deadline:
                raise ContainerError(f"container {record.name} is initialized, but its monitor does not answer")
            time.sleep(0.01)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"s")
        finally:
            os.close(fd)
        while time.monotonic() < deadline:
            if states.read(userdata).get("status") != "initialized":
                return  # (its monitor records the start event)
            time.sleep(0.01)
        raise ContainerError(f"container {record.name} did not start")

    def init(self, name_or_id: str) -> str:
        """``ketch init``: the container is created by the runtime (its init process exists, its
        file system, network and bundle are ready) and waits for ``start``."""
        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] == "initialized":
            return record.id
        if current["status"] in ("running", "paused"):
            raise ContainerError(f"container {record.id} has already been created in runtime: container "
                                 "state improper")
        self._start_detached(record, init_only=True)
        return record.id

    def cleanup(self, name_or_id: str, *, remove: bool = False) -> None:
        """After the container exited: its runtime state and mount go; with ``remove``, itself."""
        try:
            record = self._record(name_or_id)
        except NotFoundError:
            return
        with self.store.lock(f"container-{record.id}"):
            current = self._status(record)
            if current["status"] in ("running", "paused"):
                return  # started again meanwhile
            self._release(record)
            if current["status"] in ("exited", "stopped") and not current.get("cleaned"):
                if not remove:  # (a container about to go needs no mark)
                    states.update(self._userdata(record.id), cleaned=True)
                self._record_event("cleanup", record)  # podman's, once per run
        if remove:
            self.remove(record.id, force=True)

    # -- run --------------------------------------------------------------------------------

    def run(self, image: str, options: CreateOptions | None = None, *, detach: bool = False,
            pull: str = "missing", context=None, stdio: tuple[int, int, int] | None = None,
            capture_output: bool = False, sig_proxy: bool = True, replace: bool = False,
            progress=None) -> RunResult:
        """create + start. In the foreground (the default) the container's exit status (and, with
        ``capture_output``, its output) comes back; with ``detach`` once it runs, with no status."""
        if options is not None:
            self._start_network_helper(options)  # overlaps create and the preparation
        try:
            container_id = self.create(image, options, pull=pull, context=context, replace=replace,
                                       progress=progress)
        except BaseException:
            self._network_ready_quietly()
            raise
        options = self._record(container_id).options
        try:
            if detach:
                self._start_detached(self._record(container_id))
                return RunResult(None, container_id)
            if capture_output:
                import tempfile

                with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        status = self._run_attached(self._record(container_id), stdio=(null, out.fileno(),
                                                                                       err.fileno()),
                                                    sig_proxy=sig_proxy)
                    finally:
                        os.close(null)
                    out.seek(0)
                    err.seek(0)
                    return RunResult(status, container_id, out.read(), err.read())
            status = self._run_attached(self._record(container_id), stdio=stdio, sig_proxy=sig_proxy)
            return RunResult(status, container_id)
        except BaseException:
            if options.remove:
                try:
                    self.remove(container_id, force=True)
                except KetchError as exc:
                    log_cleanup_failure(__name__, f"{container_id[:12]}: removing it (--rm)", exc)
            raise

    # -- signals, stop, wait ----------------------------------------------------------

    def kill(self, name_or_id: str, signal: str | int = "KILL") -> str:
        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] not in ("running", "paused"):
            raise ContainerStateError(f"can only kill running containers. {record.id} is in state "
                                      f"{current['status']}: container state improper")
        number = _signal_number(signal)
        if number in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT, signals.SIGQUIT):
            states.update(self._userdata(record.id), stopped_by_user=True)  # no restart after a kill
        os.kill(current["pid"], number)
        self._record_event("kill", record)
        return record.id

    def stop(self, name_or_id: str, timeout: int | None = None) -> str:
        """The stop signal, then SIGKILL to every process after ``timeout`` seconds (podman's)."""
        record = self._record(name_or_id)
        options: CreateOptions = record.options
        userdata = self._userdata(record.id)
        # Under the lock a restart decides under: a restart that has not decided yet will not
        # happen; one that has (``restarting``) is waited for, and its new run stopped.
        with self.store.lock(f"container-{record.id}"):
            states.update(userdata, stopped_by_user=True)
        deadline = time.monotonic() + 30
        current = self._status(record)
        while current.get("restarting") and time.monotonic() < deadline and \
                states.alive(current.get("monitor_pid"), current.get("monitor_start")):
            time.sleep(0.02)
            current = self._status(record)
        if current["status"] not in ("running", "paused"):
            self.cleanup(record.id)  # nothing runs; what a killed run left goes
            return record.id
        driver = self._driver(options)
        timeout = options.stop_timeout if timeout is None else timeout
        pid, started = current["pid"], current.get("pid_start")
        stop_signal = self._stop_signal(record)
        if current["status"] == "paused":
            driver.kill(record.id, signals.SIGKILL, all_processes=True)
        elif timeout > 0:
            try:
                os.kill(pid, _signal_number(stop_signal))
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while states.alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.02)
        if states.alive(pid, started):
            if timeout > 0:
                import logging

                logging.getLogger("ketch").warning(
                    "StopSignal %s failed to stop container %s in %d seconds, resorting to SIGKILL",
                    stop_signal, record.name, timeout)
            try:
                driver.kill(record.id, signals.SIGKILL, all_processes=True)
            except KetchError:
                os.kill(pid, signals.SIGKILL)
        self._wait_recorded(record, pid, started)
        self._record_event("stop", record)
        return record.id

    def _stop_signal(self, record: ContainerRecord, image=None) -> str:
        """The signal stop sends (``image``: the record's ImageConfig, when the caller has it)."""
        from ketch.containers import spec as specs
        from ketch.oci.config import ImageConfig

        if image is None:
            try:
                image = self.store.lookup(record.image).parsed_config
            except KetchError:
                image = ImageConfig.parse(b'{"config": {}}')
        return specs.stop_signal(image, record.options)

    def _wait_recorded(self, record: ContainerRecord, pid: int, started: str | None, timeout: float = 10) -> None:
        """Until the process is gone and whoever watched it has recorded the exit (or is gone too)."""
        userdata = self._userdata(record.id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = states.read(userdata)
            if states.alive(pid, started):
                time.sleep(0.02)
                continue
            if current.get("status") != "running":
                break
            if not states.alive(current.get("monitor_pid"), current.get("monitor_start")):
                code = current.get("exit_code")
                states.exited(userdata, code if code is not None else 137)
                self.cleanup(record.id, remove=record.options.remove)
                break
            time.sleep(0.02)

    def wait(self, name_or_id: str, *, interval: float = 0.05, conditions: builtins.list[str] | None = None) -> int:
        """Until the container is in one of ``conditions`` (podman's ``wait --condition``; by
        default: not running); its exit code (-1 when it has none)."""
        from ketch.containers import health

        record = self._record(name_or_id)
        wanted = set(conditions or ["stopped"])
        for condition in wanted:
            if condition not in ("stopped", "exited", "running", "paused", "created", "configured", "initialized",
                                 "healthy", "unhealthy", "removing", "stopping"):
                raise InvalidInputError(f"unknown condition {condition!r}")
        while True:
            current = self._status(record)
            if current.get("stale"):  # gone, but its monitor has not recorded how yet
                self._wait_recorded(record, 0, None)
                current = self._status(record)
            state = current["status"]
            done = state in wanted or (state not in ("running", "paused", "initialized") and
                                       ("stopped" in wanted or "exited" in wanted and state == "exited"))
            if {"healthy", "unhealthy"} & wanted:
                done = done or health.status(self._userdata(record.id), record.options.healthcheck) in wanted
            if done:
                code = current.get("exit_code")
                return -1 if code is None else code
            time.sleep(interval)

    def restart(self, name_or_id: str, timeout: int | None = None) -> str:
        record = self._record(name_or_id)
        self.stop(record.id, timeout)
        self._wait_recorded(record, 0, None)
        self._start_detached(self._record(record.id))
        self._record_event("restart", record)
        return record.id

    # -- remove --------------------------------------------------------------------------

    def remove(self, name_or_id: str | ContainerRecord, *, force: bool = False, timeout: int | None = None,
               volumes: bool = False) -> str:
        """Remove the container (by name, id, or its record when the caller has it already). A
        running one only with ``force``: stopped first with ``timeout`` seconds for its stop
        signal (None: killed at once). ``volumes``: its anonymous volumes go too (as they do for
        a ``--rm`` container)."""
        record = name_or_id if isinstance(name_or_id, ContainerRecord) else self._record(name_or_id)
        current = self._status(record)
        if current["status"] in ("running", "paused"):
            if not force:
                raise ContainerRunningError(
                    f"cannot remove container {record.id} as it is {current['status']} - running or paused "
                    "containers cannot be removed without force: container state improper")
            if timeout is not None and timeout > 0 and current["status"] == "running":
                self.stop(record.id, timeout)
                current = self._status(record)
            driver = self._driver(record.options)
            try:
                driver.kill(record.id, signals.SIGKILL, all_processes=True)
            except KetchError:
                os.kill(current["pid"], signals.SIGKILL)
            deadline = time.monotonic() + 10
            while states.alive(current["pid"], current.get("pid_start")) and time.monotonic() < deadline:
                time.sleep(0.02)
        with self.store.lock(f"container-{record.id}"):
            self._release(record)
            try:
                self.store.remove_container(record.id, force=True)
            except NotFoundError:
                pass
        self._record_event("remove", record)
        if volumes or record.options.remove:
            self._remove_volumes(record.options.anonymous_volumes)
        if record.options.remove_image and record.image:
            from ketch.containers import views

            try:  # --rmi: the image goes too (by the name it was run by), unless something else uses it
                if not self.store.image_users(record.image):
                    self.store.remove_image(views.image_name(self, record) or record.image)
            except KetchError as exc:
                log_cleanup_failure(__name__, f"{record.name}: removing its image (--rmi)", exc)
        return record.id

    # -- queries ---------------------------------------------------------------------------

    def list(self, *, all: bool = False, filters: builtins.list[str] | None = None, size: bool = False,
             namespaces: bool = False) -> builtins.list[dict[str, Any]]:
        """podman's ``ps --format json`` entries (``size``: with the writable layer's size;
        ``namespaces``: with the namespaces' inode numbers)."""
        from ketch.containers import views

        by_key = views.parse_filters(filters or [])
        rows = [r for r in self.store.containers() if r["kind"] == KIND]
        anchors = {}
        for key in ("before", "since"):
            for value in by_key.get(key, []):
                found = [r for r in rows if r["id"].startswith(value) or r["name"] == value]
                if found:
                    anchors[value] = found[0]["created"]  # (to the sub-second: containers made in one second)
        if "status" in by_key:
            all = True  # podman's: a status filter looks at every container  # noqa: A001
        out = []
        self.__dict__["_listing_images"] = {}
        try:
            for row in rows:
                record = self._record_of(dict(row))
                current = self._status(record)
                entry = views.ps_entry(self, record, current, size=size, namespaces=namespaces)
                if not all and entry["State"] not in ("running", "paused"):
                    continue
                if by_key and not views.matches(entry, record, by_key, anchors):
                    continue
                out.append(entry)
        finally:
            del self.__dict__["_listing_images"]
        return out

    def inspect(self, name_or_id: str, *, size: bool = False) -> dict[str, Any]:
        from ketch.containers import views

        record = self._record(name_or_id)
        data = views.inspect(self, record, self._status(record))
        if size:
            sizes = views._size(self, record)
            data["SizeRw"], data["SizeRootFs"] = sizes["RwSize"], sizes["RootFsSize"]
        return data

    # -- mounts of containers (``ketch mount``) ------------------------------------------





    @staticmethod
    def run_exec_process(runtime_root: str, container_id: str, process: dict[str, Any], *,
                         stdio: tuple[int, int, int], pid_file: str | None = None,
                         console_socket: str | None = None) -> int:
        """Run a process made by :meth:`exec_process` in the foreground, with no engine (the CRI's
        exec helpers): its exit status, or the container layer's error for a command that
        cannot run."""
        from ketch.runtime.container import Runtime

        try:
            return Runtime(runtime_root).exec(container_id, process, stdio=stdio, pid_file=pid_file,
                                              console_socket=console_socket)
        except CannotExecuteError as exc:
            raise command_error(exc, "container") from exc

    def exec_process(self, name_or_id: str, command: builtins.list[str], *, tty: bool = False,
                     user: str | None = None, workdir: str | None = None, env: builtins.list[str] | None = None,
                     privileged: bool = False) -> tuple[ContainerRecord, dict[str, Any]]:
        """The running container and the OCI process ``exec`` would run in it (its config's
        process with this command, user, directory and environment)."""
        from ketch.containers import users

        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] != "running":
            raise ContainerStateError("can only create exec sessions on running containers: container state improper")
        userdata = self._userdata(record.id)
        with open(os.path.join(userdata, "config.json")) as f:
            config = json.load(f)
        process = dict(config["process"])
        rootfs = config["root"]["path"]
        if user is not None:
            exec_user = users.resolve(rootfs, user)
            if self.store.rootless and exec_user.gid not in exec_user.additional_gids:
                exec_user.additional_gids = sorted({*exec_user.additional_gids, exec_user.gid})  # (as in spec.build)
            process["user"] = {"uid": exec_user.uid, "gid": exec_user.gid,
                               **({"additionalGids": exec_user.additional_gids} if exec_user.additional_gids
                                  else {})}
        process["args"] = list(command)
        process["terminal"] = tty
        if workdir:
            process["cwd"] = workdir
        environment = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
        if tty:
            environment.setdefault("TERM", "xterm")
        for entry in env or []:
            key, sep, value = entry.partition("=")
            if sep:
                environment[key] = value
            elif key in os.environ:
                environment[key] = os.environ[key]
        for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):  # the container's init's, not ours
            environment.pop(key, None)
        process["env"] = [f"{k}={v}" for k, v in environment.items()]
        if privileged:
            from ketch.containers.config import bounding_set

            caps = sorted("CAP_" + c for c in bounding_set())
            process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        return record, process

    def exec(self, name_or_id: str, command: builtins.list[str], *, interactive: bool = False, tty: bool = False,
             user: str | None = None, workdir: str | None = None, env: builtins.list[str] | None = None,
             detach: bool = False, privileged: bool = False, stdio: tuple[int, int, int] | None = None,
             preserve_fds: int = 0, pid_file: str | None = None, console_socket: str | None = None) -> int:
        """Run another process in a running container; its exit status (0 when detached).
        ``pid_file``: where its host pid is written once it runs (to time it out);
        ``console_socket``: with ``tty``, where the terminal's master is sent (the runtime
        spec's console socket) instead of being copied to our own stdio."""
        from ketch.runtime.container import Runtime

        record, process = self.exec_process(name_or_id, command, tty=tty, user=user, workdir=workdir, env=env,
                                            privileged=privileged)
        options: CreateOptions = record.options
        if options.runtime and (detach or tty or preserve_fds):
            raise InvalidInputError("exec into a container of another --runtime works only in the foreground, "
                                    "without a terminal; use that runtime's exec")
        if detach and stdio is None:
            # the process must not hold the caller's output open: $(ketch exec -d ...) returns at once
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            stdio = (null, null, null)
        elif not interactive and stdio is None and not tty:
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            stdio = (null, 1, 2)
        self._record_event("exec", record)
        if options.runtime:
            return self._exec_external(record, process, stdio, pid_file)
        runtime = Runtime(str(self.store.runroot / "runtime"))
        try:
            return runtime.exec(record.id, process, detach=detach, stdio=stdio, preserve_fds=preserve_fds,
                                pid_file=pid_file, console_socket=console_socket if tty else None)
        except CannotExecuteError as exc:
            raise command_error(exc, "container") from exc

    def _exec_external(self, record: ContainerRecord, process: dict, stdio, pid_file: str | None) -> int:
        """exec through the container's runc-compatible runtime (``--process``), in the foreground."""
        import subprocess
        import tempfile

        driver = self._driver(record.options)
        with tempfile.NamedTemporaryFile("w", prefix="ketch-exec-", suffix=".json") as f:
            json.dump(process, f)
            f.flush()
            argv = driver.exec_argv(record.id, f.name)
            if pid_file:
                argv[-1:-1] = ["--pid-file", pid_file]
            stdin, stdout, stderr = stdio if stdio is not None else (None, None, None)
            return subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=stderr, check=False).returncode

    # -- health, stats, attach -------------------------------------------------------------

    def healthcheck_run(self, name_or_id: str) -> str:
        """Run the container's health check once; its health after it (healthy, unhealthy or
        starting)."""
        import tempfile

        from ketch import syscalls
        from ketch.containers import health
        from ketch.runtime.container import Runtime

        record = self._record(name_or_id)
        check = record.options.healthcheck
        if not check or not check.get("test"):
            raise ContainerError(f"container {record.name} has no defined healthcheck")
        current = self._status(record)
        if current["status"] != "running":
            raise ContainerError(f"container {record.name} is not running")
        userdata = self._userdata(record.id)
        with open(os.path.join(userdata, "config.json")) as f:
            process = dict(json.load(f)["process"])
        process.update(args=list(check["test"]), terminal=False)
        began = time.time()
        was_subreaper = syscalls.set_child_subreaper(True)  # the check's process is reparented to us
        try:
            with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile() as pid_file:
                null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    Runtime(str(self.store.runroot / "runtime")).exec(
                        record.id, process, detach=True, pid_file=pid_file.name,
                        stdio=(null, output.fileno(), output.fileno()))
                except KetchError as exc:
                    code, text = 127, str(exc)
                else:
                    code = _wait_child(int(open(pid_file.name).read()), check.get("timeout", 30))
                    output.seek(0)
                    text = output.read(health.MAX_OUTPUT).decode(errors="replace")
                finally:
                    os.close(null)
        finally:
            syscalls.set_child_subreaper(was_subreaper)
        result = health.record(userdata, check, current.get("started_at") or began, code, text, began)
        self._event("health_status", record.id, record.name, record.meta.get("image_name", ""),
                    {**record.options.labels, "health_status": result})
        return result

    def stats(self, names: builtins.list[str] | None = None, *, all: bool = False) -> builtins.list[dict[str, Any]]:
        """One sample of each running container's resource use (``ketch stats``)."""
        from ketch.containers import stats as sampling
        from ketch.userns import delegated_cgroup

        if self.store.rootless and not delegated_cgroup():
            raise UnsupportedError("stats is not supported in rootless mode without cgroups v2 (no cgroup is "
                                   "delegated to this user)")
        records = [self._record(n) for n in names] if names else \
            [self._record(e["Id"]) for e in self.list(all=all)]
        out = []
        for record in records:
            out.append(sampling.sample(record, self._status(record), self.cgroup_path(record.id)))
        return out


    def cgroup_path(self, name_or_id: str) -> str | None:
        """The cgroup the container was made with (its OCI ``linux.cgroupsPath``; None without one)."""
        with open(os.path.join(self._userdata(self._record(name_or_id).id), "config.json")) as f:
            return json.load(f).get("linux", {}).get("cgroupsPath")

    UPDATABLE = frozenset({
        "memory", "memory_reservation", "memory_swap", "memory_swappiness", "cpus", "cpu_shares", "cpu_quota",
        "cpu_period", "cpuset_cpus", "cpuset_mems", "cpu_rt_period", "cpu_rt_runtime", "pids_limit",
        "blkio_weight", "blkio_weight_devices", "device_read_bps", "device_write_bps", "device_read_iops",
        "device_write_iops", "restart_policy", "restart_retries"})

    def update(self, name_or_id: str, **changes: Any) -> str:
        """Change a container's limits (:attr:`UPDATABLE`: CreateOptions' names) and restart
        policy: a running container's cgroup at once, and what every later start gets
        (``ketch update``, ``docker update``). Returns the container's id."""
        from ketch.containers.spec import limit_resources
        from ketch.userns import delegated_cgroup

        unknown = sorted(set(changes) - self.UPDATABLE)
        if unknown:
            raise InvalidInputError(f"update: {', '.join(unknown)} cannot be changed")
        record = self._record(name_or_id)
        limits = set(changes) - {"restart_policy", "restart_retries"}
        if limits and self.store.rootless and not delegated_cgroup():
            raise UnsupportedError("update: resource limits need a cgroup delegated to this user (cgroups v2), "
                                   "and this machine delegates none")
        with self.store.lock(f"container-{record.id}"):
            record = self._record(record.id)
            if "cpus" in changes:  # (--cpus is a quota and period: the newest way of saying it wins)
                changes = {"cpu_quota": None, "cpu_period": None, **changes}
            elif "cpu_quota" in changes or "cpu_period" in changes:
                changes = {"cpus": None, **changes}
            updated = type(record.options).from_dict({**record.options.as_dict(), **changes})
            resources = limit_resources(updated)  # (checks the devices named before anything changes)
            if limits and self._status(record)["status"] in ("running", "paused"):
                self._driver(record.options).update(record.id, resources)
            self.store.update_container_metadata(record.id, {"options": updated.as_dict()})
        self._record_event("update", record)
        return record.id

    # -- pause, top, rename, prune, port, diff, cp, export, commit ---------------------

    def reopen_log(self, name_or_id: str) -> None:
        """The container's monitor goes on in a new log file at the same path (after a rotation)."""
        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] not in ("running", "paused"):
            raise ContainerStateError(f"container {record.name} is {current['status']}: its log cannot be reopened")
        if not states.alive(current.get("monitor_pid"), current.get("monitor_start")):
            raise ContainerError(f"container {record.name} has no monitor to reopen its log")
        os.kill(current["monitor_pid"], signals.SIGHUP)

    def update_resources(self, name_or_id: str, resources: dict[str, Any]) -> None:
        """Change a running container's cgroup limits (the OCI ``linux.resources`` given)."""
        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] not in ("running", "paused", "created"):
            raise ContainerStateError(f"container {record.name} is {current['status']}: its resources cannot be "
                                      "updated")
        self._driver(record.options).update(record.id, resources)

    def pause(self, name_or_id: str) -> str:
        record = self._record(name_or_id)
        state = self._status(record)["status"]
        if state != "running":
            raise ContainerStateError(f'"{state}" is not running, can\'t pause: container state improper')
        self._driver(record.options).pause(record.id)
        states.update(self._userdata(record.id), paused=True)
        self._record_event("pause", record)
        return record.id

    def unpause(self, name_or_id: str) -> str:
        record = self._record(name_or_id)
        if self._status(record)["status"] != "paused":
            raise ContainerStateError(f'"{record.id}" is not paused, can\'t unpause: container state improper')
        self._driver(record.options).resume(record.id)
        states.update(self._userdata(record.id), paused=False)
        self._record_event("unpause", record)
        return record.id

    def top(self, name_or_id: str) -> builtins.list[dict[str, Any]]:
        """The container's processes, as ``podman top`` shows them by default."""
        record = self._record(name_or_id)
        if self._status(record)["status"] not in ("running", "paused"):
            raise InvalidInputError(f"container {record.name} is not running")
        from ketch.containers import views

        current = self._status(record)
        root = f"/proc/{current['pid']}/root"
        found = [views.process_info(pid, root) for pid in self._driver(record.options).pids(record.id)]
        return [p for p in found if p is not None]

    def rename(self, name_or_id: str, new_name: str) -> str:
        from ketch.containers.names import check_name

        record = self._record(name_or_id)
        check_name(new_name)
        try:
            self.store.rename_container(record.id, new_name)
        except DuplicateNameError as exc:
            raise DuplicateNameError(f"the container name \"{new_name}\" is already in use") from exc
        record.name = new_name
        self._record_event("rename", record)
        return record.id

    def prune(self, filters: builtins.list[str] | None = None) -> builtins.list[str]:
        """Remove every container that is not running (``container prune``; ``until=`` and
        ``label=`` filters as podman's)."""
        removed = []
        for entry in self.list(all=True, filters=filters):
            if entry["State"] not in ("running", "paused"):
                try:
                    self.remove(entry["Id"])
                    removed.append(entry["Id"])
                except NotFoundError:
                    pass
        return removed

    def ports(self, name_or_id: str) -> builtins.list[dict[str, Any]]:
        return self._ports_of(self._record(name_or_id).id)

    def _ports_of(self, container_id: str) -> builtins.list[dict[str, Any]]:
        if not self._uses_networks(container_id):
            return []
        current = states.read(self._userdata(container_id))
        if current.get("pasta") is not None:  # (a rootless container's: pasta publishes, its state lists them)
            return [dict(p) for p in current.get("ports") or []]
        return [p.as_dict() for p in self.networks().ports_of(container_id)]









    def info(self) -> dict[str, Any]:
        from ketch.containers import views

        return views.info(self)


def run(image: str, command: list[str] | None = None, *, detach: bool = False, pull: str = "missing",
        capture_output: bool = False, root: str | None = None, runroot: str | None = None,
        **options: Any) -> RunResult:
    """``ketch run`` from Python: ``ketch.run("busybox", ["echo", "hi"], capture_output=True)``
    returns a RunResult (the container's id, its exit code, and the output when captured);
    ``detach=True`` returns once it runs (``exit_code`` None). ``options`` are CreateOptions fields (``remove=True`` is ``--rm``,
    ``env=[...]``, ``memory=...``)."""
    engine = Engine(root=root, runroot=runroot)
    return engine.run(image, CreateOptions(command=command, **options), detach=detach, pull=pull,
                      capture_output=capture_output)


def docker_healthcheck(check: dict | None) -> dict | None:
    """A HEALTHCHECK in Docker's form (an image's config, a Docker API create: nanoseconds), as
    a container's."""
    if not check or not check.get("Test") or check["Test"][0] == "NONE":
        return None
    test = list(check["Test"])
    if test[0] == "CMD-SHELL":
        test = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        test = test[1:]
    return {"test": test, "interval": (check.get("Interval") or 30_000_000_000) / 1e9,
            "timeout": (check.get("Timeout") or 30_000_000_000) / 1e9,
            "start_period": (check.get("StartPeriod") or 0) / 1e9, "retries": check.get("Retries") or 3}


def _log_size(text: str | None) -> int:
    """--log-opt max-size=10mb: bytes (0: no limit)."""
    if not text or text in ("-1", "0"):
        return 0
    from ketch.containers.options import parse_memory

    return parse_memory(text)


def _make_workdir(rootfs: str, path: str, uid: int, gid: int) -> None:
    """The image's working directory when the image lacks it, as podman makes it: the missing
    directories on the way root's, the last one the container user's (0755 each)."""
    from ketch.runtime.paths import resolve_in_root

    parts = [p for p in path.split("/") if p and p != "."]
    for n in range(1, len(parts) + 1):
        host = resolve_in_root(rootfs, "/" + "/".join(parts[:n]))
        if os.path.lexists(host):
            continue
        try:
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
            os.lchown(host, *((uid, gid) if n == len(parts) else (0, 0)))
        except OSError as exc:
            raise InvalidInputError(f"making the image's working directory {path}: {exc.strerror}") from exc


def _write_pidfile(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _start_watchdog(pid: int, seconds: int) -> tuple[int, int]:
    """--timeout for a foreground container: a child that kills its init after ``seconds`` and
    says so on a pipe (the init is our child: we reap it; the watchdog only signals it)."""
    started = states.start_time(pid)
    fired_r, fired_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(fired_r)
            time.sleep(seconds)
            if states.alive(pid, started):
                os.write(fired_w, b"x")
                os.kill(pid, signals.SIGKILL)
        finally:
            os._exit(0)
    os.close(fired_w)
    return child, fired_r


def _stop_watchdog(watchdog: tuple[int, int]) -> bool:
    """End the watchdog; True if it fired (the container ran into its timeout)."""
    child, fired_r = watchdog
    try:
        os.kill(child, signals.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass  # reaped already by the wait for the container
    os.set_blocking(fired_r, False)
    try:
        fired = os.read(fired_r, 1) == b"x"
    except BlockingIOError:
        fired = False
    os.close(fired_r)
    return fired


def _restart_wanted(options: CreateOptions, status: int, current: dict) -> bool:
    from ketch.containers.monitor import _restarts

    return _restarts({"restart_policy": options.restart_policy, "restart_retries": options.restart_retries},
                     current, status)


def _wait_child(pid: int, timeout: float) -> int:
    """Wait for our child ``pid``; kill it after ``timeout`` seconds. Its exit status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reaped, raw = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        if reaped == pid:
            return os.waitstatus_to_exitcode(raw) if os.WIFEXITED(raw) else 128 + os.WTERMSIG(raw)
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signals.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return 1
        time.sleep(0.01)
