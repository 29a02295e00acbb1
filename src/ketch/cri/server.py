"""The CRI v1 gRPC server: RuntimeService and ImageService on a unix socket (or the socket systemd
passes, ``LISTEN_FDS``), each request answered from the store (see :mod:`ketch.cri.sandboxes`).

Errors become the statuses the kubelet expects: NotFound for a missing pod, container or image,
InvalidArgument for bad input, AlreadyExists for a pod or container name in use; anything else
is Unknown with ketch's one-line message.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent import futures
from typing import Any

# The server forks children that run a little Python and exit (pinning namespaces, work inside
# a pod's network namespace): grpc's fork handlers are not wanted for them (they also log a line
# per fork while other threads are in gRPC). Read by grpc when it is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import ketch.cri.api_pb2 as api  # noqa: E402
import ketch.cri.api_pb2_grpc as rpc  # noqa: E402
from ketch.containers import systemd  # noqa: E402
from ketch.cri.config import CRIConfig  # noqa: E402
from ketch.cri.sandboxes import Sandboxes  # noqa: E402
from ketch.errors import DuplicateNameError, InUseError, InvalidInputError, KetchError, NotFoundError  # noqa: E402

log = logging.getLogger(__name__)

API_VERSION = "v1"
RUNTIME_NAME = "ketch"


def _to_dict(message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _grpc_errors(method):
    """Turn ketch's errors into gRPC statuses (one line each)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except NotFoundError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except DuplicateNameError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except InvalidInputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InUseError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except KetchError as exc:
            log.warning("request failed", extra={"fields": {"method": method.__name__, "error": str(exc)}})
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        except OSError as exc:  # a system call ketch did not expect to fail: logged whole
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.UNKNOWN, f"{method.__name__}: {exc}")

    return wrapper


CONTAINER_EVENTS = {"create": api.CONTAINER_CREATED_EVENT, "start": api.CONTAINER_STARTED_EVENT,
                    "died": api.CONTAINER_STOPPED_EVENT, "remove": api.CONTAINER_DELETED_EVENT}


def _ns(seconds: float | None) -> int:
    return int((seconds or 0) * 1e9)


class _PerThread:
    """An engine (and its store connection) per server thread: neither is shared across threads."""

    def __init__(self, config: CRIConfig) -> None:
        self.config = config
        self.local = threading.local()
        self.generation = 0  # raised by a reload: each thread makes its Sandboxes anew
        # removed containers are removed, and their files deleted, after RemoveContainer answers
        # (Sandboxes.remove_container, Store.remove_trees_in_background): one thread, in order
        self.tree_remover = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cri-remove")

    def remove_later(self, container_id: str) -> None:
        """Finish the removal in the background: once the request's answer has gone when the
        request collects them (see RuntimeService.RemoveContainer), at once otherwise."""
        pending = getattr(self.local, "pending_removals", None)
        if pending is not None:
            pending.append(container_id)
        else:
            self.submit_removals([container_id])

    def submit_removals(self, container_ids: list[str]) -> None:
        for container_id in container_ids:
            try:
                self.tree_remover.submit(self._finish_removal, container_id)
            except RuntimeError:
                return  # (the server is stopping: the next start finishes what is marked removed)

    def _finish_removal(self, container_id: str) -> None:
        try:
            self.sandboxes.finish_removal(container_id)  # (this thread's engine: its own connection)
        except KetchError as exc:
            log.warning("finishing the removal of container %s: %s", container_id, exc)

    def release(self) -> None:
        """This thread is done (a streaming session's): its engine and store connection go now,
        not when the garbage collector finds them."""
        found = getattr(self.local, "sandboxes", None)
        if found is not None:
            self.local.sandboxes = None
            found.store.db.close()

    @property
    def sandboxes(self) -> Sandboxes:
        found = getattr(self.local, "sandboxes", None)
        if found is None or getattr(self.local, "generation", 0) != self.generation:
            from ketch.containers.engine import Engine

            engine = Engine(root=self.config.root, runroot=self.config.runroot)
            engine.store.remove_trees_in_background(self.tree_remover)
            found = self.local.sandboxes = Sandboxes(self.config, engine, remove_later=self.remove_later)
            self.local.generation = self.generation
        return found


class RuntimeService(rpc.RuntimeServiceServicer):
    def __init__(self, config: CRIConfig, shared: _PerThread, streaming=None) -> None:
        self.config = config
        self.shared = shared
        self.streaming = streaming  # ketch.cri.streaming.StreamingServer

    @property
    def sb(self) -> Sandboxes:
        return self.shared.sandboxes

    @_grpc_errors
    def Version(self, request, context):
        from ketch import __version__

        return api.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=__version__,
                                   runtime_api_version=API_VERSION)

    @_grpc_errors
    def Status(self, request, context):
        network_ready, why = self.sb.network.status()
        conditions = [api.RuntimeCondition(type="RuntimeReady", status=True),
                      api.RuntimeCondition(type="NetworkReady", status=network_ready,
                                           reason="" if network_ready else "NetworkPluginNotReady", message=why)]
        info = {}
        if request.verbose:
            info["config"] = json.dumps(self.config.to_dict() if hasattr(self.config, "to_dict") else {},
                                        default=str)
        handlers = [api.RuntimeHandler(name=name if name != self.config.default_handler else "",
                                       features=api.RuntimeHandlerFeatures(recursive_read_only_mounts=False))
                    for name in sorted(self.config.handlers)]
        return api.StatusResponse(status=api.RuntimeStatus(conditions=conditions), info=info,
                                  runtime_handlers=handlers)

    @_grpc_errors
    def UpdateRuntimeConfig(self, request, context):
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            log.info("the kubelet's pod CIDR is %s (the CNI configuration decides the pods' addresses)", cidr)
        return api.UpdateRuntimeConfigResponse()

    @_grpc_errors
    def RuntimeConfig(self, request, context):
        driver = api.SYSTEMD if self.config.cgroup_driver == "systemd" else api.CGROUPFS
        return api.RuntimeConfigResponse(linux=api.LinuxRuntimeConfiguration(cgroup_driver=driver))

    # -- pods ------------------------------------------------------------------------------

    @_grpc_errors
    def RunPodSandbox(self, request, context):
        if not request.HasField("config"):
            raise InvalidInputError("RunPodSandbox needs a config")
        pod_id = self.sb.run_pod(_to_dict(request.config), request.runtime_handler)
        return api.RunPodSandboxResponse(pod_sandbox_id=pod_id)

    @_grpc_errors
    def StopPodSandbox(self, request, context):
        if not request.pod_sandbox_id:
            raise InvalidInputError("the pod sandbox id is empty")
        self.sb.stop_pod(request.pod_sandbox_id)
        return api.StopPodSandboxResponse()

    @_grpc_errors
    def RemovePodSandbox(self, request, context):
        if not request.pod_sandbox_id:
            raise InvalidInputError("the pod sandbox id is empty")
        self.sb.remove_pod(request.pod_sandbox_id)
        return api.RemovePodSandboxResponse()

    def _pod_status(self, record) -> api.PodSandboxStatus:
        config = record.data["cri"]
        message = api.PodSandboxStatus()
        json_format.ParseDict({"metadata": config.get("metadata") or {}, "labels": config.get("labels") or {},
                               "annotations": config.get("annotations") or {}}, message, ignore_unknown_fields=True)
        message.id = record.id
        message.state = api.SANDBOX_READY if record.state == "ready" and record.intact() else api.SANDBOX_NOTREADY
        message.created_at = _ns(record.created)
        ips = self.sb.pod_ips(record)
        if ips:
            message.network.ip = ips[0]
            message.network.additional_ips.extend(api.PodIP(ip=ip) for ip in ips[1:])
        namespaces = ((config.get("linux") or {}).get("securityContext") or {}).get("namespaceOptions") or {}
        json_format.ParseDict({"namespaces": {"options": namespaces}}, message.linux)
        handler = record.data.get("handler", "")
        message.runtime_handler = "" if handler == self.config.default_handler else handler
        return message

    @_grpc_errors
    def PodSandboxStatus(self, request, context):
        record = self.sb.sandbox(request.pod_sandbox_id)
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"id": record.id, "name": record.name, "state": record.state,
                                       "networkCheck": self.sb.check_network(record),
                                       "namespaces": record.data.get("namespaces"),
                                       "pidHolder": record.data.get("pid_holder"),
                                       "network": (record.data.get("network") or {}).get("result"),
                                       "runtimeHandler": record.data.get("handler"),
                                       "config": record.data["cri"]})
        return api.PodSandboxStatusResponse(status=self._pod_status(record), info=info, timestamp=time.time_ns())

    @_grpc_errors
    def ListPodSandbox(self, request, context):
        wanted = request.filter
        items = []
        for record in self._pods(wanted):
            config = record.data["cri"]
            state = api.SANDBOX_READY if record.state == "ready" and record.intact() else api.SANDBOX_NOTREADY
            if wanted.HasField("state") and state != wanted.state.state:
                continue
            metadata = config.get("metadata") or {}
            handler = record.data.get("handler", "")
            items.append(api.PodSandbox(
                id=record.id, state=state, created_at=_ns(record.created),
                metadata=api.PodSandboxMetadata(name=metadata.get("name", ""), uid=metadata.get("uid", ""),
                                                namespace=metadata.get("namespace", ""),
                                                attempt=int(metadata.get("attempt", 0))),
                labels=config.get("labels") or {}, annotations=config.get("annotations") or {},
                runtime_handler="" if handler == self.config.default_handler else handler))
        return api.ListPodSandboxResponse(items=items)

    # -- containers ------------------------------------------------------------------------

    @_grpc_errors
    def CreateContainer(self, request, context):
        if not request.HasField("config"):
            raise InvalidInputError("CreateContainer needs a config")
        config = _to_dict(request.config)
        image_name = request.config.image.image
        if not image_name:
            raise InvalidInputError("the container's image is empty")
        image = ImageService.find(self.sb.store, image_name)
        container_id = self.sb.create_container(request.pod_sandbox_id, config, _to_dict(request.sandbox_config),
                                                {"id": image.id, "ref": _image_ref(image)})
        return api.CreateContainerResponse(container_id=container_id)

    @_grpc_errors
    def StartContainer(self, request, context):
        self.sb.start_container(request.container_id)
        return api.StartContainerResponse()

    @_grpc_errors
    def StopContainer(self, request, context):
        self.sb.stop_container(request.container_id, request.timeout)
        return api.StopContainerResponse()

    @_grpc_errors
    def RemoveContainer(self, request, context):
        # the removal is finished after the answer has been sent: started before, it would hold
        # this process's interpreter while the answer waits to go out
        self.shared.local.pending_removals = []
        try:
            self.sb.remove_container(request.container_id)
        finally:
            pending, self.shared.local.pending_removals = self.shared.local.pending_removals, None
        if pending and not (context is not None and
                            context.add_callback(lambda: self.shared.submit_removals(pending))):
            self.shared.submit_removals(pending)
        return api.RemoveContainerResponse()

    def _container_status(self, record) -> api.ContainerStatus:
        cri = record.meta["cri"]
        state, current = self.sb.container_state(record)
        message = api.ContainerStatus()
        json_format.ParseDict({"metadata": cri["metadata"], "labels": cri["labels"], "annotations": cri["annotations"],
                               "image": cri["image"], "mounts": cri["mounts"]}, message, ignore_unknown_fields=True)
        message.id = record.id
        message.state = api.ContainerState.Value(state)
        message.created_at = _ns(record.created)
        message.started_at = _ns(current.get("started_at"))
        message.image_ref = cri["image_ref"]
        message.image_id = record.image
        message.log_path = cri["log_path"]
        if state == "CONTAINER_EXITED":
            status = int(current.get("exit_code") or 0)
            reason = "OOMKilled" if current.get("oom_killed") else "Completed" if status == 0 else "Error"
            message.MergeFrom(api.ContainerStatus(finished_at=_ns(current.get("finished_at")) or time.time_ns(),
                                                  exit_code=status, reason=reason,
                                                  message=str(current.get("error") or "")))
        json_format.ParseDict({"linux": cri.get("resources") or {}}, message.resources, ignore_unknown_fields=True)
        return message

    @_grpc_errors
    def ContainerStatus(self, request, context):
        record = self.sb.container(request.container_id)
        info = {}
        if request.verbose:
            state, current = self.sb.container_state(record)
            info["info"] = json.dumps({"pid": current.get("pid") or 0, "sandboxID": record.meta["cri"]["pod"],
                                       "name": record.name, "runtimeHandler": record.options.runtime or "ketch",
                                       "state": current, "options": record.options.to_dict()}, default=str)
        return api.ContainerStatusResponse(status=self._container_status(record), info=info)

    def _containers(self, wanted) -> list:
        """The kubelet's containers that a ContainerFilter or ContainerStatsFilter selects (the
        id or pod id as a prefix, every label given)."""
        out = []
        for record in self.sb.engine.records():
            cri = record.meta.get("cri")
            if cri is None or cri.get("removing") or (wanted.id and not record.id.startswith(wanted.id)):
                continue
            if wanted.pod_sandbox_id and not cri["pod"].startswith(wanted.pod_sandbox_id):
                continue
            if all((cri["labels"] or {}).get(k) == v for k, v in wanted.label_selector.items()):
                out.append(record)
        return out

    def _pods(self, wanted) -> list:
        """The kubelet's pods that a PodSandboxFilter or PodSandboxStatsFilter selects."""
        out = []
        for record in self.sb.pods.list():
            if "cri" not in record.data or (wanted.id and not record.id.startswith(wanted.id)):
                continue  # (a pod of ``ketch pod`` is not the kubelet's; one being made is listed)
            labels = record.data["cri"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.label_selector.items()):
                out.append(record)
        return out

    @_grpc_errors
    def ListContainers(self, request, context):
        wanted = request.filter
        out = []
        for record in self._containers(wanted):
            # (built field by field: the kubelet lists every second, and json_format is slow)
            cri = record.meta["cri"]
            state = api.ContainerState.Value(self.sb.container_state(record)[0])
            if wanted.HasField("state") and state != wanted.state.state:
                continue
            metadata = cri["metadata"]
            out.append(api.Container(
                id=record.id, pod_sandbox_id=cri["pod"], state=state, created_at=_ns(record.created),
                metadata=api.ContainerMetadata(name=metadata.get("name", ""), attempt=int(metadata.get("attempt", 0))),
                image=api.ImageSpec(image=(cri["image"] or {}).get("image", "")), image_ref=cri["image_ref"],
                labels=cri["labels"] or {}, annotations=cri["annotations"] or {}, image_id=record.image))
        return api.ListContainersResponse(containers=out)

    @_grpc_errors
    def UpdateContainerResources(self, request, context):
        from ketch.cri import resources

        record = self.sb.container(request.container_id)
        resources.update(self.sb, record, _to_dict(request.linux))
        return api.UpdateContainerResourcesResponse()

    @_grpc_errors
    def ReopenContainerLog(self, request, context):
        record = self.sb.container(request.container_id)
        state, _ = self.sb.container_state(record)
        if state != "CONTAINER_RUNNING":
            raise InvalidInputError(f"container {record.id} is not running: its log cannot be reopened")
        from ketch.cri import resources

        resources.reopen_log(self.sb, record)
        return api.ReopenContainerLogResponse()

    @_grpc_errors
    def ExecSync(self, request, context):
        from ketch.cri import execsync

        record = self.sb.container(request.container_id)
        if not request.cmd:
            raise InvalidInputError("ExecSync needs a command")
        state, _ = self.sb.container_state(record)
        if state != "CONTAINER_RUNNING":
            raise InvalidInputError(f"container {record.id} is not running: cannot exec in it")
        outcome = execsync.run(self.config, self.sb.engine, record, list(request.cmd), request.timeout)
        if outcome.timed_out:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"command {' '.join(request.cmd)!r} timed out after {request.timeout}s")
        return api.ExecSyncResponse(stdout=outcome.stdout, stderr=outcome.stderr, exit_code=outcome.exit_code)

    def _running(self, container_id: str):
        record = self.sb.container(container_id)
        state, _ = self.sb.container_state(record)
        if state != "CONTAINER_RUNNING":
            raise InvalidInputError(f"container {record.id} is in {state} state: it must be running")
        return record

    @_grpc_errors
    def Exec(self, request, context):
        from ketch.cri.streaming import StreamRequest

        record = self._running(request.container_id)
        if not request.cmd:
            raise InvalidInputError("Exec needs a command")
        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidInputError("one of stdin, stdout, or stderr must be set")
        if request.tty and request.stderr and not request.stdout:
            raise InvalidInputError("tty with stderr needs stdout (a terminal merges them)")
        url = self.streaming.url(StreamRequest("exec", record.id, cmd=list(request.cmd), tty=request.tty,
                                               stdin=request.stdin, stdout=request.stdout,
                                               stderr=request.stderr and not request.tty))
        return api.ExecResponse(url=url)

    @_grpc_errors
    def Attach(self, request, context):
        from ketch.cri.streaming import StreamRequest

        record = self._running(request.container_id)
        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidInputError("one of stdin, stdout, or stderr must be set")
        url = self.streaming.url(StreamRequest("attach", record.id, tty=request.tty or record.options.tty,
                                               stdin=request.stdin, stdout=request.stdout,
                                               stderr=request.stderr and not (request.tty or record.options.tty)))
        return api.AttachResponse(url=url)

    @_grpc_errors
    def PortForward(self, request, context):
        from ketch.cri.streaming import StreamRequest

        pod = self.sb.sandbox(request.pod_sandbox_id)
        if pod.state != "ready" or not pod.intact():
            raise InvalidInputError(f"pod sandbox {pod.id} is not ready: cannot forward a port into it")
        return api.PortForwardResponse(url=self.streaming.url(StreamRequest("portforward", pod_id=pod.id)))

    # -- events (the evented PLEG) ---------------------------------------------------------

    def GetContainerEvents(self, request, context):
        """Created, started, stopped and deleted, for every container of the kubelet's, as the
        store's event log records them (the monitor writes a container's exit there, with or
        without a server running): a stream sends what is recorded after it opens, each event
        of a container once."""
        from ketch.storage.events import EventLog

        sb = self.sb
        events = EventLog(sb.store.root)
        start = events.position()
        context.send_initial_metadata(())  # the client may know the stream is open: events count from here
        known = {r.id: r.meta["cri"]["pod"] for r in sb.engine.records() if "cri" in r.meta}
        sent: set[tuple[str, int]] = set()
        for event in events.follow(interval=0.05, position=start):
            if not context.is_active():
                return
            if event is None or event.get("Type") != "container" or event.get("Status") not in CONTAINER_EVENTS:
                continue
            kind = CONTAINER_EVENTS[event["Status"]]
            container_id = event.get("ID", "")
            if (container_id, kind) in sent:
                continue
            kinds = [kind]
            if kind == api.CONTAINER_DELETED_EVENT and (container_id, api.CONTAINER_STARTED_EVENT) in sent and \
                    (container_id, api.CONTAINER_STOPPED_EVENT) not in sent:
                # the monitor logs an exit after recording it, so a removal can be logged first:
                # the kubelet is told of the stop before the deletion
                kinds = [api.CONTAINER_STOPPED_EVENT, kind]
            if container_id not in known:
                try:
                    record = sb.engine.record(container_id)
                except KetchError:
                    continue
                if "cri" not in record.meta:
                    continue
                known[container_id] = record.meta["cri"]["pod"]
            for kind in kinds:
                sent.add((container_id, kind))
                answer = api.ContainerEventResponse(container_id=container_id, container_event_type=kind,
                                                    created_at=int(event.get("Time") or time.time_ns()))
                try:
                    pod = sb.sandbox(known[container_id])
                    answer.pod_sandbox_status.CopyFrom(self._pod_status(pod))
                    answer.containers_statuses.extend(self._container_status(r) for r in sb.containers_of(pod.id))
                except KetchError:
                    pass  # (the pod is gone already: the event still goes)
                yield answer

    # -- statistics ------------------------------------------------------------------------

    @_grpc_errors
    def ContainerStats(self, request, context):
        from ketch.cri import resources

        record = self.sb.container(request.container_id)
        return api.ContainerStatsResponse(stats=resources.container_stats(self.sb, record))

    @_grpc_errors
    def ListContainerStats(self, request, context):
        from ketch.cri import resources

        stats = [resources.container_stats(self.sb, record) for record in self._containers(request.filter)
                 if self.sb.container_state(record)[0] == "CONTAINER_RUNNING"]
        return api.ListContainerStatsResponse(stats=stats)

    @_grpc_errors
    def PodSandboxStats(self, request, context):
        from ketch.cri import resources

        record = self.sb.sandbox(request.pod_sandbox_id)
        return api.PodSandboxStatsResponse(stats=resources.pod_stats(self.sb, record))

    @_grpc_errors
    def ListPodSandboxStats(self, request, context):
        from ketch.cri import resources

        return api.ListPodSandboxStatsResponse(stats=[resources.pod_stats(self.sb, record)
                                                      for record in self._pods(request.filter)])


def _image_ref(image) -> str:
    return image.id


def _repo_digests(image) -> list[str]:
    repos = sorted({n.rsplit(":", 1)[0] if ":" in n.rsplit("/", 1)[-1] else n for n in image.names})
    return [f"{repo}@{image.digest}" for repo in repos] if image.digest else []


class ImageService(rpc.ImageServiceServicer):
    def __init__(self, config: CRIConfig, shared: _PerThread) -> None:
        self.config = config
        self.shared = shared

    @property
    def store(self):
        return self.shared.sandboxes.store

    @staticmethod
    def find(store, name: str):
        """The store's image of a reference, digest reference or id."""
        if not name:
            raise InvalidInputError("the image is empty")
        try:
            return store.lookup(name.removeprefix("sha256:") if name.startswith("sha256:") else name)
        except NotFoundError:
            if "@" in name:  # repo@digest: the image of that manifest digest
                digest = name.split("@", 1)[1]
                for image in store.images():
                    if image.digest == digest:
                        return image
            raise

    def _image(self, image) -> api.Image:
        message = api.Image(id=image.id, repo_tags=[n for n in image.names if "@" not in n],
                            repo_digests=_repo_digests(image), size=max(int(image.size or 0), 1))
        message.spec.image = image.id
        user = (image.parsed_config.container_config.get("User") or "").split(":", 1)[0]
        if user.isdigit():
            message.uid.value = int(user)
        elif user:
            message.username = user
        return message

    @_grpc_errors
    def ListImages(self, request, context):
        wanted = request.filter.image.image
        images = self.store.images()
        if wanted:
            try:
                found = self.find(self.store, wanted)
            except NotFoundError:
                return api.ListImagesResponse()
            images = [i for i in images if i.id == found.id]
        return api.ListImagesResponse(images=[self._image(i) for i in images])

    @_grpc_errors
    def ImageStatus(self, request, context):
        try:
            image = self.find(self.store, request.image.image)
        except NotFoundError:
            return api.ImageStatusResponse()  # (absent: no image, and no error, as the API asks)
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"id": image.id, "names": image.names, "digest": image.digest,
                                       "imageSpec": json.loads(image.config)})
        return api.ImageStatusResponse(image=self._image(image), info=info)

    @_grpc_errors
    def PullImage(self, request, context):
        from ketch.containers.images import pull
        from ketch.image.context import SystemContext

        name = request.image.image
        if not name:
            raise InvalidInputError("the image to pull is empty")
        ctx = SystemContext()
        auth = request.auth
        scratch = None
        if auth.username or auth.password:
            ctx.username, ctx.password = auth.username, auth.password
        elif auth.auth:
            try:
                ctx.username, _, ctx.password = base64.b64decode(auth.auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidInputError("the pull's auth is not base64 of user:password") from exc
        if auth.registry_token:
            ctx.registry_token = auth.registry_token
        if auth.identity_token:
            from ketch.oci.reference import parse_reference

            registry = auth.server_address or parse_reference(name).domain
            scratch = tempfile.mkdtemp(prefix="ketch-cri-auth-")
            ctx.authfile = os.path.join(scratch, "auth.json")
            with open(os.open(ctx.authfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                json.dump({"auths": {registry: {"identitytoken": auth.identity_token}}}, f)
        try:
            image_id = pull(self.store, name, ctx)
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        return api.PullImageResponse(image_ref=image_id)

    @_grpc_errors
    def RemoveImage(self, request, context):
        try:
            image = self.find(self.store, request.image.image)
        except NotFoundError:
            return api.RemoveImageResponse()  # (removed already: done)
        self.store.remove_image(image.id)  # by id: every tag goes
        return api.RemoveImageResponse()

    @_grpc_errors
    def ImageFsInfo(self, request, context):
        from ketch.cri import resources

        return api.ImageFsInfoResponse(image_filesystems=[resources.filesystem_usage(self.store)])


# -- serving ---------------------------------------------------------------------------------


def _socket_path(listen: str) -> str:
    if not listen.startswith("unix://"):
        raise InvalidInputError(f"invalid --listen {listen!r}: want unix:///PATH")
    return listen[len("unix://"):]


def _started_pool(workers: int) -> futures.ThreadPoolExecutor:
    """A pool whose threads are all made now: a node's thread count stays the same however the
    load comes (an executor otherwise adds threads as it goes)."""
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cri-grpc")
    everyone = threading.Barrier(workers + 1)
    for _ in range(workers):
        pool.submit(everyone.wait)
    everyone.wait()
    return pool


def make_server(config: CRIConfig, shared: _PerThread, streaming=None, *, workers: int = 16) -> grpc.Server:
    server = grpc.server(_started_pool(workers),
                         options=[("grpc.max_receive_message_length", 16 * 1024 * 1024),
                                  ("grpc.max_send_message_length", 40 * 1024 * 1024)])
    rpc.add_RuntimeServiceServicer_to_server(RuntimeService(config, shared, streaming), server)
    rpc.add_ImageServiceServicer_to_server(ImageService(config, shared), server)
    return server


RELOADABLE = ("handlers", "default_handler", "cni_conf_dirs", "cni_bin_dirs", "cni_cache_dir", "log_directory",
              "restrict_oom_score_adj", "max_exec_output", "default_capabilities", "pid_namespace_holder",
              "log_level", "log_format", "stream_token_ttl")


def reload_config(config: CRIConfig, fresh: CRIConfig, shared: _PerThread, streaming) -> None:
    """SIGHUP: the settings that can change while serving take the file's new values (each
    thread makes its Sandboxes anew); the others are logged as needing a restart."""
    from ketch.cri import serverlog

    changed = [key for key in RELOADABLE if getattr(config, key) != getattr(fresh, key)]
    for key in changed:
        setattr(config, key, getattr(fresh, key))
    streaming.tokens.ttl = config.stream_token_ttl
    serverlog.configure(config)
    shared.generation += 1
    fixed = [key for key in ("listen", "root", "runroot", "cgroup_driver", "stream_address", "stream_port")
             if getattr(config, key) != getattr(fresh, key)]
    log.info("configuration reloaded", extra={"fields": {"changed": changed, "file": config.source}})
    if fixed:
        log.warning("these settings change only with a restart", extra={"fields": {"settings": fixed}})


def serve(config: CRIConfig, *, ready=None, stop_event: threading.Event | None = None,
          reload_event: threading.Event | None = None, reload=None) -> None:
    """Serve until ``stop_event`` is set (or SIGTERM/SIGINT, which the caller turns into it).

    Under socket activation the passed socket is served: grpcio cannot adopt a listening
    socket, so its connections are handed to the server over a private socket (see
    :class:`_Relay`)."""
    from ketch.cri.remotecommand import Backend
    from ketch.cri.streaming import StreamingServer

    shared = _PerThread(config)
    shared.sandboxes.finish_removals()  # what a killed server left half-removed
    try:
        streaming = StreamingServer(config.stream_address, config.stream_port,
                                    Backend(config, lambda: shared.sandboxes, shared.release), token_ttl=config.stream_token_ttl)
    except OSError as exc:
        raise InvalidInputError(f"the streaming server cannot listen on {config.stream_address}:"
                                f"{config.stream_port}: {exc.strerror}") from exc
    server = make_server(config, shared, streaming)
    fds = list(range(3, 3 + systemd.listen_fds()))
    relay = None
    private = None
    if fds:
        private = tempfile.mkdtemp(prefix="ketch-cri-")
        inner = os.path.join(private, "grpc.sock")
        server.add_insecure_port(f"unix://{inner}")
        relay = _Relay(socket.socket(fileno=fds[0]), inner)
    else:
        path = _socket_path(config.listen)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            os.unlink(path)  # a socket left by a killed server
        except FileNotFoundError:
            pass
        if server.add_insecure_port(f"unix://{path}") == 0:
            raise InvalidInputError(f"cannot listen on {config.listen}")
        os.chmod(path, 0o660)
    server.start()
    streaming.start()
    log.info("serving", extra={"fields": {"listen": config.listen, "streaming": streaming.base_url}})
    if relay is not None:
        relay.start()
    if ready is not None:
        ready()
    systemd.notify("READY=1")  # (ketch-cri.service is Type=notify)
    stop_event = stop_event or threading.Event()
    try:
        while not stop_event.wait(0.2):
            if reload_event is not None and reload_event.is_set():
                reload_event.clear()
                try:
                    reload_config(config, reload(), shared, streaming)
                except KetchError as exc:
                    log.error("configuration not reloaded: %s", exc)
    finally:
        server.stop(grace=2).wait()
        streaming.close()
        if relay is not None:
            relay.close()
        shared.tree_remover.shutdown(wait=True)  # (what is left when killed instead: the next recovery's)
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


class _Relay:
    """The systemd-passed listening socket's connections, each copied both ways to grpcio's own
    unix socket (grpcio's Python API binds its sockets itself and cannot serve one it is given)."""

    def __init__(self, listener: socket.socket, inner: str) -> None:
        self.listener = listener
        self.inner = inner
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._accept, name="cri-activation", daemon=True).start()

    def close(self) -> None:
        self.closed = True

    def _accept(self) -> None:
        while not self.closed:
            try:
                outer, _ = self.listener.accept()
            except OSError:
                return
            inner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                inner.connect(self.inner)
            except OSError:
                outer.close()
                inner.close()
                continue
            for source, target in ((outer, inner), (inner, outer)):
                threading.Thread(target=_copy, args=(source, target), daemon=True).start()


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
