"""What each part of the engine (``files``, ``stdio``, ``networking``) uses of the whole: the
:class:`~ketch.containers.engine.Engine` they are mixed into gives it. Declared here for type
checkers only; at run time this is an empty base class."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.engine import ContainerRecord
    from ketch.containers.options import CreateOptions
    from ketch.storage.store import Store


class EnginePart:
    if TYPE_CHECKING:
        store: Store
        _network_helper: Any
        _pending_network: Any

        def _record(self, name_or_id: str) -> ContainerRecord: ...
        def _record_event(self, status: str, record: ContainerRecord, exit_code: int | None = None) -> None: ...
        def _status(self, record: ContainerRecord) -> dict[str, Any]: ...
        def _userdata(self, container_id: str) -> str: ...
        def _driver(self, options: CreateOptions) -> Any: ...
        def _log_path(self, record: ContainerRecord) -> str: ...
