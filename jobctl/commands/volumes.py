"""`jobctl volume`: the named volumes jobd manages."""

from __future__ import annotations

import click

from jobctl.client import segment
from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import CONTEXT, PAIRS, all_users_option, all_users_query, json_option
from jobctl.render.layout import owned_table
from jobctl.render.volumes import VOLUME_HEADERS, volume_details, volume_row


@click.group(context_settings=CONTEXT)
def volume() -> None:
    """Named volumes: data jobs keep across runs (`jobctl run -v NAME:/data`)."""


@volume.command("ls", context_settings=CONTEXT)
@all_users_option
@json_option
@pass_connection
def volume_list(connection: Connection, *, all_users: bool, as_json: bool) -> None:
    """List your volumes, with their size and the runs using them."""
    doc = connection.client().get("/v1/volumes", all_users_query(all_users))
    volumes = doc["volumes"]
    show(doc, as_json, lambda: owned_table(VOLUME_HEADERS, volume_row, volumes, users=all_users))


@volume.command("create", context_settings=CONTEXT)
@click.option(
    "--label", multiple=True, callback=PAIRS, metavar="KEY=VALUE", help="Label; repeatable."
)
@json_option
@click.argument("name")
@pass_connection
def volume_create(
    connection: Connection, *, label: tuple[tuple[str, str], ...], as_json: bool, name: str
) -> None:
    """Create a volume (a job's first use of a name creates it too)."""
    doc = connection.client().post("/v1/volumes", {"name": name, "labels": dict(label)})
    show(doc, as_json, lambda: f"created volume {doc['name']}")


@volume.command("inspect", context_settings=CONTEXT)
@json_option
@click.argument("name")
@pass_connection
def volume_inspect(connection: Connection, *, as_json: bool, name: str) -> None:
    """Show a volume: its size, files, owner and the runs using it."""
    doc = connection.client().get(f"/v1/volumes/{segment(name)}")
    show(doc, as_json, lambda: volume_details(doc))


@volume.command("rm", context_settings=CONTEXT)
@click.argument("name")
@pass_connection
def volume_remove(connection: Connection, *, name: str) -> None:
    """Delete a volume and what it holds (refused while a queued or running run uses it)."""
    connection.client().delete(f"/v1/volumes/{segment(name)}")
    click.echo(f"deleted volume {name}")
