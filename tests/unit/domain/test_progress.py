"""Progress markers' pure rules: what a marker line says (and what is refused), how progress
and the phase timeline follow the marks, and the estimate from the smoothed rate."""

from __future__ import annotations

import pytest

from jobd.domain.progress import (
    MAX_PHASES,
    PhaseMark,
    Progress,
    ProgressMark,
    parse_marker,
)


@pytest.mark.parametrize(
    ("line", "mark"),
    [
        ("::jobd progress 0.42", ProgressMark(fraction=0.42)),
        ("::jobd progress 0", ProgressMark(fraction=0.0)),
        ("::jobd progress 1", ProgressMark(fraction=1.0)),
        ("::jobd progress 42/100", ProgressMark(fraction=0.42, done=42, total=100)),
        (
            "::jobd progress 120/480 frame 120 of 480 ",
            ProgressMark(fraction=0.25, done=120, total=480, message="frame 120 of 480"),
        ),
        ("::jobd progress 1.5/3", ProgressMark(fraction=0.5, done=1.5, total=3)),
        ("::jobd  progress   0.5   two  spaces", ProgressMark(fraction=0.5, message="two  spaces")),
        ("::jobd phase rendering", PhaseMark(name="rendering")),
        ("::jobd phase epoch 3 of 10", PhaseMark(name="epoch 3 of 10")),
    ],
)
def test_a_marker_says(line: str, mark: ProgressMark | PhaseMark) -> None:
    assert parse_marker(line) == mark


@pytest.mark.parametrize(
    "line",
    [
        "::jobd progress 1.5",
        "::jobd progress -0.1",
        "::jobd progress 11/10",
        "::jobd progress -1/10",
        "::jobd progress 1/0",
        "::jobd progress 0/0",
        "::jobd progress nan",
        "::jobd progress inf/10",
        "::jobd progress 1/inf",
        "::jobd progress 42%",
        "::jobd progress abc/10",
        "::jobd progress",
        "::jobd phase",
        "::jobd phase   ",
        "::jobd frobnicate 1",
        "::jobd ",
    ],
)
def test_a_bad_marker_says_nothing(line: str) -> None:
    assert parse_marker(line) is None


def test_long_texts_are_cut() -> None:
    mark = parse_marker("::jobd progress 0.5 " + "m" * 500)
    assert isinstance(mark, ProgressMark) and mark.message == "m" * 200
    phase = parse_marker("::jobd phase " + "p" * 500)
    assert isinstance(phase, PhaseMark) and phase.name == "p" * 100


def test_progress_and_phases_follow_the_marks() -> None:
    progress = Progress()
    progress = progress.apply(PhaseMark(name="validating"), 100.0)
    assert progress.phase == "validating" and progress.fraction is None
    progress = progress.apply(PhaseMark(name="validating"), 101.0)  # the same phase again
    progress = progress.apply(PhaseMark(name="rendering"), 110.0)
    progress = progress.apply(ProgressMark(fraction=0.1, done=1, total=10, message="f1"), 111.0)
    doc = progress.to_api()
    assert doc == {
        "fraction": 0.1,
        "done": 1,
        "total": 10,
        "message": "f1",
        "phase": "rendering",
        "updatedAt": "1970-01-01T00:01:51.000+00:00",
        "etaSeconds": None,  # one point: no rate yet
    }
    assert [(p.name, p.started_at) for p in progress.phases] == [
        ("validating", 100.0),
        ("rendering", 110.0),
    ]
    assert Progress.from_record(progress.to_record()) == progress


def test_the_estimate_comes_from_the_smoothed_rate() -> None:
    progress = Progress().apply(ProgressMark(fraction=0.0), 0.0)
    for second in range(1, 11):  # 1% a second
        progress = progress.apply(ProgressMark(fraction=second / 100), float(second))
    assert progress.eta_seconds == pytest.approx(90.0)
    # it speeds up to 5% a second: the estimate follows over the next minutes, not at once
    for second in range(11, 15):
        progress = progress.apply(ProgressMark(fraction=0.1 + (second - 10) * 0.05), second)
    assert progress.eta_seconds is not None and 14 < progress.eta_seconds < 60
    done = progress.apply(ProgressMark(fraction=1.0), 30.0)
    assert done.eta_seconds == 0.0


def test_progress_that_goes_back_starts_the_estimate_afresh() -> None:
    progress = Progress().apply(ProgressMark(fraction=0.5), 0.0)
    progress = progress.apply(ProgressMark(fraction=0.6), 10.0)
    assert progress.eta_seconds == pytest.approx(40.0)
    progress = progress.apply(ProgressMark(fraction=0.0), 11.0)  # the next phase, from 0
    assert progress.eta_seconds is None
    progress = progress.apply(ProgressMark(fraction=0.2), 21.0)
    assert progress.eta_seconds == pytest.approx(40.0)


def test_the_timeline_keeps_the_newest_phases() -> None:
    progress = Progress()
    for number in range(MAX_PHASES + 20):
        progress = progress.apply(PhaseMark(name=f"step {number}"), float(number))
    assert len(progress.phases) == MAX_PHASES
    assert progress.phases[-1].name == f"step {MAX_PHASES + 19}"
