"""Figures (samples of one measured quantity on one system) and the report that puts jobd's
beside its peers': min/median/max over repeats, and the ratio jobd/peer of the medians."""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    scenario: str
    name: str  # what was measured, e.g. "submit rate, 8 clients"
    system: str  # "jobd", "jobctl", "slurm", "tsp", "podman run", "podman API"
    unit: str
    samples: tuple[float, ...]
    higher_is_better: bool
    target: str | None = None  # the target, e.g. ">= 1000 jobs/s"
    met: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def stats(self) -> dict[str, float]:
        return {"min": min(self.samples), "median": self.median, "max": max(self.samples)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable:
    scenario: str
    system: str
    reason: str


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    unavailable: list[Unavailable] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)

    def missing(self, scenario: str, system: str, reason: str) -> None:
        self.unavailable.append(Unavailable(scenario=scenario, system=system, reason=reason))

    def ratio(self, figure: Figure) -> float | None:
        """jobd's median over this peer's, for the same scenario and figure name."""
        if figure.system == "jobd":
            return None
        mine = [
            f
            for f in self.figures
            if f.system == "jobd" and (f.scenario, f.name) == (figure.scenario, figure.name)
        ]
        if not mine or figure.median == 0:
            return None
        return mine[0].median / figure.median

    def markdown(self) -> str:
        lines = [
            f"Measured {self.parameters.get('when', '')} on {platform.node()}"
            f" ({self.parameters.get('machine', '')}). Parameters: "
            + ", ".join(
                f"{k}={v}" for k, v in self.parameters.items() if k not in {"when", "machine"}
            ),
            "",
            "| scenario | figure | system | min | median | max | unit | jobd/peer | target |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for f in self.figures:
            ratio = self.ratio(f)
            target = f.target or ""
            if f.met is not None:
                target += " ✅" if f.met else " ❌"
            lines.append(
                f"| {f.scenario} | {f.name} | {f.system} | {_num(min(f.samples))}"
                f" | {_num(f.median)} | {_num(max(f.samples))} | {f.unit}"
                f" | {_num(ratio) if ratio is not None else ''} | {target} |"
            )
        for u in self.unavailable:
            lines.append(f"| {u.scenario} | — | {u.system} | unavailable: {u.reason} | | | | | |")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return json.dumps(
            {
                "parameters": self.parameters,
                "figures": [
                    {**asdict(f), **f.stats(), "jobdOverPeer": self.ratio(f)} for f in self.figures
                ],
                "unavailable": [asdict(u) for u in self.unavailable],
            },
            indent=2,
        )

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        markdown, data = directory / "latest.md", directory / f"bench-{stamp}.json"
        markdown.write_text(self.markdown())
        data.write_text(self.json())
        (directory / "latest.json").write_text(self.json())
        return markdown, data


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
