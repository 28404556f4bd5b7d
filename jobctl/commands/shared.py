"""Steps more than one command takes: print the API's JSON or a text, wait for a run to
finish, find what an id, prefix or name stands for (a job as its latest run), and collect a
list's pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from jobctl.client import ApiError, Client, JobctlError, segment
from jobctl.log_output import LogOutput
from jobctl.parsing import IdKind, id_kind
from jobctl.render.layout import as_json as json_text
from jobctl.render.values import local_time
from jobctl.status_line import StatusLine
from jobctl.waiting import copy_log, exit_status, failure_note, wait_for_run


def show(doc: object, as_json: bool, text: Callable[[], str], *, err: bool = False) -> None:
    """The API's JSON, or the readable text (built only when wanted: tables cost imports);
    `err`: on stderr, when stdout carries a run's output."""
    click.echo(json_text(doc) if as_json else text(), err=err)


def finish(client: Client, run_id: str, *, follow: bool = False) -> None:
    """Wait for the run, and for its retries, and exit as the last attempt did, saying why
    it failed. With `follow`, stream each attempt's log meanwhile. On a terminal, a live
    status line (below the log's lines when following; a bar once the job reports
    progress). Ctrl-C stops waiting, never the run (exit 130)."""
    click.get_current_context().exit(exit_status(outcome(client, run_id, follow=follow)))


def outcome(client: Client, run_id: str, *, follow: bool = False) -> dict[str, Any]:
    """The run once it and its retries have ended (finish's waiting), having said why it
    failed when it did."""
    line = StatusLine()
    while True:
        try:
            if follow:  # stdout's lines to stdout, stderr's to stderr
                output = LogOutput()
                copy_log(client, run_id, {"follow": "true", "format": output.format}, output)
            run = wait_for_run(client, run_id, seen=line.show if not follow else lambda r: None)
        except KeyboardInterrupt:
            line.clear()
            click.echo(
                f"jobctl: stopped waiting; run {run_id} goes on. Cancel it: jobctl cancel"
                f" {run_id}; follow it again: jobctl logs --follow {run_id}",
                err=True,
            )
            click.get_current_context().exit(130)
        line.clear()
        if not run.get("retriedBy"):
            break
        click.echo(f"jobctl: {retry_note(client, run)}", err=True)
        run_id = run["retriedBy"]
    note = failure_note(run)
    if note:
        click.echo(f"jobctl: {note}", err=True)
    return run


def retry_note(client: Client, run: Mapping[str, Any]) -> str:
    retry = client.get(f"/v1/runs/{segment(run['retriedBy'])}")
    code = f" with exit code {run['exitCode']}" if run.get("exitCode") is not None else ""
    return (
        f"run {run['id']} failed{code}; attempt {retry['attempt']} is {retry['id']},"
        f" not before {local_time(retry.get('notBefore'))}"
    )


def resolve_run(client: Client, any_id: str) -> str:
    """A run (its id or a prefix of it) as given; a job (its id, a prefix, its name) as its
    latest run."""
    if id_kind(any_id) == "run":
        return any_id
    return run_of(*find(client, any_id))


def run_of(kind: IdKind, doc: Mapping[str, Any]) -> str:
    """The run a found run or job stands for: the run, or the job's latest run."""
    if kind == "run":
        return str(doc["id"])
    run_id = doc.get("latestRunId")
    if not run_id:
        raise JobctlError(f"job {doc['id']} has no runs")
    return str(run_id)


def find(client: Client, any_id: str) -> tuple[IdKind, dict[str, Any]]:
    """The job or run `any_id` names, and which it is. The daemon resolves prefixes and
    names; what is not plainly a run's id or a job's is asked as a job's (a name, or a job
    id's prefix) first, then as a run id's prefix."""
    kind = id_kind(any_id)
    if kind == "run":
        return "run", client.get(f"/v1/runs/{segment(any_id)}")
    try:
        return "job", client.get(f"/v1/jobs/{segment(any_id)}")
    except ApiError as e:
        if kind == "job" or e.status != 404:
            raise
    try:
        return "run", client.get(f"/v1/runs/{segment(any_id)}")
    except ApiError as e:
        if e.status != 404:
            raise
    raise JobctlError(f"no job or run {any_id}: neither a job's name nor a prefix of an id")


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
