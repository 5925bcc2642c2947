"""``mounts -f tree`` fits in 100 columns on the real LXD fixtures (it was 136): each mount
point is named below its parent's (the tree shows the parent), and long cells are folded
onto more lines, the tree's lines drawn down beside them; nothing is cut: the folded cells,
joined back, are the JSON's values, and ``--format json`` is unchanged."""

from __future__ import annotations

import json

import pytest

from crit_plus.commands.mounts import tree_label
from crit_plus.render import tree_continuations, tree_prefixes
from tests.cli import run_cli

STATES = ["lxd-web/var/lib/lxd/storage-pools/default/containers/web/state",
          "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/before/state",
          "lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state",
          "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s1/state",
          "lxd-deb/var/lib/lxd/storage-pools/default/containers-snapshots/deb/s2/state"]
TREE_CHARS = "│├└─|`- "


def _join(pieces):
    """Folded lines back into the cell: a line ending in ``/``, ``,`` or ``:`` goes on
    without a space, one that ended at a space (cut when folded) with one."""
    text = ""
    for piece in pieces:
        if piece:
            text += piece if not text or text[-1] in "/,:" else " " + piece
    return text


def _rows(text):
    """The table of one namespace as ``[{header: cell joined back}]``: a line whose ID
    column is empty continues the row above it."""
    lines = text.splitlines()
    header = lines[1]
    names = header.split()
    starts = []
    for name in names:
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    rows = []
    for line in lines[3:]:
        cells = [line[start:end].strip() for start, end
                 in zip(starts, starts[1:] + [None])]
        cells[0] = cells[0].lstrip(TREE_CHARS) if names[0] == "MOUNTPOINT" else cells[0]
        if cells[names.index("ID")]:
            rows.append([[cell] for cell in cells])
        else:
            for parts, cell in zip(rows[-1], cells):
                parts.append(cell)
    return [{name: _join(parts) for name, parts in zip(names, row)} for row in rows]


@pytest.mark.parametrize("state", STATES)
def test_mounts_tree_fits_100_columns_and_keeps_every_value(fixture_root, state):
    directory = fixture_root / state
    done = run_cli("mounts", directory, "-f", "tree")
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 100, done.stdout
    document = json.loads(run_cli("mounts", directory, "-f", "json").stdout)
    [namespace] = document["namespaces"]
    mounts = namespace["mounts"]
    rows = _rows(done.stdout)
    assert [int(row["ID"]) for row in rows] == [m["mnt_id"] for m in mounts]
    points = {}
    for row, mount in zip(rows, mounts):
        parent = points.get(mount["parent_mnt_id"]) if mount["depth"] else None
        label = row["MOUNTPOINT"]
        points[mount["mnt_id"]] = path = label if parent is None or label.startswith("/") \
            else parent.rstrip("/") + "/" + label
        assert path == mount["mountpoint"]
        assert row["SOURCE"] == mount["source"]
        assert row["OPTIONS"] == ",".join(mount["mount_options"])
        assert row["PROPAGATION"] == " ".join(mount["propagation"])
        assert row["EXTERNAL"] == (mount["ext_key"] if mount["external"] else "")
    # and the table (with PARENT) stays within the 120 columns it had
    table = run_cli("mounts", directory).stdout
    assert max(len(line) for line in table.splitlines()) <= 120
    assert [row["MOUNTPOINT"] for row in _rows(table)] == [m["mountpoint"] for m in mounts]


def test_tree_labels_and_the_lines_drawn_beside_folded_rows():
    assert tree_label("/sys/fs/cgroup", "/sys") == "fs/cgroup"
    assert tree_label("/run", "/") == "run"
    assert tree_label("/", None) == "/"
    assert tree_label("/elsewhere", "/sys") == "/elsewhere"  # not below its parent's
    depths = [0, 1, 2, 1, 1]
    assert tree_prefixes(depths) == ["", "├─ ", "│  └─ ", "├─ ", "└─ "]
    # under a row: its own line when a sibling follows, then its children's line
    assert tree_continuations(depths) == ["│  ", "│  │  ", "│     ", "│  ", "   "]
