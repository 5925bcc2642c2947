"""Container archives of today: Kubernetes pod checkpoints, checkpoint OCI images, and the
root-filesystem changes Podman/CRI-O keep beside the images.

The archives are built around the real fixture dumps (``service-a``, ``service-b``) the way
CRI-O, containerd, Podman, buildah and skopeo write them (tests/container_archives.py names
the code each layout follows).  Every checkpoint command runs on each kind; summarize, ps,
rss, mems, size, fds and diff must agree with each other and with FACTS.json
(tests/consistency.py) on a container picked out of a pod archive and out of an image.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile

import pytest

from crit_plus.sources import ArchiveError, SourceError, resolve
from crit_plus.sources.archive import archive_containers

from . import container_archives as ca
from .command_table import COMMANDS, fill, invoke, problems, registered
from .consistency import check_consistency, run_json
from .test_sources import scratch  # noqa: F401 (fixture)

POD_DIRS = {name: f"{cid}-{name}" for name, (_fixture, cid) in ca.POD.items()}


@pytest.fixture(scope="module")
def shelf(tmp_path_factory, fixture_root):
    """Every kind of archive, built once: name → path."""
    root = tmp_path_factory.mktemp("shelf")
    counter = ca.podman_archive_bytes(fixture_root / "service-a", "counter")
    pod = ca.pod_archive_bytes(fixture_root)
    pod_annotations = {"org.criu.checkpoint.pod.name": ca.POD_NAME,
                       "org.criu.checkpoint.engine.name": "cri-o"}
    return {
        "podman": ca.podman_archive(root / "service.tar.zst", fixture_root / "service-a"),
        "pod": ca.pod_archive(root / "pod.tar", fixture_root),
        "pod-containerd": ca.pod_archive(root / "pod-containerd.tar.gz", fixture_root,
                                         source_dir_entry=False),
        "layout": ca.oci_layout(root / "layout", [
            ("localhost/counter-checkpoint:latest", ca.container_annotations("counter"),
             counter)]),
        "layouts": ca.oci_layout(root / "layouts", [
            ("localhost/counter-checkpoint:latest", ca.container_annotations("counter"),
             counter), ("localhost/shop-checkpoint:latest", pod_annotations, pod)]),
        "oci-archive": ca.oci_archive(root / "shop.oci.tar", [
            ("localhost/shop-checkpoint:latest", pod_annotations, pod)]),
        "docker-archive": ca.docker_archive(root / "counter.docker.tar",
                                            "localhost/counter-checkpoint:latest", counter),
    }


def _pids(facts, key):
    return sorted(process["pid"] for process in facts[key]["processes"])


# -- what each archive resolves to ------------------------------------------------------------

#: (archive, selector, kind, container, fixture it holds)
CASES = [
    ("podman", None, "podman-archive", "service", "service-a"),
    ("pod", "counter", "pod-archive", "counter", "service-a"),
    ("pod", "web", "pod-archive", "web", "service-b"),
    ("pod-containerd", "web", "pod-archive", "web", "service-b"),
    ("layout", None, "oci-image", "counter", "service-a"),
    ("layout", "counter", "oci-image", "counter", "service-a"),
    # the one image's own reference, alone or before its container's name
    ("layout", "localhost/counter-checkpoint:latest", "oci-image", "counter", "service-a"),
    ("layout", "localhost/counter-checkpoint:latest:counter", "oci-image", "counter",
     "service-a"),
    ("layouts", "counter", "oci-image", "counter", "service-a"),
    ("layouts", "localhost/counter-checkpoint:latest", "oci-image", "counter", "service-a"),
    ("layouts", "localhost/shop-checkpoint:latest:web", "oci-image", "web", "service-b"),
    ("oci-archive", "counter", "oci-image", "counter", "service-a"),
    ("docker-archive", None, "oci-image", "counter", "service-a"),
]


@pytest.mark.parametrize(("archive", "select", "kind", "container", "fixture"), CASES,
                         ids=[f"{a}:{s}" for a, s, *_ in CASES])
def test_each_archive_opens_the_container_asked_for(shelf, facts, scratch, archive, select,
                                                    kind, container, fixture):
    spec = str(shelf[archive]) + (f":{select}" if select else "")
    with resolve(spec) as source:
        assert source.kind == kind and source.instance == container
        assert source.spec == spec and source.archive == shelf[archive]
        assert str(shelf[archive]) in source.images_label
        data = run_json("ps", spec, "--format", "json")
        assert sorted(row["pid"] for row in data) == _pids(facts, fixture)
        assert source.rootfs is not None and source.rootfs.deleted == ("/etc/issue",)
        # rootfs-diff.tar is listed from its headers, never written out
        assert not list(source.images_dir.parent.rglob("rootfs-diff.tar"))
    assert list(scratch.iterdir()) == []


def test_the_pod_facts_come_from_pod_options_and_pod_dump(shelf):
    with resolve(f"{shelf['pod-containerd']}:counter") as source:
        pod = source.metadata["pod"]
        assert (pod["name"], pod["namespace"], pod["uid"]) == \
            (ca.POD_NAME, ca.POD_NAMESPACE, ca.POD_UID)
        assert pod["containers"] == POD_DIRS and pod["hostname"] == ca.POD_NAME
        assert source.metadata["container_dir"] == POD_DIRS["counter"]
        assert source.metadata["config_dump"]["name"] == "counter"
    summary = run_json("summarize", f"{shelf['pod']}:web", "--format", "json")
    assert summary["origin"]["pod"] == f"{ca.POD_NAMESPACE}/{ca.POD_NAME}"
    assert summary["origin"]["kind"] == "pod-archive"
    image = run_json("summarize", f"{shelf['layout']}", "--format", "json")["origin"]
    assert image["image"] == "localhost/counter-checkpoint:latest" and image["pod"] is None


@pytest.mark.parametrize(("spec", "message"), [
    ("{pod}", "{pod}: holds 2 containers; pick one: {pod}:counter, {pod}:web"),
    ("{pod}:db", "{pod}:db: no container 'db' in it; it holds: {pod}:counter, {pod}:web"),
    ("{podman}:web", "{podman}:web: no container 'web' in it; it holds: {podman}:service"),
    ("{pod}:", "{pod}:: the container name after ':' is empty; it holds: {pod}:counter, "
               "{pod}:web"),
    ("{podman}:", "{podman}:: the container name after ':' is empty; it holds: "
                  "{podman}:service"),
    ("{layout}:", "{layout}:: the container name after ':' is empty; it holds: "
                  "{layout}:counter"),
    ("{layouts}", "{layouts}: holds 2 checkpoint images; pick one: {layouts}:counter, "
                  "{layouts}:localhost/shop-checkpoint:latest"),
    ("{layouts}:localhost/shop-checkpoint:latest",
     "{layouts}:localhost/shop-checkpoint:latest: holds 2 containers; pick one: "
     "{layouts}:localhost/shop-checkpoint:latest:counter, "
     "{layouts}:localhost/shop-checkpoint:latest:web"),
])
def test_an_ambiguous_or_unknown_container_is_one_line_listing_the_names(shelf, scratch, spec,
                                                                          message):
    names = {key.replace("-", "_"): str(path) for key, path in shelf.items()}
    spec, message = spec.format(**names), message.format(**names)
    with pytest.raises(SourceError) as caught:
        resolve(spec)
    assert caught.value.describe() == message
    outcome = invoke(["summarize", spec])
    assert outcome.code == 1 and outcome.err == f"crit-plus: {message}\n"
    assert list(scratch.iterdir()) == []


def test_archive_containers_name_what_to_paste(shelf):
    assert archive_containers(shelf["pod"]) == [
        ("counter", f"{shelf['pod']}:counter"), ("web", f"{shelf['pod']}:web")]
    assert archive_containers(shelf["podman"]) == [("service", str(shelf["podman"]))]
    assert archive_containers(shelf["docker-archive"]) == [
        ("counter", str(shelf["docker-archive"]))]
    layouts = str(shelf["layouts"])
    assert [spec for _name, spec in archive_containers(shelf["layouts"])] == [
        f"{layouts}:counter", f"{layouts}:localhost/shop-checkpoint:latest:counter",
        f"{layouts}:localhost/shop-checkpoint:latest:web"]


# -- every command on every kind ------------------------------------------------------------

def _checkpoint_forms():
    names = set(registered())
    return [(name, form) for name, use in sorted(COMMANDS.items())
            if use.on == "checkpoint" and use.archives and name in names for form in use.forms]


@pytest.mark.parametrize("spec", ["pod:web", "layout:", "oci-archive:counter",
                                  "docker-archive:"])
def test_every_command_takes_them(shelf, fixture_root, scratch, tmp_path, spec):
    archive, _sep, select = spec.partition(":")
    checkpoint = str(shelf[archive]) + (f":{select}" if select else "")
    forms = _checkpoint_forms()
    assert {"summarize", "ps", "fds", "mems", "rss", "size", "validate", "diff", "report",
            "mem"} <= {name for name, _form in forms}
    for name, form in forms:
        use = COMMANDS[name]
        outcome = invoke(fill(form, checkpoint=checkpoint, original=fixture_root / "service-a",
                              pid=12525, image=checkpoint, output=tmp_path / "output"))
        assert outcome.code in use.results, outcome.describe()
        assert not problems(outcome, use), outcome.describe()
        assert list(scratch.iterdir()) == [], f"{outcome.args} left files behind"
        (tmp_path / "output").unlink(missing_ok=True)


@pytest.mark.parametrize(("spec", "key"), [("pod:counter", "service-a"),
                                           ("oci-archive:web", "service-b")])
def test_every_command_agrees_on_a_container_of_an_archive(shelf, facts, spec, key):
    archive, _sep, select = spec.partition(":")
    found = check_consistency(f"{shelf[archive]}:{select}", facts[key])
    assert sorted(found) == _pids(facts, key)


# -- root-filesystem changes -----------------------------------------------------------------


def test_summarize_lists_the_rootfs_changes(shelf):
    data = run_json("summarize", f"{shelf['pod']}:counter", "--format", "json")
    rootfs = data["rootfs"]
    assert rootfs["deleted"] == ["/etc/issue"] and rootfs["more"] == 0
    paths = {entry["path"]: entry for entry in rootfs["entries"]}
    assert set(paths) == {"/etc", "/etc/motd", "/srv/counter.conf"}
    assert paths["/etc/motd"]["size"] == len(b"counter\n") and paths["/etc"]["kind"] == "dir"
    assert rootfs["tar_size"] == len(ca.rootfs_diff({"etc/motd": b"counter\n",
                                                     "srv/counter.conf": b"port=1\n"}))
    text = invoke(["summarize", f"{shelf['pod']}:counter"]).out.decode()
    assert "ROOT FILE SYSTEM CHANGES" in text
    assert "2 files added or modified (15 B of contents), 1 path deleted" in text
    assert "/srv/counter.conf" in text and "/etc/issue" in text


def test_a_directory_records_no_rootfs_changes(fixture_root):
    assert run_json("summarize", fixture_root / "service-a", "--format", "json")["rootfs"] is None
    assert "ROOT FILE SYSTEM" not in invoke(["summarize", str(fixture_root / "service-a")]) \
        .out.decode()


def test_diff_compares_two_containers_rootfs_changes(shelf):
    pod = shelf["pod"]
    outcome = invoke(["diff", f"{pod}:counter", f"{pod}:web", "--only", "rootfs",
                      "--format", "json"])
    assert outcome.code == 1, outcome.describe()
    section = json.loads(outcome.out)["rootfs"]
    changes = {(c["path"], c["change"]): c for c in section["changes"]}
    assert set(changes) == {("/etc/motd", "changed"), ("/srv/counter.conf", "removed"),
                            ("/srv/web.conf", "added")}
    assert changes[("/etc/motd", "changed")]["fields"] == ["size"]
    text = invoke(["diff", f"{pod}:counter", f"{pod}:web", "--only", "rootfs"]).out.decode()
    assert "1 added, 1 removed, 1 changed, 0 deleted, 0 undeleted" in text
    assert "size 8 -> 4" in text
    same = invoke(["diff", f"{pod}:web", f"{pod}:web", "--only", "rootfs"])
    assert same.code == 0 and "identical" in same.out.decode()


def test_diff_only_rootfs_of_a_directory_is_not_called_identical(shelf, fixture_root):
    """Nothing asked for could be compared: neither 0 (identical) nor 1 can be trusted."""
    directory = fixture_root / "service-a"
    outcome = invoke(["diff", str(directory), str(shelf["podman"]), "--only", "rootfs"])
    text, err = outcome.out.decode(), outcome.err
    assert outcome.code == 2, outcome.describe()
    assert "identical" not in text and "not compared: rootfs" in text
    assert err.count("\n") == 1 and err.startswith("crit-plus: nothing compared: rootfs: OLD ")
    data = json.loads(invoke(["diff", str(directory), str(shelf["podman"]), "--only", "rootfs",
                              "--format", "json"]).out)
    assert data["identical"] is False and data["not_compared"] == ["rootfs"]
    # another section compared: the verdict stands on it, rootfs said not compared
    both = invoke(["diff", str(directory), str(shelf["podman"]), "--only", "rootfs,images"])
    assert both.code == 0 and "Root file system: not compared" in both.out.decode()


def _pod_with(fixture_root, path, rootfs=None, deleted=None, config=True, images=True):
    """A one-container pod archive of service-a with its rootfs-diff.tar replaced."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if images:
            tar.add(fixture_root / "service-a", arcname="ab12-app/checkpoint")
        else:
            info = tarfile.TarInfo("ab12-app/checkpoint")
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        if config:
            ca.add_bytes(tar, "ab12-app/config.dump", ca.config_dump("app", "ab12"))
        if rootfs is not None:
            ca.add_bytes(tar, "ab12-app/rootfs-diff.tar", rootfs)
        if deleted is not None:
            ca.add_bytes(tar, "ab12-app/deleted.files", deleted)
        ca.add_bytes(tar, "pod.options", json.dumps(ca.pod_options({"app": "ab12-app"})).encode())
    path.write_bytes(raw.getvalue())
    return path


def test_hostile_rootfs_diff_is_listed_safely_and_never_extracted(fixture_root, tmp_path,
                                                                  scratch):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ca.add_bytes(tar, "../../etc/passwd", b"x")
        ca.add_bytes(tar, "/abs\x1b[31m", b"y")
        link = tarfile.TarInfo("etc/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    archive = _pod_with(fixture_root, tmp_path / "evil.tar", inner.getvalue(), b"[1, \"/gone\"]")
    with resolve(archive) as source:
        paths = [entry.path for entry in source.rootfs.entries]
        assert paths == ["/../../etc/passwd", "/abs\x1b[31m", "/etc/link"]
        assert source.rootfs.entries[2].link == "/etc/shadow"
        assert source.rootfs.deleted == ("/gone",)
    assert not (tmp_path / "etc").exists() and list(scratch.iterdir()) == []
    text = invoke(["summarize", str(archive)]).out.decode()
    assert "\x1b" not in text and "/abs\\x1b[31m" in text


def test_a_rootfs_diff_with_a_huge_header_is_a_finding(fixture_root, tmp_path, scratch):
    record = b"%d comment=" % (2 << 20)
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 2 << 20
    bomb = header.tobuf(format=tarfile.USTAR_FORMAT) + record + b"A" * ((2 << 20) - len(record))
    archive = _pod_with(fixture_root, tmp_path / "bomb.tar", bomb + b"\0" * 2048)
    with resolve(archive) as source:
        assert source.rootfs.entries == () and "over the limit of 1048576" in \
            source.rootfs.problem
        assert [f.code for f in source.findings if f.code == "bad-rootfs-diff"] == \
            ["bad-rootfs-diff"]
    assert list(scratch.iterdir()) == []


# -- an empty images directory, damaged and hostile archives ------------------------------------


def test_an_empty_images_directory_says_so_in_one_line(fixture_root, tmp_path, scratch):
    pod = _pod_with(fixture_root, tmp_path / "empty-pod.tar", images=False)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("checkpoint")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        ca.add_bytes(tar, "config.dump", ca.config_dump("app", "ab12"))
    podman = tmp_path / "empty.tar"
    podman.write_bytes(raw.getvalue())
    for archive, where in ((podman, ""), (pod, "ab12-app/")):
        outcome = invoke(["ps", str(archive)])
        assert outcome.code == 1
        assert outcome.err == (f"crit-plus: {archive.name}: {where}checkpoint/ is empty: CRIU "
                               "wrote its images elsewhere (an images-dir set in "
                               "/etc/criu/runc.conf overrides the directory runc gives it), so "
                               "the archive holds no checkpoint\n")
    assert list(scratch.iterdir()) == []


def test_an_old_pod_options_list_falls_back_to_the_directories(fixture_root, tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(fixture_root / "service-a", arcname=f"{'c' * 64}-app/checkpoint")
        ca.add_bytes(tar, "pod.options", json.dumps({"version": 1,
                                                     "containers": ["app"]}).encode())
    archive = tmp_path / "old.tar"
    archive.write_bytes(raw.getvalue())
    with resolve(archive) as source:
        assert source.instance == "app" and source.kind == "pod-archive"


def test_hostile_image_layouts_are_refused(shelf, tmp_path, scratch):
    layout = tmp_path / "evil"
    ca.oci_layout(layout, [("x", ca.container_annotations("x"), b"")])
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": "sha256:../../../../etc/passwd", "size": 1}]}))
    with pytest.raises(ArchiveError, match="refused: not a digest"):
        resolve(layout)
    linked_dir = tmp_path / "linked-layout"
    ca.oci_layout(linked_dir, [("x", ca.container_annotations("x"), b"")])
    blobs = linked_dir / "blobs/sha256"
    index = json.loads((linked_dir / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    blob = blobs / manifest["layers"][0]["digest"][7:]
    blob.unlink()
    blob.symlink_to("/etc/passwd")  # the layer, replaced by a link out of the layout
    with pytest.raises(ArchiveError, match="the image lacks its layer blobs/sha256/"):
        resolve(linked_dir)
    linked = tmp_path / "linked.tar"
    with tarfile.open(linked, "w") as tar:
        ca.add_bytes(tar, "oci-layout", b"{}")
        ca.add_bytes(tar, "index.json", b'{"manifests": []}')
        info = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)
    outcome = invoke(["ps", str(linked)])
    assert outcome.code == 1 and "refused: symbolic link to '/etc/shadow'" in outcome.err
    squeezed = tmp_path / "shop.oci.tar.gz"
    squeezed.write_bytes(gzip.compress(shelf["oci-archive"].read_bytes(), compresslevel=1))
    outcome = invoke(["ps", str(squeezed)])
    assert outcome.code == 1 and outcome.err.count("\n") == 1
    assert "an image archive that is compressed: decompress it first" in outcome.err
    assert list(scratch.iterdir()) == []


# -- list ---------------------------------------------------------------------------------------


def test_list_finds_archives_with_processes_and_a_name_to_paste(shelf, facts, fixture_root,
                                                                tmp_path, scratch):
    directory = tmp_path / "found"
    directory.mkdir()
    for key in ("pod", "layouts", "docker-archive"):
        target = directory / shelf[key].name
        if shelf[key].is_dir():
            shutil.copytree(shelf[key], target)
        else:
            target.write_bytes(shelf[key].read_bytes())
    _pod_with(fixture_root, directory / "damaged.tar", images=False)
    (directory / "notes.tar").write_bytes(_plain_tar({"README": b"not a checkpoint"}))
    rows = run_json("list", directory, "--format", "json")
    by_source = {row["source"]: row for row in rows}
    pod, layouts = directory / "pod.tar", directory / "layouts"
    assert set(by_source) == {f"{pod}:counter", f"{pod}:web", f"{layouts}:counter",
                              f"{layouts}:localhost/shop-checkpoint:latest:counter",
                              f"{layouts}:localhost/shop-checkpoint:latest:web",
                              str(directory / "counter.docker.tar"),
                              str(directory / "damaged.tar")}
    web = by_source[f"{pod}:web"]
    assert web["kind"] == "pod-archive" and web["instance"] == "web"
    assert web["processes"] == len(facts["service-b"]["processes"]) and web["damaged"] is None
    damaged = by_source[str(directory / "damaged.tar")]
    assert damaged["status"] == "DAMAGED" and "checkpoint/ is empty" in damaged["damaged"]
    for row in rows:  # the name shown opens the checkpoint listed
        if row["damaged"] is None:
            assert len(run_json("ps", row["source"], "--format", "json")) == row["processes"]
    text = invoke(["list", str(directory)]).out.decode()
    assert f"{pod}:web" in text and "DAMAGED" in text
    assert f"{directory / 'damaged.tar'}: damaged: " in text
    assert list(scratch.iterdir()) == []


def _plain_tar(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            ca.add_bytes(tar, name, data)
    return raw.getvalue()


def test_list_flags_a_damaged_directory(fixture_root, tmp_path):
    copy = tmp_path / "cut"
    shutil.copytree(fixture_root / "service-a", copy)
    pstree = copy / "pstree.img"
    pstree.chmod(0o644)
    pstree.write_bytes(pstree.read_bytes()[:-3])
    rows = run_json("list", tmp_path, "--format", "json")
    assert [row["status"] for row in rows] == ["DAMAGED"]
    assert rows[0]["damaged"].startswith("pstree.img: ") and rows[0]["processes"] is None


def test_unreadable_source_is_an_error_not_a_traceback(tmp_path):
    with pytest.raises(SourceError):
        resolve(tmp_path / "nothing.tar:app")


def test_a_pod_of_too_many_containers_is_refused(tmp_path, scratch):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for number in range(1001):
            info = tarfile.TarInfo(f"{number:04d}-c/checkpoint")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    archive = tmp_path / "crowd.tar"
    archive.write_bytes(raw.getvalue())
    outcome = invoke(["ps", str(archive)])
    assert outcome.code == 1 and outcome.err == (
        "crit-plus: crowd.tar: member '1000-c/checkpoint': refused: more than 1000 container "
        "directories\n")
    assert list(scratch.iterdir()) == []


def test_rootfs_entries_kept_are_bounded_over_the_whole_archive(shelf, monkeypatch):
    from crit_plus.sources import rootfs

    monkeypatch.setattr(rootfs, "MAX_ENTRIES", 4)
    with resolve(f"{shelf['pod']}:web") as source:
        # counter's listing (first in the archive) keeps 3 entries, web's the one left
        assert len(source.rootfs.entries) == 1 and source.rootfs.more == 2
    text = invoke(["summarize", f"{shelf['pod']}:web"]).out.decode()
    assert "2 more entries counted, not listed" in text


def test_an_unpacked_archive_keeps_its_rootfs_changes(shelf, tmp_path):
    with tarfile.open(shelf["pod"]) as tar:
        tar.extractall(tmp_path / "pod", filter="data")
    counter, web = (tmp_path / "pod" / POD_DIRS[name] for name in ("counter", "web"))
    data = run_json("summarize", web, "--format", "json")
    assert data["origin"]["kind"] == "criu-dir"
    assert [entry["path"] for entry in data["rootfs"]["entries"]] == \
        ["/etc", "/etc/motd", "/srv/web.conf"]
    outcome = invoke(["diff", str(counter), str(web), "--only", "rootfs", "--format", "json"])
    assert outcome.code == 1
    assert [(c["path"], c["change"]) for c in json.loads(outcome.out)["rootfs"]["changes"]] == \
        [("/etc/motd", "changed"), ("/srv/counter.conf", "removed"), ("/srv/web.conf", "added")]
    (web / "rootfs-diff.tar").unlink()
    (web / "rootfs-diff.tar").symlink_to("/etc/passwd")  # never followed
    rootfs = run_json("summarize", web, "--format", "json")["rootfs"]
    assert rootfs["entries"] == [] and rootfs["problem"].startswith("rootfs-diff.tar: ")
    assert rootfs["deleted"] == ["/etc/issue"]
