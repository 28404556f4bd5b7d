"""One value as jobctl prints it: times, sizes, durations, money, pairs, and `-` for none."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
GB = 1000**3
NONE = "-"


def utc_now() -> datetime:
    return datetime.now(UTC)


def local_time(value: str | None) -> str:
    """An API time (RFC 3339) in this machine's local time, to the second."""
    if not value:
        return NONE
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def memory(size: int) -> str:
    """512 MiB, 2 GiB, 23.5 GiB."""
    unit, name = (GIB, "GiB") if size >= GIB else (MIB, "MiB")
    return f"{round(size / unit, 1):g} {name}"


def size(count: int | None) -> str | None:
    """Bytes as people read them: 0 B, 812 B, 4.2 KiB, 1.5 GiB."""
    if count is None:
        return None
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def mounts(volumes: object) -> str | None:
    """A job's volumes as `podman run -v` writes them: SOURCE:/PATH[:ro], comma-separated."""
    if not isinstance(volumes, list) or not volumes:
        return None
    return ", ".join(
        f"{v['source']}:{v['target']}{':ro' if v.get('readOnly') else ''}" for v in volumes
    )


def inputs(items: object) -> str | None:
    """A job's inputs: where each is mounted, and its upload's slug."""
    if not isinstance(items, list) or not items:
        return None
    return ", ".join(f"{i['path']} ({i['slug']})" for i in items)


def duration(seconds: int | None) -> str | None:
    """Seconds as jobctl's own durations read: 2592000 -> 30d, 5400 -> 1h30m."""
    if seconds is None:
        return None
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def price(amount: float | None) -> str:
    return NONE if amount is None else f"${amount:.2f}"


def cost(run: Mapping[str, Any]) -> str:
    doc = run.get("cost")
    if not doc:
        return NONE
    return f"{doc['amount']:.6f} {doc.get('currency', '')}".rstrip()


def pairs(mapping: Mapping[str, str] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (mapping or {}).items()) or NONE


def or_none(value: object) -> object:
    return NONE if value is None or value == "" else value


def yes_no(value: object) -> str:
    return NONE if value is None else ("yes" if value else "no")


def elapsed(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


def first_of(items: object) -> str:
    """The first of a list of ids, and how many more: `run-1 +2`."""
    if not isinstance(items, list) or not items:
        return NONE
    return f"{items[0]}" + (f" +{len(items) - 1}" if len(items) > 1 else "")
