"""Builder primitives, as buildah has them: working containers that a script fills with the host's
own tools, and commits into images when it chooses.

A working container is a store container of kind ``builder``: its writable layer on the base
image (or empty, ``scratch``), and in its metadata the image config being made (``config``,
the OCI image config's ``config`` object plus top-level keys) and the history of the steps that
made no layer yet. Any ketch process sees and uses it. ``builder run`` runs a command in it
through ketch's runtime with the build profile (see docs/build.md); ``commit`` makes the layer.
"""

from __future__ import annotations

import glob
import json
import os
import time

from ketch.builder import files
from ketch.errors import (
    BuilderCommandError,
    BuilderCommandNotFoundError,
    BuilderError,
    ContainerCommandError,
    ContainerCommandNotFoundError,
    ContainerError,
    DuplicateNameError,
    InvalidInputError,
    KetchError,
    NotFoundError,
    log_cleanup_failure,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ketch.runtime.spectypes import Mount, Spec

KIND = "builder"
EXTRA_BUILD_CAPABILITIES = ["MKNOD"]  # package installs create device nodes; `ketch run` keeps it off


class Builder:
    def __init__(self, store=None, *, root: str | None = None, runroot: str | None = None,
                 storage_driver: str | None = None) -> None:
        if store is None:
            from ketch.storage.store import Store

            store = Store(root, runroot, storage_driver)
        self.store = store

    # -- records ---------------------------------------------------------------------------

    def _record(self, name_or_id: str) -> dict:
        try:
            row = self.store.container(name_or_id)
        except NotFoundError as exc:
            raise NotFoundError(f"{name_or_id}: no such working container") from exc
        if row["kind"] != KIND:
            raise NotFoundError(f"{name_or_id} is a {row['kind']}, not a working container (ketch builder "
                                "containers lists them)")
        row["meta"] = json.loads(row["metadata"])
        return row

    def _update(self, record: dict, **changes) -> dict:
        meta = self.store.update_container_metadata(record["id"], changes)
        record["meta"] = meta
        return meta

    # -- from, containers, rm ----------------------------------------------------------

    def from_image(self, image: str, *, name: str | None = None, pull: str = "missing", context=None) -> str:
        """A working container on ``image`` (or ``scratch``); its name."""
        base_config: dict = {}
        from ketch.image.platform import host_platform

        host_os, host_arch, host_variant = host_platform()
        top: dict = {"architecture": host_arch, "os": host_os, **({"variant": host_variant} if host_variant else {})}
        image_id = None
        image_name = ""
        if image != "scratch":
            from ketch.containers.images import find_or_pull

            record = find_or_pull(self.store, image, pull, context)
            image_id = record.id
            image_name = record.names[0] if record.names else image
            parsed = json.loads(record.config)
            base_config = dict(parsed.get("config") or {})
            top = {k: parsed[k] for k in ("architecture", "os", "variant", "author") if k in parsed}
        meta: dict[str, object] = {"from_image": image_name or "scratch", "from_image_id": image_id or "", "config": base_config,
                "top": top, "history": [], "created": time.time()}
        base = image_name.rsplit("/", 1)[-1].split(":")[0].split("@")[0] if image_name else ""
        wanted = name or (f"{base}-working-container" if base else "working-container")
        for n in range(0, 1000):
            candidate = wanted if n == 0 or name else f"{wanted}-{n}"
            try:
                container_id = self.store.create_container(image_id, candidate, kind=KIND, metadata=meta)
                return self.store.container(container_id)["name"]
            except DuplicateNameError:
                if name:
                    raise
        raise BuilderError("no free name for the working container")

    def containers(self) -> list[dict]:
        out = []
        for row in self.store.containers():
            if row["kind"] == KIND:
                meta = json.loads(row["metadata"])
                out.append({"id": row["id"], "builder": True, "imageid": meta.get("from_image_id", ""),
                            "imagename": meta.get("from_image", ""), "containername": row["name"]})
        return out

    def remove(self, name_or_id: str) -> str:
        record = self._record(name_or_id)
        self._release_killed_run(record)
        self.store.remove_container(record["id"], force=True)
        return record["id"]

    def _release_killed_run(self, record: dict) -> None:
        """What a ``builder run`` killed halfway took (its runtime state, network namespace and
        addresses, mounts: recorded in the working container's state by the engine), released."""
        from ketch.containers import state as states

        userdata = str(self.store.root / "containers" / record["id"] / "userdata")
        current = states.read(userdata) if os.path.isdir(userdata) else {}
        if not (current.get("mounted") or current.get("netns") or current.get("image_mounts")):
            return
        if _alive(record["meta"].get("run_pid") or 0, record["meta"].get("run_pid_start")):
            raise BuilderError(f"working container {record['name']} is in use by a running `builder run`")
        from ketch.containers.engine import Engine
        from ketch.containers.options import CreateOptions

        Engine(self.store).release_process(_container_record(record, CreateOptions(log_driver="none")))

    # -- mount -----------------------------------------------------------------------------

    def mount(self, name_or_id: str) -> str:
        return str(self.store.mount_container(self._record(name_or_id)["id"]))

    def unmount(self, name_or_id: str) -> None:
        record = self._record(name_or_id)
        if not self.store.unmount_container(record["id"]):
            raise InvalidInputError(f"working container {record['name']} is not mounted")

    # -- config ------------------------------------------------------------------------

    def configure(self, name_or_id: str, **settings) -> dict:
        """buildah config: each setting changes the image config being made, and is recorded as a
        history step without a layer (created_by, empty_layer)."""
        from ketch.containers.commit import apply_change

        record = self._record(name_or_id)
        config = dict(record["meta"].get("config") or {})
        top = dict(record["meta"].get("top") or {})
        history = list(record["meta"].get("history") or [])
        steps = []

        def step(text: str) -> None:
            steps.append(text)

        for key, value in settings.items():
            if value is None or value == [] or value == {}:
                continue
            if key == "env":
                for entry in value:
                    if entry.endswith("-") and "=" not in entry:
                        config["Env"] = [e for e in config.get("Env") or [] if e.split("=", 1)[0] != entry[:-1]]
                    else:
                        name, sep, text = entry.partition("=")
                        if not sep or not name:
                            raise InvalidInputError(f"invalid --env {entry!r}: want NAME=VALUE (or NAME- to remove)")
                        apply_change(config, f"ENV {name}={json.dumps(text)}")
                    step(f"ENV {entry}")
            elif key in ("entrypoint", "cmd", "shell"):
                parsed = _command_value(value, key)
                field = {"entrypoint": "Entrypoint", "cmd": "Cmd", "shell": "Shell"}[key]
                if key != "shell" and isinstance(value, str) and not value.strip().startswith("["):
                    parsed = (config.get("Shell") or ["/bin/sh", "-c"]) + [value]
                config[field] = parsed
                step(f"{key.upper()} {json.dumps(parsed)}")
            elif key in ("label", "annotation"):
                target = config.setdefault("Labels", {}) if key == "label" else top.setdefault("annotations", {})
                for entry in value:
                    name, sep, text = entry.partition("=")
                    if not name:
                        raise InvalidInputError(f"invalid --{key} {entry!r}: want KEY=VALUE")
                    if entry.endswith("-") and not sep:
                        target.pop(name[:-1], None)
                    else:
                        target[name] = text
                    step(f"{key.upper()} {entry}")
            elif key == "port":
                for port in value:
                    if port.endswith("-"):
                        (config.get("ExposedPorts") or {}).pop(port[:-1] if "/" in port else f"{port[:-1]}/tcp", None)
                        continue
                    number, _, proto = port.partition("/")
                    if not number.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                        raise InvalidInputError(f"invalid --port {port!r}: want PORT[/tcp|udp]")
                    config.setdefault("ExposedPorts", {})[f"{number}/{proto or 'tcp'}"] = {}
                    step(f"EXPOSE {port}")
            elif key == "volume":
                for path in value:
                    if path.endswith("-"):
                        (config.get("Volumes") or {}).pop(path[:-1], None)
                        continue
                    if not path.startswith("/"):
                        raise InvalidInputError(f"invalid --volume {path!r}: an absolute path")
                    config.setdefault("Volumes", {})[path] = {}
                    step(f"VOLUME {path}")
            elif key == "user":
                config["User"] = value
                step(f"USER {value}")
            elif key == "workingdir":
                if not value.startswith("/"):
                    raise InvalidInputError(f"invalid --workingdir {value!r}: an absolute path")
                config["WorkingDir"] = value
                step(f"WORKDIR {value}")
            elif key == "stop_signal":
                from ketch.containers.options import parse_signal

                parse_signal(value)
                config["StopSignal"] = value if not value.isdigit() else value
                step(f"STOPSIGNAL {value}")
            elif key == "healthcheck":
                config["Healthcheck"] = {**(config.get("Healthcheck") or {}),
                                         "Test": ["NONE"] if value == "NONE" else ["CMD-SHELL", value]}
                step(f"HEALTHCHECK {value}")
            elif key in ("healthcheck_interval", "healthcheck_timeout", "healthcheck_start_period"):
                field = {"healthcheck_interval": "Interval", "healthcheck_timeout": "Timeout",
                         "healthcheck_start_period": "StartPeriod"}[key]
                config.setdefault("Healthcheck", {})[field] = _duration_ns(value, key)
            elif key == "healthcheck_retries":
                config.setdefault("Healthcheck", {})["Retries"] = int(value)
            elif key in ("author", "arch", "os"):
                top[{"author": "author", "arch": "architecture", "os": "os"}[key]] = value
            elif key == "created_by":
                record["meta"]["next_created_by"] = value
            elif key == "history_comment":
                record["meta"]["next_comment"] = value
            elif key == "onbuild":
                config["OnBuild"] = (config.get("OnBuild") or []) + list(value)
                step(f"ONBUILD {' '.join(value)}")
            else:
                raise InvalidInputError(f"unknown config setting {key!r}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        created_by = record["meta"].get("next_created_by")
        for text in steps:
            entry = {"created": now, "created_by": created_by or f"/bin/sh -c #(nop) {text}", "empty_layer": True}
            if record["meta"].get("next_comment"):
                entry["comment"] = record["meta"]["next_comment"]
            history.append(entry)
        return self._update(record, config=config, top=top, history=history,
                            next_created_by=None if steps else record["meta"].get("next_created_by"),
                            next_comment=None if steps else record["meta"].get("next_comment"))

    # -- copy and add ------------------------------------------------------------------

    def copy(self, name_or_id: str, sources: list[str], destination: str, *, chown: str | None = None,
             chmod: str | None = None, from_: str | None = None, add: bool = False) -> None:
        """buildah copy/add: host paths (globs), or paths in another image or working container
        (``--from``), to ``destination`` in the working container; ``add`` unpacks local tar
        archives. A path inside a root never leads out of it (links resolve inside)."""
        from ketch.runtime.paths import resolve_in_root

        if not sources:
            raise InvalidInputError("nothing to copy")
        record = self._record(name_or_id)
        if chmod is not None and not (chmod.isdigit() and set(chmod) <= set("01234567") and len(chmod) <= 4):
            raise InvalidInputError(f"invalid --chmod {chmod!r}: an octal mode")
        owner = self._owner(record, chown) if chown else None
        cleanup: list[Callable[[], object]] = []
        try:
            if from_:
                root = self._mount_other(from_, cleanup)
                paths = []
                for source in sources:
                    if source.startswith(("http://", "https://")):
                        raise InvalidInputError(f"{source}: remote sources are not supported with --from")
                    matches = glob.glob(resolve_in_root(root, source).replace("[", "[[]")) if any(
                        c in source for c in "*?[") else [resolve_in_root(root, source)]
                    matches = [m for m in matches if os.path.realpath(m).startswith(os.path.realpath(root))
                               or os.path.islink(m)]
                    if not matches or not all(os.path.lexists(m) for m in matches):
                        raise NotFoundError(f"{source}: no such file or directory in {from_}")
                    paths += matches
            else:
                paths = []
                for source in sources:
                    if source.startswith(("http://", "https://")):
                        raise InvalidInputError(f"{source}: remote sources cannot be fetched here (offline); "
                                                "download it and add the file")
                    matches = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
                    if not matches or not all(os.path.lexists(m) for m in matches):
                        raise NotFoundError(f"{source}: no such file or directory")
                    paths += matches
            rootfs = str(self.store.mount_container(record["id"]))
            cleanup.append(lambda: self.store.unmount_container(record["id"]))
            target = resolve_in_root(rootfs, destination)
            many = len(paths) > 1 or destination.endswith("/")
            # missing directories on the way are 0755 and --chown's (buildah's copier)
            parent = os.path.dirname(destination.rstrip("/")) or "/"
            for path in paths:
                if add and os.path.isfile(path) and files.is_archive(path):
                    files.unpack(path, files.make_dirs(rootfs, destination, owner))
                    continue
                contents = os.path.isdir(path) and not os.path.islink(path)
                into = many or os.path.isdir(target)
                files.make_dirs(rootfs, destination if contents or into else parent, owner)
                files.copy_into(path, resolve_in_root(rootfs, destination), into=into, owner=owner, mode=chmod,
                                contents=contents)
        finally:
            for undo in reversed(cleanup):
                try:
                    undo()
                except KetchError as exc:
                    log_cleanup_failure(__name__, f"{name_or_id}: undoing a step of copy", exc)
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        verb = "ADD" if add else "COPY"
        history = list(record["meta"].get("history") or [])
        history.append({"created": now, "created_by": f"/bin/sh -c #(nop) {verb} {' '.join(sources)} in {destination}",
                        "pending_layer": True})
        self._update(record, history=history)

    def _mount_other(self, name: str, cleanup: list) -> str:
        try:
            other = self._record(name)
            path = str(self.store.mount_container(other["id"]))
            cleanup.append(lambda: self.store.unmount_container(other["id"]))
            return path
        except NotFoundError:
            pass
        record = self.store.lookup(name)
        path = str(self.store.mount_image(record.id))
        cleanup.append(lambda: self.store.unmount_image(record.id))
        return path

    def _owner(self, record: dict, chown: str) -> tuple[int, int]:
        from ketch.containers import users

        rootfs = str(self.store.mount_container(record["id"]))
        try:
            resolved = users.resolve(rootfs, chown)
        finally:
            self.store.unmount_container(record["id"])
        return resolved.uid, resolved.gid

    # -- run ---------------------------------------------------------------------------------

    def run(self, name_or_id: str, command: list[str], *, volumes: list[str] | None = None,
            mounts: list[str] | None = None, user: str | None = None, workingdir: str | None = None,
            env: list[str] | None = None, network: str = "host", tty: bool = False,
            stdio: tuple[int, int, int] | None = None, oci_mounts: list[Mount] | None = None,
            cap_add: list[str] | None = None) -> int:
        """The command in the working container (its file system, the image config's environment,
        user and working directory), with the build profile, through the engine's one path for a
        process in a container (:meth:`ketch.containers.engine.Engine.run_process`); its exit
        status. Nothing is committed: the changes stay in the working container."""
        from ketch.containers import volumes as volumes_mod
        from ketch.containers.engine import Engine, ProcessSetup
        from ketch.containers.options import CreateOptions
        from ketch.oci.config import ImageConfig

        if not command:
            raise InvalidInputError("builder run needs a command")
        record = self._record(name_or_id)
        meta = record["meta"]
        config = meta.get("config") or {}
        options = CreateOptions(command=list(command), entrypoint=[], user=user if user is not None else
                                config.get("User") or None, workdir=workingdir or config.get("WorkingDir") or None,
                                env=list(env or []), tty=tty, interactive=True, network=network,
                                cap_add=list(EXTRA_BUILD_CAPABILITIES) + list(cap_add or []), sdnotify="ignore",
                                log_driver="none",
                                mounts=[m.as_dict() for m in ([volumes_mod.parse_volume(v) for v in volumes or []]
                                                              + [volumes_mod.parse_mount(m) for m in mounts or []])])
        options.check()
        image = ImageConfig.parse(json.dumps({"config": config}).encode())
        placeholders: list[str] = []

        def build_profile(spec: Spec) -> None:
            spec["root"]["readonly"] = False
            spec["linux"]["resources"]["devices"] = [  # mknod of nodes, not their use
                {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
                {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"}]
            # the runtime's own mount points go whole; a RUN --mount target only as itself: the
            # directories made on the way to it stay in the layer, as buildah leaves them
            step_targets = {m["destination"] for m in oci_mounts or []}
            placeholders[:] = files.missing_tops(spec["root"]["path"], [m["destination"] for m in spec["mounts"]
                                                                        if m["destination"] not in step_targets]) + \
                files.missing_leaves(spec["root"]["path"], sorted(step_targets))

        self._update(record, run_pid=os.getpid(), run_pid_start=_start_time(os.getpid()))
        container = _container_record(record, options)
        try:
            # the mount points the runtime made are removed once the process is gone, while the tree
            # is still mounted: they are not part of what the step made
            return Engine(self.store).run_process(container, stdio=stdio, setup=ProcessSetup(
                image=image, adjust_spec=build_profile, extra_mounts=list(oci_mounts or []), events=False,
                finished=lambda: files.remove_placeholders(placeholders)))
        except ContainerCommandNotFoundError as exc:
            raise BuilderCommandNotFoundError(str(exc)) from exc
        except ContainerCommandError as exc:
            raise BuilderCommandError(str(exc)) from exc
        except ContainerError as exc:
            raise BuilderError(str(exc)) from exc
        finally:
            try:
                self._update(record, run_pid=None, run_pid_start=None)
            except NotFoundError:
                pass

    # -- commit ------------------------------------------------------------------------

    def commit(self, name_or_id: str, image: str | None = None, *, fmt: str = "oci", squash: bool = False,
               remove: bool = False, compression: str = "gzip", omit_history: bool = False,
               iidfile: str | None = None) -> str:
        """The working container as an image (one new layer: the changes since ``from``); its id."""
        from ketch.containers.commit import commit

        record = self._record(name_or_id)
        meta = record["meta"]
        runner = meta.get("run_pid")
        if runner and _alive(runner, meta.get("run_pid_start")):
            raise BuilderError(f"working container {record['name']} is in use by a running `builder run` "
                               f"(pid {runner}); commit it when that is done")
        pending = [{k: v for k, v in h.items() if k != "pending_layer"} for h in meta.get("history") or []
                   if not h.get("pending_layer")]
        layer_steps = [h["created_by"] for h in meta.get("history") or [] if h.get("pending_layer")]
        created_by = meta.get("next_created_by") or ("; ".join(layer_steps) if layer_steps else
                                                     "/bin/sh -c #(nop) ketch builder commit")
        # As buildah: the new layer holds every change since `from`, whatever was committed before.
        image_id = commit(self.store, record["id"], meta.get("from_image_id") or None, name=image, fmt=fmt,
                          created_by=created_by, settings=meta.get("config") or {}, pending_history=pending,
                          squash=squash, compression=compression, omit_history=omit_history,
                          top_level=meta.get("top") or {}, message=meta.get("next_comment") or "")
        if iidfile:
            with open(iidfile, "w") as f:
                f.write(f"sha256:{image_id}")
        if remove:
            self.remove(record["id"])
        return image_id

    # -- inspect ------------------------------------------------------------------------

    def inspect(self, name_or_id: str) -> dict:
        record = self._record(name_or_id)
        meta = record["meta"]
        mount = ""
        row = self.store.mount_record(f"container:{record['id']}")
        if row is not None and row["count"] > 0:
            mount = row["path"]
        oci_config = {**(meta.get("top") or {}), "config": meta.get("config") or {},
                      "history": meta.get("history") or []}
        return {"Type": "ketch 0.0.1", "FromImage": meta.get("from_image", ""),
                "FromImageID": meta.get("from_image_id", ""), "Container": record["name"],
                "ContainerID": record["id"], "MountPoint": mount, "OCIv1": oci_config,
                "ImageAnnotations": (meta.get("top") or {}).get("annotations") or {},
                "History": meta.get("history") or []}


def _command_value(value, what: str) -> list[str]:
    from ketch.containers.commit import json_words

    if isinstance(value, list):
        return value
    words = json_words(value, f"--{what}")
    if words is not None:
        return words
    if what == "shell":
        raise InvalidInputError(f"invalid --shell {value!r}: a JSON array")
    return [value.strip()]


def _duration_ns(text: str, what: str) -> int:
    units = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                return int(float(text[: -len(suffix)]) * units[suffix])
            except ValueError:
                break
    raise InvalidInputError(f"invalid --{what.replace('_', '-')} {text!r}: a duration such as 30s")


def _start_time(pid: int) -> str | None:
    from ketch.containers.state import start_time

    return start_time(pid)


def _alive(pid: int, started: str | None) -> bool:
    from ketch.containers.state import alive

    return alive(pid, started)


def _container_record(record: dict, options):
    """A working container as the engine takes it (its row, its metadata, the run's options)."""
    from ketch.containers.engine import ContainerRecord

    return ContainerRecord(record["id"], record["name"], record["image"] or "", record["created"], record["meta"],
                           options)
