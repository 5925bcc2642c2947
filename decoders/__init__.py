"""Decoders: one CRIU image file → typed records.

Knows nothing of directories of images, of output or of the command line.

>>> from decoders import open_image, read_pstree
>>> image = open_image("pstree.img")          # doctest: +SKIP
>>> [e.pid for e in read_pstree("pstree.img")] # doctest: +SKIP
"""

from .lazy import lazy_exports

#: Public name → the submodule defining it.  Submodules load on first use, so
#: ``from decoders.errors import DecodeError`` does not load protobuf and CRIU's
#: schema (the command line's start-up stays short).
_EXPORTS = {
    "read_core": "core",
    **dict.fromkeys(("BadMagicError", "DecodeError", "EntryDecodeError", "MissingImageError",
                     "SchemaError", "TruncatedError", "UnreadableImageError"), "errors"),
    "read_fdinfo": "fdinfo", "read_files": "fdinfo",
    **dict.fromkeys(("PAGE_SIZE", "FdType", "MapFlags", "PageFlags", "Prot", "TaskState",
                     "VmaStatus"), "flags"),
    "read_fs": "ids", "read_ids": "ids",
    **dict.fromkeys(("Entry", "Image", "Payload", "Source", "image_from_bytes", "open_image"),
                    "image"),
    "read_dump_stats": "inventory", "read_inventory": "inventory",
    "read_mm": "mm", "read_pagemap": "pagemap", "read_pstree": "pstree",
    **dict.fromkeys(("Creds", "DumpStats", "FdInfo", "FileEntry", "Fs", "Ids", "Inventory", "Mm",
                     "Pagemap", "PageRun", "PstreeEntry", "Registers", "ThreadCore", "Vma"),
                    "records"),
    "PycriuNotFound": "errors", "get_schema": "schema",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BadMagicError", "Creds", "DecodeError", "DumpStats", "Entry", "EntryDecodeError", "FdInfo",
    "FdType", "FileEntry", "Fs", "Ids", "Image", "Inventory", "MapFlags", "MissingImageError", "Mm",
    "PAGE_SIZE", "PageFlags", "PageRun", "Pagemap", "Payload", "Prot", "PstreeEntry",
    "PycriuNotFound", "Registers", "SchemaError", "Source", "TaskState", "ThreadCore",
    "TruncatedError",
    "UnreadableImageError", "Vma", "VmaStatus", "get_schema", "image_from_bytes", "open_image",
    "read_core", "read_dump_stats", "read_fdinfo", "read_files", "read_fs", "read_ids",
    "read_inventory", "read_mm", "read_pagemap", "read_pstree",
]
