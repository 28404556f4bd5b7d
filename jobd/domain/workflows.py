"""Workflows: a run that waits on other runs (`after`, Slurm's --dependency and pueue's
--after), and a job that is an array of runs, one per index, at most `parallelism` running at
once (Slurm's --array 0-99%4). Pure rules: what a request says, whether a dependency is met,
can never be met, or must wait, and why a held run waits."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobd.domain.states import RunStatus

MAX_ARRAY_SIZE = 10_000
MAX_DEPENDENCIES = 100


class Condition(StrEnum):
    OK = "ok"  # every run waited for succeeded (Slurm's afterok)
    ANY = "any"  # every run waited for ended, however (afterany)
    NOTOK = "notok"  # every run waited for ended, and one or more did not succeed (afternotok)


class Verdict(StrEnum):
    WAIT = "wait"
    MET = "met"
    NEVER = "never"


class Held(StrEnum):
    """Why a pending run may not be placed yet (a column: NULL when it may)."""

    AFTER = "after"  # its dependencies are not all met
    ARRAY = "array"  # its array has `parallelism` runs in flight already


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """A run waits on `on` (a run id; for an array, its first run's id: the array's id) to
    end as `condition` says. `what` is how the request named it, for the reason shown."""

    on: str
    condition: Condition
    array: bool = False  # `on` is an array: the condition holds over all its runs

    def to_api(self) -> dict[str, Any]:
        return {"id": self.on, "condition": self.condition.value, "array": self.array}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Dependency:
        return cls(
            on=data["id"], condition=Condition(data["condition"]), array=bool(data.get("array"))
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """How what a dependency waits on stands: whether it has ended (an array: all of its
    runs, retries included), and whether any of it did not succeed (a retried attempt does
    not count: its retry does)."""

    done: bool
    bad: bool


def verdict(condition: Condition, ended: Ended) -> Verdict:
    """Whether a dependency is met now, can never be met, or must wait. `ok` fails as soon
    as anything waited for did not succeed; `notok` waits for the end of everything."""
    if condition is Condition.OK:
        if ended.bad:
            return Verdict.NEVER
        return Verdict.MET if ended.done else Verdict.WAIT
    if not ended.done:
        return Verdict.WAIT
    if condition is Condition.NOTOK and not ended.bad:
        return Verdict.NEVER
    return Verdict.MET


# An array as one status, by the first of these its runs (each index's latest attempt) show:
# running while any is in flight, then pending while any waits, then failed, then cancelled;
# else it succeeded.
ARRAY_STATUS_ORDER: tuple[tuple[RunStatus, tuple[RunStatus, ...]], ...] = (
    (RunStatus.RUNNING, (RunStatus.ASSIGNED, RunStatus.RUNNING, RunStatus.CANCELLING)),
    (RunStatus.PENDING, (RunStatus.PENDING,)),
    (RunStatus.FAILED, (RunStatus.FAILED,)),
    (RunStatus.CANCELLED, (RunStatus.CANCELLED,)),
)


def array_status(counts: Mapping[str, int]) -> RunStatus:
    """The array's status from how many of its runs are in each status."""
    for status, shown_by in ARRAY_STATUS_ORDER:
        if any(counts.get(s.value, 0) for s in shown_by):
            return status
    return RunStatus.SUCCEEDED


def waiting_reason(dependencies: Sequence[Dependency]) -> str:
    """Why a run waits on these dependencies: what each still waits for."""
    parts = [_wants(d) for d in dependencies[:5]]
    more = f" and {len(dependencies) - 5} more" if len(dependencies) > 5 else ""
    return "waiting for " + "; ".join(parts) + more


def never_reason(dependency: Dependency) -> str:
    what = f"array {dependency.on}" if dependency.array else f"run {dependency.on}"
    if dependency.condition is Condition.OK:
        fact = "has a run that did not succeed" if dependency.array else "did not succeed"
        return f"dependency failed: {what} {fact} (after {dependency.condition.value})"
    fact = "all succeeded" if dependency.array else "succeeded"
    return f"dependency failed: {what} {fact} (after {dependency.condition.value})"


def _wants(dependency: Dependency) -> str:
    what = f"every run of array {dependency.on}" if dependency.array else f"run {dependency.on}"
    if dependency.condition is Condition.OK:
        return f"{what} to succeed"
    if dependency.condition is Condition.ANY:
        return f"{what} to end"
    return f"{what} to end, and not all succeeded" if dependency.array else f"{what} to fail"


def dependencies_problem(after: Sequence[Mapping[str, Any]]) -> str | None:
    if len(after) > MAX_DEPENDENCIES:
        return f"after: at most {MAX_DEPENDENCIES} dependencies"
    ids = [d["id"] for d in after]
    if len(set(ids)) != len(ids):
        return "after: each run or job once"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArraySpec:
    """One run per index, at most `parallelism` of them in flight at once (None: no bound
    but the node's room). `indices` is kept as written, for the job's record."""

    indices: str
    parallelism: int | None = None

    @property
    def values(self) -> tuple[int, ...]:
        return parse_indices(self.indices)

    @property
    def size(self) -> int:
        return len(self.values)

    def to_api(self) -> dict[str, Any]:
        return {
            "indices": self.indices,
            "parallelism": self.parallelism,
            "size": self.size,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ArraySpec:
        """From a request or a record; ValueError saying what is wrong with the indices."""
        spec = cls(indices=str(data["indices"]).strip(), parallelism=data.get("parallelism"))
        spec.values  # noqa: B018 -- parsed now: a bad range is refused, never stored
        return spec


@functools.lru_cache(maxsize=64)
def parse_indices(text: str) -> tuple[int, ...]:
    """Slurm's index syntax: "0-99", "1,5,7-9", "0-15:4" (a step); sorted, each once."""
    found: set[int] = set()
    for given in text.split(","):
        part = given.strip()
        if not part:
            raise ValueError(f"array: empty index in {text!r}")
        found.update(_range(part))
        if len(found) > MAX_ARRAY_SIZE:
            raise ValueError(f"array: at most {MAX_ARRAY_SIZE} indices")
    return tuple(sorted(found))


def _range(part: str) -> range:
    span, _, step_text = part.partition(":")
    first_text, dash, last_text = span.partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if dash else first
        step = int(step_text) if step_text else 1
    except ValueError:
        message = f"array: {part!r} is not an index, a range (0-99) or a stepped range (0-15:4)"
        raise ValueError(message) from None
    if first < 0 or last < first or step < 1:
        raise ValueError(f"array: {part!r}: indices are 0 or more, ranges go up, steps 1 or more")
    if last - first >= MAX_ARRAY_SIZE * step:
        raise ValueError(f"array: at most {MAX_ARRAY_SIZE} indices")
    return range(first, last + 1, step)
