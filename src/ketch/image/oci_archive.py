"""The ``oci-archive:PATH[:REF]`` transport: an OCI layout in a tar file.

Read straight out of the tar; written as a layout in a temporary directory
beside the archive, then tarred and renamed into place at commit (the new
archive holds this image only, as with skopeo).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ketch.image.archive import TarReader, remove_tree, temp_dir_beside, write_tar
from ketch.image.context import SystemContext
from ketch.image.oci_layout import OCILayoutDestination, OCILayoutReference, OCILayoutSource, split_path_and_ref
from ketch.image.types import ImageReference

TRANSPORT = "oci-archive"


class OCIArchiveReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, path: str, image: str = "") -> None:
        self.path = Path(path)
        self.image = image

    @classmethod
    def parse(cls, text: str) -> OCIArchiveReference:
        return cls(*split_path_and_ref(text, TRANSPORT))

    def string_within_transport(self) -> str:
        return f"{self.path}:{self.image}" if self.image else str(self.path)

    def new_source(self, ctx: SystemContext) -> OCIArchiveSource:
        return OCIArchiveSource(self)

    def new_destination(self, ctx: SystemContext) -> OCIArchiveDestination:
        return OCIArchiveDestination(self)


class OCIArchiveSource(OCILayoutSource):
    def __init__(self, reference: OCIArchiveReference) -> None:
        self.tar = TarReader(reference.path)
        super().__init__(reference)  # type: ignore[arg-type]

    def _read(self, relpath: str) -> bytes:
        return self.tar.read(relpath)

    def _open(self, relpath: str) -> tuple[BinaryIO, int]:
        return self.tar.open(relpath)


class OCIArchiveDestination(OCILayoutDestination):
    def __init__(self, reference: OCIArchiveReference) -> None:
        self.archive = reference.path
        self.work = temp_dir_beside(reference.path)
        try:
            super().__init__(OCILayoutReference(str(self.work), reference.image))
        except BaseException:
            remove_tree(self.work)
            raise
        self.reference = reference  # type: ignore[assignment]

    def commit(self) -> None:
        super().commit()
        write_tar(self.work, self.archive)

    def close(self) -> None:
        remove_tree(self.work)
