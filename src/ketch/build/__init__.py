"""Building images: buildah's primitives (:class:`~ketch.build.builder.Builder`); Dockerfile builds
come on top of them."""

from ketch.build.builder import Builder, BuilderError

__all__ = ["Builder", "BuilderError"]
