"""Output, ketch against podman 4.3: the same commands over the same containers, images,
volumes, networks and secrets; --format templates with podman's field names, JSON key sets,
tables, and the effect of each command. Only what must differ is normalised: ids, times, and
each tool's store path."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile

import pytest

from tests.parity.conftest import normalise

pytestmark = pytest.mark.peer


AGO = re.compile(r"(Up|Exited \(\d+\)) (Less than a second|About a minute|\d+ \w+) ago")


def _same(pair, *args, paths: bool = False, sort: bool = False, networks: bool = False) -> str:
    """Run under both; the outputs (ids normalised, and times: "Up 2 seconds ago"; with
    ``paths``, the store path as B; with ``networks``, each default network's name) must be
    equal, and are returned."""
    ours, theirs = pair.both(*args)
    assert (ours.returncode, theirs.returncode) == (0, 0), (args, ours.stderr, theirs.stderr)
    names = {str(pair.base / "k"): "B", str(pair.base / "p"): "B"} if paths else {}
    a = AGO.sub(r"\1 T ago", normalise(ours.stdout, names))
    b = AGO.sub(r"\1 T ago", normalise(theirs.stdout, names))
    if networks:  # each tool's default network has its own name (docs/cli.md: ketch's bridge beside podman's)
        a, b = re.sub(r"\bketch\b", "NET", a), re.sub(r"\bpodman\b", "NET", b)
    if sort:
        a, b = "\n".join(sorted(a.splitlines())), "\n".join(sorted(b.splitlines()))
    assert a == b, f"{' '.join(args)}\nketch:\n{a}\npodman:\n{b}"
    return a


def _json_keys(pair, *args) -> None:
    ours, theirs = pair.both(*args)
    assert (ours.returncode, theirs.returncode) == (0, 0), (ours.stderr, theirs.stderr)
    a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
    first_a, first_b = (a[0], b[0]) if isinstance(a, list) else (a, b)
    assert set(first_b) <= set(first_a), f"{args}: missing {set(first_b) - set(first_a)}"


def _both(pair, *args: str) -> None:
    pair.ketch(*args, check=True)
    pair.peer(*args, check=True)


def test_ps_templates_order_and_filters(pair):
    _both(pair, "create", "--name", "c1", "-l", "app=one", "busybox", "true")
    _both(pair, "run", "-d", "--name", "c2", "busybox", "sleep", "100")
    for run in (pair.ketch, pair.peer):
        assert run("run", "--name", "c3", "busybox", "sh", "-c", "exit 3").returncode == 3
    _same(pair, "ps", "-a", "--format", "{{.Names}}|{{.Image}}|{{.Command}}|{{.Labels}}|{{.Networks}}|{{.IsInfra}}"
                                       "|{{.Pod}}|{{.Ports}}|{{.Mounts}}|{{.AutoRemove}}", networks=True)
    _same(pair, "ps", "-a", "--format", "{{.Names}} {{.State}}")  # podman's .State: "Up ...", "Exited (3) ..."
    _same(pair, "ps", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "--last", "2", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "-l", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "--sort", "names", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "--filter", "status=exited", "--format", "{{.Names}} {{.Status}}")
    _same(pair, "ps", "-a", "--filter", "label=app=one", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "--filter", "name=c", "--filter", "status=created", "--format", "{{.Names}}")
    _same(pair, "ps", "-a", "--noheading", "--format", "table {{.Names}}\t{{.Image}}")
    _same(pair, "ps", "-a", "--format", "table {{.Names}} {{.Image}}")
    _same(pair, "ps", "-a", "-q")
    _same(pair, "ps", "-a", "-q", "--no-trunc")
    _same(pair, "ps", "-a", "--format", "{{.ID}} {{len .Names}} {{upper .Names}} {{printf \"%-4s|\" .Names}}")
    _same(pair, "ps", "-a", "--format", "{{if eq .State \"Created\"}}new {{.Names}}{{else}}old{{end}}")
    _json_keys(pair, "ps", "-a", "--format", "json")
    header_a, header_b = pair.ketch("ps", "-a").stdout.splitlines()[0], pair.peer("ps", "-a").stdout.splitlines()[0]
    assert header_a.split() == header_b.split()


def test_inspect_fields_and_keys(pair):
    for run in (pair.ketch, pair.peer):
        run("run", "-d", "--name", "c2", "-e", "FOO=bar", "-l", "app=x", "-w", "/tmp", "--hostname", "hh",
            "--restart", "on-failure:2", "busybox", "sleep", "100", check=True)
        assert run("run", "--name", "c3", "busybox", "sh", "-c", "exit 3").returncode == 3
    fields = ("{{.Name}}|{{.State.Status}}|{{.State.Running}}|{{.State.ExitCode}}|{{.Config.Cmd}}|"
              "{{.Config.Labels}}|{{.Config.WorkingDir}}|{{.ImageName}}|{{.Config.Image}}|"
              "{{.HostConfig.RestartPolicy.Name}}|{{.HostConfig.RestartPolicy.MaximumRetryCount}}|"
              "{{.RestartCount}}|{{.Path}}|{{.Args}}|{{.State.OOMKilled}}|{{.HostConfig.NetworkMode}}|"
              "{{.HostConfig.AutoRemove}}|{{.Config.StopSignal}}|{{.Config.Tty}}|{{.Config.OpenStdin}}|"
              "{{.HostConfig.Privileged}}|{{.HostConfig.PidMode}}|{{.Config.Entrypoint}}|{{.State.Health.Status}}|"
              "{{.IsService}}|{{.ImageDigest}}|{{json .Config.Labels}}|{{.Image}}")
    _same(pair, "inspect", "--format", fields, "c2", "c3")
    _same(pair, "inspect", "--format", "{{.Config.Hostname}}", "c2")
    _same(pair, "container", "inspect", "--format", "{{.State.Status}}", "c3")
    for kind, name in (("image", "busybox"), ("container", "c2")):
        ours = json.loads(pair.ketch("inspect", "--type", kind, name, check=True).stdout)[0]
        theirs = json.loads(pair.peer("inspect", "--type", kind, name, check=True).stdout)[0]
        assert set(theirs) <= set(ours), set(theirs) - set(ours)
        for part in ("State", "Config", "HostConfig") if kind == "container" else ("Config",):
            assert set(theirs[part]) <= set(ours[part]), (part, set(theirs[part]) - set(ours[part]))
    _same(pair, "image", "inspect", "--format", "{{.Id}}|{{.Digest}}|{{.RepoTags}}|{{.RepoDigests}}|{{.Os}}|"
          "{{.Architecture}}|{{.Size}}|{{.VirtualSize}}|{{.Labels}}|{{.Config.Cmd}}|{{.Config.Env}}|"
          "{{.RootFS.Layers}}|{{.User}}|{{.ManifestType}}", "busybox")


def test_images_tag_untag_rmi(pair):
    _same(pair, "images")
    _same(pair, "images", "--format", "{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}|{{.Digest}}|{{.Containers}}|"
                                     "{{.ReadOnly}}|{{.Dangling}}|{{.Labels}}|{{.Names}}")
    _same(pair, "images", "--noheading")
    _same(pair, "images", "-q")
    assert pair.ketch("images", "-q", "--no-trunc").stdout == pair.peer("images", "-q", "--no-trunc").stdout
    _same(pair, "images", "--format", "table {{.Repository}} {{.Tag}} {{.ID}}")
    _json_keys(pair, "images", "--format", "json")
    _same(pair, "tag", "busybox", "localhost/a:1", "localhost/b:2")
    _same(pair, "images", "--format", "{{.Repository}}:{{.Tag}}", "--sort", "repository")
    _same(pair, "images", "--filter", "reference=localhost/*", "--format", "{{.Repository}}:{{.Tag}}")
    _same(pair, "untag", "busybox", "localhost/b:2")
    _same(pair, "rmi", "localhost/a:1")
    _same(pair, "images", "--format", "{{.Repository}}:{{.Tag}}")
    _same(pair, "history", "busybox")
    _same(pair, "history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", "busybox")
    _same(pair, "history", "--format", "json", "busybox")


def test_save_and_load_report_as_podman(pair, tmp_path):
    for fmt in ("docker-archive", "oci-archive"):
        ours, theirs = (run("save", "--format", fmt, "-o", str(tmp_path / f"{fmt}.{side}.tar"), "busybox")
                        for side, run in (("k", pair.ketch), ("p", pair.peer)))
        assert (ours.returncode, theirs.returncode) == (0, 0)
        # the same lines; a blob's digest is the source's, which is the uncompressed layer in
        # podman's store and the compressed blob pulled in ketch's
        digests = re.compile("sha256:[0-9a-f]{64}")
        assert digests.sub("D", ours.stderr) == digests.sub("D", theirs.stderr)
        assert "Copying blob sha256:" in ours.stderr and "Copying config sha256:" in ours.stderr
    # loaded back: the same image (podman's oci-archive would come back as another image: its
    # save rewrites the layers, so only the docker archive is loaded here)
    ours, theirs = (run("load", "-i", str(tmp_path / f"docker-archive.{side}.tar"))
                    for side, run in (("k", pair.ketch), ("p", pair.peer)))
    assert ours.stdout == theirs.stdout == "Loaded image: docker.io/library/busybox:latest\n"
    assert digests.sub("D", ours.stderr) == digests.sub("D", theirs.stderr)
    assert "Getting image source signatures" in ours.stderr
    _same(pair, "images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")


def test_volumes(pair):
    _same(pair, "volume", "create", "vv")
    _same(pair, "volume", "create", "--label", "a=b", "--opt", "o=bind", "--opt", "type=none", "--opt",
          "device=/tmp", "vb")
    _same(pair, "volume", "ls")
    _same(pair, "volume", "ls", "-q")
    _same(pair, "volume", "ls", "--noheading")
    _same(pair, "volume", "ls", "--format", "{{.Name}}|{{.Driver}}|{{.Scope}}|{{.Labels}}|{{.Mountpoint}}",
          paths=True)
    _same(pair, "volume", "ls", "-q", "--filter", "label=a=b")
    _same(pair, "volume", "inspect", "--format", "{{.Name}}|{{.Driver}}|{{.Scope}}|{{.Labels}}|{{.Options}}|"
                                                 "{{.MountCount}}|{{.NeedsCopyUp}}|{{.NeedsChown}}", "vb", "vv")
    _json_keys(pair, "volume", "inspect", "vv")
    _json_keys(pair, "volume", "ls", "--format", "json")
    _same(pair, "volume", "exists", "vv")
    _same(pair, "run", "--rm", "-v", "vv:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    _same(pair, "run", "--rm", "-v", "vv:/data:ro", "busybox", "cat", "/data/f")
    _same(pair, "volume", "rm", "vv", "vb")


def test_networks(pair):
    _same(pair, "network", "create", "--label", "x=y", "parity1")
    _same(pair, "network", "ls", "--filter", "name=parity", "--format",
          "{{.Name}}|{{.Driver}}|{{.Labels}}|{{.IPv6Enabled}}|{{.DNSEnabled}}|{{.Internal}}")
    _same(pair, "network", "ls", "-q", "--filter", "name=parity1")
    _same(pair, "network", "inspect", "--format", "{{.Name}}|{{.Driver}}|{{.IPv6Enabled}}|{{.Internal}}|"
                                                  "{{.DNSEnabled}}|{{.IPAMOptions}}|{{len .Subnets}}|{{.Labels}}|"
                                                  "{{.Options}}", "parity1")
    _json_keys(pair, "network", "inspect", "parity1")
    _same(pair, "network", "exists", "parity1")
    _same(pair, "network", "rm", "parity1")


def test_secrets(pair, tmp_path):
    (tmp_path / "data").write_text("s3cr3t")
    ours, theirs = pair.both("secret", "create", "s1", str(tmp_path / "data"))
    assert len(ours.stdout.strip()) == len(theirs.stdout.strip())  # an id of podman's length
    _same(pair, "secret", "ls", "--format", "{{.Name}}|{{.Driver}}")
    _same(pair, "secret", "inspect", "--format", "{{.Spec.Name}}|{{.Spec.Driver.Name}}|{{.Spec.Driver.Options}}|"
                                                 "{{.Spec.Labels}}", "s1", paths=True)
    _json_keys(pair, "secret", "inspect", "s1")
    _same(pair, "run", "--rm", "--secret", "s1", "busybox", "cat", "/run/secrets/s1")
    _same(pair, "run", "--rm", "--secret", "s1,target=/etc/x", "busybox", "cat", "/etc/x")
    _same(pair, "run", "--rm", "--secret", "s1,type=env,target=TOK", "busybox", "sh", "-c", "echo $TOK")
    ours, theirs = pair.both("secret", "rm", "s1")
    assert (ours.returncode, theirs.returncode) == (0, 0) and len(ours.stdout) == len(theirs.stdout)


def test_logs_diff_top_wait_cp(pair, tmp_path):
    script = "echo out; echo err >&2; mkdir /tmp/d; echo x > /tmp/d/f; rm /bin/vi; echo ready; sleep 100"
    for run in (pair.ketch, pair.peer):
        run("run", "-d", "--name", "w", "-w", "/tmp", "busybox", "sh", "-c", script, check=True)
    for run in (pair.ketch, pair.peer):
        _wait_for_log(run, "w", "ready")
    ours, theirs = pair.both("logs", "w")
    assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr) == ("out\nready\n", "err\n")
    # --tail over one stream only: which of two pipes a monitor reads first is the scheduler's
    for run in (pair.ketch, pair.peer):
        run("run", "--name", "t", "busybox", "sh", "-c", "echo one; echo two; echo three", check=True)
    _same(pair, "logs", "--tail", "2", "t")
    _same(pair, "diff", "w", sort=True)
    ours, theirs = pair.both("diff", "--format", "json", "w")
    a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
    assert list(a) == list(b) and {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}
    assert ours.stdout.splitlines()[1].startswith('     "changed"')  # podman's five-space indent
    _same(pair, "top", "w", "pid", "user", "args", "comm")
    assert pair.ketch("top", "w").stdout.split("\n")[0].split() == pair.peer("top", "w").stdout.split("\n")[0].split()
    _same(pair, "wait", "--condition", "running", "w")
    (tmp_path / "file").write_text("hello\n")
    _same(pair, "cp", str(tmp_path / "file"), "w:.")
    _same(pair, "exec", "w", "cat", "/tmp/file")
    names = []
    for run in (pair.ketch, pair.peer):
        stream = run("cp", "w:/tmp/d", "-").stdout.encode(errors="surrogateescape")
        names.append(sorted(tarfile.open(fileobj=io.BytesIO(stream)).getnames()))
    assert names[0] == names[1] == ["d", "d/f"]
    _same(pair, "exec", "-w", "/tmp", "-e", "A=b", "-u", "1000", "w", "sh", "-c", "pwd; echo $A; id -u")
    for args, status in ((["exec", "w", "sh", "-c", "exit 5"], 5), (["exec", "w", "/nonexist"], 127),
                         (["exec", "w", "/etc"], 126)):
        ours, theirs = pair.both(*args)
        assert ours.returncode == theirs.returncode == status
    _same(pair, "stop", "-t", "0", "w")
    _same(pair, "wait", "w")
    _same(pair, "start", "w")
    _same(pair, "restart", "-t", "0", "w")
    _same(pair, "pause", "w")
    _same(pair, "unpause", "w")
    _same(pair, "kill", "w")
    _same(pair, "wait", "w")
    _same(pair, "rm", "w")


def _wait_for_log(run, name: str, text: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while text not in run("logs", name).stdout:
        assert time.monotonic() < deadline, f"no {text!r} in {name}'s log"
        time.sleep(0.05)


def test_ports(pair):
    # each its own host port (both publish at once); the rest is the same
    pair.ketch("run", "-d", "--name", "p", "-p", "127.0.0.1:18181:80", "-p", "9090", "busybox", "sleep", "100",
               check=True)
    pair.peer("run", "-d", "--name", "p", "-p", "127.0.0.1:18182:80", "-p", "9090", "busybox", "sleep", "100",
              check=True)
    ours, theirs = pair.both("port", "p")
    strip = lambda text: sorted(re.sub(r":\d+$", ":PORT", line) for line in text.splitlines())  # noqa: E731
    assert strip(ours.stdout) == strip(theirs.stdout) == ["80/tcp -> 127.0.0.1:PORT", "9090/tcp -> 0.0.0.0:PORT"]
    assert pair.ketch("port", "p", "80").stdout == "127.0.0.1:18181\n"
    assert pair.peer("port", "p", "80").stdout == "127.0.0.1:18182\n"
    ours, theirs = pair.both("port", "-a")
    assert strip(normalise(ours.stdout)) == strip(normalise(theirs.stdout))


def test_events(pair):
    import time

    since = str(int(time.time()) - 1)
    for run in (pair.ketch, pair.peer):
        run("run", "--name", "ev", "busybox", "true", check=True)
        run("start", "ev", check=True)
        run("wait", "ev", check=True)
        run("create", "--name", "ev2", "busybox", "true", check=True)
        run("init", "ev2", check=True)
        run("start", "ev2", check=True)
        run("wait", "ev2", check=True)
        run("rm", "ev", "ev2", check=True)
    fmt = "{{.Type}} {{.Status}} {{.Name}} {{.Image}}"
    ours, theirs = (run("events", "--stream=false", "--since", since, "--filter", "container=ev", "--filter",
                        "container=ev2", "--format", fmt) for run in (pair.ketch, pair.peer))
    # (podman removes the two in parallel: their order is its scheduler's)
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines()), (ours.stdout, theirs.stdout)
    assert [line for line in ours.stdout.splitlines() if " ev " in line] == \
        [line for line in theirs.stdout.splitlines() if " ev " in line]
    _same(pair, "events", "--stream=false", "--since", since, "--filter", "event=remove", "--filter",
          "container=ev", "--format", "{{.Status}} {{.Name}} {{.Attributes}}")
    ours, theirs = (json.loads(run("events", "--stream=false", "--since", since, "--filter", "event=died",
                                   "--format", "json").stdout.splitlines()[0]) for run in (pair.ketch, pair.peer))
    assert set(ours) == set(theirs)


def test_version_info_df(pair):
    _same(pair, "version", "--format", "{{.Client.Os}} {{.Client.OsArch}}")
    _json_keys(pair, "version", "--format", "json")
    _same(pair, "info", "--format", "{{.Host.Arch}}|{{.Host.OS}}|{{.Host.Hostname}}|{{.Host.CgroupsVersion}}|"
                                    "{{.Host.CgroupManager}}|{{.Store.ContainerStore.Number}}|"
                                    "{{.Store.ImageStore.Number}}|{{.Host.CPUs}}|{{.Host.MemTotal}}|"
                                    "{{.Host.Security.SECCOMPEnabled}}|{{.Host.Security.Rootless}}|"
                                    "{{.Host.EventLogger}}|{{.Host.Distribution.Distribution}}|{{.Version.OsArch}}|"
                                    "{{.Store.GraphRoot}}|{{.Store.VolumePath}}", paths=True)
    ours = json.loads(pair.ketch("info", "--format", "json", check=True).stdout)
    theirs = json.loads(pair.peer("info", "--format", "json", check=True).stdout)
    for part in ("host", "store"):
        assert set(theirs[part]) <= set(ours[part]), set(theirs[part]) - set(ours[part])
    assert set(theirs) <= set(ours)
    _same(pair, "system", "df", "--format", "{{.Type}}|{{.Total}}|{{.Active}}")
    assert [line.split()[0] for line in pair.ketch("system", "df").stdout.splitlines()] == \
        [line.split()[0] for line in pair.peer("system", "df").stdout.splitlines()]


def test_mount_and_umount(pair):
    _both(pair, "create", "--name", "m", "busybox", "true")
    for run in (pair.ketch, pair.peer):
        path = run("mount", "m", check=True).stdout.strip()
        assert os.path.isfile(os.path.join(path, "bin", "busybox"))
        listing = run("mount", "--no-trunc", check=True).stdout.split()
        assert listing == [run("inspect", "--format", "{{.Id}}", "m", check=True).stdout.strip(), path]
    _same(pair, "umount", "m")


def test_ps_filters_as_podmans(pair):
    """podman's own ps tests (test/system/040-ps.bats): status filters look at every container,
    exited=N, several values of one key, before/since to the sub-second, id as prefix or pattern."""
    for run in (pair.ketch, pair.peer):
        run("run", "-d", "--name", "running", "busybox", "top", check=True)
        run("run", "--name", "stopped", "busybox", "true", check=True)
        assert run("run", "--name", "failed", "busybox", "false").returncode == 1
        run("create", "--name", "created", "busybox", "echo", "hi", check=True)
    for filters in (["--filter", "status=stopped", "--sort", "names"],
                    ["--filter", "status=exited", "--filter", "exited=0"],
                    ["--filter", "status=exited", "--filter", "exited=1"],
                    ["--filter", "status=created"],
                    ["-a", "--filter", "status=exited", "--filter", "status=running", "--sort", "created"],
                    ["-a", "--filter", "id=[0-9a-f]", "--sort", "names"],
                    ["-a", "--filter", "id=[^0-9a-f]"],
                    ["-a", "--filter", "before=failed"],
                    ["-a", "--filter", "since=stopped"],
                    ["-a", "--filter", "name=^s", "--filter", "name=d$", "--sort", "names"]):
        _same(pair, "ps", *filters, "--format", "{{.Names}}")
    for run in (pair.ketch, pair.peer):
        full = run("inspect", "--format", "{{.Id}}", "running", check=True).stdout.strip()
        for value in (full[:13], "^" + full[:12]):
            assert run("ps", "-a", "--filter", f"id={value}", "--format", "{{.Names}}").stdout == "running\n"


def test_every_format_takes_go_escapes(pair):
    """podman's test/system/610-format.bats: a Go string escape inside an action, {{"\\n"}}, is
    the template's, not a newline put there first."""
    for run in (pair.ketch, pair.peer):
        run("run", "-d", "--name", "c", "busybox", "top", check=True)
        run("volume", "create", "v", check=True)
    ours = pair.ketch("version", "--format", '{{"\\n"}}')  # (podman 4.3's own version fails at this)
    assert (ours.returncode, ours.stdout) == (0, "\n")
    for args in (["history", "busybox"], ["image", "history", "busybox"], ["image", "inspect", "busybox"],
                 ["container", "inspect", "c"], ["volume", "inspect", "-a"], ["ps", "-a"], ["images"],
                 ["stats", "--no-stream"], ["events", "--stream=false"], ["info"], ["system", "df"],
                 ["volume", "ls"], ["network", "ls"], ["secret", "ls"], ["inspect", "c"]):
        ours, theirs = pair.both(*args, "--format", '{{"\\n"}}')
        assert theirs.returncode == 0, (args, theirs.stderr)
        assert ours.returncode == 0, (args, ours.stderr)
        assert set(ours.stdout) <= {"\n"} and set(theirs.stdout) <= {"\n"}, args
        if args[0] != "events":  # (podman's events template runs once for all of them)
            assert ours.stdout.count("\n") == theirs.stdout.count("\n"), args
