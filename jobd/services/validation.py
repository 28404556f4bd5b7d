"""Requests checked against the OpenAPI document's schemas, with errors that name the field."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema
import jsonschema_rs
import orjson

from jobd.errors import InvalidRequest

MAX_MESSAGE = 300  # characters of an error message, the value it quotes included


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("jobd").joinpath("openapi.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@functools.cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    # request schemas are self-contained: validating against them directly skips resolving
    # a $ref through the whole document on every request
    schema = openapi_document()["components"]["schemas"][schema_name]
    return jsonschema.Draft202012Validator(schema)


@functools.cache
def _checker(schema_name: str) -> jsonschema_rs.Draft202012Validator:
    schema = openapi_document()["components"]["schemas"][schema_name]
    return jsonschema_rs.Draft202012Validator(schema)


def validate(body: Any, schema_name: str) -> None:
    """Raise InvalidRequest naming the first offending field. jsonschema-rs tells whether the
    body is valid, in about a microsecond (every submission takes this path); jsonschema,
    a hundred times slower, words what is wrong and has the last word."""
    _refuse_nul(body)
    if _checker(schema_name).is_valid(body):
        return
    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        raise InvalidRequest(_shortened(f"{where}: {_friendly(error)}"))


def _refuse_nul(body: Any) -> None:
    """NUL ends a string where it reaches a process (argv, the environment, a file name), so a
    request carrying one is refused here, naming the field, rather than failing the run later
    as if jobd or podman had. orjson writes NUL as \\u0000: one search, in C, tells."""
    where = _nul_at(body) if b"\\u0000" in orjson.dumps(body) else None  # or text \\u0000
    if where is not None:
        shown = where.replace("\x00", "\\0")
        raise InvalidRequest(f"{shown or 'body'}: NUL characters are not allowed")


def _nul_at(value: Any, where: str = "") -> str | None:
    """The path of the first key or string that holds a NUL."""
    if isinstance(value, str):
        return where if "\x00" in value else None  # "" for a body that is one string
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    for key, item in items:
        path = f"{where}/{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        found = _nul_at(item, path)
        if found:
            return found
    return None


def _shortened(message: str) -> str:
    """A message that quotes the offending value quotes only its start: a megabyte of it is
    not sent back."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _friendly(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[0] == "image":
        return f"{error.instance!r} is not a valid image reference"
    if error.validator == "not":  # two fields that exclude each other, both given
        if isinstance(error.instance, dict) and {"inputs", "slug"} <= error.instance.keys():
            return "give inputs or slug (one input), not both"
        return "give either command (a list) or startCommand (a string), not both"
    if error.validator == "anyOf" and not error.absolute_path:
        return "image: required, unless the job is made of a recipe"
    if error.validator == "dependentRequired":
        return f"needs a schedule: {error.message}"
    return error.message
