"""Did the CRIU dump that wrote these images fail?  One answer for validate, summarize
and list.

The log comes from the one attribution (:meth:`crit_plus.sources.Source.runs`, whose
``dump`` role is the run that wrote the images); the decisive line and its catalog
cause are ``crit-plus explain``'s reading (:func:`crit_plus.analysis.explain.diagnose`).
A dump failed when its log ends with ``Dumping FAILED.`` (CRIU removes nothing it
wrote), or when a verbose log ends before CRIU said how the dump ended and
``inventory.img`` is missing: CRIU was killed mid-dump.  A log that is cut short beside
a complete checkpoint is a cut copy of the log, not a failed dump.  CRIU writes
``inventory.img`` last (``cr_dump_tasks``; a pre-dump writes it even when it fails):
without it the images are *partial*; with it the dump failed in its last steps
(``cr_dump_finish``) or was a pre-dump, and the images may be whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .explain import diagnose

#: What a failed dump means for its images, said the same way everywhere.
PARTIAL = ("the images are what it wrote before it stopped: partial, they cannot be "
           "restored")
#: The same, when the dump failed after writing inventory.img (its last image).
LATE = ("it failed after writing inventory.img, its last image: the images may be whole, "
        "but CRIU did not finish the dump")


@dataclass(frozen=True)
class DumpFailure:
    """The failed dump that wrote a checkpoint: its log (``log`` the file name, ``path``
    as the user can find it), ``outcome`` (``failed`` or ``cut short``), its run id,
    the decisive error line and, when the failure catalog knows it, its cause and code;
    ``partial``: no ``inventory.img`` (CRIU stopped before its last image), or
    ``over_earlier``: the ``inventory.img`` there is an earlier dump's, the failed run
    having written its other images over that dump's.
    """

    log: str
    path: str
    outcome: str
    run_id: str | None
    decisive: str | None
    cause: str | None
    catalog: str | None
    partial: bool = True
    over_earlier: bool = False  # a retry into an earlier dump's directory (inventory.img its)

    @property
    def consequence(self) -> str:
        """What it means for the images: :data:`PARTIAL` or :data:`LATE`."""
        return PARTIAL if self.partial else LATE

    @property
    def sentence(self) -> str:
        """One line for people: which log, how the dump ended, the decisive line."""
        how = "failed" if self.outcome == "failed" else "was cut short (CRIU killed?)"
        text = f"the CRIU dump that wrote these images {how} ({self.log})"
        if self.decisive:
            text += f": {self.decisive.strip()}"
        if self.cause:
            text += f" (cause: {self.cause})"
        if self.over_earlier:
            text += ("; it was written over an earlier dump, whose inventory.img is still "
                     "there: the directory mixes the two")
        return text

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"log": self.log, "path": self.path, "outcome": self.outcome,
                "run_id": self.run_id, "decisive": self.decisive, "cause": self.cause,
                "catalog": self.catalog, "partial": self.partial,
                "over_earlier": self.over_earlier}


def dump_failure(source, checkpoint) -> DumpFailure | None:
    """The :class:`DumpFailure` of ``checkpoint`` (a :class:`crit_plus.graph.Checkpoint`)
    of ``source`` (a :class:`crit_plus.sources.Source`; None: no logs, no answer), or
    None when the dump that wrote it did not fail (or no log says)."""
    if source is None:
        return None
    inventory = checkpoint.inventory
    for item in source.runs(inventory.run_id if inventory is not None else None):
        run = item.run
        if run is None:
            continue
        overwritten = item.role != "dump" and _failed_over(source, item, inventory)
        if item.role != "dump" and not overwritten:
            continue
        if run.outcome == "failed" or (run.outcome == "cut short" and inventory is None):
            decisive = diagnose(item.log.errors, "dump", source.catalog_fields)
            failure = decisive.failure if decisive is not None else None
            if failure is not None and failure.role != "cause":
                failure = None
            return DumpFailure(item.log.name, source.label_of(item.log.path), run.outcome,
                               item.log.header.run_id,
                               decisive.text if decisive is not None else None,
                               failure.cause if failure is not None else None,
                               failure.code if failure is not None else None,
                               inventory is None or overwritten, overwritten)
    return None


def _failed_over(source, item, inventory) -> bool:
    """True if ``item`` is the log of a failed dump into this images directory, of
    another run than ``inventory.img``'s and written after it: a retry into the
    directory of an earlier dump.  CRIU writes inventory.img last, so the failed run
    left the earlier run's inventory beside the images it did write: a mix."""
    run = item.run
    if (inventory is None or run.operation != "dump" or run.outcome != "failed"
            or not run.run_id or run.run_id == inventory.run_id):
        return False
    log = Path(item.log.path)
    if log.parent != Path(source.images_dir):
        return False
    try:
        return log.stat().st_mtime > (Path(source.images_dir) / "inventory.img").stat().st_mtime
    except OSError:
        return False


__all__ = ["LATE", "PARTIAL", "DumpFailure", "dump_failure"]
