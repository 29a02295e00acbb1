"""The image configuration (OCI image-spec config / Docker image JSON)."""

from __future__ import annotations

import json

from ketch.errors import ImageFormatError
from ketch.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ImageConfig(Record, frozen=True):
    """A parsed image config. ``data`` is the whole document; accessors read it."""

    data: dict[str, Any]
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImageFormatError(f"image config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ImageFormatError("image config is not a JSON object")
        for key in ("architecture", "os"):
            if key in data and not isinstance(data[key], str):
                raise ImageFormatError(f"image config: {key} must be a string")
        rootfs = data.get("rootfs")
        if rootfs is not None:
            if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
                raise ImageFormatError("image config: rootfs must hold a diff_ids list")
        if data.get("config") is not None and not isinstance(data["config"], dict):
            raise ImageFormatError("image config: config must be an object")
        return cls(data=data, raw=raw)

    @property
    def architecture(self) -> str:
        return self.data.get("architecture", "")

    @property
    def os(self) -> str:
        return self.data.get("os", "")

    @property
    def variant(self) -> str:
        return self.data.get("variant", "") or ""

    @property
    def created(self) -> str | None:
        return self.data.get("created")

    @property
    def container_config(self) -> dict[str, Any]:
        return self.data.get("config") or {}

    @property
    def env(self) -> list[str]:
        return list(self.container_config.get("Env") or [])

    @property
    def labels(self) -> dict[str, str] | None:
        return self.container_config.get("Labels")

    @property
    def diff_ids(self) -> list[str]:
        return list((self.data.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.data.get("history") or [])
