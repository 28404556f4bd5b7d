"""Requests checked against the OpenAPI document's schemas before anything is written."""

from __future__ import annotations

import pytest

from jobd.errors import InvalidRequest
from jobd.services.validation import validate


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": "x", "env": {"A": "b\u0000c"}}, "env/A: NUL characters are not allowed"),
        ({"image": "x", "command": ["a", "b\u0000"]}, "command/1: NUL characters are not allowed"),
        ({"image": "x", "labels": {"k\u0000": "v"}}, "labels/k\\0: NUL characters are not allowed"),
        ({"image": "x\u0000"}, "image: NUL characters are not allowed"),
    ],
)
def test_nul_is_refused_naming_its_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate(body, "JobCreate")
    assert refused.value.message == message


def test_the_text_of_an_escape_is_not_a_nul() -> None:
    validate({"image": "x", "env": {"A": "a literal \\u0000"}}, "JobCreate")


@pytest.mark.parametrize("body", [{}, {"graceSeconds": 0}, {"graceSeconds": 30}, {"force": True}])
def test_a_stop_request_may_give_a_grace_or_force(body: dict[str, object]) -> None:
    validate(body, "StopRequest")


@pytest.mark.parametrize(
    "body", [{"graceSeconds": -1}, {"graceSeconds": 1.5}, {"force": "yes"}, {"signal": 9}]
)
def test_a_stop_request_refuses_what_it_does_not_know(body: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        validate(body, "StopRequest")


def test_an_error_quotes_only_the_start_of_a_huge_value() -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate({"image": "a" * 1_000_000, "command": ["true"]}, "JobCreate")
    assert refused.value.message.startswith("image: ")
    assert len(refused.value.message) <= 300 and refused.value.message.endswith("…")
