"""One report, from request to bundle: resolve, check the output, gather, index, write.

>>> from crit_plus.report import ReportRequest, build_report
>>> request = ReportRequest(output="web.tar.gz", spec="lxd:web")
>>> report, size = build_report(request)  # doctest: +SKIP

The host side is read under ``host_root`` (default: ``$CRIT_PLUS_ROOT`` or
``/``) and programs run through ``runner`` (default: this machine's, or none at
all when the host root is a copied tree: programs would describe this machine,
not that tree).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import __version__
from ..opening import input_paths, resolve_source
from ..sources import ROOT_ENV, fake_root, parse_name
from ..sources.fields import catalog_fields
from .bundle import check_output, top_directory, write_bundle
from .checkpoint import gather_checkpoint, gather_self_runs
from .collect import Collection
from .excerpts import find_excerpts
from .host import gather_host
from .index import render_index, report_data
from .instance import CLIENTS, Instance, gather_manager, instance_log_dirs
from .model import Report
from .programs import NoPrograms, Runner

#: crit-plus commands run with ``--host-only`` (there is no checkpoint).
HOST_ONLY_COMMANDS = ("version",)


class ReportError(ValueError):
    """The request cannot be carried out as asked (a usage error)."""


@dataclass(frozen=True)
class ReportRequest:
    """What the user asked for: the ``report`` command's arguments.

    ``spec`` names the checkpoint (with ``host_only``: an instance name or
    nothing); ``lxd_dir``, ``project`` and ``root`` are the usual source options;
    ``criu`` an explicit ``criu`` binary; ``note`` what happened, in the user's words.
    """

    output: str
    spec: str | None = None
    lxd_dir: str | None = None
    project: str | None = None
    root: str | None = None
    host_only: bool = False
    include_images: bool = False
    note: str | None = None
    criu: str | None = None

    @property
    def source_options(self):
        """The source options passed on to crit-plus's commands."""
        return {"lxd_dir": self.lxd_dir, "project": self.project, "root": self.root}


def default_runner(host_root):
    """Programs run on this machine when ``host_root`` is ``/``; none otherwise."""
    if os.path.realpath(os.fspath(host_root)) == os.sep:
        return Runner()
    return NoPrograms(f"the host root is {host_root} (${ROOT_ENV}), a copied tree: programs "
                      "would describe this machine instead")


def _host_only_instances(request, host_root):
    """The instances a ``--host-only`` report covers and their log directories."""
    if request.include_images:
        raise ReportError("--include-images needs a checkpoint; --host-only has none")
    if request.spec is None:
        return [Instance(manager) for manager in CLIENTS], []
    named = parse_name(request.spec)
    if named is None or named[0] not in CLIENTS or named[1] is None:
        raise ReportError(f"--host-only takes lxd:NAME, incus:NAME or nothing, not "
                          f"{request.spec!r} (there is no checkpoint on the target side)")
    instance = Instance(named[0], named[1], request.project)
    return [instance], instance_log_dirs(instance, request.lxd_dir, host_root)


def _finish(request, collection, source, fields=None):
    created = datetime.now(timezone.utc)
    top = top_directory(request.output)
    report = Report(spec=request.spec, source=source, host_only=request.host_only,
                    include_images=request.include_images, note=request.note,
                    created=created.replace(microsecond=0), top=top, collection=collection,
                    excerpts=tuple(find_excerpts(collection, fields)),
                    crit_plus_version=__version__)
    heads = [("INDEX.md", render_index(report).encode("utf-8")),
             ("report.json", (json.dumps(report_data(report), indent=2, ensure_ascii=False)
                              + "\n").encode("utf-8"))]
    return report, write_bundle(request.output, top, heads, collection)


def _gather_host_only(request, host_root, runner, commands):
    instances, log_dirs = _host_only_instances(request, host_root)
    check_output(request.output, log_dirs)
    collection = Collection()
    try:
        gather_host(collection, host_root, runner, request.criu)
        for instance in instances:
            gather_manager(collection, host_root, runner, instance, log_dirs, request.lxd_dir)
        gather_self_runs(collection, commands, None, {}, HOST_ONLY_COMMANDS)
        named = [i for i in instances if i.name is not None]
        fields = catalog_fields(named[0].manager, named[0].name, ()) if named else None
        return _finish(request, collection, None, fields)
    finally:
        collection.close()


def _gather_checkpoint(request, host_root, runner, commands):
    with resolve_source(request.spec, lxd_dir=request.lxd_dir, project=request.project) as source:
        log_dirs = [d for d in source.log_dirs if os.fspath(d) != os.fspath(source.images_dir)]
        check_output(request.output, input_paths(source))
        collection = Collection()
        try:
            gather_host(collection, host_root, runner, request.criu)
            if source.manager in CLIENTS:
                instance = Instance(source.manager, source.instance, source.project)
                gather_manager(collection, host_root, runner, instance, log_dirs,
                               request.lxd_dir)
            else:
                collection.skip("LXD/Incus facts (lxc info, the instance's config and logs)",
                                f"not an LXD or Incus checkpoint ({source.kind})")
            facts = gather_checkpoint(collection, source, request.source_options,
                                      request.include_images, commands)
            return _finish(request, collection, facts, source.catalog_fields)
        finally:
            collection.close()


def build_report(request, host_root=None, runner=None, commands=None):
    """Gather and write the bundle ``request`` asks for → ``(Report, bundle bytes)``.

    ``commands`` (:class:`~crit_plus.report.selfrun.Commands`) are crit-plus's own
    commands, as the CLI hands them down (the ``report`` command passes them); without
    them no crit-plus command runs and each is listed as not available.

    Raises :class:`ReportError` for a request that cannot be carried out,
    :class:`~crit_plus.report.bundle.OutputRefused` for an output inside the
    checkpoint, :class:`~crit_plus.sources.SourceError` for a checkpoint that
    cannot be found, OSError if the bundle cannot be written (nothing is left
    behind then).
    """
    host_root = fake_root() if host_root is None else host_root
    runner = default_runner(host_root) if runner is None else runner
    if request.host_only:
        return _gather_host_only(request, host_root, runner, commands)
    if request.spec is None:
        raise ReportError("name the checkpoint (PATH, lxd:NAME[/SNAP], incus:NAME[/SNAP]), "
                          "or give --host-only")
    return _gather_checkpoint(request, host_root, runner, commands)


__all__ = ["HOST_ONLY_COMMANDS", "ReportError", "ReportRequest", "build_report",
           "default_runner"]
