"""``size``: where a checkpoint's bytes go, and how much of them it really needs."""

from __future__ import annotations

import time
from dataclasses import replace

import click

from decoders.flags import PAGE_SIZE

from ..analysis import size as size_analysis
from ..describe import (address_range, human_bytes, human_rate, human_seconds, percent,
                        unknown_pages_text)
from ..progress import progress
from ..render import jsonable, safe_text, stamped, write_json, write_table
from . import many
from .options import format_option, open_checkpoint_source, output_option, source_options


class Rate(click.ParamType):
    """A transfer rate: ``1Gbit/s``, ``500Mbps``, ``100MB/s``, ``50MiB/s``."""

    name = "RATE"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return size_analysis.parse_rate(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("size")
@source_options(several=True)
@click.option("--content", is_flag=True,
              help="Also read the page data once (streaming): zero pages, duplicates within "
                   "and across processes, the saving dedup would give, and a zstd estimate.")
@click.option("--bandwidth", type=Rate(), metavar="RATE",
              help="Transfer time at RATE (1Gbit/s, 500Mbps, 100MB/s, 50MiB/s; b = bits, "
                   "B = bytes) of the whole and of the part a parent/ chain already holds.")
@click.option("--top", type=click.IntRange(min=0), default=0, metavar="N",
              help="List the N biggest VMAs with their process and mapping.")
@format_option(("table", "json", "html", "jsonl"))
@output_option
def size_command(paths, lxd_dir, project, root, content, bandwidth, top, fmt, output):
    """Show where a checkpoint's bytes go: on disk (apparent and allocated), by image
    kind, by process and by VMA kind, with present, parent (pre-dump) and lazy pages
    apart.  Without --content no page data is read: the time does not depend on
    how many GiB of pages there are.  --content reads them once (a progress bar
    shows on a terminal).  Several PATHs, or a bare lxd: or incus: (every
    checkpoint that manager keeps), give one section per checkpoint (--format
    jsonl: one JSON document each, streamed); exit 1 if any could not be read.

    \b
    Examples:
      crit-plus size /var/lib/criu/dump1
      crit-plus size lxd:web/snap0 --top 10
      crit-plus size dump1 --content --bandwidth 1Gbit/s
      crit-plus size dump1 --format json | jq .disk.apparent
      crit-plus size dump1 --content --bandwidth 1Gbit/s --format html -o size.html
      crit-plus size lxd: -f jsonl | jq -c '[.source, .result.disk.apparent]'
    """
    def examine(source):
        from ..opening import open_graph

        return _measured(source, open_graph(source, root=root), content, top, bandwidth,
                         bar=False)  # several: the bar counts checkpoints

    def single(path):
        from ..opening import input_paths
        from ..output import output_stream, refuse_inputs

        with open_checkpoint_source(path, lxd_dir=lxd_dir, project=project,
                                    root=root) as opened:
            inputs = input_paths(opened.source)
            refuse_inputs(output, inputs)
            measured = _measured(opened.source, opened.checkpoint, content, top, bandwidth)
        with output_stream(output, binary=fmt == "html", inputs=inputs) as out:
            if fmt == "html":
                out.write(html_page(*measured))
            else:
                _write(measured, fmt, out)

    many.run_sections("size", paths, examine, lambda measured, out: _write(measured, fmt, out),
                      lambda measured: report_json(*_parts(measured)), single=single, fmt=fmt,
                      lxd_dir=lxd_dir, project=project, one_only=many.one_only(fmt, output))


def _measured(source, checkpoint, content, top, bandwidth, bar=True):
    """``(report, scan, elapsed, moving)`` of one checkpoint; with ``bar``, a progress bar
    while ``--content`` reads the pages (on a terminal)."""
    report = size_analysis.measure(checkpoint, top=top)
    if source.archive is not None:  # not its temporary copy, gone at exit
        report = replace(report, directory=source.images_label)
    scan = elapsed = None
    if content:
        from ..analysis import content as content_analysis  # --content only: page digests

        total = content_analysis.content_bytes(checkpoint)
        started = time.perf_counter()
        with progress(total, "reading pages", enabled=None if bar else False) as shown:
            scan = content_analysis.scan_content(checkpoint, progress=shown.update)
        elapsed = time.perf_counter() - started
    moving = size_analysis.transfer(report, bandwidth, scan) if bandwidth else None
    return report, scan, elapsed, moving


def _parts(measured):
    report, scan, _elapsed, moving = measured
    return report, scan, moving


def _write(measured, fmt, out):
    if fmt == "json":
        write_json(report_json(*_parts(measured)), out)
    else:
        write_report(*measured, out)


def html_page(report, scan, elapsed, moving):
    """The ``--format html`` page: a stacked bar and this command's table per view."""
    from ..html import pages

    return pages.size_page(
        report, title=f"crit-plus size {safe_text(report.directory)}",
        fields=summary_fields(report), kinds=kinds_table(report), owners=owners_table(report),
        owner_label=owner_label, vma_kinds=vma_kinds_table(report), scan=scan,
        content=content_table(scan) if scan is not None else None,
        content_heading=content_heading(scan, elapsed) if scan is not None else None,
        content_parts=CONTENT_PARTS, transfer=transfer_table(moving) if moving else None)


# -- JSON ----------------------------------------------------------------------------------------


def _pages(counts):
    return dict(jsonable(counts), listed=counts.listed, present_bytes=counts.present_bytes,
                parent_bytes=counts.parent_bytes)


def _owner(item, **identity):
    return dict(identity, pages=_pages(item.pages), pages_file=item.pages_file,
                pages_disk=jsonable(item.pages_disk), metadata_disk=jsonable(item.metadata_disk),
                disk=jsonable(item.disk))


def _process(item):
    data = _owner(item, pid=item.pid, comm=jsonable(item.comm), threads=item.threads,
                  metadata_files=list(item.metadata_files), pages_unknown=item.pages_unknown)
    if item.pages_unknown:  # a cut pagemap: unknown, not 0
        data["pages"] = {name: None for name in data["pages"]}
    return data


def _shared(item):
    return _owner(item, shmid=item.shmid, kind=item.kind, name=jsonable(item.name),
                  mapped_by=list(item.mapped_by))


def _vma(item):
    return dict(pid=item.pid, comm=jsonable(item.comm), start=item.start, end=item.end,
                mapped=item.mapped, kind=item.kind, name=jsonable(item.name),
                pages=_pages(item.pages), unlisted=item.unlisted, shmid=item.shmid)


def _content(scan):
    if scan is None:
        return None
    data = jsonable(scan)
    data.update(distinct=scan.distinct, dedup_saving=scan.dedup_saving,
                compression_ratio=scan.compression_ratio)
    return data


def report_json(report, scan=None, moving=None):
    """The ``--format json`` document (schema in docs/commands/size.md)."""
    return stamped("size", {
        "directory": report.directory,
        "disk": jsonable(report.disk),
        "files": jsonable(report.files),
        "pages": _pages(report.pages),
        "pages_unknown_pids": list(report.pages_unknown),
        "kinds": jsonable(report.kinds),
        "pages_files": [dict(jsonable(p), expected=p.expected, holes=p.holes)
                        for p in report.pages_files],
        "processes": [_process(p) for p in report.processes],
        "shared": [_shared(s) for s in report.shared],
        "common": jsonable(report.common),
        "vma_kinds": [dict(jsonable(v), pages=_pages(v.pages)) for v in report.vma_kinds],
        "top_vmas": [_vma(v) for v in report.top_vmas],
        "parent_chain": [dict(jsonable(link), pages=_pages(link.pages))
                         for link in report.parent_chain],
        "dump_stats": dict(report.dump_stats),
        "notes": list(report.notes),
        "content": _content(scan),
        "transfer": None if moving is None else {
            "rate": moving.rate,
            "items": [{"what": i.what, "bytes": i.nbytes, "seconds": i.seconds}
                      for i in moving.items]},
    })


# -- tables --------------------------------------------------------------------------------------

_SIZE_COLUMNS = (("present", "PRESENT"), ("parent", "PARENT"), ("lazy", "LAZY"))


def _page_cells(counts):
    return {"present": human_bytes(counts.present_bytes),
            "parent": human_bytes(counts.parent_bytes),
            "lazy": human_bytes(counts.lazy * PAGE_SIZE)}


def _heading(out, text):
    out.write(f"\n{text}\n")


def _at_least(report):
    """``at least `` when some process's pages are unknown: the totals leave them out."""
    return "at least " if report.pages_unknown else ""


def _unknown_text(report):
    """The pids the page totals leave out (their pagemap missing or cut)."""
    if not report.pages_unknown:
        return ""
    return f"; {unknown_pages_text(report.pages_unknown)} (?: pagemap unreadable)"


def summary_fields(report):
    """``(label, text)`` of the first lines: the directory, disk, pages, CRIU's stats."""
    disk, pages = report.disk, report.pages
    fields = [("checkpoint", safe_text(report.directory)),
              ("on disk", f"{human_bytes(disk.apparent)} apparent ({disk.apparent} bytes), "
                          f"{human_bytes(disk.allocated)} allocated, {disk.files} files"),
              ("pages", _at_least(report) +
                        f"{pages.present} present ({human_bytes(pages.present_bytes)}), "
                        f"{pages.parent} in parent/ ({human_bytes(pages.parent_bytes)}), "
                        f"{pages.lazy} lazy" + _unknown_text(report))]
    stats = report.dump_stats
    if stats:
        fields.append(("CRIU stats", f"{stats.get('pages_written', '-')} pages written, "
                                     f"{stats.get('pages_skipped_parent', '-')} skipped (in "
                                     f"parent), {stats.get('pages_lazy', '-')} lazy; shared "
                                     f"memory {stats.get('shpages_written', '-')} written"))
    return fields


def write_report(report, scan, elapsed, moving, out):
    """The table form: a summary, then one table per view."""
    for label, text in summary_fields(report):
        out.write(f"{label:<12}{text}\n")
    _write_kinds(report, out)
    _write_owners(report, out)
    _write_vma_kinds(report, out)
    if report.top_vmas:
        _write_top(report, out)
    if report.parent_chain:
        _write_chain(report, out)
    if scan is not None:
        _write_content(report, scan, elapsed, out)
    if moving is not None:
        _write_transfer(moving, out)
    for note in report.notes:
        out.write(f"note: {safe_text(note)}\n")


def kinds_table(report):
    """``(rows, columns)`` of the image kinds."""
    whole = report.apparent
    rows = [{"kind": k.kind, "files": k.files, "apparent": human_bytes(k.apparent),
             "allocated": human_bytes(k.allocated), "share": percent(k.apparent, whole),
             "largest": f"{k.largest} ({human_bytes(k.largest_apparent)})"}
            for k in report.kinds if k.files]
    rows.append({"kind": "total", "files": report.disk.files,
                 "apparent": human_bytes(whole), "allocated": human_bytes(report.allocated),
                 "share": percent(whole, whole), "largest": ""})
    return rows, (("kind", "KIND"), ("files", "FILES"), ("apparent", "APPARENT"),
                  ("allocated", "ALLOCATED"), ("share", "SHARE"), ("largest", "LARGEST"))


def _write_kinds(report, out):
    _heading(out, "By image kind")
    write_table(*kinds_table(report), out)


def owner_label(item):
    """A process as ``PID COMM``, a shared-memory object as ``shmem ID NAME``."""
    if hasattr(item, "pid"):
        return f"{item.pid} {safe_text(item.comm or '?')}"
    return f"shmem {item.shmid}" + (f" {safe_text(item.name)}" if item.name else "")


def owners_table(report):
    """``(rows, columns)`` of the processes and shared objects and what they hold."""
    rows = []
    for item in report.processes:
        cells = _page_cells(item.pages)
        if item.pages_unknown:
            cells = {name: "?" for name in cells}
        rows.append(dict(cells, owner=owner_label(item),
                         threads=item.threads, pages_file=item.pages_file,
                         pages_disk=human_bytes(item.pages_disk.apparent),
                         metadata=human_bytes(item.metadata_disk.apparent),
                         files=item.disk.files))
    for item in report.shared:
        rows.append(dict(_page_cells(item.pages), owner=owner_label(item),
                         pages_file=item.pages_file,
                         pages_disk=human_bytes(item.pages_disk.apparent),
                         metadata=human_bytes(item.metadata_disk.apparent),
                         files=item.disk.files))
    rows.append({"owner": "checkpoint-wide images", "metadata": human_bytes(
        report.common.apparent), "files": report.common.files})
    return rows, ((("owner", "OWNER"), ("threads", "THR")) + _SIZE_COLUMNS +
                  (("pages_file", "PAGES FILE"), ("pages_disk", "PAGE DATA"),
                   ("metadata", "METADATA"), ("files", "FILES")))


def _write_owners(report, out):
    _heading(out, "By process (pages by state; disk = its pages file + its own images)")
    write_table(*owners_table(report), out)


def vma_kinds_table(report):
    """``(rows, columns)`` of the VMA kinds."""
    rows = [dict(_page_cells(v.pages), kind=v.kind, vmas=v.vmas, mapped=human_bytes(v.mapped),
                 unlisted=human_bytes(v.unlisted * PAGE_SIZE)) for v in report.vma_kinds]
    return rows, ((("kind", "KIND"), ("vmas", "VMAS"), ("mapped", "MAPPED")) +
                  _SIZE_COLUMNS + (("unlisted", "UNLISTED"),))


def _write_vma_kinds(report, out):
    _heading(out, "By VMA kind (unlisted: mapped, not in any pagemap entry)")
    write_table(*vma_kinds_table(report), out)


def _write_top(report, out):
    _heading(out, f"Biggest {len(report.top_vmas)} VMAs")
    rows = [dict(_page_cells(v.pages), pid=v.pid, comm=v.comm or "?",
                 range=address_range(v.start, v.end), kind=v.kind, name=v.name,
                 mapped=human_bytes(v.mapped)) for v in report.top_vmas]
    write_table(rows, (("pid", "PID"), ("comm", "COMM"), ("range", "ADDRESS"), ("kind", "KIND"),
                       ("mapped", "MAPPED")) + _SIZE_COLUMNS + (("name", "MAPPING"),), out)


def _write_chain(report, out):
    _heading(out, "parent/ chain (pre-dumps this checkpoint builds on)")
    rows = [dict(_page_cells(link.pages), depth="parent/" * link.depth,
                 directory=link.directory, files=link.disk.files,
                 apparent=human_bytes(link.disk.apparent)) for link in report.parent_chain]
    write_table(rows, (("depth", "LINK"), ("files", "FILES"), ("apparent", "APPARENT"),
                       ("present", "PRESENT"), ("parent", "PARENT"), ("lazy", "LAZY"),
                       ("directory", "DIRECTORY")), out)


def _content_line(label, pages, whole):
    return {"what": label, "pages": pages, "bytes": human_bytes(pages * PAGE_SIZE),
            "share": percent(pages, whole)}


def content_heading(scan, elapsed):
    """The line above the page-contents table: what was read, how fast, how exact."""
    rate = f", {human_bytes(scan.bytes_read / elapsed)}/s" if elapsed else ""
    exact = "exact" if scan.exact else \
        f"duplicates scaled from a 1/{round(1 / scan.sample_rate)} content sample"
    return (f"Page contents (read {human_bytes(scan.bytes_read)} in "
            f"{human_seconds(elapsed)}{rate}; {scan.hash_name} digests, {exact})")


#: The page-content categories of ``size --content``: (field of the scan, label).
CONTENT_PARTS = (("zero", "zero pages"), ("dup_within", "duplicates within a process"),
                 ("dup_across", "duplicates across processes"), ("unique", "unique"),
                 ("unreadable", "unreadable (missing from the pages file)"))


def content_table(scan):
    """``(rows, columns)`` of the page contents: categories, dedup and zstd estimates."""
    whole = scan.pages
    rows = [_content_line(label, getattr(scan, name), whole) for name, label in CONTENT_PARTS
            if name != "unreadable" or scan.unreadable]
    rows.append({"what": "dedup would save", "bytes": human_bytes(scan.dedup_saving),
                 "share": percent(scan.dedup_saving, scan.pages * PAGE_SIZE)})
    if scan.compressed_estimate is not None:
        sampled = "all" if scan.sampled_bytes == scan.bytes_read else \
            f"{human_bytes(scan.sampled_bytes)} sampled"
        rows.append({"what": f"{scan.compressor} -{scan.compression_level} estimate "
                             f"({sampled})",
                     "bytes": human_bytes(scan.compressed_estimate),
                     "share": percent(scan.compressed_estimate, scan.bytes_read)})
        rows.append({"what": "dedup + zstd estimate",
                     "bytes": human_bytes(scan.dedup_compressed_estimate),
                     "share": percent(scan.dedup_compressed_estimate, scan.bytes_read)})
    return rows, (("what", "PAGE DATA"), ("pages", "PAGES"), ("bytes", "BYTES"),
                  ("share", "SHARE"))


def _write_content(report, scan, elapsed, out):
    _heading(out, content_heading(scan, elapsed))
    write_table(*content_table(scan), out)
    names = {s.shmid: s.name for s in report.shared}
    owners = []
    for item in scan.owners:
        if item.pid is not None:
            owner = f"{item.pid} {safe_text(item.comm or '?')}"
        else:
            name = names.get(item.shmid)
            owner = f"shmem {item.shmid}" + (f" {safe_text(name)}" if name else "")
        owners.append({"owner": owner, "pages": item.pages, "zero": item.zero,
                       "within": item.dup_within, "across": item.dup_across,
                       "unique": item.unique, "unreadable": item.unreadable or None})
    out.write("\n")
    write_table(owners, (("owner", "OWNER"), ("pages", "PAGES"), ("zero", "ZERO"),
                         ("within", "DUP WITHIN"), ("across", "DUP ACROSS"),
                         ("unique", "UNIQUE"), ("unreadable", "UNREADABLE")), out)


_TRANSFER_LABELS = {
    "whole": "whole (this directory + its pages in parent/)",
    "in_parent": "already held by the parent/ chain",
    "this": "this directory (after the chain was sent)",
    "compressed": "this directory, page data zstd-compressed (estimate)",
    "deduplicated_compressed": "this directory, page data deduplicated + zstd (estimate)",
}


def transfer_table(moving):
    """``(heading, rows, columns)`` of the transfer estimate."""
    rows = [{"what": _TRANSFER_LABELS.get(i.what, i.what), "bytes": human_bytes(i.nbytes),
             "time": human_seconds(i.seconds)} for i in moving.items]
    return (f"Transfer at {human_rate(moving.rate)}", rows,
            (("what", "WHAT"), ("bytes", "BYTES"), ("time", "TIME")))


def _write_transfer(moving, out):
    heading, rows, columns = transfer_table(moving)
    _heading(out, heading)
    write_table(rows, columns, out)


def register(group):
    """Add ``size`` to the CLI group."""
    group.add_command(size_command)
