"""``ns``, ``mounts``, ``net`` and ``ps --long`` on the real LXD fixtures (a container:
its own pid, net, ipc, uts, mnt, user and cgroup namespaces, a seccomp filter, cgroups),
checked against CRIU's own decoding of the same images (crit's pycriu), and the netlink
decoder on damaged dumps.  tests/test_live_views.py does the same on dumps made here
(a network namespace with addresses, routes and rules; zdtm's seccomp programs)."""

from __future__ import annotations

import base64
import json
import re
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
    assert document["schema"] == "crit-plus/ns/2"
    host = {k[:-6]: v for k, v in crit_json(directory / "inventory.img")["entries"][0]
            ["root_ids"].items() if k.endswith("_ns_id")}
    expected = {}
    for image in sorted(directory.glob("ids-*.img")):
        pid = int(image.name[4:-4])
        for field, value in crit_json(image)["entries"][0].items():
            if field.endswith("_ns_id"):
                expected.setdefault((field[:-6], value), set()).add(pid)
    shown = {(n["kind"], n["ns_id"]): set(n["pids"]) for n in document["namespaces"]}
    assert shown == expected
    for item in document["namespaces"]:
        assert item["owner"] == ("host" if host[item["kind"]] == item["ns_id"] else "checkpoint")
    # a container: its own namespaces but the time namespace, the host's
    owners = {n["kind"]: n["owner"] for n in document["namespaces"]}
    assert owners == {"pid": "checkpoint", "net": "checkpoint", "ipc": "checkpoint",
                      "uts": "checkpoint", "mnt": "checkpoint", "user": "checkpoint",
                      "cgroup": "checkpoint", "time": "host"}


def test_ns_shows_uts_names_and_user_maps_as_crit_decodes_them(web):
    document = _json("ns", web)
    by_kind = {n["kind"]: n for n in document["namespaces"]}
    uts = crit_json(web / f"utsns-{by_kind['uts']['ns_id']}.img")["entries"][0]
    assert by_kind["uts"]["uts"] == [uts["nodename"], uts["domainname"]] == ["web", "(none)"]
    userns = crit_json(web / f"userns-{by_kind['user']['ns_id']}.img")["entries"][0]
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
    assert document["schema"] == "crit-plus/mounts/2"
    [space] = document["namespaces"]
    image = directory / f"mountpoints-{space['ns_id']}.img"
    entries = crit_json(image, pretty=True)["entries"]
    mounts = {m["mnt_id"]: m for m in space["mounts"]}
    assert len(mounts) == len(entries) == len(space["mounts"])
    for entry in entries:
        mount = mounts[entry["mnt_id"]]
        assert (mount["parent_mnt_id"], mount["mountpoint"], mount["root"], mount["source"],
                mount["options"], mount["device"], mount["root_dev"]) == (
            entry["parent_mnt_id"], entry["mountpoint"], entry["root"], entry["source"],
            entry["options"], entry["root_dev"], entry["root_dev"])
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
    assert document["schema"] == "crit-plus/net/2"
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
    [note] = done.stderr.splitlines()
    assert note.startswith("crit-plus: note: 1 error") and "(rule-10.img)" in note
    [line] = [ln for ln in done.stdout.splitlines() if "damaged" in ln]
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


# -- damaged images: what could be read, one note, never "none" ----------------------------


def _cut(directory, tmp_path, name, size):
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy, symlinks=True)
    path = copy / name
    path.chmod(0o644)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return copy


def _note(copy, image):
    return (f"crit-plus: note: 1 error in the images of {copy} ({image}), so this may be "
            "incomplete: `crit-plus validate` says which\n")


def test_mounts_of_a_damaged_image_are_the_ones_before_the_damage(deb, tmp_path):
    copy = _cut(deb, tmp_path, "mountpoints-13.img", 500)
    entries = crit_json(deb / "mountpoints-13.img")["entries"]
    document = _json("mounts", copy)
    [space] = document["namespaces"]
    assert [m["mnt_id"] for m in space["mounts"]] == [e["mnt_id"] for e in entries[:7]]
    assert space["damage"].startswith("mountpoints-13.img: entry 7 at offset 0x1d2: truncated")
    assert [f["where"] for f in document["findings"]] == ["mountpoints-13.img"]
    done = run_cli("mounts", copy)
    assert done.returncode == 0 and done.stderr == _note(copy, "mountpoints-13.img")
    assert "host's" not in done.stdout
    assert done.stdout.startswith("mount namespace 13 (pids 1 25 40 41 43 45 49 50 81):")
    assert "only the 7 mounts before the damage are shown (mountpoints-13.img: entry 7" \
        in done.stdout
    # a whole image says nothing of damage
    whole = run_cli("mounts", deb)
    assert whole.stderr == "" and "damage" not in whole.stdout
    assert _json("mounts", deb)["namespaces"][0]["damage"] is None


def test_ns_shows_a_process_whose_ids_image_is_damaged_as_unknown(deb, tmp_path):
    copy = _cut(deb, tmp_path, "ids-1.img", 10)
    document = _json("ns", copy)
    assert document["unknown_pids"] == [1]
    assert [f["where"] for f in document["findings"]] == ["ids-1.img"]
    assert all(1 not in n["pids"] for n in document["namespaces"])
    done = run_cli("ns", copy)
    assert done.returncode == 0
    last = done.stdout.splitlines()[-1].split()
    assert last[:4] == ["?", "?", "?", "1"] and "ids-PID.img" in done.stdout
    # the note ps and mems print, once, and every view prints the same
    for command in ("ps", "mems", "ns", "net", "mounts"):
        other = run_cli(command, copy)
        assert other.returncode == 0 and other.stderr == _note(copy, "ids-1.img"), command
    assert _json("ns", deb)["unknown_pids"] == []


def test_a_view_says_nothing_of_damage_in_images_it_does_not_read(deb, tmp_path):
    copy = _cut(deb, tmp_path, "mountpoints-13.img", 500)
    for command in ("ns", "net"):
        done = run_cli(command, copy)
        assert done.returncode == 0 and done.stderr == "", command
        assert _json(command, copy)["findings"] == []


@pytest.mark.parametrize("image,part,title", [("ifaddr-10.img", "addresses", "addresses"),
                                              ("rule-10.img", "rules", "rules")])
def test_net_tells_a_damaged_image_from_a_missing_one(deb, tmp_path, image, part, title):
    copy = _cut(deb, tmp_path, image, 50)
    [space] = _json("net", copy)["namespaces"]
    assert space[part] is None and list(space["damaged"]) == [part]
    assert space["damaged"][part].startswith(f"{image}: entry 0 at offset 0x4: truncated")
    text = run_cli("net", copy).stdout
    section = text.split(f"{title}:\n")[1].split("\n\n")[0]
    assert section.startswith(f"  (damaged, not shown: netns 10: {image}: entry 0")
    assert "(none)" not in section
    (copy / image).unlink()
    [space] = _json("net", copy)["namespaces"]
    assert space[part] is None and space["damaged"] == {}
    assert run_cli("net", copy).stdout.split(f"{title}:\n")[1].startswith("  (none)")


def test_net_kinds_are_lower_case_in_json_and_table(deb):
    [space] = _json("net", deb)["namespaces"]
    netdev = crit_json(deb / f"netdev-{space['ns_id']}.img")["entries"]
    assert [d["kind"] for d in space["devices"]] == [d["type"].lower() for d in netdev]
    assert [d["kind"] for d in space["devices"]] == ["loopback"]
    # CRIU stores a peer_ifindex for every link; only a veth's names another link
    assert [d.get("peer_ifindex") for d in netdev] != [None]
    assert [(d["peer_ifindex"], d["peer_nsid"]) for d in space["devices"]] == [(None, None)]
    assert "loopback" in run_cli("net", deb).stdout


def _long_column(directory, header, damaged=None):
    """The cells of ``ps --long``'s column ``header`` on ``directory``; with ``damaged``
    (an image cut in it), the one note naming that image is checked too."""
    done = run_cli("ps", directory, "--long")
    assert done.returncode == 0
    assert done.stderr == (_note(directory, damaged) if damaged else ""), done.stderr
    column = done.stdout.splitlines()[0].split().index(header)
    return {line.split()[column] for line in done.stdout.splitlines()[2:]}


def test_ps_long_says_unknown_for_a_damaged_cgroup_image(deb, tmp_path):
    copy = _cut(deb, tmp_path, "cgroup.img", 100)
    assert _long_column(copy, "CGROUP", "cgroup.img") == {"?"}
    assert all(t["cgroups"] is None for row in _json("ps", copy, "--long")
               for t in row["detail"])
    assert "?" not in _long_column(deb, "CGROUP")


def test_ps_long_names_a_cut_seccomp_image_once(deb, tmp_path):
    copy = _cut(deb, tmp_path, "seccomp.img", 60)
    assert _long_column(copy, "SECCOMP", "seccomp.img") == {"filter(?)"}
    leaders = [row["detail"][0] for row in _json("ps", copy, "--long")]
    assert {(t["seccomp_mode"], t["seccomp_filters"], t["seccomp_instructions"])
            for t in leaders} == {("filter", None, None)}


@pytest.mark.parametrize("command", ["ns", "net", "mounts"])
def test_views_take_no_root_option(command, deb):
    assert "--root" not in run_cli(command, "--help").stdout
    done = run_cli(command, deb, "--root", str(deb))
    assert done.returncode == 2 and "--root" in done.stderr
    assert "--root" in run_cli("ps", "--help").stdout


def test_mounts_table_fits_120_columns_and_wide_shows_everything(deb):
    compact = run_cli("mounts", deb).stdout
    assert max(len(line) for line in compact.splitlines()) <= 120
    wide = run_cli("mounts", deb, "--wide").stdout
    header = wide.splitlines()[0].split()
    assert header == ["MNTNS", "ID", "PARENT", "MOUNTPOINT", "FSTYPE", "SOURCE", "ROOT",
                      "OPTIONS", "PROPAGATION", "EXTERNAL", "BINDS"]
    assert "(size=" in wide and "(size=" not in compact
    # every mount in both, folded cells joined back
    document = _json("mounts", deb)
    ids = {str(m["mnt_id"]) for m in document["namespaces"][0]["mounts"]}
    assert ids <= {line.split()[0] for line in compact.splitlines()[3:] if line[:1] != " "}
    assert re.search(r"/var/lib/lxd/ .*\n.* shmounts/deb", compact)


def test_ps_long_shows_each_threads_lsm_profile(service_a, tmp_path):
    """A copy of service-a whose inventory says AppArmor and whose leader and one other
    thread carry profiles in their creds (synthetic: this machine dumps no LSM label):
    the LSM column shows the leader's, the JSON each thread's own, the rest ``-``/null."""
    from tests.synth import rewrite_image

    copy = tmp_path / "lsm"
    shutil.copytree(service_a, copy, symlinks=True)
    profiles = {12525: "crit-plus-leader", 12529: "crit-plus-thread"}

    def set_profile(profile):
        def change(messages):
            messages[0].thread_core.creds.lsm_profile = profile
        return change

    def apparmor(messages):
        messages[0].lsmtype = 2  # APPARMOR (images/inventory.proto)

    rewrite_image(copy / "inventory.img", apparmor)
    for tid, profile in profiles.items():
        rewrite_image(copy / f"core-{tid}.img", set_profile(profile))
    rows = {row["pid"]: row for row in _json("ps", copy, "--long")}
    threads = {t["tid"]: t["lsm_profile"] for row in rows.values() for t in row["detail"]}
    assert {tid: p for tid, p in threads.items() if p is not None} == profiles
    assert len(rows[12525]["detail"]) == 4  # the other threads keep no profile
    lines = run_cli("ps", copy, "--long").stdout.splitlines()
    column = lines[0].split().index("LSM")
    cells = {int(line.split()[0]): line.split()[column] for line in lines[1:]
             if line.split() and line.split()[0].isdigit()}
    assert cells[12525] == "crit-plus-leader"
    assert {cell for pid, cell in cells.items() if pid != 12525} == {"-"}
    tree = run_cli("ps", copy, "--long", "--format", "tree").stdout
    assert "crit-plus-leader" in tree
