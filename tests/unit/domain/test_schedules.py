"""Cron schedules: pure decisions (when a tick fires, what a missed one becomes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobd.domain.schedules import CatchUp, Schedule

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "* * * *"}, "schedule"),
        ({"schedule": "0 0 * * * *"}, "schedule"),
        ({"schedule": "every day"}, "schedule"),
        ({"schedule": "@reboot"}, "schedule"),
        ({"schedule": "@fortnightly"}, "schedule"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"schedule": "0 3 * * *", "timezone": "../etc/passwd"}, "timezone"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field(fields: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}: "):
        Schedule.from_api(fields)


def test_ticks_are_read_in_the_schedules_time_zone_across_daylight_saving() -> None:
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29 02:30 does not exist in Berlin: cron runs it at 03:00 (01:00 UTC)
    first = schedule.next_after(datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    second = schedule.next_after(first)
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_the_next_tick_is_strictly_after_and_the_latest_is_at_or_before() -> None:
    schedule = Schedule(cron="*/5 * * * *")
    assert schedule.next_after(T0) == T0 + timedelta(minutes=5)
    assert schedule.latest_at_or_before(T0) == T0
    assert schedule.latest_at_or_before(T0 + timedelta(minutes=4, seconds=59)) == T0


def test_a_tick_within_the_grace_fires_whatever_catch_up_says() -> None:
    schedule = Schedule(cron="0 * * * *")
    assert schedule.tick_to_fire(T0, T0 + timedelta(seconds=50)) == T0


def test_missed_ticks_are_skipped_or_run_once_never_one_run_each() -> None:
    three_hours_later = T0 + timedelta(hours=3, minutes=10)
    skip = Schedule(cron="0 * * * *")
    assert skip.tick_to_fire(T0, three_hours_later) is None
    once = Schedule(cron="0 * * * *", catch_up=CatchUp.ONCE)
    assert once.tick_to_fire(T0, three_hours_later) == T0 + timedelta(hours=3)


def test_with_skip_a_downtime_over_several_ticks_still_fires_the_one_on_time() -> None:
    schedule = Schedule(cron="* * * * *")
    assert schedule.tick_to_fire(T0, T0 + timedelta(minutes=10, seconds=5)) == T0 + timedelta(
        minutes=10
    )


# 2026-06-01 12:00 UTC is a Monday
@pytest.mark.parametrize(
    ("shorthand", "next_tick"),
    [
        ("@hourly", datetime(2026, 6, 1, 13, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 6, 2, 0, 0, tzinfo=UTC)),
        ("@midnight", datetime(2026, 6, 2, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2026, 6, 7, 0, 0, tzinfo=UTC)),  # Sunday, as cron's 0 0 * * 0
        ("@monthly", datetime(2026, 7, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("@annually", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_cron_shorthands_tick_as_the_fields_they_stand_for(
    shorthand: str, next_tick: datetime
) -> None:
    schedule = Schedule.from_api({"schedule": shorthand})
    assert schedule.next_after(T0) == next_tick
    assert schedule.to_api()["schedule"] == shorthand  # shown as given


def test_a_shorthand_is_read_in_the_schedules_time_zone() -> None:
    schedule = Schedule.from_api({"schedule": "@daily", "timezone": "Europe/Berlin"})
    assert schedule.next_after(T0) == datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 00:00 CEST
    assert schedule.latest_at_or_before(T0) == datetime(2026, 5, 31, 22, 0, tzinfo=UTC)
