"""How long finished runs are kept ([retention]): per job, the newest `keep_last` finished runs
(as Kubernetes' history limits, one number for every outcome), and none finished longer ago
than `max_age`; which of a job's finished runs go; and what a prune removed.

A job's latest run is never pruned (its status is the job's), nor a run that is queued or
active, nor one that finished a moment ago (its log and outputs may still be being sealed)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DAY = 86400
UNIT_SECONDS = {"d": DAY, "h": 3600, "m": 60, "s": 1}
# Units largest first, each at most once: 30d, 1d12h, 90m, 45s (as jobctl's durations).
DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
SETTLE_SECONDS = 5.0  # a run finished this recently is left alone: it may still be sealing
DEFAULT_KEEP_LAST = 100
DEFAULT_MAX_AGE_SECONDS = 90 * DAY
DEFAULT_INTERVAL_SECONDS = 60.0
SHOWN_RUN_IDS = 500  # a prune's answer lists at most this many of the runs it removed


def parse_duration(text: str | int | float) -> float:
    """`30d`, `12h`, `1d12h`, `90m`, `45s`, or a number of seconds -> seconds (0: off)."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration (examples: 30d, 12h, 1d12h, 90m, 45s)")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower()
        match = DURATION.fullmatch(raw)
        if raw.isascii() and raw.isdigit():
            seconds = float(raw)
        elif not raw or match is None:
            raise ValueError(f"{text!r} is not a duration (examples: 30d, 12h, 1d12h, 90m, 45s)")
        else:
            units = zip(match.groups(), UNIT_SECONDS.values(), strict=True)
            seconds = float(sum(int(n) * unit for n, unit in units if n is not None))
    if seconds < 0:
        raise ValueError(f"{text!r}: a duration can't be negative")
    return seconds


def _duration(table: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return parse_duration(table.get(key, default))
    except ValueError as e:
        raise ValueError(f"retention.{key}: {e}") from e


def format_duration(seconds: float) -> str:
    """The shortest of `30d`, `12h`, `90m`, `45s` that says it exactly."""
    whole = int(seconds)
    for unit, size in UNIT_SECONDS.items():
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """What is kept of finished runs; 0 turns a limit off."""

    keep_last: int = DEFAULT_KEEP_LAST  # finished runs kept per job, newest first
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS  # since a run finished
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS  # how often the daemon prunes

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Retention:
        """[retention] as the configuration file has it: keep_last (0: no limit), max_age
        and interval as durations ("30d"; max_age 0: no limit)."""
        keep_last = table.get("keep_last", DEFAULT_KEEP_LAST)
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError("retention.keep_last: a whole number of runs, 0 for no limit")
        max_age = _duration(table, "max_age", DEFAULT_MAX_AGE_SECONDS)
        interval = _duration(table, "interval", DEFAULT_INTERVAL_SECONDS)
        if interval < 1:
            raise ValueError("retention.interval: at least 1s")
        return cls(keep_last=keep_last, max_age_seconds=max_age, interval_seconds=interval)

    @property
    def active(self) -> bool:
        """Whether anything is ever pruned."""
        return self.keep_last > 0 or self.max_age_seconds > 0

    def describe(self) -> str:
        """What doctor says of it."""
        if not self.active:
            return "finished runs are kept forever ([retention] keep_last and max_age are 0)"
        parts = []
        if self.keep_last:
            parts.append(f"the newest {self.keep_last} finished runs of each job")
        if self.max_age_seconds:
            parts.append(f"none finished over {format_duration(self.max_age_seconds)} ago")
        return "kept: " + ", and ".join(parts) + "; a job's latest run always"

    def to_api(self) -> dict[str, Any]:
        return {
            "keepLast": self.keep_last,
            "maxAgeSeconds": self.max_age_seconds,
            "intervalSeconds": self.interval_seconds,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedRun:
    """A finished run as pruning weighs it."""

    run_id: str
    created_at: float
    finished_at: float


def prunable(
    finished: Sequence[FinishedRun], *, latest: str | None, policy: Retention, moment: float
) -> list[str]:
    """Which of one job's finished runs go, oldest first: those past the newest `keep_last`,
    and those finished more than `max_age` ago; never `latest`, never one that has just
    finished."""
    if not policy.active:
        return []
    newest_first = sorted(finished, key=lambda r: (r.created_at, r.run_id), reverse=True)
    doomed = []
    for position, run in enumerate(newest_first):
        if run.run_id == latest or moment - run.finished_at < SETTLE_SECONDS:
            continue
        too_many = policy.keep_last > 0 and position >= policy.keep_last
        too_old = policy.max_age_seconds > 0 and moment - run.finished_at > policy.max_age_seconds
        if too_many or too_old:
            doomed.append(run.run_id)
    return doomed[::-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    """What a prune removed (or, dry, would remove): runs with their records, logs, outputs
    and metric points."""

    dry_run: bool
    run_ids: tuple[str, ...] = ()
    log_bytes: int = 0
    output_bytes: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "runs": len(self.run_ids),
            "runIds": list(self.run_ids[:SHOWN_RUN_IDS]),
            "logBytes": self.log_bytes,
            "outputBytes": self.output_bytes,
            "freedBytes": self.log_bytes + self.output_bytes,
        }
