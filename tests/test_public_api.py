"""The public surface of ``import ketch``: every name resolves, and the list is pinned."""

import subprocess
import sys

import ketch

EXPECTED = {
    "AuthenticationError", "BlobUnknownError", "CopyOptions", "CopyResult", "DestinationError",
    "DigestMismatchError", "DockerArchiveWriter", "ImageFormatError", "InUseError", "InvalidInputError",
    "InvalidReferenceError", "KetchError", "ManifestUnknownError", "NotFoundError", "Policy", "PolicyDeniedError",
    "RegistriesConf", "RegistryError", "RegistryUnreachableError", "SystemContext", "UnsupportedError",
    "__version__", "copy_image", "delete_image", "inspect_config", "inspect_image", "list_tags", "login", "logout",
    "parse_image_name", "parse_reference", "Engine", "CreateOptions", "RunResult", "ContainerError", "run", "Builder",
    "scan", "ScanOptions", "ScanReport", "ScanError",
}


def test_exported_names():
    assert set(ketch.__all__) == EXPECTED
    for name in ketch.__all__:
        assert getattr(ketch, name) is not None


def test_import_is_light():
    """``import ketch`` must not pull in the HTTP stack or the copy engine."""
    code = "import sys, ketch; print(sorted(m for m in sys.modules if m.startswith(('urllib3', 'ketch.image'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
