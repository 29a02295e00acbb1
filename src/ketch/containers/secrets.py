"""Secrets (``ketch secret create/ls/inspect/rm``, ``run --secret``), as podman's file driver
keeps them.

A secret's record (id, name, labels, dates) is a row in the store's database; its data is in
``ROOT/secrets/filedriver/secretsdata.json`` (``{id: base64 data}``, podman's file driver
layout), written whole under a lock and renamed into place, readable by root alone. A container
gets a secret as a read-only file (``/run/secrets/NAME`` by default, or ``target=``, with
``uid=``, ``gid=``, ``mode=``) or as an environment variable (``type=env``); the data never
enters an image or a layer.
"""

from __future__ import annotations

import builtins
import json
import os
import time

from ketch.containers.state import now_rfc3339
from ketch.errors import InUseError, InvalidInputError, NotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~2.5 ms to import: not on ketch run's path)
    from typing import Any

    from ketch.runtime.spectypes import Mount

DRIVER = "file"
SECRETS_DIR = "/run/secrets"


class NoSuchSecretError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f'no secret with name or id "{name}": no such secret')


def parse_secret(text: str) -> dict[str, Any]:
    """``--secret NAME[,type=mount|env][,target=T][,uid=U][,gid=G][,mode=M]`` (``source=`` names
    it too)."""
    spec: dict[str, Any] = {"type": "mount", "target": "", "uid": 0, "gid": 0, "mode": 0o444}
    for n, item in enumerate(text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            if n == 0:
                spec["name"] = key
                continue
            raise InvalidInputError(f"invalid --secret {text!r}: {item!r} is not KEY=VALUE")
        if key in ("source", "src"):
            spec["name"] = value
        elif key == "type":
            if value not in ("mount", "env"):
                raise InvalidInputError(f"invalid --secret {text!r}: type is mount or env")
            spec["type"] = value
        elif key == "target":
            spec["target"] = value
        elif key in ("uid", "gid"):
            if not value.isdigit():
                raise InvalidInputError(f"invalid --secret {text!r}: {key} must be a number")
            spec[key] = int(value)
        elif key == "mode":
            try:
                spec["mode"] = int(value, 8)
            except ValueError as exc:
                raise InvalidInputError(f"invalid --secret {text!r}: mode must be octal") from exc
        else:
            raise InvalidInputError(f"invalid --secret {text!r}: unknown option {key!r}")
    if not spec.get("name"):
        raise InvalidInputError(f"invalid --secret {text!r}: no secret named")
    if spec["type"] == "env" and (spec["uid"] or spec["gid"] or spec["mode"] != 0o444):
        raise InvalidInputError(f"invalid --secret {text!r}: uid, gid and mode are for mounted secrets")
    return spec


class Secrets:
    def __init__(self, store) -> None:
        self.store = store
        from ketch.containers.tables import database

        self.db = database(store)
        self.dir = store.root / "secrets" / "filedriver"
        self.data_file = self.dir / "secretsdata.json"

    # -- data ------------------------------------------------------------------------

    def _read_data(self) -> dict[str, str]:
        try:
            with open(self.data_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise InvalidInputError(f"{self.data_file} is damaged: {exc}") from exc

    def _change_data(self, change) -> None:
        """Apply ``change(data)`` to the data file under the secrets lock, atomically."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.store.lock("secrets"):
            data = self._read_data()
            change(data)
            tmp = self.data_file.with_name(f".{self.data_file.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.data_file)

    def data(self, name: str) -> bytes:
        secret = self.get(name)
        encoded = self._read_data().get(secret["id"])
        if encoded is None:
            raise NotFoundError(f"the data of secret {secret['name']} is missing from {self.data_file}")
        import base64

        return base64.b64decode(encoded)

    # -- records ---------------------------------------------------------------------

    def create(self, name: str, data: bytes, *, labels: dict | None = None, driver: str = DRIVER,
               replace: bool = False) -> str:
        from ketch.containers.names import check_name

        check_name(name)
        if driver != DRIVER:
            raise InvalidInputError(f"secret driver {driver!r} is not supported: ketch has the file driver")
        if not data:
            raise InvalidInputError("secret data must be larger than 0 and less than 512000 bytes")
        if len(data) >= 512000:
            raise InvalidInputError("secret data must be larger than 0 and less than 512000 bytes")
        secret_id = os.urandom(13).hex()[:25]
        now = time.time()
        existing = self.db.one("SELECT id FROM secrets WHERE name = ?", (name,))
        if existing is not None and not replace:
            raise InUseError(f"{name}: secret name in use")
        old_id = existing["id"] if existing is not None else None

        def put(content: dict) -> None:
            import base64

            content[secret_id] = base64.b64encode(data).decode()
            if old_id:
                content.pop(old_id, None)

        self._change_data(put)
        with self.db.write() as conn:
            if old_id:
                conn.execute("DELETE FROM secrets WHERE id = ?", (old_id,))
            conn.execute("INSERT INTO secrets VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (secret_id, name, driver, now, now, json.dumps(labels or {}),
                          json.dumps({"path": str(self.dir)})))
        return secret_id

    def get(self, name_or_id: str) -> dict:
        row = self.db.one("SELECT * FROM secrets WHERE name = ? OR id = ?", (name_or_id, name_or_id))
        if row is None and len(name_or_id) >= 3:
            rows = self.db.query("SELECT * FROM secrets WHERE id LIKE ?", (name_or_id + "%",))
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NoSuchSecretError(name_or_id)
        return dict(row)

    def list(self) -> builtins.list[dict]:
        return [dict(r) for r in self.db.query("SELECT * FROM secrets ORDER BY created")]

    def users(self, name: str) -> builtins.list[str]:
        out = []
        for row in self.store.containers():
            meta = json.loads(row["metadata"])
            if any(s.get("name") == name for s in (meta.get("options") or {}).get("secrets") or []):
                out.append(row["name"])
        return out

    def remove(self, name_or_id: str) -> str:
        secret = self.get(name_or_id)
        users = self.users(secret["name"])
        if users:
            raise InUseError(f"secret {secret['name']} is in use by container(s) {', '.join(users)}")
        self._change_data(lambda content: content.pop(secret["id"], None))
        with self.db.write() as conn:
            conn.execute("DELETE FROM secrets WHERE id = ?", (secret["id"],))
        return secret["id"]

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        """podman's ``secret inspect`` entry."""
        secret = self.get(name_or_id)
        return {"ID": secret["id"], "CreatedAt": now_rfc3339(secret["created"]), "UpdatedAt": now_rfc3339(secret["updated"]),
                "Spec": {"Name": secret["name"], "Driver": {"Name": secret["driver"],
                                                            "Options": json.loads(secret["options"])},
                         "Labels": json.loads(secret["labels"])}}

    # -- containers ------------------------------------------------------------------

    def for_container(self, specs: builtins.list[dict], userdata: str,
                      user: tuple[int, int]) -> tuple[builtins.list[Mount], builtins.list[str]]:
        """The runtime mounts (files under ``userdata/secrets``) and environment entries for a
        container's ``--secret``s."""
        mounts: builtins.list[Mount] = []
        env: builtins.list[str] = []
        directory = os.path.join(userdata, "secrets")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for spec in specs:
            data = self.data(spec["name"])
            if spec["type"] == "env":
                env.append(f"{spec['target'] or spec['name']}={data.decode(errors='replace')}")
                continue
            path = os.path.join(directory, spec["name"])
            tmp = f"{path}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chown(tmp, spec.get("uid", 0), spec.get("gid", 0))
            os.chmod(tmp, spec.get("mode", 0o444))
            os.replace(tmp, path)
            target = spec["target"] or spec["name"]
            if not target.startswith("/"):
                target = f"{SECRETS_DIR}/{target}"
            mounts.append({"destination": target, "type": "bind", "source": path,
                           "options": ["bind", "ro", "rprivate", "nosuid", "nodev", "noexec"]})
        return mounts, env
