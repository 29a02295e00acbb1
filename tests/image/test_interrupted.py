"""kill -9 in the middle of a copy: the destination shows no new image."""

import gzip
import json
import os
import signal
import subprocess
import threading
import time

from tests.conftest import KETCH, run_ketch
from tests.support.fakeregistry import FakeRegistry, serve


def test_kill_during_blob_download_leaves_no_image(busybox_layout, tmp_path):
    layer = gzip.compress(os.urandom(2_000_000), compresslevel=1)
    fake = FakeRegistry()
    fake.add_image("app", "latest", [layer])
    digest = next(d for d, data in fake.blobs.items() if data == layer)
    release = threading.Event()

    def stall(handler, info):
        if info["path"].endswith(digest):
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(layer)))
            handler.end_headers()
            handler.wfile.write(layer[:1_500_000])  # more than one 1 MiB read
            handler.wfile.flush()
            release.wait(30)
            handler.close_connection = True
            return True
        return False

    fake.behaviours.append(stall)
    dest = tmp_path / "layout"
    # An image already in the layout must survive untouched.
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"oci:{dest}:old")
    index_before = (dest / "index.json").read_bytes()
    with serve(fake):
        proc = subprocess.Popen([KETCH, "image", "copy", "--src-tls-verify=false",
                                 f"docker://{fake.host}/app:latest", f"oci:{dest}:new"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            blobs = dest / "blobs" / "sha256"
            while time.monotonic() < deadline:
                partial = [n for n in os.listdir(blobs) if n.startswith(".ketch-tmp")]
                if partial and (blobs / partial[0]).stat().st_size > 0:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the copy never started writing the layer")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (dest / "index.json").read_bytes() == index_before
    names = [m["annotations"]["org.opencontainers.image.ref.name"]
             for m in json.loads(index_before)["manifests"]]
    assert names == ["old"]
    assert not (blobs / digest.split(":")[1]).exists()
    left = [n for n in os.listdir(blobs) if n.startswith(".ketch-tmp")]
    assert left, "the killed copy left its partial blob (what the next copy must clean)"
    # Running the same copy again succeeds, and removes what the killed one left.
    with serve(fake):
        fake.behaviours.clear()
        run_ketch("image", "copy", "--src-tls-verify=false", f"docker://{fake.host}/app:latest", f"oci:{dest}:new")
    index = json.loads((dest / "index.json").read_text())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == \
        ["new", "old"]
    assert [n for n in os.listdir(blobs) if n.startswith(".ketch-tmp")] == []


def test_cleaning_temporaries_spares_a_live_writers(tmp_path):
    """Only temporary files nobody holds are removed: a writer still filling one keeps it."""
    import fcntl

    from ketch.image.layout import TEMP_PREFIX, remove_temporaries

    abandoned = tmp_path / f"{TEMP_PREFIX}abandoned"
    abandoned.write_bytes(b"partial")
    live = tmp_path / f"{TEMP_PREFIX}live"
    with open(live, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        assert remove_temporaries(tmp_path) == [abandoned.name]
        assert live.exists() and not abandoned.exists()
    assert remove_temporaries(tmp_path) == [live.name]
