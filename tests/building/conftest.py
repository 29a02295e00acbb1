"""(Not named tests/build: pytest skips directories of that name.) The builder tests use the
container tests' store (busybox loaded) and their clean-up checks."""

from tests.containers.conftest import ketch_env, ketch_session  # noqa: F401  (fixtures)
