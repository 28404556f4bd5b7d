"""Recipes, as rows and as details."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from jobctl.render.jobs import retry_text
from jobctl.render.layout import Row, details
from jobctl.render.values import duration, local_time, mounts, or_none, pairs

RECIPE_HEADERS = ("RECIPE", "IMAGE", "PLAN", "DESCRIPTION", "UPDATED")


def recipe_row(recipe: Mapping[str, Any]) -> Row:
    return (
        recipe["name"],
        recipe.get("image"),
        or_none(recipe.get("plan")),
        or_none(recipe.get("description")),
        local_time(recipe.get("updatedAt")),
    )


def recipe_details(recipe: Mapping[str, Any]) -> str:
    if recipe.get("startCommand"):
        command = f"/bin/sh -c {shlex.quote(recipe['startCommand'])}"
    else:
        command = shlex.join(recipe.get("command") or []) or "(the image's own)"
    owner = recipe.get("owner") or {}
    return details(
        [
            ("name", recipe["name"]),
            ("description", recipe.get("description")),
            ("image", recipe.get("image")),
            ("command", command),
            ("env", pairs(recipe.get("env"))),
            ("plan", recipe.get("plan") or "(jobd's default)"),
            ("timeout", duration(recipe.get("timeoutSeconds"))),
            ("network", recipe.get("network")),
            ("kind", recipe.get("kind") or "batch"),
            ("volumes", mounts(recipe.get("volumes"))),
            ("workdir", recipe.get("workingDir")),
            ("user", recipe.get("user")),
            ("labels", pairs(recipe.get("labels"))),
            ("retry", retry_text(recipe.get("retry"))),
            ("owner", owner.get("user")),
            ("project", recipe.get("project")),
            ("created", local_time(recipe.get("createdAt"))),
            ("updated", local_time(recipe.get("updatedAt"))),
        ]
    )
