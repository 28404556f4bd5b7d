"""Workflows' pure rules: Slurm's index syntax, when a dependency is met or can never be,
why a held run waits, and the runs one submission of an array makes."""

from __future__ import annotations

import pytest

from jobd.domain.jobs import JobSpec
from jobd.domain.records import now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import submission
from jobd.domain.states import RunStatus
from jobd.domain.workflows import (
    MAX_ARRAY_SIZE,
    ArraySpec,
    Condition,
    Dependency,
    Ended,
    Held,
    Verdict,
    array_status,
    never_reason,
    parse_indices,
    verdict,
    waiting_reason,
)


@pytest.mark.parametrize(
    ("text", "indices"),
    [
        ("0-3", (0, 1, 2, 3)),
        ("1,5,7-9", (1, 5, 7, 8, 9)),
        ("0-15:4", (0, 4, 8, 12)),
        ("3, 1,3", (1, 3)),
        ("7", (7,)),
    ],
)
def test_indices_read_as_slurm_writes_them(text: str, indices: tuple[int, ...]) -> None:
    assert parse_indices(text) == indices


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty index"),
        ("a-b", "is not an index"),
        ("5-2", "ranges go up"),
        ("0-4:0", "steps 1 or more"),
        (f"0-{MAX_ARRAY_SIZE}", f"at most {MAX_ARRAY_SIZE} indices"),
        ("0-9999,20000", f"at most {MAX_ARRAY_SIZE} indices"),
        ("0-99999999999999", f"at most {MAX_ARRAY_SIZE} indices"),
    ],
)
def test_bad_indices_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArraySpec.from_api({"indices": text})


WAITING, SUCCEEDED, FAILED = (
    Ended(done=False, bad=False),
    Ended(done=True, bad=False),
    Ended(done=True, bad=True),
)
PARTLY_FAILED = Ended(done=False, bad=True)  # an array with a failed run and more to come


@pytest.mark.parametrize(
    ("condition", "ended", "expected"),
    [
        (Condition.OK, WAITING, Verdict.WAIT),
        (Condition.OK, SUCCEEDED, Verdict.MET),
        (Condition.OK, FAILED, Verdict.NEVER),
        (Condition.OK, PARTLY_FAILED, Verdict.NEVER),  # fails as soon as it can't hold
        (Condition.ANY, WAITING, Verdict.WAIT),
        (Condition.ANY, PARTLY_FAILED, Verdict.WAIT),
        (Condition.ANY, FAILED, Verdict.MET),
        (Condition.ANY, SUCCEEDED, Verdict.MET),
        (Condition.NOTOK, PARTLY_FAILED, Verdict.WAIT),  # waits for the end of all of it
        (Condition.NOTOK, FAILED, Verdict.MET),
        (Condition.NOTOK, SUCCEEDED, Verdict.NEVER),
    ],
)
def test_a_dependency_is_met_never_met_or_waits(
    condition: Condition, ended: Ended, expected: Verdict
) -> None:
    assert verdict(condition, ended) is expected


def test_reasons_name_what_is_waited_for() -> None:
    run = Dependency(on="run-1", condition=Condition.OK)
    array = Dependency(on="run-2", condition=Condition.NOTOK, array=True)
    assert waiting_reason([run, array]) == (
        "waiting for run run-1 to succeed; every run of array run-2 to end, and not all succeeded"
    )
    assert never_reason(run) == "dependency failed: run run-1 did not succeed (after ok)"
    assert never_reason(array) == "dependency failed: array run-2 all succeeded (after notok)"


def test_an_arrays_runs_share_its_id_and_are_held_past_its_parallelism() -> None:
    spec = JobSpec(image="busybox", array=ArraySpec(indices="3,1,8-9", parallelism=2))
    runs = submission("job-1", spec, DEFAULT_PLANS["standard"], now())
    assert [r.array_index for r in runs] == [1, 3, 8, 9]
    assert [r.array_id for r in runs] == [runs[0].id] * 4
    assert [r.held for r in runs] == [None, None, Held.ARRAY, Held.ARRAY]
    assert [r.created_at for r in runs] == sorted({r.created_at for r in runs})
    assert spec.array is not None and spec.array.to_api()["size"] == 4


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"succeeded": 5, "running": 1, "pending": 3}, RunStatus.RUNNING),
        ({"succeeded": 5, "cancelling": 1, "failed": 1}, RunStatus.RUNNING),
        ({"succeeded": 5, "pending": 1, "failed": 1}, RunStatus.PENDING),
        ({"succeeded": 5, "failed": 1, "cancelled": 1}, RunStatus.FAILED),
        ({"succeeded": 5, "cancelled": 1}, RunStatus.CANCELLED),
        ({"succeeded": 6}, RunStatus.SUCCEEDED),
    ],
)
def test_an_array_shows_one_status_from_its_runs_counts(
    counts: dict[str, int], status: RunStatus
) -> None:
    assert array_status(counts) is status
