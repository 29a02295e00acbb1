"""Mount-and-scan: what is inside images, containers and trees, without running any of it.

- :mod:`~ketch.scanning.layers`: one layer's directory, walked through file descriptors
  (packages from their databases, findings from modes, attributes and contents);
- :mod:`~ketch.scanning.merge`: an image's layer scans merged by overlay's rules;
- :mod:`~ketch.scanning.catalogers`: the package databases (dpkg, rpm, apk, Python, npm, Go, Java);
- :mod:`~ketch.scanning.vulns`: an offline OSV database matched with each ecosystem's versions;
- :mod:`~ketch.scanning.sbom`: SPDX 2.3 and CycloneDX 1.5 documents;
- :mod:`~ketch.scanning.external`: scanners of the host (ClamAV, OpenSCAP) run on the view;
- :mod:`~ketch.scanning.engine`: :func:`scan` (``ketch.scan``), the cache and the targets.

Stands on :mod:`ketch.storage` (the read-only views) and :mod:`ketch.image` (remote images).
"""
