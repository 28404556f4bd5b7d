"""Pruning finished runs now (`jobctl prune`): the caller's own jobs' runs, an admin's
everyone's, that [retention] does not keep. The supervisor prunes; the daemon hands this
service its `prune` as a callable."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from jobd.domain.owners import Caller, Reach
from jobd.domain.retention import PruneReport, Retention


class Prune(Protocol):
    def __call__(self, *, reach: Reach, dry_run: bool) -> Awaitable[PruneReport]: ...


class Pruning:
    def __init__(self, prune: Prune, retention: Retention) -> None:
        self._prune = prune
        self.retention = retention

    async def prune(self, caller: Caller, *, dry_run: bool) -> dict[str, Any]:
        """What was removed (or, dry, would be), with the settings it was weighed by. What
        a prune removes can't be brought back, so it reaches only what its caller owns
        (not their projects' jobs), or everyone's for an admin."""
        report = await self._prune(reach=caller.own_reach, dry_run=dry_run)
        return {**report.to_api(), "retention": self.retention.to_api()}
