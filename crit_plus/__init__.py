"""crit-plus: read CRIU checkpoints — what is in them, how big, will they restore, what changed.

>>> import crit_plus
>>> checkpoint = crit_plus.open_checkpoint("service-a")     # doctest: +SKIP
>>> [p.pid for p in checkpoint.processes]                    # doctest: +SKIP
"""

__version__ = "0.1.0"

from decoders.lazy import lazy_exports

#: Public name → the module defining it, imported on first use: the command line
#: (``crit-plus --help``, ``crit-plus decode``) does not pay for the graph.
_EXPORTS = {
    **dict.fromkeys(("Fd", "FileObject", "FileTable", "GhostContents"), "files"),
    **dict.fromkeys(("ERROR", "INFO", "WARNING", "Finding"), "findings"),
    **dict.fromkeys(("Checkpoint", "PagesFile", "Process", "ProcessTree", "Thread"), "graph"),
    "open_checkpoint": "opening",
    **dict.fromkeys(("CHUNK_SIZE", "AddressSpace", "Backing", "Extent", "Mapping", "PageStore",
                     "PageTable", "Run", "Unavailable", "UnavailableError", "page_state"),
                    "memory"),
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AddressSpace", "Backing", "CHUNK_SIZE", "Checkpoint", "ERROR", "Extent", "Fd", "FileObject",
    "FileTable", "Finding", "GhostContents", "INFO", "Mapping", "PageStore", "PageTable",
    "PagesFile", "Process", "ProcessTree", "Run", "Thread", "Unavailable", "UnavailableError",
    "WARNING", "__version__", "open_checkpoint", "page_state",
]
