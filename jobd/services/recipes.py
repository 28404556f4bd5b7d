"""Recipes: named, reusable job configurations. Jobs made of one take a snapshot
(jobd/services/jobs.py), so what is done here never changes a job."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

from jobd.domain.owners import Caller, Reach
from jobd.domain.recipes import RECIPE_FIELDS, Recipe, without_replaced_command
from jobd.domain.records import now
from jobd.domain.resources import Plan
from jobd.domain.volumes import mount_problem, mounts_from_api
from jobd.errors import InvalidRequest
from jobd.services.validation import validate
from jobd.store import Store


class Recipes:
    def __init__(
        self,
        store: Store,
        plan: Callable[[Mapping[str, Any]], Plan],
        projects: Collection[str],
    ) -> None:
        self.store = store
        self.plan = plan  # what a request's plan or resources give, or InvalidRequest
        self.projects = projects  # the configured projects' names

    async def create(self, body: Mapping[str, Any], caller: Caller) -> Recipe:
        recipe = self._new(body, caller)
        created, _ = await self.store.put_recipe(recipe, replace=False, reach=caller.own_reach)
        return created

    async def put(self, name: str, body: Mapping[str, Any], caller: Caller) -> tuple[Recipe, bool]:
        """Create or replace the recipe `name` whole (one the caller reaches). Whether it was
        created."""
        recipe = self._new(body, caller)
        if recipe.name != name:
            raise InvalidRequest(f"name: {recipe.name!r} is not the recipe in the path ({name!r})")
        return await self.store.put_recipe(recipe, replace=True, reach=caller.own_reach)

    async def update(self, name: str, body: Mapping[str, Any], caller: Caller) -> Recipe:
        """Each field given replaces the recipe's whole; the others stay. Only its owner
        (or an admin) changes it: a project's members use it."""
        validate(body, "RecipeUpdate")
        recipe = await self.store.get_recipe(name, reach=caller.own_reach)
        config = without_replaced_command(recipe.config, body)
        if "plan" in body or "resources" in body:  # one replaces the other
            config = {k: v for k, v in config.items() if k not in ("plan", "resources")}
        config.update({k: v for k, v in body.items() if k in RECIPE_FIELDS})
        self._check_plan(config)
        changed = dataclasses.replace(
            recipe,
            config=config,
            description=body.get("description", recipe.description),
            updated_at=now(),
            project=caller.project(body["project"], self.projects)
            if "project" in body
            else recipe.project,
        )
        return await self.store.update_recipe(changed)

    async def delete(self, name: str, reach: Reach) -> None:
        await self.store.get_recipe(name, reach=reach)
        await self.store.delete_recipe(name)

    async def get(self, name: str, reach: Reach) -> Recipe:
        return await self.store.get_recipe(name, reach=reach)

    async def list_recipes(self, reach: Reach) -> list[Recipe]:
        return await self.store.list_recipes(reach=reach)

    def _new(self, body: Mapping[str, Any], caller: Caller) -> Recipe:
        validate(body, "RecipeCreate")
        config = {k: v for k, v in body.items() if k in RECIPE_FIELDS}
        self._check_plan(config)
        moment = now()
        return Recipe(
            name=body["name"],
            description=body.get("description"),
            config=config,
            owner=caller.owner,
            created_at=moment,
            updated_at=moment,
            project=caller.project(body.get("project"), self.projects),
        )

    def _check_plan(self, config: Mapping[str, Any]) -> None:
        if "plan" in config or "resources" in config:
            self.plan(config)
        problem = mount_problem(mounts_from_api(config.get("volumes")))
        if problem:  # host paths are checked where a job is made of it
            raise InvalidRequest(problem)
