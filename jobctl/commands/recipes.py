"""`jobctl recipe`: named, reusable job configurations, and their subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jobctl.bodies import data_fields, env_from, recipe_body, retry_from, retry_given
from jobctl.client import segment
from jobctl.commands.shared import show
from jobctl.completion import recipes
from jobctl.connection import Connection, pass_connection
from jobctl.options import (
    CONTEXT,
    all_users_option,
    all_users_query,
    json_option,
    project_option,
    retry_options,
    spec_options,
)
from jobctl.parsing import load_recipe_file
from jobctl.render.layout import owned_table
from jobctl.render.recipes import RECIPE_HEADERS, recipe_details, recipe_row


@click.group(context_settings=CONTEXT)
def recipe() -> None:
    """Named, reusable job configurations: `jobctl run --recipe NAME` makes a job of one."""


@recipe.command("create", context_settings=CONTEXT)
@click.option("--description", help="What the recipe is for.")
@spec_options(replacing=False, named=False)
@project_option("Share the recipe with this project's members.")
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
    **options: Any,
) -> None:
    """Create a recipe: NAME IMAGE [-- COMMAND ARGS...]."""
    body = recipe_body(
        image=image,
        command=command,
        env=tuple(env_from({"env": env, **options}).items()),
        plan=plan,
        timeout=timeout,
        labels=label,
        network=network,
        kind=kind,
        ports=port,
        retry=retry_from(None, options),
        description=description,
    )
    body.update(data_fields(options, replacing=False))
    if options["project"]:
        body["project"] = options["project"]
    doc = connection.client().post("/v1/recipes", {"name": name, **body})
    show(doc, as_json, lambda: f"created recipe {doc['name']}")


@recipe.command("update", context_settings=CONTEXT)
@click.option("--description", help="What the recipe is for.")
@click.option("--image", help="The image jobs made of it use.")
@spec_options(replacing=True, named=False)
@project_option("Share the recipe with this project's members instead.")
@retry_options(replacing=True)
@json_option
@click.argument("name", shell_complete=recipes)
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
    **options: Any,
) -> None:
    """Change a recipe: NAME [OPTIONS] [-- COMMAND ARGS...]. Jobs made of it keep theirs."""
    client = connection.client()
    path = f"/v1/recipes/{segment(name)}"
    retried = retry_given(options)
    policy = retry_from(client.get(path).get("retry"), options) if retried else None
    body = recipe_body(
        image=image,
        command=command,
        env=tuple(env_from({"env": env, **options}).items()),
        plan=plan,
        timeout=timeout,
        labels=label,
        network=network,
        kind=kind,
        ports=port,
        retry=policy,
        description=description,
    )
    body.update(data_fields(options, replacing=True))
    if options["project"]:
        body["project"] = options["project"]
    if no_retry:
        body["retry"] = None
    if not body:
        raise click.UsageError("nothing to change: give an option or a command")
    doc = client.patch(path, body)
    show(doc, as_json, lambda: recipe_details(doc))


@recipe.command("ls", context_settings=CONTEXT)
@all_users_option
@json_option
@pass_connection
def recipe_list(connection: Connection, *, all_users: bool, as_json: bool) -> None:
    """List your recipes by name."""
    doc = connection.client().get("/v1/recipes", all_users_query(all_users))
    recipes = doc["recipes"]
    show(doc, as_json, lambda: owned_table(RECIPE_HEADERS, recipe_row, recipes, users=all_users))


@recipe.command("show", context_settings=CONTEXT)
@json_option
@click.argument("name", shell_complete=recipes)
@pass_connection
def recipe_show(connection: Connection, *, as_json: bool, name: str) -> None:
    """Show a recipe."""
    doc = connection.client().get(f"/v1/recipes/{segment(name)}")
    show(doc, as_json, lambda: recipe_details(doc))


@recipe.command("rm", context_settings=CONTEXT)
@click.argument("name", shell_complete=recipes)
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
