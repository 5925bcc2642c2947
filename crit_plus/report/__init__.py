"""``crit-plus report``: the bug report LXD and CRIU maintainers ask for, in one bundle.

Modules, one job each: :mod:`.build` (request → bundle, the order of things),
:mod:`.host` (host facts under a root), :mod:`.instance` (LXD/Incus client,
daemon log, instance logs), :mod:`.checkpoint` (crit-plus's reading of the
checkpoint), :mod:`.selfrun` (crit-plus's commands run in-process),
:mod:`.programs` (external programs, one injectable runner), :mod:`.collect`
(members spooled before writing), :mod:`.redact` (environment values out),
:mod:`.excerpts` (the logs' errors with context), :mod:`.index` (INDEX.md and
report.json), :mod:`.bundle` (the atomic .tar.gz), :mod:`.model` (the parts).
See docs/report.md.
"""

from .build import ReportError, ReportRequest, build_report
from .bundle import OutputRefused
from .programs import NoPrograms, Ran, Runner

__all__ = ["NoPrograms", "OutputRefused", "Ran", "ReportError", "ReportRequest", "Runner",
           "build_report"]
