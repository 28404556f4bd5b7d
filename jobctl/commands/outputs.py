"""`jobctl outputs`: what a run wrote to /outputs, listed or downloaded, each file checked
against its checksum once the run has ended."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from jobctl.client import Client, JobctlError, segment
from jobctl.commands.shared import resolve_run, show
from jobctl.completion import ANY_IDS
from jobctl.connection import Connection, pass_connection
from jobctl.options import ANY_ID, CONTEXT, json_option
from jobctl.render.layout import table
from jobctl.render.outputs import OUTPUT_HEADERS, output_row, output_summary


@click.command("outputs", context_settings=CONTEXT)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Download into this directory (made if missing): PATHs given, or all of them.",
)
@json_option
@click.argument("any_id", metavar="RUN_OR_JOB_ID", callback=ANY_ID, shell_complete=ANY_IDS)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@pass_connection
def outputs(
    connection: Connection,
    *,
    output_dir: Path | None,
    as_json: bool,
    any_id: str,
    paths: tuple[str, ...],
) -> None:
    """List what a run wrote to /outputs (a job id means its latest run), or download it:
    all of it with -o DIR, or the PATHs given (into DIR, or here). Downloads are checked
    against each file's checksum once the run has ended."""
    client = connection.client()
    run_id = resolve_run(client, any_id)
    listing = client.get(f"/v1/runs/{segment(run_id)}/outputs")
    if not paths and output_dir is None:
        rows = map(output_row, listing["files"])
        show(listing, as_json, lambda: f"{table(OUTPUT_HEADERS, rows)}\n{output_summary(listing)}")
        return
    known = {f["path"]: f for f in listing["files"]}
    target = output_dir or Path(".")
    if paths:
        got = [_download(client, run_id, path, target, known.get(path)) for path in paths]
    else:
        got = _download_all(client, run_id, target, known)
    click.echo(f"{len(got)} file{'s' if len(got) != 1 else ''}, {sum(got)} bytes, in {target}")


def _download(
    client: Client, run_id: str, path: str, target: Path, expected: Mapping[str, Any] | None
) -> int:
    destination = _inside(target, path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    url = f"/v1/runs/{segment(run_id)}/outputs/{quote(path)}"
    with client.stream(url) as stream, destination.open("wb") as out:
        for chunk in stream.chunks():
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    _check(path, written, digest.hexdigest(), expected)
    return written


def _download_all(
    client: Client, run_id: str, target: Path, known: Mapping[str, Mapping[str, Any]]
) -> list[int]:
    """The tar of all of them, unpacked as it arrives (only files and directories, each
    within `target`: tarfile's data filter), each file checked as it lands."""
    target.mkdir(parents=True, exist_ok=True)
    got: list[int] = []
    with client.stream(f"/v1/runs/{segment(run_id)}/outputs", {"archive": "tar"}) as stream:
        body = _Chunks(stream.chunks())
        with tarfile.open(mode="r|", fileobj=body) as archive:
            for member in archive:
                archive.extract(member, target, filter="data")
                if member.isfile():
                    data = (target / member.name).read_bytes()
                    _check(
                        member.name,
                        len(data),
                        hashlib.sha256(data).hexdigest(),
                        known.get(member.name),
                    )
                    got.append(len(data))
    return got


def _check(path: str, size: int, digest: str, expected: Mapping[str, Any] | None) -> None:
    if expected is None or expected.get("sha256") is None:
        return  # the run still writes: nothing to check against
    if size != expected["sizeBytes"] or digest != expected["sha256"]:
        raise JobctlError(f"{path}: downloaded {size} bytes that do not match its checksum")


def _inside(target: Path, path: str) -> Path:
    destination = (target / path).resolve()
    if target.resolve() not in destination.parents:
        raise JobctlError(f"{path}: not a path below {target}")
    return destination


class _Chunks(io.RawIOBase):
    """An iterator of byte chunks as a readable file (a tar stream is read from it)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count
