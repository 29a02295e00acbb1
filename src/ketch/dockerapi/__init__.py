"""The Docker Engine API on a socket (``ketch system service``), as ``podman system service``
serves it: a translator between the tools that speak only Docker's API (the docker CLI,
docker-compose, the docker SDK, testcontainers) and ketch's store and engine. No daemon runs
the containers: each has its own monitor, as with ``ketch run -d``, so stopping the service
stops no container.

- :mod:`ketch.dockerapi.server`: the HTTP server (aiohttp), the socket (a path, 127.0.0.1:PORT,
  or systemd's ``LISTEN_FDS``), the idle timeout, API versions and errors.
- :mod:`ketch.dockerapi.containers`, :mod:`ketch.dockerapi.images`,
  :mod:`ketch.dockerapi.system`: the endpoints.
- :mod:`ketch.dockerapi.shapes`: Docker's JSON shapes from ketch's records.
- :mod:`ketch.dockerapi.streams`: hijacked connections and the multiplexed stream format.
"""
