"""The OpenAPI document and the app agree: every route is documented, with its methods, and
every documented operation is routed."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from jobd.api.app import create_app
from jobd.api.context import Services
from jobd.api.query import documented_path
from jobd.config import Config

METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_route_is_documented_and_every_operation_routed() -> None:
    config = Config(data_dir=Path("/nonexistent"), socket=Path("/nonexistent.sock"))
    app = create_app(cast(Services, SimpleNamespace(config=config)))  # routes need no service
    routed: set[tuple[str, str]] = set()
    for route in app.router.routes():
        method = route.method.lower()
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if method in METHODS and path:
            routed.add((documented_path(path), method))
    document = json.loads(resources.files("jobd").joinpath("openapi.json").read_text())
    documented = {
        (path, method)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert routed - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routed == set(), "documented operations no route serves"
