"""``core-<tid>.img``: one thread's registers, signals, credentials and, for a
group leader, the task's state (``tc``: comm, task_state, exit code)."""

from __future__ import annotations

from .errors import EntryDecodeError, StrPath
from .flags import TaskState
from .image import open_image
from .records import Creds, ThreadCore
from .text import image_text

def _creds(msg):
    if msg is None:
        return None
    return Creds(
        msg.uid, msg.gid, msg.euid, msg.egid, msg.suid, msg.sgid, msg.fsuid, msg.fsgid,
        tuple(msg.groups), tuple(msg.cap_eff), tuple(msg.cap_prm), tuple(msg.cap_bnd),
        image_text(_optional(msg, "lsm_profile")),
        _optional(msg, "no_new_privs"),  # not in older schemas (3.17)
    )


def _optional(msg, name):
    """``msg.name`` if the schema knows the field and it is set, else None."""
    if msg is None or name not in msg.DESCRIPTOR.fields_by_name:
        return None
    return getattr(msg, name) if msg.HasField(name) else None


def _enum_name(msg, name):
    """The name of enum field ``name`` of ``msg`` (the number as text if unnamed)."""
    value = getattr(msg, name)
    named = msg.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


def _xsave_features(core):
    info = _optional(core, "thread_info")
    fpregs = _optional(info, "fpregs")
    xsave = _optional(fpregs, "xsave")
    return _optional(xsave, "xstate_bv")


def read_core(path: StrPath, tid: int) -> ThreadCore:
    """Return the :class:`ThreadCore` of the core image at ``path``."""
    with open_image(path) as image:
        entries = iter(image.entries())
        entry = next(entries, None)
        if entry is None:
            raise EntryDecodeError(image.path, "core_entry", "the image has no entry",
                                   image.size, 0)
    core = entry.message
    task = _optional(core, "tc")
    thread = _optional(core, "thread_core")
    comm = image_text(_optional(thread, "comm") or _optional(task, "comm"))
    seccomp = None
    if thread is not None and thread.HasField("seccomp_mode"):
        seccomp = _enum_name(thread, "seccomp_mode")
    return ThreadCore(
        tid=tid,
        arch=_enum_name(core, "mtype"),
        comm=comm,
        task_state=TaskState.of(task.task_state) if task is not None else None,
        exit_code=task.exit_code if task is not None else None,
        creds=_creds(_optional(thread, "creds")),
        seccomp_mode=seccomp,
        xsave_features=_xsave_features(core),
        blocked_signals=_optional(thread, "blk_sigset"),
        source=entry.source,
        raw=core,
        task_comm=image_text(_optional(task, "comm")) or None,
        cg_set=_cg_set(thread, task),
    )


def _cg_set(thread, task):
    """The thread's cgroup set id: ``thread_core.cg_set``, or ``tc.cg_set`` in old dumps."""
    for part in (thread, task):
        value = _optional(part, "cg_set")
        if value is not None:
            return value
    return None
