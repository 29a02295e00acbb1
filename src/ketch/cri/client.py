"""A small client of a CRI server, for ``ketch cri pods|ps|images|inspect`` and for Python
programs: each answer as the JSON form of its message (camelCase keys, as crictl prints them)."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import json_format

import ketch.cri.api_pb2 as api
import ketch.cri.api_pb2_grpc as rpc
from ketch.cri.config import DEFAULT_LISTEN
from ketch.errors import KetchError, NotFoundError


class CRIClientError(KetchError):
    pass


class Client:
    def __init__(self, endpoint: str | None = None, timeout: float = 60.0) -> None:
        self.endpoint = endpoint or DEFAULT_LISTEN
        target = self.endpoint if self.endpoint.startswith("unix:") else f"unix://{self.endpoint}"
        self.channel = grpc.insecure_channel(target)
        self.runtime = rpc.RuntimeServiceStub(self.channel)
        self.images_service = rpc.ImageServiceStub(self.channel)
        self.timeout = timeout

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(exc.details() or "not found") from exc
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise CRIClientError(f"cannot reach the CRI server at {self.endpoint}: is it running?") from exc
            raise CRIClientError(f"{exc.code().name}: {exc.details()}") from exc

    @staticmethod
    def _dict(message) -> dict[str, Any]:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)

    def pods(self) -> list[dict[str, Any]]:
        return [self._dict(p) for p in self._call(self.runtime.ListPodSandbox, api.ListPodSandboxRequest()).items]

    def containers(self) -> list[dict[str, Any]]:
        return [self._dict(c) for c in self._call(self.runtime.ListContainers, api.ListContainersRequest()).containers]

    def images(self) -> list[dict[str, Any]]:
        return [self._dict(i) for i in self._call(self.images_service.ListImages, api.ListImagesRequest()).images]

    def inspect(self, name: str) -> dict[str, Any] | None:
        """The verbose status of the container, pod sandbox or image ``name`` (an id or prefix)."""
        for container in self._call(self.runtime.ListContainers,
                                    api.ListContainersRequest(filter=api.ContainerFilter(id=name))).containers:
            answer = self._call(self.runtime.ContainerStatus, api.ContainerStatusRequest(container_id=container.id,
                                                                                         verbose=True))
            return _with_info(answer)
        for pod in self._call(self.runtime.ListPodSandbox,
                              api.ListPodSandboxRequest(filter=api.PodSandboxFilter(id=name))).items:
            answer = self._call(self.runtime.PodSandboxStatus, api.PodSandboxStatusRequest(pod_sandbox_id=pod.id,
                                                                                          verbose=True))
            return _with_info(answer)
        answer = self._call(self.images_service.ImageStatus,
                            api.ImageStatusRequest(image=api.ImageSpec(image=name), verbose=True))
        return _with_info(answer) if answer.HasField("image") else None

    def close(self) -> None:
        self.channel.close()


def _with_info(answer) -> dict[str, Any]:
    data = json_format.MessageToDict(answer, always_print_fields_with_no_presence=True)
    info = data.get("info") or {}
    data["info"] = {k: _json_or_text(v) for k, v in info.items()}
    return data


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value
