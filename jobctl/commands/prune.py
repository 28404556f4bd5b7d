"""`jobctl prune`: prune finished runs now, as the daemon's [retention] says: your own jobs'
runs (an admin's: everyone's), with their records, logs, outputs and metrics."""

from __future__ import annotations

import click

from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import CONTEXT, json_option
from jobctl.render.node import prune_summary


@click.command("prune", context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option
@pass_connection
def prune(connection: Connection, *, dry_run: bool, as_json: bool) -> None:
    """Remove the finished runs [retention] keeps no longer (keep_last per job, max_age),
    now rather than at the daemon's next round; say how many and what that freed. A job's
    latest run, and queued or active runs, always stay."""
    doc = connection.client().post("/v1/prune", {"dryRun": dry_run})
    show(doc, as_json, lambda: prune_summary(doc))
