"""A run's outputs, as a table and a summary line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobctl.render.layout import Row
from jobctl.render.values import NONE, local_time, size

OUTPUT_HEADERS = ("PATH", "SIZE", "SHA256", "MODIFIED")


def output_row(output: Mapping[str, Any]) -> Row:
    digest = output.get("sha256")
    return (
        output["path"],
        size(output.get("sizeBytes")),
        digest[:16] if digest else NONE,
        local_time(output.get("modifiedAt")),
    )


def output_summary(listing: Mapping[str, Any]) -> str:
    files = listing.get("files") or []
    total = sum(f.get("sizeBytes", 0) for f in files)
    line = f"{len(files)} file{'s' if len(files) != 1 else ''}, {size(total)}"
    preview = (listing.get("output") or {}).get("previewUrl")
    return line + (f"; preview: {preview}" if preview else "")
