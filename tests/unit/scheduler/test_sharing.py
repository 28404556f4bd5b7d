"""Projects, quotas and fair share as pure rules: the config tables read (and refused when
wrong), a quota's reasons, use decayed by age, and a placement pass over several owners'
queues: fair share orders equal priorities, a user at max_running is passed over unread, and
a run held by a quota reserves nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from jobd.domain.capacity import free_on
from jobd.domain.resources import Allocation, GpuGrant
from jobd.domain.runs import Run
from jobd.domain.sharing import (
    Ended,
    FairShare,
    Quota,
    QuotaBook,
    Sharing,
    day_gpu_seconds,
    fair_usage,
    queue_limits,
)
from jobd.scheduler.placement import place
from jobd.scheduler.sharing import merged
from tests.unit.scheduler.test_placement import MOMENT, gpu, node, plan, queued, running

NAMES = {1001: "alice", 1002: "bob", 1003: "carol"}
ALICE, BOB, CAROL = 1001, 1002, 1003


def name(uid: int | None) -> str:
    return NAMES.get(uid or 0, "nobody")


def of(uid: int, run: Run, project: str | None = None) -> Run:
    return replace(run, owner_uid=uid, project=project)


SHARING = Sharing.from_tables(
    {"vision": {"members": ["alice", "bob"]}},
    {
        "default": {"max_running": 2, "max_queued": 100},
        "users": {"bob": {"max_running": 1}},
        "projects": {"vision": {"max_gpus": 1, "gpu_hours_per_day": 2}},
    },
    {"half_life_hours": 24, "gpu_weight": 10},
)


def test_the_config_tables_read_with_user_quotas_over_the_default() -> None:
    assert SHARING.projects_of("alice") == {"vision"} and SHARING.projects_of("carol") == set()
    assert SHARING.user_quota("bob") == Quota(max_running=1, max_queued=100)
    assert SHARING.user_quota("carol") == Quota(max_running=2, max_queued=100)
    assert SHARING.project_quota("vision").max_gpus == 1
    assert SHARING.project_quota(None) == Quota()
    assert SHARING.fair_share == FairShare(half_life_hours=24, gpu_weight=10)


@pytest.mark.parametrize(
    ("projects", "quotas", "share", "error"),
    [
        ({"x": {"members": "alice"}}, {}, None, "members must be a list"),
        ({"x": {"owners": []}}, {}, None, "only members"),
        ({}, {"default": {"max_runing": 1}}, None, "unknown keys in [quotas.default]"),
        ({}, {"default": {"max_running": -1}}, None, "max_running must be a number"),
        ({}, {"default": {"max_running": 1.5}}, None, "max_running must be a number"),
        ({}, {"projects": {"ghost": {"max_running": 1}}}, None, "no such project: ghost"),
        ({}, {"groups": {}}, None, "only [quotas.default]"),
        ({}, {}, {"half_life_hours": 0}, "half_life_hours above 0"),
    ],
)
def test_a_wrong_table_is_refused_saying_where(
    projects: object, quotas: object, share: object, error: str
) -> None:
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        Sharing.from_tables(projects, quotas, share)


def test_queue_limits_name_the_owner_and_the_project() -> None:
    limits = queue_limits(
        replace(SHARING, project_quotas={"vision": Quota(max_queued=3)}), "alice", ALICE, "vision"
    )
    assert [(q.whose, q.column, q.value, q.limit) for q in limits] == [
        ("alice", "owner_uid", ALICE, 100),
        ("project vision", "project", "vision", 3),
    ]
    assert limits[1].problem(2) is None
    assert limits[1].problem(3) == (
        "quota: project vision may have 3 queued runs (max_queued) and has 3;"
        " submit again once some have started"
    )
    assert "and has more than 3;" in (limits[1].problem(4) or ""), "counted up to one past"
    assert queue_limits(Sharing(), "alice", ALICE, None) == []


def test_a_quota_says_whose_it_is_and_how_full() -> None:
    one_gpu = plan(gpus=1)
    grant = Allocation(gpus=(GpuGrant(uuid="GPU-1", index="1", name="L4"),))
    holding = of(ALICE, running(one_gpu, ends_in=3600, allocation=grant), "vision")
    book = QuotaBook(SHARING, name, [holding, of(BOB, running(plan(), ends_in=60))], {})
    assert book.user_full(BOB) == "waiting for bob's quota: 1 of 1 running (max_running)"
    assert book.user_full(ALICE) is None
    wants_gpu = of(ALICE, queued(one_gpu), "vision")
    assert book.holds(wants_gpu) == (
        "waiting for project vision's quota: 1 of 1 GPUs held, 1 more asked (max_gpus)"
    )
    assert book.holds(of(ALICE, queued(plan()), "vision")) is None, "no GPU: not held by GPUs"
    used = {("project", "vision"): 2.5 * 3600}
    book = QuotaBook(SHARING, name, [], used)
    assert book.holds(wants_gpu) == (
        "waiting for project vision's quota: 2.5 of 2 GPU-hours in the last 24 h"
        " (gpu_hours_per_day)"
    )


def test_use_decays_by_half_each_half_life_and_running_runs_count_as_they_go() -> None:
    share = FairShare(half_life_hours=24, gpu_weight=10)
    day_ago = MOMENT.timestamp() - 24 * 3600
    ended = [
        Ended(owner_uid=ALICE, project=None, at=day_ago, cpu_seconds=1000, gpu_seconds=0),
        Ended(owner_uid=BOB, project=None, at=MOMENT.timestamp(), cpu_seconds=0, gpu_seconds=50),
    ]
    started = replace(running(plan(cpus=2), ends_in=60), started_at=MOMENT - timedelta(seconds=30))
    usage = fair_usage(share, ended, [of(CAROL, started)], MOMENT)
    assert usage == {ALICE: pytest.approx(500), BOB: pytest.approx(500), CAROL: pytest.approx(60)}


def test_a_days_gpu_seconds_count_running_runs_from_their_start_within_the_day() -> None:
    grant = Allocation(gpus=(GpuGrant(uuid="GPU-1", index="1", name="L4"),) * 2)
    long_ago = MOMENT - timedelta(hours=30)
    gpu_run = replace(
        of(ALICE, running(plan(gpus=2), ends_in=60, allocation=grant), "vision"),
        started_at=long_ago,
    )
    ended = [Ended(owner_uid=ALICE, project=None, at=0, cpu_seconds=0, gpu_seconds=100)]
    used = day_gpu_seconds(ended, [gpu_run], MOMENT)
    assert used == {("user", ALICE): 100 + 2 * 24 * 3600, ("project", "vision"): 2 * 24 * 3600}


class Listed:
    """An owner's queue from a list, in queue order; what was looked at is noted."""

    def __init__(self, runs: list[Run], seen: list[str] | None = None) -> None:
        self.runs = sorted(runs, key=lambda r: (-r.priority, r.created_at))
        self.seen = seen if seen is not None else []

    def next_key(self) -> tuple[int, float, str] | None:
        if not self.runs:
            return None
        run = self.runs[0]
        self.seen.append(run.id)
        return run.priority, run.created_at.timestamp(), run.id

    def take(self) -> Run:
        return self.runs.pop(0)


def streams(*runs: Run) -> dict[int | None, Listed]:
    by_owner: dict[int | None, list[Run]] = {}
    for run in runs:
        by_owner.setdefault(run.owner_uid, []).append(run)
    return {uid: Listed(rs) for uid, rs in by_owner.items()}


def test_equal_priorities_go_to_whoever_used_less_and_priority_still_comes_first() -> None:
    sweep = [of(ALICE, queued(plan())) for _ in range(3)]
    late = of(BOB, queued(plan()))
    urgent = of(ALICE, queued(plan(), priority=5))
    book = QuotaBook(Sharing(), name, [], {})
    order = merged(streams(*sweep, late, urgent), {ALICE: 100.0, BOB: 5.0}, book, {})
    assert [r.id for r in order] == [urgent.id, late.id, *(r.id for r in sweep)]


def test_a_user_at_max_running_is_passed_over_unread_while_others_start() -> None:
    sharing = Sharing(default_quota=Quota(max_running=1))
    bobs = [of(BOB, queued(plan())) for _ in range(3)]
    alices = of(ALICE, queued(plan()))
    active = [of(BOB, running(plan(), ends_in=60))]
    read: list[str] = []
    queues = {BOB: Listed(bobs, read), ALICE: Listed([alices], read)}
    book = QuotaBook(sharing, name, active, {})
    held: dict[int | None, str] = {}
    the_node = node(cpus=16)
    decision = place(
        merged(queues, {}, book, held), active, free_on(the_node, active), MOMENT, quotas=book
    )
    assert [r.id for r, _ in decision.start] == [alices.id]
    assert read == [alices.id], "bob's queue was not read at all"
    assert held == {
        BOB: "waiting for bob's quota: 1 of 1 running (max_running)",
        ALICE: "waiting for alice's quota: 1 of 1 running (max_running)",  # once hers started
    }


def test_a_user_reaching_max_running_in_the_pass_stops_there_and_holds_nothing_back() -> None:
    sharing = Sharing(default_quota=Quota(max_running=2))
    alices = [of(ALICE, queued(plan())) for _ in range(4)]
    book = QuotaBook(sharing, name, [], {})
    held: dict[int | None, str] = {}
    decision = place(
        merged({ALICE: Listed(alices)}, {}, book, held),
        [],
        free_on(node(cpus=16), []),
        MOMENT,
        quotas=book,
    )
    assert [r.id for r, _ in decision.start] == [alices[0].id, alices[1].id]
    assert held == {ALICE: "waiting for alice's quota: 2 of 2 running (max_running)"}


def test_a_run_held_by_a_gpu_quota_reserves_nothing_for_itself() -> None:
    sharing = Sharing(default_quota=Quota(max_gpus=0))
    wants_gpu = of(ALICE, queued(plan(gpus=1)))
    cpu_run = of(ALICE, queued(plan(cpus=16)))
    book = QuotaBook(sharing, name, [], {})
    the_node = node(gpu(0), cpus=16)
    decision = place(iter([wants_gpu, cpu_run]), [], free_on(the_node, []), MOMENT, quotas=book)
    assert [r.id for r, _ in decision.start] == [cpu_run.id], "the held head blocks nobody"
    assert decision.waiting[wants_gpu.id].startswith("waiting for alice's quota: 0 of 0 GPUs")
