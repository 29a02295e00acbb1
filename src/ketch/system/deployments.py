"""System containers: images checked out as read-only deployments that systemd starts with the OCI
runtime alone (``atomic install --system``).

On disk, under the system directory (``<store root>/system``)::

    objects/XX/...              content-addressed files (:mod:`ketch.system.objects`)
    deployments/NAME/N/         one deployment: rootfs/, config.json, NAME.service,
                                tmpfiles.conf, info.json (image, values, hostfs files)

and on the host: ``/etc/systemd/system/NAME.service``, a symbolic link to the active
deployment's unit; ``/etc/systemd/system/<target>.wants/NAME.service`` (enabled);
``/etc/tmpfiles.d/NAME.conf``, a link to its tmpfiles.conf; and the files of the image's
``/exports/hostfs``. The unit link is the one switch: a deployment is complete before it is
made, and replacing it is a ``rename``, so an install, update or rollback killed at any moment
leaves the unit on the old deployment or the new one, never on a missing one. Nothing here is
needed at boot but the runtime: no ketch process, no store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError, KetchError, NotFoundError
from ketch.filelocks import file_lock
from ketch.system import templates
from ketch.system.objects import CheckoutStats, ObjectStore, remove_tree

UNIT_DIR = "etc/systemd/system"
TMPFILES_DIR = "etc/tmpfiles.d"
MOUNTED_MARKER = ".mounted-image"  # in a deployment being made: the image it holds mounted


class SystemContainerError(KetchError):
    """A system container could not be installed, switched or removed."""


@dataclass
class Deployment:
    """One checked-out deployment of an install, as its info.json records it."""
    name: str
    number: int
    path: Path
    image: str
    image_id: str
    digest: str
    created: float
    runtime: str
    values: dict[str, str] = field(default_factory=dict)
    hostfs: list[str] = field(default_factory=list)  # host paths this deployment put there
    hostfs_dirs: list[str] = field(default_factory=list)  # directories it made for them
    shared: bool = True
    stats: dict = field(default_factory=dict)

    def info(self) -> dict:
        return {"name": self.name, "image": self.image, "image_id": self.image_id, "digest": self.digest,
                "created": self.created, "runtime": self.runtime, "values": self.values, "hostfs": self.hostfs,
                "hostfs_dirs": self.hostfs_dirs, "shared": self.shared, "stats": self.stats}

    @classmethod
    def load(cls, path: Path) -> Deployment:
        data = json.loads((path / "info.json").read_text())
        return cls(name=data["name"], number=int(path.name), path=path, image=data["image"],
                   image_id=data["image_id"], digest=data.get("digest", ""), created=data["created"],
                   runtime=data["runtime"], values=data.get("values") or {}, hostfs=data.get("hostfs") or [],
                   hostfs_dirs=data.get("hostfs_dirs") or [], shared=data.get("shared", True),
                   stats=data.get("stats") or {})


class Systemd:
    """The host's systemd, when it runs (and the host root is ``/``); otherwise every call is a
    no-op and the units wait for the next boot."""

    def __init__(self, host_root: Path) -> None:
        self.running = str(host_root) == "/" and os.path.isdir("/run/systemd/system") and \
            shutil.which("systemctl") is not None

    def _call(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise SystemContainerError(f"systemctl {' '.join(args)}: "
                                       f"{(result.stderr or result.stdout).strip() or 'failed'}")
        return result

    def daemon_reload(self) -> None:
        if self.running:
            self._call("daemon-reload")

    def try_restart(self, unit: str) -> None:
        if self.running:
            self._call("try-restart", unit)

    def restart_checked(self, unit: str) -> bool:
        """Restart ``unit`` and say whether it is active then (auto-update's test of an update);
        False too when systemd does not run."""
        return self._call("restart", unit, check=False).returncode == 0 and \
            self._call("is-active", "-q", unit, check=False).returncode == 0

    def stop(self, unit: str) -> None:
        if self.running:
            self._call("stop", unit, check=False)

    def forget(self, unit: str) -> None:
        """Drop a stopped unit's "failed" state (a container ended by the stop's SIGTERM may exit
        143, which systemd counts as a failure), so a removed unit is not left listed as failed."""
        if self.running:
            self._call("reset-failed", unit, check=False)

    def tmpfiles(self, conf: Path) -> None:
        if self.running and shutil.which("systemd-tmpfiles"):
            subprocess.run(["systemd-tmpfiles", "--create", str(conf)], capture_output=True)

    def show(self, unit: str) -> dict[str, str]:
        if not self.running:
            return {}
        out = self._call("show", unit, "-p", "ActiveState,SubState,UnitFileState,MainPID", check=False).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def default_runtime(runtime: str | None = None) -> str:
    """The absolute path of the OCI runtime a unit runs: ``ketch-runtime`` (beside this
    interpreter, else on PATH), ``runc``, ``crun`` or a path."""
    runtime = runtime or "ketch-runtime"
    if os.path.isabs(runtime):
        if not os.access(runtime, os.X_OK):
            raise InvalidInputError(f"--runtime {runtime}: not an executable file")
        return runtime
    if runtime == "ketch-runtime":
        beside = Path(sys.executable).parent / "ketch-runtime"
        if beside.exists():
            return str(beside)
    found = shutil.which(runtime)
    if found is None:
        raise InvalidInputError(f"--runtime {runtime}: not found on PATH")
    return os.path.abspath(found)


class SystemContainers:
    """Install, update, roll back and remove system containers of ``store``'s images."""

    def __init__(self, store, *, directory: str | os.PathLike | None = None, host_root: str | os.PathLike = "/") -> None:
        self.store = store
        self.directory = Path(directory) if directory else Path(store.root) / "system"
        self.host_root = Path(host_root)
        self.objects = ObjectStore(self.directory)
        self.systemd = Systemd(self.host_root)

    # -- paths ---------------------------------------------------------------------------

    def _deployments(self, name: str) -> Path:
        return self.directory / "deployments" / name

    def _host(self, path: str) -> Path:
        return self.host_root / path.lstrip("/")

    def unit_path(self, name: str) -> Path:
        return self.host_root / UNIT_DIR / f"{name}.service"

    def _tmpfiles_link(self, name: str) -> Path:
        return self.host_root / TMPFILES_DIR / f"{name}.conf"

    @contextlib.contextmanager
    def _locked(self):
        with file_lock(self.directory / ".lock"):
            yield

    # -- reading ---------------------------------------------------------------------------

    def deployments(self, name: str) -> list[Deployment]:
        """The complete deployments of an install, oldest first."""
        base = self._deployments(name)
        if not base.is_dir():
            return []
        found = []
        for entry in base.iterdir():
            if entry.name.isdigit() and (entry / "info.json").is_file():
                with contextlib.suppress(ValueError, KeyError, OSError):
                    found.append(Deployment.load(entry))
        return sorted(found, key=lambda d: d.number)

    def active(self, name: str) -> Deployment | None:
        """The deployment the unit points at (None: not installed)."""
        link = self.unit_path(name)
        try:
            target = Path(os.readlink(link))
        except OSError:
            return None
        if target.parent.parent != self._deployments(name):
            return None
        with contextlib.suppress(ValueError, KeyError, OSError):
            return Deployment.load(target.parent)
        return None

    def names(self) -> list[str]:
        base = self.directory / "deployments"
        if not base.is_dir():
            return []
        return sorted(e.name for e in base.iterdir() if self.active(e.name) is not None)

    def list(self) -> list[dict]:
        rows = []
        for name in self.names():
            active = self.active(name)
            assert active is not None
            rows.append({"Name": name, "Image": active.image, "ImageID": active.image_id, "Digest": active.digest,
                         "Deployment": active.number, "Created": active.created, "Runtime": active.runtime,
                         "State": self.systemd.show(f"{name}.service").get("ActiveState", "")})
        return rows

    def status(self, name: str) -> dict:
        active = self._require(name)
        unit = self.systemd.show(f"{name}.service")
        return {"Name": name, "Unit": str(self.unit_path(name)), "Active": active.number,
                "UnitState": unit.get("ActiveState", "unknown (systemd is not running)"),
                "SubState": unit.get("SubState", ""), "MainPID": int(unit.get("MainPID") or 0),
                "Deployments": [{"Deployment": d.number, "Path": str(d.path), "Image": d.image, "ImageID": d.image_id,
                                 "Digest": d.digest, "Created": d.created, "Active": d.number == active.number,
                                 "Values": d.values, "HostFiles": d.hostfs}
                                for d in self.deployments(name)]}

    def _require(self, name: str) -> Deployment:
        active = self.active(name)
        if active is None:
            raise NotFoundError(f"system container {name!r} is not installed")
        return active

    # -- install / update ------------------------------------------------------------------

    def install(self, image: str, *, name: str | None = None, values: dict[str, str] | None = None,
                runtime: str | None = None, pull=None) -> Deployment:
        """Pull ``image`` (``pull(name) -> image id``; the store's copy when None) and install it
        as system container ``name`` (default: the image's repository name), enabled."""
        image_id = pull(image) if pull is not None else self.store.lookup(image).id
        name = name or _name_from(image)
        _check_name(name)
        with self._locked():
            self._recover(name)
            if self.active(name) is not None:
                raise SystemContainerError(f"system container {name!r} is already installed: use update")
            deployment = self._deploy(name, image, image_id, values or {}, default_runtime(runtime), previous=None)
            self._switch(name, deployment, None)
        return deployment

    def update(self, name: str, *, values: dict[str, str] | None = None, runtime: str | None = None,
               pull=None, image: str | None = None, force: bool = False, restart: bool = True) -> Deployment | None:
        """Pull the installed image again (or ``image``); if it changed (or ``values``, or
        ``force``), deploy it, switch the unit to it and restart the unit. None: already current."""
        current = self._require(name)
        reference = image or current.image
        image_id = pull(reference) if pull is not None else self.store.lookup(reference).id
        merged = {**current.values, **(values or {})}
        new_runtime = default_runtime(runtime) if runtime else current.runtime
        if image_id == current.image_id and merged == current.values and new_runtime == current.runtime and not force:
            return None
        with self._locked():
            self._recover(name)
            current = self._require(name)
            deployment = self._deploy(name, reference, image_id, merged, new_runtime, previous=current)
            self._switch(name, deployment, current)
            self._keep_latest(name, deployment, current)
        if restart:
            self.systemd.try_restart(f"{name}.service")
        return deployment

    def rollback(self, name: str, *, restart: bool = True) -> Deployment:
        """Switch the unit back to the previous deployment and restart it."""
        with self._locked():
            current = self._require(name)
            older = [d for d in self.deployments(name) if d.number != current.number]
            if not older:
                raise SystemContainerError(f"system container {name!r} has no previous deployment to roll back to")
            previous = max(older, key=lambda d: d.number if d.number < current.number else -1)
            self._switch(name, previous, current)
        if restart:
            self.systemd.try_restart(f"{name}.service")
        return previous

    def uninstall(self, name: str) -> None:
        """Stop and disable the unit; remove it, its tmpfiles.d link, the host files its
        deployments put there, and the deployments (objects no other install links go too)."""
        with self._locked():
            self._recover(name)
            active = self._require(name)
            unit = f"{name}.service"
            self.systemd.stop(unit)
            for target, kind in templates.wanted_by((active.path / unit).read_text()):
                _unlink(self.host_root / UNIT_DIR / f"{target}.{kind}" / unit)
            _unlink(self.unit_path(name))
            _unlink(self._tmpfiles_link(name))
            self.systemd.daemon_reload()
            self.systemd.forget(unit)
            for deployment in self.deployments(name):
                self._remove_hostfs(deployment, keep=set())
            remove_tree(self._deployments(name))
            self.objects.prune()

    # -- the steps --------------------------------------------------------------------------

    def _recover(self, name: str) -> None:
        """Remove what an install or update killed half-way left: unfinished deployments, and
        complete ones the unit never pointed at (their switch did not happen)."""
        base = self._deployments(name)
        if not base.is_dir():
            return
        active = self.active(name)
        for entry in list(base.iterdir()):
            if entry.name.startswith(".new-"):  # (we hold the lock: whoever made it is gone)
                marker = entry / MOUNTED_MARKER
                if marker.exists():
                    with contextlib.suppress(KetchError):
                        self.store.unmount_image(marker.read_text().strip())
                remove_tree(entry)
            elif entry.name.isdigit() and not (entry / "info.json").exists():
                remove_tree(entry)
        if active is None and not any(base.iterdir()):
            base.rmdir()

    def _deploy(self, name: str, reference: str, image_id: str, sets: dict[str, str], runtime: str,
                previous: Deployment | None) -> Deployment:
        record = self.store.lookup(image_id)
        base = self._deployments(name)
        base.mkdir(parents=True, exist_ok=True)
        numbers = [int(e.name) for e in base.iterdir() if e.name.isdigit()]
        number = max(numbers, default=-1) + 1
        final = base / str(number)
        temp = base / f".new-{number}-{os.getpid()}"
        remove_tree(temp)
        temp.mkdir(mode=0o700)
        deployment = Deployment(name=name, number=number, path=final, image=reference, image_id=record.id,
                                digest=record.digest, created=time.time(), runtime=runtime)
        sets = dict(sets)
        try:
            mounted = Path(self.store.mount_image(record.id))
            # (for _recover: a process killed from here on leaves the store a mount count to drop)
            (temp / MOUNTED_MARKER).write_text(record.id)
            try:
                exports = templates.Exports.read(str(mounted))
                config_values = self._values(deployment, exports, sets, record, previous)
                deployment.values = {k: v for k, v in sets.items()}
                config = self._config(exports, config_values, record, mounted)
                deployment.shared = bool((config.get("root") or {}).get("readonly"))
                stats = self.objects.checkout(mounted, temp / "rootfs", share=deployment.shared)
                deployment.stats = stats.__dict__ if isinstance(stats, CheckoutStats) else {}
                if exports.has_hostfs:
                    self._plan_hostfs(mounted, deployment, previous)
            finally:
                self.store.unmount_image(record.id)
                (temp / MOUNTED_MARKER).unlink()
            unit = exports.service if exports.service is not None else templates.default_unit(
                config_values, record.parsed_config.labels or {})
            unit_text = templates.render(unit, config_values, f"/{templates.EXPORTS}/{templates.SERVICE_TEMPLATE}")
            tmpfiles = templates.render(exports.tmpfiles, config_values,
                                        f"/{templates.EXPORTS}/{templates.TMPFILES_TEMPLATE}") \
                if exports.tmpfiles is not None else templates.default_tmpfiles(config_values)
            _write(temp / "config.json", json.dumps(config, indent=2) + "\n")
            _write(temp / f"{name}.service", unit_text)
            _write(temp / "tmpfiles.conf", tmpfiles)
            _write(temp / "info.json", json.dumps(deployment.info(), indent=2) + "\n")
            os.chmod(temp, 0o755)
            os.rename(temp, final)
        except BaseException:
            remove_tree(temp)
            raise
        return deployment

    def _values(self, deployment: Deployment, exports: templates.Exports, sets: dict[str, str], record,
                previous: Deployment | None) -> dict[str, str]:
        from ketch.runtime.capabilities import NAMES

        name, runtime = deployment.name, deployment.runtime
        values = {"RUN_DIRECTORY": "/run", "STATE_DIRECTORY": "/var/lib", **exports.defaults, **sets}
        destdir = str(deployment.path)
        values.update({
            "NAME": name, "DESTDIR": destdir, "IMAGE_NAME": deployment.image, "IMAGE_ID": record.id,
            "UUID": (previous.values.get("UUID") if previous else None) or str(uuid.uuid4()),
            "PIDFILE": f"{values['RUN_DIRECTORY']}/container-{name}.pid",
            "EXEC_START": f"{runtime} run --bundle {destdir} --pid-file {values['RUN_DIRECTORY']}/container-{name}.pid "
                          f"{name}",
            "EXEC_STOP": f"{runtime} kill {name} TERM",
            "EXEC_STARTPRE": f"{runtime} delete --force {name}",
            "EXEC_STOPPOST": f"{runtime} delete --force {name}",
            "ALL_PROCESS_CAPABILITIES": ", ".join(f'"{c}"' for c in NAMES),
        })
        sets["UUID"] = values["UUID"]  # (kept across updates, as the install's identity)
        return values

    def _config(self, exports: templates.Exports, values: dict[str, str], record, mounted: Path) -> dict:
        if exports.config is not None:
            text = templates.render(exports.config, values, f"/{templates.EXPORTS}/{templates.CONFIG_TEMPLATE}")
            try:
                config = json.loads(text)
            except ValueError as exc:
                raise InvalidInputError(f"/{templates.EXPORTS}/{templates.CONFIG_TEMPLATE} does not render to "
                                        f"JSON: {exc}") from exc
            if not isinstance(config, dict):
                raise InvalidInputError(f"/{templates.EXPORTS}/{templates.CONFIG_TEMPLATE} must render to an object")
            config.setdefault("root", {"path": "rootfs", "readonly": True})
            linux = config.setdefault("linux", {})
            if isinstance(linux, dict):
                linux.setdefault("cgroupsPath", f"ketch-{values['NAME']}")  # inside the unit's cgroup
            return config
        from ketch.containers import users

        image_config = record.parsed_config.container_config
        user = users.resolve(str(mounted), image_config.get("User") or "0")
        host_files = {p: os.path.isfile(p) for p in ("/etc/resolv.conf", "/etc/hosts")}
        state = values["STATE_DIRECTORY"]
        os.makedirs(self._host(f"{state}/{values['NAME']}"), mode=0o700, exist_ok=True)
        return templates.default_config(image_config, (user.uid, user.gid, user.additional_gids), values["NAME"],
                                        state, host_files)

    def _plan_hostfs(self, mounted: Path, deployment: Deployment, previous: Deployment | None) -> None:
        """List ``/exports/hostfs`` (copied onto the host at the switch); refuse a file that
        exists on the host and that no deployment of this install put there."""
        source = mounted / templates.EXPORTS / templates.HOSTFS
        owned = set(previous.hostfs) if previous else set()
        files, dirs = [], []
        for directory, subdirs, names in os.walk(source):
            subdirs.sort()
            rel_dir = "/" + os.path.relpath(directory, source).lstrip(".").lstrip("/")
            for sub in subdirs:
                host_dir = os.path.join(rel_dir, sub)
                if not self._host(host_dir).exists():
                    dirs.append(host_dir)
            files += [os.path.join(rel_dir, entry) for entry in sorted(names)]
        for path in files:
            target = self._host(path)
            if os.path.lexists(target) and path not in owned:
                raise SystemContainerError(f"/exports/hostfs{path}: {target} exists on the host and is not this "
                                           f"install's: remove it or install under another name")
        deployment.hostfs = files
        deployment.hostfs_dirs = sorted(set(dirs) | set(previous.hostfs_dirs if previous else []))

    def _place_hostfs(self, new: Deployment, old: Deployment | None) -> None:
        """Copy ``new``'s host files (from its own rootfs) onto the host and remove those only
        ``old`` had; each file is written beside its place and renamed over it."""
        source = new.path / "rootfs" / templates.EXPORTS / templates.HOSTFS
        for path in new.hostfs:
            src, dest = source / path.lstrip("/"), self._host(path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            temp = dest.with_name(f".{dest.name}.ketch-new")
            _unlink(temp)
            if src.is_symlink():
                os.symlink(os.readlink(src), temp)
            else:
                shutil.copy2(src, temp)
            os.rename(temp, dest)
        for path in set(old.hostfs if old else []) - set(new.hostfs):
            _unlink(self._host(path))

    def _remove_hostfs(self, deployment: Deployment, keep: set[str]) -> None:
        for path in deployment.hostfs:
            if path not in keep:
                _unlink(self._host(path))
        for path in sorted(deployment.hostfs_dirs, key=len, reverse=True):
            with contextlib.suppress(OSError):
                self._host(path).rmdir()  # (only when empty: something else may live there now)

    def _switch(self, name: str, new: Deployment, old: Deployment | None) -> None:
        """Point the unit at ``new`` (one rename: the commit), then the tmpfiles.d link and the
        enabling links; reload systemd."""
        unit = f"{name}.service"
        unit_dir = self.host_root / UNIT_DIR
        unit_dir.mkdir(parents=True, exist_ok=True)
        if new.hostfs or (old is not None and old.hostfs):
            try:
                self._place_hostfs(new, old)
            except OSError as exc:
                with contextlib.suppress(OSError):  # (the old files back, as the unit stays on old)
                    if old is not None:
                        self._place_hostfs(old, new)
                    else:
                        self._remove_hostfs(new, keep=set())
                raise SystemContainerError(f"copying /exports/hostfs onto the host: {exc.strerror or exc}") from exc
        _replace_link(self.unit_path(name), new.path / unit)
        tmpfiles = self._tmpfiles_link(name)
        tmpfiles.parent.mkdir(parents=True, exist_ok=True)
        _replace_link(tmpfiles, new.path / "tmpfiles.conf")
        wanted = set(templates.wanted_by((new.path / unit).read_text()))
        if old is not None:
            for target, kind in set(templates.wanted_by((old.path / unit).read_text())) - wanted:
                _unlink(unit_dir / f"{target}.{kind}" / unit)
        for target, kind in wanted:
            (unit_dir / f"{target}.{kind}").mkdir(exist_ok=True)
            _replace_link(unit_dir / f"{target}.{kind}" / unit, Path(f"../{unit}"))
        self.systemd.daemon_reload()
        self.systemd.tmpfiles(tmpfiles)

    def _keep_latest(self, name: str, active: Deployment, previous: Deployment) -> None:
        """Keep the active deployment and the one it replaced (what rollback returns to); the
        others go, with the objects only they linked."""
        removed = False
        for deployment in self.deployments(name):
            if deployment.number not in (active.number, previous.number):
                remove_tree(deployment.path)
                removed = True
        if removed:
            self.objects.prune()


def _name_from(image: str) -> str:
    """The default name: the image's last path component, without tag or digest."""
    text = image.split("://", 1)[-1].split("@", 1)[0]
    last = text.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] if ":" in last else last


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name.endswith((".service", ".")):
        raise InvalidInputError(f"invalid system container name {name!r}: use letters, digits, '_', '.' and '-'")


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _replace_link(link: Path, target: Path) -> None:
    temp = link.with_name(f".{link.name}.ketch-new")
    _unlink(temp)
    os.symlink(target, temp)
    os.rename(temp, link)
