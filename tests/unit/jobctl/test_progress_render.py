"""A run's progress as jobctl prints it: the bar, the line fitted to a terminal's width (the
message goes first), the time left counted down from the latest marker, `jobctl ls`'s few
words, `jobctl show`'s lines and phase timeline, and an array's indices done of total."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobctl.render.jobs import job_details, run_details
from jobctl.render.listing import job_row
from jobctl.render.progress import (
    array_counts,
    array_line,
    bar,
    eta_left,
    listed,
    percent,
    progress_details,
    progress_line,
    progress_summary,
    timeline,
)

NOW = datetime(2027, 1, 1, 12, 1, 0, tzinfo=UTC)
PROGRESS = {
    "fraction": 0.42, "done": 120, "total": 480, "message": "frame 120", "phase": "rendering",
    "updatedAt": "2027-01-01T12:00:50+00:00", "etaSeconds": 200.0,
}  # fmt: skip
RUN = {
    "id": "run-1", "status": "running", "startedAt": "2027-01-01T11:59:55+00:00",
    "progress": PROGRESS,
    "phases": [
        {"name": "validating", "startedAt": "2027-01-01T11:59:55+00:00", "seconds": 10.2},
        {"name": "rendering", "startedAt": "2027-01-01T12:00:05+00:00", "seconds": 2400},
        {"name": "finalizing", "startedAt": "2027-01-01T12:40:05+00:00", "seconds": 59.6},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("fraction", "drawn"),
    [(0, "[          ]"), (0.05, "[▌         ]"), (0.04, "[▍         ]"),
     (0.42, "[████▎     ]"), (0.5, "[█████     ]"), (1, "[██████████]"), (1.5, "[██████████]")],
)  # fmt: skip
def test_the_bar_fills_to_an_eighth_of_a_cell(fraction: float, drawn: str) -> None:
    assert bar(fraction, 10) == drawn


def test_percent_is_rounded_down_so_unfinished_work_never_reads_100() -> None:
    assert (percent(0.999), percent(1.0), percent(0.426)) == ("99%", "100%", "42%")


def test_the_time_left_counts_down_from_the_latest_marker() -> None:
    assert eta_left(PROGRESS, NOW) == 190.0  # 200 s as of 10 s ago
    assert eta_left({**PROGRESS, "etaSeconds": 5.0}, NOW) == 0.0, "never below zero"
    assert eta_left({**PROGRESS, "etaSeconds": None}, NOW) is None


def test_the_line_has_bar_percent_phase_message_eta_and_time() -> None:
    line = progress_line("run-1 running", PROGRESS, NOW, "1m05s", 200)
    assert line == (
        "run-1 running [████████▍           ] 42% · rendering · frame 120 · ETA 3m10s · 1m05s"
    )


def test_a_narrow_terminal_loses_the_message_first_then_the_bar() -> None:
    full = progress_line("run-1 running", PROGRESS, NOW, "1m05s", 200)
    cut = progress_line("run-1 running", PROGRESS, NOW, "1m05s", len(full) - 1)
    assert cut.endswith("· frame 1… · ETA 3m10s · 1m05s") and len(cut) == len(full) - 1
    without = progress_line("run-1 running", PROGRESS, NOW, "1m05s", len(full) - 2)
    assert "frame" not in without and "[████████▍           ]" in without
    narrow = progress_line("run-1 running", PROGRESS, NOW, "1m05s", 64)
    assert "[████▎     ] 42% · rendering · ETA 3m10s" in narrow and len(narrow) <= 64
    barless = progress_line("run-1 running", PROGRESS, NOW, "1m05s", 50)
    assert barless == "run-1 running 42% · rendering · ETA 3m10s · 1m05s"
    for width in range(0, 120):
        assert len(progress_line("run-1 running", PROGRESS, NOW, "1m05s", width)) <= width


def test_phases_alone_show_no_bar() -> None:
    phases_only = {**PROGRESS, "fraction": None, "done": None, "total": None, "message": None,
                   "etaSeconds": None}  # fmt: skip
    line = progress_line("run-1 running", phases_only, NOW, "1m05s", 200)
    assert line == "run-1 running · rendering · 1m05s"


def test_ls_shows_an_unended_runs_fraction_and_phase() -> None:
    assert listed(RUN) == "42% rendering"
    assert listed({**RUN, "status": "succeeded"}) is None, "an ended run's status says enough"
    assert listed({**RUN, "progress": None}) is None and listed(None) is None
    long = {**RUN, "progress": {**PROGRESS, "phase": "p" * 40}}
    assert listed(long) == "42% " + "p" * 15 + "…"
    job = {"id": "job-1", "image": "busybox", "status": "running",
           "createdAt": "2027-01-01T11:59:00+00:00", "latestRun": RUN}  # fmt: skip
    assert job_row(job, NOW, wide=False, colour=False)[3] == "running 42% rendering"


def test_show_has_the_progress_lines_and_the_phase_timeline() -> None:
    lines = dict(progress_details(RUN, NOW))
    assert lines["progress"] == "42% (120/480)"
    assert (lines["message"], lines["phase"], lines["eta"]) == ("frame 120", "rendering", "3m10s")
    assert lines["phases"] == "validating 10s, rendering 40m, finalizing 1m"
    assert "updated" in lines
    ended = dict(progress_details({**RUN, "status": "failed"}, NOW))
    assert "eta" not in ended, "an ended run has no time left"
    assert progress_details({**RUN, "progress": None}, NOW) == []
    assert timeline([]) is None
    text = run_details({**RUN, "scheduledFor": None})
    assert "progress:" in text and "validating 10s, rendering 40m, finalizing 1m" in text
    summary = progress_summary(RUN, NOW)
    assert summary == "42% (120/480) · rendering · frame 120 · ETA 3m10s"


def test_an_array_shows_indices_done_of_total() -> None:
    counts = {"succeeded": 35, "failed": 2, "running": 3, "pending": 60}
    assert array_counts(counts) == (37, 100, "37/100 done, 3 running, 2 failed")
    line = array_line("shards", counts, 200)
    assert line == "shards 37/100 done, 3 running, 2 failed [███████▍            ] 37%"
    assert array_line("shards", counts, 45) == "shards 37/100 done, 3 running, 2 failed 37%"
    assert len(array_line("shards", counts, 20)) == 20
    job: dict[str, Any] = {
        "id": "job-1", "image": "busybox", "arrayRuns": counts,
        "array": {"indices": "0-99", "parallelism": 4, "size": 100},
    }  # fmt: skip
    text = job_details(job)
    assert "indices 0-99 (100), 4 at a time" in text and "37/100 done, 3 running" in text
