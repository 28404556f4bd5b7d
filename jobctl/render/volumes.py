"""Named volumes, as rows and as details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobctl.render.layout import Row, details
from jobctl.render.values import first_of, local_time, pairs, size

VOLUME_HEADERS = ("VOLUME", "SIZE", "FILES", "OWNER", "USED BY", "CREATED")


def volume_row(volume: Mapping[str, Any]) -> Row:
    return (
        volume["name"],
        size(volume.get("sizeBytes")),
        volume.get("files"),
        (volume.get("owner") or {}).get("user"),
        first_of(volume.get("usedBy")),
        local_time(volume.get("createdAt")),
    )


def volume_details(volume: Mapping[str, Any]) -> str:
    return details(
        [
            ("name", volume["name"]),
            ("size", size(volume.get("sizeBytes"))),
            ("files", volume.get("files")),
            ("owner", (volume.get("owner") or {}).get("user")),
            ("labels", pairs(volume.get("labels"))),
            ("used by", ", ".join(volume.get("usedBy") or []) or None),
            ("mountpoint", volume.get("mountpoint")),
            ("created", local_time(volume.get("createdAt"))),
        ]
    )
