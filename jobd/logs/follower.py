"""Following a run's log as it grows: what was appended since the last read, a bounded piece
at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from jobd.logs.lines import LineJoiner, LogLine, LogQuery
from jobd.logs.run_log import READ_CHUNK, RunLog


class LogFollower:
    """Reads what was appended to a run's log since its last call, a bounded piece at a
    time. It re-opens the log each time: a run that was pending when following began gets
    its live log later."""

    def __init__(
        self, open_log: Callable[[], RunLog], query: LogQuery, *, skip_existing: bool
    ) -> None:
        self.open_log = open_log
        self.joiner = LineJoiner(query)
        self.position = 0
        self.marked = False
        if skip_existing:
            self.position = open_log().kept().ranges[-1][1]
            self.marked = True

    def read(self, budget: int) -> tuple[list[bytes | LogLine], bool]:
        """Blocks of whole k8s-file lines (and the omission marker) appended since the last
        call, about `budget` bytes at most; and whether more may be there already."""
        items: list[bytes | LogLine] = []
        taken = 0
        for position, item in self.open_log().blocks(self.position, marker=not self.marked):
            items.append(item)
            if isinstance(item, LogLine):  # a marker: the omission's, or a loss's
                self.marked = True
                self.position = max(self.position, position)  # a loss's is read once
                continue
            taken += len(item)
            self.position = position
            if taken >= budget:
                return items, True
        return items, False

    def lines(self, items: Iterable[bytes | LogLine]) -> list[LogLine]:
        lines: list[LogLine] = []
        for item in items:
            if isinstance(item, LogLine):
                lines.append(item)
            else:
                lines.extend(self.joiner.lines(item))
        return lines

    def ended(self) -> list[LogLine]:
        """The run has ended and its log was read to the end: its last line, when the output
        did not end in a newline (no F entry will ever end its pieces)."""
        return list(self.joiner.ended())

    def read_new(self) -> list[LogLine]:
        """Every line appended since the last call."""
        lines: list[LogLine] = []
        more = True
        while more:
            items, more = self.read(4 * READ_CHUNK)
            lines += self.lines(items)
        return lines
