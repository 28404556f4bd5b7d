"""`jobctl upload`: files handed to jobd for jobs to read, read-only at /inputs/<name>; and
what `run --input` sends before it creates its job."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from jobctl.client import Client, JobctlError, file_sha256, segment
from jobctl.commands.shared import show
from jobctl.connection import Connection, pass_connection
from jobctl.options import CONTEXT, all_users_option, all_users_query, json_option
from jobctl.render.layout import owned_table
from jobctl.render.uploads import UPLOAD_HEADERS, upload_details, upload_row

SLUG = re.compile(r"upload-[0-9a-f]{32}")
REUSE_MARGIN = timedelta(hours=1)  # an upload about to expire is not reused


def send(
    client: Client, path: Path, name: str | None = None, *, sha256: str | None = None
) -> dict[str, Any]:
    """Upload the file at `path`, named `name` (its own name by default); `sha256`: its
    content's, when known already (a signed upload signs it)."""
    try:
        with path.open("rb") as source:
            length = os.fstat(source.fileno()).st_size
            query = {"name": name or path.name}
            return client.upload("/v1/uploads", query, source, length, sha256=sha256)
    except OSError as e:
        raise JobctlError(f"can't read {path}: {e.strerror or e}") from None


def digest_of(path: Path) -> str:
    try:
        with path.open("rb") as source:
            return file_sha256(source)
    except OSError as e:
        raise JobctlError(f"can't read {path}: {e.strerror or e}") from None


def kept(client: Client, path: Path, digest: str) -> str | None:
    """The slug of an upload jobd keeps of this file (its content, `digest`, and its name),
    not about to expire; None when there is none, and the file has to be sent."""
    soon = datetime.now(UTC) + REUSE_MARGIN
    for doc in client.get("/v1/uploads", {"sha256": digest})["uploads"]:
        expires = doc.get("expiresAt")
        if doc["name"] == path.name and (expires is None or datetime.fromisoformat(expires) > soon):
            return str(doc["slug"])
    return None


def input_slugs(client: Client, values: Iterable[str]) -> list[str]:
    """--input values as uploads' slugs: a file jobd does not keep yet is uploaded first; a
    slug is taken as it is."""
    slugs = []
    for value in values:
        path = Path(value)
        if path.is_file():
            digest = digest_of(path)  # once: to find it, and to sign it if it is sent
            slugs.append(kept(client, path, digest) or send(client, path, sha256=digest)["slug"])
        elif SLUG.fullmatch(value):
            slugs.append(value)
        elif path.exists():
            raise click.UsageError(f"--input {value}: not a file (upload one file at a time)")
        else:
            raise click.UsageError(f"--input {value}: no such file, nor an upload's slug")
    return slugs


@click.group(context_settings=CONTEXT)
def upload() -> None:
    """Uploads: files jobs read at /inputs/<name> (`jobctl run --input FILE` sends one too)."""


@upload.command("add", context_settings=CONTEXT)
@click.option("--name", help="The name jobs see it by (/inputs/NAME); default: the file's.")
@json_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_connection
def upload_add(connection: Connection, *, name: str | None, as_json: bool, file: Path) -> None:
    """Upload a FILE; prints its slug, which a job's --input takes."""
    doc = send(connection.client(), file, name)
    show(doc, as_json, lambda: str(doc["slug"]))


@upload.command("ls", context_settings=CONTEXT)
@all_users_option
@json_option
@pass_connection
def upload_list(connection: Connection, *, all_users: bool, as_json: bool) -> None:
    """List your uploads, oldest first, with the jobs naming each and when it expires."""
    doc = connection.client().get("/v1/uploads", all_users_query(all_users))
    uploads = doc["uploads"]
    show(doc, as_json, lambda: owned_table(UPLOAD_HEADERS, upload_row, uploads, users=all_users))


@upload.command("inspect", context_settings=CONTEXT)
@json_option
@click.argument("slug")
@pass_connection
def upload_inspect(connection: Connection, *, as_json: bool, slug: str) -> None:
    """Show an upload: its name, size, checksum, the jobs naming it, when it expires."""
    doc = connection.client().get(f"/v1/uploads/{segment(slug)}")
    show(doc, as_json, lambda: upload_details(doc))


@upload.command("rm", context_settings=CONTEXT)
@click.argument("slugs", nargs=-1, required=True, metavar="SLUG...")
@pass_connection
def upload_remove(connection: Connection, *, slugs: tuple[str, ...]) -> None:
    """Delete uploads (refused for one a job names as an input)."""
    client = connection.client()
    for slug in slugs:
        client.delete(f"/v1/uploads/{segment(slug)}")
        click.echo(f"deleted {slug}")
