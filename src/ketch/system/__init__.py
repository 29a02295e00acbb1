"""System containers (``atomic install --system``), Quadlet units and auto-update: containers
that systemd starts at boot with no container engine running.

- :mod:`ketch.system.deployments`: read-only deployments of an image, their units, the switch;
- :mod:`ketch.system.objects`: the content-addressed file store deployments share;
- :mod:`ketch.system.templates`: the ``/exports`` templates and the defaults;
- :mod:`ketch.system.quadlet`: ``.container``/``.volume``/``.network`` files to services;
- :mod:`ketch.system.units`: ``generate systemd`` for a container;
- :mod:`ketch.system.autoupdate`: ``auto-update``.
"""

from ketch.system.deployments import Deployment, SystemContainerError, SystemContainers

__all__ = ["Deployment", "SystemContainerError", "SystemContainers"]
