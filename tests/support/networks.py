"""Cleaning up after tests and benchmarks that made bridge networks (host-wide devices)."""

import subprocess


def remove_networks(root: str, runroot: str) -> None:
    """The bridges (network devices) the networks of the store at ``root`` made, and ketch's
    nftables table once no bridge of any store is in it any more."""
    from ketch.containers import Engine
    from ketch.containers.network import TABLE, Networks
    from ketch.storage.store import Store

    store = Store(root, runroot)
    nets = Networks(store)
    engine = Engine(root=root, runroot=runroot)
    for network in nets.list():
        try:
            nets.remove(network["name"], force=True, engine=engine)
        except Exception:  # noqa: BLE001 - best effort at the end of a run
            pass
    listing = subprocess.run(["nft", "-j", "list", "set", "ip", TABLE, "bridges"], capture_output=True, text=True)
    if listing.returncode == 0 and '"elem"' not in listing.stdout:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
