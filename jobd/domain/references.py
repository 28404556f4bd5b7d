"""How a request names a job or a run: its id, a unique prefix of its id (with or without the
kind's `job-` or `run-`), or, a job, its name (the caller's newest job of that name).

Ids are the kind, a dash and 32 hex digits (records.new_id), and they are the tables' primary
keys: every id with a prefix lies in one range of the key, [prefix, prefix + "g"), as no hex
digit sorts after "g". A prefix shorter than MIN_PREFIX digits is not read as one: the first
digits are the creation time, so it would match nearly every record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jobd.errors import Ambiguous, NotFound

Kind = Literal["job", "run"]
ID_DIGITS = 32
MIN_PREFIX = 4  # hex digits
SHOWN_CANDIDATES = 10  # an ambiguous prefix's message names at most this many
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Reference:
    """What a request gave where a job's or a run's id goes."""

    kind: Kind
    text: str

    @property
    def digits(self) -> str:
        """The hex digits given: the text without its kind's prefix, in lower case."""
        lowered = self.text.lower()
        return lowered.removeprefix(f"{self.kind}-")

    @property
    def full_id(self) -> bool:
        """Whether the text is a whole id of this kind (nothing to resolve)."""
        return (
            self.text.startswith(f"{self.kind}-")
            and len(self.digits) == ID_DIGITS
            and set(self.digits) <= HEX
        )

    @property
    def prefix(self) -> str | None:
        """The id prefix the text stands for (`job-0199ab`), or None when it cannot be one:
        other characters than hex digits, too few digits, or too many."""
        digits = self.digits
        if not MIN_PREFIX <= len(digits) <= ID_DIGITS or not set(digits) <= HEX:
            return None
        return f"{self.kind}-{digits}"

    @property
    def name(self) -> str | None:
        """The job name the text may be (runs have none)."""
        return self.text if self.kind == "job" and not self.full_id else None

    def id_range(self) -> tuple[str, str] | None:
        """The ids that start with the prefix, as a half-open range of the primary key."""
        prefix = self.prefix
        return None if prefix is None else (prefix, prefix + "g")

    def not_found(self) -> NotFound:
        digits = self.digits
        short = 0 < len(digits) < MIN_PREFIX and set(digits) <= HEX
        hint = f" (an id prefix needs at least {MIN_PREFIX} hex digits)" if short else ""
        return NotFound(f"{self.kind} {self.text} not found{hint}")

    def ambiguous(self, candidates: Sequence[tuple[str, str | None]], more: bool) -> Ambiguous:
        """The error for a prefix that several records have: `candidates` are their ids,
        each with a job's name (None for a run or an unnamed job)."""
        shown = ", ".join(
            f"{found} ({name})" if name else found for found, name in candidates[:SHOWN_CANDIDATES]
        )
        rest = " and more" if more or len(candidates) > SHOWN_CANDIDATES else ""
        return Ambiguous(
            f"{self.kind} {self.text} is ambiguous: it matches {shown}{rest}; give more of the id"
        )
