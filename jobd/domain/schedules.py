"""A job's cron schedule, read in its time zone, and what its last tick did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobd.domain.records import Row, rfc3339

# a tick is on time when it fires within this of its moment (Quartz's misfire threshold): a
# daemon restart across a tick still fires it; a tick missed for longer is caught up or not
MISFIRE_GRACE = timedelta(seconds=60)

# cron's shorthands (Vixie cron, systemd's OnCalendar names), as the 5-field expressions they
# stand for: cronsim reads only fields. A schedule keeps the shorthand as given.
SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ConcurrencyPolicy(StrEnum):
    ALLOW = "allow"  # a tick starts a run even while others of the job are in flight
    FORBID = "forbid"  # a tick is skipped while a run of the job is in flight
    REPLACE = "replace"  # a tick cancels the runs in flight and starts a new one


class CatchUp(StrEnum):
    SKIP = "skip"  # ticks missed while jobd was down (or asleep) do not run
    ONCE = "once"  # one run stands for all the ticks missed


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A job's cron schedule: a standard 5-field expression, or one of cron's shorthands
    (@daily ...), read in `timezone`."""

    cron: str
    timezone: str = "UTC"
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    catch_up: CatchUp = CatchUp.SKIP
    suspended: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Schedule:
        """From a request: what cron or zoneinfo cannot read is a ValueError naming the
        field. Rows read back from the store were checked when they were written."""
        schedule = cls(
            cron=data["schedule"],
            timezone=data.get("timezone", "UTC"),
            concurrency_policy=ConcurrencyPolicy(data.get("concurrencyPolicy", "forbid")),
            catch_up=CatchUp(data.get("catchUp", "skip")),
            suspended=bool(data.get("suspend", False)),
        )
        schedule._check()
        return schedule

    @property
    def fields(self) -> str:
        """The 5-field expression: the schedule's own, or the one its shorthand stands for."""
        return SHORTHANDS.get(self.cron.strip().lower(), self.cron)

    def _check(self) -> None:
        if self.cron.lstrip().startswith("@") and self.fields == self.cron:
            shorthands = ", ".join(SHORTHANDS)
            raise ValueError(f"schedule: {self.cron!r} is not a cron shorthand ({shorthands})")
        if len(self.fields.split()) != 5:
            raise ValueError(f"schedule: {self.cron!r} is not a 5-field cron expression")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        try:
            CronSim(self.fields, datetime.now(zone))
        except CronSimError as e:
            raise ValueError(f"schedule: {self.cron!r} is not a valid cron expression: {e}") from e

    def to_api(self) -> dict[str, Any]:
        return {
            "schedule": self.cron,
            "timezone": self.timezone,
            "concurrencyPolicy": self.concurrency_policy.value,
            "catchUp": self.catch_up.value,
            "suspend": self.suspended,
        }

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.fields, local)).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`, in UTC (ticks fall on whole minutes)."""
        local = moment.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        ticks = CronSim(self.fields, local + timedelta(minutes=1), reverse=True)
        return next(ticks).astimezone(UTC)

    def tick_to_fire(self, due_at: datetime, moment: datetime) -> datetime | None:
        """At `moment`, with ticks due since `due_at`: the tick a run stands for, or None when
        every due tick was missed and catch-up skips them. Never more than one run, however
        long jobd was away."""
        latest = max(due_at, self.latest_at_or_before(moment))
        if moment - latest <= MISFIRE_GRACE or self.catch_up is CatchUp.ONCE:
            return latest
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """What the job's schedule did last: the tick's time, the run it started (None when it
    was skipped) and why."""

    at: datetime
    run_id: str | None
    note: str

    def to_api(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "runId": self.run_id, "note": self.note}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Tick:
        return cls(at=datetime.fromisoformat(data["at"]), run_id=data["runId"], note=data["note"])


def schedule_from_row(row: Row) -> Schedule | None:
    """A job row's schedule, or None: the job runs on demand."""
    if not row["schedule"]:
        return None
    return Schedule(
        cron=row["schedule"],
        timezone=row["timezone"],
        concurrency_policy=ConcurrencyPolicy(row["concurrency_policy"]),
        catch_up=CatchUp(row["catch_up"]),
        suspended=bool(row["suspended"]),
    )
