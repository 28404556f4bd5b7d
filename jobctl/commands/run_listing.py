"""`jobctl runs` without a job: the runs of all your jobs and your projects' jobs, newest
first, filtered as `jobctl ls` filters jobs (GET /v1/runs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from jobctl.commands.shared import collect, show
from jobctl.connection import Connection
from jobctl.options import (
    PAIRS,
    SINCE,
    Decorator,
    all_users_option,
    all_users_query,
    project_option,
)
from jobctl.render.jobs import RUN_HEADERS, run_row
from jobctl.render.layout import table

STATUSES = ("pending", "assigned", "running", "cancelling", "succeeded", "failed", "cancelled")
# the options that narrow runs across jobs: a job's own runs take none of them
FILTERS = ("status", "label", "kind", "trigger", "since", "before", "project", "all_users", "every")


def run_filter_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Decorator] = [
        click.option(
            "--status", multiple=True, metavar="STATUS[,STATUS]",
            help=f"Only runs in this status ({', '.join(STATUSES)}); repeatable.",
        ),
        click.option(
            "--label", multiple=True, callback=PAIRS, metavar="KEY=VALUE",
            help="Only runs of jobs with this label; repeatable.",
        ),
        click.option("--kind", type=click.Choice(["batch", "persistent"]), help="Only this kind."),
        click.option(
            "--trigger", type=click.Choice(["api", "schedule", "retry", "restart"]),
            help="Only runs made this way.",
        ),
        click.option(
            "--since", callback=SINCE, metavar="TIME",
            help="Only runs created since: a time, or 2h ago.",
        ),
        click.option(
            "--before", callback=SINCE, metavar="TIME",
            help="Only runs created before: a time, or 2h.",
        ),
        click.option("--all", "every", is_flag=True, help="Follow every page."),
        project_option("Only the runs of this project's jobs."),
        all_users_option,
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def given_filters(filters: Mapping[str, Any]) -> list[str]:
    """The run filter options given, as their flags (a job's own runs take none)."""
    return [f"--{name.replace('_', '-')}" for name in FILTERS if filters.get(name)]


def list_all_runs(
    connection: Connection, *, limit: int | None, as_json: bool, filters: Mapping[str, Any]
) -> None:
    """The runs of every job you reach, newest first, a JOB column beside each."""
    query: dict[str, Any] = {
        "status": [part for given in filters["status"] for part in given.split(",") if part],
        "label": [f"{k}={v}" for k, v in filters["label"]],
        "kind": filters["kind"],
        "trigger": filters["trigger"],
        "since": filters["since"],
        "before": filters["before"],
        "limit": limit,
    }
    query |= all_users_query(filters["all_users"])
    query |= {"project": filters["project"]} if filters["project"] else {}
    page = collect(connection.client(), "/v1/runs", query, "runs", filters["every"])
    headers = (RUN_HEADERS[0], "JOB", *RUN_HEADERS[1:])
    rows = [(row[0], run["jobId"], *row[1:]) for run in page["runs"] for row in [run_row(run)]]
    show(page, as_json, lambda: table(headers, rows))
    if page.get("nextCursor") and not as_json:
        click.echo("jobctl: more runs than shown: --all for every page, or --limit N", err=True)
