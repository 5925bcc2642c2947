"""``sk``: every socket of the checkpoint, with its peer across processes."""

from __future__ import annotations

import sys

import click

from ..analysis import explore
from ..describe import endpoints_text, enum_text, netlink_protocol, netlink_state
from ..files import SockFamily
from ..render import jsonable, write_json, write_table
from .options import format_option, open_checkpoint_source, source_options

COLUMNS = (("family", "FAMILY"), ("type", "TYPE"), ("state", "STATE"), ("local", "LOCAL"),
           ("remote", "PEER"), ("recv_queue", "RECV-Q"), ("send_queue", "SEND-Q"),
           ("holders", "HELD BY (PID:FD)"), ("peer_holders", "PEER HELD BY"))


def socket_cells(row):
    """A socket row as table cells: words for enums, ``pid:fd`` lists."""
    if row.family == SockFamily.NETLINK:
        kind, state = netlink_protocol(row.proto), netlink_state(row.state)
    else:
        kind, state = enum_text(row.type), enum_text(row.state)
        if row.proto is not None and int(row.proto):
            kind = f"{kind}/{enum_text(row.proto)}" if kind else enum_text(row.proto)
    remote = row.remote
    if row.external_peer:
        remote = f"{remote} (outside the checkpoint)"
    return {
        "family": enum_text(row.family), "type": kind, "state": state,
        "local": row.local, "remote": remote, "recv_queue": row.recv_queue,
        "send_queue": row.send_queue, "holders": endpoints_text(row.holders),
        "peer_holders": endpoints_text(row.peer_holders) or None,
    }


@click.command("sk")
@source_options
@click.option("--family", "families", multiple=True,
              type=click.Choice(("unix", "inet", "inet6", "netlink", "packet")),
              help="Only sockets of this family (repeatable).")
@format_option()
def sk_command(path, lxd_dir, project, root, families, fmt):
    """Show sockets: family, type, state, local and peer addresses, bytes queued,
    and which fds hold each socket and its peer (unix peers are matched across
    processes by inode; a peer outside the checkpoint is said so).  Only
    metadata images are read.

    \b
    Examples:
      crit-plus sk /var/lib/criu/dump1
      crit-plus sk lxd:web --family unix
      crit-plus sk dump1 -f json | jq '.[] | select(.state == "established")'
    """
    with open_checkpoint_source(path, lxd_dir, project, root, note_errors=True) as opened:
        rows = explore.socket_rows(opened.checkpoint)
    if families:
        rows = [row for row in rows if enum_text(row.family) in families]
    out = sys.stdout
    if fmt == "json":
        write_json([jsonable(row) for row in rows], out)
    elif rows:
        write_table([socket_cells(row) for row in rows], COLUMNS, out)
    else:
        click.echo("no sockets", err=True)


def register(group):
    """Add ``sk`` to the CLI group."""
    group.add_command(sk_command)
