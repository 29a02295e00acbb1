"""ketch's Kubernetes CRI server: the kubelet's RuntimeService and ImageService (CRI v1) over
gRPC, on top of :mod:`ketch.containers` (pods, containers under their own monitors) and
:mod:`ketch.image` (pulls), with pod networks set up by CNI plugins.

The server keeps nothing of its own in memory: every pod and container is a record in the store,
and each container runs under its own monitor, so the server can be stopped, upgraded or killed
at any moment and a new one answers for the same pods (see docs/cri.md).
"""
