"""How the users of one machine share it: projects (whose members see and act on each
other's jobs and recipes), quotas (how much one user or one project may run, queue, hold and
use), and fair share (among equal priorities, whoever used the machine less goes first)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobd.domain.resources import Allocation
from jobd.domain.runs import Run

QUOTA_KEYS = ("max_running", "max_queued", "max_gpus", "gpu_hours_per_day")
DAY_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """What one user (or one project's jobs together) may have at once; None: no limit."""

    max_running: int | None = None  # runs holding resources (assigned, starting, running)
    max_queued: int | None = None  # pending runs; a submission beyond it is refused (429)
    max_gpus: int | None = None  # GPUs held by running runs
    gpu_hours_per_day: float | None = None  # GPU-hours used in the last 24 hours

    @classmethod
    def from_table(cls, table: Any, where: str, base: Quota | None = None) -> Quota:
        """A quota as a config table reads; keys it leaves out are `base`'s."""
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table")
        unknown = set(table) - set(QUOTA_KEYS)
        if unknown:
            raise ValueError(f"unknown keys in {where}: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in table.items():
            number = value if key == "gpu_hours_per_day" else _whole(value)
            if not isinstance(number, int | float) or isinstance(number, bool) or number < 0:
                raise ValueError(f"{where}: {key} must be a number, 0 or more")
            values[key] = number
        return dataclasses.replace(base or cls(), **values)


def _whole(value: Any) -> Any:
    return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class FairShare:
    """Usage counted for fair share: CPU-seconds plus GPU-seconds times `gpu_weight` (as
    Slurm's TRES billing weights), halved every `half_life_hours` (PriorityDecayHalfLife)."""

    half_life_hours: float = 168.0
    gpu_weight: float = 8.0

    @classmethod
    def from_table(cls, table: Any) -> FairShare:
        if not isinstance(table, Mapping):
            raise ValueError("[fair_share] must be a table")
        unknown = set(table) - {"half_life_hours", "gpu_weight"}
        if unknown:
            raise ValueError(f"unknown keys in [fair_share]: {', '.join(sorted(unknown))}")
        share = cls(**{k: float(v) for k, v in table.items()})
        if share.half_life_hours <= 0 or share.gpu_weight < 0:
            raise ValueError("[fair_share]: half_life_hours above 0, gpu_weight 0 or more")
        return share

    def weight(self, cpus: float, gpus: float) -> float:
        """What one second of a run holding these counts (or, of seconds: what they count)."""
        return cpus + self.gpu_weight * gpus

    def decay(self, age_seconds: float) -> float:
        """What a second of use this long ago still counts for."""
        return math.pow(0.5, max(age_seconds, 0.0) / (self.half_life_hours * 3600))

    @property
    def horizon_seconds(self) -> float:
        """How far back use is read: four half-lives (it counts for a sixteenth by then)."""
        return 4 * self.half_life_hours * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Sharing:
    """Projects, quotas and fair share, as configured."""

    projects: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> members
    default_quota: Quota = Quota()
    user_quotas: Mapping[str, Quota] = field(default_factory=dict)
    project_quotas: Mapping[str, Quota] = field(default_factory=dict)
    fair_share: FairShare = FairShare()

    @classmethod
    def from_tables(cls, projects: Any, quotas: Any, fair_share: Any) -> Sharing:
        """Of the config's [projects.NAME], [quotas.*] and [fair_share] tables."""
        members: dict[str, frozenset[str]] = {}
        for name, table in _table(projects, "[projects]").items():
            listed = _table(table, f"[projects.{name}]")
            if set(listed) - {"members"}:
                raise ValueError(f"[projects.{name}]: only members")
            users = listed.get("members", [])
            if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
                raise ValueError(f"[projects.{name}]: members must be a list of user names")
            members[name] = frozenset(users)
        quotas = _table(quotas, "[quotas]")
        if set(quotas) - {"default", "users", "projects"}:
            raise ValueError(
                "[quotas]: only [quotas.default], [quotas.users.NAME], [quotas.projects.NAME]"
            )
        default = Quota.from_table(quotas.get("default", {}), "[quotas.default]")
        users = {
            name: Quota.from_table(t, f"[quotas.users.{name}]", default)
            for name, t in _table(quotas.get("users", {}), "[quotas.users]").items()
        }
        by_project = {
            name: Quota.from_table(t, f"[quotas.projects.{name}]")
            for name, t in _table(quotas.get("projects", {}), "[quotas.projects]").items()
        }
        unknown = sorted(set(by_project) - set(members))
        if unknown:
            raise ValueError(f"[quotas.projects]: no such project: {', '.join(unknown)}")
        share = FairShare.from_table(fair_share) if fair_share is not None else FairShare()
        return cls(
            projects=members,
            default_quota=default,
            user_quotas=users,
            project_quotas=by_project,
            fair_share=share,
        )

    def projects_of(self, user: str) -> frozenset[str]:
        return frozenset(name for name, members in self.projects.items() if user in members)

    def user_quota(self, user: str) -> Quota:
        return self.user_quotas.get(user, self.default_quota)

    def project_quota(self, project: str | None) -> Quota:
        return self.project_quotas.get(project, Quota()) if project else Quota()


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a table")
    return value


@dataclass(slots=True)
class Use:
    """What one user or project holds and has used, as a placement pass reckons it."""

    running: int = 0
    gpus: int = 0
    gpu_seconds: float = 0.0  # in the last 24 hours


Key = tuple[str, Any]  # ("user", uid) or ("project", name)


class QuotaBook:
    """The quotas as a placement pass applies them: what each user and project holds (the
    active runs, and the runs the pass starts as it goes), and why a queued run must wait
    for a quota, if it must. A run waiting for one holds nothing back for later runs: it
    does not fit the queue's reservation, it is simply not started yet."""

    def __init__(
        self,
        sharing: Sharing,
        name: Callable[[int | None], str],
        active: Iterable[Run],
        gpu_seconds: Mapping[Key, float],
    ) -> None:
        self.sharing = sharing
        self.name = name  # a uid's user name
        self.use: dict[Key, Use] = {}
        self._quotas: dict[int | None, tuple[str, Quota]] = {}  # by uid: whose, and the quota
        for key, seconds in gpu_seconds.items():
            self._use(key).gpu_seconds = seconds
        for run in active:
            if run.status.holds_resources:
                self.take(run, run.allocation or Allocation())

    def _use(self, key: Key) -> Use:
        found = self.use.get(key)
        if found is None:
            found = self.use[key] = Use()
        return found

    def take(self, run: Run, allocation: Allocation) -> None:
        for key in _keys(run):
            use = self._use(key)
            use.running += 1
            use.gpus += len(allocation.gpus)

    def _quota(self, uid: int | None) -> tuple[str, Quota]:
        found = self._quotas.get(uid)
        if found is None:
            name = self.name(uid)
            found = self._quotas[uid] = (f"{name}'s", self.sharing.user_quota(name))
        return found

    def user_full(self, uid: int | None) -> str | None:
        """Why none of this user's queued runs may start now (their max_running is
        reached), or None."""
        whose, quota = self._quota(uid)
        if quota.max_running is None:
            return None
        return _over(whose, quota, self.use.get(("user", uid)), gpus=0)

    def holds(self, run: Run) -> str | None:
        """Why this queued run must wait for a quota, or None."""
        gpus = run.plan.gpus
        whose, quota = self._quota(run.owner_uid)
        why = _over(whose, quota, self.use.get(("user", run.owner_uid)), gpus=gpus)
        if why is None and run.project:
            why = _over(
                f"project {run.project}'s",
                self.sharing.project_quota(run.project),
                self.use.get(("project", run.project)),
                gpus=gpus,
            )
        return why


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """What ended runs used, summed: one owner's (in one project), over one stretch."""

    owner_uid: int | None
    project: str | None
    at: float  # when (unix seconds): the middle of the hour they ended in
    cpu_seconds: float
    gpu_seconds: float


def fair_usage(
    share: FairShare, ended: Iterable[Ended], active: Iterable[Run], moment: datetime
) -> dict[int | None, float]:
    """Each user's use for fair share: what their ended runs used, decayed by age, and what
    their running runs have used so far."""
    usage: dict[int | None, float] = {}
    for use in ended:
        value = share.weight(use.cpu_seconds, use.gpu_seconds)
        decayed = value * share.decay(moment.timestamp() - use.at)
        usage[use.owner_uid] = usage.get(use.owner_uid, 0.0) + decayed
    for run in active:
        if run.started_at is not None:
            seconds = max((moment - run.started_at).total_seconds(), 0.0)
            gpus = len(run.allocation.gpus) if run.allocation else 0
            weight = share.weight(run.plan.cpus, gpus)
            usage[run.owner_uid] = usage.get(run.owner_uid, 0.0) + weight * seconds
    return usage


def day_gpu_seconds(
    ended: Iterable[Ended], active: Iterable[Run], moment: datetime
) -> dict[Key, float]:
    """GPU-seconds used in the last 24 hours, by user and by project: `ended` summed over
    that day already, and the running runs' since they started (within the day)."""
    used: dict[Key, float] = {}

    def add(run_owner: int | None, project: str | None, seconds: float) -> None:
        for key in _keys_of(run_owner, project):
            used[key] = used.get(key, 0.0) + seconds

    for use in ended:
        add(use.owner_uid, use.project, use.gpu_seconds)
    since = moment.timestamp() - DAY_SECONDS
    for run in active:
        if run.started_at is not None and run.allocation and run.allocation.gpus:
            seconds = moment.timestamp() - max(run.started_at.timestamp(), since)
            add(run.owner_uid, run.project, len(run.allocation.gpus) * max(seconds, 0.0))
    return used


def _keys(run: Run) -> list[Key]:
    return _keys_of(run.owner_uid, run.project)


def _keys_of(owner_uid: int | None, project: str | None) -> list[Key]:
    keys: list[Key] = [("user", owner_uid)]
    if project:
        keys.append(("project", project))
    return keys


def _over(whose: str, quota: Quota, use: Use | None, *, gpus: int) -> str | None:
    use = use or Use()
    said = f"waiting for {whose} quota:"
    if quota.max_running is not None and use.running >= quota.max_running:
        return f"{said} {use.running} of {quota.max_running} running (max_running)"
    if not gpus:
        return None
    if quota.max_gpus is not None and use.gpus + gpus > quota.max_gpus:
        return f"{said} {use.gpus} of {quota.max_gpus} GPUs held, {gpus} more asked (max_gpus)"
    limit = quota.gpu_hours_per_day
    if limit is not None and use.gpu_seconds >= limit * 3600:
        used = use.gpu_seconds / 3600
        return f"{said} {used:.1f} of {limit:g} GPU-hours in the last 24 h (gpu_hours_per_day)"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimit:
    """A max_queued quota that a new run counts against: the pending runs whose `column`
    (owner_uid or project) is `value`, at most `limit` of them."""

    whose: str  # "alice", "project vision"
    column: str
    value: Any
    limit: int

    def problem(self, queued: int) -> str | None:
        """Why one more queued run is refused, or None. `queued` is counted up to one past
        the limit (ticks and retries may pass it)."""
        if queued < self.limit:
            return None
        has = f"more than {self.limit}" if queued > self.limit else str(queued)
        return (
            f"quota: {self.whose} may have {self.limit} queued runs (max_queued) and has"
            f" {has}; submit again once some have started"
        )


def queue_limits(
    sharing: Sharing, user: str, uid: int | None, project: str | None
) -> list[QueueLimit]:
    """The max_queued quotas a new run of this owner's (in this project) counts against."""
    limits = []
    mine = sharing.user_quota(user).max_queued
    if mine is not None:
        limits.append(QueueLimit(whose=user, column="owner_uid", value=uid, limit=mine))
    theirs = sharing.project_quota(project).max_queued
    if theirs is not None:
        limits.append(
            QueueLimit(whose=f"project {project}", column="project", value=project, limit=theirs)
        )
    return limits
