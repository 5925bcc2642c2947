"""``version``: crit-plus, the pycriu it uses and the CRIU schema it speaks."""

from __future__ import annotations

import click
import google.protobuf

from decoders.schema import get_schema, own_schema_dir

from .. import __version__
from ..render import write_fields, write_json
from .options import format_option


def version_facts():
    """Which crit-plus, pycriu (version, origin, path) and protobuf are in use."""
    schema = get_schema()
    return {
        "crit_plus": __version__,
        "pycriu_version": schema.criu_version,
        "pycriu_origin": schema.origin,
        "pycriu_path": schema.package_dir,
        "protobuf": google.protobuf.__version__,
        "own_schema_dir": own_schema_dir(),
    }


@click.command()
@format_option()
def version(fmt):
    """Show crit-plus's version, the pycriu it loaded and where from.

    crit-plus prefers its own current schema (built by `make schema` from
    CRIU 4.2.1's sources) over the distribution's pycriu, which may be older
    than the CRIU that wrote a checkpoint (Debian 12 ships 3.17.1).
    """
    facts = version_facts()
    if fmt == "json":
        write_json(facts, click.get_text_stream("stdout"))
        return
    write_fields(list(facts.items()), click.get_text_stream("stdout"))


def register(group):
    """Add ``version`` to the CLI group."""
    group.add_command(version)
