"""Which finished runs retention prunes, and how [retention] is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobd.config import load
from jobd.domain.retention import (
    DAY,
    FinishedRun,
    PruneReport,
    Retention,
    format_duration,
    parse_duration,
    prunable,
)
from jobd.errors import InvalidRequest

NOW = 1_000_000.0


def finished(n: int, *, every: float = 60.0) -> list[FinishedRun]:
    """n runs, r0 the oldest, one every `every` seconds, each finished a minute after it
    was made; the newest finished an hour before NOW."""
    start = NOW - 3600 - n * every
    return [
        FinishedRun(
            run_id=f"r{i}", created_at=start + i * every, finished_at=start + i * every + 60
        )
        for i in range(n)
    ]


def test_keep_last_keeps_the_newest_and_prunes_the_rest_oldest_first() -> None:
    policy = Retention(keep_last=3, max_age_seconds=0)
    assert prunable(finished(6), latest="r5", policy=policy, moment=NOW) == ["r0", "r1", "r2"]


def test_the_latest_run_is_never_pruned_even_when_it_is_old() -> None:
    runs = finished(4)
    policy = Retention(keep_last=1, max_age_seconds=60)
    # the job's latest is r0 (a rerun of an old record cannot happen, but a latest that
    # is older than the others can: its newer runs were made by retries of others)
    assert prunable(runs, latest="r0", policy=policy, moment=NOW) == ["r1", "r2", "r3"]


def test_a_running_latest_leaves_keep_last_finished_runs() -> None:
    # the latest run is active: it is not among the finished ones, and keep_last of those stay
    policy = Retention(keep_last=2, max_age_seconds=0)
    assert prunable(finished(4), latest="r9", policy=policy, moment=NOW) == ["r0", "r1"]


def test_max_age_prunes_what_finished_longer_ago() -> None:
    runs = finished(5, every=DAY)
    policy = Retention(keep_last=0, max_age_seconds=2.5 * DAY)
    # r2 finished 3 days ago, r3 2 days ago
    assert prunable(runs, latest="r4", policy=policy, moment=NOW) == ["r0", "r1", "r2"]


def test_a_run_that_just_finished_is_left_to_settle() -> None:
    runs = [FinishedRun(run_id="new", created_at=NOW - 10, finished_at=NOW - 1), *finished(2)]
    policy = Retention(keep_last=1, max_age_seconds=0)
    assert prunable(runs, latest="latest", policy=policy, moment=NOW) == ["r0", "r1"]


def test_nothing_is_pruned_when_both_limits_are_off() -> None:
    policy = Retention(keep_last=0, max_age_seconds=0)
    assert not policy.active
    assert prunable(finished(500), latest=None, policy=policy, moment=NOW) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * DAY), ("12h", 43200), ("1d12h", 1.5 * DAY), ("90m", 5400), ("45", 45), (7, 7)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30 days", "1w", "-5", "h", True])
def test_bad_durations_are_refused(text: str | bool) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_print_in_their_largest_whole_unit() -> None:
    assert [format_duration(s) for s in (90 * DAY, 7200, 5400, 45)] == ["90d", "2h", "90m", "45s"]


def test_the_defaults_are_generous_and_said_plainly() -> None:
    policy = Retention()
    assert (policy.keep_last, policy.max_age_seconds) == (100, 90 * DAY)
    assert "newest 100 finished runs" in policy.describe()
    assert "over 90d ago" in policy.describe()


def test_a_report_counts_every_run_and_shows_the_first_few_hundred() -> None:
    report = PruneReport(
        dry_run=True, run_ids=tuple(f"r{i}" for i in range(600)), log_bytes=5, output_bytes=7
    )
    doc = report.to_api()
    assert (doc["runs"], len(doc["runIds"]), doc["freedBytes"]) == (600, 500, 12)


def test_the_configuration_reads_retention(tmp_path: Path) -> None:
    configured = tmp_path / "jobd.toml"
    configured.write_text('[retention]\nkeep_last = 5\nmax_age = "2d"\ninterval = "10s"\n')
    policy = load(config_file=configured, overrides={}).retention
    assert policy == Retention(keep_last=5, max_age_seconds=2 * DAY, interval_seconds=10)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("keep_last = -1", "retention.keep_last"),
        ('keep_last = "5"', "retention.keep_last"),
        ('max_age = "soon"', "retention.max_age: 'soon' is not a duration"),
        ('interval = "0"', "retention.interval: at least 1s"),
        ("keep = 3", r"unknown keys in \[retention\]: keep"),
    ],
)
def test_bad_retention_settings_are_refused_saying_which(
    tmp_path: Path, table: str, message: str
) -> None:
    configured = tmp_path / "jobd.toml"
    configured.write_text(f"[retention]\n{table}\n")
    with pytest.raises(InvalidRequest, match=message):
        load(config_file=configured, overrides={})
