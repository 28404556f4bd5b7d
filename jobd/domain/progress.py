"""A run's progress, as the job itself reports it by printing marker lines (the way CI systems
read workflow commands), from any language, to stdout or stderr:

    ::jobd progress 0.42                a fraction, 0..1
    ::jobd progress 120/480 frame 120   done of total (0 <= done <= total, total > 0), a message
    ::jobd phase rendering              the phase it is in now (a timeline of them is kept)

A marker is a whole line that starts with `::jobd `; it stays in the log as printed. One that
does not parse (a fraction outside 0..1, garbage, an unknown word) is ignored and counted.

The estimate of the time left comes from the progress's own rate, never from the deadline: an
exponentially smoothed rate (fraction per second, each step weighted by 1 - e^(-dt/60 s), so
the last minutes count most), none until two points have been seen; progress that goes back
(a phase starting over at 0) starts the estimate afresh. Pure: the log pump finds the lines,
the progress book keeps and stores what they say."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from jobd.domain.records import from_epoch, rfc3339

PREFIX = "::jobd "
MAX_MESSAGE_CHARS = 200  # of a progress message; the rest is cut
MAX_PHASE_CHARS = 100
MAX_PHASES = 100  # the timeline keeps this many, the newest
RATE_SECONDS = 60.0  # the smoothing's time constant


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerCounts:
    """What /metrics shows of marker lines since jobd started, all runs together."""

    ignored: int = 0  # said nothing understood
    writes: int = 0  # runs' progress records written


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressMark:
    fraction: float
    done: float | None = None
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseMark:
    name: str


Mark = ProgressMark | PhaseMark


def parse_marker(text: str) -> Mark | None:
    """The mark a line says, or None when it says nothing jobd understands (the caller has
    seen it start with PREFIX)."""
    word, _, rest = text[len(PREFIX) :].strip().partition(" ")
    if word == "phase":
        name = rest.strip()
        return PhaseMark(name=name[:MAX_PHASE_CHARS]) if name else None
    if word != "progress":
        return None
    value, _, message = rest.strip().partition(" ")
    found = _amount(value)
    if found is None:
        return None
    fraction, done, total = found
    note = message.strip()[:MAX_MESSAGE_CHARS] or None
    return ProgressMark(fraction=fraction, done=done, total=total, message=note)


def _amount(value: str) -> tuple[float, float | None, float | None] | None:
    """`0.42` or `42/100` as (fraction, done, total); None when it is neither, or out of
    range."""
    try:
        if "/" in value:
            done_text, _, total_text = value.partition("/")
            done, total = _number(done_text), _number(total_text)
            if not (math.isfinite(done) and math.isfinite(total)) or not 0 <= done <= total:
                return None
            if total <= 0:
                return None
            return done / total, done, total
        fraction = float(value)
    except ValueError:
        return None
    return (fraction, None, None) if 0.0 <= fraction <= 1.0 else None


def _number(text: str) -> float:
    number = float(text)
    return int(number) if number.is_integer() else number


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    name: str
    started_at: float  # unix seconds

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "startedAt": rfc3339_at(self.started_at)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """The smoothed rate (fraction per second) and the point it was last moved from."""

    per_second: float | None
    at: float
    fraction: float

    def after(self, at: float, fraction: float) -> Rate:
        if fraction < self.fraction:  # it went back: the estimate starts afresh
            return Rate(per_second=None, at=at, fraction=fraction)
        elapsed = at - self.at
        if elapsed <= 0:
            return self
        step = (fraction - self.fraction) / elapsed
        if self.per_second is None:
            smoothed = step
        else:
            weight = 1.0 - math.exp(-elapsed / RATE_SECONDS)
            smoothed = self.per_second + weight * (step - self.per_second)
        return Rate(per_second=smoothed, at=at, fraction=fraction)

    def eta(self, fraction: float) -> float | None:
        """Seconds left from the last point, at this rate; 0 once done."""
        if fraction >= 1.0:
            return 0.0
        if not self.per_second or self.per_second <= 0:
            return None
        return (1.0 - fraction) / self.per_second


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """What a run's markers said, the latest of each: its record, kept after it ends."""

    fraction: float | None = None
    done: float | None = None
    total: float | None = None
    message: str | None = None
    updated_at: float | None = None  # unix seconds: when the latest marker was printed
    rate: Rate | None = None
    phases: tuple[Phase, ...] = ()

    @property
    def phase(self) -> str | None:
        return self.phases[-1].name if self.phases else None

    @property
    def eta_seconds(self) -> float | None:
        if self.rate is None or self.fraction is None:
            return None
        return self.rate.eta(self.fraction)

    def apply(self, mark: Mark, at: float) -> Progress:
        """The progress once `mark`, printed at `at`, is taken in."""
        if isinstance(mark, PhaseMark):
            if mark.name == self.phase:
                return replace(self, updated_at=at)
            phases = (*self.phases, Phase(name=mark.name, started_at=at))[-MAX_PHASES:]
            return replace(self, phases=phases, updated_at=at)
        rate = (
            self.rate.after(at, mark.fraction)
            if self.rate is not None
            else Rate(per_second=None, at=at, fraction=mark.fraction)
        )
        return replace(
            self,
            fraction=mark.fraction,
            done=mark.done,
            total=mark.total,
            message=mark.message,
            updated_at=at,
            rate=rate,
        )

    def to_api(self) -> dict[str, Any]:
        eta = self.eta_seconds
        return {
            "fraction": _rounded(self.fraction),
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "phase": self.phase,
            "updatedAt": rfc3339_at(self.updated_at),
            "etaSeconds": round(eta, 1) if eta is not None else None,
        }

    def to_record(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "fraction": self.fraction,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "updatedAt": self.updated_at,
            "rate": [rate.per_second, rate.at, rate.fraction] if rate else None,
            "phases": [[p.name, p.started_at] for p in self.phases],
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Progress:
        rate = data.get("rate")
        return cls(
            fraction=data.get("fraction"),
            done=data.get("done"),
            total=data.get("total"),
            message=data.get("message"),
            updated_at=data.get("updatedAt"),
            rate=Rate(per_second=rate[0], at=rate[1], fraction=rate[2]) if rate else None,
            phases=tuple(Phase(name=n, started_at=at) for n, at in data.get("phases") or ()),
        )


def _rounded(fraction: float | None) -> float | None:
    return round(fraction, 6) if fraction is not None else None


def rfc3339_at(seconds: float | None) -> str | None:
    return rfc3339(from_epoch(seconds)) if seconds is not None else None
