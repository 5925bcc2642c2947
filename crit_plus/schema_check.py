"""Is the loaded CRIU schema new enough for a checkpoint?

Two signs that a checkpoint comes from a newer CRIU than the schema:
fields the schema does not know in its metadata images, and the version
line of ``dump.log`` (written when the dump was verbose; LXD always is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from decoders.image import open_image
from decoders.jsonform import Converter
from decoders.kinds import raw_kind
from decoders.schema import get_schema

from .describe import count_text
from .sources.logs import read_header, release_tuple

def dump_log_version(images_dir):
    """The CRIU version a verbose ``dump.log`` in ``images_dir`` names, or None."""
    log = Path(images_dir) / "dump.log"
    if not log.is_file():
        return None
    try:
        return read_header(log).criu_version
    except OSError:
        return None


@dataclass(frozen=True)
class SchemaCurrency:
    """What a checkpoint says about the schema needed to read all of it."""

    schema_version: str | None
    dump_version: str | None
    unknown_fields: dict  # "message.number" -> occurrences
    images_with_unknown: tuple

    @property
    def newer_than_schema(self):
        """True if the checkpoint was written by a CRIU newer than the schema."""
        if self.unknown_fields:
            return True
        dump, schema = release_tuple(self.dump_version), release_tuple(self.schema_version)
        return bool(dump and schema and dump > schema)

    def warning(self):
        """One line for users, or None when the schema reads everything."""
        if not self.newer_than_schema:
            return None
        parts = []
        if self.dump_version:
            parts.append(f"dumped by CRIU {self.dump_version}")
        if self.unknown_fields:
            parts.append(f"{count_text(sum(self.unknown_fields.values()), 'field')} in "
                         f"{count_text(len(self.images_with_unknown), 'image')} unknown to the "
                         "schema")
        return (f"this checkpoint is newer than the CRIU {self.schema_version or '?'} schema "
                f"({'; '.join(parts)}): run `make schema` for CRIU 4.2.1's")


def check_checkpoint(images_dir, dump_version=None):
    """Scan the metadata images of ``images_dir`` for fields the schema lacks.

    ``dump_version`` is the CRIU version the source already knows (from a
    manager's log); otherwise it is looked for in ``dump.log``.
    """
    converter = Converter(get_schema())
    with_unknown = []
    for path in sorted(Path(images_dir).iterdir()):
        if not path.is_file() or raw_kind(path.name) or not (
            path.name.endswith(".img") or path.name.startswith("stats-")
        ):
            continue
        before = sum(converter.unknown_seen.values())
        with open_image(path) as image:
            for _ in image.json_entries(nopl=True, converter=converter):
                pass
        if sum(converter.unknown_seen.values()) > before:
            with_unknown.append(path.name)
    return SchemaCurrency(get_schema().criu_version,
                          dump_version or dump_log_version(images_dir),
                          dict(converter.unknown_seen), tuple(with_unknown))
