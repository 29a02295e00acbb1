"""Choosing an image for a platform from an index, as containers/image does."""

from __future__ import annotations

import platform as _platform

from ketch.errors import NotFoundError
from ketch.image.context import SystemContext
from ketch.oci import Descriptor, Index

# uname machine -> (GOARCH, variant)
_MACHINE = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine in OCI terms."""
    machine = _platform.machine()
    arch, variant = _MACHINE.get(machine, (machine, ""))
    return "linux", arch, variant


def parse_platform(text: str) -> tuple[str, str, str]:
    """``OS/ARCH[/VARIANT]`` (``--platform``) as (os, architecture, variant)."""
    from ketch.errors import InvalidInputError

    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidInputError(f"invalid platform {text!r}: use OS/ARCH[/VARIANT]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def wanted_platform(ctx: SystemContext) -> tuple[str, str, str]:
    os_name, arch, variant = host_platform()
    if ctx.override_arch and ctx.override_arch != arch:
        variant = ""  # the host's variant means nothing for another architecture
    return (ctx.override_os or os_name, ctx.override_arch or arch, ctx.override_variant or variant)


def choose_instance(index: Index, ctx: SystemContext) -> Descriptor:
    """The index entry for the wanted platform; an exact variant beats none."""
    os_name, arch, variant = wanted_platform(ctx)
    best = None
    for entry in index.manifests:
        p = entry.platform
        if p is None or p.os != os_name or p.architecture != arch:
            continue
        if variant and p.variant == variant:
            return entry
        if not p.variant or not variant:
            best = best or entry
    # arm64 images are often published without a variant, and v8 is the only one in use.
    if best is None and arch == "arm64":
        best = next((e for e in index.manifests if e.platform and e.platform.os == os_name
                     and e.platform.architecture == arch), None)
    if best is None:
        raise NotFoundError(
            f'no image found in manifest list for architecture "{arch}", variant "{variant}", OS "{os_name}"')
    return best
