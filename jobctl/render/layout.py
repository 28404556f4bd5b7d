"""How output is laid out: JSON, tables and `key: value` blocks.

tabulate is imported where a table is drawn, so that `--json` and the one-line commands that
scripts call in loops do not pay for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from jobctl.render.values import NONE

Row = Sequence[object]


def as_json(doc: object) -> str:
    return json.dumps(doc, indent=2)


def table(headers: Sequence[str], rows: Iterable[Row]) -> str:
    from tabulate import tabulate

    # numparse off: ids such as run-1e5... or a name like "007" must print as given
    return tabulate(list(rows), headers=list(headers), tablefmt="plain", disable_numparse=True)


def owned_table(
    headers: Sequence[str], row: Callable[[Any], Row], docs: Iterable[Any], *, users: bool
) -> str:
    """A table of `docs` (records with an owner); with `users`, or when they are more than
    one user's (a project's), each row starts with its owner's user name."""
    docs = list(docs)
    if not users and len({(doc.get("owner") or {}).get("user") for doc in docs}) <= 1:
        return table(headers, map(row, docs))
    return table(("USER", *headers), ((doc["owner"]["user"], *row(doc)) for doc in docs))


def details(pairs: Iterable[tuple[str, object]]) -> str:
    """`key: value` lines, values aligned in one column."""
    from tabulate import tabulate

    rows = [(f"{key}:", NONE if value is None else value) for key, value in pairs]
    return tabulate(rows, tablefmt="plain", disable_numparse=True)
