"""Damaged copies of real checkpoints, made deterministically for the fuzz suite.

Two kinds of damage (docs/robustness.md lists them):

- *image damage*: the bytes of one metadata image → other bytes.  Truncation
  at every entry boundary (and just inside the size prefix and the message),
  truncation at random offsets, single bit flips, a size prefix set to a huge
  value, a wrong head or image magic, and the entries of another image kind
  under this image's magic.  :func:`image_damages` yields them as
  :class:`ImageDamage` ``(label, data)``.
- *directory damage*: one thing wrong in a checkpoint directory — an image
  missing, a directory / FIFO / socket / link to ``/dev/zero`` / link loop
  where an image should be, an unreadable image, ``parent/`` loops and dangling
  links, pages files shorter or longer than their pagemaps.
  :func:`directory_damages` yields :class:`DirectoryDamage` s that apply
  themselves to a private copy made with :func:`clone`.

Everything random comes from a ``random.Random`` the caller seeds, so a
failure names a label that reproduces it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from decoders.image import open_image
from decoders.kinds import raw_kind

_U32 = struct.Struct("<I")
#: Values a size prefix is set to: all ones and the largest signed (one past the
#: end of the file is added per entry).
HUGE = (0xFFFFFFFF, 0x7FFFFFFF)


@dataclass(frozen=True)
class ImageDamage:
    """Damaged bytes of one image and a label saying what was done."""

    label: str
    data: bytes


def is_metadata(name):
    """True for images with a magic and entries (not pages, not logs, not raw)."""
    return (name.endswith(".img") or name in ("stats-dump", "stats-restore")) \
        and not raw_kind(name)


def metadata_images(directory):
    """The metadata images of a checkpoint directory, sorted by name."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_file() and not p.is_symlink() and is_metadata(p.name))


def entry_offsets(path):
    """Offsets of the header fields and of each entry of a *valid* image, and its size.

    ``[0, 4, (8,) entry0, entry1, ...]``: where a truncation leaves whole
    entries.  Payload images are walked with their payloads.
    """
    with open_image(path) as image:
        offsets = [0, 4] + ([8] if image.head_magic is not None else [])
        offsets.extend(entry.offset for entry in image.entries())
        return sorted(set(offsets)), image.size


def truncations(data, offsets, rng, samples):
    """Cuts at every boundary (and 2 and 5 bytes past it: inside the size prefix and
    inside the message), plus ``samples`` random cuts."""
    cuts = set()
    for offset in offsets:
        cuts.update(offset + delta for delta in (0, 2, 5))
    if len(data) > 1:
        cuts.update(rng.randrange(1, len(data)) for _ in range(samples))
    for cut in sorted(c for c in cuts if c < len(data)):
        yield ImageDamage(f"truncated@{cut:#x}", data[:cut])


def bit_flips(data, rng, count):
    """``count`` copies with one random bit flipped."""
    for _ in range(count if data else 0):
        at = rng.randrange(len(data))
        bit = rng.randrange(8)
        damaged = bytearray(data)
        damaged[at] ^= 1 << bit
        yield ImageDamage(f"flip@{at:#x}.{bit}", bytes(damaged))


def huge_sizes(data, offsets, entries_at, pick):
    """The size prefix of each entry in ``pick`` (indexes of the entry list) set to huge values."""
    entries = [o for o in offsets if o >= entries_at and o + 4 <= len(data)]
    for index in pick(len(entries)):
        offset = entries[index]
        for value in HUGE + (len(data) - offset - 3,):
            damaged = bytearray(data)
            _U32.pack_into(damaged, offset, value & 0xFFFFFFFF)
            yield ImageDamage(f"size[{index}]@{offset:#x}={value:#x}", bytes(damaged))


def wrong_magics(data, entries_at, other_magic, rng):
    """A random head magic, a random image magic, and the magic of another image kind."""
    if len(data) < entries_at:
        return
    magic_at = entries_at - 4
    for label, at, value in (("head-magic", 0, rng.getrandbits(32)),
                             ("magic", magic_at, rng.getrandbits(32)),
                             ("magic-of-other-kind", magic_at, other_magic)):
        if label == "head-magic" and entries_at == 4:
            continue  # inventory.img has no head magic
        damaged = bytearray(data)
        _U32.pack_into(damaged, at, value)
        yield ImageDamage(f"{label}={value:#010x}", bytes(damaged))


def foreign_entries(data, entries_at, other):
    """This image's magics followed by the entries of ``other`` (another kind's image)."""
    other_data, other_entries_at, other_name = other
    yield ImageDamage(f"entries-of={other_name}",
                      data[:entries_at] + other_data[other_entries_at:])


def kind(label):
    """The kind of damage a label names: ``truncated``, ``flip``, ``size``, ``magic``, ..."""
    return re.split(r"[@\[=:]", label, maxsplit=1)[0]


def stratified(cases, count, rng):
    """Up to ``count`` of ``cases``, taking each kind of damage in turn."""
    groups = {}
    for case in cases:
        groups.setdefault(kind(case.label), []).append(case)
    for group in groups.values():
        rng.shuffle(group)
    picked = []
    while len(picked) < count and any(groups.values()):
        for name in sorted(groups):
            if groups[name] and len(picked) < count:
                picked.append(groups[name].pop())
    return picked


def header_of(path):
    """``(entries offset, image magic)`` of a valid image."""
    with open_image(path) as image:
        entries_at = 8 if image.head_magic is not None else 4
        return entries_at, image.magic


def image_damages(path, rng, *, full=True, other=None):
    """Every damage of the image at ``path``.

    ``full`` truncates at every boundary and flips 12 bits; otherwise a sample
    (a few boundaries, 4 flips).  ``other`` is ``(bytes, entries offset, name)``
    of an image of another kind, for the wrong-magic and wrong-type cases.
    """
    data = Path(path).read_bytes()
    offsets, _size = entry_offsets(path)
    entries_at, _magic = header_of(path)
    if not full:
        keep = sorted(rng.sample(offsets, min(len(offsets), 4)))
        offsets = keep
    yield from truncations(data, offsets, rng, samples=4 if full else 2)
    yield from bit_flips(data, rng, 12 if full else 4)

    def pick(count):
        if count == 0:
            return []
        if full and count <= 4:
            return range(count)
        return sorted({0, count - 1, rng.randrange(count)})

    yield from huge_sizes(data, offsets if full else entry_offsets(path)[0], entries_at, pick)
    if other is not None:
        other_data, other_entries_at, _name = other
        other_magic = _U32.unpack_from(other_data, other_entries_at - 4)[0]
        yield from wrong_magics(data, entries_at, other_magic, rng)
        yield from foreign_entries(data, entries_at, other)


# -- directories ---------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    """Where the damaged copies of a test go, removed when the test ends: :func:`clone`
    hard-links the session's fixture files, and extra links must not outlive the test
    (tarfile, for one, archives a file with several links as a hard link)."""
    directory = tmp_path / "work"
    directory.mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def clone(source, target):
    """A private copy of the checkpoint directory ``source`` at ``target``.

    Regular files are hard-linked when possible (nothing is copied; damage
    always replaces a file, never writes into one), symlinks are recreated,
    sub-directories are copied recursively.  Clone into :func:`workspace`.
    """
    target = Path(target)
    target.mkdir(parents=True)
    for entry in os.scandir(source):
        dest = target / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), dest)
        elif entry.is_dir():
            clone(entry.path, dest)
        else:
            try:
                os.link(entry.path, dest)
            except OSError:
                shutil.copy2(entry.path, dest)
    return target


def replace(path, data):
    """Put ``data`` at ``path`` as a new file (the old inode, maybe shared, is untouched)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(data)


@dataclass(frozen=True)
class DirectoryDamage:
    """One thing wrong in a checkpoint directory.

    ``apply(directory)`` damages a private copy and returns the path of the
    damaged thing (what ``decode``/``show``/``info`` are run on).
    """

    label: str
    apply: Callable[[Path], Path]


def _instead(label, name, make):
    """Damage: image ``name`` removed and ``make(path)`` put in its place (None: nothing)."""
    def apply(directory):
        path = directory / name
        data = path.read_bytes()
        path.unlink()
        if make is not None:
            make(path, data)
        return path
    return DirectoryDamage(f"{label}:{name}", apply)


def _a_directory(path, _data):
    path.mkdir()
    (path / "inventory.img").write_bytes(b"")  # something inside, to tempt a walker


def _a_fifo(path, _data):
    os.mkfifo(path)


def _a_socket(path, _data):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(os.fspath(path))
    except OSError:  # a path too long for sun_path: a FIFO says the same thing
        os.mkfifo(path)
    finally:
        server.close()


def _a_link_to(target):
    return lambda path, _data: os.symlink(target, path)


def _unreadable_copy(path, data):
    path.write_bytes(data)  # its own inode: the fixture's stays as it is
    os.chmod(path, 0)


def _special_files(name):
    """What can stand where image ``name`` should be."""
    return [_instead("directory-instead", name, _a_directory),
            _instead("fifo-instead", name, _a_fifo),
            _instead("socket-instead", name, _a_socket),
            _instead("devzero", name, _a_link_to("/dev/zero")),
            _instead("link-loop", name, _a_link_to(name)),
            _instead("unreadable", name, _unreadable_copy)]


def _resized(name, how):
    def apply(directory):
        path = directory / name
        data = path.read_bytes()
        if how == "empty":
            data = b""
        elif how == "shorter":
            data = data[: len(data) // 2 - 123]
        else:
            data = data + b"\xa5" * 4096 * 3 + b"tail"
        replace(path, data)
        return path
    return DirectoryDamage(f"pages-{how}:{name}", apply)


def _parent(kind):
    def apply(directory):
        link = directory / "parent"
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        if kind == "self":
            os.symlink(".", link)
        elif kind == "dangling":
            os.symlink("../no-such-pre-dump", link)
        elif kind == "loop-pair":
            # directory/parent -> twin; twin/parent -> directory (a two-step loop)
            twin = directory.parent / (directory.name + "-twin")
            if twin.exists():
                shutil.rmtree(twin)
            clone(directory, twin)
            os.symlink(os.path.relpath(twin, directory), link)
            os.symlink(os.path.relpath(directory, twin), twin / "parent")
        elif kind == "symlink-loop":
            os.symlink("parent", link)  # parent -> parent: ELOOP
        elif kind == "file":
            link.write_bytes(b"not a directory")
        return link
    return DirectoryDamage(f"parent-{kind}", apply)


#: Images where a directory, FIFO, socket or device link is tried (the rest: missing only).
SPECIAL_TARGETS = ("inventory.img", "pstree.img", "files.img")


def directory_damages(directory, *, full=True):
    """Every directory damage for the checkpoint at ``directory``.

    With ``full`` every image is removed in turn, else the key ones (inventory,
    pstree, files and the first process's core, ids, fs, mm, pagemap and pages
    file); the special-file cases are tried on the key images (a few of them
    without ``full``); the pages files are made empty, shorter and longer.
    """
    directory = Path(directory)
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink())
    first = sorted((n for n in names if n.startswith("core-")), key=_number)[:1]
    pid = first[0][5:-4] if first else None
    special = [n for n in SPECIAL_TARGETS if n in names]
    if pid is not None:
        special += [n for n in (f"core-{pid}.img", f"mm-{pid}.img", f"pagemap-{pid}.img")
                    if n in names]
    pages = sorted((n for n in names if n.startswith("pages-")), key=_number)
    key_images = special + [n for n in (f"ids-{pid}.img", f"fs-{pid}.img") if n in names] + \
        pages[-1:]
    damages = [_instead("missing", name, None) for name in (names if full else key_images)]
    for name in (special + pages[-1:]) if full else special[:3]:
        damages += _special_files(name)
    for name in pages if full else pages[-1:]:
        damages += [_resized(name, how) for how in ("empty", "shorter", "longer")]
    damages += [_parent(kind) for kind in ("self", "dangling", "loop-pair", "symlink-loop",
                                           "file")]
    return damages


def _number(name):
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits or 0)


# -- snapshots (the read-only guarantee) ---------------------------------------------------


def tree_state(top):
    """Everything a write could change under ``top``: for each entry its type,
    mode, size, mtime and ctime (ns) and a digest of its bytes or its link target."""
    import hashlib

    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                digest = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                digest = digest.hexdigest()
            else:
                digest = None
            state[os.path.relpath(path, top)] = (stat.S_IFMT(info.st_mode),
                                                stat.S_IMODE(info.st_mode), info.st_size,
                                                info.st_mtime_ns, info.st_ctime_ns, digest)
    return state
