"""/v1/recipes: named job configurations."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import caller, listing_reach, own_reach, reach
from jobd.api.requests import json_body, json_response


async def list_recipes(request: web.Request) -> web.Response:
    recipes = await request.app[SERVICES].recipes.list_recipes(listing_reach(request))
    return json_response({"recipes": [r.to_api() for r in recipes]})


async def create_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    recipe = await recipes.create(await json_body(request), caller(request))
    return json_response(recipe.to_api(), status=201)


async def get_recipe(request: web.Request) -> web.Response:
    recipe = await request.app[SERVICES].recipes.get(request.match_info["name"], reach(request))
    return json_response(recipe.to_api())


async def put_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    body = await json_body(request)
    recipe, created = await recipes.put(request.match_info["name"], body, caller(request))
    return json_response(recipe.to_api(), status=201 if created else 200)


async def update_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    body = await json_body(request)
    recipe = await recipes.update(request.match_info["name"], body, caller(request))
    return json_response(recipe.to_api())


async def delete_recipe(request: web.Request) -> web.Response:
    await request.app[SERVICES].recipes.delete(request.match_info["name"], own_reach(request))
    return web.Response(status=204)
