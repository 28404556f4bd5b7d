"""jobctl: the command line for jobd, a client of its HTTP API like any other.

Errors the daemon reports print as `jobctl: <message>` and exit 1; usage errors exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from jobctl import render
from jobctl.client import Client, Endpoint, JobctlError, check_url, load_token, segment
from jobctl.defaults import default_data_dir, default_socket
from jobctl.parsing import (
    check_id,
    id_kind,
    load_recipe_file,
    parse_duration,
    parse_pair,
    parse_since,
)
from jobctl.waiting import copy_log, exit_status, failure_note, wait_for_run, wait_until_gone

CONTEXT = {"help_option_names": ["-h", "--help"]}
MAX_LOG_LINES = 100_000  # the most a job's logs answer gives
Callback = Callable[[click.Context, click.Parameter, Any], Any]


# -- option types ---------------------------------------------------------------------


def converted(parse: Callable[[str], object]) -> Callback:
    """A click callback that parses an option's value (or each of a repeated option's)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if isinstance(value, tuple):
                return tuple(parse(item) for item in value)
            return None if value is None else parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx, param) from None

    return callback


DURATION = converted(parse_duration)
PAIRS = converted(parse_pair)
SINCE = converted(parse_since)
JOB_ID = converted(lambda value: check_id(value, "job"))
ANY_ID = converted(lambda value: check_id(value, "job", "run"))
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON object instead."
)


def spec_options(
    *, replacing: bool, named: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What a job runs, for `run` and for `update` (where each option given replaces the
    job's value whole), and for recipes (not `named`: a recipe's name is its argument)."""
    whole = " Replaces the job's whole environment." if replacing else ""
    options = [
        click.option("--plan", help="Plan id (see `jobctl plans`)."),
        click.option(
            "--env",
            multiple=True,
            callback=PAIRS,
            metavar="KEY=VALUE",
            help=f"Environment variable; repeatable.{whole}",
        ),
        click.option(
            "--timeout",
            callback=DURATION,
            metavar="DURATION",
            help="Deadline: 90, 90s, 15m, 2h, 3d, 1h30m.",
        ),
        *(
            [click.option("--name", help="A new name." if replacing else "A name for the job.")]
            if named
            else []
        ),
        click.option(
            "--label",
            multiple=True,
            callback=PAIRS,
            metavar="KEY=VALUE",
            help="Label; repeatable." + (" Replaces the job's labels." if replacing else ""),
        ),
        click.option("--network", type=click.Choice(["default", "none"]), help="none: no network."),
        click.option(
            "--kind",
            type=click.Choice(["batch", "persistent"]),
            help="persistent: a service that runs until `jobctl stop`, restarted on a crash.",
        ),
        click.option(
            "--port",
            multiple=True,
            type=click.IntRange(1, 65535),
            metavar="PORT",
            help="Publish this container port on a free local port; repeatable."
            + (" Replaces the job's ports." if replacing else ""),
        ),
    ]
    return _all_options(options)


def resource_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Explicit requirements instead of a plan (`resources` in the API), and queueing."""
    return _all_options(
        [
            click.option("--cpus", type=click.IntRange(min=1), help="CPUs (instead of a plan)."),
            click.option("--gpus", type=click.IntRange(min=0), help="GPUs, exclusive by default."),
            click.option("--ram-gb", type=click.FloatRange(min=0, min_open=True), help="Memory."),
            click.option(
                "--vram-gb", type=click.FloatRange(min=0), help="Free memory on each GPU."
            ),
            click.option("--storage-gb", type=click.FloatRange(min=0), help="Free disk."),
            click.option(
                "--gpu-share", is_flag=True, default=None, help="Share GPUs by --vram-gb."
            ),
            click.option("--priority", type=click.IntRange(-1000, 1000), help="Higher first."),
            click.option(
                "--max-pending",
                callback=DURATION,
                metavar="DURATION",
                help="Fail unschedulable when still queued after this long.",
            ),
        ]
    )


def resources_from(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `resources` object of the options given, or None (the job uses a plan)."""
    names = {
        "cpus": "cpuCount",
        "gpus": "gpuCount",
        "ram_gb": "minRamGb",
        "vram_gb": "minVramGb",
        "storage_gb": "minStorageGb",
        "gpu_share": "gpuShare",
    }
    given = {api: options[key] for key, api in names.items() if options.get(key) is not None}
    return given or None


def schedule_options(*, replacing: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """When a job runs by itself, for `run` and for `update`."""
    options = [
        click.option(
            "--schedule",
            metavar="CRON",
            help="Run on a 5-field cron schedule, e.g. '0 3 * * *' (no run starts now)."
            + (" See also --no-schedule." if replacing else ""),
        ),
        click.option("--timezone", help="IANA time zone for the schedule (default UTC)."),
        click.option(
            "--concurrency-policy",
            type=click.Choice(["forbid", "allow", "replace"]),
            help="A tick while a run is in flight: skip it (forbid, the default), start"
            " another (allow), or cancel the run and start anew (replace).",
        ),
        click.option(
            "--catch-up",
            type=click.Choice(["skip", "once"]),
            help="Ticks missed while jobd was down: skip them (default) or run once.",
        ),
    ]
    if replacing:
        options.append(
            click.option("--no-schedule", is_flag=True, help="Remove the schedule: on demand.")
        )
    return _all_options(options)


def retry_options(*, replacing: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A failed run's retries, for `run` and for `update`."""
    options = [
        click.option(
            "--attempts",
            type=click.IntRange(1, 100),
            help="Retry a failed run: run at most N times in all.",
        ),
        click.option(
            "--backoff",
            callback=DURATION,
            metavar="DURATION",
            help="Wait before the first retry (default 10s), doubled for each next one.",
        ),
        click.option(
            "--retry-on-exit",
            multiple=True,
            type=click.IntRange(1, 255),
            metavar="CODE",
            help="Retry only these exit codes; repeatable (default: any non-zero).",
        ),
        click.option("--retry-on-timeout", is_flag=True, help="Retry runs that timed out too."),
        click.option(
            "--no-retry-on-infrastructure",
            is_flag=True,
            help="Do not retry infrastructure failures (image missing, runtime error, lost).",
        ),
    ]
    if replacing:
        options.append(click.option("--no-retry", is_flag=True, help="Stop retrying failed runs."))
    return _all_options(options)


def retry_from(base: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The retry policy that retry_options' values ask for, over `base`."""
    return retry_policy(
        base,
        attempts=options["attempts"],
        backoff=options["backoff"],
        exit_codes=options["retry_on_exit"],
        on_timeout=options["retry_on_timeout"],
        no_infrastructure=options["no_retry_on_infrastructure"],
    )


def _all_options(
    options: Sequence[Callable[[Callable[..., Any]], Callable[..., Any]]],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


# -- connection -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """The global options. The client is built on first use, so that `--help` needs no token."""

    socket: Path | None
    url: str | None
    token: str | None
    data_dir: Path | None

    def client(self) -> Client:
        if self.url is None:
            return Client(Endpoint(socket=self.socket or default_socket()))
        token = self.token or load_token(self.data_dir or default_data_dir())
        return Client(Endpoint(url=self.url, token=token))


def pick_transport(
    socket: Path | None,
    socket_source: ParameterSource | None,
    url: str | None,
    url_source: ParameterSource | None,
) -> tuple[Path | None, str | None]:
    """A flag beats an environment variable; a URL beats a socket from the same place."""
    if socket is None or url is None:
        return socket, url
    if socket_source == url_source == ParameterSource.COMMANDLINE:
        raise click.UsageError("--socket and --url are mutually exclusive")
    if socket_source == ParameterSource.COMMANDLINE:
        return socket, None
    return None, url


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return check_url(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


pass_connection = click.make_pass_decorator(Connection)


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
    callback=_check_url,
    help="Use jobd's TCP API instead, e.g. http://127.0.0.1:8427 [env JOBD_URL]",
)
@click.option("--token", envvar="JOBD_TOKEN", help="Bearer token for --url [env JOBD_TOKEN]")
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
    data_dir: Path | None,
) -> None:
    """Run and inspect containerized jobs on jobd."""
    socket_path, url = pick_transport(
        socket_path, ctx.get_parameter_source("socket_path"), url, ctx.get_parameter_source("url")
    )
    ctx.obj = Connection(socket=socket_path, url=url, token=token, data_dir=data_dir)


# -- shared steps ---------------------------------------------------------------------


def show(doc: object, as_json: bool, text: Callable[[], str]) -> None:
    """The API's JSON, or the readable text (built only when wanted: tables cost imports)."""
    click.echo(render.as_json(doc) if as_json else text())


def finish(client: Client, run_id: str, *, follow: bool = False) -> None:
    """Wait for the run, and for its retries, and exit as the last attempt did; say why when
    its exit code does not. With `follow`, stream each attempt's log meanwhile."""
    while True:
        if follow:
            copy_log(client, run_id, {"follow": "true", "format": "text"}, sys.stdout.buffer)
        run = wait_for_run(client, run_id)
        note = failure_note(run)
        if note:
            click.echo(f"jobctl: {note}", err=True)
        if not run.get("retriedBy"):
            break
        click.echo(f"jobctl: {retry_note(client, run)}", err=True)
        run_id = run["retriedBy"]
    click.get_current_context().exit(exit_status(run))


def retry_note(client: Client, run: Mapping[str, Any]) -> str:
    retry = client.get(f"/v1/runs/{segment(run['retriedBy'])}")
    code = f" with exit code {run['exitCode']}" if run.get("exitCode") is not None else ""
    return (
        f"run {run['id']} failed{code}; attempt {retry['attempt']} is {retry['id']},"
        f" not before {render.local_time(retry.get('notBefore'))}"
    )


def resolve_run(client: Client, any_id: str) -> str:
    """A run id as given; a job id as its latest run."""
    if id_kind(any_id) == "run":
        return any_id
    job = client.get(f"/v1/jobs/{segment(any_id)}")
    run_id = job.get("latestRunId")
    if not run_id:
        raise JobctlError(f"job {any_id} has no runs")
    return str(run_id)


def collect(
    client: Client, path: str, query: Mapping[str, Any], key: str, every: bool
) -> dict[str, Any]:
    """One page as the API sent it, or with --all every page's items in one."""
    page = client.get(path, query)
    items = list(page[key])
    while every and page.get("nextCursor"):
        page = client.get(path, {**query, "cursor": page["nextCursor"]})
        items.extend(page[key])
    return {key: items, "nextCursor": page.get("nextCursor")}


def job_body(
    *,
    image: str | None,
    command: Sequence[str],
    env: Sequence[tuple[str, str]],
    plan: str | None,
    timeout: int | None,
    name: str | None,
    labels: Sequence[tuple[str, str]],
    network: str | None,
    kind: str | None = None,
    ports: Sequence[int] = (),
    when: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """POST /v1/jobs's body; what was not given is left out for the daemon's defaults.
    `when`: the schedule's fields; `retry`: the retry policy."""
    optional = {
        "command": list(command),
        "plan": plan,
        "timeoutSeconds": timeout,
        "name": name,
        "network": network,
        "kind": kind,
        "ports": list(ports),
        "retry": retry,
        **(when or {}),
    }
    body: dict[str, Any] = {"image": image} if image else {}
    body.update({"env": dict(env), "labels": dict(labels)})
    body.update({k: v for k, v in optional.items() if v})
    return body


def schedule_fields(
    schedule: str | None, timezone: str | None, policy: str | None, catch_up: str | None
) -> dict[str, Any]:
    given = {
        "schedule": schedule,
        "timezone": timezone,
        "concurrencyPolicy": policy,
        "catchUp": catch_up,
    }
    return {k: v for k, v in given.items() if v is not None}


def retry_policy(
    base: Mapping[str, Any] | None,
    *,
    attempts: int | None,
    backoff: int | None,
    exit_codes: Sequence[int],
    on_timeout: bool,
    no_infrastructure: bool,
) -> dict[str, Any] | None:
    """The retry policy the options ask for, over `base` (the job's, on update); None when
    no retry option was given."""
    given = {
        "maxAttempts": attempts,
        "backoffSeconds": backoff,
        "onExitCodes": sorted(exit_codes) or None,
        "onTimeout": on_timeout or None,
        "onInfrastructure": False if no_infrastructure else None,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        return None
    policy = {k: v for k, v in (base or {}).items() if v is not None}
    policy.update(changes)
    if "maxAttempts" not in policy:
        raise click.UsageError("--attempts: how many times to run at most, in all")
    return policy


# -- commands -------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.option(
    "--recipe",
    help="Make the job of this recipe (a snapshot); the arguments are then the command,"
    " and the options override the recipe's (env and labels merge).",
)
@spec_options(replacing=False)
@resource_options()
@schedule_options(replacing=False)
@retry_options(replacing=False)
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
    plan: str | None,
    env: tuple[tuple[str, str], ...],
    timeout: int | None,
    name: str | None,
    label: tuple[tuple[str, str], ...],
    network: str | None,
    kind: str | None,
    port: tuple[int, ...],
    schedule: str | None,
    timezone: str | None,
    concurrency_policy: str | None,
    catch_up: str | None,
    wait: bool,
    follow: bool,
    as_json: bool,
    image: str | None,
    command: tuple[str, ...],
    priority: int | None,
    max_pending: int | None,
    **options: Any,
) -> None:
    """Create a job and start its first run: IMAGE [-- COMMAND ARGS...], or --recipe NAME
    [-- COMMAND ARGS...]. Resources come from --plan, or from --cpus/--gpus/--ram-gb/
    --vram-gb/--storage-gb/--gpu-share.

    Prints `<job-id> <run-id>`; with --schedule, `<job-id> next <time>` (its ticks start
    the runs). Put `--` before a command that has options of its own."""
    if schedule and (wait or follow):
        raise click.UsageError("--wait and --follow need a run now; a scheduled job has none")
    if recipe is None and image is None:
        raise click.UsageError("give an IMAGE, or a --recipe")
    if recipe is not None and image is not None:
        command = (image, *command)  # with a recipe, every argument is the command
    client = connection.client()
    body = job_body(
        image=image if recipe is None else None,
        command=command,
        env=env,
        plan=plan,
        timeout=timeout,
        name=name,
        labels=label,
        network=network,
        kind=kind,
        ports=port,
        when=schedule_fields(schedule, timezone, concurrency_policy, catch_up),
        retry=retry_from(None, options),
    )
    queueing = {"resources": resources_from(options), "priority": priority}
    body.update({k: v for k, v in queueing.items() if v is not None})
    if max_pending is not None:
        body["maxPendingSeconds"] = max_pending
    if recipe is not None:
        body["recipe"] = recipe
    job = client.post("/v1/jobs", body)
    run_id = job["latestRunId"]
    if run_id is None:
        next_fire = render.local_time((job.get("schedule") or {}).get("nextFireAt"))
        show(job, as_json, lambda: f"{job['id']} next {next_fire}")
        return
    show(job, as_json, lambda: f"{job['id']} {run_id}")
    if wait or follow:
        finish(client, run_id, follow=follow)


@main.command(context_settings=CONTEXT)
@click.option("--image", help="The image its next runs use.")
@spec_options(replacing=True)
@schedule_options(replacing=True)
@retry_options(replacing=True)
@json_option
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_connection
def update(
    connection: Connection,
    /,
    *,
    image: str | None,
    plan: str | None,
    env: tuple[tuple[str, str], ...],
    timeout: int | None,
    name: str | None,
    label: tuple[tuple[str, str], ...],
    network: str | None,
    kind: str | None,
    port: tuple[int, ...],
    schedule: str | None,
    timezone: str | None,
    concurrency_policy: str | None,
    catch_up: str | None,
    no_schedule: bool,
    no_retry: bool,
    as_json: bool,
    job_id: str,
    command: tuple[str, ...],
    **retry: Any,
) -> None:
    """Change what a job's next runs execute, or when: JOB_ID [OPTIONS] [-- COMMAND ARGS...].

    Only what is given changes; runs created before keep what they were created with."""
    client = connection.client()
    given: dict[str, Any] = {
        "image": image,
        "plan": plan,
        "env": dict(env) if env else None,
        "timeoutSeconds": timeout,
        "name": name,
        "labels": dict(label) if label else None,
        "network": network,
        "kind": kind,
        "ports": list(port) if port else None,
        "command": list(command) if command else None,
        **schedule_fields(schedule, timezone, concurrency_policy, catch_up),
    }
    body = {k: v for k, v in given.items() if v is not None}
    if no_schedule:
        body["schedule"] = None
    if any(retry.values()):
        current = client.get(f"/v1/jobs/{segment(job_id)}").get("retry")
        body["retry"] = retry_from(current, retry)
    if no_retry:
        body["retry"] = None
    if not body:
        raise click.UsageError("nothing to change: give an option or a command")
    job = client.patch(f"/v1/jobs/{segment(job_id)}", body)
    show(job, as_json, lambda: render.job_details(job))


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@json_option
@pass_connection
def suspend(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """Pause a job's schedule; runs in flight go on. `jobctl resume` restarts it."""
    job = connection.client().patch(f"/v1/jobs/{segment(job_id)}", {"suspend": True})
    show(job, as_json, lambda: f"{job['id']} suspended")


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@json_option
@pass_connection
def resume(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """Restart a suspended schedule at its next tick (missed ticks are not caught up)."""
    job = connection.client().patch(f"/v1/jobs/{segment(job_id)}", {"suspend": False})
    next_fire = render.local_time((job.get("schedule") or {}).get("nextFireAt"))
    show(job, as_json, lambda: f"{job['id']} next {next_fire}")


@main.command("schedule", context_settings=CONTEXT)
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@json_option
@pass_connection
def list_schedules(connection: Connection, *, every: bool, as_json: bool) -> None:
    """List the scheduled jobs with their next fire time, newest job first."""
    page = collect(connection.client(), "/v1/jobs", {"scheduled": "true"}, "jobs", every)
    rows = map(render.schedule_row, page["jobs"])
    show(page, as_json, lambda: render.table(render.SCHEDULE_HEADERS, rows))


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@json_option
@pass_connection
def status(connection: Connection, *, job_id: str, as_json: bool) -> None:
    """A job's latest run, its runs counted by status, and its schedule."""
    doc = connection.client().get(f"/v1/jobs/{segment(job_id)}/status")
    show(doc, as_json, lambda: render.status_details(doc))


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
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


@main.command("ls", context_settings=CONTEXT)
@click.option("--status", help="Only jobs whose latest run has this status.")
@click.option(
    "--label",
    multiple=True,
    callback=PAIRS,
    metavar="KEY=VALUE",
    help="Only jobs with this label; repeatable.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Page size (server default 50).")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
@json_option
@pass_connection
def list_jobs(
    connection: Connection,
    *,
    status: str | None,
    label: tuple[tuple[str, str], ...],
    limit: int | None,
    every: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    query = {"status": status, "label": [f"{k}={v}" for k, v in label], "limit": limit}
    page = collect(connection.client(), "/v1/jobs", query, "jobs", every)
    show(page, as_json, lambda: render.table(render.JOB_HEADERS, map(render.job_row, page["jobs"])))


@main.command("show", context_settings=CONTEXT)
@click.argument("object_id", metavar="ID", callback=ANY_ID)
@json_option
@pass_connection
def show_object(connection: Connection, *, object_id: str, as_json: bool) -> None:
    """Show a job (job-...) or a run (run-...) and its events."""
    client = connection.client()
    if id_kind(object_id) == "job":
        job = client.get(f"/v1/jobs/{segment(object_id)}")
        show(job, as_json, lambda: render.job_details(job))
        return
    run_doc = client.get(f"/v1/runs/{segment(object_id)}")
    show(run_doc, as_json, lambda: run_with_events(client, run_doc))


def run_with_events(client: Client, run_doc: Mapping[str, Any]) -> str:
    events = client.get(f"/v1/runs/{segment(run_doc['id'])}/events")["events"]
    events_table = render.table(render.EVENT_HEADERS, map(render.event_row, events))
    return f"{render.run_details(run_doc)}\n\n{events_table}"


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@click.option("--limit", type=click.IntRange(min=1), help="Page size (server default 50).")
@json_option
@pass_connection
def runs(connection: Connection, *, job_id: str, limit: int | None, as_json: bool) -> None:
    """List a job's runs, newest first."""
    path = f"/v1/jobs/{segment(job_id)}/runs"
    page = connection.client().get(path, {"limit": limit})
    show(page, as_json, lambda: render.table(render.RUN_HEADERS, map(render.run_row, page["runs"])))


@main.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the run ends.")
@click.option(
    "--since", callback=SINCE, metavar="TIME", help="RFC 3339 time, or a duration ago (10m)."
)
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N lines.")
@click.option("--grep", help="Only lines containing this text.")
@click.option(
    "--until", callback=SINCE, metavar="TIME", help="RFC 3339 time, or a duration ago (10m)."
)
@click.option(
    "--all-runs",
    is_flag=True,
    help="Every run of a job, in time order, each line after its run's id.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (ndjson).")
@pass_connection
def logs(
    connection: Connection,
    *,
    any_id: str,
    follow: bool,
    since: str | None,
    until: str | None,
    tail: int | None,
    grep: str | None,
    all_runs: bool,
    as_json: bool,
) -> None:
    """Print a run's output (a job id means its latest run, or with --all-runs all of them)."""
    client = connection.client()
    query = {
        "format": "ndjson" if as_json else "text",
        "follow": "true" if follow else None,
        "since": since,
        "until": until,
        "tail": tail,
        "filter": grep,
    }
    if all_runs:
        if id_kind(any_id) != "job" or follow:
            raise click.UsageError("--all-runs takes a job id, and no --follow")
        limit = {"limit": MAX_LOG_LINES} if tail is None else {}
        path = f"/v1/jobs/{segment(any_id)}/logs"
        with client.stream(path, {**query, **limit}) as stream:
            for chunk in stream.chunks():
                sys.stdout.buffer.write(chunk)
        return
    copy_log(client, resolve_run(client, any_id), query, sys.stdout.buffer)


@main.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID)
@json_option
@pass_connection
def cancel(connection: Connection, *, any_id: str, as_json: bool) -> None:
    """Cancel a run (a job id means its latest run). Prints `<run-id> <status>`."""
    client = connection.client()
    run_id = resolve_run(client, any_id)
    run_doc = client.post(f"/v1/runs/{segment(run_id)}/cancel")
    show(run_doc, as_json, lambda: f"{run_doc['id']} {run_doc['status']}")


@main.command(context_settings=CONTEXT)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID)
@click.option("--wait", is_flag=True, help="Wait until it has stopped.")
@json_option
@pass_connection
def stop(connection: Connection, *, any_id: str, wait: bool, as_json: bool) -> None:
    """Stop a run cleanly (a job id means its latest run): SIGTERM, the grace period, SIGKILL.
    It ends succeeded if it exits 0, cancelled otherwise. Prints `<run-id> <status>`."""
    client = connection.client()
    run_id = resolve_run(client, any_id)
    run_doc = client.post(f"/v1/runs/{segment(run_id)}/stop")
    if wait:
        run_doc = wait_for_run(client, run_id)
    show(run_doc, as_json, lambda: f"{run_doc['id']} {run_doc['status']}")


@main.command(context_settings=CONTEXT)
@click.argument("job_id", callback=JOB_ID, metavar="JOB_ID")
@click.option("--wait", is_flag=True, help="Wait for the run; exit with its exit code.")
@json_option
@pass_connection
def rerun(connection: Connection, *, job_id: str, wait: bool, as_json: bool) -> None:
    """Run a job again with the same spec. Prints the new run's id."""
    client = connection.client()
    run_doc = client.post(f"/v1/jobs/{segment(job_id)}/runs")
    show(run_doc, as_json, lambda: str(run_doc["id"]))
    if wait:
        finish(client, run_doc["id"])


@main.command(context_settings=CONTEXT)
@json_option
@pass_connection
def plans(connection: Connection, *, as_json: bool) -> None:
    """List the plans: the resources and price of each."""
    doc = connection.client().get("/v1/plans")
    rows = (render.plan_row(plan, doc.get("defaultPlan")) for plan in doc["plans"])
    show(doc, as_json, lambda: render.table(render.PLAN_HEADERS, rows))


@main.command(context_settings=CONTEXT)
@json_option
@pass_connection
def health(connection: Connection, *, as_json: bool) -> None:
    """Show the daemon's health; exit 1 unless it is ok."""
    doc = connection.client().get("/v1/health")
    show(doc, as_json, lambda: render.health_details(doc))
    if doc.get("status") != "ok":
        click.get_current_context().exit(1)


@main.command(context_settings=CONTEXT)
@json_option
@pass_connection
def node(connection: Connection, *, as_json: bool) -> None:
    """Show the node: capacity, what each run holds, what is free, and the GPUs (with
    memory used by processes jobd did not start)."""
    doc = connection.client().get("/v1/node")
    show(doc, as_json, lambda: render.node_details(doc))


@main.command(context_settings=CONTEXT)
@json_option
@pass_connection
def doctor(connection: Connection, *, as_json: bool) -> None:
    """Check podman, limits and the GPU path (NVML, CDI specs, device nodes); exit 1 when a
    check fails."""
    doc = connection.client().get("/v1/doctor")
    show(
        doc,
        as_json,
        lambda: render.table(render.CHECK_HEADERS, map(render.check_row, doc["checks"])),
    )
    if not doc.get("ok"):
        click.get_current_context().exit(1)


# -- recipes --------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def recipe() -> None:
    """Named, reusable job configurations: `jobctl run --recipe NAME` makes a job of one."""


def recipe_body(
    *,
    image: str | None,
    command: Sequence[str],
    env: Sequence[tuple[str, str]],
    plan: str | None,
    timeout: int | None,
    labels: Sequence[tuple[str, str]],
    network: str | None,
    kind: str | None,
    ports: Sequence[int],
    retry: Mapping[str, Any] | None,
    description: str | None,
) -> dict[str, Any]:
    """A recipe's fields as given; what was not given is left out."""
    given = {
        "kind": kind,
        "ports": list(ports) or None,
        "image": image,
        "command": list(command) or None,
        "env": dict(env) or None,
        "plan": plan,
        "timeoutSeconds": timeout,
        "labels": dict(labels) or None,
        "network": network,
        "retry": retry,
        "description": description,
    }
    return {k: v for k, v in given.items() if v is not None}


@recipe.command("create", context_settings=CONTEXT)
@click.option("--description", help="What the recipe is for.")
@spec_options(replacing=False, named=False)
@retry_options(replacing=False)
@json_option
@click.argument("name")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_connection
def recipe_create(
    connection: Connection,
    /,
    *,
    description: str | None,
    plan: str | None,
    env: tuple[tuple[str, str], ...],
    timeout: int | None,
    label: tuple[tuple[str, str], ...],
    network: str | None,
    kind: str | None,
    port: tuple[int, ...],
    as_json: bool,
    name: str,
    image: str,
    command: tuple[str, ...],
    **retry: Any,
) -> None:
    """Create a recipe: NAME IMAGE [-- COMMAND ARGS...]."""
    body = recipe_body(
        image=image,
        command=command,
        env=env,
        plan=plan,
        timeout=timeout,
        labels=label,
        network=network,
        kind=kind,
        ports=port,
        retry=retry_from(None, retry),
        description=description,
    )
    doc = connection.client().post("/v1/recipes", {"name": name, **body})
    show(doc, as_json, lambda: f"created recipe {doc['name']}")


@recipe.command("update", context_settings=CONTEXT)
@click.option("--description", help="What the recipe is for.")
@click.option("--image", help="The image jobs made of it use.")
@spec_options(replacing=True, named=False)
@retry_options(replacing=True)
@json_option
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_connection
def recipe_update(
    connection: Connection,
    /,
    *,
    description: str | None,
    image: str | None,
    plan: str | None,
    env: tuple[tuple[str, str], ...],
    timeout: int | None,
    label: tuple[tuple[str, str], ...],
    network: str | None,
    kind: str | None,
    port: tuple[int, ...],
    no_retry: bool,
    as_json: bool,
    name: str,
    command: tuple[str, ...],
    **retry: Any,
) -> None:
    """Change a recipe: NAME [OPTIONS] [-- COMMAND ARGS...]. Jobs made of it keep theirs."""
    client = connection.client()
    path = f"/v1/recipes/{segment(name)}"
    policy = retry_from(client.get(path).get("retry"), retry) if any(retry.values()) else None
    body = recipe_body(
        image=image,
        command=command,
        env=env,
        plan=plan,
        timeout=timeout,
        labels=label,
        network=network,
        kind=kind,
        ports=port,
        retry=policy,
        description=description,
    )
    if no_retry:
        body["retry"] = None
    if not body:
        raise click.UsageError("nothing to change: give an option or a command")
    doc = client.patch(path, body)
    show(doc, as_json, lambda: render.recipe_details(doc))


@recipe.command("ls", context_settings=CONTEXT)
@json_option
@pass_connection
def recipe_list(connection: Connection, *, as_json: bool) -> None:
    """List the recipes by name."""
    doc = connection.client().get("/v1/recipes")
    rows = map(render.recipe_row, doc["recipes"])
    show(doc, as_json, lambda: render.table(render.RECIPE_HEADERS, rows))


@recipe.command("show", context_settings=CONTEXT)
@json_option
@click.argument("name")
@pass_connection
def recipe_show(connection: Connection, *, as_json: bool, name: str) -> None:
    """Show a recipe."""
    doc = connection.client().get(f"/v1/recipes/{segment(name)}")
    show(doc, as_json, lambda: render.recipe_details(doc))


@recipe.command("rm", context_settings=CONTEXT)
@click.argument("name")
@pass_connection
def recipe_remove(connection: Connection, *, name: str) -> None:
    """Delete a recipe. Jobs made of it keep their snapshot."""
    connection.client().delete(f"/v1/recipes/{segment(name)}")
    click.echo(f"deleted recipe {name}")


@recipe.command("apply", context_settings=CONTEXT)
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="A recipe as TOML (.toml) or YAML (.yaml, .yml; also JSON); - reads stdin.",
)
@json_option
@pass_connection
def recipe_apply(connection: Connection, *, path: Path, as_json: bool) -> None:
    """Create a recipe from a file, or replace the one of that name whole."""
    try:
        doc = load_recipe_file(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--file'") from None
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise click.BadParameter(f"{path}: the recipe has no name", param_hint="'--file'")
    result = connection.client().put(f"/v1/recipes/{segment(name)}", doc)
    show(result, as_json, lambda: f"applied recipe {result['name']}")


# -- exec -----------------------------------------------------------------------------


@main.command("exec", context_settings=CONTEXT)
@click.option(
    "-t/-T",
    "--tty/--no-tty",
    "use_tty",
    default=None,
    help="Attach a terminal (default: when stdin and stdout are terminals).",
)
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID)
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
