"""``--userns``: ``host`` (the default: for root the host's ids, for a rootless user the user's
namespace); rootless podman's ``keep-id`` -- the user's own uid and gid inside the container
too, with a passwd and group entry, the image's files still owned by the ids the image gave them;
and root's ``auto[:size=N]`` -- every container a range of its own from the ``containers``
user's subordinate ids (``/etc/subuid``, ``/etc/subgid``), none shared with another container
of the store.

keep-id is a user namespace of the container's own, nested in the user's: container uid U (the
user's, or ``keep-id:uid=U,gid=G``) is the user's namespace's 0 (the user on the host); 0 up to
U-1 are its 1 up to U (the subordinate ids); the rest map to themselves. So that the image's
files keep their owners in that view, the container's root file system is mounted through
fuse-overlayfs with the same mapping (``uidmapping``/``gidmapping``), as podman mounts it.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ketch.errors import InvalidInputError, NotFoundError, UnsupportedError
from ketch.records import Record

AUTO_USER = "containers"  # whose subordinate ids --userns auto hands out, as podman's
AUTO_SIZE = 65536


class KeepId(Record, frozen=True):  # (a Record: this module is on every run's path, dataclasses is ~12 ms)
    uid: int  # inside the container
    gid: int
    uid_mappings: list[dict]  # containerID -> the user's namespace's id (the runtime's view)
    gid_mappings: list[dict]

    def fuse_options(self) -> dict[str, str]:
        def text(entries: list[dict]) -> str:
            return ":".join(f"{e['containerID']}:{e['hostID']}:{e['size']}" for e in entries)

        return {"uid": text(self.uid_mappings), "gid": text(self.gid_mappings)}


def _own_ids(kind: str) -> tuple[int, int]:
    """(the host id our namespace's 0 stands for, how many ids our namespace has)."""
    host, total = 0, 0
    for line in Path(f"/proc/self/{kind}_map").read_text().splitlines():
        inside, outside, size = (int(x) for x in line.split())
        if inside == 0:
            host = outside
        total += size
    return host, total


def _mappings(target: int, total: int) -> list[dict]:
    if target >= total:
        raise InvalidInputError(f"--userns keep-id: id {target} is beyond the {total} ids your user namespace has "
                                "(/etc/subuid and /etc/subgid)")
    out = []
    if target > 0:
        out.append({"containerID": 0, "hostID": 1, "size": target})
    out.append({"containerID": target, "hostID": 0, "size": 1})
    if total - target - 1 > 0:
        out.append({"containerID": target + 1, "hostID": target + 1, "size": total - target - 1})
    return out


def parse(mode: str, rootless: bool) -> KeepId | None:
    """The keep-id set-up of ``--userns MODE`` (None for the host's / the user's namespace)."""
    if mode in ("", "host"):
        return None
    name, _, rest = mode.partition(":")
    if name == "auto":
        if rootless:
            raise UnsupportedError("--userns auto is for root's containers here (rootless: keep-id or host)")
        auto_size(mode)  # (the syntax checked now)
        return None
    if name != "keep-id":
        raise InvalidInputError(f"invalid --userns {mode!r}: host, keep-id[:uid=UID,gid=GID] or auto")
    if not rootless:
        raise InvalidInputError("keep-id is only supported in rootless mode")
    host_uid, uid_total = _own_ids("uid")
    host_gid, gid_total = _own_ids("gid")
    if uid_total < 2 or gid_total < 2:
        raise InvalidInputError("--userns keep-id needs subordinate ids (/etc/subuid and /etc/subgid)")
    uid, gid = host_uid, host_gid
    for option in filter(None, rest.split(",")):
        key, _, value = option.partition("=")
        if key not in ("uid", "gid") or not value.isdigit():
            raise InvalidInputError(f"invalid --userns keep-id option {option!r}: uid=UID or gid=GID")
        if key == "uid":
            uid = int(value)
        else:
            gid = int(value)
    return KeepId(uid, gid, _mappings(uid, uid_total), _mappings(gid, gid_total))


def user_entries(userdata: str, rootfs: str, keep: KeepId, workdir: str) -> list:
    """/etc/passwd and /etc/group of the container with the user's entries added (as podman 4
    adds them for keep-id: the user's name and comment, the container's working directory as
    home), written beside the container and bound over the image's."""
    host_uid = int(os.environ.get("_KETCH_ROOTLESS_UID", "0")) or _own_ids("uid")[0]
    try:
        entry = pwd.getpwuid(host_uid)
        name, comment = entry.pw_name, entry.pw_gecos
    except KeyError:
        name, comment = f"user{host_uid}", ""
    mounts = []
    for file, line, taken in (("passwd", f"{name}:*:{keep.uid}:{keep.gid}:{comment}:{workdir or '/'}:/bin/sh\n", keep.uid),
                              ("group", f"{name}:x:{keep.gid}:{name}\n", keep.gid)):
        try:
            text = (Path(rootfs) / "etc" / file).read_text()
        except OSError:
            continue  # (no such file in the image: nothing to add to)
        ids = {fields[2] for fields in (entry.split(":") for entry in text.splitlines()) if len(fields) > 2}
        if str(taken) not in ids:
            text = (text if text.endswith("\n") or not text else text + "\n") + line
        path = os.path.join(userdata, file)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)
        mounts.append({"destination": f"/etc/{file}", "type": "bind", "source": path, "options": ["bind", "rprivate"]})
    return mounts


# -- --userns auto ----------------------------------------------------------------

def auto_size(mode: str, image_root: str | None = None, largest_owner: int = -1) -> int:
    """The range's size: ``size=N``, else as podman computes it -- one more than the largest id
    that owns a file of the image (``largest_owner``) or is in its /etc/passwd and /etc/group
    (nobody's aside), at least 1024."""
    size = max(_image_ids(image_root) if image_root else AUTO_SIZE, largest_owner + 1)
    _, _, rest = mode.partition(":")
    for option in filter(None, rest.split(",")):
        key, _, value = option.partition("=")
        if key != "size" or not value.isdigit() or not 0 < int(value) <= 1 << 24:
            raise InvalidInputError(f"invalid --userns auto option {option!r}: size=N")
        size = int(value)
    return size


def _ranges(path: str) -> list[tuple[int, int]]:
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == AUTO_USER and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def _image_ids(root: str) -> int:
    largest = 0
    for name in ("passwd", "group"):
        try:
            text = (Path(root) / "etc" / name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split(":")
            for index in ((2, 3) if name == "passwd" else (2,)):
                # (nobody and nogroup, 65534, do not count: containers/storage leaves them out too)
                if len(fields) > index and fields[index].isdigit() and int(fields[index]) < 65534:
                    largest = max(largest, int(fields[index]))
    return max(largest + 1, 1024)


def allocate_auto(mode: str, taken: list[tuple[int, int]], image_root: str | None = None,
                  largest_owner: int = -1) -> dict:
    """A range for a new ``--userns auto`` container: the first ``size`` ids of the containers
    user's subordinate ranges that no range in ``taken`` overlaps (the store's other auto
    containers'); the same offset for uids and gids. The container's id mappings, as the store
    keeps them (``uid``/``gid``: ``0:START:SIZE``)."""
    size = auto_size(mode, image_root, largest_owner)
    uids, gids = _ranges("/etc/subuid"), _ranges("/etc/subgid")
    if not uids or not gids:
        raise NotFoundError(f"--userns auto: no subordinate ids for user {AUTO_USER!r} in /etc/subuid and "
                            f"/etc/subgid (add them: usermod --add-subuids 2147483647-2147549183 ... {AUTO_USER})")
    for (ustart, ucount), (gstart, gcount) in zip(uids, gids):
        offset = 0
        while offset + size <= min(ucount, gcount):
            start = ustart + offset
            clash = next(((s, n) for s, n in taken if s < start + size and start < s + n), None)
            if clash is None:
                return {"uid": f"0:{start}:{size}", "gid": f"0:{gstart + offset}:{size}"}
            offset = clash[0] + clash[1] - ustart
    raise NotFoundError(f"--userns auto: no free range of {size} ids left in {AUTO_USER}'s subordinate ids")


def mappings_of(text: str) -> list[dict]:
    numbers = [int(x) for x in text.split(":")]
    return [{"containerID": numbers[i], "hostID": numbers[i + 1], "size": numbers[i + 2]}
            for i in range(0, len(numbers), 3)]
