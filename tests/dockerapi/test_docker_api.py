"""ketch system service against the real clients: the docker CLI (Debian's docker.io) and the
docker SDK, on the container tests' store; what they see is what ketch's own commands see."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.dockerapi.conftest import DOCKER, start_service, stop_service
from tests.support.compose import COMPOSE
from tests.support.registry import free_port

pytestmark = pytest.mark.peer

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]


def _get(url: str, patience: float = 20) -> str:
    deadline = time.monotonic() + patience
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def request(service, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    connection = UnixHTTP(str(service.socket_path))
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_docker_run_ps_logs_images_as_ketch_sees_them(api):
    out = api.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (out.returncode, out.stdout, out.stderr) == (3, b"out\n", b"err\n")
    piped = api.docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"piped\n")
    assert piped.stdout == b"piped\nend\n"
    port = free_port()
    web_id = api.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "--label", "team=blue",
                        "busybox", *HTTPD).stdout.decode().strip()
    assert _get(f"http://127.0.0.1:{port}/") == f"hello-from-{web_id[:12]}\n"
    api.docker("run", "--name", "done", "busybox", "echo", "finished")
    # the same containers as ketch's own commands list, in docker's words
    theirs = set(api.docker("ps", "-a", "-q", "--no-trunc").stdout.decode().split())
    ours = set(api.env.cli("ps", "-a", "-q", "--no-trunc", check=True).stdout.split())
    assert theirs == ours and web_id in theirs
    listed = api.docker("ps", "--format", "{{.Names}}|{{.Status}}|{{.Ports}}|{{.Labels}}").stdout.decode()
    name, status, ports, labels = listed.strip().split("|")
    assert (name, status.startswith("Up"), ports, "team=blue" in labels) == (
        "web", True, f"127.0.0.1:{port}->80/tcp", True)
    exited = api.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert exited.startswith("done Exited (0)")
    assert api.docker("logs", "done").stdout == b"finished\n"
    inspected = json.loads(api.docker("inspect", "web").stdout)[0]
    assert inspected["Name"] == "/web" and inspected["State"]["Running"] is True
    assert inspected["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    # images: the same ids as ketch's
    docker_images = set(api.docker("images", "-q", "--no-trunc").stdout.decode().split())
    assert docker_images == set(api.env.cli("images", "-q", "--no-trunc", check=True).stdout.split())
    api.docker("stop", "-t", "0", "web")
    assert api.env.status("web") == "exited"
    api.docker("rm", "web", "done")
    assert api.env.ps() == []


def test_docker_pull_with_progress_from_a_registry(api, registry):
    reference = f"{registry.host}/library/busybox"
    pulled = api.docker("pull", reference)
    assert b"Status: Downloaded newer image for" in pulled.stdout
    assert reference + ":latest" in api.env.cli("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout
    removed = api.docker("rmi", reference).stdout.decode()
    assert f"Untagged: {reference}:latest" in removed
    missing = api.docker("pull", f"{registry.host}/library/not-there", check=False)
    assert missing.returncode != 0 and b"not-there" in missing.stderr


def test_docker_search_as_ketch_search(api, registry):
    """docker search through the service finds what ketch search finds (the registry's repository
    list), in Docker's columns; the SDK gets the API's result fields."""
    import docker

    table = api.docker("search", f"{registry.host}/busybox").stdout.decode().splitlines()
    assert table[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    names = [line.split()[0] for line in table[1:]]
    mine = api.env.cli("search", "--tls-verify=false", "--format", "{{.Name}}", f"{registry.host}/busybox",
                       check=True).stdout.split()
    assert names == mine and f"{registry.host}/library/busybox" in names
    client = docker.DockerClient(base_url=api.url, version="auto")
    try:
        found = client.images.search(f"{registry.host}/multi")
    finally:
        client.close()
    # (the session's registry may hold other tests' repositories with "multi" in their names)
    assert {"description": "", "is_official": False, "is_automated": False, "name": f"{registry.host}/multi",
            "star_count": 0} in found
    assert all("multi" in entry["name"] for entry in found)
    missing = api.docker("search", "--limit", "3", f"{registry.host}/nothing-like-it").stdout.decode()
    assert missing.split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]


def test_the_docker_sdk(api):
    import docker

    client = docker.DockerClient(base_url=api.url, version="auto")
    try:
        assert client.ping() is True
        assert client.containers.run("busybox", ["sh", "-c", "echo from the sdk"], remove=True) == b"from the sdk\n"
        container = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 30"], detach=True,
                                          name="sdk-detached", environment={"A": "b"}, labels={"made-by": "sdk"})
        assert container.status in ("created", "running")
        deadline = time.monotonic() + 20
        while b"one" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert container.logs() == b"one\n"
        found = client.containers.list(filters={"label": "made-by=sdk"})
        assert [c.name for c in found] == ["sdk-detached"]
        container.reload()
        assert "A=b" in container.attrs["Config"]["Env"]
        container.kill()
        assert container.wait()["StatusCode"] == 137
        container.remove()
        assert client.images.get("busybox").id.startswith("sha256:")
        volume = client.volumes.create("sdk-volume", labels={"k": "v"})
        assert volume.name in [v.name for v in client.volumes.list()]
        volume.remove()
        network = client.networks.create("sdk-network")
        assert "sdk-network" in [n.name for n in client.networks.list()]
        network.remove()
    finally:
        client.close()


def test_bad_requests_get_the_apis_errors_and_the_service_goes_on(api):
    status, body = request(api, "POST", "/v1.43/containers/create", b"{not json")
    assert status == 400 and "invalid JSON" in json.loads(body)["message"]
    status, body = request(api, "POST", "/v1.43/containers/create", json.dumps({"Image": "no-such-image"}).encode())
    assert status == 404 and json.loads(body)["message"] == "No such image: no-such-image"
    status, body = request(api, "GET", "/v1.43/containers/no-such-container/json")
    assert status == 404 and json.loads(body)["message"] == "No such container: no-such-container"
    status, body = request(api, "POST", "/v1.43/containers/create?name=taken", json.dumps({"Image": "busybox"}).encode())
    assert status == 201
    status, body = request(api, "POST", "/v1.43/containers/create?name=taken", json.dumps({"Image": "busybox"}).encode())
    assert status == 409 and "taken" in json.loads(body)["message"]
    status, body = request(api, "GET", "/v1.99/version")
    assert status == 400 and "too new" in json.loads(body)["message"]
    # a body far over the limit: refused, nothing made
    status, _ = request(api, "POST", "/v1.43/containers/create", b"{" + b" " * (20 * 1024 * 1024) + b"}")
    assert status == 413
    # a client that hangs up in the middle of a follow: the service is still there
    connection = UnixHTTP(str(api.socket_path))
    connection.request("GET", "/v1.43/events")
    connection.getresponse()
    connection.close()
    assert request(api, "GET", "/_ping") == (200, b"OK")
    assert [c["Names"] for c in api.env.ps()] == [["taken"]]
    assert request(api, "DELETE", "/v1.43/containers/taken")[0] == 204


def test_idle_service_exits_and_its_containers_go_on(ketch_env, service_dir):
    directory = service_dir / "idle"
    directory.mkdir()
    idle = start_service(ketch_env, directory, "--time", "1")
    try:
        idle.docker("run", "-d", "--name", "outlives", "busybox", "sleep", "60")
        idle.process.wait(timeout=60)  # (idle for a second after its last request)
        assert idle.process.returncode == 0
        assert not idle.socket_path.exists()
        assert ketch_env.status("outlives") == "running"
    finally:
        stop_service(idle)
        ketch_env.cli("rm", "-f", "-t", "0", "outlives")


def test_socket_activation_and_the_shipped_units(ketch_env, service_dir):
    """Started by systemd's socket (systemd-socket-activate stands in for ketch.socket): it
    serves the socket it is given and exits when idle; the shipped units pass systemd-analyze."""
    import os
    from pathlib import Path

    import ketch.dockerapi
    from tests.containers.conftest import KETCH

    socket_path = service_dir / "activated.sock"
    args = [KETCH, "--root", str(ketch_env.root), "--runroot", str(ketch_env.runroot), "system", "service", "--time",
            "1"]
    process = subprocess.Popen(["systemd-socket-activate", "-l", str(socket_path), "-E", "PATH", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert time.monotonic() < deadline and process.poll() is None, "the socket never appeared"
            time.sleep(0.05)
        out = subprocess.run([DOCKER, "-H", f"unix://{socket_path}", "version", "--format", "{{.Server.APIVersion}}"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "1.43", out.stderr
        process.wait(timeout=60)  # (idle for a second: it ends, and systemd would start it again)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
    # (verified as shipped, but for where this ketch is installed: /usr/local/bin/ketch is the link
    # scripts/install.sh makes)
    units = Path(ketch.dockerapi.__file__).parent / "units"
    for name in ("ketch.socket", "ketch.service"):
        text = (units / name).read_text().replace("/usr/local/bin/ketch", KETCH)
        (service_dir / name).write_text(text)
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(service_dir / "ketch.socket"),
                               str(service_dir / "ketch.service")], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stderr


def test_docker_exec(api):
    api.docker("run", "-d", "--name", "execd", "busybox", "sleep", "60")
    out = api.docker("exec", "execd", "sh", "-c", "echo in; echo err >&2; exit 4", check=False)
    assert (out.returncode, out.stdout, out.stderr) == (4, b"in\n", b"err\n")
    piped = api.docker("exec", "-i", "-e", "X=y", "-w", "/tmp", "execd", "sh", "-c", "cat; echo $X; pwd",
                       input=b"data\n")
    assert piped.stdout == b"data\ny\n/tmp\n"
    as_user = api.docker("exec", "-u", "65534", "execd", "id", "-u")
    assert as_user.stdout == b"65534\n"
    # a terminal: docker -it under script(1), which gives it one
    terminal = subprocess.run(["script", "-qec", f"{DOCKER} -H {api.url} exec -it execd sh -c 'tty; exit 5'",
                               "/dev/null"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert b"/dev/pts/" in terminal.stdout and terminal.returncode == 5, terminal
    missing = api.docker("exec", "execd", "no-such-command", check=False)
    assert missing.returncode == 127
    api.docker("rm", "-f", "execd")
    stopped = api.docker("exec", "execd", "true", check=False)
    assert stopped.returncode != 0 and b"No such container: execd" in stopped.stderr


def test_docker_cp_both_ways(api, tmp_path):
    api.docker("run", "-d", "--name", "copied", "busybox", "sleep", "60")
    (tmp_path / "in.txt").write_text("from the host\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "leaf").write_text("leaf\n")
    api.docker("cp", str(tmp_path / "in.txt"), "copied:/tmp/")
    api.docker("cp", str(tmp_path / "tree"), "copied:/tmp/")
    assert api.docker("exec", "copied", "cat", "/tmp/in.txt", "/tmp/tree/leaf").stdout == b"from the host\nleaf\n"
    # and the same files as ketch's cp sees them
    assert api.env.cli("exec", "copied", "cat", "/tmp/in.txt", check=True).stdout == "from the host\n"
    api.docker("cp", "copied:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:")
    api.docker("cp", "copied:/tmp/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "leaf").read_text() == "leaf\n"
    missing = api.docker("cp", "copied:/no-such-file", str(tmp_path / "x"), check=False)
    # (docker 20.10 says it in its own words, as it does for Docker's daemon)
    assert missing.returncode != 0 and b"/no-such-file" in missing.stderr
    nowhere = api.docker("cp", str(tmp_path / "tree"), "copied:/no-such-dir/", check=False)
    assert nowhere.returncode != 0
    api.docker("rm", "-f", "copied")


def test_docker_compose_up_logs_exec_down(api, tmp_path):
    """docker-compose 1.29 (Debian's): two services on a network of their own, a named volume
    they share, a port published on 127.0.0.1; the client reaches the web service by its service
    name (compose's network alias); logs, exec, and down -v leave nothing."""
    port = free_port()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    env = {"DOCKER_HOST": api.url, "COMPOSE_PROJECT_NAME": "kproj", "PATH": "/usr/bin:/bin"}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker-compose", *args], cwd=project, env=env, capture_output=True, timeout=180)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: {result.stderr.decode()}")
        return result

    try:
        compose("up", "-d")
        assert _get(f"http://127.0.0.1:{port}/") == "hello-compose\n"
        deadline = time.monotonic() + 60
        while b"hello-compose" not in compose("logs", "--no-color", "client").stdout:
            assert time.monotonic() < deadline, compose("logs", "--no-color").stdout
            time.sleep(0.2)
        assert b"web-started" in compose("logs", "--no-color", "web").stdout
        listed = compose("ps").stdout.decode()
        assert listed.count("kproj_web_1") == 1 and listed.count("kproj_client_1") == 1
        assert compose("exec", "-T", "client", "cat", "/data/got").stdout == b"hello-compose\n"
        names = set(api.env.cli("ps", "--format", "{{.Names}}", check=True).stdout.split())
        assert names == {"kproj_web_1", "kproj_client_1"}
    finally:
        compose("down", "-v", "-t", "1", check=False)
    assert api.env.ps() == []
    assert "kproj_data" not in api.env.cli("volume", "ls", "-q", check=True).stdout
    assert "kproj_back" not in api.env.cli("network", "ls", "--format", "{{.Name}}", check=True).stdout


def test_testcontainers_waits_for_a_log_line(api, monkeypatch):
    """testcontainers-python starts a container of a local image and waits for its log line."""
    import re

    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    monkeypatch.setenv("DOCKER_HOST", api.url)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # (its reaper is an image from Docker Hub)
    container = DockerContainer("busybox").with_command(["sh", "-c", "sleep 0.5; echo ready to serve; sleep 60"])
    container.waiting_for(LogMessageWaitStrategy(re.compile("ready to serve")).with_startup_timeout(60))
    with container:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        assert wrapped.status == "running" and b"ready to serve" in wrapped.logs()
        exit_code, output = container.exec(["echo", "inside"])
        assert (exit_code, output) == (0, b"inside\n")


def test_docker_build(api, tmp_path):
    """docker build (its legacy builder: no buildx here) on ketch's builder: build args, a target
    stage, labels, -q; the image runs as ketch's own build's does; a failing step fails the build."""
    (tmp_path / "f.txt").write_text("from the context\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS base\nARG GREETING=hi\nCOPY f.txt /f.txt\nRUN echo $GREETING > /g.txt\n"
        "FROM base AS final\nCMD [\"cat\", \"/g.txt\", \"/f.txt\"]\nFROM base AS other\nCMD [\"false\"]\n")
    built = api.docker("build", "-t", "localhost/dapi-built:1", "--build-arg", "GREETING=hello", "--target", "final",
                       "--label", "made=by-docker", str(tmp_path), env={"DOCKER_BUILDKIT": "0"})
    assert b"Successfully tagged localhost/dapi-built:1" in built.stdout
    assert api.docker("run", "--rm", "localhost/dapi-built:1").stdout == b"hello\nfrom the context\n"
    labels = api.env.cli("image", "inspect", "--format", "{{.Config.Labels}}", "localhost/dapi-built:1",
                         check=True).stdout
    assert "made:by-docker" in labels
    quiet = api.docker("build", "-q", str(tmp_path), env={"DOCKER_BUILDKIT": "0"}).stdout.decode().strip()
    assert quiet.startswith("sha256:") and len(quiet) == 71
    (tmp_path / "Dockerfile.bad").write_text("FROM busybox\nRUN exit 3\n")
    failed = api.docker("build", "-f", str(tmp_path / "Dockerfile.bad"), str(tmp_path), check=False,
                        env={"DOCKER_BUILDKIT": "0"})
    assert failed.returncode != 0 and b"exit status 3" in failed.stdout + failed.stderr
    api.docker("rmi", "localhost/dapi-built:1")


def test_docker_stats_and_top(api):
    api.docker("run", "-d", "--name", "busy", "busybox", "sh", "-c", "while :; do :; done")
    shown = api.docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.PIDs}}", "busy").stdout.decode()
    name, cpu, pids = shown.split()
    assert name == "busy" and float(cpu.rstrip("%")) > 1.0 and pids == "1"
    top = api.docker("top", "busy").stdout.decode()
    assert "PID" in top.splitlines()[0] and "while" in top
    api.docker("rm", "-f", "busy")


def test_events_info_and_df(api):
    since = int(time.time())
    api.docker("run", "--rm", "--name", "eventful", "busybox", "true")
    until = int(time.time()) + 1
    actions = api.docker("events", "--since", str(since), "--until", str(until), "--filter", "container=eventful",
                         "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}").stdout.decode().split("\n")
    assert [a for a in actions if a.split(" ")[1:2] in (["create"], ["start"], ["die"], ["remove"])] == [
        "container create eventful", "container start eventful", "container die eventful",
        "container remove eventful"]
    info = json.loads(api.docker("info", "--format", "{{json .}}").stdout)
    images = len(api.env.cli("images", "-a", "-q", "--no-trunc", check=True).stdout.split())
    assert (info["Containers"], info["Images"], info["OSType"]) == (0, images, "linux")
    df = api.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout.decode()
    assert f"Images {images}" in df and "Containers 0" in df, df


def test_docker_push_save_load(api, registry, tmp_path):
    target = f"{registry.host}/dapi/pushed:1"
    api.docker("tag", "busybox", target)
    pushed = api.docker("push", target).stdout.decode()
    assert "Pushed" in pushed and "digest: sha256:" in pushed
    # what the registry holds is what ketch's own inspect of the remote says
    remote = json.loads(api.env.cli("image", "inspect", "--tls-verify=false", f"docker://{target}",
                                    check=True).stdout)
    assert remote["Digest"] in pushed
    api.docker("rmi", target)
    archive = tmp_path / "saved.tar"
    api.docker("save", "-o", str(archive), "busybox")
    import tarfile

    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["docker.io/library/busybox:latest"]
    loaded = api.docker("load", "-i", str(archive)).stdout.decode()
    assert "Loaded image: docker.io/library/busybox:latest" in loaded


def test_terminal_resize_and_the_other_container_verbs(api, tmp_path):
    """A container's terminal resized through the API (its processes see the size); pause,
    unpause, rename, changes, export, history and the prunes, through the SDK."""
    import docker

    client = docker.DockerClient(base_url=api.url, version="auto")
    try:
        container = client.containers.run("busybox", ["sh", "-c", "while :; do stty size; sleep 0.1; done"],
                                          tty=True, detach=True, name="sized")
        container.resize(height=33, width=111)
        deadline = time.monotonic() + 20
        while b"33 111" not in container.logs():
            assert time.monotonic() < deadline, container.logs()[-200:]
            time.sleep(0.1)
        container.pause()
        container.reload()
        assert container.status == "paused"
        container.unpause()
        container.rename("resized")
        assert client.containers.get("resized").id == container.id
        container.exec_run(["sh", "-c", "echo x > /made-here"])
        changed = client.api.diff(container.id)
        assert {"Path": "/made-here", "Kind": 1} in changed
        with open(tmp_path / "export.tar", "wb") as out:
            for chunk in container.export():
                out.write(chunk)
        import tarfile

        with tarfile.open(tmp_path / "export.tar") as exported:
            assert "made-here" in [m.name.lstrip("./") for m in exported.getmembers()]
        container.remove(force=True)
        history = client.images.get("busybox").history()
        assert history and history[0]["Id"].startswith("sha256:")
        stopped = client.containers.run("busybox", "true", detach=True, name="to-prune")
        stopped.wait()
        assert stopped.id in (client.containers.prune()["ContainersDeleted"] or [])
        assert client.volumes.create("to-prune-volume").name in (client.volumes.prune()["VolumesDeleted"] or [])
    finally:
        client.close()


def test_docker_login_and_a_pull_with_credentials(api, basic_registry):
    """docker login through the service (POST /auth checks the registry), then a pull whose
    credentials come in X-Registry-Auth; wrong ones are refused in one line."""
    wrong = api.docker("login", "-u", "alice", "--password-stdin", basic_registry.host, input=b"nope\n",
                       check=False)
    assert wrong.returncode != 0 and b"failed" in wrong.stderr
    api.docker("login", "-u", "alice", "--password-stdin", basic_registry.host, input=b"wonderland\n")
    image = f"{basic_registry.host}/private/busybox"
    pulled = api.docker("pull", image)
    assert b"Downloaded newer image" in pulled.stdout
    api.docker("rmi", image)
    api.docker("logout", basic_registry.host)
    refused = api.docker("pull", image, check=False)
    assert refused.returncode != 0


def test_a_tcp_socket(ketch_env, service_dir):
    port = free_port()
    process = subprocess.Popen([api_ketch(), "--root", str(ketch_env.root), "--runroot", str(ketch_env.runroot),
                                "system", "service", "--time", "0", f"tcp://127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ping", timeout=2) as response:
                    assert response.read() == b"OK" and response.headers["API-Version"] == "1.43"
                    break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the TCP service never answered"
                time.sleep(0.05)
        out = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{port}", "run", "--rm", "busybox", "echo", "via tcp"],
                             capture_output=True, timeout=60)
        assert out.stdout == b"via tcp\n", out.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)


def api_ketch() -> str:
    from tests.containers.conftest import KETCH

    return KETCH


def test_logs_follow_and_unknown_fields(api):
    """``docker logs -f`` ends when the container does, with stdout and stderr on their streams
    and ``--tail``; a create body with fields the API does not know is taken, as Docker takes it."""
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.2; done"],
            "SomethingNew": {"x": 1}, "HostConfig": {"AlsoNew": True}}
    status, created = request(api, "POST", "/v1.43/containers/create?name=follow", json.dumps(body).encode())
    assert status == 201, created
    api.docker("start", "follow")
    followed = api.docker("logs", "-f", "follow", timeout=60)
    assert (followed.stdout, followed.stderr) == (b"out1\nout2\nout3\n", b"err1\nerr2\nerr3\n")
    last = api.docker("logs", "--tail", "1", "follow")  # (the last line of both streams, as Docker's)
    assert (last.stdout, last.stderr) == (b"", b"err3\n")
    stamped = api.docker("logs", "-t", "follow").stdout.decode().splitlines()
    assert stamped[0].endswith("Z out1") and stamped[0][:4].isdigit()
    api.docker("rm", "follow")


def test_network_connect_update_commit_import(api, tmp_path):
    """The verbs served last: connecting a running container, update, commit and import."""
    api.docker("network", "create", "--subnet", "10.124.30.0/24", "hotnet")
    api.docker("run", "-d", "--name", "hot", "busybox", "sleep", "1000")
    api.docker("run", "-d", "--name", "peer", "--network", "hotnet", "busybox", "sleep", "1000")
    api.docker("network", "connect", "--alias", "hotalias", "--ip", "10.124.30.40", "hotnet", "hot")
    addresses = api.docker("exec", "hot", "ip", "-4", "-o", "addr").stdout.decode()
    assert "inet 10.124.30.40/24" in addresses
    assert "10.124.30.40\thotalias" in api.docker("exec", "peer", "cat", "/etc/hosts").stdout.decode()
    twice = api.docker("network", "connect", "hotnet", "hot", check=False)
    assert twice.returncode != 0 and b"already connected" in twice.stderr
    api.docker("network", "disconnect", "hotnet", "hot")
    assert "10.124.30.40" not in api.docker("exec", "hot", "ip", "-4", "-o", "addr").stdout.decode()
    # update: the running container's cgroup, and what inspect says
    api.docker("update", "--memory", "96m", "--memory-swap", "192m", "--restart", "on-failure:2", "hot")
    limit = api.docker("exec", "hot", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert limit == b"100663296\n"
    policy = api.docker("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}", "hot")
    assert policy.stdout == b"100663296 on-failure\n"
    # commit: Docker's format, with the changes and the message
    api.docker("exec", "hot", "sh", "-c", "echo made-in-hot > /made")
    committed = api.docker("commit", "-c", 'CMD ["cat", "/made"]', "-m", "from hot", "hot", "committed:1")
    assert committed.stdout.startswith(b"sha256:")
    assert api.docker("run", "--rm", "committed:1").stdout == b"made-in-hot\n"
    assert api.docker("history", "--format", "{{.Comment}}", "committed:1").stdout.split(b"\n")[0] == b"from hot"
    media = api.env.cli("image", "inspect", "--format", "{{.ManifestType}}", "committed:1", check=True).stdout
    assert media == "application/vnd.docker.distribution.manifest.v2+json\n"
    # import: the body as one layer
    api.docker("export", "-o", str(tmp_path / "hot.tar"), "hot")
    imported = api.docker("import", "-c", "ENV FROM=import", "-m", "imported", "-", "imported:1",
                          input=(tmp_path / "hot.tar").read_bytes())
    assert imported.stdout.startswith(b"sha256:")
    assert api.docker("run", "--rm", "imported:1", "sh", "-c", "cat /made; echo $FROM").stdout == \
        b"made-in-hot\nimport\n"
    api.docker("rm", "-f", "hot", "peer")
    api.docker("rmi", "committed:1", "imported:1")
    api.docker("network", "rm", "hotnet")


def test_docker_build_of_a_remote_context(api, tmp_path):
    """docker build URL: the service fetches the context (a tarball on a server on 127.0.0.1)."""
    from tests.support.webserver import serve, tarball

    served = tmp_path / "www"
    served.mkdir()
    (served / "context.tar.gz").write_bytes(tarball({"Dockerfile": b"FROM busybox\nCOPY note.txt /note.txt\n",
                                                     "note.txt": b"remote\n"}))
    with serve(served) as url:
        api.docker("build", "-t", "remote-ctx", f"{url}/context.tar.gz")
        assert api.docker("run", "--rm", "remote-ctx", "cat", "/note.txt").stdout == b"remote\n"
        missing = api.docker("build", f"{url}/none.tar.gz", check=False)
        assert missing.returncode != 0 and b"404" in missing.stderr + missing.stdout
    api.docker("rmi", "remote-ctx")
