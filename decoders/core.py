"""``core-<tid>.img``: one thread's registers, signals, credentials and, for a
group leader, the task's state (``tc``: comm, task_state, exit code)."""

from __future__ import annotations

from .errors import EntryDecodeError, StrPath
from .flags import TaskState
from .image import open_image
from .records import Creds, Registers, ThreadCore
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


def _fields(msg):
    """``((name, value), ...)`` of the set fields of ``msg``, repeated ones as tuples."""
    out = []
    for desc, value in msg.ListFields():
        if desc.message_type is not None:
            value = tuple(_fields(v) for v in value) if _repeated(desc) else _fields(value)
        elif _repeated(desc):
            value = tuple(value)
        out.append((desc.name, value))
    return tuple(out)


def _repeated(desc):
    return desc.label == desc.LABEL_REPEATED


def _registers(core, arch):
    if arch == "X86_64":
        info = _optional(core, "thread_info")
        if info is None:
            return None
        fp = _optional(info, "fpregs")
        xsave = _optional(fp, "xsave")
        fp_fields = tuple(item for item in _fields(fp) if item[0] != "xsave") if fp else ()
        return Registers(arch, _fields(info.gpregs), fp_fields,
                         _fields(xsave) if xsave is not None else ())
    if arch == "AARCH64":
        info = _optional(core, "ti_aarch64")
        if info is None:
            return None
        return Registers(arch, _fields(info.gpregs), _fields(info.fpsimd), (), info.tls)
    return None


def _signals(*queues):
    return tuple(bytes(entry.siginfo) for queue in queues if queue is not None
                 for entry in queue.signals)


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
    arch = _enum_name(core, "mtype")
    seccomp = None
    if thread is not None and thread.HasField("seccomp_mode"):
        seccomp = _enum_name(thread, "seccomp_mode")
    elif _optional(task, "old_seccomp_mode") is not None:  # dumps before CRIU 3.x kept it in tc
        seccomp = _enum_name(task, "old_seccomp_mode")
    return ThreadCore(
        tid=tid,
        arch=arch,
        comm=comm,
        task_state=TaskState.of(task.task_state) if task is not None else None,
        exit_code=task.exit_code if task is not None else None,
        creds=_creds(_optional(thread, "creds")),
        seccomp_mode=seccomp,
        xsave_features=_xsave_features(core),
        blocked_signals=_optional(thread, "blk_sigset"),
        source=entry.source,
        raw=None,
        registers=_registers(core, arch),
        signals=_signals(_optional(thread, "signals_p"), _optional(task, "signals_s")),
        task_flags=task.flags if task is not None else None,
        nice=_optional(thread, "sched_nice"),
        task_comm=image_text(_optional(task, "comm")) or None,
        cg_set=_cg_set(thread, task),
        compat=_compat(core),
        rseq=_rseq(thread),
        seccomp_filter=_seccomp_filter(thread, task),
        seccomp_per_process=_optional(task, "old_seccomp_filter") is not None,
    )


def _seccomp_filter(thread, task):
    """``thread_core.seccomp_filter``, or ``tc.old_seccomp_filter`` in old dumps."""
    value = _optional(thread, "seccomp_filter")
    return value if value is not None else _optional(task, "old_seccomp_filter")


def _compat(core):
    """True for an x86 thread in 32-bit compat mode (``user_x86_regs_mode`` COMPAT)."""
    info = getattr(core, "thread_info", None)
    gpregs = getattr(info, "gpregs", None)
    return bool(getattr(gpregs, "mode", 1) == 2) if gpregs is not None else False


def _rseq(thread):
    """True when the thread had registered restartable sequences (``rseq_entry``)."""
    if thread is None or "rseq_entry" not in thread.DESCRIPTOR.fields_by_name \
            or not thread.HasField("rseq_entry"):
        return False
    return bool(thread.rseq_entry.rseq_abi_pointer)


def _cg_set(thread, task):
    """The thread's cgroup set id: ``thread_core.cg_set``, or ``tc.cg_set`` in old dumps."""
    for part in (thread, task):
        value = _optional(part, "cg_set")
        if value is not None:
            return value
    return None
