"""Run metrics: each sample kept at full resolution (resolution 0) and folded into its
minute's average and maximum (resolution 60) in the same write, so a crash loses no minute;
full-resolution points are pruned after a day, minutes after a month (config), a batch at a
time. What each run used in all (RunUsage) is kept on the run."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

import aiosqlite

from jobd.domain.metrics import MINUTE, RunUsage, Sample, Series
from jobd.store.rows import fetch_all

PRUNE_BATCH = 5000
_POINT = "INSERT OR REPLACE INTO metric_points VALUES (?, ?, ?, 0, ?, ?, ?, 1)"
_MINUTE = (
    "INSERT INTO metric_points VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
    " ON CONFLICT (run_id, name, resolution, series, at) DO UPDATE SET"
    " value = (value * count + excluded.value) / (count + 1),"
    " peak = MAX(peak, excluded.peak), count = count + 1"
)


def record(
    db: sqlite3.Connection, samples: Sequence[Sample], usage: Mapping[str, RunUsage]
) -> None:
    db.executemany(_POINT, [(s.run_id, s.name, s.series, s.at, s.value, s.value) for s in samples])
    db.executemany(
        _MINUTE,
        [
            (s.run_id, s.name, s.series, MINUTE, s.at // MINUTE * MINUTE, s.value, s.value)
            for s in samples
        ],
    )
    db.executemany(
        "UPDATE runs SET usage = ? WHERE id = ?",
        [(used.to_record(), run_id) for run_id, used in usage.items()],
    )


def prune(db: sqlite3.Connection, points_before: float, minutes_before: float) -> int:
    """Delete up to a batch of points past their keep; how many went."""
    gone = _prune(db, 0, points_before, PRUNE_BATCH)
    if gone < PRUNE_BATCH:
        gone += _prune(db, MINUTE, minutes_before, PRUNE_BATCH - gone)
    return gone


def _prune(db: sqlite3.Connection, resolution: int, before: float, limit: int) -> int:
    cursor = db.execute(
        "DELETE FROM metric_points WHERE (run_id, name, resolution, series, at) IN ("
        " SELECT run_id, name, resolution, series, at FROM metric_points"
        " WHERE resolution = ? AND at < ? LIMIT ?)",
        (resolution, before, limit),
    )
    return cursor.rowcount


def forget_job(db: sqlite3.Connection, job_id: str) -> None:
    """A purged job's runs' points."""
    db.execute(
        "DELETE FROM metric_points WHERE run_id IN (SELECT id FROM runs WHERE job_id = ?)",
        (job_id,),
    )


async def series(
    db: aiosqlite.Connection,
    run_ids: Sequence[str],
    names: Sequence[str],
    *,
    start: float,
    end: float,
    step: int,
    resolution: int,
) -> dict[str, list[Series]]:
    """Each run's series of the named metrics from start to end: a point per step, its
    average and its maximum, by metric name."""
    if not run_ids or not names:
        return {}
    runs, metrics = ", ".join("?" * len(run_ids)), ", ".join("?" * len(names))
    rows = await fetch_all(
        db,
        "SELECT run_id, name, series, CAST(at / ? AS INTEGER) * ? AS t,"
        " SUM(value * count) / SUM(count), MAX(peak) FROM metric_points"
        f" WHERE run_id IN ({runs}) AND name IN ({metrics}) AND resolution = ?"
        " AND at >= ? AND at < ?"
        " GROUP BY run_id, name, series, t ORDER BY run_id, name, series, t",
        (step, step, *run_ids, *names, resolution, start, end),
    )
    found: dict[str, list[Series]] = {}
    by_key: dict[tuple[str, str, str], Series] = {}
    for run_id, name, key, at, average, peak in rows:
        one = by_key.get((name, run_id, key))
        if one is None:
            one = by_key[(name, run_id, key)] = Series(
                run_id=run_id, labels={"gpu": key} if key else {}
            )
            found.setdefault(name, []).append(one)
        one.timestamps.append(float(at))
        one.values.append(average)
        one.maxima.append(peak)
    return found
