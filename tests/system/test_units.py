"""Units ketch writes for systemd, without a systemd: ``generate systemd`` against podman's for
the same container, the Quadlet generator against what podman's Quadlet documents and tests
(test/e2e/quadlet in podman's tree), and ``systemd-analyze verify`` of every unit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ketch.errors import InvalidInputError
from ketch.system.quadlet import UnitFile, generate, words

BIN = Path(sys.executable).parent
KETCH = str(BIN / "ketch")


def verify(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})


def service_keys(text: str) -> dict[str, dict[str, list[str]]]:
    """section → key → values, with continuation lines joined."""
    unit = UnitFile.parse(re.sub(r"\\\n\t", " ", text))
    out: dict[str, dict[str, list[str]]] = {}
    for section, key, value in unit.entries:
        out.setdefault(section, {}).setdefault(key, []).append(value)
    return out


# -- Quadlet ---------------------------------------------------------------------------------


def convert(tmp_path: Path, files: dict[str, str]) -> tuple[dict[str, str], list[str], Path]:
    source, output = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name, text in files.items():
        (source / name).write_text(text)
    made, errors = generate([source], output, KETCH)
    return {m.service: m.text for m in made}, errors, output


def test_basic_container_is_what_podman_quadlet_makes(tmp_path):
    # podman's test/e2e/quadlet/basic.container, with its assertions (ketch in podman's place)
    made, errors, out = convert(tmp_path, {"basic.container": "[Container]\nImage=localhost/imagename\n"})
    assert errors == []
    keys = service_keys(made["basic.service"])
    start = words(keys["Service"]["ExecStart"][0])
    assert start[0] == KETCH and start[1] == "run" and start[-1] == "localhost/imagename"
    for arg in ("--name=systemd-%N", "--cidfile=%t/%N.cid", "--rm", "--replace", "-d", "--cgroups=split",
                "--sdnotify=conmon"):
        assert arg in start, (arg, start)
    assert keys["Unit"]["RequiresMountsFor"] == ["%t/containers"]
    assert keys["Unit"]["SourcePath"] == [str(tmp_path / "in/basic.container")]
    service = keys["Service"]
    assert service["KillMode"] == ["mixed"] and service["Delegate"] == ["yes"] and service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["all"] and service["SyslogIdentifier"] == ["%N"]
    assert service["Environment"] == ["PODMAN_SYSTEMD_UNIT=%n"]
    assert f"-{KETCH} rm -v -f -i --cidfile=%t/%N.cid" in service["ExecStopPost"]
    assert keys["X-Container"] == {"Image": ["localhost/imagename"]}
    result = verify(out / "basic.service")
    assert result.returncode == 0, result.stderr


def test_container_keys_become_run_flags_with_the_same_meaning(tmp_path):
    made, errors, out = convert(tmp_path, {
        "web.container": """[Unit]
Description=web

[Container]
Image=localhost/busybox
ContainerName=web
Exec=httpd -f -p 8080 "-h" /srv
Environment=FOO=bar "BAZ=with space"
Environment=ONE=1
EnvironmentFile=/etc/web.env
PublishPort=127.0.0.1:8080:8080
PublishPort=9090
Volume=data.volume:/srv:ro
Volume=/host/logs:/logs
Mount=type=volume,source=data.volume,destination=/data
Network=front.network
Notify=true
ReadOnly=true
User=1000
Group=100
AddCapability=CAP_NET_ADMIN cap_net_raw
DropCapability=all
Label=a=b "c=d e"
Annotation=x=y
AutoUpdate=registry
HealthCmd=/bin/true
HealthInterval=5s
Tmpfs=/scratch
WorkingDir=/srv
PodmanArgs=--pids-limit 100 \\
  --hostname web1

[Service]
Restart=always
TimeoutStartSec=900

[Install]
WantedBy=multi-user.target default.target
""",
        "data.volume": "[Volume]\nLabel=kind=data\nUser=1000\n",
        "front.network": "[Network]\nSubnet=10.89.7.0/24\nGateway=10.89.7.1\nInternal=true\n",
        "named.volume": "[Volume]\nVolumeName=explicit\n",
    })
    assert errors == []
    assert sorted(made) == ["data-volume.service", "front-network.service", "named-volume.service", "web.service"]
    keys = service_keys(made["web.service"])
    start = words(keys["Service"]["ExecStart"][0])

    def pairs(flag):
        return [start[i + 1] for i, w in enumerate(start) if w == flag]

    assert "--name=web" in start and "--sdnotify=container" in start  # Notify=true: the container notifies
    assert start[start.index("localhost/busybox"):] == ["localhost/busybox", "httpd", "-f", "-p", "8080", "-h", "/srv"]
    assert pairs("--env") == ["FOO=bar", "BAZ=with space", "ONE=1"]
    assert pairs("--env-file") == ["/etc/web.env"]
    assert pairs("--publish") == ["127.0.0.1:8080:8080", "9090"]
    assert pairs("--volume") == ["systemd-data:/srv:ro", "/host/logs:/logs"]
    assert pairs("--mount") == ["type=volume,source=systemd-data,destination=/data"]
    assert pairs("--network") == ["systemd-front"]
    assert pairs("--user") == ["1000:100"] and "--read-only" in start
    assert "--cap-drop=all" in start and "--cap-add=cap_net_admin" in start and "--cap-add=cap_net_raw" in start
    assert pairs("--label") == ["a=b", "c=d e", "io.containers.autoupdate=registry"]
    assert pairs("--annotation") == ["x=y"] and pairs("--health-cmd") == ["/bin/true"]
    assert pairs("--health-interval") == ["5s"] and pairs("--tmpfs") == ["/scratch"] and pairs("--workdir") == ["/srv"]
    assert pairs("--pids-limit") == ["100"] and pairs("--hostname") == ["web1"]
    unit = keys["Unit"]
    assert unit["Description"] == ["web"]
    assert unit["Requires"] == ["data-volume.service", "front-network.service"]
    assert unit["After"] == ["network-online.target", "data-volume.service", "front-network.service"]
    assert keys["Service"]["Restart"] == ["always"] and keys["Service"]["TimeoutStartSec"] == ["900"]
    assert keys["Install"]["WantedBy"] == ["multi-user.target default.target"]
    for target in ("multi-user.target", "default.target"):
        assert os.readlink(out / f"{target}.wants/web.service") == "../web.service"
    volume = service_keys(made["data-volume.service"])["Service"]
    assert volume["Type"] == ["oneshot"] and volume["RemainAfterExit"] == ["yes"]
    assert words(volume["ExecStart"][0]) == [KETCH, "volume", "create", "--ignore", "--label", "kind=data", "--opt",
                                             "uid=1000", "systemd-data"]
    assert words(service_keys(made["named-volume.service"])["Service"]["ExecStart"][0])[-1] == "explicit"
    network = words(service_keys(made["front-network.service"])["Service"]["ExecStart"][0])
    assert network == [KETCH, "network", "create", "--ignore", "--subnet", "10.89.7.0/24", "--gateway", "10.89.7.1",
                       "--internal", "systemd-front"]
    result = verify(*(out / name for name in made))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("text, message", [
    ("[Container]\nImage=x\nBogus=1\n", "unsupported key 'Bogus' in group 'Container'"),
    ("[Container]\nExec=true\n", "no Image key specified"),
    ("[Container]\nImage=x\nRootfs=/srv\n", "unsupported key 'Rootfs'"),
    ("[Container]\nImage=x\n[Service]\nType=forking\n", "invalid service Type 'forking'"),
    ("[Container]\nImage=x\nGroup=1\n", "Group= needs User="),
    ("[Container]\nImage=x\nAutoUpdate=sometimes\n", "AutoUpdate=sometimes"),
    ("Image=x\n", "is not KEY=VALUE inside a section"),
])
def test_a_bad_file_is_skipped_with_an_error_naming_it(tmp_path, text, message):
    made, errors, out = convert(tmp_path, {"bad.container": text, "good.container": "[Container]\nImage=x\n"})
    assert list(made) == ["good.service"]
    assert len(errors) == 1 and message in errors[0] and "bad.container" in errors[0], errors
    assert not (out / "bad.service").exists()


def test_the_generator_program_as_systemd_calls_it(tmp_path):
    source = tmp_path / "units"
    source.mkdir()
    (source / "app.container").write_text("[Container]\nImage=localhost/app\n[Install]\nWantedBy=default.target\n")
    env = {**os.environ, "QUADLET_UNIT_DIRS": str(source)}
    normal, early, late = (tmp_path / d for d in ("normal", "early", "late"))
    result = subprocess.run([str(BIN / "ketch-quadlet"), "-no-kmsg-log", str(normal), str(early), str(late)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert (normal / "app.service").is_file() and os.readlink(normal / "default.target.wants/app.service")
    dry = subprocess.run([str(BIN / "ketch-quadlet"), "-dryrun"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0 and "---app.service---" in dry.stdout and "ExecStart=" in dry.stdout
    (source / "broken.container").write_text("[Container]\n")
    failed = subprocess.run([str(BIN / "ketch-quadlet"), "-no-kmsg-log", str(normal)], capture_output=True,
                            text=True, env=env)
    assert failed.returncode == 1 and "broken.container: no Image key specified" in failed.stderr


def test_unit_file_syntax(tmp_path):
    unit = UnitFile.parse("# c\n[A]\nK=1\n; c\nK = 2 \\\n  more\n[B]\nX=a=b\n")
    assert unit.values("A", "K") == ["1", "2 more"] and unit.last("B", "X") == "a=b"
    assert words('a "b c" \'d e\' f\\ g') == ["a", "b c", "d e", "f g"]
    with pytest.raises(InvalidInputError):
        UnitFile.parse("[A\n")


# -- generate systemd ----------------------------------------------------------------------


def normalized(text: str, program: str) -> dict[str, dict[str, list[str]]]:
    keys = service_keys(text)
    for section in keys.values():
        for key, values in section.items():
            section[key] = [re.sub(r"\b[0-9a-f]{64}\b", "ID", v.replace(program, "PROGRAM")) for v in values]
    keys["Unit"]["Description"] = [d.split(" ", 1)[1] for d in keys["Unit"]["Description"]]
    return keys


@pytest.mark.peer
def test_generate_systemd_matches_podman(tmp_path, podman, busybox_layout):
    """The same container in ketch and podman: the same unit, but for the program, the cgroup
    mode (ketch: split, podman 4.3: no-conmon), the store's paths and global flags."""
    image = "localhost/gen:latest"
    store = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]

    def ketch(*args):
        result = subprocess.run([KETCH, *store, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    ketch("pull", "-q", f"oci:{busybox_layout}:latest")
    ketch("tag", ketch("images", "-q").split()[0], image)
    podman.run("pull", "-q", f"oci:{busybox_layout}:latest")
    podman.run("tag", podman.images()[0]["Id"], image)
    create = ["create", "--name", "gen", "-e", "A=b", "--label", "x=y", image, "sleep", "100"]
    ketch(*create)
    podman.run(*create)
    try:
        for flags in ([], ["--new"]):
            mine = ketch("generate", "systemd", "--name", *flags, "gen")
            theirs = podman.run("generate", "systemd", "--name", *flags, "gen").stdout
            a, b = normalized(mine, KETCH), normalized(theirs, "/usr/bin/podman")
            if flags:
                start_a, start_b = words(a["Service"].pop("ExecStart")[0]), words(b["Service"].pop("ExecStart")[0])
                after_run = lambda w: [x for x in w[w.index("run"):] if not x.startswith("--cgroups=")]  # noqa: E731
                assert after_run(start_a) == after_run(start_b)
                assert "--cgroups=split" in start_a and "--cgroups=no-conmon" in start_b
                for key in ("ExecStop", "ExecStopPost"):
                    a["Service"][key] = [re.sub(r"PROGRAM --root \S+ --runroot \S+", "PROGRAM", v)
                                         for v in a["Service"][key]]
            else:
                for key in ("ExecStart", "ExecStop", "ExecStopPost"):
                    a["Service"][key] = [re.sub(r"PROGRAM --root \S+ --runroot \S+", "PROGRAM", v)
                                         for v in a["Service"][key]]
                    b["Service"][key] = [v.replace("  ", " ") for v in b["Service"][key]]
                a["Unit"].pop("RequiresMountsFor"), b["Unit"].pop("RequiresMountsFor")
                assert a["Service"].pop("PIDFile")[0].endswith("/userdata/conmon.pid")
                assert b["Service"].pop("PIDFile")[0].endswith("/userdata/conmon.pid")
            assert a == b
            unit_path = tmp_path / "container-gen.service"
            unit_path.write_text(mine)
            result = verify(unit_path)
            unit_path.unlink()
            assert result.returncode == 0, result.stderr
    finally:
        subprocess.run([KETCH, *store, "rm", "-f", "gen"], capture_output=True)
        podman.run("rm", "-f", "gen", check=False)
