"""CRIU's own decoder as the oracle: pycriu.images.load + pb2dict, as crit runs it."""

from __future__ import annotations

import json

from decoders.schema import get_schema


def crit_json(path, pretty=False, nopl=False):
    """What CRIU's ``crit decode`` produces for ``path``, as plain JSON data."""
    images = get_schema().images
    with open(path, "rb") as handle:
        return json.loads(json.dumps(images.load(handle, pretty, nopl)))


def crit_info(path):
    """What CRIU's ``crit info`` prints for ``path`` (``magic`` and ``count``)."""
    images = get_schema().images
    with open(path, "rb") as handle:
        return images.info(handle)


def ours_json(path, pretty=False, nopl=False):
    """crit-plus's JSON for ``path``, as plain JSON data."""
    from decoders.image import open_image

    with open_image(path) as image:
        return json.loads(json.dumps(image.to_json(pretty, nopl)))


def is_metadata_image(path):
    """True for files crit can decode: images with a magic (not raw, not logs)."""
    from decoders.kinds import raw_kind

    name = path.name
    return (name.endswith(".img") or name in ("stats-dump", "stats-restore")) and not raw_kind(name)
