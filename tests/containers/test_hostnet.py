"""Host-wide network records: two stores on one host never hand out one address, subnet or host
port twice, whatever processes allocate at the same moment."""

import ipaddress
import multiprocessing
import os

from ketch.containers.hostnet import HostAllocations
from ketch.containers.network import Networks, PortMapping
from ketch.errors import InvalidInputError
from ketch.storage.store import Store

ALLOCATORS = 8


def _allocate(root: str, runroot: str, index: int, results) -> None:
    try:
        nets = Networks(Store(root, runroot))
        container = f"{os.path.basename(root)}-{index:02d}".ljust(64, "0")
        address = nets.allocate(container, "ketch")
        port = nets.reserve_ports(container, [PortMapping("127.0.0.1", 0, 80, "tcp")])[0].host_port
        results.put((root, container, address, port))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(("error", repr(exc), None, None))


def test_two_stores_eight_allocators_each_share_nothing(tmp_path):
    roots = [(str(tmp_path / f"store{n}"), str(tmp_path / f"run{n}")) for n in (1, 2)]
    for root, runroot in roots:
        Networks(Store(root, runroot)).ensure_default()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_allocate, args=(root, runroot, i, results))
               for i in range(ALLOCATORS) for root, runroot in roots]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    errors = [r for r in got if r[0] == "error"]
    assert errors == []
    addresses = [r[2] for r in got]
    ports = [r[3] for r in got]
    assert len(set(addresses)) == len(addresses) == 2 * ALLOCATORS, addresses
    assert len(set(ports)) == len(ports) == 2 * ALLOCATORS, ports
    # each store sees its own containers only, and removal leaves nothing of either store
    for root, runroot in roots:
        nets = Networks(Store(root, runroot))
        mine = [r for r in got if r[0] == root]
        assert set(nets.attached("ketch")) == {r[1] for r in mine}
        for _, container, address, port in mine:
            assert nets.addresses_of(container) == {"ketch": address}
            assert [p.host_port for p in nets.ports_of(container)] == [port]
            nets.release(container)
        host = HostAllocations(nets.store)
        assert host.db.query("SELECT * FROM addresses WHERE store = ?", (host.store_id,)) == []
        assert host.db.query("SELECT * FROM ports WHERE store = ?", (host.store_id,)) == []
        host.release_store()


def test_a_second_store_gets_another_subnet_and_bridge(tmp_path):
    first = Networks(Store(str(tmp_path / "a"), str(tmp_path / "ra")))
    second = Networks(Store(str(tmp_path / "b"), str(tmp_path / "rb")))
    try:
        one = first.create("ketch-hostnet-test-1")
        two = second.create("ketch-hostnet-test-2")
        assert one["bridge"] != two["bridge"]
        assert not ipaddress.IPv4Network(one["subnet"]).overlaps(ipaddress.IPv4Network(two["subnet"]))
        try:
            second.create("ketch-hostnet-test-3", subnet=one["subnet"])
        except InvalidInputError as exc:
            assert "overlaps" in str(exc)
        else:
            raise AssertionError("a subnet another store uses was given twice")
    finally:
        for nets in (first, second):
            nets.host.release_store()


def test_records_of_a_store_that_is_gone_are_dropped(tmp_path):
    import shutil

    root, runroot = str(tmp_path / "gone"), str(tmp_path / "rgone")
    nets = Networks(Store(root, runroot))
    address = nets.allocate("c" * 64, "ketch")
    store_id = nets.host.store_id
    shutil.rmtree(root)
    other = Networks(Store(str(tmp_path / "other"), str(tmp_path / "rother")))
    try:
        other.allocate("d" * 64, "ketch")
        assert other.host.db.query("SELECT * FROM addresses WHERE store = ?", (store_id,)) == []
        assert address  # (it was a real allocation)
    finally:
        other.host.release_store()


def test_a_store_made_before_host_wide_records_hands_its_own_over(tmp_path):
    """A store whose addresses and ports were in its own tables (before they were host-wide):
    its running containers keep them, in the host-wide records, and the old tables go."""
    root, runroot = str(tmp_path / "old"), str(tmp_path / "rold")
    store = Store(root, runroot)
    nets = Networks(store)  # (made at the current version: turn it back into an old one)
    network = nets.ensure_default()
    container = "e" * 64
    with store.db.write() as conn:
        conn.execute("DELETE FROM meta WHERE key = 'schema.containers'")
        conn.execute("CREATE TABLE network_addresses (network TEXT, ip TEXT, container TEXT)")
        conn.execute("CREATE TABLE published_ports (host_ip TEXT, host_port INTEGER, protocol TEXT, "
                     "container TEXT, container_port INTEGER)")
        conn.execute("INSERT INTO network_addresses VALUES (?, ?, ?)", (network["name"], "10.123.0.77", container))
        conn.execute("INSERT INTO published_ports VALUES ('127.0.0.1', 18977, 'tcp', ?, 80)", (container,))
    try:
        again = Networks(Store(root, runroot))
        assert again.addresses_of(container) == {"ketch": "10.123.0.77"}
        assert [(p.host_port, p.container_port) for p in again.ports_of(container)] == [(18977, 80)]
        tables = {r[0] for r in again.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {"network_addresses", "published_ports"} & tables
        assert again.allocate("f" * 64, "ketch") != "10.123.0.77"
    finally:
        HostAllocations(store).release_store()
