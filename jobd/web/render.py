"""Pages as HTML: a Jinja2 environment over the package's templates, autoescaped, with the
filters the templates use (relative times, sizes)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web


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
