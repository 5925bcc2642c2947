"""A process that holds one thing CRIU needs an option for, for explain's live tests.

``holder.py KIND WORKDIR [ARG]``: KIND ``unix`` (a stream unix socket connected to
ARG, a listener outside the tree), ``tcp`` (an established loopback connection to
port ARG), ``lock`` (an flock on WORKDIR/locked), ``ghost`` (a deleted 64 KiB file),
``file`` (WORKDIR/data open for reading), ``plain`` (nothing).  Writes its pid to
WORKDIR/ready when it holds it, then sleeps until killed.  Standard library only.
"""

import fcntl
import os
import socket
import sys
import time

kind, work = sys.argv[1], sys.argv[2]
held = []
if kind == "unix":
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sys.argv[3])
    held.append(sock)
elif kind == "tcp":
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[3]))))
elif kind == "lock":
    locked = open(os.path.join(work, "locked"), "w")  # noqa: SIM115 (held until killed)
    fcntl.flock(locked, fcntl.LOCK_EX)
    held.append(locked)
elif kind == "ghost":
    path = os.path.join(work, "deleted")
    ghost = open(path, "w+b")  # noqa: SIM115 (held until killed)
    ghost.write(b"x" * 65536)
    ghost.flush()
    os.unlink(path)
    held.append(ghost)
elif kind == "file":
    held.append(open(os.path.join(work, "data"), "rb"))  # noqa: SIM115
with open(os.path.join(work, "ready"), "w") as ready:
    ready.write(str(os.getpid()))
while True:
    time.sleep(1)
