"""Which message each image kind holds, what follows its entries, and file names.

Facts from CRIU's image descriptions (``criu/image-desc.c``) and its image
writers; the magic *values* come from the loaded schema's magic table.

An entry of most kinds is one message.  Some kinds differ:

- ``PAGEMAP``: entry 0 is a ``pagemap_head``, the rest ``pagemap_entry``.
- ``GHOST_FILE``: entry 0 is a ``ghost_file_entry``; if its ``chunks`` is set,
  ``ghost_chunk_entry`` entries follow, each followed by ``len`` bytes of file
  data; otherwise the rest of the file is the file's data.
- Payload kinds: raw bytes follow each entry, sized by a field of it (see
  :class:`PayloadRule`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .lazy import LazyPattern


def round_up(value: int, alignment: int) -> int:
    """Round ``value`` up to a multiple of ``alignment`` (a power of two)."""
    return (value + alignment - 1) & ~(alignment - 1)


@dataclass(frozen=True)
class PayloadRule:
    """How the raw bytes after an entry are sized and shown.

    ``shape`` is one of:

    - ``blob``: ``sum(fields)`` bytes, shown base64-encoded;
    - ``tcp``: ``inq_len`` then ``outq_len`` bytes, shown as ``{"inq", "outq"}``;
    - ``u16``: ``nsems`` u16 values padded to 8 bytes, shown as a list;
    - ``msgq``: ``qnum`` × (SIZE + ``ipc_msg`` + ``msize`` bytes padded to 8);
    - ``shm``: ``size`` bytes padded to 4, absent when ``in_pagemaps`` is set
      (SysV shared memory lives in pagemap/pages since CRIU 3.0).
    """

    shape: str
    fields: tuple = ()


@dataclass(frozen=True)
class Layout:
    """The messages of one image kind."""

    message: str
    first: str | None = None
    payload: PayloadRule | None = None

    def message_for(self, index: int) -> str:
        """The message type name of entry ``index``."""
        if index == 0 and self.first is not None:
            return self.first
        return self.message


_BLOB = PayloadRule
LAYOUTS = {
    "INVENTORY": Layout("inventory_entry"),
    "PSTREE": Layout("pstree_entry"),
    "FDINFO": Layout("fdinfo_entry"),
    "PAGEMAP": Layout("pagemap_entry", first="pagemap_head"),
    "CORE": Layout("core_entry"),
    "IDS": Layout("task_kobj_ids_entry"),
    "VMAS": Layout("vma_entry"),
    "PIPES": Layout("pipe_entry"),
    "PIPES_DATA": Layout("pipe_data_entry", payload=_BLOB("blob", ("bytes",))),
    "FIFO": Layout("fifo_entry"),
    "FIFO_DATA": Layout("pipe_data_entry", payload=_BLOB("blob", ("bytes",))),
    "SIGACT": Layout("sa_entry"),
    "UNIXSK": Layout("unix_sk_entry"),
    "INETSK": Layout("inet_sk_entry"),
    "PACKETSK": Layout("packet_sock_entry"),
    "NETLINK_SK": Layout("netlink_sk_entry"),
    "ITIMERS": Layout("itimer_entry"),
    "POSIX_TIMERS": Layout("posix_timer_entry"),
    "SK_QUEUES": Layout("sk_packet_entry", payload=_BLOB("blob", ("length",))),
    "UTSNS": Layout("utsns_entry"),
    "CREDS": Layout("creds_entry"),
    "IPC_VAR": Layout("ipc_var_entry"),
    "IPCNS_SHM": Layout("ipc_shm_entry", payload=PayloadRule("shm", ("size",))),
    "IPCNS_MSG": Layout("ipc_msg_entry", payload=PayloadRule("msgq", ("qnum",))),
    "IPCNS_SEM": Layout("ipc_sem_entry", payload=PayloadRule("u16", ("nsems",))),
    "REG_FILES": Layout("reg_file_entry"),
    "EXT_FILES": Layout("ext_file_entry"),
    "NS_FILES": Layout("ns_file_entry"),
    "FS": Layout("fs_entry"),
    "MM": Layout("mm_entry"),
    "REMAP_FPATH": Layout("remap_file_path_entry"),
    "GHOST_FILE": Layout("ghost_chunk_entry", first="ghost_file_entry"),
    "TCP_STREAM": Layout("tcp_stream_entry", payload=PayloadRule("tcp", ("inq_len", "outq_len"))),
    "EVENTFD_FILE": Layout("eventfd_file_entry"),
    "EVENTPOLL_FILE": Layout("eventpoll_file_entry"),
    "EVENTPOLL_TFD": Layout("eventpoll_tfd_entry"),
    "SIGNALFD": Layout("signalfd_entry"),
    "TIMERFD": Layout("timerfd_entry"),
    "INOTIFY_FILE": Layout("inotify_file_entry"),
    "INOTIFY_WD": Layout("inotify_wd_entry"),
    "FANOTIFY_FILE": Layout("fanotify_file_entry"),
    "FANOTIFY_MARK": Layout("fanotify_mark_entry"),
    "MNTS": Layout("mnt_entry"),
    "NETDEV": Layout("net_device_entry"),
    "NETNS": Layout("netns_entry"),
    "USERNS": Layout("userns_entry"),
    "TIMENS": Layout("timens_entry"),
    "PIDNS": Layout("pidns_entry"),
    "TTY_FILES": Layout("tty_file_entry"),
    "TTY_INFO": Layout("tty_info_entry"),
    "TTY_DATA": Layout("tty_data_entry"),
    "FILE_LOCKS": Layout("file_lock_entry"),
    "RLIMIT": Layout("rlimit_entry"),
    "SIGNAL": Layout("siginfo_entry"),
    "TUNFILE": Layout("tunfile_entry"),
    "CGROUP": Layout("cgroup_entry"),
    "CPUINFO": Layout("cpuinfo_entry"),
    "SECCOMP": Layout("seccomp_entry"),
    "BINFMT_MISC": Layout("binfmt_misc_entry"),
    "AUTOFS": Layout("autofs_entry"),
    "FILES": Layout("file_entry"),
    "MEMFD_INODE": Layout("memfd_inode_entry"),
    "BPFMAP_FILE": Layout("bpfmap_file_entry"),
    "BPFMAP_DATA": Layout(
        "bpfmap_data_entry", payload=_BLOB("blob", ("keys_bytes", "values_bytes"))
    ),
    "APPARMOR": Layout("apparmor_entry"),
    "STATS": Layout("stats_entry"),
    "IRMAP_CACHE": Layout("irmap_cache_entry"),
}

#: File-name stems (the name without ``-<id>`` and ``.img``) and their magic.
STEMS = {
    "inventory": "INVENTORY",
    "pstree": "PSTREE",
    "core": "CORE",
    "ids": "IDS",
    "mm": "MM",
    "creds": "CREDS",
    "pagemap": "PAGEMAP",
    "pagemap-shmem": "PAGEMAP",
    "fdinfo": "FDINFO",
    "files": "FILES",
    "reg-files": "REG_FILES",
    "ext-files": "EXT_FILES",
    "ns-files": "NS_FILES",
    "eventfd": "EVENTFD_FILE",
    "eventpoll": "EVENTPOLL_FILE",
    "eventpoll-tfd": "EVENTPOLL_TFD",
    "signalfd": "SIGNALFD",
    "timerfd": "TIMERFD",
    "inotify": "INOTIFY_FILE",
    "inotify-wd": "INOTIFY_WD",
    "fanotify": "FANOTIFY_FILE",
    "fanotify-mark": "FANOTIFY_MARK",
    "vmas": "VMAS",
    "pipes": "PIPES",
    "pipes-data": "PIPES_DATA",
    "fifo": "FIFO",
    "fifo-data": "FIFO_DATA",
    "sigacts": "SIGACT",
    "unixsk": "UNIXSK",
    "inetsk": "INETSK",
    "packetsk": "PACKETSK",
    "netlinksk": "NETLINK_SK",
    "sk-queues": "SK_QUEUES",
    "itimers": "ITIMERS",
    "posix-timers": "POSIX_TIMERS",
    "utsns": "UTSNS",
    "ipcns-var": "IPC_VAR",
    "ipcns-shm": "IPCNS_SHM",
    "ipcns-msg": "IPCNS_MSG",
    "ipcns-sem": "IPCNS_SEM",
    "fs": "FS",
    "remap-fpath": "REMAP_FPATH",
    "ghost-file": "GHOST_FILE",
    "tcp-stream": "TCP_STREAM",
    "mountpoints": "MNTS",
    "netdev": "NETDEV",
    "netns": "NETNS",
    "userns": "USERNS",
    "timens": "TIMENS",
    "pidns": "PIDNS",
    "tty": "TTY_FILES",
    "tty-info": "TTY_INFO",
    "tty-data": "TTY_DATA",
    "filelocks": "FILE_LOCKS",
    "rlimit": "RLIMIT",
    "signal-s": "SIGNAL",
    "signal-p": "SIGNAL",
    "tunfile": "TUNFILE",
    "cgroup": "CGROUP",
    "cpuinfo": "CPUINFO",
    "seccomp": "SECCOMP",
    "binfmt-misc": "BINFMT_MISC",
    "memfd": "MEMFD_INODE",
    "bpfmap-file": "BPFMAP_FILE",
    "bpfmap-data": "BPFMAP_DATA",
    "apparmor": "APPARMOR",
    "stats-dump": "STATS",
    "stats-restore": "STATS",
    "irmap-cache": "IRMAP_CACHE",
}

#: Stems of raw images: no magic, no entries, just bytes.
RAW_STEMS = {
    "pages": "page data of a pagemap",
    "ifaddr": "ip addr save output",
    "route": "ip route save output",
    "route6": "ip -6 route save output",
    "rule": "ip rule save output",
    "iptables": "iptables-save output",
    "ip6tables": "ip6tables-save output",
    "nftables": "nft list ruleset output",
    "netns-ct": "conntrack table",
    "netns-exp": "conntrack expectations",
    "tmpfs-dev": "tar.gz of a tmpfs /dev",
    "tmpfs": "tar.gz of a tmpfs mount",
}

_NAME = LazyPattern(r"^(?P<stem>.+?)(?:-(?P<id>[0-9a-fA-F]+))?(?P<ext>\.tar\.gz\.img|\.img)?$")


def split_name(filename: str) -> tuple[str, str | None]:
    """Split an image file name into (stem, id or None).

    ``core-42.img`` → ``("core", "42")``, ``pagemap-shmem-2161.img`` →
    ``("pagemap-shmem", "2161")``, ``stats-dump`` → ``("stats-dump", None)``.
    """
    match = _NAME.match(filename)
    if not match:
        return filename, None
    stem, ident = match.group("stem"), match.group("id")
    if ident is not None and stem + "-" + ident in STEMS:  # e.g. "stats-dump"
        return stem + "-" + ident, None
    return stem, ident


def expected_magic(filename: str) -> str | None:
    """The magic name a file of this name must carry, or None if unknown."""
    return STEMS.get(split_name(filename)[0])


def raw_kind(filename: str) -> str | None:
    """The raw image kind this name implies (``pages``, ``route``, ...), or None."""
    stem, _ = split_name(filename)
    if stem in RAW_STEMS:
        return stem
    return None
