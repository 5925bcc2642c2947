"""``ns``, ``mounts``, ``net`` and ``ps --long`` on the real LXD fixtures (a container:
its own pid, net, ipc, uts, mnt, user and cgroup namespaces, a seccomp filter, cgroups),
checked against CRIU's own decoding of the same images (crit's pycriu), and the netlink
decoder on damaged dumps.  tests/test_live_views.py does the same on dumps made here
(a network namespace with addresses, routes and rules; zdtm's seccomp programs)."""

from __future__ import annotations

import base64
import json
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crit_plus.confinement import SeccompFilter, filter_chain
from crit_plus.opening import open_source
from decoders.errors import DecodeError
from decoders.netlink import read_netlink_dump
from tests.cli import run_cli
from tests.oracle import crit_json

WEB = "lxd-web/var/lib/lxd/storage-pools/default/containers/web/state"
DEB = "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state"


@pytest.fixture(scope="module")
def web(fixture_root):
    return fixture_root / WEB


@pytest.fixture(scope="module")
def deb(fixture_root):
    return fixture_root / DEB


def _json(*args):
    done = run_cli(*args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- ns ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [WEB, DEB])
def test_ns_groups_every_process_by_its_ids_image(fixture_root, key):
    directory = fixture_root / key
    document = _json("ns", directory)
    assert document["schema"] == "crit-plus/ns/1"
    host = {k[:-6]: v for k, v in crit_json(directory / "inventory.img")["entries"][0]
            ["root_ids"].items() if k.endswith("_ns_id")}
    expected = {}
    for image in sorted(directory.glob("ids-*.img")):
        pid = int(image.name[4:-4])
        for field, value in crit_json(image)["entries"][0].items():
            if field.endswith("_ns_id"):
                expected.setdefault((field[:-6], value), set()).add(pid)
    shown = {(n["kind"], n["id"]): set(n["pids"]) for n in document["namespaces"]}
    assert shown == expected
    for item in document["namespaces"]:
        assert item["owner"] == ("host" if host[item["kind"]] == item["id"] else "checkpoint")
    # a container: its own namespaces but the time namespace, the host's
    owners = {n["kind"]: n["owner"] for n in document["namespaces"]}
    assert owners == {"pid": "checkpoint", "net": "checkpoint", "ipc": "checkpoint",
                      "uts": "checkpoint", "mnt": "checkpoint", "user": "checkpoint",
                      "cgroup": "checkpoint", "time": "host"}


def test_ns_shows_uts_names_and_user_maps_as_crit_decodes_them(web):
    document = _json("ns", web)
    by_kind = {n["kind"]: n for n in document["namespaces"]}
    uts = crit_json(web / f"utsns-{by_kind['uts']['id']}.img")["entries"][0]
    assert by_kind["uts"]["uts"] == [uts["nodename"], uts["domainname"]] == ["web", "(none)"]
    userns = crit_json(web / f"userns-{by_kind['user']['id']}.img")["entries"][0]
    assert by_kind["user"]["uid_map"] == userns["uid_map"]
    assert by_kind["user"]["gid_map"] == userns["gid_map"]
    assert by_kind["user"]["uid_map"][0]["lower_first"] == 100000
    text = run_cli("ns", web).stdout
    assert "nodename web" in text and "uid 0->100000+10000001" in text


# -- mounts --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [WEB, DEB])
def test_mounts_are_every_mountpoints_entry_as_crit_decodes_it(fixture_root, key):
    directory = fixture_root / key
    document = _json("mounts", directory)
    assert document["schema"] == "crit-plus/mounts/1"
    [space] = document["namespaces"]
    image = directory / f"mountpoints-{space['ns_id']}.img"
    entries = crit_json(image, pretty=True)["entries"]
    mounts = {m["mnt_id"]: m for m in space["mounts"]}
    assert len(mounts) == len(entries) == len(space["mounts"])
    for entry in entries:
        mount = mounts[entry["mnt_id"]]
        assert (mount["parent_mnt_id"], mount["mountpoint"], mount["root"], mount["source"],
                mount["options"], mount["device"]) == (
            entry["parent_mnt_id"], entry["mountpoint"], entry["root"], entry["source"],
            entry["options"], entry["root_dev"])
        assert mount["flags"] == int(entry["flags"], 16)
        assert mount["shared_id"] == (entry.get("shared_id") or None)
        assert mount["master_id"] == (entry.get("master_id") or None)
        assert mount["ext_key"] == entry.get("ext_key")
        assert mount["external"] == ("ext_key" in entry or bool(entry.get("ext_mount")))
    # a tree: every mount but the root below its parent, depth one more than its parent's
    depth = {m["mnt_id"]: m["depth"] for m in space["mounts"]}
    roots = [m for m in space["mounts"] if m["parent_mnt_id"] not in mounts]
    assert [m["mountpoint"] for m in roots] == ["/"]
    for mount in space["mounts"]:
        if mount["parent_mnt_id"] in mounts:
            assert mount["depth"] == depth[mount["parent_mnt_id"]] + 1


def test_mount_options_propagation_and_binds(web):
    document = _json("mounts", web)
    mounts = {m["mountpoint"]: m for m in document["namespaces"][0]["mounts"]}
    proc = mounts["/proc"]
    assert proc["fstype"] == "proc"
    assert proc["mount_options"] == ["rw", "nosuid", "nodev", "noexec", "relatime"]
    assert proc["propagation"] == [f"shared:{proc['shared_id']}"]
    # the sysfs mounts of LXD are binds of one superblock (same device and type)
    tracing = mounts["/sys/kernel/tracing"]
    assert tracing["fstype"] == "sysfs" and len(tracing["binds"]) >= 2
    for mount in mounts.values():
        assert set(mount["binds"]) == {
            m["mnt_id"] for m in mounts.values() if m["mnt_id"] != mount["mnt_id"]
            and (m["device"], m["fstype"]) == (mount["device"], mount["fstype"])}
    tree = run_cli("mounts", web, "--format", "tree").stdout
    assert tree.startswith("mount namespace ") and "└─ " in tree


# -- net -----------------------------------------------------------------------------------


def test_net_shows_links_addresses_and_rules_of_the_container(deb):
    document = _json("net", deb)
    assert document["schema"] == "crit-plus/net/1"
    [space] = document["namespaces"]
    netdev = crit_json(deb / f"netdev-{space['ns_id']}.img")["entries"]
    assert [(d["name"], d["ifindex"], d["mtu"]) for d in space["devices"]] == [
        (d["name"], d["ifindex"], d["mtu"]) for d in netdev]
    assert {(a["address"], a["prefixlen"], a["scope"]) for a in space["addresses"]} == {
        ("127.0.0.1", 8, "host"), ("::1", 128, "host")}
    assert space["routes"] == []
    assert [(r["priority"], r["table"]) for r in space["rules"]] == [
        (0, "local"), (32766, "main"), (32767, "default")]
    text = run_cli("net", deb).stdout
    assert "127.0.0.1/8" in text and "lookup main" in text


def test_net_of_processes_in_the_host_namespace_says_so(service_a):
    done = run_cli("net", service_a)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no network namespace of its own")
    assert _json("net", service_a)["namespaces"][0]["devices"] is None
    assert run_cli("mounts", service_a).stdout.startswith("no mount namespace of its own")


def _damaged(directory, tmp_path, name, change):
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy, symlinks=True)
    path = copy / name
    data = bytearray(path.read_bytes())
    path.chmod(0o644)
    path.write_bytes(bytes(change(data)))
    return copy, path


@pytest.mark.parametrize("change,reason", [
    (lambda d: d[:-10], "truncated"),
    (lambda d: b"\0\0\0\0" + d[4:], "magic 0x00000000"),
    (lambda d: d[:4] + struct.pack("<I", 8) + d[8:], "below its header"),
    (lambda d: d[:4] + struct.pack("<I", 1 << 30) + d[8:], "truncated"),
    (lambda d: d[:8] + struct.pack("<H", 99) + d[10:], "type 99"),
])
def test_damaged_netlink_dump_is_one_line_with_file_and_offset(deb, tmp_path, change, reason):
    copy, path = _damaged(deb, tmp_path, "rule-10.img", change)
    with pytest.raises(DecodeError) as caught:
        read_netlink_dump(path)
    assert reason in str(caught.value) and "rule-10.img" in str(caught.value)
    done = run_cli("net", copy)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "rule-10.img" in line and "offset" in line and reason in line
    assert "lookup main" not in done.stdout  # the rules are not shown, the rest is
    assert "127.0.0.1/8" in done.stdout


def test_a_netlink_body_pyroute2_cannot_parse_is_a_decode_error(deb, tmp_path):
    # an attribute whose length runs past its message
    def broken(data):
        length = struct.unpack_from("<I", data, 4)[0]
        data[4 + 28:4 + 30] = struct.pack("<H", 0xFFF0)
        return data[:4 + length]

    _copy, path = _damaged(deb, tmp_path, "ifaddr-10.img", broken)
    try:
        messages = read_netlink_dump(path)
    except DecodeError as error:
        assert "ifaddr-10.img" in str(error) and "offset 0x4" in str(error)
    else:  # pyroute2 stops at the attribute that does not fit: fewer attributes, no crash
        assert len(messages) == 1


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_netlink_dump_is_records_or_one_decode_error(deb, tmp_path, data):
    name = data.draw(st.sampled_from(["ifaddr-10.img", "rule-10.img"]))
    original = (deb / name).read_bytes()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    path = tmp_path / name
    path.write_bytes(bytes(mutated[:cut]) if data.draw(st.booleans()) else bytes(mutated))
    try:
        messages = read_netlink_dump(path)
    except DecodeError as error:
        assert name in str(error) and "\n" not in str(error)
    else:
        assert all(m.source.offset < path.stat().st_size for m in messages)


# -- ps --long -----------------------------------------------------------------------------


def test_ps_long_shows_creds_seccomp_and_cgroups_as_the_images_hold_them(web):
    rows = _json("ps", web, "--long")
    cgroup = crit_json(web / "cgroup.img")["entries"][0]
    sets = {s["id"]: s["ctls"] for s in cgroup["sets"]}
    filters = crit_json(web / "seccomp.img")["entries"][0]["seccomp_filters"]
    for row in rows:
        core = crit_json(web / f"core-{row['pid']}.img")["entries"][0]
        thread = core["thread_core"]
        creds = thread["creds"]
        [detail] = row["detail"]
        assert (detail["uid"], detail["gid"], detail["euid"]) == (
            creds["uid"], creds["gid"], creds["euid"])
        caps = creds["cap_eff"]
        assert detail["cap_eff"] == caps[0] | caps[1] << 32
        assert detail["seccomp_mode"] == thread["seccomp_mode"] == "filter"
        assert detail["seccomp_filters"] == [thread["seccomp_filter"]]
        program = base64.b64decode(filters[thread["seccomp_filter"]]["filter"])
        assert detail["seccomp_instructions"] == len(program) // 8 == 33
        assert [(m["controller"], m["path"]) for m in detail["cgroups"]] == [
            (c["name"], c["path"]) for c in sets[thread["cg_set"]]]
    table = run_cli("ps", web, "--long").stdout
    assert "CAPEFF" in table and "000001ffffffffff" in table and "/lxc.payload.web" in table


def test_ps_without_long_is_unchanged(web):
    plain = _json("ps", web)
    assert all("detail" not in row for row in plain)
    header = run_cli("ps", web).stdout.splitlines()[0].split()
    assert header == ["PID", "PPID", "PGID", "SID", "STATE", "THR", "COMM", "COMMAND"]


def test_the_graph_gives_the_views_typed_records(web):
    with open_source(str(web)) as opened:
        checkpoint = opened.checkpoint
        [space] = checkpoint.mount_namespaces
        assert all(isinstance(m.mnt_id, int) and isinstance(m.mountpoint, str)
                   for m in space.mounts)
        [net] = checkpoint.net_namespaces
        assert [d.name for d in net.devices] == ["lo"]
        assert checkpoint.view_findings == ()


def test_a_seccomp_chain_that_loops_or_leaves_the_image_ends_with_a_finding():
    # CRIU writes prev < index (criu/seccomp.c); only a damaged image loops or points out
    filters = (SeccompFilter(0, None, None, 4), SeccompFilter(1, 0, None, 5),
               SeccompFilter(2, 2, None, 6))
    assert filter_chain(filters, 1, "core-1.img") == ((filters[1], filters[0]), ())
    chain, findings = filter_chain(filters, 2, "core-1.img")
    assert chain == (filters[2],) and "loops" in findings[0].message
    chain, findings = filter_chain(filters, 7, "core-1.img")
    assert chain == () and "names filter 7, seccomp.img has 3" in findings[0].message


def test_ps_long_tree_has_the_long_columns(web):
    header = run_cli("ps", web, "--long", "--format", "tree").stdout.splitlines()[0].split()
    assert header == ["PROCESS", "STATE", "THR", "UID", "GID", "CAPEFF", "SECCOMP", "LSM",
                      "CGROUP", "COMMAND"]
