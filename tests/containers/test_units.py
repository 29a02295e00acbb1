"""Unit tests of the pure parts of the container layer: the options' checks and parsers
(containers/options.py) and the spec built from an image config and options (containers/spec.py),
with no container started."""

import json

import pytest

from ketch.containers import spec as specs
from ketch.containers.config import EngineConfig
from ketch.containers.options import (
    CreateOptions,
    parse_duration,
    parse_key_values,
    parse_memory,
    parse_namespace_mode,
    parse_restart,
    parse_signal,
)
from ketch.errors import InvalidInputError
from ketch.oci.config import ImageConfig


def image(config: dict) -> ImageConfig:
    return ImageConfig.parse(json.dumps({"config": config, "rootfs": {"type": "layers", "diff_ids": []}}).encode())


# -- options.py ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("512", 512), ("1k", 1024), ("1kb", 1024), ("2m", 2 << 20),
                                            ("1.5g", int(1.5 * (1 << 30))), ("1T", 1 << 40)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "x", "-1", "1x", "0"])
def test_parse_memory_refuses(text):
    with pytest.raises(InvalidInputError):
        parse_memory(text)
    assert parse_memory("0", zero=True) == 0


def test_parse_restart_duration_namespace_and_key_values():
    assert parse_restart("on-failure:3") == ("on-failure", 3) and parse_restart("always") == ("always", 0)
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(InvalidInputError):
            parse_restart(bad)
    assert parse_duration("1m30s", "--timeout") == 90 and parse_duration("500ms", "x") == 0.5
    assert parse_duration("7", "x") == 7.0
    for bad in ("", "1d", "5 s", "s"):
        with pytest.raises(InvalidInputError):
            parse_duration(bad, "x")
    assert parse_namespace_mode("container:web", "pid") == ("container", "web")
    assert parse_namespace_mode("shareable", "ipc") == ("shareable", "")
    for bad, kind in (("shareable", "pid"), ("container:", "uts"), ("ns", "ipc"), ("bogus", "pid")):
        with pytest.raises(InvalidInputError):
            parse_namespace_mode(bad, kind)
    assert parse_key_values(["a=1", "b=", "c=x=y"], "--label") == {"a": "1", "b": "", "c": "x=y"}
    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal(15) == 15


@pytest.mark.parametrize("changes, message", [
    ({"network": "host,ketch"}, "cannot be combined"),
    ({"network": "container:"}, "name the container"),
    ({"network": "none", "ip": "10.0.0.2"}, "--ip needs a bridge network"),
    ({"network": "host", "dns": ["1.1.1.1"]}, "--dns cannot be used with --network host"),
    ({"dns": ["not-an-ip"]}, "not an IP address"),
    ({"add_host": ["nocolon"]}, "want NAME:IP"),
    ({"publish": ["80:80/sctp"]}, "tcp or udp"),
    ({"sdnotify": "sometimes"}, "invalid sdnotify"),
    ({"log_driver": "syslog"}, "invalid log driver"),
    ({"memory_swappiness": 101}, "memory-swappiness"),
    ({"personality": "BSD"}, "personality"),
    ({"image_volume": "copy"}, "image volume"),
])
def test_create_options_check_refuses(changes, message):
    with pytest.raises(InvalidInputError, match=message):
        CreateOptions(**changes).check()


def test_create_options_round_trip_through_their_stored_form():
    options = CreateOptions(command=["sh"], env=["A=1"], labels={"k": "v"}, publish=["8080:80"], memory=1 << 20)
    assert options.check() is options
    again = CreateOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == options and again.env is not options.env
    assert CreateOptions().env == [] and CreateOptions().env is not CreateOptions().env  # fresh defaults


# -- spec.py ---------------------------------------------------------------------------------


def test_command_of_combines_entrypoint_and_cmd_as_podman():
    img = image({"Entrypoint": ["/bin/tini", "--"], "Cmd": ["serve"]})
    assert specs.command_of(img, CreateOptions()) == ["/bin/tini", "--", "serve"]
    assert specs.command_of(img, CreateOptions(command=["sh"])) == ["/bin/tini", "--", "sh"]
    assert specs.command_of(img, CreateOptions(entrypoint=["/x"])) == ["/x"]  # --entrypoint clears Cmd
    assert specs.command_of(img, CreateOptions(entrypoint=[], command=["ls"])) == ["ls"]
    with pytest.raises(InvalidInputError, match="no command"):
        specs.command_of(image({}), CreateOptions())


def test_device_cgroup_rules_and_hosts():
    assert specs.device_cgroup_rule("c 1:3 mr") == {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                    "access": "mr"}
    assert specs.device_cgroup_rule("b *:* rwm")["major"] == -1
    for bad in ("c 1:3", "x 1:3 r", "c a:3 r", "c 1:3 q"):
        with pytest.raises(InvalidInputError):
            specs.device_cgroup_rule(bad)
    hosts = specs.hosts_base("abc123", "web", CreateOptions(add_host=["db:10.0.0.9"]), ["10.123.0.5"])
    assert hosts.splitlines() == ["127.0.0.1\tlocalhost localhost.localdomain", "::1\tlocalhost localhost.localdomain",
                                  "10.123.0.5\tabc123 web", "10.0.0.9\tdb"]


def _build(options: CreateOptions, config: dict | None = None, **kwargs) -> dict:
    conf = EngineConfig(default_capabilities=["CAP_CHOWN", "CAP_KILL"], env=["PATH=/usr/bin:/bin"],
                        seccomp_profile="unconfined" if False else "")
    return specs.build(container_id="c" * 64, rootfs="/nonexistent-rootfs", userdata="/nonexistent-userdata",
                       image=image(config or {"Cmd": ["sh"], "Env": ["FROM_IMAGE=1"], "WorkingDir": "/srv"}),
                       options=options, conf=conf, **kwargs)


def test_build_gives_podmans_profile_from_image_and_options():
    options = CreateOptions(env=["MINE=2"], cap_add=["NET_ADMIN"], cap_drop=["KILL"], read_only=True,
                            memory=64 << 20, pids_limit=50, hostname="box", labels={}, seccomp_profile="unconfined")
    config = _build(options)
    process = config["process"]
    assert process["args"] == ["sh"] and process["cwd"] == "/srv"
    assert "FROM_IMAGE=1" in process["env"] and "MINE=2" in process["env"] and "HOSTNAME=box" in process["env"]
    caps = process["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" in caps and "CAP_KILL" not in caps
    assert config["root"] == {"path": "/nonexistent-rootfs", "readonly": True}
    assert config["hostname"] == "box"
    assert config["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert config["linux"]["resources"]["pids"]["limit"] == 50
    kinds = [n["type"] for n in config["linux"]["namespaces"]]
    assert {"pid", "ipc", "uts", "mount", "network"} <= set(kinds)
    assert "seccomp" not in config["linux"]  # unconfined


def test_build_shares_what_the_options_share_and_places_extra_mounts_last():
    extra = [{"destination": "/proc", "type": "bind", "source": "/tmp", "options": ["rbind"]}]
    config = _build(CreateOptions(pid="host", uts="host", network="host", seccomp_profile="unconfined"),
                    extra_mounts=extra)
    kinds = [n["type"] for n in config["linux"]["namespaces"]]
    assert "pid" not in kinds and "uts" not in kinds and "network" not in kinds and "mount" in kinds
    assert "hostname" not in config  # the host's name stays
    assert config["mounts"][-1] == extra[0] and [m["destination"] for m in config["mounts"]].count("/proc") == 1
    joined = _build(CreateOptions(seccomp_profile="unconfined"), netns_path="/run/netns/x",
                    namespace_paths={"ipc": "/proc/1/ns/ipc"})
    assert {"type": "network", "path": "/run/netns/x"} in joined["linux"]["namespaces"]
    assert {"type": "ipc", "path": "/proc/1/ns/ipc"} in joined["linux"]["namespaces"]
