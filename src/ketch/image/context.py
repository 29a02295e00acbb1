"""Settings that say how to reach an image: credentials, TLS, retries, platform.

The counterpart of containers/image's SystemContext. One is passed to a
source and another to a destination, so that ``--src-creds`` and
``--dest-creds`` stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SystemContext:
    # Credentials: explicit ones win over any auth file.
    username: str | None = None
    password: str | None = None
    # The auth file to read first (``--authfile`` / ``REGISTRY_AUTH_FILE``).
    authfile: str | None = None
    # None: verify TLS (the default). False: skip verification and allow plain HTTP.
    tls_verify: bool | None = None
    # How many times a failed request (429, 5xx, reset connection) is tried again.
    retry_times: int = 3
    # First wait between retries; doubled each time.
    retry_delay: float = 0.5
    # Platform to pick from an index instead of the host's.
    override_arch: str | None = None
    override_os: str | None = None
    override_variant: str | None = None
    # A certs.d-style directory for this registry (``--cert-dir``).
    cert_dir: str | None = None
    # registries.conf to read instead of the default (``--registries-conf``).
    registries_conf: str | None = None
    # The registries.d directory to read alone instead of the user's and the system's (``--registries.d``).
    registries_d: str | None = None
    # The trust policy of pulls made with this context (``--signature-policy``; None: the user's or
    # the system's policy.json), or none at all (``--insecure-policy``).
    signature_policy_path: str | None = None
    insecure_policy: bool = False
    # Upload blobs in PATCH chunks of this many bytes; None streams one PATCH.
    upload_chunk_size: int | None = None
    # The local store (ketch-storage:): root, run directory, driver; None = defaults.
    storage_root: str | None = None
    storage_runroot: str | None = None
    storage_driver: str | None = None
    # oci: layouts keep their blobs here instead of their own blobs/ (skopeo's --shared-blob-dir).
    oci_shared_blob_dir: str | None = None
    # oci: destinations keep uncompressed layers as they are (skopeo's --dest-oci-accept-uncompressed-layers).
    oci_accept_uncompressed_layers: bool = False
    # Ask registries for no credentials at all (``--no-creds``).
    no_creds: bool = False
    # A bearer token to send as it is (``--registry-token``).
    registry_token: str | None = None
    # Connect and read time-outs, in seconds.
    timeout: float = 60.0
    user_agent: str = "ketch/0.1"

    def registries(self):
        """The parsed registries.conf (read once per context)."""
        cached = getattr(self, "_registries", None)
        if cached is None:
            from ketch.image.registries import RegistriesConf

            cached = RegistriesConf.load(self.registries_conf)
            object.__setattr__(self, "_registries", cached)
        return cached

    @classmethod
    def with_creds(cls, creds: str | None, **kwargs) -> SystemContext:
        """Build a context from a ``USER[:PASS]`` string as skopeo's ``--creds`` takes it."""
        ctx = cls(**kwargs)
        if creds:
            user, sep, password = creds.partition(":")
            ctx.username, ctx.password = user, password if sep else ""
        return ctx
