"""The network namespaces of a checkpoint: interfaces, addresses, routes and rules.

For each network namespace of its own, CRIU writes (``criu/net.c``):
``netdev-ID.img`` (one ``net_device_entry`` per link: type, index, name, MTU,
``IFF_*`` flags, hardware address, a veth's peer, a bridge master), and the
output of ``ip addr save``, ``ip route save``, ``ip -6 route save`` and ``ip rule
save`` as ``ifaddr-ID``, ``route-ID``, ``route6-ID`` and ``rule-ID`` (raw netlink
dumps, read by :mod:`decoders.netlink`).  ``ip route save`` keeps the main table
only; ``ip rule save`` the IPv4 rules.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from decoders.text import field_text
from decoders.errors import DecodeError, MissingImageError
from decoders.fields import optional
from decoders.netlink import NetlinkMessage, read_netlink_dump

from .findings import Finding, error_finding

if TYPE_CHECKING:
    from .graph import Checkpoint

#: ``IFF_*`` (include/uapi/linux/if.h) as ``ip link`` names them.
IFF_FLAGS = ((0x1, "UP"), (0x2, "BROADCAST"), (0x8, "LOOPBACK"), (0x10, "POINTOPOINT"),
             (0x40, "RUNNING"), (0x80, "NOARP"), (0x100, "PROMISC"), (0x1000, "MULTICAST"),
             (0x10000, "LOWER_UP"), (0x20000, "DORMANT"))
#: ``RT_SCOPE_*`` and ``RTN_*`` (include/uapi/linux/rtnetlink.h) as ``ip`` names them.
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
ROUTE_TYPES = {0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast",
               5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw",
               10: "nat", 11: "xresolve"}
#: ``FR_ACT_*`` of a rule
RULE_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable",
                8: "prohibit"}
TABLES = {253: "default", 254: "main", 255: "local"}
PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp",
             186: "bgp", 187: "isis", 188: "ospf", 189: "rip"}
FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
#: The link kinds whose ``peer_ifindex``/``peer_nsid`` name another link: only a veth's
#: restore reads them (``criu/net.c``: veth_link_info, veth_peer_info).
PAIRED_KINDS = frozenset({"veth"})
#: The parts of a network namespace and the image stems they come from.
PARTS = (("devices", ("netdev",)), ("addresses", ("ifaddr",)), ("routes", ("route", "route6")),
         ("rules", ("rule",)))


@dataclass(frozen=True, slots=True)
class NetDevice:
    """One link of ``netdev-ID.img``."""

    ifindex: int
    name: str
    kind: str  # CRIU's nd_type in lower case: loopback, veth, tun, extlink, bridge...
    mtu: int
    flags: int
    address: str | None  # the hardware address, aa:bb:...
    #: a paired link's (:data:`PAIRED_KINDS`) other end: its index and the netns id it is
    #: in; None for other kinds (CRIU stores ``peer_ifindex`` for every link: IFLA_LINK,
    #: or the link's own index)
    peer_ifindex: int | None
    peer_nsid: int | None
    master: int | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The ``IFF_*`` flags set, as ``ip link`` shows them."""
        return tuple(name for bit, name in IFF_FLAGS if self.flags & bit)


@dataclass(frozen=True, slots=True)
class Address:
    """One address (``RTM_NEWADDR`` of ``ip addr save``)."""

    ifindex: int
    family: str
    address: str | None  # IFA_LOCAL, else IFA_ADDRESS
    prefixlen: int
    peer: str | None  # IFA_ADDRESS when it differs from IFA_LOCAL (point-to-point)
    broadcast: str | None
    scope: str
    label: str | None
    where: str

    @property
    def cidr(self) -> str:
        """``address/prefixlen``."""
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class Route:
    """One route (``RTM_NEWROUTE`` of ``ip route save``/``ip -6 route save``)."""

    family: str
    destination: str  # "default" or prefix/len
    type: str
    gateway: str | None
    oif: int | None
    table: str
    protocol: str
    scope: str
    prefsrc: str | None
    metric: int | None
    where: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy-routing rule (``RTM_NEWRULE`` of ``ip rule save``)."""

    family: str
    priority: int
    source: str  # "all" or prefix/len
    destination: str | None
    iif: str | None
    oif: str | None
    fwmark: int | None
    action: str
    table: str
    where: str


@dataclass(frozen=True, slots=True)
class NetNamespace:
    """What CRIU kept of one network namespace; ``None`` lists for a missing image (or a
    damaged one: :attr:`damaged` says which)."""

    ns_id: int
    devices: tuple[NetDevice, ...] | None
    addresses: tuple[Address, ...] | None
    routes: tuple[Route, ...] | None
    rules: tuple[Rule, ...] | None
    #: the key of a namespace dumped as external (``netns-ID.img`` ``ext_key``: restored
    #: with ``--external net[KEY]:PATH`` or ``--join-ns``, its links not dumped), or None
    ext_key: str | None = None
    #: (part, why) of each part (``devices``, ``addresses``, ``routes``, ``rules``) whose
    #: image did not decode: the error's one line
    damaged: tuple[tuple[str, str], ...] = ()

    def device_name(self, ifindex: int | None) -> str | None:
        """The name of link ``ifindex`` (None when unknown)."""
        for device in self.devices or ():
            if device.ifindex == ifindex:
                return device.name
        return None


def _name(table: dict, value: Any) -> str:
    return table.get(value, str(value))


def _device(msg) -> NetDevice:
    kind = msg.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number.get(msg.type)
    name = kind.name.lower() if kind else str(msg.type)
    address = optional(msg, "address")
    paired = name in PAIRED_KINDS
    return NetDevice(msg.ifindex, field_text(msg.name), name,
                     msg.mtu, msg.flags, ":".join(f"{b:02x}" for b in address)
                     if address else None, optional(msg, "peer_ifindex") if paired else None,
                     optional(msg, "peer_nsid") if paired else None, optional(msg, "master"))


def _where(message: NetlinkMessage) -> str:
    return str(message.source)


def _prefix(address: str | None, length: int, family: str) -> str:
    if address is None:
        return "default" if length == 0 else f"?/{length}"
    full = 32 if family == "inet" else 128
    return address if length == full else f"{address}/{length}"


def _address(msg: NetlinkMessage) -> Address:
    family = _name(FAMILIES, msg.field("family"))
    local, address = msg.attr("IFA_LOCAL"), msg.attr("IFA_ADDRESS")
    return Address(msg.field("index"), family, local or address, msg.field("prefixlen"),
                   address if local and address and address != local else None,
                   msg.attr("IFA_BROADCAST"), _name(SCOPES, msg.field("scope")),
                   msg.attr("IFA_LABEL"), _where(msg))


def _route(msg: NetlinkMessage) -> Route:
    family = _name(FAMILIES, msg.field("family"))
    table = msg.attr("RTA_TABLE", msg.field("table"))
    return Route(family, _prefix(msg.attr("RTA_DST"), msg.field("dst_len"), family),
                 _name(ROUTE_TYPES, msg.field("type")), msg.attr("RTA_GATEWAY"),
                 msg.attr("RTA_OIF"), _name(TABLES, table), _name(PROTOCOLS, msg.field("proto")),
                 _name(SCOPES, msg.field("scope")), msg.attr("RTA_PREFSRC"),
                 msg.attr("RTA_PRIORITY"), _where(msg))


def _rule(msg: NetlinkMessage) -> Rule:
    family = _name(FAMILIES, msg.field("family"))
    src_len, dst_len = msg.field("src_len"), msg.field("dst_len")
    source = _prefix(msg.attr("FRA_SRC"), src_len, family) if src_len else "all"
    destination = _prefix(msg.attr("FRA_DST"), dst_len, family) if dst_len else None
    table = msg.attr("FRA_TABLE", msg.field("table"))
    return Rule(family, msg.attr("FRA_PRIORITY", 0), source, destination,
                msg.attr("FRA_IIFNAME"), msg.attr("FRA_OIFNAME"), msg.attr("FRA_FWMARK"),
                _name(RULE_ACTIONS, msg.field("action")), _name(TABLES, table), _where(msg))


def _dump(directory_of, name, convert, findings):
    try:
        return tuple(convert(msg) for msg in read_netlink_dump(directory_of(name)))
    except MissingImageError:
        return None
    except DecodeError as error:
        findings.append(error_finding(error))
        return None


def read_net_namespace(checkpoint: Checkpoint,
                       ns_id: int) -> tuple[NetNamespace, tuple[Finding, ...]]:
    """The :class:`NetNamespace` ``ns_id`` of the checkpoint and the findings of reading
    its images (a missing image is an empty part, not a finding: CRIU deletes an
    image it wrote nothing to, and skips ``route6`` without IPv6; a damaged one is a
    finding and a ``damaged`` part)."""
    findings: list[Finding] = []
    messages, error = checkpoint.decoded(f"netdev-{ns_id}.img")
    devices = None
    if error is None:
        devices = tuple(_device(msg) for msg in messages)
    elif not isinstance(error, MissingImageError):
        findings.append(error_finding(error))

    def path(name):
        return os.path.join(checkpoint.directory, name)

    addresses = _dump(path, f"ifaddr-{ns_id}.img", _address, findings)
    routes4 = _dump(path, f"route-{ns_id}.img", _route, findings)
    routes6 = _dump(path, f"route6-{ns_id}.img", _route, findings)
    rules = _dump(path, f"rule-{ns_id}.img", _rule, findings)
    routes = None if routes4 is None and routes6 is None else (routes4 or ()) + (routes6 or ())
    netns, error = checkpoint.decoded(f"netns-{ns_id}.img")
    if error is not None and not isinstance(error, MissingImageError):
        findings.append(error_finding(error))
    ext_key = optional(netns[0], "ext_key") if netns else None
    damaged = tuple((part, f"{finding.where}: {finding.message}")
                    for part, stems in PARTS for finding in findings
                    if finding.where in {f"{stem}-{ns_id}.img" for stem in stems})
    return NetNamespace(ns_id, devices, addresses, routes, rules,
                        field_text(ext_key) if ext_key is not None else None,
                        damaged), tuple(findings)
