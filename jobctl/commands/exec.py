"""`jobctl exec`: a command in a running run's container."""

from __future__ import annotations

import click

from jobctl.commands.shared import resolve_run
from jobctl.completion import ANY_IDS
from jobctl.connection import Connection, pass_connection
from jobctl.options import ANY_ID, CONTEXT


@click.command("exec", context_settings=CONTEXT)
@click.option(
    "-t/-T",
    "--tty/--no-tty",
    "use_tty",
    default=None,
    help="Attach a terminal (default: when stdin and stdout are terminals).",
)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID, shell_complete=ANY_IDS)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_connection
def exec_command(
    connection: Connection, *, use_tty: bool | None, any_id: str, command: tuple[str, ...]
) -> None:
    """Run a command in a running run's container (a job id means its latest run):
    RUN_OR_JOB_ID -- COMMAND ARGS... Exits with the command's exit code."""
    from jobctl.attach import exec_in_run, wants_tty

    client = connection.client()
    run_id = resolve_run(client, any_id)
    code = exec_in_run(
        client.endpoint, run_id, command, use_tty=wants_tty() if use_tty is None else use_tty
    )
    click.get_current_context().exit(code)
