"""The images as a whole: files present on one side only, and the dump's facts side by side.

Facts come from ``inventory.img``, the CRIU log beside the images (CRIU version
and kernel, when the dump was verbose: LXD and Podman always are), ``stats-dump``
and the directory itself.  Some facts are a difference when they differ (the
CRIU version, the kernel, what the inventory asks of a restore); others differ
between any two dumps and are only shown (timings, counters, sizes, when).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..describe import network_lock_name, stat_label

#: Inventory fields compared: (field, label).
_INVENTORY = (("img_version", "image version"), ("fdinfo_per_id", "fdinfo per id"),
              ("ns_per_id", "namespaces per id"), ("lsm_type", "LSM"),
              ("pre_dump_mode", "pre-dump mode"), ("tcp_close", "tcp-close"),
              ("network_lock_method", "network lock"), ("plugins", "plugins"))


@dataclass(frozen=True, slots=True)
class FactRow:
    """One fact side by side; ``compared`` says whether a difference counts."""

    field: str
    label: str
    old: object
    new: object
    compared: bool = True

    @property
    def differs(self):
        """True when the values differ (whether or not that counts)."""
        return self.old != self.new


@dataclass(frozen=True)
class ImagesDiff:
    """The images section: names on one side only, facts, sizes and dump statistics."""

    only_old: tuple
    only_new: tuple
    facts: tuple
    stats: tuple

    @property
    def differs(self):
        """True when an image is on one side only or a compared fact differs."""
        return bool(self.only_old or self.only_new
                    or any(row.differs for row in self.facts if row.compared))


def _inventory_value(inventory, name):
    if inventory is None:
        return None
    value = getattr(inventory, name, None)
    if name == "network_lock_method":
        return network_lock_name(value)  # by name, as summarize says it
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _sizes(checkpoint, source):
    pages = sum(pages_file.size or 0 for pages_file in checkpoint.pages_files)
    return len(checkpoint.image_files), source.size if source is not None else None, pages


def diff_images(old, new, old_source=None, new_source=None):
    """The :class:`ImagesDiff` of checkpoints ``old`` and ``new`` (and their sources,
    :class:`crit_plus.sources.Source`, for the CRIU log facts and sizes)."""
    old_names, new_names = set(old.image_files), set(new.image_files)
    facts = []
    for name, label in (("criu_version", "CRIU version"), ("kernel", "kernel")):
        facts.append(FactRow(name, label, getattr(old_source, name, None),
                             getattr(new_source, name, None)))
    for name, label in _INVENTORY:
        facts.append(FactRow(name, label, _inventory_value(old.inventory, name),
                             _inventory_value(new.inventory, name)))
    old_sizes, new_sizes = _sizes(old, old_source), _sizes(new, new_source)
    for (name, label), a, b in zip((("images", "image files"), ("image_bytes", "image bytes"),
                                    ("pages_bytes", "page data bytes")), old_sizes, new_sizes):
        facts.append(FactRow(name, label, a, b, compared=False))
    facts.append(FactRow("taken_at", "taken at", getattr(old_source, "taken_at", None),
                         getattr(new_source, "taken_at", None), compared=False))
    old_stats = dict(old.stats.fields) if old.stats is not None else {}
    new_stats = dict(new.stats.fields) if new.stats is not None else {}
    names = list(old_stats) + [name for name in new_stats if name not in old_stats]
    stats = tuple(FactRow(name, stat_label(name), old_stats.get(name), new_stats.get(name),
                          compared=False) for name in names)
    return ImagesDiff(tuple(sorted(old_names - new_names)), tuple(sorted(new_names - old_names)),
                      tuple(facts), stats)
