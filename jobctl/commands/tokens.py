"""`jobctl token`: API tokens, for scripts and teammates that reach jobd's TCP port."""

from __future__ import annotations

import click

from jobctl.client import segment
from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import (
    CONTEXT,
    DURATION,
    all_users_option,
    all_users_query,
    json_option,
)
from jobctl.render.layout import owned_table
from jobctl.render.tokens import TOKEN_HEADERS, created_token, token_details, token_row


@click.group(context_settings=CONTEXT)
def token() -> None:
    """API tokens: a bearer token, or a signing key (--hmac), that acts as you on jobd's TCP
    port (jobctl --url). Tokens are made over the Unix socket only."""


@token.command("create", context_settings=CONTEXT)
@click.option("--name", help="What it is for; unique among your tokens.")
@click.option(
    "--expires",
    callback=DURATION,
    metavar="DURATION",
    help="Lifetime, e.g. 12h, 30d (default 30d, at most 366d).",
)
@click.option(
    "--scope",
    type=click.Choice(["read", "submit", "admin"]),
    default="submit",
    show_default=True,
    help="read: reads only; submit: also runs and changes your jobs; admin: an admin's.",
)
@click.option("--hmac", "signing", is_flag=True, help="A signing key (key id and secret).")
@json_option
@pass_connection
def token_create(
    connection: Connection,
    *,
    name: str | None,
    expires: int | None,
    scope: str,
    signing: bool,
    as_json: bool,
) -> None:
    """Make a token for yourself; its secret is printed once."""
    body: dict[str, str | int] = {"scope": scope, "kind": "hmac" if signing else "bearer"}
    if name:
        body["name"] = name
    if expires is not None:
        body["expiresInSeconds"] = expires
    doc = connection.client().post("/v1/tokens", body)
    show(doc, as_json, lambda: created_token(doc))


@token.command("ls", context_settings=CONTEXT)
@all_users_option
@json_option
@pass_connection
def token_list(connection: Connection, *, all_users: bool, as_json: bool) -> None:
    """List your tokens (never their secrets)."""
    doc = connection.client().get("/v1/tokens", all_users_query(all_users))
    tokens = doc["tokens"]
    show(doc, as_json, lambda: owned_table(TOKEN_HEADERS, token_row, tokens, users=all_users))


@token.command("inspect", context_settings=CONTEXT)
@json_option
@click.argument("token_id", metavar="ID|NAME")
@pass_connection
def token_inspect(connection: Connection, *, as_json: bool, token_id: str) -> None:
    """Show a token."""
    doc = connection.client().get(f"/v1/tokens/{segment(token_id)}")
    show(doc, as_json, lambda: token_details(doc))


@token.command("revoke", context_settings=CONTEXT)
@click.argument("token_ids", metavar="ID|NAME...", nargs=-1, required=True)
@pass_connection
def token_revoke(connection: Connection, *, token_ids: tuple[str, ...]) -> None:
    """Revoke tokens: from the next request on, they open nothing."""
    client = connection.client()
    for token_id in token_ids:
        client.delete(f"/v1/tokens/{segment(token_id)}")
        click.echo(f"revoked token {token_id}")
