"""Reading protobuf fields that a schema may not have: images from a newer CRIU than the
loaded pycriu (docs/schema.md) and fields a CRIU leaves unset."""

from __future__ import annotations

from typing import Any


def optional(msg: Any, name: str, default: Any = None) -> Any:
    """``msg.name`` when the schema knows the field and the message sets it, else
    ``default`` (``default`` also for a ``None`` message)."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name or not msg.HasField(name):
        return default
    return getattr(msg, name)
