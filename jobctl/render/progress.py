"""A run's progress as its job reported it (marker lines: the API's `progress` and `phases`),
as jobctl prints it: a bar line fitted to a terminal's width for the live status line
(`[██████▌      ] 42% · rendering · frame 120 · ETA 3m10s`), a few words for `jobctl ls`
(`42% rendering`), `key: value` lines for `jobctl show`; and an array job's runs as indices
done of total."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jobctl.render.values import duration, local_time

UNENDED = ("pending", "assigned", "running", "cancelling")
BAR_WIDTH = 20  # cells of a bar where there is room
NARROW_BAR_WIDTH = 10  # where there is less
MIN_MESSAGE = 8  # characters of a message worth showing cut; fewer: it is left out
LISTED_PHASE = 16  # characters of a phase in `jobctl ls`
FULL = "█"
PARTS = " ▏▎▍▌▋▊▉"  # a cell an eighth, a quarter, ... filled
SEP = " · "


def bar(fraction: float, width: int) -> str:
    """`[██████▌      ]`: `width` cells filled to an eighth of one."""
    eighths = round(min(1.0, max(0.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    cells = FULL * full + (PARTS[part] if part else "")
    return f"[{cells.ljust(width)}]"


def percent(fraction: float) -> str:
    """Rounded down: 99.9% done is not yet 100%."""
    return f"{int(min(1.0, max(0.0, fraction)) * 100)}%"


def amount(number: float) -> str:
    return f"{number:g}"


def eta_left(progress: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds left now: the estimate as of the latest marker, less the time since."""
    eta = progress.get("etaSeconds")
    updated = progress.get("updatedAt")
    if eta is None:
        return None
    since = (now - datetime.fromisoformat(updated)).total_seconds() if updated else 0.0
    return max(0.0, float(eta) - since)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, `…` where it was cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 0 else ""


def progress_line(
    head: str, progress: Mapping[str, Any], now: datetime, tail: str, width: int
) -> str:
    """`<head> [bar] 42% · phase · message · ETA 3m10s · <tail>` in at most `width`
    characters: the message is cut, then left out, then the bar narrowed and left out,
    then the phase; what is still too long is cut."""
    fraction = progress.get("fraction")
    eta = eta_left(progress, now)
    ending = ([f"ETA {duration(round(eta))}"] if eta is not None else []) + [tail]
    phase = [progress["phase"]] if progress.get("phase") else []
    message = progress.get("message") or ""
    line = head
    for bar_width, shown_phase in (
        (BAR_WIDTH, phase),
        (NARROW_BAR_WIDTH, phase),
        (0, phase),
        (0, []),
    ):
        start = head + (f" {_amount(fraction, bar_width)}" if fraction is not None else "")
        line = _joined(start, [*shown_phase, *ending])
        if len(line) <= width:
            # the message only beside the full bar: a narrower line has lost it already
            with_message = _with_message(start, phase, message, ending, width)
            return with_message if with_message and bar_width == BAR_WIDTH else line
    return cut(line, width)


def _amount(fraction: float, bar_width: int) -> str:
    return f"{bar(fraction, bar_width)} {percent(fraction)}" if bar_width else percent(fraction)


def _joined(start: str, pieces: Sequence[str]) -> str:
    return "".join([start, *(SEP + piece for piece in pieces)])


def _with_message(
    start: str, phase: list[str], message: str, ending: list[str], width: int
) -> str | None:
    """The line with the message, cut to the room left; None when there is too little."""
    if not message:
        return None
    room = width - len(_joined(start, [*phase, "", *ending]))
    if room < min(MIN_MESSAGE, len(message)):
        return None
    return _joined(start, [*phase, cut(message, room), *ending])


def array_counts(counts: Mapping[str, int]) -> tuple[int, int, str]:
    """An array's runs as indices done of total: (done, total, `37/100 done, 3 running, 2
    failed`); runs placed or stopping count as running, failed and cancelled as done."""
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
    running = sum(counts.get(s, 0) for s in ("assigned", "running", "cancelling"))
    text = f"{done}/{total} done, {running} running"
    bad = [f"{counts[s]} {s}" for s in ("failed", "cancelled") if counts.get(s)]
    return done, total, ", ".join([text, *bad])


def array_line(head: str, counts: Mapping[str, int], width: int) -> str:
    """`shards 37/100 done, 3 running [███▋      ] 37%`, in at most `width` characters."""
    done, total, text = array_counts(counts)
    start = f"{head} {text}"
    fraction = done / total if total else 0.0
    for bar_width in (BAR_WIDTH, NARROW_BAR_WIDTH, 0):
        line = f"{start} {_amount(fraction, bar_width)}"
        if len(line) <= width:
            return line
    return cut(start, width)


def listed(run: Mapping[str, Any] | None) -> str | None:
    """A run's progress in a few words while it has not ended (`42% rendering`); None when
    it has ended or reported none."""
    progress = (run or {}).get("progress")
    if not progress or (run or {}).get("status") not in UNENDED:
        return None
    words = [percent(progress["fraction"])] if progress.get("fraction") is not None else []
    if progress.get("phase"):
        words.append(cut(progress["phase"], LISTED_PHASE))
    return " ".join(words) or None


def progress_details(run: Mapping[str, Any], now: datetime) -> list[tuple[str, object]]:
    """`jobctl show RUN`'s lines of what its job reported: how far, what it said, its phase,
    the time left (while it runs), when it last said so, and its phases' timeline."""
    progress = run.get("progress")
    if not progress:
        return []
    eta = eta_left(progress, now) if run.get("status") in UNENDED else None
    lines: list[tuple[str, object]] = [
        ("progress", _how_far(progress)),
        ("message", progress.get("message")),
        ("phase", progress.get("phase")),
        ("eta", duration(round(eta)) if eta is not None else None),
        ("updated", local_time(progress.get("updatedAt"))),
        ("phases", timeline(run.get("phases") or [])),
    ]
    return [(key, value) for key, value in lines if value is not None]


def progress_summary(run: Mapping[str, Any] | None, now: datetime) -> str | None:
    """A run's progress on one line: `42% (120/480) · rendering · frame 120 · ETA 3m10s`
    (the time left while it runs); None when its job reported none."""
    progress = (run or {}).get("progress")
    if not run or not progress:
        return None
    eta = eta_left(progress, now) if run.get("status") in UNENDED else None
    pieces = [
        _how_far(progress),
        progress.get("phase"),
        progress.get("message"),
        f"ETA {duration(round(eta))}" if eta is not None else None,
    ]
    return SEP.join(piece for piece in pieces if piece) or None


def array_text(array: Mapping[str, Any] | None) -> str | None:
    """A job's array: `indices 0-99 (100), 4 at a time`."""
    if not array:
        return None
    size = f" ({array['size']})" if array.get("size") is not None else ""
    at_once = f", {array['parallelism']} at a time" if array.get("parallelism") else ""
    return f"indices {array['indices']}{size}{at_once}"


def _how_far(progress: Mapping[str, Any]) -> str | None:
    """`42% (120/480)`, `42%`; None when only phases were reported."""
    fraction = progress.get("fraction")
    if fraction is None:
        return None
    done, total = progress.get("done"), progress.get("total")
    of = f" ({amount(done)}/{amount(total)})" if done is not None and total is not None else ""
    return f"{percent(fraction)}{of}"


def timeline(phases: Sequence[Mapping[str, Any]]) -> str | None:
    """`validating 10s, rendering 40m, finalizing 1m`."""
    if not phases:
        return None
    return ", ".join(f"{p['name']} {duration(round(p.get('seconds') or 0))}" for p in phases)
