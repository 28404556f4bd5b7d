"""Uploads, as rows and as details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobctl.render.layout import Row, details
from jobctl.render.values import first_of, local_time, size

UPLOAD_HEADERS = ("SLUG", "NAME", "SIZE", "USED BY", "EXPIRES")


def upload_row(upload: Mapping[str, Any]) -> Row:
    return (
        upload["slug"],
        upload["name"],
        size(upload.get("sizeBytes")),
        first_of(upload.get("usedBy")),
        _expires(upload),
    )


def upload_details(upload: Mapping[str, Any]) -> str:
    return details(
        [
            ("slug", upload["slug"]),
            ("name", upload["name"]),
            ("mounted at", f"/inputs/{upload['name']}"),
            ("size", size(upload.get("sizeBytes"))),
            ("sha256", upload.get("sha256")),
            ("owner", (upload.get("owner") or {}).get("user")),
            ("used by", ", ".join(upload.get("usedBy") or []) or None),
            ("created", local_time(upload.get("createdAt"))),
            ("expires", _expires(upload)),
        ]
    )


def _expires(upload: Mapping[str, Any]) -> str:
    if upload.get("expiresAt") is None:
        return "never while a job names it"
    return local_time(upload["expiresAt"])
