"""crit-plus decodes every image of every real fixture exactly as CRIU's crit.

Runs with the current schema (CRIU 4.2.1's pycriu, built by `make schema`).
CRIU's decoder is wrong in a few places; those are tested apart, each with the
reason, and there crit-plus is right:

- task-state names: pycriu calls state 3 "Zombie", CRIU writes 3 for a stopped
  task and 2 for a zombie (test_task_state_names_are_right);
- ipcns-shm: pycriu reads contents inline even when ``in_pagemaps`` says they
  live in the pagemap (test_ipcns_shm_in_pagemaps);
- bpfmap-data ``--nopl``: pycriu's skip reads a field that does not exist.
"""

from __future__ import annotations

import io
import json

import pytest

from crit_plus.commands.decode import write_image_json
from decoders.encode import encode_image
from decoders.image import image_from_bytes, open_image
from decoders.schema import get_schema

from .conftest import ARCHIVES, all_image_files
from .oracle import crit_json, is_metadata_image, ours_json
from .synth import entry_bytes, image_bytes, message

SCHEMA = get_schema()
CURRENT = SCHEMA.criu_version is not None and tuple(
    int(p) for p in SCHEMA.criu_version.split(".")[:2]) >= (4, 2)

pytestmark = pytest.mark.skipif(
    not CURRENT, reason=f"needs the current CRIU schema (make schema); loaded {SCHEMA.describe()}"
)


def fixture_images(fixture_root):
    """Every metadata image of every fixture."""
    images = []
    for name in ARCHIVES:
        for directory in sorted({p.parent for p in (fixture_root / name).rglob("*.img")}):
            images.extend(p for p in all_image_files(directory) if is_metadata_image(p))
    return images


def test_fixtures_hold_many_image_kinds(fixture_root):
    kinds = set()
    for path in fixture_images(fixture_root):
        with open_image(path) as image:
            kinds.add(image.magic_name)
    assert len(fixture_images(fixture_root)) > 400
    assert {"PAGEMAP", "CORE", "GHOST_FILE", "TCP_STREAM", "PIPES_DATA", "FIFO_DATA"} <= kinds


@pytest.mark.parametrize("pretty", [False, True], ids=["plain", "pretty"])
def test_json_equals_crit_for_every_image(fixture_root, pretty):
    mismatches = [
        path for path in fixture_images(fixture_root)
        if ours_json(path, pretty) != crit_json(path, pretty)
    ]
    assert mismatches == []


def test_nopl_equals_crit_for_payload_images(fixture_root):
    payload_kinds = {"PIPES_DATA", "FIFO_DATA", "TCP_STREAM", "GHOST_FILE", "SK_QUEUES"}
    checked = 0
    for path in fixture_images(fixture_root):
        with open_image(path) as image:
            if image.magic_name not in payload_kinds:
                continue
        checked += 1
        assert ours_json(path, True, nopl=True) == crit_json(path, True, nopl=True), path
    assert checked >= 10


def test_streamed_text_is_crits_text(service_a):
    for path in all_image_files(service_a):
        if not is_metadata_image(path):
            continue
        for pretty in (False, True):
            ours = io.StringIO()
            with open_image(path) as image:
                write_image_json(image, ours, pretty=pretty)
            theirs = json.dumps(SCHEMA.images.load(open(path, "rb"), pretty),
                                indent=4 if pretty else None)
            assert ours.getvalue() == theirs, path


@pytest.mark.parametrize("pretty", [False, True], ids=["plain", "pretty"])
def test_decode_then_encode_gives_the_same_bytes(fixture_root, pretty):
    for path in fixture_images(fixture_root):
        document = ours_json(path, pretty)
        assert encode_image(document, str(path)) == path.read_bytes(), path


def _edited_core(service_a, task_state):
    """A real core image with its task state changed, through decode → encode."""
    document = ours_json(service_a / "core-12525.img")
    document["entries"][0]["tc"]["task_state"] = task_state
    return encode_image(document)


@pytest.mark.parametrize("state,name", [(1, "Alive"), (2, "Zombie"), (3, "Stopped")])
def test_task_state_names_are_right(service_a, state, name):
    data = _edited_core(service_a, state)
    ours = image_from_bytes(data, "core-1.img").to_json(pretty=True)
    assert ours["entries"][0]["tc"]["task_state"] == name
    theirs = SCHEMA.images.loads(data, True)["entries"][0]["tc"]["task_state"]
    if state == 3:
        assert theirs == "Zombie"  # CRIU's bug: 3 is TASK_STOPPED (compel task-state.h)
    if state == 2:
        assert theirs == 2  # pycriu has no name for a zombie at all


def _shm_image(in_pagemaps):
    msg = SCHEMA.message_class("ipc_shm_entry")()
    desc = msg.desc
    for field in ("key", "uid", "gid", "cuid", "cgid", "mode", "id"):
        setattr(desc, field, 7)
    msg.size = 10
    msg.in_pagemaps = in_pagemaps
    body = msg.SerializeToString()
    data = (0x54564319).to_bytes(4, "little") + SCHEMA.magic_by_name["IPCNS_SHM"].to_bytes(
        4, "little") + len(body).to_bytes(4, "little") + body
    if not in_pagemaps:
        data += b"0123456789\0\0"
    return data


def test_ipcns_shm_in_pagemaps(tmp_path):
    inline = image_from_bytes(_shm_image(False), "ipcns-shm-1.img").to_json()
    assert "extra" in inline["entries"][0]
    in_pagemaps = image_from_bytes(_shm_image(True), "ipcns-shm-1.img").to_json()
    assert "extra" not in in_pagemaps["entries"][0]
    # pycriu reads the (absent) inline contents anyway
    assert "extra" in SCHEMA.images.loads(_shm_image(True))["entries"][0]


# -- payload kinds no fixture holds: built with pycriu's classes and the real framing ---------


def _ipc_messages():
    queue = message("ipc_msg_entry", qnum=2, qbytes=100)
    body = b""
    for mtype, data in ((1, b"abc"), (2, b"0123456789")):
        body += entry_bytes((message("ipc_msg", mtype=mtype, msize=len(data)),
                             data + bytes(-len(data) % 8)))
    return [(queue, body)]


PAYLOAD_KINDS = {
    "sk-queues.img": ("SK_QUEUES", lambda: [
        (message("sk_packet_entry", id_for=3, length=5), b"hello"),
        (message("sk_packet_entry", id_for=4, length=3), b"abc")]),
    "ipcns-sem-1.img": ("IPCNS_SEM", lambda: [
        (message("ipc_sem_entry", nsems=3), bytes([1, 0, 2, 0, 3, 0, 0, 0]))]),
    "ipcns-msg-1.img": ("IPCNS_MSG", _ipc_messages),
    "bpfmap-data.img": ("BPFMAP_DATA", lambda: [
        (message("bpfmap_data_entry", map_id=7, keys_bytes=4, values_bytes=8, count=1),
         b"KKKKVVVVVVVV")]),
}


@pytest.mark.parametrize("name", sorted(PAYLOAD_KINDS))
@pytest.mark.parametrize("pretty", [False, True])
def test_payload_kinds_no_fixture_holds_equal_crit(name, pretty, tmp_path):
    """sk-queues, SysV semaphores and message queues, BPF map data: crit's JSON, plain and
    pretty, and back to the same bytes; --nopl too, but for BPF map data, where crit crashes
    (docs/format.md)."""
    magic_name, entries = PAYLOAD_KINDS[name]
    path = tmp_path / name
    path.write_bytes(image_bytes(magic_name, entries()))
    assert ours_json(path, pretty) == crit_json(path, pretty)
    if name != "bpfmap-data.img":  # crit's --nopl crashes on it (AttributeError)
        assert ours_json(path, pretty, nopl=True) == crit_json(path, pretty, nopl=True)
    assert encode_image(ours_json(path, pretty)) == path.read_bytes()
