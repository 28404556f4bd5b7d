"""jobctl: the command line for jobd, a client of its HTTP API like any other.

Errors the daemon reports print as `jobctl: <message>` and exit 1; usage errors exit 2.

This module is the `main` group and its global options (how to reach the daemon), and it
registers every command; the commands live in jobctl.commands, one module per area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jobctl.client import JobctlError
from jobctl.commands.audit import audit
from jobctl.commands.control import cancel, stop
from jobctl.commands.exec import exec_command
from jobctl.commands.jobs import (
    delete,
    list_jobs,
    list_schedules,
    rerun,
    resume,
    run,
    runs,
    show_object,
    status,
    suspend,
    update,
    wait_for,
)
from jobctl.commands.logs import logs
from jobctl.commands.metrics import metrics, top
from jobctl.commands.node import doctor, health, node, plans
from jobctl.commands.outputs import outputs
from jobctl.commands.prune import prune
from jobctl.commands.recipes import recipe
from jobctl.commands.tokens import token
from jobctl.commands.uploads import upload
from jobctl.commands.volumes import volume
from jobctl.completion import completion
from jobctl.connection import Connection, check_url_option, pick_transport
from jobctl.options import CONTEXT


class JobctlGroup(click.Group):
    """Prints jobctl's own errors as `jobctl: <message>` and exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JobctlError as e:
            click.echo(f"jobctl: {e}", err=True)
            ctx.exit(1)


@click.group(cls=JobctlGroup, context_settings=CONTEXT)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="JOBD_SOCKET",
    help="jobd's Unix socket [env JOBD_SOCKET; default: where jobd puts it]",
)
@click.option(
    "--url",
    envvar="JOBD_URL",
    callback=check_url_option,
    help="Use jobd's TCP API instead, e.g. http://127.0.0.1:8427 [env JOBD_URL]",
)
@click.option("--token", envvar="JOBD_TOKEN", help="Bearer token for --url [env JOBD_TOKEN]")
@click.option(
    "--key-id",
    envvar="JOBD_KEY_ID",
    help="Sign each --url request with this signing key (jobctl token create --hmac)"
    " [env JOBD_KEY_ID]",
)
@click.option(
    "--secret",
    envvar="JOBD_SECRET",
    help="The signing key's secret; prefer the environment, which ps does not show"
    " [env JOBD_SECRET]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="JOBD_DATA_DIR",
    help="jobd's data directory, where --url finds its token [env JOBD_DATA_DIR]",
)
@click.version_option(package_name="jobd", prog_name="jobctl")
@click.pass_context
def main(
    ctx: click.Context,
    socket_path: Path | None,
    url: str | None,
    token: str | None,
    key_id: str | None,
    secret: str | None,
    data_dir: Path | None,
) -> None:
    """Run and inspect containerized jobs on jobd."""
    socket_path, url = pick_transport(
        socket_path, ctx.get_parameter_source("socket_path"), url, ctx.get_parameter_source("url")
    )
    ctx.obj = Connection(
        socket=socket_path,
        url=url,
        token=token,
        data_dir=data_dir,
        key_id=key_id,
        secret=secret,
    )


# -- commands -------------------------------------------------------------------------

# jobs and their runs
main.add_command(run)
main.add_command(update)
main.add_command(suspend)
main.add_command(resume)
main.add_command(list_schedules)
main.add_command(status)
main.add_command(delete)
main.add_command(list_jobs)
main.add_command(show_object)
main.add_command(runs)
main.add_command(cancel)
main.add_command(stop)
main.add_command(rerun)
main.add_command(wait_for)
# a run's output, and commands in its container
main.add_command(logs)
main.add_command(metrics)
main.add_command(outputs)
main.add_command(exec_command)
# the node and the daemon
main.add_command(plans)
main.add_command(health)
main.add_command(node)
main.add_command(top)
main.add_command(doctor)
main.add_command(audit)
main.add_command(prune)
# recipes, volumes, uploads and API tokens, groups of their own
main.add_command(recipe)
main.add_command(volume)
main.add_command(upload)
main.add_command(token)
# the shell
main.add_command(completion)
