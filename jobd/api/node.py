"""About the node and jobd: plans, the node's capacity and holders, doctor, health, the
OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.requests import json_response
from jobd.services.validation import openapi_document


async def list_plans(request: web.Request) -> web.Response:
    config = request.app[SERVICES].config
    plans = [p.to_api() for p in config.plans.values()]
    return json_response({"plans": plans, "defaultPlan": config.default_plan})


async def get_node(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICES].node.node_doc())


async def doctor(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICES].node.doctor_doc())


async def health(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICES].node.health_doc())


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
