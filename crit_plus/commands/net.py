"""``net``: the interfaces, addresses, routes and rules of each network namespace."""

from __future__ import annotations

import sys

import click

from ..analysis import views
from ..render import jsonable, safe_text, write_table
from .options import format_option, source_options
from .selection import view_of, write_view

LINK_COLUMNS = (("ns", "NETNS"), ("index", "IF"), ("name", "NAME"), ("kind", "KIND"),
                ("mtu", "MTU"), ("flags", "FLAGS"), ("address", "ADDRESS"), ("peer", "PEER"))
ADDRESS_COLUMNS = (("ns", "NETNS"), ("dev", "DEV"), ("family", "FAMILY"),
                   ("address", "ADDRESS"), ("scope", "SCOPE"), ("extra", "DETAIL"))
ROUTE_COLUMNS = (("ns", "NETNS"), ("destination", "DESTINATION"), ("gateway", "GATEWAY"),
                 ("dev", "DEV"), ("table", "TABLE"), ("protocol", "PROTO"),
                 ("scope", "SCOPE"), ("type", "TYPE"), ("extra", "DETAIL"))
RULE_COLUMNS = (("ns", "NETNS"), ("priority", "PRIO"), ("family", "FAMILY"),
                ("selector", "SELECTOR"), ("action", "ACTION"))


def view_json(view):
    """One network namespace as JSON (a device with its ``flag_names`` too)."""
    data = {"ns_id": view.ns_id, "pids": list(view.pids),
            "owner": {True: "checkpoint", False: "host", None: "unknown"}[view.own],
            "ext_key": view.net.ext_key}
    net = view.net
    for part in ("devices", "addresses", "routes", "rules"):
        items = getattr(net, part)
        data[part] = None if items is None else [jsonable(item) for item in items]
    for device, item in zip(net.devices or (), data["devices"] or ()):
        item["flag_names"] = list(device.flag_names)
    data["damaged"] = dict(net.damaged)
    return data


def _sections(view):
    net, ns = view.net, view.ns_id
    links = [{"ns": ns, "index": d.ifindex, "name": d.name, "kind": d.kind,
              "mtu": d.mtu, "flags": ",".join(d.flag_names), "address": d.address or "",
              "peer": "" if d.peer_ifindex is None
              else f"if {d.peer_ifindex}" + (f" in netns {d.peer_nsid}"
                                             if d.peer_nsid is not None else "")}
             for d in net.devices or ()]
    addresses = [{"ns": ns, "dev": net.device_name(a.ifindex) or a.ifindex, "family": a.family,
                  "address": a.cidr, "scope": a.scope,
                  "extra": " ".join(filter(None, (f"peer {a.peer}" if a.peer else "",
                                                  f"brd {a.broadcast}" if a.broadcast else "",
                                                  f"label {a.label}" if a.label else "")))}
                 for a in net.addresses or ()]
    routes = [{"ns": ns, "destination": r.destination, "gateway": r.gateway or "",
               "dev": net.device_name(r.oif) or (r.oif if r.oif is not None else ""),
               "table": r.table, "protocol": r.protocol, "scope": r.scope, "type": r.type,
               "extra": " ".join(filter(None, (f"src {r.prefsrc}" if r.prefsrc else "",
                                               f"metric {r.metric}" if r.metric is not None
                                               else "")))}
              for r in net.routes or ()]
    rules = [{"ns": ns, "priority": r.priority, "family": r.family,
              "selector": " ".join(filter(None, (f"from {r.source}",
                                                 f"to {r.destination}" if r.destination else "",
                                                 f"iif {r.iif}" if r.iif else "",
                                                 f"oif {r.oif}" if r.oif else "",
                                                 f"fwmark {r.fwmark:#x}" if r.fwmark else ""))),
              "action": f"{r.action} {r.table}" if r.action == "lookup" else r.action}
             for r in net.rules or ()]
    return links, addresses, routes, rules


@click.command("net")
@source_options(root=False)
@format_option()
def net_command(path, lxd_dir, project, fmt):
    """Show each network namespace the checkpoint holds: its links (netdev-ID.img:
    index, name, kind, MTU, flags, hardware address, a veth's peer), addresses
    (ifaddr-ID), routes (route-ID, route6-ID: the main table, as `ip route save`
    keeps it) and rules (rule-ID), the last three decoded from the netlink dumps
    CRIU's `ip ... save` wrote.  Processes in the host's network namespace have
    none: CRIU did not dump it.

    \b
    Examples:
      crit-plus net lxd:web/snap0
      crit-plus net dump1 -f json | jq '.namespaces[].addresses[].address'
    """
    found, findings = view_of(views.net_views, views.net_findings, path, lxd_dir, project)
    out = sys.stdout
    if write_view("net", [view_json(v) for v in found], findings, fmt, out):
        return
    own = [view for view in found if view.net.devices is not None or view.own]
    if not own:
        out.write("no network namespace of its own: the processes are in the host's "
                  "(CRIU dumped no netdev image)\n")
        return
    for view in own:
        if view.net.ext_key is not None:
            out.write(f"netns {view.ns_id}: external, key {view.net.ext_key!r} (restored with "
                      "--external net[KEY]:PATH; its links were not dumped)\n\n")
    parts = list(zip(*(_sections(view) for view in own)))
    for index, (title, part, columns) in enumerate((("links", "devices", LINK_COLUMNS),
                                                    ("addresses", "addresses", ADDRESS_COLUMNS),
                                                    ("routes", "routes", ROUTE_COLUMNS),
                                                    ("rules", "rules", RULE_COLUMNS))):
        rows = [row for rows in parts[index] for row in rows]
        out.write(("\n" if index else "") + f"{title}:\n")
        if rows:
            write_table(rows, columns, out)
        damaged = [f"netns {view.ns_id}: {why}" for view in own
                   for name, why in view.net.damaged if name == part]
        for line in damaged:
            out.write(f"  (damaged, not shown: {safe_text(line)})\n")
        if not rows and not damaged:
            out.write("  (none)\n")


def register(group):
    """Add ``net`` to the CLI group."""
    group.add_command(net_command)
