"""Jobs and their runs: submit a job (`run`), change it (`update`, `suspend`, `resume`),
read it (`ls`, `show`, `runs`, `status`, `schedule`), run it again, wait for its runs and
delete it (`rerun`, `wait`, `delete`); commands/control.py ends runs (`cancel`, `stop`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from jobctl.arrays import array_exit_status, is_array, wait_for_array
from jobctl.bodies import job_changes, new_job_body, retry_from, retry_given
from jobctl.client import Client, segment
from jobctl.commands.run_listing import given_filters, list_all_runs, run_filter_options
from jobctl.commands.shared import collect, find, finish, outcome, run_of, show
from jobctl.commands.uploads import input_slugs
from jobctl.completion import ANY_IDS, JOB_IDS, recipes
from jobctl.connection import Connection, pass_connection
from jobctl.options import (
    ANY_ID,
    CONTEXT,
    JOB_ID,
    PAIRS,
    SINCE,
    all_users_option,
    all_users_query,
    json_option,
    project_option,
    resource_options,
    retry_options,
    schedule_options,
    spec_options,
    workflow_options,
)
from jobctl.parsing import id_kind
from jobctl.render.jobs import (
    EVENT_HEADERS,
    RUN_HEADERS,
    SCHEDULE_HEADERS,
    event_row,
    job_details,
    run_details,
    run_row,
    schedule_row,
    status_details,
)
from jobctl.render.layout import table
from jobctl.render.listing import jobs_table
from jobctl.render.values import local_time, utc_now
from jobctl.waiting import exit_status, wait_until_gone


@click.command(context_settings=CONTEXT)
@click.option(
    "--recipe",
    help="Make the job of this recipe (a snapshot); the arguments are then the command,"
    " and the options override the recipe's (env and labels merge).",
    shell_complete=recipes,
)
@spec_options(replacing=False)
@project_option(
    "Put the job in this project: its members see it and may cancel, stop and re-run it"
    " (it still runs as you)."
)
@resource_options()
@schedule_options(replacing=False)
@retry_options(replacing=False)
@workflow_options()
@click.option("--wait", is_flag=True, help="Wait for the run (and its retries); exit as it did.")
@click.option("--follow", is_flag=True, help="Stream its logs while waiting (implies --wait).")
@json_option
@click.argument("image", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_connection
def run(
    connection: Connection,
    /,
    *,
    recipe: str | None,
    wait: bool,
    follow: bool,
    as_json: bool,
    image: str | None,
    command: tuple[str, ...],
    **options: Any,
) -> None:
    """Create a job and start its first run: IMAGE [-- COMMAND ARGS...], or --recipe NAME
    [-- COMMAND ARGS...]. Resources come from --plan, or from --cpus/--gpus/--ram-gb/
    --vram-gb/--storage-gb/--gpu-share.

    Prints `<job-id> <run-id>` (with --follow on stderr: stdout and stderr carry the run's
    own); with --schedule, `<job-id> next <time>` (its ticks start the runs). Put `--`
    before a command that has options of its own."""
    _check_waiting(options, wait=wait, follow=follow)
    if recipe is None and image is None:
        raise click.UsageError("give an IMAGE, or a --recipe")
    client = connection.client()
    options["input"] = input_slugs(client, options["input"])  # files are uploaded first
    job = client.post("/v1/jobs", new_job_body(recipe, image, command, options))
    run_id = job["latestRunId"]
    if run_id is None:
        next_fire = local_time((job.get("schedule") or {}).get("nextFireAt"))
        show(job, as_json, lambda: f"{job['id']} next {next_fire}")
        return
    # following, stdout is the run's: `run --follow > out.log` keeps only its output there
    show(job, as_json, lambda: f"{job['id']} {run_id}", err=follow)
    if wait and is_array(job):
        click.get_current_context().exit(array_exit_status(wait_for_array(client, job["id"])))
    if wait or follow:
        finish(client, run_id, follow=follow)


def _check_waiting(options: Mapping[str, Any], *, wait: bool, follow: bool) -> None:
    if options["schedule"] and (wait or follow):
        raise click.UsageError("--wait and --follow need a run now; a scheduled job has none")
    if options["array"] and follow:
        raise click.UsageError("--follow follows one run; an array has many: --wait, then logs")


@click.command(context_settings=CONTEXT)
@click.option("--image", help="The image its next runs use.")
@spec_options(replacing=True)
@schedule_options(replacing=True)
@retry_options(replacing=True)
@json_option
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_connection
def update(connection: Connection, /, *, as_json: bool, job_id: str, **options: Any) -> None:
    """Change what a job's next runs execute, or when: JOB_ID [OPTIONS] [-- COMMAND ARGS...].

    Only what is given changes; runs created before keep what they were created with."""
    client = connection.client()
    options["input"] = input_slugs(client, options["input"])
    body = job_changes(options)
    if retry_given(options):
        current = client.get(f"/v1/jobs/{segment(job_id)}").get("retry")
        body["retry"] = retry_from(current, options)
    if options["no_retry"]:
        body["retry"] = None
    if not body:
        raise click.UsageError("nothing to change: give an option or a command")
    job = client.patch(f"/v1/jobs/{segment(job_id)}", body)
    show(job, as_json, lambda: job_details(job))


@click.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@json_option
@pass_connection
def suspend(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """Pause a job's schedule; runs in flight go on. `jobctl resume` restarts it."""
    job = connection.client().patch(f"/v1/jobs/{segment(job_id)}", {"suspend": True})
    show(job, as_json, lambda: f"{job['id']} suspended")


@click.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@json_option
@pass_connection
def resume(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """Restart a suspended schedule at its next tick (missed ticks are not caught up)."""
    job = connection.client().patch(f"/v1/jobs/{segment(job_id)}", {"suspend": False})
    next_fire = local_time((job.get("schedule") or {}).get("nextFireAt"))
    show(job, as_json, lambda: f"{job['id']} next {next_fire}")


@click.command("schedule", context_settings=CONTEXT)
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@json_option
@pass_connection
def list_schedules(connection: Connection, *, every: bool, as_json: bool) -> None:
    """List the scheduled jobs with their next fire time, newest job first."""
    page = collect(connection.client(), "/v1/jobs", {"scheduled": "true"}, "jobs", every)
    rows = map(schedule_row, page["jobs"])
    show(page, as_json, lambda: table(SCHEDULE_HEADERS, rows))


@click.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@json_option
@pass_connection
def status(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """A job's latest run, its runs counted by status, and its schedule."""
    doc = connection.client().get(f"/v1/jobs/{segment(job_id)}/status")
    show(doc, as_json, lambda: status_details(doc))


@click.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@click.option("--wait", is_flag=True, help="Wait until its runs have stopped and it is gone.")
@pass_connection
def delete(connection: Connection, *, job_id: str, wait: bool) -> None:
    """Delete a job: stop its runs, remove their containers, logs and records. Irreversible."""
    client = connection.client()
    runs = client.get(f"/v1/jobs/{segment(job_id)}/runs", {"limit": 1})["runs"]
    client.delete(f"/v1/jobs/{segment(job_id)}")
    if wait and runs:  # the latest run's record goes last: gone, the job is purged
        wait_until_gone(client, f"/v1/runs/{segment(runs[0]['id'])}")
    click.echo(f"deleted {job_id}")


@click.command("ls", context_settings=CONTEXT)
@click.option("--status", help="Only jobs whose latest run has this status.")
@click.option(
    "--label",
    multiple=True,
    callback=PAIRS,
    metavar="KEY=VALUE",
    help="Only jobs with this label; repeatable.",
)
@click.option(
    "--since", callback=SINCE, metavar="TIME", help="Only jobs created since: a time, or 2h ago."
)
@click.option(
    "--before", callback=SINCE, metavar="TIME", help="Only jobs created before: a time, or 2h."
)
@click.option("--limit", type=click.IntRange(min=1), help="Page size (server default 50).")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@click.option(
    "-o", "--output", type=click.Choice(["wide"]),
    help="wide: add the plan, latest run, its exit code or reason, its duration, the next"
    " tick and the command.",
)  # fmt: skip
@project_option("Only this project's jobs.")
@all_users_option
@json_option
@pass_connection
def list_jobs(
    connection: Connection,
    *,
    status: str | None,
    label: tuple[tuple[str, str], ...],
    since: str | None,
    before: str | None,
    limit: int | None,
    every: bool,
    output: str | None,
    project: str | None,
    all_users: bool,
    as_json: bool,
) -> None:
    """List your jobs and your projects' jobs, newest first."""
    query = {"status": status, "label": [f"{k}={v}" for k, v in label], "limit": limit}
    query |= {"createdAfter": since, "createdBefore": before}
    query |= all_users_query(all_users) | ({"project": project} if project else {})
    page = collect(connection.client(), "/v1/jobs", query, "jobs", every)
    jobs, wide = page["jobs"], output == "wide"
    show(page, as_json, lambda: jobs_table(jobs, utc_now(), wide=wide, users=all_users))
    if page.get("nextCursor") and not as_json:
        click.echo("jobctl: more jobs than shown: --all for every page, or --limit N", err=True)


@click.command("show", context_settings=CONTEXT)
@click.argument("object_id", metavar="ID", callback=ANY_ID, shell_complete=ANY_IDS)
@json_option
@pass_connection
def show_object(connection: Connection, *, object_id: str, as_json: bool) -> None:
    """Show a job or a run and its events: an id, a unique prefix of one, or a job's name."""
    client = connection.client()
    kind, doc = find(client, object_id)
    if kind == "job":
        show(doc, as_json, lambda: job_details(doc))
        return
    show(doc, as_json, lambda: run_with_events(client, doc))


def run_with_events(client: Client, run_doc: Mapping[str, Any]) -> str:
    events = client.get(f"/v1/runs/{segment(run_doc['id'])}/events")["events"]
    events_table = table(EVENT_HEADERS, map(event_row, events))
    return f"{run_details(run_doc)}\n\n{events_table}"


@click.command(context_settings=CONTEXT)
@click.argument(
    "job_id", required=False, callback=ANY_ID, metavar="[JOB_OR_RUN_ID]", shell_complete=ANY_IDS
)
@run_filter_options
@click.option("--limit", type=click.IntRange(min=1), help="Page size (server default 50).")
@json_option
@pass_connection
def runs(
    connection: Connection,
    /,
    *,
    job_id: str | None,
    limit: int | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """List a job's runs, newest first: the job's id, a unique prefix of it or its name, or
    one of its runs' ids. Without one: the runs of all your jobs and your projects' jobs,
    filtered by the options."""
    if job_id is None:
        list_all_runs(connection, limit=limit, as_json=as_json, filters=filters)
        return
    if given_filters(filters):
        raise click.UsageError(
            f"{', '.join(given_filters(filters))}: these list runs across jobs; give no job id"
        )
    client = connection.client()
    if id_kind(job_id) != "job":  # a run's, or what the daemon resolves: a name, a prefix
        kind, doc = find(client, job_id)
        job_id = doc["id"] if kind == "job" else doc["jobId"]
    page = client.get(f"/v1/jobs/{segment(job_id)}/runs", {"limit": limit})
    show(page, as_json, lambda: table(RUN_HEADERS, map(run_row, page["runs"])))


@click.command("wait", context_settings=CONTEXT)
@click.argument(
    "any_ids", nargs=-1, required=True, metavar="RUN_OR_JOB_ID...", callback=ANY_ID,
    shell_complete=ANY_IDS,
)  # fmt: skip
@pass_connection
def wait_for(connection: Connection, *, any_ids: tuple[str, ...]) -> None:
    """Wait until these runs have ended (a job id: its latest run), with their retries, one
    after another; exit as the last one did. On a terminal, a live status line: a progress
    bar once the job reports progress, an array job's indices done of total."""
    client = connection.client()
    found = [find(client, any_id) for any_id in any_ids]
    status = 0
    for kind, doc in found:
        if kind == "job" and is_array(doc):  # all of its latest array
            status = array_exit_status(wait_for_array(client, doc["id"]))
            continue
        status = exit_status(outcome(client, run_of(kind, doc)))
    click.get_current_context().exit(status)


@click.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID", shell_complete=JOB_IDS)
@click.option("--wait", is_flag=True, help="Wait for the run; exit with its exit code.")
@json_option
@pass_connection
def rerun(connection: Connection, *, job_id: str, wait: bool, as_json: bool) -> None:
    """Run a job again with the same spec. Prints the new run's id."""
    client = connection.client()
    run_doc = client.post(f"/v1/jobs/{segment(job_id)}/runs")
    show(run_doc, as_json, lambda: str(run_doc["id"]))
    if wait and run_doc.get("arrayId"):  # an array job's rerun: all of the new array
        click.get_current_context().exit(array_exit_status(wait_for_array(client, job_id)))
    if wait:
        finish(client, run_doc["id"])
