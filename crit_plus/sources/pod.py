"""Kubernetes pod checkpoints (KEP-5823) and which container of them is meant.

A pod checkpoint, as CRI-O (``internal/lib/checkpoint.go``, ``PodCheckpoint``)
and containerd (``internal/cri/server/sandbox_checkpoint_linux.go``,
``CheckpointPod``) write it, is one tar archive (or the single layer of an OCI
image)::

    pod.options            {"version": 1, "containers": {NAME: DIR}, "annotations": {...}}
    pod.dump               the CRI PodSandboxConfig as JSON (containerd)
    DIR/                   one per container, named CONTAINER_ID-NAME
        checkpoint/        CRIU's images
        config.dump  spec.dump  stats-dump  dump.log  rootfs-diff.tar  deleted.files ...

``pod.options``' ``containers`` maps each container's name to its directory
(checkpointctl ``lib/metadata.go``, ``CheckpointedPodOptions``); older
checkpointctl versions had a list of names there.  Its ``annotations`` carry the
``org.criu.checkpoint.*`` keys (checkpointctl ``lib/annotations.go``): pod
name, id, namespace and uid, engine, CRIU version, kernel, architecture.

This module only reads what those files say: :func:`pod_containers` names the
containers, :func:`choose` picks one for what the user typed.
"""

from __future__ import annotations

import json
import re

from .errors import SourceError

#: Annotation keys (checkpointctl lib/annotations.go) shown for a pod.
POD_NAME = "org.criu.checkpoint.pod.name"
POD_NAMESPACE = "org.criu.checkpoint.pod.namespace"
POD_UID = "org.criu.checkpoint.pod.uid"
POD_ID = "org.criu.checkpoint.pod.id"
#: The annotation naming the container of a container checkpoint image, then the
#: older names Podman (``--create-image``) and CRI-O used.
CONTAINER_NAME_KEYS = ("org.criu.checkpoint.container.name",
                       "io.podman.annotations.checkpoint.name",
                       "io.kubernetes.cri-o.annotations.checkpoint.name")
_ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}-(.+)$")


def parse_json(data):
    """Parsed JSON of ``data`` (bytes), or None when it is not JSON."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def pod_facts(options, dump):
    """What ``pod.options`` (its ``annotations``) and ``pod.dump`` (the sandbox
    config's ``metadata``, ``hostname``) say of the pod: name, namespace, uid, id,
    hostname and the other annotations."""
    annotations = options.get("annotations") if isinstance(options, dict) else None
    annotations = annotations if isinstance(annotations, dict) else {}
    meta = dump.get("metadata") if isinstance(dump, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return {
        "name": annotations.get(POD_NAME) or meta.get("name"),
        "namespace": annotations.get(POD_NAMESPACE) or meta.get("namespace"),
        "uid": annotations.get(POD_UID) or meta.get("uid"),
        "id": annotations.get(POD_ID),
        "hostname": dump.get("hostname") if isinstance(dump, dict) else None,
        "annotations": {str(k): str(v) for k, v in annotations.items()},
    }


def pod_containers(options, directories, configs):
    """``{container name: directory}`` of a pod checkpoint.

    ``options`` is the parsed ``pod.options`` (a dict, or None), ``directories``
    the top-level directories holding a ``checkpoint/``, ``configs`` each
    directory's parsed ``config.dump``.  ``pod.options`` decides when it maps
    names to directories that exist; otherwise each directory is named after its
    ``config.dump`` (``name``), else after the directory without its
    ``CONTAINERID-`` prefix.
    """
    found = {}
    listed = options.get("containers") if isinstance(options, dict) else None
    if isinstance(listed, dict):
        for name, directory in listed.items():
            if isinstance(directory, str) and directory.strip("/") in directories:
                found[str(name)] = directory.strip("/")
    for directory in sorted(directories):
        if directory in found.values():
            continue
        config = configs.get(directory)
        name = config.get("name") if isinstance(config, dict) else None
        if not isinstance(name, str) or not name:
            match = _ID_PREFIX.match(directory)
            name = match.group(1) if match else directory
        while name in found:
            name = f"{name}@{directory}"
        found[name] = directory
    return found


def choose(archive, names, wanted, what="containers"):
    """The one of ``names`` (a list of candidate names) that ``wanted`` selects;
    without ``wanted``, the only one.  Raises :class:`SourceError` listing the
    names to paste (``ARCHIVE:NAME``) when none or several match."""
    if wanted is not None:
        if wanted in names:
            return wanted
        listed = ", ".join(f"{archive}:{name}" for name in names) or "none"
        if not wanted:
            raise SourceError(f"{archive}:", f"the container name after ':' is empty; it holds: "
                              f"{listed}")
        raise SourceError(f"{archive}:{wanted}", f"no container {wanted!r} in it; it holds: "
                          f"{listed}")
    if len(names) == 1:
        return names[0]
    listed = ", ".join(f"{archive}:{name}" for name in names)
    raise SourceError(archive, f"holds {len(names)} {what}; pick one: {listed}")


__all__ = ["CONTAINER_NAME_KEYS", "POD_NAME", "POD_NAMESPACE", "POD_UID", "choose",
           "parse_json", "pod_containers", "pod_facts"]
