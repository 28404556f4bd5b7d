"""Recipes: named job configurations, created, replaced, changed, deleted and read."""

from __future__ import annotations

import dataclasses
import sqlite3

import aiosqlite

from jobd.domain.owners import Reach
from jobd.domain.recipes import Recipe
from jobd.errors import Conflict, NotFound
from jobd.store.rows import fetch_all, fetch_one, reached, to_json


def put_recipe(
    db: sqlite3.Connection, recipe: Recipe, replace: bool, reach: Reach
) -> tuple[Recipe, bool]:
    row = db.execute("SELECT * FROM recipes WHERE name = ?", (recipe.name,)).fetchone()
    if row is not None and not reach.includes(Recipe.from_row(row).owner):
        raise Conflict(f"recipe name {recipe.name!r} is taken by another user's recipe")
    if row is not None and not replace:
        raise Conflict(f"recipe {recipe.name!r} exists; update it, or apply to replace it")
    if row is not None:
        kept = Recipe.from_row(row)
        replaced = dataclasses.replace(recipe, owner=kept.owner, created_at=kept.created_at)
        return update_recipe(db, replaced), False
    db.execute(
        "INSERT INTO recipes (name, description, config, owner, created_at, updated_at,"
        " project) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            recipe.name,
            recipe.description,
            to_json(dict(recipe.config)),
            to_json(recipe.owner.to_api()),
            recipe.created_at.timestamp(),
            recipe.updated_at.timestamp(),
            recipe.project,
        ),
    )
    return recipe, True


def update_recipe(db: sqlite3.Connection, recipe: Recipe) -> Recipe:
    cursor = db.execute(
        "UPDATE recipes SET description = ?, config = ?, updated_at = ?, project = ?"
        " WHERE name = ?",
        (
            recipe.description,
            to_json(dict(recipe.config)),
            recipe.updated_at.timestamp(),
            recipe.project,
            recipe.name,
        ),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"recipe {recipe.name!r} not found")
    return recipe


def delete_recipe(db: sqlite3.Connection, name: str) -> None:
    if db.execute("DELETE FROM recipes WHERE name = ?", (name,)).rowcount == 0:
        raise NotFound(f"recipe {name!r} not found")


async def get_recipe(db: aiosqlite.Connection, name: str, reach: Reach) -> Recipe:
    mine, uid = reached(reach, project="project")
    row = await fetch_one(db, f"SELECT * FROM recipes WHERE name = ?{mine}", (name, *uid))
    if row is None:
        raise NotFound(f"recipe {name!r} not found")
    return Recipe.from_row(row)


async def list_recipes(db: aiosqlite.Connection, reach: Reach) -> list[Recipe]:
    mine, uid = reached(reach, project="project")
    rows = await fetch_all(db, f"SELECT * FROM recipes WHERE 1{mine} ORDER BY name", uid)
    return [Recipe.from_row(row) for row in rows]
