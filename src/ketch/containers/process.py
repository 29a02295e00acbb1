"""A process in a container, run to its end by the calling process: the one path for callers
that are not the engine's container lifecycle (``builder run`` and so every Dockerfile ``RUN``;
next the CRI server's and system containers' one-shot work).

It owns every step and its undoing, on every exit path (an exception, a signal turned into one):
the network namespace and its attachment (:func:`attached_network`), the generated /etc files,
volumes and extra mounts, the OCI spec and its bundle, and the runtime's create, start, wait and
delete. The caller gives a mounted root file system and says what differs in its spec
(``adjust_spec``); nothing is left behind but what the process itself wrote into that root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from ketch.errors import CannotExecuteError, KetchError, command_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ketch.runtime.spectypes import Mount, Spec

log = logging.getLogger(__name__)


@contextlib.contextmanager
def attached_network(store, run_id: str, network: str) -> Iterator[str | None]:
    """A network namespace on bridge network ``network`` (``bridge``/``private``: the default
    one) for the time of the block: its path. ``host`` and ``none`` need none (None). Its
    address and veth are released when the block ends, however it ends."""
    if network in ("host", "none"):
        yield None
        return
    from ketch.containers import netns
    from ketch.containers import network as net

    nets = net.Networks(store)
    name = net.DEFAULT_NETWORK if network in ("bridge", "private") else network
    path = str(store.runroot / "netns" / f"ketch-{run_id[-40:]}")
    netns.make_namespace(path)
    try:
        nets.setup(run_id, path, [(name, nets.allocate(run_id, name))], [])
        yield path
    finally:
        try:
            nets.teardown(run_id, 1, [])
        except KetchError as exc:
            log.warning("%s: removing its network entries: %s", run_id, exc)
        netns.remove_namespace(path)
        nets.release(run_id)


def run_to_end(store, *, run_id: str, container_id: str, name: str, rootfs: str, userdata: str, image, options,
               image_name: str = "", image_id: str = "", extra_mounts: list[Mount] | None = None,
               adjust_spec: Callable[[Spec], None] | None = None, stdio: tuple[int, int, int] | None = None,
               error_layer: str = "container") -> int:
    """Run ``options.command`` in ``rootfs`` (mounted by the caller) to its end; its exit status.
    ``error_layer`` names whose error a program that cannot be run is (``container``/``builder``)."""
    from ketch import syscalls
    from ketch.containers import config as engine_config
    from ketch.containers import spec as specs
    from ketch.containers import volumes as volumes_mod
    from ketch.runtime.container import Runtime

    runtime = Runtime(str(store.runroot / "runtime"))
    was_subreaper = syscalls.set_child_subreaper(True)
    try:
        with attached_network(store, run_id, options.network) as netns_path:
            conf = engine_config.EngineConfig.load(cache_dir=str(store.runroot))
            hostname = container_id[:12]
            specs.etc_files(userdata, hostname, options, image_name, image_id, container_id, name,
                            specs.hosts_base(hostname, name, options, []))
            mounts = volumes_mod.to_oci(store, [volumes_mod.MountSpec(**m) for m in options.mounts], rootfs,
                                        (0, 0)) if options.mounts else []
            mounts += list(extra_mounts or [])
            spec = specs.build(container_id=container_id, rootfs=rootfs, userdata=userdata, image=image,
                               options=options, conf=conf, extra_mounts=mounts, netns_path=netns_path)
            spec["linux"]["cgroupsPath"] = f"/ketch/{run_id}"
            if adjust_spec is not None:
                adjust_spec(spec)
            placeholders = missing_tops(rootfs, [m["destination"] for m in spec["mounts"]])
            bundle = os.path.join(userdata, "run-bundle")
            os.makedirs(bundle, exist_ok=True)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                f.write(json.dumps(spec))
            try:
                try:
                    state, master = runtime.create_attached(run_id, bundle, terminal=options.tty, stdio=stdio)
                except CannotExecuteError as exc:
                    raise command_error(exc, error_layer) from exc
                try:
                    return Runtime.wait(state.pid, master, lambda: runtime.start(run_id))
                finally:
                    try:
                        runtime.delete(run_id, force=True)
                    except KetchError as exc:
                        log.warning("%s: deleting its runtime state: %s", run_id, exc)
            finally:
                remove_placeholders(placeholders)
    finally:
        syscalls.set_child_subreaper(was_subreaper)


def missing_tops(rootfs: str, destinations: list[str]) -> list[str]:
    """For each mount destination missing in the root, the topmost path the runtime will create
    for it (a mount point: not part of what the process made)."""
    from ketch.runtime.paths import resolve_in_root

    tops = []
    for destination in destinations:
        parts = [p for p in destination.split("/") if p]
        for n in range(1, len(parts) + 1):
            path = resolve_in_root(rootfs, "/" + "/".join(parts[:n]))
            if not os.path.lexists(path):
                tops.append(path)
                break
    return sorted(set(tops))


def remove_placeholders(paths: list[str]) -> None:
    """Remove mount points the runtime made, when they are still empty placeholders (empty files,
    directories holding nothing else); what the process put there stays."""
    def empty(path: str) -> bool:
        if os.path.islink(path):
            return False
        if os.path.isdir(path):
            return all(empty(os.path.join(path, entry)) for entry in os.listdir(path))
        return os.path.isfile(path) and os.path.getsize(path) == 0

    for path in sorted(paths, key=len, reverse=True):
        if os.path.lexists(path) and empty(path):
            if os.path.isdir(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
