"""Readable output: values and tables."""

from __future__ import annotations

import pytest

from jobctl.render import layout, values


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512 * 1024**2, "512 MiB"),
        (1024**3, "1 GiB"),
        (3 * 1024**3, "3 GiB"),
        (25275000000, "23.5 GiB"),
    ],
)
def test_memory(size: int, text: str) -> None:
    assert values.memory(size) == text


def test_table_keeps_ids_as_given() -> None:
    text = layout.table(["RUN", "EXIT"], [["1e5", "007"]])
    assert text.splitlines()[1].split() == ["1e5", "007"]
