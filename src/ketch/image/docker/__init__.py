"""The ``docker://`` transport: a registry client for the OCI distribution spec."""
