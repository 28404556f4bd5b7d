"""Metric points: kept as sampled and folded into minutes in one write, read back a point a
step, pruned by age a batch at a time, and gone with their job."""

from __future__ import annotations

from datetime import timedelta

from jobd.domain.metrics import MINUTE, MetricsQuery, RunUsage, Sample
from jobd.domain.owners import EVERYONE
from jobd.domain.records import now
from jobd.store import Store
from tests.unit.store.test_store import make_job

T0 = 1_800_000_000.0  # a whole minute


def query(step: int, names: tuple[str, ...] = ("cpu_usage", "gpu_memory_usage")) -> MetricsQuery:
    return MetricsQuery(names=names, start=T0, end=T0 + 600, step=step)


async def test_samples_are_kept_as_taken_and_as_minutes(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    samples = [Sample(run.id, "cpu_usage", "", T0 + 5 * i, float(i)) for i in range(24)]
    samples += [Sample(run.id, "gpu_memory_usage", "1", T0, 7.0)]
    usage = RunUsage(cpu_seconds=12.0, peak_cpu=23.0, peak_memory_bytes=5, samples=24, seconds=9)
    await store.record_metrics(samples[:10], {run.id: usage})
    await store.record_metrics(samples[10:], {run.id: usage})

    raw = await store.metric_series([run.id], query(10), resolution=0)
    cpu = raw["cpu_usage"][0]
    assert cpu.timestamps[:2] == [T0, T0 + 10] and cpu.values[:2] == [0.5, 2.5]
    assert cpu.maxima[:2] == [1.0, 3.0]
    assert raw["gpu_memory_usage"][0].labels == {"gpu": "1"}

    minutes = (await store.metric_series([run.id], query(MINUTE), resolution=MINUTE))["cpu_usage"]
    assert minutes[0].timestamps == [T0, T0 + 60]
    assert minutes[0].values == [5.5, 17.5], "the minute's average, across both writes"
    assert minutes[0].maxima == [11.0, 23.0]
    assert (await store.get_run(run.id, reach=EVERYONE)).usage == usage


async def test_points_are_pruned_by_age_and_go_with_their_job(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    old, recent = now().timestamp() - 3 * 86400, now().timestamp() - 60
    await store.record_metrics(
        [Sample(run.id, "cpu_usage", "", at, 1.0) for at in (old, recent)], {}
    )
    gone = await store.prune_metrics(now() - timedelta(days=1), now() - timedelta(days=2))
    assert gone == 2, "the old sample and its minute"
    window = MetricsQuery(names=("cpu_usage",), start=old - 60, end=recent + 60, step=1)
    left = await store.metric_series([run.id], window, resolution=0)
    assert left["cpu_usage"][0].timestamps == [float(int(recent))], "a point a second"

    await store.delete_job(job.id)
    await store.purge_job(job.id)
    assert await store.metric_series([run.id], window, resolution=MINUTE) == {}
