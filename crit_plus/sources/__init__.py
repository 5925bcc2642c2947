"""Sources: whatever the user typed → a CRIU image directory plus what its manager knows.

>>> from crit_plus.sources import resolve
>>> with resolve("lxd:web/before") as source:          # doctest: +SKIP
...     source.images_dir, source.stateful, source.taken_at

Accepted: a directory of CRIU images; an LXD/Incus instance or snapshot
directory (or its ``state/``); ``lxd:NAME[/SNAP]``, ``incus:NAME[/SNAP]``,
``lxc:NAME[/DIR]``; a Podman/CRI-O checkpoint archive (``.tar``, ``.tar.gz``,
``.tar.zst``), a Kubernetes pod checkpoint, a checkpoint OCI image (layout
directory or image tar), ``ARCHIVE:NAME`` for one container of them.  See
docs/sources.md.

Modules, one job each: :mod:`.resolve` (dispatch on the spec), :mod:`.layout`
(where managers keep things), :mod:`.backup` (backup.yaml), :mod:`.managed`
(building a Source from a state directory), :mod:`.archive` (safe archive
extraction), :mod:`.tarsafe` (the checks every tar goes through), :mod:`.pod`
(pod checkpoints), :mod:`.oci` (checkpoint images), :mod:`.rootfs` (root-filesystem
changes), :mod:`.logs` (CRIU and LXC logs), :mod:`.runs` (which log belongs to
which run, and to which checkpoint: the one attribution, ``Source.runs``),
:mod:`.times` (managers' times), :mod:`.discover` (``list``), :mod:`.model`
(the Source itself), :mod:`.errors`.
"""

from decoders.lazy import lazy_exports

#: Public name → the submodule defining it, imported on first use: opening a plain
#: image directory loads neither the archive reader nor the log readers.
_EXPORTS = {
    "ArchiveLimits": "archive", "open_archive": "archive",
    "Discovery": "discover", "discover": "discover",
    "ArchiveError": "errors", "SourceError": "errors",
    "ROOT_ENV": "layout", "checkpoint_of": "layout", "fake_root": "layout",
    "standard_roots": "layout",
    "LogFile": "logs", "LogHeader": "logs",
    "KINDS": "model", "Source": "model", "parse_timestamp": "model",
    "AttributedLog": "runs", "LogRun": "runs",
    "parse_name": "resolve", "resolve": "resolve", "source_for_images_dir": "resolve",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ArchiveError", "ArchiveLimits", "AttributedLog", "Discovery", "KINDS", "LogFile",
    "LogHeader", "LogRun", "ROOT_ENV",
    "Source", "SourceError", "checkpoint_of", "discover", "fake_root", "open_archive",
    "parse_name",
    "parse_timestamp", "resolve", "source_for_images_dir", "standard_roots",
]
