"""Bridge networks of rootless containers, as podman has them: a network namespace of the user's
own (the "rootless network namespace"), given its way out by pasta, holds the bridges, the veths
and the ``ip ketch`` nftables table; the containers of the user's networks attach to those
bridges exactly as root's attach to the host's. A user may not touch the host's network, so
published ports cannot be DNAT entries on the host: :mod:`ketch.containers.portrelay` listens on
the host's addresses and connects to the container's address inside this namespace (podman's
rootlessport).

The namespace is made by the first container on a network and pinned on a file under the run
directory, in the mount namespace every ketch command of the user shares (:mod:`ketch.userns`);
it is removed, and its pasta quits with it, when the last container leaves the user's networks.
Both happen under one lock, and a container's address is recorded before the namespace is
asked for, so the last one out never removes it under the next one in.
"""

from __future__ import annotations

import os

from ketch.containers import netns, pasta


def path(store) -> str:
    return str(store.runroot / "netns" / "rootless-netns")


def _pid_file(store) -> str:
    return str(store.runroot / "rootless-netns-pasta.pid")


def _pinned(where: str) -> bool:
    """Whether a namespace is mounted on ``where`` (a bind-mounted nsfs file has another device
    than the directory it is in; a file left by a pause process that is gone has not)."""
    try:
        return os.stat(where).st_dev != os.stat(os.path.dirname(where)).st_dev
    except OSError:
        return False


def _pasta_alive(store) -> bool:
    try:
        with open(_pid_file(store)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip().startswith("pas")
    except (OSError, ValueError):
        return False


def ensure(store) -> str:
    """The user's rootless network namespace, made (with its pasta) if it is not there; its path."""
    where = path(store)
    with store.lock("rootless-netns"):
        if not _pinned(where):
            netns.remove_namespace(where)
            os.makedirs(os.path.dirname(where), exist_ok=True)
            netns.pin_namespaces({"net": where})
        if not _pasta_alive(store):
            try:
                pasta.start(where, [], _pid_file(store))
            except BaseException:
                netns.remove_namespace(where)
                raise
    return where


def remove_if_unused(store, in_use) -> None:
    """Remove the namespace (its bridges go with it; pasta quits with it) when ``in_use()`` says
    no container or pod of the store holds an address on a network any more."""
    where = path(store)
    with store.lock("rootless-netns"):
        if in_use() or not os.path.exists(where):
            return
        pid = None
        try:
            with open(_pid_file(store)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        netns.remove_namespace(where)
        pasta.stop(pid)
        try:
            os.unlink(_pid_file(store))
        except FileNotFoundError:
            pass


def attach(store, owner_netns: str, address: str, ports: list) -> int | None:
    """For a container's (or pod's) namespace ``owner_netns`` with ``address`` on a network (its
    records taken already): the rootless namespace made if need be, and the relay of its
    published ``ports`` started; the relay's PID (None without ports)."""
    where = ensure(store)
    if not ports:
        return None
    from ketch.containers import portrelay

    return portrelay.start(where, owner_netns, address, ports)


def detach(store, relay: int | None, in_use) -> None:
    """Undo :func:`attach` for one owner (its addresses released already): its relay ended, and
    the namespace removed if ``in_use()`` says it was the last one."""
    from ketch.containers import portrelay

    portrelay.stop(relay)
    remove_if_unused(store, in_use)


def existing(store) -> str | None:
    """The namespace's path if it is there now (nothing of a network can be in it otherwise)."""
    where = path(store)
    return where if _pinned(where) else None
