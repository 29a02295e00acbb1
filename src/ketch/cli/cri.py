"""``ketch cri serve`` (the Kubernetes CRI server) and ``ketch cri pods|ps|images|inspect``
(crictl's questions, asked over the same socket)."""

from __future__ import annotations

import argparse
import json
import sys

from ketch.errors import InvalidInputError


def register(commands: argparse._SubParsersAction) -> None:
    cri = commands.add_parser("cri", help="the Kubernetes CRI server and a client of it",
                              description="Serve the Kubernetes Container Runtime Interface (CRI v1), or ask a "
                                          "running server what crictl would.")
    verbs = cri.add_subparsers(dest="cri_verb", metavar="COMMAND", required=True)
    serve = verbs.add_parser("serve", help="serve the CRI on a unix socket",
                             description="Serve the kubelet's RuntimeService and ImageService (CRI v1). Under "
                                         "systemd socket activation (LISTEN_FDS) the passed socket is served.")
    serve.add_argument("--config", metavar="PATH", help="the TOML config (default /etc/ketch/cri.toml if it exists)")
    serve.add_argument("--listen", metavar="URI", help="unix:///PATH (default unix:///run/ketch/cri.sock)")
    serve.add_argument("--cni-conf-dir", action="append", metavar="DIR", help="CNI network configs (repeatable)")
    serve.add_argument("--cni-bin-dir", action="append", metavar="DIR", help="CNI plugins (repeatable)")
    serve.add_argument("--log-dir", metavar="DIR", help="logs of containers whose pod names no log directory")
    serve.add_argument("--default-runtime-handler", metavar="NAME", help="ketch (default), runc, crun or one of "
                                                                         "the config's")
    serve.add_argument("--stream-address", metavar="ADDRESS",
                       help="where the streaming server (exec, attach, port-forward) listens (default 127.0.0.1)")
    serve.add_argument("--stream-port", type=int, metavar="PORT", help="its port (default 0: any free one)")
    serve.add_argument("--cgroup-driver", choices=["cgroupfs", "systemd"], help="how cgroup parents are read")
    serve.set_defaults(func=cmd_serve)
    for name, what in (("pods", "list pod sandboxes"), ("ps", "list containers"), ("images", "list images")):
        verb = verbs.add_parser(name, help=what, description=f"{what.capitalize()} of a running CRI server.")
        verb.add_argument("--endpoint", "-r", default=None, metavar="URI",
                          help="the server's socket (default unix:///run/ketch/cri.sock)")
        verb.add_argument("-o", "--output", choices=["table", "json"], default="table")
        verb.add_argument("-a", "--all", action="store_true", help="(ps) exited containers too")
        verb.set_defaults(func=cmd_list)
    inspect = verbs.add_parser("inspect", help="show a container, pod or image",
                               description="The verbose status of a container, pod sandbox or image (JSON).")
    inspect.add_argument("--endpoint", "-r", default=None, metavar="URI")
    inspect.add_argument("ids", nargs="+", metavar="ID")
    inspect.set_defaults(func=cmd_inspect)


def cmd_serve(args) -> int:
    import signal
    import threading

    from ketch.cri import config as settings
    from ketch.cri import serverlog
    from ketch.cri.server import serve

    overrides = dict(listen=args.listen, cni_conf_dirs=args.cni_conf_dir, cni_bin_dirs=args.cni_bin_dir,
                     log_directory=args.log_dir, default_handler=args.default_runtime_handler,
                     cgroup_driver=args.cgroup_driver, root=args.root, runroot=args.runroot,
                     stream_address=args.stream_address, stream_port=args.stream_port)
    config = settings.load(args.config, **overrides)
    serverlog.configure(config)
    stop = threading.Event()
    reload_requested = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())

    def ready() -> None:
        print(f"ketch cri: serving CRI v1 on {config.listen}", file=sys.stderr, flush=True)

    def reload():
        return settings.load(args.config, **overrides)

    serve(config, ready=ready, stop_event=stop, reload_event=reload_requested, reload=reload)
    return 0


def _client(args):
    from ketch.cri.client import Client

    return Client(args.endpoint)


def cmd_list(args) -> int:
    from ketch.cli import humanize

    client = _client(args)
    if args.cri_verb == "pods":
        items = client.pods()
        rows = [[p["id"][:13], _age(p.get("createdAt")), p["state"].replace("SANDBOX_", "").capitalize(),
                 p["metadata"]["name"], p["metadata"].get("namespace", ""), str(p["metadata"].get("attempt", 0)),
                 p.get("runtimeHandler") or "(default)"] for p in items]
        header = ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]
    elif args.cri_verb == "ps":
        items = [c for c in client.containers() if args.all or c["state"] == "CONTAINER_RUNNING"]
        rows = [[c["id"][:13], c["image"].get("image", "")[:20], _age(c.get("createdAt")),
                 c["state"].replace("CONTAINER_", "").capitalize(), c["metadata"]["name"],
                 str(c["metadata"].get("attempt", 0)), c["podSandboxId"][:13]] for c in items]
        header = ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"]
    else:
        items = client.images()
        rows = []
        for image in items:
            for tag in image.get("repoTags") or ["<none>:<none>"]:
                repo, _, version = tag.rpartition(":")
                rows.append([repo, version, image["id"][:13], humanize.human_size(int(image.get("size", 0)))])
        header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"]
    if args.output == "json":
        print(json.dumps(items, indent=2))
        return 0
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _age(created_ns) -> str:
    from ketch.cli import humanize

    if not created_ns:
        return ""
    return humanize.since(int(created_ns) / 1e9)


def cmd_inspect(args) -> int:
    client = _client(args)
    out = []
    for name in args.ids:
        found = client.inspect(name)
        if found is None:
            raise InvalidInputError(f"{name}: no container, pod sandbox or image of that id")
        out.append(found)
    print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 0
