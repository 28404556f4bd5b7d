"""Recipes: named, reusable job configurations. A job made of one takes a snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from jobd.domain.owners import Owner
from jobd.domain.records import Row, from_epoch, rfc3339

# what a recipe may hold: a job's configuration, not its name, labels aside, nor its schedule
RECIPE_FIELDS = (
    "kind",
    "ports",
    "image",
    "command",
    "startCommand",
    "env",
    "plan",
    "timeoutSeconds",
    "network",
    "labels",
    "retry",
    "resources",
    "priority",
    "maxPendingSeconds",
    "volumes",
    "workingDir",
    "user",
    "outputLimitBytes",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A named, reusable job configuration. A job made from it takes a snapshot: changing or
    deleting the recipe later changes no job."""

    name: str
    description: str | None
    config: Mapping[str, Any]  # RECIPE_FIELDS, as the API takes them
    owner: Owner
    created_at: datetime
    updated_at: datetime
    project: str | None = None  # its members may use it too (config [projects])

    @classmethod
    def from_row(cls, row: Row) -> Recipe:
        return cls(
            name=row["name"],
            description=row["description"],
            config=orjson.loads(row["config"]),
            owner=Owner.from_api(orjson.loads(row["owner"])),
            created_at=from_epoch(row["created_at"]),
            updated_at=from_epoch(row["updated_at"]),
            project=row["project"],
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            **self.config,
            "owner": self.owner.to_api(),
            "project": self.project,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        }

    def job_request(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """A job's request made of this recipe's configuration and `overrides`: each field
        given replaces the recipe's, except env and labels, merged key by key; a command
        given either way replaces the recipe's either way, and a plan or resources the
        recipe's either."""
        merged = without_replaced_command(self.config, overrides)
        if "plan" in overrides or "resources" in overrides:  # one replaces the other
            merged = {k: v for k, v in merged.items() if k not in ("plan", "resources")}
        for key, value in overrides.items():
            if key in ("env", "labels"):
                merged[key] = {**merged.get(key, {}), **value}
            elif key != "recipe":
                merged[key] = value
        merged.setdefault("name", self.name)
        return merged


def without_replaced_command(
    config: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """`config` without its command when `changes` give one, either way (command or
    startCommand): the two are exclusive, so one replaces the other."""
    if "command" not in changes and "startCommand" not in changes:
        return dict(config)
    return {k: v for k, v in config.items() if k not in ("command", "startCommand")}
