"""Control groups of containers: cgroup v1 (a hierarchy per controller) and v2 (one unified tree).

A container's cgroup is a path relative to each hierarchy's root (``/ketch-runtime/ID`` unless the
config's ``linux.cgroupsPath`` names one). The runtime makes the directories and writes the
resources before the container's first process exists; that process joins them before it makes
namespaces (v1 through ``tasks``, v2 by forking the init into it), so everything the container
ever runs is inside.

On a hybrid host (v1 controllers plus a v2 tree at ``/sys/fs/cgroup/unified``, as here) the
container also gets a directory in the v2 tree, as runc does; resources go to the v1 controllers.
With ``--systemd-cgroup`` the ``slice:prefix:name`` form is read as systemd would lay it out
(``/system.slice/prefix-name.scope``) and made directly: there is no systemd to ask on these hosts.

Only ``os`` is imported: this module is on every container's start path.
"""

from __future__ import annotations

import errno
import os
import time

from ketch.errors import InvalidInputError, KetchError
from ketch.runtime.paths import read_bytes, write_bytes

ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/ketch-runtime"


class CgroupError(KetchError):
    """A cgroup could not be made, written or removed."""


def is_unified() -> bool:
    """True when /sys/fs/cgroup itself is cgroup v2 (no v1 controllers)."""
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def expand_slice(name: str) -> str:
    """systemd's slice nesting: ``a-b.slice`` lives in ``a.slice``; ``-.slice`` is the root."""
    if name == "-.slice":
        return ""
    if not name.endswith(".slice") or "/" in name:
        raise InvalidInputError(f"{name!r} is not a systemd slice")
    stem = name[: -len(".slice")]
    parts = stem.split("-")
    if "" in parts:
        raise InvalidInputError(f"{name!r} is not a valid systemd slice name")
    return "".join("/" + "-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def relative_path(recorded: dict[str, str], container_id: str) -> str:
    """The container's cgroup, relative to each hierarchy's root."""
    if recorded.get("manager") == "systemd":
        return expand_slice(recorded["slice"]) + "/" + recorded["unit"]
    return recorded.get("path") or f"{DEFAULT_PARENT}/{container_id}"


def own_cgroup() -> str:
    """This process's cgroup: its v2 path, else its ``name=systemd`` one (what systemd manages on a
    hybrid or legacy host), else the root."""
    lines = read_bytes("/proc/self/cgroup").decode(errors="surrogateescape").splitlines()
    paths = dict(line.split(":", 2)[1:] for line in lines if line.count(":") >= 2)
    if is_unified() and "" in paths:
        return paths[""]
    return paths.get("name=systemd") or paths.get("") or "/"


_NOT_CONTROLLERS = {"rw", "ro", "noprefix", "xattr", "clone_children", "cpuset_v2_mode", "all", "none"}


def hierarchies() -> dict[str, str]:
    """Mounted hierarchies of this mount namespace: a name (a v1 controller list such as
    ``cpu,cpuacct``, ``name=systemd``, or ``""`` for v2) → mount point."""
    found: dict[str, str] = {}
    for line in read_bytes("/proc/self/mountinfo").decode(errors="surrogateescape").splitlines():
        fields = line.split()
        dash = fields.index("-")
        fstype, options = fields[dash + 1], fields[dash + 3]
        mountpoint = fields[4].replace("\\040", " ")
        if fstype == "cgroup2":
            found.setdefault("", mountpoint)
        elif fstype == "cgroup":
            names = [o for o in options.split(",")
                     if o.startswith("name=") or ("=" not in o and o not in _NOT_CONTROLLERS)]
            found.setdefault(",".join(sorted(names)), mountpoint)
    return found


class Cgroup:
    """One container's cgroup in every hierarchy."""

    def __init__(self, path: str) -> None:
        if not path.startswith("/") or ".." in path.split("/"):
            raise InvalidInputError(f"cgroup path {path!r} must be absolute and without '..'")
        self.path = path.rstrip("/") or "/"
        mounted = hierarchies()
        self.unified = "" in mounted and mounted[""] == ROOT
        self.dirs: dict[str, str] = {}  # controller (or "" for v2) -> the container's directory
        for names, mountpoint in mounted.items():
            if self.unified and names:
                continue
            for controller in names.split(",") if names else [""]:
                self.dirs[controller] = mountpoint + (self.path if self.path != "/" else "")

    @classmethod
    def recorded(cls, path: str, dirs: dict[str, str], unified: bool) -> Cgroup:
        """The cgroup as create recorded it (no need to read mountinfo again)."""
        cgroup = cls.__new__(cls)
        cgroup.path, cgroup.dirs, cgroup.unified = path, dict(dirs), unified
        return cgroup

    # -- making and removing ------------------------------------------------------------

    def create(self, resources: dict | None) -> list[str]:
        """Make the directories; return those the first process joins.
        Without write access to a hierarchy (a rootless runtime, the read-only v1 controllers of a
        systemd container) and without resources, none is made there."""
        made = []
        # (device rules are no limit: where no cgroup can be made, a user namespace already keeps
        # the container from making or opening devices it was not given)
        limits = {key: value for key, value in (resources or {}).items() if key != "devices" and value}
        for controller, directory in sorted(list(self.dirs.items())):
            if directory in made:
                continue
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM) and limits:
                    where = "this host's cgroup v1 controllers, which are never delegated" if controller else \
                        f"{os.path.dirname(directory)}"
                    raise CgroupError(f"resource limits ({', '.join(sorted(limits))}) need a cgroup this user may "
                                      f"write, and it may not write {where} (run without limits, or delegate a "
                                      "cgroup v2 subtree with its controllers)") from exc
                if exc.errno == errno.EROFS or exc.errno in (errno.EACCES, errno.EPERM):
                    # a hierarchy mounted read-only (the v1 controllers systemd-nspawn gives a
                    # booted systemd: their owner outside enforces them) or one we may not write
                    # (a rootless runtime): the container stays in our cgroup there, and a
                    # resource that needs the controller is refused by apply, naming it
                    del self.dirs[controller]
                    continue
                raise CgroupError(f"making cgroup {directory}: {exc.strerror}") from exc
            if controller == "cpuset":
                _inherit_cpuset(directory)
            made.append(directory)
        if self.unified and resources:
            _enable_controllers(self.dirs[""])
        return made

    def destroy(self) -> None:
        """Remove the container's directories (their processes must be gone)."""
        for directory in sorted(set(self.dirs.values()), key=len, reverse=True):
            for attempt in range(4000):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 3999:
                        raise CgroupError(f"removing cgroup {directory}: {exc.strerror}") from exc
                    time.sleep(0.0005)  # its last processes are still exiting (the kernel lags a little)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    def _v2(self) -> bool:
        """Whether the v2 tree is where this cgroup lives: a unified host, or a hybrid one where
        only the v2 directory was made (a user's delegated subtree: v1 hierarchies are never
        delegated). What cgroup v2 gives without a controller -- freezing, CPU time -- then
        comes from there."""
        return self.unified or ("" in self.dirs and
                                not any(os.path.isdir(d) for name, d in self.dirs.items() if name))

    # -- resources ------------------------------------------------------------------------

    def apply(self, resources: dict | None) -> None:
        if not resources:
            return
        if self.unified:
            _apply_v2(self.dirs[""], resources)
        else:
            _apply_v1(self.dirs, resources)

    def apply_devices(self, rules: list[dict]) -> None:
        """The device rules alone: the runtime sets them once the init has made the config's device
        nodes, as runc does (a node allowed only "r" could not be made under its own rules)."""
        if self.unified:
            filter_devices_v2(self.dirs[""], rules)
        elif "devices" in self.dirs:
            _apply_devices_v1(self.dirs["devices"], rules)

    # -- processes --------------------------------------------------------------------------

    def procs(self) -> list[int]:
        """Every process of the cgroup."""
        for controller in ("", "pids", "memory", "freezer", "cpu", "name=systemd"):
            directory = self.dirs.get(controller)
            if directory and os.path.exists(os.path.join(directory, "cgroup.procs")):
                try:
                    return sorted(int(p) for p in _read(directory, "cgroup.procs").split())
                except OSError:
                    continue
        return []

    def freeze(self, frozen: bool) -> None:
        """pause / resume: the freezer (v1) or cgroup.freeze (v2); waits until it took effect."""
        if self._v2():
            directory = self.dirs[""]
            _write(directory, "cgroup.freeze", "1" if frozen else "0")
            wanted = "frozen 1" if frozen else "frozen 0"
            check = lambda: wanted in _read(directory, "cgroup.events").splitlines()  # noqa: E731
        else:
            freezer = self.dirs.get("freezer")
            if freezer is None:
                raise CgroupError("the freezer controller is not mounted")
            wanted = "FROZEN" if frozen else "THAWED"
            _write(freezer, "freezer.state", wanted)
            check = lambda: _read(freezer, "freezer.state").strip() == wanted  # noqa: E731
        deadline = time.monotonic() + 10
        while not check():
            if time.monotonic() > deadline:
                raise CgroupError(f"the cgroup did not become {'frozen' if frozen else 'thawed'}")
            time.sleep(0.001)

    def is_frozen(self) -> bool:
        try:
            if self._v2():
                return "frozen 1" in _read(self.dirs[""], "cgroup.events").splitlines()
            directory = self.dirs.get("freezer")
            return directory is not None and _read(directory, "freezer.state").strip() == "FROZEN"
        except OSError:
            return False

    def oom_watch(self) -> OomWatch | None:
        """Something to wait on for the container's OOM kills (None when memory is not limited here)."""
        if self.unified:
            return OomWatch(v2_events=os.path.join(self.dirs[""], "memory.events")) \
                if os.path.exists(os.path.join(self.dirs[""], "memory.events")) else None
        memory = self.dirs.get("memory")
        if not memory or not os.path.exists(os.path.join(memory, "memory.oom_control")):
            return None
        return OomWatch(v1_dir=memory)

    def stats(self) -> dict:
        """runc's ``events --stats`` data: cpu, memory, pids (what this hierarchy offers)."""
        out: dict = {}
        if self._v2():
            d = self.dirs[""]
            cpu = _keyed(_try_read(d, "cpu.stat"))
            out["cpu"] = {"usage": {"total": cpu.get("usage_usec", 0) * 1000, "user": cpu.get("user_usec", 0) * 1000,
                                    "kernel": cpu.get("system_usec", 0) * 1000}}
            out["memory"] = {"usage": {"usage": _int(_try_read(d, "memory.current")),
                                       "limit": _int(_try_read(d, "memory.max"))},
                             "raw": _keyed(_try_read(d, "memory.stat"))}
            out["pids"] = {"current": _int(_try_read(d, "pids.current")), "limit": _int(_try_read(d, "pids.max"))}
            return out
        cpuacct = self.dirs.get("cpuacct")
        if cpuacct:
            percpu = [int(v) for v in _try_read(cpuacct, "cpuacct.usage_percpu").split()]
            out["cpu"] = {"usage": {"total": _int(_try_read(cpuacct, "cpuacct.usage")), "percpu": percpu}}
            cpu_dir = self.dirs.get("cpu")
            if cpu_dir:
                throttling = _keyed(_try_read(cpu_dir, "cpu.stat"))
                out["cpu"]["throttling"] = {"periods": throttling.get("nr_periods", 0),
                                            "throttledPeriods": throttling.get("nr_throttled", 0),
                                            "throttledTime": throttling.get("throttled_time", 0)}
        memory = self.dirs.get("memory")
        if memory:
            out["memory"] = {
                "usage": {"usage": _int(_try_read(memory, "memory.usage_in_bytes")),
                          "max": _int(_try_read(memory, "memory.max_usage_in_bytes")),
                          "limit": _int(_try_read(memory, "memory.limit_in_bytes")),
                          "failcnt": _int(_try_read(memory, "memory.failcnt"))},
                "raw": _keyed(_try_read(memory, "memory.stat")),
            }
        pids = self.dirs.get("pids")
        if pids:
            out["pids"] = {"current": _int(_try_read(pids, "pids.current")), "limit": _int(_try_read(pids, "pids.max"))}
        return out


class OomWatch:
    """OOM kills in a cgroup. v1: an eventfd registered on ``memory.oom_control`` through
    ``cgroup.event_control`` (readable once per OOM). v2: the ``oom_kill`` count of
    ``memory.events``, which the kernel signals as a modified file (poll's POLLPRI)."""

    def __init__(self, *, v1_dir: str | None = None, v2_events: str | None = None) -> None:
        self.v2_events = v2_events
        self._seen = 0
        if v1_dir is not None:
            self.fd = os.eventfd(0, os.EFD_CLOEXEC)
            control = os.open(os.path.join(v1_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _write(v1_dir, "cgroup.event_control", f"{self.fd} {control}")
            finally:
                os.close(control)
        elif v2_events is not None:
            self.fd = os.open(v2_events, os.O_RDONLY | os.O_CLOEXEC)
            self._seen = self._v2_count()

    def _v2_count(self) -> int:
        return _keyed(os.pread(self.fd, 4096, 0).decode()).get("oom_kill", 0)

    def wait(self, timeout: float) -> bool:
        """Whether an OOM happened within ``timeout`` seconds (one report for each wake-up, as
        runc sends one event per read: the kernel may signal one OOM more than once)."""
        import select

        poller = select.poll()
        poller.register(self.fd, select.POLLIN if self.v2_events is None else select.POLLPRI)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
        if self.v2_events is None:
            os.read(self.fd, 8)
            return True
        count = self._v2_count()
        new, self._seen = count > self._seen, count
        return new

    def close(self) -> None:
        os.close(self.fd)


# -- v1 ---------------------------------------------------------------------------------------


def _apply_v1(dirs: dict[str, str], resources: dict) -> None:
    def need(controller: str) -> str:
        if controller not in dirs:
            raise CgroupError(f"the {controller} cgroup controller is not available here")
        return dirs[controller]

    memory = resources.get("memory") or {}
    if memory:
        d = need("memory")
        limit, swap = memory.get("limit"), memory.get("swap")
        if limit is not None and swap is not None:
            # memsw must stay >= the limit at every moment: raise first what grows
            current = _int(_try_read(d, "memory.limit_in_bytes"))
            order = [("memory.memsw.limit_in_bytes", swap), ("memory.limit_in_bytes", limit)] \
                if (limit == -1 or (current not in (None, -1) and limit > current)) else \
                [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", swap)]
            for name, value in order:
                _write_checked(d, name, value)
        elif limit is not None:
            _write_checked(d, "memory.limit_in_bytes", limit)
        elif swap is not None:
            _write_checked(d, "memory.memsw.limit_in_bytes", swap)
        if memory.get("reservation") is not None:
            _write_checked(d, "memory.soft_limit_in_bytes", memory["reservation"])
        if memory.get("kernelTCP") is not None:
            _write_checked(d, "memory.kmem.tcp.limit_in_bytes", memory["kernelTCP"])
        if memory.get("swappiness") is not None:
            if not 0 <= memory["swappiness"] <= 100:
                raise InvalidInputError(f"memory.swappiness {memory['swappiness']} is not within 0-100")
            _write_checked(d, "memory.swappiness", memory["swappiness"])
        if memory.get("disableOOMKiller"):
            _write_checked(d, "memory.oom_control", 1)
    cpu = resources.get("cpu") or {}
    if cpu:
        for key, name in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"), ("quota", "cpu.cfs_quota_us"),
                          ("realtimePeriod", "cpu.rt_period_us"), ("realtimeRuntime", "cpu.rt_runtime_us")):
            if cpu.get(key) is not None:
                _write_checked(need("cpu"), name, cpu[key])
        for key in ("cpus", "mems"):
            if cpu.get(key):
                _write_checked(need("cpuset"), f"cpuset.{key}", cpu[key])
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        _write_checked(need("pids"), "pids.max", "max" if pids["limit"] <= 0 else pids["limit"])
    blkio = resources.get("blockIO") or {}
    if blkio:
        d = need("blkio")
        for key, name in (("weight", "blkio.weight"), ("leafWeight", "blkio.leaf_weight")):
            if blkio.get(key) is not None:
                _write_checked(d, name, blkio[key])
        for entry in blkio.get("weightDevice") or []:
            if entry.get("weight") is not None:
                _write_checked(d, "blkio.weight_device", f"{entry['major']}:{entry['minor']} {entry['weight']}")
        for key, name in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                          ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                          ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                          ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for entry in blkio.get(key) or []:
                _write_checked(d, name, f"{entry['major']}:{entry['minor']} {entry['rate']}")
    for entry in resources.get("hugepageLimits") or []:
        _write_checked(need("hugetlb"), f"hugetlb.{entry['pageSize']}.limit_in_bytes", entry["limit"])
    network = resources.get("network") or {}
    if network.get("classID") is not None:
        _write_checked(need("net_cls"), "net_cls.classid", network["classID"])
    for entry in network.get("priorities") or []:
        _write_checked(need("net_prio"), "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}")
    if "devices" in resources and "devices" in dirs:
        _apply_devices_v1(dirs["devices"], resources.get("devices") or [])
    if resources.get("unified"):
        raise InvalidInputError("linux.resources.unified needs cgroup v2; this host runs cgroup v1")


# Devices every container may use whatever its rules say (runc's list): the default nodes,
# the console and pseudo-terminals.
ALWAYS_ALLOWED_DEVICES = ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
                          "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"]


def device_rule(rule: dict) -> str:
    kind = rule.get("type", "a") or "a"
    if kind not in ("a", "b", "c"):
        raise InvalidInputError(f"device rule type {kind!r} is not one of a, b, c")
    access = rule.get("access", "rwm") or "rwm"
    if not set(access) <= set("rwm"):
        raise InvalidInputError(f"device rule access {access!r} is not made of r, w, m")
    if kind == "a":
        return "a *:* rwm" if access == "rwm" else f"a *:* {access}"
    major = "*" if rule.get("major") in (None, -1) else rule["major"]
    minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
    return f"{kind} {major}:{minor} {access}"


def _apply_devices_v1(directory: str, rules: list[dict]) -> None:
    for rule in rules:
        _write(directory, "devices.allow" if rule.get("allow") else "devices.deny", device_rule(rule))
    for text in ALWAYS_ALLOWED_DEVICES:
        _write(directory, "devices.allow", text)


# -- v2 ---------------------------------------------------------------------------------------


def _enable_controllers(directory: str) -> None:
    """Every controller the root offers is enabled down to the container's parent."""
    available = _read(ROOT, "cgroup.controllers").split()
    parts = [p for p in os.path.relpath(directory, ROOT).split("/") if p and p != "."]
    current = ROOT
    for part in parts:
        for controller in available:
            try:
                _write(current, "cgroup.subtree_control", "+" + controller)
            except CgroupError:
                pass  # a controller the kernel will not delegate here: its files will be missing
        current = os.path.join(current, part)


def _apply_v2(directory: str, resources: dict) -> None:
    memory = resources.get("memory") or {}
    if memory.get("limit") is not None:
        _write_checked(directory, "memory.max", "max" if memory["limit"] == -1 else memory["limit"])
    if memory.get("reservation") is not None:
        _write_checked(directory, "memory.low", "max" if memory["reservation"] == -1 else memory["reservation"])
    if memory.get("swap") is not None:
        swap = memory["swap"]
        # v1's swap is memory+swap; v2's memory.swap.max is swap alone
        value = "max" if swap == -1 else max(swap - (memory.get("limit") or 0), 0)
        _write_checked(directory, "memory.swap.max", value)
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        # runc's conversion of v1 shares (2-262144) to v2 weight (1-10000)
        _write_checked(directory, "cpu.weight", 1 + ((cpu["shares"] - 2) * 9999) // 262142)
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        quota = cpu.get("quota")
        _write_checked(directory, "cpu.max", f"{'max' if quota in (None, -1) else quota} {cpu.get('period') or 100000}")
    for key in ("cpus", "mems"):
        if cpu.get(key):
            _write_checked(directory, f"cpuset.{key}", cpu[key])
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        _write_checked(directory, "pids.max", "max" if pids["limit"] <= 0 else pids["limit"])
    blkio = resources.get("blockIO") or {}
    if blkio.get("weight") is not None:
        _write_checked(directory, "io.weight", blkio["weight"])
    for key, io_key in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                        ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for entry in blkio.get(key) or []:
            _write_checked(directory, "io.max", f"{entry['major']}:{entry['minor']} {io_key}={entry['rate']}")
    for entry in resources.get("hugepageLimits") or []:
        _write_checked(directory, f"hugetlb.{entry['pageSize']}.max", entry["limit"])
    for name, value in (resources.get("unified") or {}).items():
        if "/" in name or name.startswith("."):
            raise InvalidInputError(f"linux.resources.unified: {name!r} is not a cgroup file name")
        _write_checked(directory, name, value, unified_file=True)


def filter_devices_v2(directory: str, rules: list[dict]) -> None:
    """v2 device rules: an eBPF program on the cgroup (ketch.runtime.devicefilter), made from the
    config's rules, then the devices every container may use. The config's linux.devices get only
    what the rules grant them (runc's behaviour: `--device /dev/x:/dev/x:r` stays read-only)."""
    from ketch.runtime import devicefilter  # ctypes and struct: only for v2 hosts with rules

    allowed = []
    for text in ALWAYS_ALLOWED_DEVICES:
        kind, numbers, access = text.split()
        major, minor = numbers.split(":")
        allowed.append({"allow": True, "type": kind, "major": -1 if major == "*" else int(major),
                        "minor": -1 if minor == "*" else int(minor), "access": access})
    devicefilter.attach(directory, list(rules) + allowed)


# -- files ------------------------------------------------------------------------------------


def _inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset starts empty, and a process cannot join an empty one: copy the parent's,
    from the top down."""
    chain = []
    current = directory
    while os.path.basename(current) and os.path.exists(os.path.join(os.path.dirname(current), "cpuset.cpus")):
        chain.append(current)
        current = os.path.dirname(current)
    for path in reversed(chain):
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not _read(path, name).strip():
                _write(path, name, _read(os.path.dirname(path), name).strip())


def _read(directory: str, name: str) -> str:
    return read_bytes(os.path.join(directory, name)).decode()


def _try_read(directory: str, name: str) -> str:
    try:
        return _read(directory, name)
    except OSError:
        return ""


def _int(text: str) -> int | None:
    text = text.strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _write(directory: str, name: str, value: object) -> None:
    try:
        write_bytes(os.path.join(directory, name), str(value).encode())
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise CgroupError(f"{name} is not supported by this kernel's cgroups ({directory})") from exc
        raise CgroupError(f"setting {name} to {value}: {exc.strerror}") from exc


_TEXT_VALUES = ("cpuset.", "blkio.weight_device", "blkio.throttle.", "io.", "net_prio.", "cpu.max")


def _write_checked(directory: str, name: str, value: object, *, unified_file: bool = False) -> None:
    """Write a resource from the config: numbers (or "max", which ketch writes itself), except for
    the files whose values are text (cpu lists, device rules, linux.resources.unified)."""
    text_ok = unified_file or name.startswith(_TEXT_VALUES)
    if isinstance(value, bool) or not (isinstance(value, int) or value == "max"
                                       or (text_ok and isinstance(value, str))):
        raise InvalidInputError(f"cgroup value for {name} must be a number, not {value!r}")
    _write(directory, name, value)
