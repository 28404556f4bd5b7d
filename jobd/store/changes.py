"""Whether anything a live page shows of runs has changed, in one cheap read: the newest run
event's id (it moves whenever any run changes state or is created) and a sum of the marker
times of the progress that runs have written (progress is a recorded fact, not an event).

The sum covers the runs under way (the status index finds them) and the runs among the newest
run events, so a run's last progress, written a moment after it ended, still counts."""

from __future__ import annotations

import aiosqlite

from jobd.domain.states import ACTIVE_STATUSES
from jobd.store.rows import fetch_one

RECENT_EVENTS = 20  # a run that ended among these still has its last progress seen

_ACTIVE = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES))
_LATEST_CHANGE = f"""
SELECT
  (SELECT MAX(id) FROM run_events) AS event,
  (SELECT TOTAL(json_extract(progress, '$.updatedAt')) FROM runs
     WHERE progress IS NOT NULL
       AND (status IN ({_ACTIVE})
            OR id IN (SELECT run_id FROM run_events ORDER BY id DESC LIMIT {RECENT_EVENTS}))
  ) AS progress
"""


async def latest_change(db: aiosqlite.Connection) -> tuple[int, float]:
    """(the newest run event's id, the runs' progress times summed): either moves when a
    run's state or its progress changes."""
    row = await fetch_one(db, _LATEST_CHANGE, ())
    if row is None:
        return 0, 0.0
    return int(row["event"] or 0), float(row["progress"] or 0.0)
