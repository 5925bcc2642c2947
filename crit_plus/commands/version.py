"""``version``: crit-plus, the pycriu it uses, the CRIU schema it speaks, and
whether a checkpoint needs a newer one."""

from __future__ import annotations

import sys

import click
import google.protobuf

from decoders.schema import get_schema, own_schema_dir

from .. import __version__
from ..render import stamped, write_fields, write_json
from ..schema_check import check_checkpoint
from ..opening import resolve_source
from .options import format_option


def version_facts():
    """Which crit-plus, pycriu (version, origin, path) and protobuf are in use."""
    schema = get_schema()
    return {
        "crit_plus": __version__,
        "schema_criu_version": schema.criu_version,
        "pycriu_origin": schema.origin,
        "pycriu_path": schema.package_dir,
        "protobuf": google.protobuf.__version__,
        "own_schema_dir": own_schema_dir(),
    }


@click.command()
@click.argument("checkpoint", required=False, metavar="[PATH]")
@click.option("--lxd-dir", type=click.Path(file_okay=False),
              help="LXD/Incus directory instead of the standard ones.")
@click.option("--project", help="LXD/Incus project of a NAME.")
@format_option()
def version(checkpoint, lxd_dir, project, fmt):
    """Show crit-plus's version, the pycriu it loaded and where from; with a
    checkpoint PATH (a directory, lxd:NAME/SNAP, an archive), also whether it
    was written by a newer CRIU than the schema.

    crit-plus prefers its own current schema (built by `make schema` from
    CRIU 4.2.1's sources) over the distribution's pycriu, which may be older
    than the CRIU that wrote a checkpoint (Debian 12 ships 3.17.1).  Set
    CRIT_PLUS_PYCRIU=system to use the distribution's, or to a directory.

    \b
    Example:
      crit-plus version /var/lib/lxd/containers/web/state
    """
    facts = version_facts()
    warning = None
    if checkpoint:
        with resolve_source(checkpoint, lxd_dir=lxd_dir, project=project) as source:
            currency = check_checkpoint(source.images_dir, source.criu_version)
        facts.update(
            checkpoint=checkpoint,
            checkpoint_criu_version=currency.dump_version,
            unknown_fields=currency.unknown_fields,
            newer_than_schema=currency.newer_than_schema,
        )
        warning = currency.warning()
    out = sys.stdout
    if fmt == "json":
        write_json(stamped("version", facts), out)
    else:
        write_fields([(k, v if not isinstance(v, dict) else sum(v.values()))
                      for k, v in facts.items()], out)
    if warning:
        click.echo(f"crit-plus: warning: {warning}", err=True)


def register(group):
    """Add ``version`` to the CLI group."""
    group.add_command(version)
