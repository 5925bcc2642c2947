"""Decoders: one CRIU image file → typed records.

Knows nothing of directories of images, of output or of the command line.

>>> from decoders import open_image, read_pstree
>>> image = open_image("pstree.img")          # doctest: +SKIP
>>> [e.pid for e in read_pstree("pstree.img")] # doctest: +SKIP
"""

from .core import read_core
from .errors import (
    BadMagicError,
    DecodeError,
    EntryDecodeError,
    MissingImageError,
    SchemaError,
    TruncatedError,
    UnreadableImageError,
)
from .fdinfo import read_fdinfo, read_files
from .flags import PAGE_SIZE, FdType, MapFlags, PageFlags, Prot, TaskState, VmaStatus
from .ids import read_fs, read_ids
from .image import Entry, Image, Payload, Source, image_from_bytes, open_image
from .inventory import read_dump_stats, read_inventory
from .mm import read_mm
from .pagemap import read_pagemap
from .pstree import read_pstree
from .records import (
    Creds,
    DumpStats,
    FdInfo,
    FileEntry,
    Fs,
    Ids,
    Inventory,
    Mm,
    Pagemap,
    PageRun,
    PstreeEntry,
    ThreadCore,
    Vma,
)
from .schema import PycriuNotFound, get_schema

__all__ = [
    "BadMagicError", "Creds", "DecodeError", "DumpStats", "Entry", "EntryDecodeError", "FdInfo",
    "FdType", "FileEntry", "Fs", "Ids", "Image", "Inventory", "MapFlags", "MissingImageError", "Mm",
    "PAGE_SIZE", "PageFlags", "PageRun", "Pagemap", "Payload", "Prot", "PstreeEntry",
    "PycriuNotFound", "SchemaError", "Source", "TaskState", "ThreadCore", "TruncatedError",
    "UnreadableImageError", "Vma", "VmaStatus", "get_schema", "image_from_bytes", "open_image",
    "read_core", "read_dump_stats", "read_fdinfo", "read_files", "read_fs", "read_ids",
    "read_inventory", "read_mm", "read_pagemap", "read_pstree",
]
