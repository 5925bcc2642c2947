"""Container-world archives built around the real fixture dumps, the way the tools write them.

- :func:`podman_archive`: ``podman container checkpoint --export`` / a kubelet (CRI-O)
  container checkpoint: ``checkpoint/`` plus ``config.dump``, ``spec.dump``,
  ``stats-dump``, ``rootfs-diff.tar``, ``deleted.files`` at the top (containers/podman
  ``libpod/container_internal_common.go`` exportCheckpoint, CRI-O
  ``internal/lib/checkpoint.go`` exportCheckpoint).
- :func:`pod_archive`: a Kubernetes pod checkpoint (KEP-5823) as CRI-O's
  ``PodCheckpoint`` and containerd's ``CheckpointPod`` write it: one directory
  ``CONTAINERID-NAME/`` per container holding what a container archive holds,
  ``pod.options`` (``{"version": 1, "containers": {NAME: DIR}, "annotations":
  {...}}``) and containerd's ``pod.dump`` (the sandbox config), the directories
  first as Go's directory walk orders them (hex ids sort before ``pod.*``).
- :func:`oci_layout`, :func:`oci_archive`, :func:`docker_archive`: a checkpoint
  image of one layer holding such an archive, annotated ``org.criu.checkpoint.*``
  (checkpointctl ``lib/annotations.go``), as an OCI image layout directory
  (``skopeo copy oci:DIR``), that layout in a tar (``podman image save --format
  oci-archive``) and a docker-archive (``podman image save``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

#: Container name → (fixture directory, container id) of the pod built here.
POD = {"counter": ("service-a", "a1" * 32), "web": ("service-b", "b2" * 32)}
POD_NAME, POD_NAMESPACE, POD_UID = "shop", "default", "0f6c1e6a-7d35-4f0e-9d0c-51e1a0c2f3b4"


def add_bytes(tar, name, data, mode=0o644, mtime=1764092366, **fields):
    """Add a regular member ``name`` holding ``data``."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def rootfs_diff(files, directories=("etc",)):
    """A ``rootfs-diff.tar`` as ``CRCreateRootFsDiffTar`` writes it (paths relative
    to the container's root): ``files`` maps a path to its bytes (or to
    ``(bytes, mtime)``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as inner:
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            inner.addfile(info)
        for name, content in files.items():
            data, mtime = content if isinstance(content, tuple) else (content, 1764092300)
            add_bytes(inner, name, data, mtime=mtime)
    return buffer.getvalue()


def config_dump(name, container_id, when="2026-11-25T17:39:26.123456789Z"):
    """``config.dump`` (checkpointctl's ``ContainerConfig``)."""
    return json.dumps({"id": container_id, "name": name, "rootfsImageName":
                       f"localhost/{name}:latest", "runtime": "runc",
                       "createdTime": "2026-11-25T17:39:00.5Z",
                       "checkpointedTime": when}).encode()


def add_container(tar, prefix, images, name, container_id, *, files=None, deleted=("/etc/issue",),
                  when="2026-11-25T17:39:26.123456789Z"):
    """The members of one container's checkpoint under ``prefix`` ("" or "DIR/")."""
    tar.add(images, arcname=f"{prefix}checkpoint")
    add_bytes(tar, f"{prefix}config.dump", config_dump(name, container_id, when))
    add_bytes(tar, f"{prefix}spec.dump", json.dumps({"ociVersion": "1.0.2", "process": {},
                                                      "annotations": {}}).encode())
    add_bytes(tar, f"{prefix}stats-dump", (Path(images) / "stats-dump").read_bytes())
    add_bytes(tar, f"{prefix}rootfs-diff.tar", rootfs_diff(
        files if files is not None else {"etc/motd": b"changed\n" * 100}))
    add_bytes(tar, f"{prefix}deleted.files", json.dumps(list(deleted)).encode())


def write_compressed(path, data):
    """Write the tar ``data`` to ``path``, gzip- or zstd-compressed as its name ends."""
    name = str(path)
    if name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1)
    elif name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    Path(path).write_bytes(data)
    return Path(path)


def podman_archive_bytes(images, name="service", **options):
    """The bytes of a Podman/CRI-O container archive of ``images``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_container(tar, "", images, name, "4f1c" * 16, **options)
    return raw.getvalue()


def podman_archive(path, images, name="service", **options):
    """A container archive file (``.tar``, ``.tar.gz``, ``.tar.zst``) of ``images``."""
    return write_compressed(path, podman_archive_bytes(images, name, **options))


def pod_options(containers):
    """``pod.options`` as CRI-O and containerd write it."""
    return {"version": 1, "containers": containers, "annotations": {
        "org.criu.checkpoint.engine.name": "cri-o", "org.criu.checkpoint.engine.version": "1.35.0",
        "org.criu.checkpoint.pod.name": POD_NAME, "org.criu.checkpoint.pod.id": "c0ffee" * 10,
        "org.criu.checkpoint.pod.namespace": POD_NAMESPACE,
        "org.criu.checkpoint.pod.uid": POD_UID, "org.criu.checkpoint.criu.version": "40201"}}


def pod_archive_bytes(fixture_root, pod=None, with_dump=True, source_dir_entry=True):
    """The bytes of a pod checkpoint of the fixture dumps ``pod`` names (:data:`POD`)."""
    pod = pod or POD
    dirs = {name: f"{cid}-{name}" for name, (_fixture, cid) in pod.items()}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if source_dir_entry:  # CRI-O: archive.TarWithOptions(..., IncludeSourceDir: true)
            info = tarfile.TarInfo("./")
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for name in sorted(pod, key=lambda n: dirs[n]):
            fixture, cid = pod[name]
            add_container(tar, dirs[name] + "/", Path(fixture_root) / fixture, name, cid,
                          files={"etc/motd": f"{name}\n".encode(),
                                 f"srv/{name}.conf": b"port=1\n"})
        if with_dump:
            add_bytes(tar, "pod.dump", json.dumps({
                "metadata": {"name": POD_NAME, "uid": POD_UID, "namespace": POD_NAMESPACE,
                             "attempt": 0}, "hostname": POD_NAME,
                "log_directory": f"/var/log/pods/{POD_NAMESPACE}_{POD_NAME}_{POD_UID}"}).encode())
        add_bytes(tar, "pod.options", json.dumps(pod_options(dirs)).encode())
    return raw.getvalue()


def pod_archive(path, fixture_root, **options):
    """A pod checkpoint file (``.tar``: CRI-O and containerd write plain tars)."""
    return write_compressed(path, pod_archive_bytes(fixture_root, **options))


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blobs(images):
    """``(blobs {digest: bytes}, index manifests)`` of ``images``: (ref, annotations,
    layer bytes) each."""
    blobs, manifests = {}, []
    for ref, notes, layer in images:
        layer_blob = gzip.compress(layer, compresslevel=1)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(layer_blob), "size": len(layer_blob)}],
            "annotations": notes}).encode()
        for blob in (layer_blob, config, manifest):
            blobs[_digest(blob)] = blob
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": _digest(manifest), "size": len(manifest),
                          "annotations": {"org.opencontainers.image.ref.name": ref}})
    return blobs, manifests


def container_annotations(name):
    """The annotations of a container checkpoint image (checkpointctl build, Podman)."""
    return {"org.criu.checkpoint.container.name": name,
            "org.criu.checkpoint.engine.name": "podman",
            "org.criu.checkpoint.rootfsImageName": f"localhost/{name}:latest",
            "io.podman.annotations.checkpoint.name": name}


def layout_files(images):
    """``{relative path: bytes}`` of an OCI image layout holding ``images``."""
    blobs, manifests = _blobs(images)
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()}
    for digest, blob in blobs.items():
        files["blobs/sha256/" + digest.split(":")[1]] = blob
    return files


def oci_layout(directory, images):
    """An OCI image layout directory (``skopeo copy ... oci:DIR``)."""
    directory = Path(directory)
    for name, data in layout_files(images).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def oci_archive(path, images):
    """The layout in a plain tar (``podman image save --format oci-archive``)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(layout_files(images).items()):
            add_bytes(tar, name, data)
    Path(path).write_bytes(raw.getvalue())
    return Path(path)


def docker_archive(path, ref, layer):
    """A docker-archive (``podman image save``'s default): no annotations survive."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": None},
                         "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = hashlib.sha256(layer).hexdigest() + ".tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": [layer_name]}]).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        add_bytes(tar, layer_name, layer)
        add_bytes(tar, config_name, config)
        add_bytes(tar, "manifest.json", manifest)
    Path(path).write_bytes(raw.getvalue())
    return Path(path)
