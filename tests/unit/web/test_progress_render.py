"""The dashboard's progress fragments rendered as the pages and their live pushes render them:
job-provided text (a progress message, a phase) is escaped; the bar, percentage, time left
and phase timeline say what the run's progress says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobd.web.render import after, duration, eta_left, fragment, indices_done, percent


def stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def run_doc(message: str, phase: str, finished: bool = False) -> dict[str, Any]:
    return {
        "id": "r_1",
        "createdAt": stamp(30),
        "startedAt": stamp(20),
        "finishedAt": stamp(0) if finished else None,
        "progress": {
            "fraction": 0.42,
            "done": 42,
            "total": 100,
            "message": message,
            "phase": phase,
            "updatedAt": stamp(10),
            "etaSeconds": 70.0,
        },
        "phases": [
            {"name": "<i>prep</i>", "startedAt": stamp(20), "seconds": 5.0},
            {"name": phase, "startedAt": stamp(15), "seconds": 15.0},
        ],
    }


def test_job_provided_text_is_escaped_on_the_run_page_and_the_jobs_list() -> None:
    run = run_doc("<b>x</b>", "<script>alert(1)</script>")
    html = fragment("_run_progress.html", run=run)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "&lt;i&gt;prep&lt;/i&gt;" in html and "<i>" not in html
    job = {"id": "j_1", "name": "n", "image": "i", "status": "running", "createdAt": stamp(30)}
    rows = fragment(
        "_job_rows.html",
        admin=False,
        jobs=[{**job, "arrayRuns": None, "latestRunId": "r_1", "latestRun": run}],
    )
    assert "&lt;script&gt;" in rows and "<script>" not in rows


def test_the_run_page_shows_the_bar_time_left_and_timeline() -> None:
    html = fragment("_run_progress.html", run=run_doc("frame 42", "rendering"))
    assert '<progress max="1" value="0.42"' in html and "42%" in html
    assert "42 of 100" in html and "frame 42" in html
    assert 'class="eta" data-left="60.' in html or 'data-left="59.' in html  # 70 s, 10 s ago
    assert ">prep" not in html and "rendering" in html
    assert "15s so far" in html, "the current phase grows while the run runs"
    ended = fragment("_run_progress.html", run=run_doc("frame 42", "rendering", finished=True))
    assert "left" not in ended and "so far" not in ended, "no estimate once it ended"
    assert (
        fragment(
            "_run_progress.html", run={**run_doc("", ""), "progress": None, "phases": []}
        ).strip()
        == ""
    )


def test_an_array_job_shows_its_indices_ended_of_all() -> None:
    job = {"id": "j_2", "name": None, "image": "i", "status": "running", "createdAt": stamp(5)}
    counts = {"succeeded": 3, "failed": 1, "running": 2, "pending": 4}
    rows = fragment(
        "_job_rows.html",
        admin=True,
        jobs=[{**job, "owner": {"user": "u"}, "arrayRuns": counts, "latestRunId": None}],
    )
    assert '<progress max="10" value="4"' in rows and "4/10 indices" in rows
    assert indices_done(counts) == (4, 10) and indices_done(None) == (0, 0)


def test_durations_percentages_and_time_left() -> None:
    assert [duration(s) for s in (0, 9.9, 65, 3725, 90061, None)] == [
        "0s",
        "9s",
        "1m 05s",
        "1h 02m",
        "1d 01h",
        "-",
    ]
    assert [percent(f) for f in (0.0, 0.29, 0.999, 1.0, None)] == ["0%", "29%", "99%", "100%", "-"]
    assert after(stamp(5), stamp(20)) == pytest.approx(15, abs=0.1)
    assert eta_left({"etaSeconds": 30.0, "updatedAt": stamp(50)}) == 0.0
    left = eta_left({"etaSeconds": 30.0, "updatedAt": stamp(10)})
    assert left is not None and 19 < left <= 20
    assert eta_left({"etaSeconds": None, "updatedAt": stamp(1)}) is None
    assert eta_left(None) is None
