"""An OCI runtime (runtime-spec): bundles in, containers out, like runc.

Depends on ``ketch.oci`` (errors) and ``ketch.syscalls`` alone; knows no store.
The command line is the ``ketch-runtime`` console script (``ketch.cli.runtime``).
"""
