"""What ended runs used, charged in the transaction that ends each one: CPU- and GPU-seconds
by owner and the day the run ended (fair share decays them by age), and GPU-seconds by owner,
project and the hour they were used in (a quota's GPU-hours in the last 24 hours). Both are
small (a row per owner per day; per GPU user per hour, a day's worth kept) and are read by
every placement pass, in its own transaction."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable

from jobd.domain.runs import Run
from jobd.domain.sharing import DAY_SECONDS, Ended

KEEP_DAYS = 60  # fair share reads four half-lives back (28 days by default)
HOUR_SECONDS = 3600.0
NOBODY = -1  # a run whose owner's uid is unknown


def charge(db: sqlite3.Connection, run: Run) -> None:
    """Charge what the run used, from its start to its end, to its owner (and project)."""
    if run.started_at is None or run.finished_at is None:
        return
    start, end = run.started_at.timestamp(), run.finished_at.timestamp()
    if end <= start:
        return
    owner = NOBODY if run.owner_uid is None else run.owner_uid
    gpus = len(run.allocation.gpus) if run.allocation else 0
    day = int(end // DAY_SECONDS)
    db.execute(
        "INSERT INTO use_days (day, owner_uid, cpu_seconds, gpu_seconds) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (day, owner_uid) DO UPDATE SET"
        " cpu_seconds = cpu_seconds + excluded.cpu_seconds,"
        " gpu_seconds = gpu_seconds + excluded.gpu_seconds",
        (day, owner, run.plan.cpus * (end - start), gpus * (end - start)),
    )
    db.execute("DELETE FROM use_days WHERE day < ?", (day - KEEP_DAYS,))
    if gpus:
        _charge_hours(db, owner, run.project or "", gpus, max(start, end - DAY_SECONDS), end)


def _charge_hours(
    db: sqlite3.Connection, owner: int, project: str, gpus: int, start: float, end: float
) -> None:
    """GPU-seconds into each hour from start to end (at most a day's worth: older use no
    longer counts)."""
    first, last = int(start // HOUR_SECONDS), int(end // HOUR_SECONDS)
    for hour in range(first, last + 1):
        seconds = min(end, (hour + 1) * HOUR_SECONDS) - max(start, hour * HOUR_SECONDS)
        db.execute(
            "INSERT INTO gpu_hours (hour, owner_uid, project, gpu_seconds) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hour, owner_uid, project) DO UPDATE SET"
            " gpu_seconds = gpu_seconds + excluded.gpu_seconds",
            (hour, owner, project, gpus * seconds),
        )
    db.execute("DELETE FROM gpu_hours WHERE hour < ?", (first - 48,))


class PastUse:
    """What ended runs used on the days before today, decayed, by owner: summed once an hour
    (decay drifts by 0.4% an hour at the default half-life), so that a pass reads only
    today's rows. Runs end today (charge() puts a run's use on the day it ended), so nothing
    a pass misses comes before today; a run recovery ends with an earlier end time is counted
    from the next sum on."""

    def __init__(self) -> None:
        self._key: tuple[int, int, float] | None = None  # (today, hour, horizon) summed for
        self._totals: dict[int | None, tuple[float, float]] = {}

    def used(
        self,
        db: sqlite3.Connection,
        moment: float,
        horizon_seconds: float,
        decay: Callable[[float], float],
    ) -> list[Ended]:
        """What ended runs used since `horizon_seconds` ago, by owner, each day's use times
        `decay(its age)`."""
        today = int(moment // DAY_SECONDS)
        key = (today, int(moment // HOUR_SECONDS), horizon_seconds)
        if key != self._key:
            first = math.floor((moment - horizon_seconds) / DAY_SECONDS)
            self._totals = _decayed(db, range(first, today), moment, decay)
            self._key = key
        totals = dict(self._totals)
        for owner, (cpu, gpu) in _decayed(db, range(today, today + 1), moment, decay).items():
            past_cpu, past_gpu = totals.get(owner, (0.0, 0.0))
            totals[owner] = (past_cpu + cpu, past_gpu + gpu)
        return [
            Ended(owner_uid=owner, project=None, at=moment, cpu_seconds=cpu, gpu_seconds=gpu)
            for owner, (cpu, gpu) in totals.items()  # decayed already: at is now
        ]


def _decayed(
    db: sqlite3.Connection, days: range, moment: float, decay: Callable[[float], float]
) -> dict[int | None, tuple[float, float]]:
    """Each owner's use on these days, each day's times `decay(its age at its middle)`."""
    if not days:
        return {}
    weights = [(day, decay(moment - (day + 0.5) * DAY_SECONDS)) for day in days]
    rows = db.execute(
        f"WITH weights (day, f) AS (VALUES {', '.join(['(?, ?)'] * len(weights))})"
        " SELECT u.owner_uid, SUM(u.cpu_seconds * w.f), SUM(u.gpu_seconds * w.f)"
        " FROM weights w JOIN use_days u ON u.day = w.day GROUP BY u.owner_uid",
        [value for pair in weights for value in pair],
    )
    return {None if row[0] == NOBODY else row[0]: (row[1], row[2]) for row in rows}


def gpu_day(db: sqlite3.Connection, moment: float) -> list[Ended]:
    """GPU-seconds ended runs used in the last 24 hours (whole hours), by owner and project."""
    rows = db.execute(
        "SELECT owner_uid, project, SUM(gpu_seconds) FROM gpu_hours WHERE hour > ?"
        " GROUP BY owner_uid, project",
        (int(moment // HOUR_SECONDS) - 24,),
    )
    return [
        Ended(
            owner_uid=None if row[0] == NOBODY else row[0],
            project=row[1] or None,
            at=moment,
            cpu_seconds=0.0,
            gpu_seconds=row[2],
        )
        for row in rows
    ]
