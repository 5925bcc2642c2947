"""``inventory.img`` (what the whole dump needs) and ``stats-dump`` (CRIU's
timings and page counters for the dump)."""

from __future__ import annotations

from .errors import EntryDecodeError, StrPath
from .ids import ids_from_message
from .image import Source, open_image
from .records import DumpStats, Inventory
from .text import image_text

#: ``inventory_entry`` field number of ``dump_criu_run_id`` (CRIU >= 3.16).
RUN_ID_FIELD = 13


def _first(path, type_name):
    with open_image(path) as image:
        for index, offset, msg in image.iter_messages():
            return msg, Source(image.path, offset, index)
    raise EntryDecodeError(path, type_name, "the image has no entry", 4, 0)


def _enum_name(msg, name):
    if name not in msg.DESCRIPTOR.fields_by_name or not msg.HasField(name):
        return None
    value = getattr(msg, name)
    field = msg.DESCRIPTOR.fields_by_name[name]
    if field.enum_type is None:
        return str(value)
    named = field.enum_type.values_by_number.get(value)
    return named.name if named is not None else str(value)


def _get(msg, name):
    if name in msg.DESCRIPTOR.fields_by_name and msg.HasField(name):
        return getattr(msg, name)
    return None


def read_inventory(path: StrPath) -> Inventory:
    """Return the :class:`Inventory` of ``inventory.img`` at ``path``."""
    msg, source = _first(path, "inventory_entry")
    plugins: tuple = ()
    if _get(msg, "plugins_entry") is not None:
        plugins = tuple(image_text(name) for name in msg.plugins_entry.plugins)
    return Inventory(
        img_version=msg.img_version,
        fdinfo_per_id=bool(msg.fdinfo_per_id),
        ns_per_id=bool(msg.ns_per_id),
        root_ids=ids_from_message(msg.root_ids, source) if msg.HasField("root_ids") else None,
        root_cg_set=_get(msg, "root_cg_set"),
        lsm_type=_enum_name(msg, "lsmtype"),
        dump_uptime=_get(msg, "dump_uptime"),
        pre_dump_mode=None if _get(msg, "pre_dump_mode") is None else str(msg.pre_dump_mode),
        tcp_close=bool(_get(msg, "tcp_close")),
        network_lock_method=None if _get(msg, "network_lock_method") is None
        else str(msg.network_lock_method),
        plugins=plugins,
        run_id=_run_id(msg),
        source=source,
        raw=msg,
        allow_uprobes=bool(_get(msg, "allow_uprobes")),
    )


def _run_id(msg):
    """``dump_criu_run_id``, also when the loaded schema is older than the field and
    keeps it as an unknown field (as :func:`decoders.pagemap.page_count` does)."""
    if "dump_criu_run_id" in msg.DESCRIPTOR.fields_by_name:
        return image_text(msg.dump_criu_run_id) if msg.HasField("dump_criu_run_id") else None
    from .jsonform import unknown_fields  # an older schema only: loaded then

    for number, _wire, value in unknown_fields(msg):
        if number == RUN_ID_FIELD and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


def read_dump_stats(path: StrPath) -> DumpStats:
    """Return the :class:`DumpStats` of ``stats-dump`` at ``path``."""
    msg, source = _first(path, "stats_entry")
    if not msg.HasField("dump"):
        return DumpStats((), source)
    return DumpStats(tuple((f.name, v) for f, v in msg.dump.ListFields()), source)
