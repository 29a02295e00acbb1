"""Users and groups inside a container's root file system, as podman resolves ``--user``."""

from __future__ import annotations

from ketch.errors import InvalidInputError
from ketch.records import Record, field


class ExecUser(Record):
    uid: int
    gid: int
    home: str = "/"
    additional_gids: list[int] = field(default_factory=list)


def _entries(rootfs: str, name: str) -> list[list[str]]:
    """Lines of /etc/passwd or /etc/group, read without following links out of the root."""
    from ketch.runtime.paths import resolve_in_root

    try:
        with open(resolve_in_root(rootfs, f"/etc/{name}"), encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve(rootfs: str, spec: str, group_add: list[str] | None = None, *, include_primary: bool = False) -> ExecUser:
    """``user[:group]``, each a name or a number; a name must exist in the image.
    ``include_primary``: the primary group is among the additional ones too (as containerd and
    Docker set a process's groups; podman does not)."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = _entries(rootfs, "passwd")
    groups = _entries(rootfs, "group")
    home = "/"
    if user_part.isdigit():
        uid = int(user_part)
        match = next((e for e in passwd if len(e) >= 4 and e[2] == user_part), None)
        gid = int(match[3]) if match and match[3].isdigit() else 0 if match is None else 0
        if match is not None and len(match) >= 6:
            home = match[5] or "/"
        name = match[0] if match else None
    else:
        match = next((e for e in passwd if e and e[0] == user_part), None)
        if match is None or len(match) < 4 or not match[2].isdigit():
            raise InvalidInputError(f"unable to find user {user_part}: no matching entries in passwd file")
        uid, gid, name = int(match[2]), int(match[3]) if match[3].isdigit() else 0, user_part
        home = (match[5] if len(match) >= 6 else "") or "/"
    if group_part:
        gid = _group_id(groups, group_part)
    additional = []
    if name is not None and not group_part:
        additional = [int(e[2]) for e in groups if len(e) >= 4 and e[2].isdigit() and name in e[3].split(",")
                      and int(e[2]) != gid]
    for extra in group_add or []:
        if extra == "keep-groups":
            raise InvalidInputError("--group-add keep-groups is not supported: ketch maps no supplementary groups of "
                                    "yours into its user namespace")
        additional.append(_group_id(groups, extra))
    if include_primary:
        additional.append(gid)
    return ExecUser(uid, gid, home, sorted(set(additional)))


def known_uid(rootfs: str, uid: int) -> bool:
    """Whether the image's passwd has an entry for ``uid``."""
    return any(len(e) >= 4 and e[2] == str(uid) for e in _entries(rootfs, "passwd"))


def _group_id(groups: list[list[str]], text: str) -> int:
    if text.isdigit():
        return int(text)
    match = next((e for e in groups if e and e[0] == text), None)
    if match is None or len(match) < 3 or not match[2].isdigit():
        raise InvalidInputError(f"unable to find group {text}: no matching entries in group file")
    return int(match[2])
