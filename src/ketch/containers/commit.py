"""A container's changes as a new image in the store (``ketch commit``).

The writable layer (overlay's upper directory) is written as an OCI layer tar (whiteouts for
deletions, opaque markers), compressed and stored like a pulled layer; the image is the base
image's layers plus that one, its config the base's with the ``--change`` instructions applied
and a history entry added. Everything goes through the store's crash-safe paths (staging,
then the records in one transaction), so a killed commit leaves no half-made image.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator
from typing import BinaryIO

from ketch.errors import InvalidInputError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
                       "WORKDIR")


def json_words(text: str, what: str) -> list[str] | None:
    """A JSON array of strings (an exec form) when ``text`` is one; None when it is not JSON at
    all; a bad array is an error naming ``what``."""
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"invalid {what} {text!r}: not a JSON array") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"invalid {what} {text!r}: a JSON array of strings")
    return value


def apply_change(config: dict, change: str) -> None:
    """One ``--change`` instruction (Dockerfile syntax) applied to an image's ``config``."""
    instruction, _, rest = change.strip().partition(" ")
    instruction = instruction.upper()
    rest = rest.strip()
    if instruction not in CHANGE_INSTRUCTIONS:
        raise InvalidInputError(f"invalid --change {change!r}: {instruction or 'nothing'} is not one of "
                                f"{', '.join(CHANGE_INSTRUCTIONS)}")

    def json_or_shell(text: str) -> list[str]:
        words = json_words(text, f"--change {instruction}")
        return words if words is not None else ["/bin/sh", "-c", text]

    if instruction in ("CMD", "ENTRYPOINT"):
        config["Cmd" if instruction == "CMD" else "Entrypoint"] = json_or_shell(rest)
    elif instruction == "ENV":
        pairs = _key_values(rest, change)
        env = [e for e in config.get("Env") or [] if e.split("=", 1)[0] not in pairs]
        config["Env"] = env + [f"{k}={v}" for k, v in pairs.items()]
    elif instruction == "LABEL":
        config["Labels"] = {**(config.get("Labels") or {}), **_key_values(rest, change)}
    elif instruction == "EXPOSE":
        ports = config.get("ExposedPorts") or {}
        for port in rest.split():
            ports[port if "/" in port else f"{port}/tcp"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        volumes = config.get("Volumes") or {}
        for path in json_or_shell(rest) if rest.startswith("[") else rest.split():
            volumes[path] = {}
        config["Volumes"] = volumes
    elif instruction == "USER":
        config["User"] = rest
    elif instruction == "WORKDIR":
        config["WorkingDir"] = rest
    elif instruction == "STOPSIGNAL":
        config["StopSignal"] = rest
    elif instruction == "ONBUILD":
        config["OnBuild"] = (config.get("OnBuild") or []) + [rest]


def _key_values(text: str, change: str) -> dict[str, str]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidInputError(f"invalid --change {change!r}: {exc}") from exc
    if len(words) == 2 and "=" not in words[0]:
        return {words[0]: words[1]}  # the old ENV KEY VALUE form
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"invalid --change {change!r}: want KEY=VALUE")
        out[key] = value
    return out


def commit(store, container_id: str, base_image_id: str | None, *, name: str | None = None,
           changes: list[str] | None = None, message: str = "", author: str = "", fmt: str = "oci",
           created_by: str = "", settings: dict | None = None, pending_history: list[dict] | None = None,
           squash: bool = False, compression: str = "gzip", omit_history: bool = False,
           top_level: dict | None = None, layer: bool = True) -> str:
    """The container's changes as a new image; returns its id.

    ``settings`` replaces the base image's ``config`` (the builder's accumulated ``config``);
    ``pending_history`` are entries for steps that made no layer (``empty_layer``), added before
    this commit's own; ``squash`` makes one layer of the whole file system; ``top_level`` sets
    config keys such as ``architecture``, ``os`` or ``author``."""
    from ketch.image.compression import GZIP, ZSTD, CompressingReader
    from ketch.storage.diff import write_diff, write_tree_diff
    from ketch.storage.drivers import OverlayDriver

    if fmt not in ("oci", "docker"):
        raise InvalidInputError(f"invalid format {fmt!r}: oci or docker")
    if compression not in ("gzip", "zstd"):
        raise InvalidInputError(f"invalid compression {compression!r}: gzip or zstd")
    if compression == "zstd" and fmt == "docker":
        raise InvalidInputError("zstd layers need --format oci (docker's format knows only gzip)")
    base = store.lookup(base_image_id) if base_image_id else None
    base_config = json.loads(base.config) if base else {"architecture": "amd64", "os": "linux",
                                                          "rootfs": {"type": "layers", "diff_ids": []}}
    base_manifest = json.loads(base.manifest) if base else {"layers": []}
    if compression == "zstd":
        layer_media = "application/vnd.oci.image.layer.v1.tar+zstd"
    else:
        layer_media = OCI_LAYER if fmt == "oci" else DOCKER_LAYER
    if not layer:
        return _commit_config_only(store, base, base_config, base_manifest, name=name, fmt=fmt, settings=settings,
                                   changes=changes, pending_history=pending_history, top_level=top_level,
                                   omit_history=omit_history)
    with store.staging_dir("commit") as work:
        tar_path = work / "layer.tar"
        if squash:
            diff_id = _tar_whole(store, container_id, tar_path)
        elif isinstance(store.driver, OverlayDriver):
            diff_id, _ = write_diff(store.container_upper(container_id), tar_path)
        else:  # (vfs: the container's whole tree against its image's, as containers/storage compares them)
            lower, upper = store.container_base_tree(container_id)
            diff_id, _ = write_tree_diff(lower, upper, tar_path)
        with open(tar_path, "rb") as raw:
            blob_digest, stored_diff_id, _ = store.add_layer_blob(
                CompressingReader(raw, ZSTD if compression == "zstd" else GZIP), None, layer_media, _tar_of)
        if stored_diff_id != diff_id:
            raise InvalidInputError("the committed layer changed while it was written")
    blob_size = store.blob_path(blob_digest).stat().st_size
    history_entry = {"created": _now(), "created_by": created_by or "ketch commit"}
    if message:
        history_entry["comment"] = message
    if author:
        history_entry["author"] = author
    base_layers = [] if squash else list(base_manifest.get("layers") or [])
    base_history = [] if squash else list(base_config.get("history") or [])
    base_diff_ids = [] if squash else list((base_config.get("rootfs") or {}).get("diff_ids") or [])  # type: ignore[union-attr]
    return _record_image(store, base_config, name=name, fmt=fmt, settings=settings, changes=changes,
                         top_level=top_level, author=author, omit_history=omit_history,
                         layers=base_layers + [{"mediaType": layer_media, "digest": blob_digest, "size": blob_size}],
                         diff_ids=base_diff_ids + [diff_id],
                         history=base_history + list(pending_history or []) + [history_entry])


def _tar_of(stream):
    """The tar in a layer stream, compressed or not."""
    from ketch.image.compression import DecompressingReader, PeekableReader, detect

    peek = PeekableReader(stream)
    kind = detect(peek.peek(4))
    return DecompressingReader(peek, kind) if kind else peek


@contextlib.contextmanager
def open_tarball(location: str, stdin=None) -> Iterator[BinaryIO]:
    """What ``import`` reads: a file, an http(s) URL's body, or ``stdin`` for ``-``; a failure
    to open it is one line."""
    if location == "-":
        yield stdin
        return
    if location.startswith(("http://", "https://")):
        import urllib3

        try:
            response = urllib3.PoolManager().request("GET", location, preload_content=False, retries=2)
        except urllib3.exceptions.HTTPError as exc:
            raise InvalidInputError(f"import: {location}: {exc}") from exc
        try:
            if response.status != 200:
                raise InvalidInputError(f"import: {location}: HTTP {response.status}")
            yield response  # type: ignore[misc]
        finally:
            response.release_conn()
        return
    try:
        f = open(location, "rb")
    except OSError as exc:
        raise InvalidInputError(f"import: {location}: {exc.strerror}") from exc
    with f:
        yield f


def import_tarball(store, source, *, name: str | None = None, changes: list[str] | None = None, message: str = "",
                   fmt: str = "oci", platform: tuple[str, str, str] | None = None) -> str:
    """An image of one layer from a file system's tarball (plain, gzip or zstd), read from
    the binary stream ``source`` (``ketch import``, ``docker import``); its id. The tar is
    checked as a pulled layer's is (paths out of the tree, devices a user cannot make)."""
    from ketch.image.compression import GZIP, CompressingReader
    from ketch.image.platform import host_platform

    if fmt not in ("oci", "docker"):
        raise InvalidInputError(f"invalid format {fmt!r}: oci or docker")
    system, architecture, variant = platform or host_platform()
    layer_media = OCI_LAYER if fmt == "oci" else DOCKER_LAYER
    blob_digest, diff_id, _ = store.add_layer_blob(CompressingReader(_tar_of(source), GZIP), None, layer_media,
                                                   _tar_of)
    blob_size = store.blob_path(blob_digest).stat().st_size
    base_config: dict = {"architecture": architecture, "os": system, "config": {}}
    if variant:
        base_config["variant"] = variant
    history_entry = {"created": _now(), "created_by": f"/bin/sh -c #(nop) ADD file:{diff_id[7:]} in /"}  # podman's
    if message:
        history_entry["comment"] = message
    return _record_image(store, base_config, name=name, fmt=fmt, settings=None, changes=changes, top_level=None,
                         author="", omit_history=False,
                         layers=[{"mediaType": layer_media, "digest": blob_digest, "size": blob_size}],
                         diff_ids=[diff_id], history=[history_entry])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _record_image(store, base_config: dict, *, name, fmt, settings, changes, top_level, author, omit_history,
                  layers: list[dict], diff_ids: list[str], history: list[dict]) -> str:
    """Config and manifest for ``layers`` (stored blobs), recorded in the store; the image id."""
    from ketch.oci.digest import Digest

    config_settings = dict(settings if settings is not None else (base_config.get("config") or {}))
    for change in changes or []:
        apply_change(config_settings, change)
    config = {k: v for k, v in base_config.items() if k not in ("container", "container_config")}
    config.update(created=_now(), config=config_settings)
    top_level = dict(top_level or {})
    annotations = top_level.pop("annotations", None)  # image annotations live in the manifest
    config.update(top_level)
    if author:
        config["author"] = author
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    if omit_history:
        config.pop("history", None)
    else:
        config["history"] = history
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    old, new = (OCI_LAYER, DOCKER_LAYER) if fmt == "docker" else (DOCKER_LAYER, OCI_LAYER)
    layers = [{**layer, "mediaType": layer["mediaType"].replace(old, new)} for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG,
                   "digest": str(Digest.of(config_bytes)), "size": len(config_bytes)},
        "layers": layers,
    }
    if annotations and fmt == "oci":
        manifest["annotations"] = dict(annotations)
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    names = [store.normalize_name(name)] if name else []
    from ketch.image.compression import decompressed

    return store.create_image(manifest_bytes, manifest["mediaType"], config_bytes,
                              [layer["digest"] for layer in layers], names, decompress=decompressed)


def _tar_whole(store, container_id: str, output) -> str:
    """--squash: the container's whole file system as one layer tar; its diff_id."""
    import hashlib
    import subprocess

    root = store.mount_container(container_id)
    try:
        with open(output, "wb") as f:
            result = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", str(root), "-cf", "-",
                                     "."], stdout=f, stderr=subprocess.PIPE)
        if result.returncode != 0:
            raise InvalidInputError(f"squashing the file system: {result.stderr.decode(errors='replace').strip()}")
    finally:
        store.unmount_container(container_id)
    digest = hashlib.sha256()
    with open(output, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _commit_config_only(store, base, base_config: dict, base_manifest: dict, *, name, fmt, settings, changes,
                        pending_history, top_level, omit_history) -> str:
    """An image with the base's layers and a new config (steps that changed no file)."""
    return _record_image(store, base_config, name=name, fmt=fmt, settings=settings, changes=changes,
                         top_level=top_level, author="", omit_history=omit_history,
                         layers=list(base_manifest.get("layers") or []),
                         diff_ids=list((base_config.get("rootfs") or {}).get("diff_ids") or []),
                         history=list(base_config.get("history") or []) + list(pending_history or []))
