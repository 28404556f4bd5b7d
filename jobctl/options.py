"""The options and arguments commands share, and the callbacks that check their values as
click parses them: what a job runs (spec), what it needs (resources), when it runs (schedule),
how its failed runs are retried (retry), the ids commands take, and `--json`; and CONTEXT,
the settings every command is made with (`-h` for `--help`).

The request bodies these values feed are built in jobctl.bodies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from jobctl.completion import plans
from jobctl.parsing import (
    check_id,
    parse_duration,
    parse_pair,
    parse_since,
    parse_size,
    parse_volume,
    read_env_file,
    read_ssh_keys,
)

CONTEXT = {"help_option_names": ["-h", "--help"]}
Callback = Callable[[click.Context, click.Parameter, Any], Any]
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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
VOLUMES = converted(parse_volume)
SIZE = converted(parse_size)
ENV_FILES = converted(lambda path: read_env_file(Path(path)))
SSH_KEYS = converted(lambda path: read_ssh_keys(Path(path)))
SINCE = converted(parse_since)
JOB_ID = converted(lambda value: check_id(value, "job"))
ANY_ID = converted(lambda value: check_id(value, "job", "run"))
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON object instead."
)
all_users_option = click.option(
    "--all-users",
    is_flag=True,
    help="Every user's, with a USER column (admins only; others see their own).",
)


def project_option(what: str) -> Decorator:
    """--project NAME: a project of jobd's configuration ([projects.NAME] members)."""
    return click.option("--project", metavar="NAME", help=what)


def all_users_query(all_users: bool) -> dict[str, str]:
    return {"allUsers": "true"} if all_users else {}


def stop_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """How `cancel` and `stop` end a running container: SIGTERM, then SIGKILL after a grace."""
    grace = click.option(
        "--grace",
        callback=DURATION,
        metavar="DURATION",
        help="Time between SIGTERM and SIGKILL (30s, 2m); default jobd's (10s).",
    )
    force = click.option("--force", is_flag=True, help="SIGKILL now.")
    return grace(force(function))


def spec_options(
    *, replacing: bool, named: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What a job runs, for `run` and for `update` (where each option given replaces the
    job's value whole), and for recipes (not `named`: a recipe's name is its argument)."""
    whole = " Replaces the job's whole environment." if replacing else ""
    options: list[Decorator] = [
        click.option("--plan", help="Plan id (see `jobctl plans`).", shell_complete=plans),
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
        *data_options(replacing=replacing),
        *(input_options(replacing=replacing) if named else []),
        *(secret_options(replacing=replacing) if named else []),
        *(ssh_options(replacing=replacing) if named else []),
    ]
    return _all_options(options)


def ssh_options(*, replacing: bool) -> list[Decorator]:
    """Who may SSH into a persistent job's run, and from where (jobd's SSH gateway)."""
    whole = " Replaces the job's." if replacing else ""
    return [
        click.option(
            "--ssh-key",
            multiple=True,
            callback=SSH_KEYS,
            metavar="FILE",
            help="The public keys in FILE (~/.ssh/id_ed25519.pub) may `ssh RUN_ID@HOST` into the"
            " job's run (persistent jobs; the run's ssh field says where); repeatable." + whole,
        ),
        click.option(
            "--allow-ip",
            multiple=True,
            metavar="CIDR",
            help="An address or network (10.0.0.0/8) its SSH sessions and published ports may"
            " be reached from; repeatable. Default: this machine only." + whole,
        ),
    ]


def secret_options(*, replacing: bool) -> list[Decorator]:
    """Environment variables whose values jobd never shows (API, CLI, its logs)."""
    whole = " Replaces the job's whole secret environment." if replacing else ""
    return [
        click.option(
            "--secret-env",
            multiple=True,
            callback=PAIRS,
            metavar="KEY=VALUE",
            help="A secret environment variable: never shown, only its name; repeatable."
            " Prefer --secret-env-file: a command line is visible to other users (ps)." + whole,
        ),
        click.option(
            "--secret-env-file",
            multiple=True,
            callback=ENV_FILES,
            metavar="FILE",
            help="Secret environment variables from a dotenv file, before --secret-env;"
            " repeatable.",
        ),
    ]


def input_options(*, replacing: bool) -> list[Decorator]:
    """A job's inputs (recipes have none: each job of a recipe brings its own)."""
    options: list[Decorator] = [
        click.option(
            "--input",
            multiple=True,
            metavar="FILE|SLUG",
            help="Upload FILE (or take an upload's slug) and mount it read-only at"
            " /inputs/NAME; repeatable." + (" Replaces the job's inputs." if replacing else ""),
        )
    ]
    if replacing:
        options.append(click.option("--no-inputs", is_flag=True, help="Mount no inputs."))
    return options


def data_options(*, replacing: bool) -> list[Decorator]:
    """Where a job's data lives and who its command is: volumes, working directory, user,
    and environment variables from files."""
    options: list[Decorator] = [
        click.option(
            "-v",
            "--volume",
            multiple=True,
            callback=VOLUMES,
            metavar="SOURCE:/PATH[:ro]",
            help="Mount a named volume (made on first use) or a host path at /PATH; repeatable."
            + (" Replaces the job's volumes." if replacing else ""),
        ),
        click.option("--workdir", metavar="PATH", help="The command's working directory."),
        click.option(
            "--output-limit",
            callback=SIZE,
            metavar="SIZE",
            help="The most a run's /outputs may hold (20GB, 1.5GiB); past it the run is killed"
            " and fails output_limit. Default jobd's (10 GiB).",
        ),
        click.option("--user", metavar="UID[:GID]|NAME", help="Run the command as this user."),
        click.option(
            "--env-file",
            multiple=True,
            callback=ENV_FILES,
            metavar="FILE",
            help="Environment variables from a dotenv file, before --env; repeatable. The"
            " values are sent, not the file.",
        ),
    ]
    if replacing:
        options.append(click.option("--no-volumes", is_flag=True, help="Mount no volumes."))
    return options


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


def workflow_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What a new job's runs wait for, and an array of runs."""
    return _all_options(
        [
            click.option(
                "--after",
                multiple=True,
                metavar="ID[:ok|any|notok]",
                help="Wait for this run or job (its latest run; an array job: all of it) to"
                " succeed (ok, the default), end (any) or fail (notok). Repeatable.",
            ),
            click.option(
                "--array",
                metavar="INDICES[%N]",
                help="One run per index (0-99, 1,5,7-9, 0-15:4), at most N at once"
                " (Slurm's syntax); each gets JOBD_ARRAY_INDEX and JOBD_ARRAY_SIZE.",
            ),
        ]
    )


def schedule_options(*, replacing: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """When a job runs by itself, for `run` and for `update`."""
    options = [
        click.option(
            "--schedule",
            metavar="CRON",
            help="Run on a 5-field cron schedule, e.g. '0 3 * * *', or @hourly, @daily,"
            " @weekly, @monthly, @yearly (no run starts now)."
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


def _all_options(
    options: Sequence[Callable[[Callable[..., Any]], Callable[..., Any]]],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
