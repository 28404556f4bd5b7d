"""Shell completion (click's own, for bash, zsh and fish): commands and flags come from the
command tree; plan names, recipe names and the caller's recent job and run ids are asked of
the daemon as the user types (a daemon that does not answer completes nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click
from click.shell_completion import CompletionItem, get_completion_class

from jobctl.client import Client, JobctlError
from jobctl.connection import Connection

RECENT = 20  # jobs offered
Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _client(ctx: click.Context) -> Client:
    """The connection the command line gives (flags and environment), as parsed so far."""
    given = ctx.find_root().params
    return Connection(
        socket=given.get("socket_path"),
        url=given.get("url"),
        token=given.get("token"),
        data_dir=given.get("data_dir"),
        key_id=given.get("key_id"),
        secret=given.get("secret"),
    ).client()


def _offered(
    ctx: click.Context, incomplete: str, ask: Callable[[Client], Iterable[tuple[str, str | None]]]
) -> list[CompletionItem]:
    try:
        found = list(ask(_client(ctx)))
    except (JobctlError, OSError, KeyError, ValueError):
        return []
    return [CompletionItem(value, help=why) for value, why in found if value.startswith(incomplete)]


def ids(*kinds: str) -> Completer:
    """The caller's recent jobs (with their names), and their latest runs when runs will do."""

    def ask(client: Client) -> Iterable[tuple[str, str | None]]:
        for job in client.get("/v1/jobs", {"limit": RECENT})["jobs"]:
            if "job" in kinds:
                yield job["id"], job.get("name") or job["image"]
            if "run" in kinds and job.get("latestRunId"):
                yield job["latestRunId"], f"{job.get('name') or job['image']} ({job['status']})"

    return lambda ctx, param, incomplete: _offered(ctx, incomplete, ask)


JOB_IDS = ids("job")
ANY_IDS = ids("job", "run")


def plans(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _offered(
        ctx, incomplete, lambda c: ((p["id"], p.get("name")) for p in c.get("/v1/plans")["plans"])
    )


def recipes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return _offered(
        ctx,
        incomplete,
        lambda c: ((r["name"], r["image"]) for r in c.get("/v1/recipes")["recipes"]),
    )


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for a shell. bash: `eval "$(jobctl completion bash)"` in
    ~/.bashrc; zsh: the same in ~/.zshrc; fish: `jobctl completion fish >
    ~/.config/fish/completions/jobctl.fish`."""
    root = click.get_current_context().find_root().command
    script = get_completion_class(shell)
    assert script is not None  # the choices are the shells click knows
    click.echo(script(root, {}, "jobctl", "_JOBCTL_COMPLETE").source())
