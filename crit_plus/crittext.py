"""crit's explorer text (``crit x DIR ps|fds|mems|rss``), from :mod:`crit_plus.analysis.crit_x`.

Each function yields the lines CRIU 4.2.1's crit prints (``crit/crit/__main__.py``:
the same ``%`` formats, the same widths), so that scripts parsing crit's output
keep working; where crit prints something wrong the line holds the right fact
instead (docs/commands/x.md lists each place):

- names with bytes that are not UTF-8, or with control characters, are escaped
  (:func:`crit_plus.render.safe_text`); crit prints ``b'...'`` (pycriu hands such a
  ``string`` field over as ``bytes``), or the raw control characters;
- a unix socket name is crit's quoted-printable form (pycriu's ``unix_name``
  conversion) without the soft line breaks and literal newlines ``quopri`` puts in
  names longer than 76 characters or holding a newline;
- a file crit cannot name (a memfd behind a mapping: crit's ``unknown path``) is
  named by the graph.

``x sk`` has no crit counterpart: its lines follow ``x fds``' layout.
"""

from __future__ import annotations

import binascii

from .describe import enum_text, netlink_protocol, netlink_state
from .files import SockFamily
from .render import safe_text

# CRIU's VMA status bits (criu/include/image.h) and mmap's MAP_GROWSDOWN, as crit tests them
_REGULAR, _STACK, _VSYSCALL, _VDSO = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_PRIVATE, _FILE_SHARED, _ANON_SHARED = 1 << 6, 1 << 7, 1 << 8
_SYSVIPC, _SOCKET = 1 << 10, 1 << 11
_GROWSDOWN = 0x0100


def unix_name_text(name: bytes) -> str:
    """A unix socket name as crit shows it: quoted-printable (``/dev/log=00``), in one
    piece (``binascii.b2a_qp`` in binary mode, soft line breaks taken out)."""
    encoded = binascii.b2a_qp(name, quotetabs=False, istext=False, header=False)
    return encoded.replace(b"=\n", b"").decode("ascii")


def file_text(file) -> str:
    """What crit names an :class:`~crit_plus.analysis.crit_x.XFile` by (``get_file_str``)."""
    if file.type == "REG":
        if file.kind is None or file.kind == "file":
            return safe_text(file.path) if file.path else "unknown path"
        return safe_text(file.name) if file.name else "unknown path"
    if file.type == "PIPE":
        return f"pipe[{file.pipe_id}]" if file.pipe_id is not None else "pipe[?]"
    if file.type == "UNIXSK":
        if file.ino is None:
            return "unix[?]"
        name = f" {unix_name_text(file.unix_name)}" if file.unix_name else ""
        return f"unix[{file.ino} ({file.peer_ino}){name}]"
    return f"{file.type}.{file.id}"


def ps_lines(rows):
    """``x ps``: a header, then one line per process, children indented 4 per level."""
    yield "%7s%7s%7s   %s" % ("PID", "PGID", "SID", "COMM")
    for row in rows:
        yield "%7d%7d%7d   %s%s" % (row.pid, row.pgid, row.sid, " " * (4 * row.depth),
                                    safe_text(row.comm or ""))


def fds_lines(table):
    """``x fds``: each process's pid, its fds, cwd and root."""
    for item in table:
        yield "%d" % item.pid
        for fd in item.fds:
            yield "\t%7d: %s" % (fd.fd, file_text(fd.file))
        for label, file in (("cwd", item.cwd), ("root", item.root)):
            if file is not None:
                yield "\t%7s: %s" % (label, file_text(file))


class _ShmIds:
    """crit's ``vma_id``: shared objects numbered 1, 2... in order of first appearance."""

    def __init__(self):
        self.ids = {}

    def get(self, shmid):
        return self.ids.setdefault(shmid, len(self.ids) + 1)


def _vma_name(vma, ids):
    status = vma.status
    if status & _SYSVIPC:
        name = " ips[%x]" % ids.get(vma.shmid)
    elif status & _ANON_SHARED:
        name = " shmem[%x]" % ids.get(vma.shmid)
    elif status & _SOCKET:
        name = " packet[%x]" % ids.get(vma.shmid)
    elif status & (_FILE_PRIVATE | _FILE_SHARED):
        name = " " + file_text(vma.file)
        if vma.pgoff:
            name += " + %#x" % vma.pgoff
        if status & _FILE_SHARED:
            name += " (s)"
    elif status & _STACK:
        name = " [stack]"
    elif status & _VSYSCALL:
        name = " [vsyscall]"
    elif status & _VDSO:
        name = " [vdso]"
    elif vma.flags & _GROWSDOWN:
        name = " [stack?]"
    else:
        name = ""
    if not status & _REGULAR:
        name += " *"
    return name


def _prot(prot):
    return ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-")


def mems_lines(table):
    """``x mems``: each process's pid, executable and VMAs (shared objects numbered
    across the whole checkpoint, as crit does)."""
    ids = _ShmIds()
    for item in table:
        yield "%d" % item.pid
        if item.vmas is None:
            continue
        exe = file_text(item.exe) if item.exe is not None else "unknown path"
        yield "\t%-36s    %s" % ("exe", exe)
        for vma in item.vmas:
            yield "\t%-36s%s%s" % ("%08x-%08x" % (vma.start, vma.end), _prot(vma.prot),
                                   _vma_name(vma, ids))


def rss_lines(table):
    """``x rss``: each process's pid, then each pagemap entry (after the head) with the
    VMAs it overlaps (``~``: the one the previous entry ended in), one per line."""
    pad = "\n\t%23s" % ""
    for item in table:
        yield "%d" % item.pid
        if item.lines is None:
            continue
        for line in item.lines:
            text = " ~" + pad if line.again else ""
            for index in line.vmas:
                vma = item.vmas[index]
                text += " %08x / %-8d" % (vma.start, (vma.end - vma.start) >> 12)
                if vma.status & (_FILE_PRIVATE | _FILE_SHARED):
                    text += " " + file_text(vma.file)
                text += pad
            yield "%-24s%s" % ("\t%x / %-8d" % (line.vaddr, line.nr_pages), text)


def socket_text(row) -> str:
    """One socket in ``x sk``: ``unix[ino (peer) name]`` as ``x fds`` shows it, else
    ``FAMILY[ino TYPE local -> remote STATE]``."""
    family = enum_text(row.family) or "?"
    if row.family == SockFamily.UNIX:
        name = row.details.get("name_bytes")
        shown = f" {unix_name_text(name)}" if name else ""
        return f"unix[{row.ino} ({row.peer_ino or 0}){shown}]"
    if row.family == SockFamily.NETLINK:
        kind, state = netlink_protocol(row.proto), netlink_state(row.state)
    else:
        kind, state = enum_text(row.type), enum_text(row.state)
        if row.proto is not None and int(row.proto):
            kind = enum_text(row.proto)
    ident = row.ino if row.ino is not None else row.file_id
    parts = [str(ident), kind or "?", safe_text(row.local or "*")]
    if row.remote:
        parts += ["->", safe_text(row.remote)]
    if state:
        parts.append(str(state).upper())
    return f"{family}[{' '.join(parts)}]"


def sk_lines(rows, pids):
    """``x sk``: each process's pid (``pids``: pstree order), then its socket fds,
    laid out as ``x fds`` lays out fds."""
    held = {}
    for row in rows:
        for end in row.holders:
            held.setdefault(end.pid, []).append((end.fd, row))
    for pid in pids:
        yield "%d" % pid
        for fd, row in sorted(held.get(pid, ()), key=lambda item: item[0]):
            yield "\t%7d: %s" % (fd, socket_text(row))


__all__ = ["fds_lines", "file_text", "mems_lines", "ps_lines", "rss_lines", "sk_lines",
           "socket_text", "unix_name_text"]
