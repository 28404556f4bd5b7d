"""Recipes: named job configurations, created, replaced, changed, deleted and read."""

from __future__ import annotations

import dataclasses
import sqlite3

import aiosqlite

from jobd.domain.recipes import Recipe
from jobd.errors import Conflict, NotFound
from jobd.store.rows import fetch_all, fetch_one, to_json


def put_recipe(db: sqlite3.Connection, recipe: Recipe, replace: bool) -> tuple[Recipe, bool]:
    row = db.execute("SELECT * FROM recipes WHERE name = ?", (recipe.name,)).fetchone()
    if row is not None and not replace:
        raise Conflict(f"recipe {recipe.name!r} exists; update it, or apply to replace it")
    if row is not None:
        kept = Recipe.from_row(row)
        replaced = dataclasses.replace(recipe, owner=kept.owner, created_at=kept.created_at)
        return update_recipe(db, replaced), False
    db.execute(
        "INSERT INTO recipes (name, description, config, owner, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            recipe.name,
            recipe.description,
            to_json(dict(recipe.config)),
            to_json(recipe.owner.to_api()),
            recipe.created_at.timestamp(),
            recipe.updated_at.timestamp(),
        ),
    )
    return recipe, True


def update_recipe(db: sqlite3.Connection, recipe: Recipe) -> Recipe:
    cursor = db.execute(
        "UPDATE recipes SET description = ?, config = ?, updated_at = ? WHERE name = ?",
        (
            recipe.description,
            to_json(dict(recipe.config)),
            recipe.updated_at.timestamp(),
            recipe.name,
        ),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"recipe {recipe.name!r} not found")
    return recipe


def delete_recipe(db: sqlite3.Connection, name: str) -> None:
    if db.execute("DELETE FROM recipes WHERE name = ?", (name,)).rowcount == 0:
        raise NotFound(f"recipe {name!r} not found")


async def get_recipe(db: aiosqlite.Connection, name: str) -> Recipe:
    row = await fetch_one(db, "SELECT * FROM recipes WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"recipe {name!r} not found")
    return Recipe.from_row(row)


async def list_recipes(db: aiosqlite.Connection) -> list[Recipe]:
    rows = await fetch_all(db, "SELECT * FROM recipes ORDER BY name", ())
    return [Recipe.from_row(row) for row in rows]
