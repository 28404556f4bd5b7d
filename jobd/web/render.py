"""Pages as HTML: a Jinja2 environment over the package's templates, autoescaped, with the
filters the templates use (relative times, sizes, durations, a run's progress)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from jobd.domain.states import TERMINAL_STATUSES


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobd.web", "templates"),
        autoescape=True,  # every value is escaped: log lines and names are users' text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["size"] = size
    env.filters["duration"] = duration
    env.filters["after"] = after
    env.filters["eta_left"] = eta_left
    env.filters["percent"] = percent
    env.filters["indices_done"] = indices_done
    return env


def fragment(name: str, **values: Any) -> str:
    return environment().get_template(name).render(**values)


def page(name: str, **values: Any) -> web.Response:
    return web.Response(
        text=fragment(name, **values),
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def ago(value: str | None) -> str:
    """An API time relative to now: 45s ago, 3m ago, 2h ago, 4d ago; in 5m."""
    if not value:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(value)).total_seconds())
    amount = abs(seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if amount >= length or unit == "s":
            text = f"{amount // length}{unit}"
            return f"{text} ago" if seconds >= 0 else f"in {text}"
    raise AssertionError("unreachable")


def size(count: int | float | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """A span of time, to the second: 12s, 3m 05s, 2h 03m, 4d 01h (dashboard.js writes it
    the same way as it counts)."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    for big, small, length, unit in (("d", "h", 86400, 3600), ("h", "m", 3600, 60)):
        if whole >= length:
            return f"{whole // length}{big} {whole % length // unit:02d}{small}"
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def after(value: str, origin: str) -> float:
    """The seconds from one API time to another (a phase's start after its run's)."""
    return (datetime.fromisoformat(value) - datetime.fromisoformat(origin)).total_seconds()


def eta_left(progress: dict[str, Any] | None) -> float | None:
    """The seconds a run's progress says are left now: its estimate was as of its last
    marker, so the time since then is taken off (never below 0). None without an estimate."""
    if not progress or progress.get("etaSeconds") is None or not progress.get("updatedAt"):
        return None
    since = (datetime.now(UTC) - datetime.fromisoformat(progress["updatedAt"])).total_seconds()
    return max(0.0, float(progress["etaSeconds"]) - max(0.0, since))


def percent(fraction: float | None) -> str:
    """A fraction as a whole percentage, rounded down: 100% only when it is all done."""
    return "-" if fraction is None else f"{int(fraction * 100 + 1e-9)}%"


def indices_done(counts: dict[str, int] | None) -> tuple[int, int]:
    """An array's (indices ended, indices in all) from its runs' counts by status."""
    if not counts:
        return 0, 0
    return sum(counts.get(s.value, 0) for s in TERMINAL_STATUSES), sum(counts.values())
