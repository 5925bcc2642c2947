"""Checkpoint OCI images: an image layout directory, or a saved image tar.

Podman (``podman container checkpoint --create-image``), CRI-O (a pod
checkpoint to an image, ``internal/lib/checkpoint.go``; a kubelet checkpoint
archive put into an image with ``buildah add`` / ``checkpointctl build``) make an
image of **one layer** whose files are the checkpoint archive's (``checkpoint/``,
``config.dump``, ... or a pod's ``pod.options`` and one directory per container),
marked by annotations: ``org.criu.checkpoint.*`` (checkpointctl
``lib/annotations.go``), Podman's ``io.podman.annotations.checkpoint.*`` and
CRI-O's older ``io.kubernetes.cri-o.annotations.checkpoint.name``.

Such an image reaches a file system as (OCI image-spec ``image-layout.md``):

- an **OCI image layout** (``skopeo copy ... oci:DIR``): ``oci-layout``,
  ``index.json`` (its ``manifests``, each a manifest or a nested index, with
  ``org.opencontainers.image.ref.name``), ``blobs/ALG/HEX`` (manifests: the
  ``layers`` and ``annotations``);
- the same layout in a tar (``podman image save --format oci-archive``,
  ``skopeo copy ... oci-archive:FILE``);
- a **docker-archive** tar (``podman image save``'s default): ``manifest.json``
  (a list of ``Config``, ``RepoTags``, ``Layers``); it keeps no annotations, so
  every single-layer image is tried.

Only JSON documents (bounded by ``ArchiveLimits.max_metadata``) are read here;
a layer is handed on as a stream (:class:`Layer`) for the archive reader, which
applies its usual limits to it.  A tar is read in place (its members' offsets),
so it must not be compressed.  Blob names come from digests checked against
``ALG:HEX``; a tar's members pass the archive's checks (no links, devices,
``..``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArchiveError
from .pod import CONTAINER_NAME_KEYS

#: Files that make a directory or tar an image layout / docker-archive.
LAYOUT_MARKERS = ("oci-layout", "index.json", "manifest.json")
#: Annotation prefixes that mark a checkpoint image.
CHECKPOINT_PREFIXES = ("org.criu.checkpoint.", "io.podman.annotations.checkpoint.",
                       "io.kubernetes.cri-o.annotations.checkpoint.")
REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^([a-z0-9]+):([0-9a-f]{32,128})$")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
#: Nested indexes followed at most.
MAX_NESTING = 4


@dataclass
class Layer:
    """The one layer of a checkpoint image: ``label`` names it for people
    (``image.tar: blobs/sha256/ab12...``), ``ref`` is the image's reference name,
    ``annotations`` the image's, ``size`` the blob's bytes; :meth:`open` gives a
    readable binary stream of the (possibly compressed) layer tar."""

    label: str
    ref: str | None
    annotations: dict
    size: int | None
    opener: object = field(repr=False)

    def open(self):
        """A context manager yielding the layer's bytes as a buffered stream."""
        return self.opener()

    @property
    def container(self):
        """The container name the annotations give (None for a pod image)."""
        return next((self.annotations[key] for key in CONTAINER_NAME_KEYS
                     if self.annotations.get(key)), None)

    @property
    def is_checkpoint(self):
        """True when an annotation marks a checkpoint image."""
        return any(key.startswith(CHECKPOINT_PREFIXES) for key in self.annotations)


def is_layout_dir(path):
    """True for a directory holding an OCI image layout."""
    path = Path(path)
    return (path / "index.json").is_file() and (path / "oci-layout").is_file()


class _Slice(io.RawIOBase):
    """``size`` bytes of ``raw`` from ``offset``, as a read-only stream."""

    def __init__(self, raw, offset, size):
        super().__init__()
        self._raw, self._left = raw, size
        raw.seek(offset)

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[:min(len(buffer), self._left)]
        count = self._raw.readinto(view)
        if not count:
            raise EOFError("the image archive ends inside a blob")
        self._left -= count
        return count


class _Store:
    """Named files of a layout directory or tar: ``read(name, limit)`` (bytes),
    ``stream(name)`` (a context manager), ``size(name)``."""

    def __init__(self, path, label, limits):
        self.path, self.label, self.limits = Path(path), label, limits
        self.members = None if self.path.is_dir() else _scan_tar(self.path, label, limits)

    def has(self, name):
        if self.members is None:
            target = self.path / name
            return target.is_file() and not target.is_symlink()
        return name in self.members

    def size(self, name):
        if self.members is None:
            return os.lstat(self.path / name).st_size
        return self.members[name][1]

    @contextlib.contextmanager
    def stream(self, name):
        from decoders.framing import open_untrusted

        if self.members is None:  # a layout directory: its files, never a link out of it
            with open(open_untrusted(self.path / name, nofollow=True)[0], "rb") as raw:
                yield raw
            return
        offset, size = self.members[name]
        with open(open_untrusted(self.path)[0], "rb") as raw:
            yield io.BufferedReader(_Slice(raw, offset, size), 1 << 20)

    def read(self, name):
        if not self.has(name):
            raise ArchiveError(self.label, f"no {name} in the image")
        limit = self.limits.max_metadata
        if self.size(name) > limit:
            raise ArchiveError(self.label, f"refused: {self.size(name)} bytes, over the limit "
                               f"of {limit}", member=name)
        with self.stream(name) as stream:
            data = stream.read(limit + 1)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as error:
            raise ArchiveError(self.label, f"not JSON: {error}", member=name) from None


def _scan_tar(path, label, limits):
    """``{name: (data offset, size)}`` of a plain tar's regular files, every member
    checked as the archive reader checks them."""
    import tarfile

    from .tarsafe import bounded_tarinfo, check_type, clean_name

    members = {}
    try:
        with tarfile.open(path, mode="r:", tarinfo=bounded_tarinfo(label)) as tar:
            for member in tar:
                name = clean_name(member, label)
                if check_type(member, name, label) or member.isdir() or not name:
                    continue
                if name in members:
                    raise ArchiveError(label, "refused: it appears twice", member=member.name)
                if len(members) >= limits.max_members:
                    raise ArchiveError(label, f"refused: more than {limits.max_members} members")
                members[name] = (member.offset_data, member.size)
    except tarfile.ReadError as error:
        raise ArchiveError(label, "an image archive must be a plain tar (crit-plus reads its "
                           f"blobs in place; decompress it first): {error}") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveError(label, f"cannot read the image archive: {error}") from None
    return members


def _blob(digest, label):
    match = _DIGEST.match(str(digest)) if isinstance(digest, str) else None
    if match is None:
        raise ArchiveError(label, f"refused: not a digest: {str(digest)[:100]!r}")
    return f"blobs/{match.group(1)}/{match.group(2)}"


def _annotations(*dicts):
    merged = {}
    for value in dicts:
        if isinstance(value, dict):
            merged.update({str(k): str(v) for k, v in value.items()})
    return merged


def _oci_images(store, descriptors, ref, depth, found):
    for descriptor in descriptors if isinstance(descriptors, list) else ():
        if not isinstance(descriptor, dict):
            continue
        annotations = descriptor.get("annotations")
        name = (annotations or {}).get(REF_NAME, ref) if isinstance(annotations, dict) else ref
        document = store.read(_blob(descriptor.get("digest"), store.label))
        if descriptor.get("mediaType") in _INDEX_TYPES or "manifests" in document:
            if depth >= MAX_NESTING:
                raise ArchiveError(store.label, f"refused: indexes nested over {MAX_NESTING} deep")
            _oci_images(store, document.get("manifests"), name, depth + 1, found)
            continue
        layers = document.get("layers") if isinstance(document, dict) else None
        layers = layers if isinstance(layers, list) else []
        found.append((name, _annotations(annotations, document.get("annotations")),
                      [_blob(layer.get("digest"), store.label) for layer in layers
                       if isinstance(layer, dict)]))


def _docker_images(store):
    found = []
    manifest = store.read("manifest.json")
    for image in manifest if isinstance(manifest, list) else ():
        if not isinstance(image, dict):
            continue
        tags = image.get("RepoTags")
        ref = tags[0] if isinstance(tags, list) and tags else None
        labels = {}
        if isinstance(image.get("Config"), str) and store.has(image["Config"].lstrip("./")):
            config = store.read(image["Config"].lstrip("./"))
            inner = config.get("config") if isinstance(config, dict) else None
            labels = inner.get("Labels") if isinstance(inner, dict) else {}
        layers = [name.lstrip("./") for name in image.get("Layers") or ()
                  if isinstance(name, str)]
        found.append((ref, _annotations(labels), layers))
    return found


def image_layers(path, label, limits):
    """The :class:`Layer` of each checkpoint image in the layout directory or image
    tar at ``path`` (``label`` names it in messages).  Images without checkpoint
    annotations are left out, unless none has any (a docker-archive keeps no
    annotations): then every single-layer image is offered.  Raises
    :class:`ArchiveError` for a malformed layout or an image of several layers."""
    store = _Store(path, label, limits)
    if store.has("index.json"):
        images = []
        _oci_images(store, store.read("index.json").get("manifests"), None, 0, images)
    elif store.has("manifest.json"):
        images = _docker_images(store)
    else:
        raise ArchiveError(label, "neither an OCI image layout (index.json) nor a "
                           "docker-archive (manifest.json)")
    layers = []
    for ref, notes, blobs in images:
        for blob in blobs:
            if not store.has(blob):
                raise ArchiveError(label, f"the image lacks its layer {blob}")
        layers.append((ref, notes, blobs))
    marked = [item for item in layers if any(key.startswith(CHECKPOINT_PREFIXES)
                                             for key in item[1])]
    chosen = marked or [item for item in layers if len(item[2]) == 1]
    found = []
    for ref, notes, blobs in chosen:
        if len(blobs) != 1:
            raise ArchiveError(label, f"image {ref or '?'} has {len(blobs)} layers; a checkpoint "
                               "image has one")
        blob = blobs[0]
        found.append(Layer(f"{label}: {blob}", ref, notes, store.size(blob),
                           lambda blob=blob: store.stream(blob)))
    if not found:
        raise ArchiveError(label, "no checkpoint image in it (no org.criu.checkpoint.* "
                           "annotations, no single-layer image)")
    return found


__all__ = ["CHECKPOINT_PREFIXES", "LAYOUT_MARKERS", "Layer", "image_layers", "is_layout_dir"]
