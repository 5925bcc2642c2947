"""crit-plus: read CRIU checkpoints — what is in them, how big, will they restore, what changed.

>>> import crit_plus
>>> checkpoint = crit_plus.open_checkpoint("service-a")     # doctest: +SKIP
>>> [p.pid for p in checkpoint.processes]                    # doctest: +SKIP
"""

__version__ = "0.1.0"

from .files import Fd, FileObject, FileTable, GhostContents
from .findings import ERROR, INFO, WARNING, Finding
from .graph import Checkpoint, PagesFile, Process, ProcessTree, Thread, open_checkpoint
from .memory import (
    CHUNK_SIZE,
    AddressSpace,
    Backing,
    Extent,
    Mapping,
    PageStore,
    PageTable,
    Run,
    Unavailable,
    UnavailableError,
    page_state,
)

__all__ = [
    "AddressSpace", "Backing", "CHUNK_SIZE", "Checkpoint", "ERROR", "Extent", "Fd", "FileObject",
    "FileTable", "Finding", "GhostContents", "INFO", "Mapping", "PageStore", "PageTable",
    "PagesFile", "Process", "ProcessTree", "Run", "Thread", "Unavailable", "UnavailableError",
    "WARNING", "__version__", "open_checkpoint", "page_state",
]
