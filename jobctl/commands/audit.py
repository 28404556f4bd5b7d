"""`jobctl audit`: the audit log, for admins."""

from __future__ import annotations

from typing import Any

import click

from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import CONTEXT, json_option
from jobctl.render.layout import table
from jobctl.render.values import NONE, local_time

AUDIT_HEADERS = ("WHEN", "USER", "VIA", "PEER", "REQUEST", "STATUS", "IDS")


@click.command("audit", context_settings=CONTEXT)
@click.option("--user", help="Only this user's requests.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@pass_connection
def audit(connection: Connection, *, user: str | None, limit: int, as_json: bool) -> None:
    """Every state-changing request, newest first: who, from where, what, how it ended
    (admins only)."""
    query: dict[str, Any] = {"limit": limit, "user": user}
    doc = connection.client().get("/v1/audit", query)
    show(doc, as_json, lambda: table(AUDIT_HEADERS, map(_row, doc["entries"])))


def _row(entry: dict[str, Any]) -> tuple[object, ...]:
    via = entry.get("via") or NONE
    if entry.get("tokenId"):
        via = f"{via} {entry['tokenId']}"
    return (
        local_time(entry["at"]),
        entry.get("user") or NONE,
        via,
        entry["peer"],
        f"{entry['method']} {entry['path']}",
        f"{entry['status']} {entry['outcome']}",
        ", ".join(entry["ids"]) or NONE,
    )
