"""``net``, ``ns``, ``mounts`` and ``ps --long`` on dumps CRIU 4.2.1 makes here (issue 23):

- a process in new network, UTS and mount namespaces (``unshare``) given addresses, a
  route via a gateway, a policy rule, a host name and a tmpfs mount: ``net`` shows what
  ``ip -j`` showed inside before the dump, ``mounts`` the tmpfs, ``ns`` the host name;
- zdtm's seccomp programs (``seccomp_strict``, ``seccomp_filter_tsync``) and SysV IPC
  programs (their own IPC namespace), from tests/test_zdtm.py's sample: ``ps --long``
  and ``ns`` against CRIU's decoding of the same images.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.oracle import crit_json
from tests.workloads import harness

pytestmark = pytest.mark.live

INNER = """set -e
ip link set lo up
ip addr add 10.77.0.1/24 dev lo
ip -6 addr add fd00:77::1/64 dev lo nodad
ip route add 10.78.0.0/16 via 10.77.0.2 dev lo
ip rule add from 10.77.0.0/24 table 100 priority 1000
ip link add br0 type bridge
ip link add v0 type veth peer name v1
ip link set v0 master br0
hostname views-ns
mount -t tmpfs -o size=1m views-tmp /mnt
ip -j addr > {out}/addr.json
ip -j route > {out}/route.json
ip -j -6 route > {out}/route6.json
ip -j rule > {out}/rule.json
ip -j link > {out}/link.json
exec setsid sleep 600 </dev/null >/dev/null 2>&1
"""


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture(scope="module")
def netns_dump(criu, tmp_path_factory):
    """``(images, what ip showed)`` of a process in its own net, uts and mount namespaces."""
    top = tmp_path_factory.mktemp("netns")
    (top / "inner.sh").write_text(INNER.format(out=top))
    popen = subprocess.Popen(
        ["unshare", "--net", "--uts", "--mount", "--propagation", "private", "--fork",
         "sh", str(top / "inner.sh")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    leaf = None
    try:
        found = harness.wait_until(
            lambda: (top / "link.json").exists() and _children(popen.pid), 15)
        assert found, "the namespace set-up did not finish (unshare and ip -j needed)"
        leaf = found[0]
        assert harness.wait_until(
            lambda: Path(f"/proc/{leaf}/comm").read_text().strip() == "sleep", 15)
        harness.dump(criu, leaf, top / "images", leave_running=False, options=())
    finally:
        for pid in (leaf, popen.pid):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        popen.wait(15)
    shown = {name: json.loads((top / f"{name}.json").read_text())
             for name in ("addr", "route", "route6", "rule", "link")}
    return top / "images", shown


def _json(*args):
    done = run_cli(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_net_shows_what_ip_showed(netns_dump):
    images, shown = netns_dump
    [space] = _json("net", images)["namespaces"]
    assert space["owner"] == "checkpoint"
    links = {(link["ifindex"], link["ifname"], link["mtu"]) for link in shown["addr"]}
    assert {(d["ifindex"], d["name"], d["mtu"]) for d in space["devices"]} == links
    netdev = crit_json(images / f"netdev-{space['ns_id']}.img")["entries"]
    assert [d["name"] for d in netdev] == [d["name"] for d in space["devices"]]
    addresses = {(a["family"], a["local"], a["prefixlen"], a["scope"])
                 for link in shown["addr"] for a in link["addr_info"]}
    assert {(a["family"], a["address"], a["prefixlen"], a["scope"])
            for a in space["addresses"]} == addresses
    assert ("inet", "10.77.0.1", 24, "global") in addresses
    routes = {(r["dst"], r.get("gateway"), r.get("dev"))
              for r in shown["route"] + shown["route6"]}
    assert {(r["destination"], r["gateway"], "lo" if r["oif"] == 1 else r["oif"])
            for r in space["routes"]} == routes
    assert ("10.78.0.0/16", "10.77.0.2", "lo") in routes
    rules = {(r["priority"], r.get("src", "all") + (f"/{r['srclen']}" if "srclen" in r else ""),
              r["table"]) for r in shown["rule"]}
    assert {(r["priority"], r["source"], r["table"]) for r in space["rules"]} == rules
    text = run_cli("net", images).stdout
    assert "10.77.0.1/24" in text and "10.77.0.2" in text and "from 10.77.0.0/24" in text


def test_net_shows_a_peer_for_a_veth_only(netns_dump):
    # CRIU stores peer_ifindex for every link (a bridge's is its own index); only a
    # veth's restore reads it (criu/net.c)
    images, shown = netns_dump
    [space] = _json("net", images)["namespaces"]
    index = {link["ifname"]: link["ifindex"] for link in shown["link"]}
    netdev = {d["name"]: d for d in crit_json(images / f"netdev-{space['ns_id']}.img")
              ["entries"]}
    assert netdev["br0"]["peer_ifindex"] == index["br0"]
    devices = {d["name"]: d for d in space["devices"]}
    assert (devices["br0"]["kind"], devices["br0"]["peer_ifindex"]) == ("bridge", None)
    assert (devices["v0"]["kind"], devices["v0"]["peer_ifindex"]) == ("veth", index["v1"])
    assert devices["v0"]["master"] == index["br0"]
    rows = {line.split()[2]: line.split() for line in run_cli("net", images).stdout.split(
        "\n\n")[0].splitlines()[3:]}
    assert rows["br0"][3] == "bridge" and "if" not in rows["br0"][6:]
    assert devices["v0"]["peer_nsid"] == space["ns_id"]  # CRIU's id of the peer's netns
    assert rows["v0"][3] == "veth" and rows["v0"][-5:] == [
        "if", str(index["v1"]), "in", "netns", str(space["ns_id"])]


def test_ns_and_mounts_of_the_unshared_process(netns_dump):
    images, _shown = netns_dump
    owners = {n["kind"]: (n["owner"], n["uts"])
              for n in _json("ns", images)["namespaces"]}
    assert owners["uts"] == ("checkpoint", ["views-ns", "(none)"])
    assert owners["net"][0] == owners["mnt"][0] == "checkpoint"
    assert owners["pid"][0] == owners["user"][0] == "host"
    [space] = _json("mounts", images)["namespaces"]
    tmp = [m for m in space["mounts"] if m["mountpoint"] == "/mnt"]
    assert [(m["fstype"], m["source"], m["options"]) for m in tmp] == [
        ("tmpfs", "views-tmp", "size=1024k")]
    entries = crit_json(images / f"mountpoints-{space['ns_id']}.img")["entries"]
    assert sorted(m["mnt_id"] for m in space["mounts"]) == sorted(e["mnt_id"] for e in entries)


# -- zdtm's sample ---------------------------------------------------------------------------


def _images(zdtm_dumps, name):
    if name not in zdtm_dumps:
        pytest.fail(f"zdtm's {name} was not dumped (tests/test_zdtm.py says why)")
    return zdtm_dumps[name].images


@pytest.mark.parametrize("name,modes", [
    ("seccomp_strict", {"strict"}),
    ("seccomp_filter_tsync", {"filter"}),
])
def test_ps_long_seccomp_of_zdtm_programs(zdtm_dumps, name, modes):
    images = Path(_images(zdtm_dumps, name))
    seen = set()
    entries = crit_json(images / "seccomp.img")["entries"] \
        if (images / "seccomp.img").exists() else []
    filters = entries[0].get("seccomp_filters", []) if entries else []
    for row in _json("ps", images, "--long"):
        for detail in row["detail"]:
            thread = crit_json(images / f"core-{detail['tid']}.img")["entries"][0][
                "thread_core"]
            assert detail["seccomp_mode"] == thread.get("seccomp_mode")
            chain, index = [], thread.get("seccomp_filter")
            while index is not None:
                chain.append(index)
                index = filters[index].get("prev")
            assert detail["seccomp_filters"] == chain
            assert detail["seccomp_instructions"] == sum(
                len(base64.b64decode(filters[i]["filter"])) // 8 for i in chain)
            seen.add(detail["seccomp_mode"])
    assert modes <= seen
    assert any(m in run_cli("ps", images, "--long").stdout for m in ("strict", "filter("))


def test_ps_long_threads_criu_gives_the_leaders_filters(zdtm_dumps):
    """zdtm's seccomp_filter_tsync: a child whose two threads run the same filter.  CRIU's
    log says it dropped the second thread's ("Disable filter on tid_rea N, will be
    propagated": the leader's gets TSYNC); ``ps --long`` says that thread runs the leader's
    filter (``seccomp_source`` ``leader``), and the row shows no difference."""
    images = Path(_images(zdtm_dumps, "seccomp_filter_tsync"))
    log = (images / "dump.log").read_text(errors="replace")
    dropped = {int(tid) for tid in re.findall(r"Disable filter on tid_rea (\d+), will be "
                                              r"propagated", log)}
    assert dropped, "CRIU dropped no thread's filter: the program changed?"
    sources = {t["tid"]: (t["seccomp_mode"], t["seccomp_source"])
               for row in _json("ps", images, "--long") for t in row["detail"]}
    assert {tid: sources[tid] for tid in dropped} == {tid: (None, "leader") for tid in dropped}
    text = run_cli("ps", images, "--long").stdout
    assert "filter(1:" in text and "threads)" not in text


@pytest.mark.parametrize("name,image", [("msgque", "ipcns-msg"), ("sem", "ipcns-sem"),
                                        ("shm", "ipcns-var")])
def test_ns_shows_the_own_ipc_namespace_of_zdtm_ipc_programs(zdtm_dumps, name, image):
    images = Path(_images(zdtm_dumps, name))
    [ipc] = [n for n in _json("ns", images)["namespaces"] if n["kind"] == "ipc"]
    assert ipc["owner"] == "checkpoint"
    assert f"{image}-{ipc['ns_id']}.img" in ipc["images"]
    net = [n for n in _json("ns", images)["namespaces"] if n["kind"] == "net"]
    assert [n["owner"] for n in net] == ["host"]


def test_an_external_network_namespace_shows_its_key(criu, tmp_path):
    """``--external net[INODE]:KEY``: CRIU keeps only the key (``netns-ID.img``)."""
    popen = subprocess.Popen(["unshare", "--net", "sleep", "600"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        assert harness.wait_until(
            lambda: os.readlink(f"/proc/{popen.pid}/ns/net") !=
            os.readlink("/proc/self/ns/net"), 15)
        inode = os.stat(f"/proc/{popen.pid}/ns/net").st_ino
        harness.dump(criu, popen.pid, tmp_path / "images", leave_running=False,
                     options=("--external", f"net[{inode}]:views-key"))
    finally:
        popen.kill()
        popen.wait(15)
    [space] = _json("net", tmp_path / "images")["namespaces"]
    assert (space["owner"], space["ext_key"], space["devices"]) == (
        "checkpoint", "views-key", None)
    netns = crit_json(tmp_path / "images" / f"netns-{space['ns_id']}.img")["entries"][0]
    assert netns["ext_key"] == "views-key"
    assert "external, key 'views-key'" in run_cli("net", tmp_path / "images").stdout
