"""Which runs a listing across jobs wants (GET /v1/runs, `jobctl runs` without a job): the
runs of every job within reach, newest first, narrowed by these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jobd.domain.jobs import Kind
from jobd.domain.owners import EVERYONE, Reach
from jobd.domain.states import RunStatus, Trigger


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    """All of these must hold (an empty or None one holds for every run)."""

    statuses: frozenset[RunStatus] = frozenset()  # any of these
    labels: Mapping[str, str] = field(default_factory=dict)  # its job's labels, each of them
    kind: Kind | None = None  # what the run executes is of this kind
    trigger: Trigger | None = None
    created_after: datetime | None = None  # at or after
    created_before: datetime | None = None
    reach: Reach = EVERYONE  # whose runs: their jobs' owners' and projects'
    project: str | None = None  # only the runs of this project's jobs
