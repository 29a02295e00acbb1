"""Pod networks through CNI plugins, as a Kubernetes node sets them up: the first network
configuration list in the configuration directories (by file name, as libcni orders them), its
plugins run from the plugin directories per the CNI specification (ADD in order, each given the
previous result; DEL in reverse; CHECK), with ``CNI_ARGS`` naming the pod and ``portMappings``
given to the plugins whose capabilities ask for them.

Written here rather than taken from a library: CNI's reference library is Go, and no maintained
Python package runs CNI plugins; the protocol is environment variables, JSON on stdin and stdout,
and an exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from ketch.errors import NetworkError

IFNAME = "eth0"
CONF_EXTENSIONS = (".conflist", ".conf", ".json")


class CNIError(NetworkError):
    pass


def find_config(conf_dirs: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The network configuration list to use (its path and content), or None when there is none."""
    for directory in conf_dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith(CONF_EXTENSIONS):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue  # (libcni skips what it cannot read)
            if not isinstance(data, dict):
                continue
            if "plugins" not in data:  # a single plugin's .conf: a list of one
                data = {"cniVersion": data.get("cniVersion", "0.4.0"), "name": data.get("name", ""),
                        "plugins": [data]}
            if data.get("plugins") and data.get("name"):
                return path, data
    return None


class Network:
    def __init__(self, conf_dirs: list[str], bin_dirs: list[str]) -> None:
        self.conf_dirs = conf_dirs
        self.bin_dirs = bin_dirs

    def status(self) -> tuple[bool, str]:
        """Whether pods can get a network now, and why not."""
        found = find_config(self.conf_dirs)
        if found is None:
            return False, f"no network config found in {', '.join(self.conf_dirs)}"
        missing = [p["type"] for p in found[1]["plugins"] if self._plugin(p.get("type", "")) is None]
        if missing:
            return False, f"CNI plugin {missing[0]!r} not found in {', '.join(self.bin_dirs)}"
        return True, ""

    def _plugin(self, kind: str) -> str | None:
        if not kind or "/" in kind:
            return None
        for directory in self.bin_dirs:
            path = os.path.join(directory, kind)
            if os.access(path, os.X_OK):
                return path
        return None

    def _config(self) -> dict[str, Any]:
        found = find_config(self.conf_dirs)
        if found is None:
            raise CNIError(f"no CNI network config found in {', '.join(self.conf_dirs)}")
        return found[1]

    def add(self, container_id: str, netns: str, args: dict[str, str], port_mappings: list[dict]) -> dict[str, Any]:
        """Run ADD of every plugin in order; what the pod's record keeps: the network's config,
        the final result, and the arguments DEL must be given again."""
        config = self._config()
        result: dict[str, Any] | None = None
        runtime_config = {"portMappings": port_mappings} if port_mappings else {}
        try:
            for plugin in config["plugins"]:
                result = self._exec("ADD", config, plugin, container_id, netns, args, runtime_config, result)
        except CNIError:
            # what the plugins that succeeded took is given back (as libcni's callers do)
            self._run_all("DEL", config, container_id, netns, args, runtime_config, None)
            raise
        return {"config": config, "result": result or {}, "args": args, "runtime_config": runtime_config}

    def check(self, container_id: str, netns: str, attachment: dict[str, Any]) -> None:
        config = attachment["config"]
        if _version_tuple(config.get("cniVersion", "0.4.0")) < (0, 4, 0):
            return  # CHECK came with 0.4.0
        for plugin in config["plugins"]:
            self._exec("CHECK", config, plugin, container_id, netns, attachment["args"],
                       attachment["runtime_config"], attachment["result"])

    def delete(self, container_id: str, netns: str | None, attachment: dict[str, Any]) -> None:
        """DEL of every plugin, in reverse; the plugins succeed when there is nothing to delete."""
        self._run_all("DEL", attachment["config"], container_id, netns, attachment["args"],
                      attachment["runtime_config"], attachment.get("result"))

    def _run_all(self, command, config, container_id, netns, args, runtime_config, result) -> None:
        errors = []
        for plugin in reversed(config["plugins"]):
            try:
                self._exec(command, config, plugin, container_id, netns, args, runtime_config, result)
            except CNIError as exc:
                errors.append(str(exc))
        if errors:
            raise CNIError(errors[0])

    def _exec(self, command: str, config: dict, plugin: dict, container_id: str, netns: str | None,
              args: dict[str, str], runtime_config: dict, previous: dict | None) -> dict[str, Any] | None:
        kind = plugin.get("type", "")
        binary = self._plugin(kind)
        if binary is None:
            raise CNIError(f"CNI plugin {kind!r} not found in {', '.join(self.bin_dirs)}")
        stdin = dict(plugin)
        stdin["name"] = config["name"]
        stdin["cniVersion"] = config.get("cniVersion", "0.4.0")
        wanted = {k: v for k, v in runtime_config.items() if (plugin.get("capabilities") or {}).get(k)}
        if wanted:
            stdin["runtimeConfig"] = wanted
        if previous is not None:
            stdin["prevResult"] = previous
        environment = {
            "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns or "",
            "CNI_IFNAME": IFNAME, "CNI_PATH": os.pathsep.join(self.bin_dirs),
            "CNI_ARGS": ";".join(["IgnoreUnknown=1"] + [f"{k}={v}" for k, v in args.items()]),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        try:
            done = subprocess.run([binary], input=json.dumps(stdin).encode(), capture_output=True,
                                  env=environment, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CNIError(f"CNI plugin {kind} {command}: {exc}") from exc
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            try:
                error = json.loads(done.stdout)
                message = error.get("msg", "") + (f": {error['details']}" if error.get("details") else "") or message
            except ValueError:
                pass
            raise CNIError(f"CNI plugin {kind} {command} failed: {message or f'exit status {done.returncode}'}")
        if command != "ADD":
            return previous
        try:
            return json.loads(done.stdout) if done.stdout.strip() else previous
        except ValueError as exc:
            raise CNIError(f"CNI plugin {kind} ADD: its result is not JSON") from exc


def pod_ips(result: dict[str, Any]) -> list[str]:
    """The pod's addresses from an ADD result (IPv4 first), without their prefix length."""
    addresses = [entry.get("address", "").split("/")[0] for entry in result.get("ips") or []]
    addresses = [a for a in addresses if a]
    return sorted(addresses, key=lambda a: ":" in a)


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0, 0, 0)
