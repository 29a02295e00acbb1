"""``auto-update``, as podman's: containers labelled ``io.containers.autoupdate=registry|local``
that a systemd unit runs (the ``PODMAN_SYSTEMD_UNIT`` label, set when ``ketch run`` starts
inside a unit), and system containers whose image carries the label.

``registry``: the registry's manifest digest for the container's image name (a HEAD request,
nothing pulled) against the local image's; when they differ, pull, then restart the unit.
``local``: the image the name now points to in the store against the container's. When the
restarted unit fails, the previous image gets its name back and the unit is restarted again
(podman's rollback); a system container rolls back to its previous deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ketch.errors import KetchError
from ketch.system.deployments import Systemd
from ketch.system.quadlet import AUTOUPDATE_LABEL

UNIT_LABEL = "PODMAN_SYSTEMD_UNIT"
POLICIES = ("registry", "local")


@dataclass
class Report:
    """One row of the report: podman's columns."""
    unit: str
    container: str
    image: str
    policy: str
    updated: str  # "true", "false", "pending", "rolled back", "failed"

    def row(self) -> dict:
        return {"Unit": self.unit, "Container": self.container, "Image": self.image, "Policy": self.policy,
                "Updated": self.updated}


def _registry_digest(name: str, ctx) -> str:
    from ketch.image.docker.transport import DockerReference

    ref = DockerReference.parse("//" + name.removeprefix("docker://"))
    return str(ref.client(ctx).manifest_digest(ref.manifest_reference))


def auto_update(engine, system, ctx, policy, *, dry_run: bool = False, rollback: bool = True,
                systemctl: Systemd | None = None, pull=None) -> list[Report]:
    """Check and update every labelled container and system container; one report each.
    ``pull(name) -> image id`` pulls into the store (default: the registry through ``ctx``)."""
    from ketch.containers.images import pull as pull_image
    from ketch.containers.views import image_name

    systemctl = systemctl or Systemd(Path("/"))
    pull = pull or (lambda name: pull_image(engine.store, name, ctx, policy))
    reports: list[Report] = []
    seen_units: set[str] = set()
    for record in engine.records():
        labels = record.options.labels or {}
        mode, unit = labels.get(AUTOUPDATE_LABEL), labels.get(UNIT_LABEL)
        if mode is None or not unit or unit in seen_units:
            continue
        if engine._status(record).get("status") != "running":
            continue
        seen_units.add(unit)
        name = image_name(engine, record)
        report = Report(unit, record.id[:12], name, mode, "false")
        reports.append(report)
        if mode not in POLICIES:
            report.updated = "failed"
            report.policy = f"{mode} (unknown policy)"
            continue
        try:
            old_id = record.image
            if mode == "registry":
                local = engine.store.lookup(old_id).digest
                if _registry_digest(name, ctx) == local:
                    continue
            else:
                if engine.store.lookup(name).id == old_id:
                    continue
            if dry_run:
                report.updated = "pending"
                continue
            new_id = pull(name) if mode == "registry" else engine.store.lookup(name).id
            if new_id == old_id:
                continue
            # (on failure the old image gets its name back)
            _restart(report, systemctl, rollback, lambda old_id=old_id, name=name: engine.store.tag(old_id, name))
        except KetchError as exc:
            report.updated = f"failed: {exc}"
    if system is not None:
        reports += _system_containers(system, dry_run, rollback, systemctl, ctx, pull)
    return reports


def _restart(report: Report, systemctl: Systemd, rollback: bool, undo) -> None:
    """Restart the report's unit on its new image; when it fails, ``undo`` and restart again."""
    if systemctl.restart_checked(report.unit):
        report.updated = "true"
        return
    report.updated = "failed"
    if rollback:
        undo()
        report.updated = "rolled back" if systemctl.restart_checked(report.unit) else "failed"


def _system_containers(system, dry_run, rollback, systemctl, ctx, pull) -> list[Report]:
    reports = []
    for name in system.names():
        active = system.active(name)
        try:
            record = system.store.lookup(active.image_id)
        except KetchError:
            continue
        mode = (record.parsed_config.labels or {}).get(AUTOUPDATE_LABEL)
        if mode is None:
            continue
        unit = f"{name}.service"
        report = Report(unit, name, active.image, mode, "false")
        reports.append(report)
        try:
            if mode == "registry":
                if _registry_digest(active.image, ctx) == active.digest:
                    continue
            elif system.store.lookup(active.image).id == active.image_id:
                continue
            if dry_run:
                report.updated = "pending"
                continue
            deployment = system.update(name, pull=pull if mode == "registry" else None, restart=False)
            if deployment is None:
                continue
            _restart(report, systemctl, rollback, lambda name=name: system.rollback(name, restart=False))
        except KetchError as exc:
            report.updated = f"failed: {exc}"
    return reports
