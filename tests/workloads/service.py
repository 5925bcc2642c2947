#!/usr/bin/env python3
"""A small multi-process service for CRIU to dump: crit-plus's live tests and fixtures.

Usage::

    service.py WORKDIR INFO_JSON

Run it detached in its own session (``setsid``, stdin/stdout/stderr on files:
CRIU needs no terminal then and no ``--shell-job``).  It sets up the state below
in WORKDIR, then writes INFO_JSON (atomically: a temporary file renamed) with
what it knows about itself, and waits for signals:

- ``SIGUSR1`` advances one stage (every 16th page of the random region
  rewritten, a new 256 KiB random region, a new marker, ``stage-N.txt``
  opened, one more worker forked; stage 1 also closes the UDP socket) and
  rewrites INFO_JSON with ``"stage": N``;
- ``SIGTERM`` ends the workers and the service.

State at stage 0 (the same shape as the service fixtures, see fixtures/README.md):

- the main process with 3 more threads (4 in all), and one forked worker;
- memory: a private anonymous region of 512 KiB of random bytes, 1 MiB of zero
  bytes written page by page, a 1 MiB ``MAP_SHARED`` anonymous region written
  by the main process (at offset 0) and by each worker (at 4096 × its number),
  a private anonymous region of 256 KiB never touched (reads back as zeros),
  and a marker string in the C heap (``ctypes.create_string_buffer``);
  each worker writes its own marker into a private page it inherited
  (copy-on-write: the same address holds a different text in each process);
- files: ``service.log`` open for append, ``data.bin`` (64 KiB) open and mapped
  ``MAP_SHARED``, ``scratch.tmp`` open after it was deleted, the FIFO
  ``control.fifo`` open for reading and for writing;
- IPC: a pipe (main keeps the read end, worker 1 the write end, with unread
  data in it) and a unix socketpair (one end in each, with unread data from
  worker 1 queued to the main process), an eventfd, an epoll
  instance watching both, a memfd named ``fixture-memfd``;
- network: a TCP listener on 127.0.0.1, an established TCP connection to it
  from the same process (with unread bytes queued each way), a UDP socket on
  127.0.0.1, a unix stream listener ``WORKDIR/control.sock``.

INFO_JSON::

    {"stage": N, "workdir", "argv", "environ_marker", "files": {role: path},
     "tcp": {"listen": [ip, port], "client": [ip, port], "server": [ip, port]},
     "udp": [ip, port] (the main process closes it at stage 1, worker 1 keeps it),
     "pending": {"tcp-client", "tcp-server", "socketpair-main": bytes queued unread (peeked)},
     "processes": [{"role", "pid", "ppid", "pgid", "sid", "tids", "comm", "exe", "cwd",
                    "fds": {"N": {"target": readlink of /proc/PID/fd/N,
                                  "role": what the service opened it as or null,
                                  "pos", "flags": from /proc/PID/fdinfo/N}}}],
     "markers": [{"pid", "name", "kind", "address", "text"}],
     "regions": [{"pid", "name", "kind", "address", "size", "sha256"}]}

Only the standard library; runs on the Python that runs the tests.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import random
import select
import signal
import socket
import sys
import threading

PAGE = mmap.PAGESIZE
SHARED_SIZE = 1 << 20
RANDOM_SIZE = 512 << 10
ZERO_SIZE = 1 << 20
UNTOUCHED_SIZE = 256 << 10
STAGE_REGION_SIZE = 256 << 10
REWRITE_EVERY = 16            # each stage rewrites every 16th page of the random region
DATA_SIZE = 64 << 10
SCRATCH_TEXT = b"scratch: deleted but still open\n" * 64
PIPE_TEXT = b"unread bytes from worker 1 in the pipe\n"
SOCKETPAIR_TEXT = b"unread bytes from worker 1 on the socketpair\n"
TCP_CLIENT_TEXT = b"client->server, never read\n"
TCP_SERVER_TEXT = b"server->client, never read\n"
ENV_MARKER = "CRIT_PLUS_LIVE_MARKER"

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _address(buffer) -> int:
    """Virtual address of a writable buffer (an mmap, a ctypes array)."""
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


def _fd_targets(pid: int) -> dict:
    out = {}
    base = f"/proc/{pid}/fd"
    for name in sorted(os.listdir(base), key=int):
        try:
            out[name] = os.readlink(f"{base}/{name}")
        except OSError:
            pass
    return out


def _fd_info(pid: int, fd: str) -> dict:
    """pos and flags (an int) of /proc/PID/fdinfo/FD."""
    out = {}
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "pos":
                    out["pos"] = int(value)
                elif key == "flags":
                    out["flags"] = int(value, 8)
    except OSError:
        pass
    return out


def _tids(pid: int) -> list:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def _stat_ids(pid: int) -> tuple:
    """(ppid, pgid, sid) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


class Service:
    def __init__(self, workdir: str, info_path: str):
        self.workdir = os.path.abspath(workdir)
        self.info_path = os.path.abspath(info_path)
        self.stage = 0
        self.pid = os.getpid()
        self.rng = random.Random(0x5EED)
        self.roles = {}           # fd → role, in the main process
        self.workers = []         # [{"pid", "number", "roles"}]
        self.markers = []
        self.regions = []
        self.keep = []            # objects whose memory must stay mapped
        self.files = {}
        self.udp = None

    # -- helpers -------------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def marker(self, pid: int, name: str, kind: str, address: int, text: bytes):
        self.markers.append({"pid": pid, "name": name, "kind": kind,
                             "address": address, "text": text.decode()})

    def region(self, pid: int, name: str, kind: str, buffer, size: int | None = None):
        size = len(buffer) if size is None else size
        self.regions.append({"pid": pid, "name": name, "kind": kind, "address": _address(buffer),
                             "size": size, "sha256": hashlib.sha256(buffer[:size]).hexdigest()})

    # -- stage 0 ---------------------------------------------------------------
    def setup(self):
        pid = self.pid
        # files
        self.files = {name: self.path(name) for name in
                      ("service.log", "data.bin", "scratch.tmp", "control.fifo", "control.sock")}
        log = os.open(self.files["service.log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(log, f"service {pid} starting\n".encode())
        self.roles[log] = "log"
        data = os.open(self.files["data.bin"], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(data, self.rng.randbytes(DATA_SIZE))
        self.roles[data] = "data"
        before = set(_fd_targets(pid))
        self.data_map = mmap.mmap(data, DATA_SIZE, mmap.MAP_SHARED)
        for extra in set(_fd_targets(pid)) - before:  # mmap keeps a dup of the fd
            self.roles[int(extra)] = "data-mmap"
        self.data_map[:16] = b"data.bin mapped\n"
        self.keep.append(self.data_map)
        scratch = os.open(self.files["scratch.tmp"], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(scratch, SCRATCH_TEXT)
        os.unlink(self.files["scratch.tmp"])
        self.roles[scratch] = "scratch"
        if os.path.exists(self.files["control.fifo"]):
            os.unlink(self.files["control.fifo"])
        os.mkfifo(self.files["control.fifo"], 0o600)
        fifo_r = os.open(self.files["control.fifo"], os.O_RDONLY | os.O_NONBLOCK)
        fifo_w = os.open(self.files["control.fifo"], os.O_WRONLY | os.O_NONBLOCK)
        os.write(fifo_w, b"fifo bytes\n")
        self.roles[fifo_r] = "fifo-read"
        self.roles[fifo_w] = "fifo-write"

        # IPC
        self.pipe_r, self.pipe_w = os.pipe()
        self.roles[self.pipe_r] = "pipe-read"
        self.pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.roles[self.pair[0].fileno()] = "socketpair-main"
        self.event = os.eventfd(7, os.EFD_NONBLOCK)
        self.roles[self.event] = "eventfd"
        self.epoll = select.epoll()
        self.epoll.register(self.event, select.EPOLLIN)
        self.epoll.register(self.pair[0].fileno(), select.EPOLLIN)
        self.roles[self.epoll.fileno()] = "epoll"
        memfd = os.memfd_create("fixture-memfd", 0)
        os.write(memfd, b"memfd contents\n" * 100)
        self.roles[memfd] = "memfd"

        # network
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.roles[self.listener.fileno()] = "tcp-listen"
        self.client = socket.create_connection(self.listener.getsockname(), timeout=10)
        self.client.settimeout(None)
        self.roles[self.client.fileno()] = "tcp-client"
        self.server, _ = self.listener.accept()
        self.roles[self.server.fileno()] = "tcp-server"
        self.client.sendall(TCP_CLIENT_TEXT)
        self.server.sendall(TCP_SERVER_TEXT)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_address = self.udp.getsockname()
        self.roles[self.udp.fileno()] = "udp"
        self.unix_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.files["control.sock"]):
            os.unlink(self.files["control.sock"])
        self.unix_listener.bind(self.files["control.sock"])
        self.unix_listener.listen(4)
        self.roles[self.unix_listener.fileno()] = "unix-listen"

        # memory
        self.shared = mmap.mmap(-1, SHARED_SIZE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        text = f"shared-region-00 written by main {pid}".encode()
        self.shared[:len(text)] = text
        self.marker(pid, "shared-main", "shared", _address(self.shared), text)
        self.keep.append(self.shared)
        rand = mmap.mmap(-1, RANDOM_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        rand[:] = self.rng.randbytes(RANDOM_SIZE)
        self.region(pid, "random", "private", rand)
        self.keep.append(rand)
        self.rand = rand
        zeros = mmap.mmap(-1, ZERO_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for offset in range(0, ZERO_SIZE, PAGE):
            zeros[offset] = 0                      # touch every page, contents stay zero
        self.region(pid, "zeros", "private", zeros)
        self.keep.append(zeros)
        untouched = mmap.mmap(-1, UNTOUCHED_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.regions.append({"pid": pid, "name": "untouched", "kind": "private",
                             "address": _address(untouched), "size": UNTOUCHED_SIZE,
                             "sha256": hashlib.sha256(bytes(UNTOUCHED_SIZE)).hexdigest()})
        self.keep.append(untouched)
        # one private page per process: each worker overwrites its own copy
        self.own_page = mmap.mmap(-1, PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        text = f"own-page of main {pid}".encode()
        self.own_page[:len(text)] = text
        self.marker(pid, "own-page", "private", _address(self.own_page), text)
        self.keep.append(self.own_page)
        text = f"CRIT-PLUS-HEAP-MARKER main {pid} {self.rng.getrandbits(64):016x}".encode()
        self.heap_marker = ctypes.create_string_buffer(text)
        self.marker(pid, "heap", "heap", ctypes.addressof(self.heap_marker), text)

        self.fork_worker(keep=("pipe-write", "socketpair-worker"))
        os.close(self.pipe_w)
        self.pair[1].close()

        # threads: three more, idle until the service ends
        self.stop = threading.Event()
        for n in range(3):
            threading.Thread(target=self.stop.wait, name=f"idle-{n}", daemon=True).start()

    # -- workers -----------------------------------------------------------------
    def fork_worker(self, keep=()):
        """Fork worker N: it keeps the main's fds except the ones for main only
        (it closes the pipe's read end and the main's socketpair end) and writes
        its markers before it says it is ready."""
        number = len(self.workers) + 1
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                os.close(ready_r)
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                me = os.getpid()
                if "pipe-write" in keep:
                    os.write(self.pipe_w, PIPE_TEXT)
                if "socketpair-worker" in keep:
                    self.pair[1].sendall(SOCKETPAIR_TEXT)
                os.close(self.pipe_r)
                self.pair[0].close()
                if "socketpair-worker" not in keep:
                    self.pair[1].close()
                text = f"shared-region-{number:02d} written by worker {me}".encode()
                self.shared[number * PAGE:number * PAGE + len(text)] = text
                text = f"own-page of worker {number} {me}".encode()
                self.own_page[:PAGE] = bytes(PAGE)
                self.own_page[:len(text)] = text
                os.write(ready_w, b"r")
                os.close(ready_w)
                signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGTERM})
                signal.sigwait({signal.SIGTERM})
            finally:
                os._exit(0)
        os.close(ready_w)
        got = os.read(ready_r, 1)
        # wait for EOF too: the worker has closed its end, so /proc shows its final fds
        while os.read(ready_r, 1):
            pass
        os.close(ready_r)
        if got != b"r":
            raise RuntimeError(f"worker {number} ({pid}) did not start")
        base = _address(self.shared)
        text = f"shared-region-{number:02d} written by worker {pid}"
        self.marker(pid, f"shared-worker-{number}", "shared", base + number * PAGE, text.encode())
        # the main process sees the worker's write to the shared region too
        self.marker(self.pid, f"shared-worker-{number}", "shared", base + number * PAGE,
                    text.encode())
        text = f"own-page of worker {number} {pid}"
        self.marker(pid, "own-page", "private", _address(self.own_page), text.encode())
        roles = {fd: role for fd, role in self.roles.items()
                 if role not in ("pipe-read", "socketpair-main")}
        if "pipe-write" in keep:
            roles[self.pipe_w] = "pipe-write"
        if "socketpair-worker" in keep:
            roles[self.pair[1].fileno()] = "socketpair-worker"
        self.workers.append({"pid": pid, "number": number, "roles": roles})

    # -- later stages -------------------------------------------------------------
    def advance(self):
        self.stage += 1
        n = self.stage
        pid = self.pid
        name = f"stage-{n}.txt"
        self.files[name] = self.path(name)
        fd = os.open(self.files[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"stage {n} of {pid}\n".encode())
        self.roles[fd] = f"stage-{n}"
        rewritten = []
        for page in range(0, RANDOM_SIZE // PAGE, REWRITE_EVERY):
            self.rand[page * PAGE:(page + 1) * PAGE] = self.rng.randbytes(PAGE)
            rewritten.append(page)
        entry = next(r for r in self.regions if r["name"] == "random")
        entry["sha256"] = hashlib.sha256(self.rand[:]).hexdigest()
        entry["rewritten_pages"] = rewritten
        region = mmap.mmap(-1, STAGE_REGION_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region[:] = self.rng.randbytes(STAGE_REGION_SIZE)
        self.region(pid, f"stage-{n}", "private", region)
        self.keep.append(region)
        text = f"CRIT-PLUS-STAGE-{n} main {pid}".encode()
        buf = ctypes.create_string_buffer(text)
        self.keep.append(buf)
        self.marker(pid, f"stage-{n}", "heap", ctypes.addressof(buf), text)
        if n == 1 and self.udp is not None:
            del self.roles[self.udp.fileno()]
            self.udp.close()
            self.udp = None
        self.fork_worker()
        os.write(next(fd for fd, r in self.roles.items() if r == "log"),
                 f"stage {n}\n".encode())

    # -- reporting -----------------------------------------------------------------
    def describe(self, pid: int, role: str, roles: dict) -> dict:
        ppid, pgid, sid = _stat_ids(pid)
        fds = {n: {"target": target, "role": roles.get(int(n)), **_fd_info(pid, n)}
               for n, target in _fd_targets(pid).items()}
        return {"role": role, "pid": pid, "ppid": ppid, "pgid": pgid, "sid": sid,
                "tids": _tids(pid), "comm": _comm(pid), "fds": fds,
                "exe": os.readlink(f"/proc/{pid}/exe"), "cwd": os.readlink(f"/proc/{pid}/cwd")}

    def pending(self) -> dict:
        """Bytes queued unread on the main process's sockets (peeked, not consumed)."""
        out = {}
        for role, sock in (("tcp-client", self.client), ("tcp-server", self.server),
                           ("socketpair-main", self.pair[0])):
            try:
                out[role] = sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT).decode()
            except BlockingIOError:
                out[role] = ""
        return out

    def report(self):
        with open("/proc/self/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
        info = {
            "stage": self.stage,
            "workdir": self.workdir,
            "argv": argv,
            "environ_marker": os.environ.get(ENV_MARKER),
            "files": self.files,
            "tcp": {"listen": list(self.listener.getsockname()),
                    "client": list(self.client.getsockname()),
                    "server": list(self.server.getsockname())},
            "udp": list(self.udp_address),
            "pending": self.pending(),
            "processes": [self.describe(self.pid, "main", self.roles)] + [
                self.describe(w["pid"], f"worker-{w['number']}", w["roles"]) for w in self.workers],
            "markers": self.markers,
            "regions": self.regions,
        }
        tmp = f"{self.info_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        os.rename(tmp, self.info_path)

    # -- main loop ---------------------------------------------------------------------
    def run(self):
        wanted = {signal.SIGUSR1, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)   # before any thread or fork
        self.setup()
        self.report()
        while True:
            sig = signal.sigwait(wanted)
            if sig == signal.SIGTERM:
                break
            self.advance()
            self.report()
        self.stop.set()
        for worker in self.workers:
            try:
                os.kill(worker["pid"], signal.SIGTERM)
                os.waitpid(worker["pid"], 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    os.makedirs(argv[1], exist_ok=True)
    Service(argv[1], argv[2]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
