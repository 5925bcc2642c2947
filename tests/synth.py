"""Build synthetic CRIU checkpoints for tests, with pycriu's message classes and
the real framing.

Images written here are what CRIU writes, byte for byte in layout::

    IMAGE  ::= u32 IMG_COMMON (0x54564319)  u32 MAGIC  { u32 SIZE  MESSAGE [PAYLOAD] }
    inventory.img ::= u32 INVENTORY_MAGIC  { u32 SIZE MESSAGE }     (no head magic)
    pages-<id>.img ::= raw page data, no header

Message classes come from ``decoders.schema.get_schema().message_class(name)``
and magics from ``get_schema().magic_by_name``, so a test exercises the same
schema the decoders use.  Required fields left unset are filled with zeros
(``fill_required``) unless ``partial=True`` is asked for, which is how
corruption tests write entries a real CRIU never would.

Typical use::

    ck = CheckpointBuilder(tmp_path / "ck")
    ck.inventory()
    ck.pstree([proc(1)])
    ck.process(1, vmas=[vma(0x10000, 0x14000)],
               runs=[run(0x10000, 2, PRESENT, b"A" * 8192)])
    checkpoint = crit_plus.open_checkpoint(ck.directory)
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from decoders.flags import PAGE_SIZE, MapFlags, PageFlags, Prot, VmaStatus
from decoders.schema import get_schema

IMG_COMMON = 0x54564319

PARENT = int(PageFlags.PARENT)
LAZY = int(PageFlags.LAZY)
PRESENT = int(PageFlags.PRESENT)

_U32 = struct.Struct("<I")


# -- messages ---------------------------------------------------------------------------


def message_class(name):
    """The pycriu message class ``name`` (``pagemap_entry``, ``core_entry``, ...)."""
    cls = get_schema().message_class(name)
    if cls is None:
        raise LookupError(f"the loaded schema has no message {name}")
    return cls


def _zero(field):
    if field.type == field.TYPE_STRING:
        return ""
    if field.type == field.TYPE_BYTES:
        return b""
    if field.type == field.TYPE_BOOL:
        return False
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values[0].number
    if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        return 0.0
    return 0


def fill_required(msg):
    """Set every unset required field of ``msg`` (recursively) to zero / empty."""
    for field in msg.DESCRIPTOR.fields:
        if field.label == field.LABEL_REPEATED:
            if field.type == field.TYPE_MESSAGE:
                for item in getattr(msg, field.name):
                    fill_required(item)
            continue
        if field.type == field.TYPE_MESSAGE:
            if field.label == field.LABEL_REQUIRED or msg.HasField(field.name):
                sub = getattr(msg, field.name)
                sub.SetInParent()
                fill_required(sub)
        elif field.label == field.LABEL_REQUIRED and not msg.HasField(field.name):
            setattr(msg, field.name, _zero(field))
    return msg


def _assign(msg, values):
    for name, value in values.items():
        field = msg.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            raise KeyError(f"{msg.DESCRIPTOR.name} has no field {name}")
        if field.label == field.LABEL_REPEATED:
            target = getattr(msg, name)
            for item in value:
                if field.type == field.TYPE_MESSAGE:
                    if isinstance(item, dict):
                        _assign(target.add(), item)
                    else:
                        target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif field.type == field.TYPE_MESSAGE:
            if isinstance(value, dict):
                sub = getattr(msg, name)
                sub.SetInParent()
                _assign(sub, value)
            else:
                getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)


def message(type_name, partial=False, **fields):
    """A ``type_name`` message with ``fields`` (dicts for sub-messages, lists for
    repeated fields); unset required fields are zero unless ``partial``."""
    msg = message_class(type_name)()
    _assign(msg, fields)
    if not partial:
        fill_required(msg)
    return msg


# -- framing ------------------------------------------------------------------------------


def magic(name):
    """The magic value of image kind ``name`` (``PSTREE``, ``PAGEMAP``, ...)."""
    return get_schema().magic_by_name[name]


def entry_bytes(entry):
    """``u32 SIZE + MESSAGE [+ PAYLOAD]`` for an entry: a message, raw message
    bytes, or a ``(message_or_bytes, payload)`` tuple."""
    payload = b""
    if isinstance(entry, tuple):
        entry, payload = entry
    data = entry if isinstance(entry, (bytes, bytearray)) else entry.SerializePartialToString()
    return _U32.pack(len(data)) + bytes(data) + bytes(payload)


def image_bytes(magic_name, entries=(), head=True):
    """The bytes of an image of kind ``magic_name`` holding ``entries``."""
    prefix = _U32.pack(IMG_COMMON) if head else b""
    return prefix + _U32.pack(magic(magic_name)) + b"".join(entry_bytes(e) for e in entries)


# -- VMAs and page runs -------------------------------------------------------------------------

_KINDS = {
    # kind: (status, flags)
    "anon": (VmaStatus.REGULAR | VmaStatus.ANON_PRIVATE, MapFlags.PRIVATE | MapFlags.ANONYMOUS),
    "heap": (VmaStatus.REGULAR | VmaStatus.HEAP | VmaStatus.ANON_PRIVATE,
             MapFlags.PRIVATE | MapFlags.ANONYMOUS),
    # CRIU never sets VMA_AREA_STACK: a stack is an anonymous VMA growing down
    "stack": (VmaStatus.REGULAR | VmaStatus.ANON_PRIVATE,
              MapFlags.PRIVATE | MapFlags.ANONYMOUS | MapFlags.GROWSDOWN),
    "vdso": (VmaStatus.REGULAR | VmaStatus.VDSO | VmaStatus.ANON_PRIVATE,
             MapFlags.PRIVATE | MapFlags.ANONYMOUS),
    "vvar": (VmaStatus.REGULAR | VmaStatus.VVAR | VmaStatus.ANON_PRIVATE,
             MapFlags.PRIVATE | MapFlags.ANONYMOUS),
    "shared": (VmaStatus.REGULAR | VmaStatus.ANON_SHARED, MapFlags.SHARED | MapFlags.ANONYMOUS),
    "file": (VmaStatus.REGULAR | VmaStatus.FILE_PRIVATE, MapFlags.PRIVATE),
    "file-shared": (VmaStatus.REGULAR | VmaStatus.FILE_SHARED, MapFlags.SHARED),
    "memfd": (VmaStatus.REGULAR | VmaStatus.FILE_SHARED | VmaStatus.MEMFD, MapFlags.SHARED),
}


def vma(start, end, kind="anon", prot=Prot.READ | Prot.WRITE, shmid=0, pgoff=0):
    """A ``vma_entry`` dict for :meth:`CheckpointBuilder.mm` (``kind`` as
    :func:`crit_plus.memory.vma_kind` names it)."""
    status, flags = _KINDS[kind]
    return {"start": start, "end": end, "pgoff": pgoff, "shmid": shmid, "prot": int(prot),
            "flags": int(flags), "status": int(status), "fd": -1}


@dataclass(frozen=True)
class RunSpec:
    """One pagemap entry to write; ``data`` (``npages`` × 4096 bytes) for PE_PRESENT runs.

    ``style`` is how the entry is written: ``new`` (CRIU 4.2: ``nr_pages``,
    field 5, with ``compat_nr_pages`` 0), ``compat`` (before 4.2: field 2) or
    ``in_parent`` (before 3.5: no ``flags``, ``in_parent`` true for PE_PARENT,
    nothing for PE_PRESENT).
    """

    vaddr: int
    npages: int
    flags: int
    data: bytes | None = None
    style: str = "new"


def run(vaddr, npages, flags=PRESENT, data=None, style="new"):
    """A :class:`RunSpec`; a PE_PRESENT run without ``data`` gets a recognisable fill
    (each page starts with ``page@<address>``)."""
    if flags & PRESENT and data is None:
        data = page_pattern(vaddr, npages)
    if data is not None and len(data) != npages * PAGE_SIZE:
        raise ValueError(f"run at {vaddr:#x}: {len(data)} bytes for {npages} pages")
    return RunSpec(vaddr, npages, flags, data, style)


def page_pattern(vaddr, npages, tag=b""):
    """``npages`` pages, each beginning with ``page@<address><tag>`` and padded with
    the address's low byte."""
    pages = []
    for i in range(npages):
        address = vaddr + i * PAGE_SIZE
        head = b"page@%x%s;" % (address, tag)
        pages.append(head + bytes([address >> 12 & 0xFF]) * (PAGE_SIZE - len(head)))
    return b"".join(pages)


def pagemap_entry(spec):
    """The ``pagemap_entry`` message of a :class:`RunSpec`."""
    cls = message_class("pagemap_entry")
    fields = cls.DESCRIPTOR.fields_by_number
    msg = cls()
    msg.vaddr = spec.vaddr
    count_field = fields[2].name  # compat_nr_pages (4.2 schema) or nr_pages (older)
    if spec.style == "new" and 5 in fields:
        setattr(msg, count_field, 0)
        setattr(msg, fields[5].name, spec.npages)
        msg.flags = spec.flags
    elif spec.style in ("new", "compat"):
        setattr(msg, count_field, spec.npages)
        msg.flags = spec.flags
    elif spec.style == "in_parent":
        setattr(msg, count_field, spec.npages)
        if spec.flags & PARENT:
            msg.in_parent = True
    else:
        raise ValueError(spec.style)
    return msg


# -- a checkpoint directory --------------------------------------------------------------------


def proc(pid, ppid=0, pgid=None, sid=None, threads=None):
    """A ``pstree_entry`` dict."""
    return {"pid": pid, "ppid": ppid, "pgid": pgid if pgid is not None else pid,
            "sid": sid if sid is not None else pid,
            "threads": list(threads) if threads is not None else [pid]}


class CheckpointBuilder:
    """Writes the images of one synthetic checkpoint into ``directory``."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._next_pages_id = 1
        self._next_file_id = 1
        self._files = []

    def path(self, name):
        """The path of image ``name`` in the checkpoint."""
        return os.path.join(self.directory, name)

    def write(self, name, magic_name, entries=(), head=True):
        """Write image ``name`` of kind ``magic_name``."""
        with open(self.path(name), "wb") as handle:
            handle.write(image_bytes(magic_name, entries, head))
        return self.path(name)

    def write_raw(self, name, data):
        """Write raw bytes (pages images, or deliberately broken images)."""
        with open(self.path(name), "wb") as handle:
            handle.write(data)
        return self.path(name)

    # -- one image each ------------------------------------------------------------------------
    def inventory(self, **fields):
        """``inventory.img`` (no head magic)."""
        values = {"img_version": 2, "fdinfo_per_id": True}
        values.update(fields)
        return self.write("inventory.img", "INVENTORY", [message("inventory_entry", **values)],
                          head=False)

    def pstree(self, entries):
        """``pstree.img`` from :func:`proc` dicts."""
        return self.write("pstree.img", "PSTREE",
                          [message("pstree_entry", **entry) for entry in entries])

    def flat_pstree(self, count):
        """``pstree.img`` of pids 1..``count``, every one a child of pid 1 in its session
        and group, with no other image: a hostile checkpoint, written fast (one message
        class instance reused: a million entries in seconds)."""
        cls = message_class("pstree_entry")
        entry = cls(ppid=0, pgid=1, sid=1)
        with open(self.path("pstree.img"), "wb") as handle:
            handle.write(_U32.pack(IMG_COMMON) + _U32.pack(magic("PSTREE")))
            for pid in range(1, count + 1):
                entry.pid = pid
                entry.ppid = 1 if pid > 1 else 0
                del entry.threads[:]
                entry.threads.append(pid)
                handle.write(entry_bytes(entry))
        return self.path("pstree.img")

    def core(self, tid, comm="synth", task_state=1, leader=True, uid=0, exit_code=0, **extra):
        """``core-<tid>.img``: x86_64; the task part (state, comm) only for a leader;
        ``extra`` fields replace or add top-level ones (``mtype``, ``ti_aarch64``...)."""
        fields = {"mtype": 1,
                  "thread_core": {"futex_rla": 0, "futex_rla_len": 0, "comm": comm,
                                  "creds": {"uid": uid, "gid": uid, "euid": uid, "egid": uid,
                                            "suid": uid, "sgid": uid, "fsuid": uid,
                                            "fsgid": uid, "secbits": 0}}}
        if leader:
            fields["tc"] = {"task_state": task_state, "exit_code": exit_code, "personality": 0,
                            "flags": 0, "blk_sigset": 0, "comm": comm}
        fields.update(extra)
        return self.write(f"core-{tid}.img", "CORE", [message("core_entry", **fields)])

    def ids(self, pid, files_id=None, vm_id=None):
        """``ids-<pid>.img``."""
        files_id = pid if files_id is None else files_id
        return self.write(f"ids-{pid}.img", "IDS", [message(
            "task_kobj_ids_entry", vm_id=vm_id if vm_id is not None else pid, files_id=files_id,
            fs_id=pid, sighand_id=pid)])

    def fs(self, pid, cwd_id=0, root_id=0):
        """``fs-<pid>.img``."""
        return self.write(f"fs-{pid}.img", "FS",
                          [message("fs_entry", cwd_id=cwd_id, root_id=root_id, umask=0o22)])

    def mm(self, pid, vmas, exe_file_id=0, arg=(0, 0), env=(0, 0), start_stack=0):
        """``mm-<pid>.img`` with ``vmas`` (:func:`vma` dicts), arg/env address ranges and
        ``start_stack``."""
        return self.write(f"mm-{pid}.img", "MM", [message(
            "mm_entry", vmas=vmas, exe_file_id=exe_file_id, mm_arg_start=arg[0],
            mm_arg_end=arg[1], mm_env_start=env[0], mm_env_end=env[1],
            mm_start_stack=start_stack)])

    def pagemap(self, name, runs, pages_id=None, write_pages=True):
        """Write pagemap image ``name`` (``pagemap-<pid>.img`` or
        ``pagemap-shmem-<shmid>.img``) and, unless told not to, its pages file:
        the data of PE_PRESENT runs in entry order.  Returns the pages id."""
        if pages_id is None:
            pages_id = self._next_pages_id
        self._next_pages_id = max(self._next_pages_id, pages_id + 1)
        head = message("pagemap_head", pages_id=pages_id)
        self.write(name, "PAGEMAP", [head] + [pagemap_entry(spec) for spec in runs])
        if write_pages:
            self.write_raw(f"pages-{pages_id}.img",
                           b"".join(spec.data for spec in runs if spec.flags & PRESENT))
        return pages_id

    def add_file(self, fd_type, detail_field=None, **detail):
        """Queue a ``files.img`` entry; returns its id.  ``detail_field`` names the
        sub-message (``reg``, ``usk``, ``memfd``, ...)."""
        file_id = detail.pop("id", None) or self._next_file_id
        self._next_file_id = max(self._next_file_id, file_id + 1)
        fields = {"type": fd_type, "id": file_id}
        if detail_field is not None:
            fields[detail_field] = dict(detail, id=file_id)
        self._files.append(message("file_entry", **fields))
        return file_id

    def add_reg(self, name, size=None, **extra):
        """Queue a regular file entry named ``name``; returns its id."""
        fields = {"name": name, "flags": 0, "pos": 0, "fown": {}}
        if size is not None:
            fields["size"] = size
        fields.update(extra)
        return self.add_file(1, "reg", **fields)

    def files(self):
        """Write ``files.img`` with every queued entry."""
        return self.write("files.img", "FILES", self._files)

    def fdinfo(self, files_id, fds):
        """``fdinfo-<files_id>.img`` from ``(fd, file id, fd type)`` triples."""
        return self.write(f"fdinfo-{files_id}.img", "FDINFO", [
            message("fdinfo_entry", fd=fd, id=file_id, type=fd_type, flags=0)
            for fd, file_id, fd_type in fds])

    def parent(self, target, relative=True):
        """Make ``parent`` a symlink to ``target`` (as ``--prev-images-dir`` does)."""
        target = os.fspath(target)
        link = self.path("parent")
        if relative:
            target = os.path.relpath(target, self.directory)
        os.symlink(target, link)
        return link

    # -- a whole process ----------------------------------------------------------------------
    def reg_id(self, name, **extra):
        """The id of a regular-file entry named ``name``, queued once per name."""
        known = getattr(self, "_reg_ids", None)
        if known is None:
            known = self._reg_ids = {}
        if name not in known:
            known[name] = self.add_reg(name, **extra)
        return known[name]

    def process(self, pid, vmas=(), runs=(), comm="synth", task_state=1, threads=(),
                files_id=None, fds=(), exe="/usr/bin/synth", cwd="/", root="/",
                arg=(0, 0), env=(0, 0), pages_id=None, write_pages=True, start_stack=0):
        """Write core (and thread cores), ids, fs, mm, pagemap, pages and fdinfo of one
        process; ``exe``, ``cwd`` and ``root`` become regular-file entries (write
        them with :meth:`finish`).  With ``write_pages=False`` the caller writes
        ``pages-<id>.img`` itself (runs may then carry no data).  Returns its pages id."""
        self.core(pid, comm=comm, task_state=task_state)
        for tid in threads:
            if tid != pid:
                self.core(tid, comm=f"{comm}-t{tid}", leader=False)
        files_id = pid if files_id is None else files_id
        self.ids(pid, files_id=files_id)
        self.fs(pid, cwd_id=self.reg_id(cwd), root_id=self.reg_id(root))
        self.mm(pid, list(vmas), exe_file_id=self.reg_id(exe), arg=arg, env=env,
                start_stack=start_stack)
        self.fdinfo(files_id, fds)
        return self.pagemap(f"pagemap-{pid}.img", list(runs), pages_id=pages_id,
                            write_pages=write_pages)

    def zombie(self, pid, comm="zombie", exit_code=0):
        """Only ``core-<pid>.img`` with task_state 2 (DEAD), as CRIU writes a zombie."""
        return self.core(pid, comm=comm, task_state=2, exit_code=exit_code)

    def finish(self):
        """Write the images collected along the way (``files.img``)."""
        return self.files()


def minimal(directory, pid=1, vmas=(), runs=(), **process):
    """A one-process checkpoint: inventory, pstree, the process, files; returns the builder."""
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(pid, threads=process.get("threads") or None)])
    builder.process(pid, vmas=vmas, runs=runs, **process)
    builder.finish()
    return builder


# -- a parent/ chain ------------------------------------------------------------------------

#: Where the chain's one VMA starts.
CHAIN_BASE = 0x7F0000000000


def tagged(vaddr, npages, tag):
    """Page data that says which generation wrote it."""
    return page_pattern(vaddr, npages, b"/" + tag)


def build_chain(tmp_path, parent_as="symlink"):
    """Three generations: gen0 (oldest pre-dump), gen1, gen2 (the dump), one VMA of
    8 pages at :data:`CHAIN_BASE`; returns gen2's builder.

    page 0: present in gen0 only;          page 1: rewritten in gen1;
    page 2: rewritten in gen2;             page 3: gen0's, through gen1's PE_PARENT;
    page 4: lazy in gen2;                  pages 5-7: never listed (zeros).
    ``parent_as`` ``symlink``: gen2/parent links to gen1; ``directory``: gen1 is moved
    into gen2 as its parent/ (as CRIU's --prev-images-dir can leave it).
    """
    base, page = CHAIN_BASE, PAGE_SIZE
    vmas = [vma(base, base + 8 * page)]
    gen0 = minimal(tmp_path / "gen0", vmas=vmas,
                   runs=[run(base, 4, PRESENT, tagged(base, 4, b"g0"))])
    gen1 = minimal(tmp_path / "gen1", vmas=vmas, runs=[
        run(base, 1, PARENT),
        run(base + page, 1, PRESENT, tagged(base + page, 1, b"g1")),
        run(base + 2 * page, 2, PARENT),
    ])
    gen1.parent(gen0.directory)
    gen2_dir = tmp_path / ("gen2" if parent_as == "symlink" else "outer")
    gen2 = minimal(gen2_dir, vmas=vmas, runs=[
        run(base, 2, PARENT),
        run(base + 2 * page, 1, PRESENT, tagged(base + 2 * page, 1, b"g2")),
        run(base + 3 * page, 1, PARENT),
        run(base + 4 * page, 1, LAZY),
    ])
    if parent_as == "symlink":
        gen2.parent(gen1.directory)
    else:
        os.rename(gen1.directory, os.path.join(gen2.directory, "parent"))
        os.symlink(os.path.relpath(gen0.directory, os.path.join(gen2.directory, "parent")),
                   os.path.join(gen2.directory, "parent", "parent.tmp"))
        os.remove(os.path.join(gen2.directory, "parent", "parent"))
        os.rename(os.path.join(gen2.directory, "parent", "parent.tmp"),
                  os.path.join(gen2.directory, "parent", "parent"))
    return gen2


# -- names no real dump has: control characters and bytes that are not UTF-8 -----------------

#: Raw bytes put where names go in :func:`hostile_names` (escape sequences, C1 and
#: bidi controls, a line break, bytes that are not UTF-8).
HOSTILE = {
    "comm": b"\x1b[31mev\xff\nl\x85\xe2\x80\xae",
    "path": b"/srv/\x1b]0;owned\x07\xfe\xfd/\r\x9bx.log",
    "socket": b"\0sock\x1b[2J\xff\n",
    "argv": b"prog\x1b[1m\0--name=\xff\xfe\r\n\0",
    "environ": b"KEY=\x1b]0;title\x07\0LANG=\xe9t\xe9\0",
}


def _patch(path, placeholder, raw):
    """Replace ``placeholder`` (same length) by ``raw`` in the file at ``path``: how a
    protobuf ``string`` field gets bytes pycriu would refuse to set."""
    data = open(path, "rb").read()
    assert len(placeholder) == len(raw) and placeholder in data, (path, placeholder)
    with open(path, "wb") as handle:
        handle.write(data.replace(placeholder, raw))


def hostile_names(directory, base=0x7F0000000000):
    """A one-process checkpoint whose comm, file path, socket name, command line and
    environment hold :data:`HOSTILE` bytes; returns the builder."""
    page = PAGE_SIZE
    strings = HOSTILE["argv"] + HOSTILE["environ"]
    data = strings + bytes(page - len(strings))
    arg = (base, base + len(HOSTILE["argv"]))
    env = (arg[1], arg[1] + len(HOSTILE["environ"]))
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)])
    comm_placeholder = "C" * len(HOSTILE["comm"])
    path_placeholder = "/" + "P" * (len(HOSTILE["path"]) - 1)
    log = builder.add_reg(path_placeholder)
    sock = builder.add_file(5, "usk", ino=500, type=1, state=1, flags=0, uflags=0, backlog=0,
                            peer=0, name=HOSTILE["socket"], fown={}, opts={})
    builder.process(1, comm=comm_placeholder, vmas=[vma(base, base + page)],
                    runs=[run(base, 1, PRESENT, data)], fds=[(3, log, 1), (4, sock, 5)],
                    arg=arg, env=env)
    builder.finish()
    _patch(builder.path("core-1.img"), comm_placeholder.encode(), HOSTILE["comm"])
    _patch(builder.path("files.img"), path_placeholder.encode(), HOSTILE["path"])
    return builder
# -- damaging copies of real checkpoints (validate's tests) -------------------------------------


def read_messages(path):
    """``(magic name, has head magic, [message, ...])`` of an image without payloads."""
    from decoders.image import open_image

    with open_image(path) as image:
        messages = [entry.message for entry in image.entries()]
        return image.magic_name, image.head_magic is not None, messages


def rewrite_image(path, edit):
    """Rewrite the image at ``path`` (a copy) after ``edit(messages)`` changed its list of
    messages in place, or returned a new list.  Only for images without payloads; the
    file is made writable first (fixture copies are read-only)."""
    magic_name, head, messages = read_messages(path)
    changed = edit(messages)
    if changed is not None:
        messages = changed
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(image_bytes(magic_name, messages, head))
    return path

def striped(directory, runs, run_pages, base):
    """A one-process checkpoint whose pagemap lists ``runs`` PE_PRESENT runs of
    ``run_pages`` pages from ``base``, one unlisted page after each, in one VMA.

    The pages file is left for the caller to write (benchmarks write GiBs of it
    without holding them in memory); returns its path."""
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)])
    stride = (run_pages + 1) * PAGE_SIZE
    specs = [RunSpec(base + i * stride, run_pages, PRESENT) for i in range(runs)]
    pages_id = builder.process(1, vmas=[vma(base, base + runs * stride)], runs=specs,
                               write_pages=False)
    builder.finish()
    return builder.path(f"pages-{pages_id}.img")


# -- large synthetic checkpoints (benchmarks) ------------------------------------------------


def many_processes(directory, processes=500, vmas=200, fds=16, pages_per_vma=2):
    """A checkpoint of ``processes`` processes with ``vmas`` VMAs each (a quarter of
    them mapping shared libraries), ``fds`` open files each and a pagemap entry of
    ``pages_per_vma`` pages in every VMA.  Pages images are sparse files of the
    right size: metadata readers never look inside them.  Returns the builder."""
    builder = CheckpointBuilder(directory)
    builder.inventory()
    builder.pstree([proc(1)] + [proc(pid, ppid=1) for pid in range(2, processes + 1)])
    libraries = [builder.reg_id(f"/usr/lib/x86_64-linux-gnu/lib{n}.so.1") for n in range(40)]
    logs = [builder.reg_id(f"/var/log/app/{n}.log") for n in range(fds)]
    stride = 0x10000
    base = 0x7F0000000000
    for pid in range(1, processes + 1):
        layout, runs = [], []
        for n in range(vmas):
            start = base + n * stride
            if n % 4 == 0:
                entry = vma(start, start + stride, kind="file", shmid=libraries[n // 4 % 40],
                            prot=Prot.READ | Prot.EXEC)
            else:
                entry = vma(start, start + stride)
            layout.append(entry)
            runs.append(RunSpec(start, pages_per_vma, PRESENT))
        pages_id = builder.process(pid, vmas=layout, runs=runs, comm=f"worker-{pid}",
                                   fds=[(n, logs[n], 1) for n in range(fds)],
                                   write_pages=False)
        with open(builder.path(f"pages-{pages_id}.img"), "wb") as handle:
            handle.truncate(vmas * pages_per_vma * PAGE_SIZE)
    builder.finish()
    return builder
