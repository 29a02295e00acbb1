"""Containers (podman's everyday commands) over the store and the runtime, with no daemon.

``Engine`` does it all; ``CreateOptions`` carries what ``ketch create``/``run`` take. See
docs/containers.md.
"""

from ketch.containers.engine import ContainerError, Engine, RunResult
from ketch.containers.options import CreateOptions

__all__ = ["ContainerError", "CreateOptions", "Engine", "RunResult"]
