"""Building images: buildah's primitives (:class:`~ketch.builder.working.Builder`: working
containers, run, copy, config, commit) and Dockerfile builds on them
(:func:`~ketch.builder.interpreter.build`).

Modules: ``working`` (the primitives), ``dockerfile`` (the parser), ``interpreter`` (the steps of
a build), ``cache`` (the layer cache's table), ``files`` (copies, archives, digests),
``dockerignore`` and ``context``.
"""

from ketch.builder.working import Builder
from ketch.errors import BuilderError, BuildError

__all__ = ["Builder", "BuilderError", "BuildError"]
