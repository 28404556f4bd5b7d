"""API tokens: created, revoked, their last use noted, and read (one user's, or everyone's)."""

from __future__ import annotations

import sqlite3

import aiosqlite

from jobd.domain.owners import Reach
from jobd.domain.tokens import Token
from jobd.errors import Conflict, NotFound
from jobd.store.rows import fetch_all, fetch_one, reached, to_json


def create_token(db: sqlite3.Connection, token: Token) -> None:
    """A Conflict if the owner has an unrevoked token of that name."""
    try:
        db.execute(
            "INSERT INTO tokens (id, owner, name, scope, kind, secret_hash, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.id,
                to_json(token.owner.to_api()),
                token.name,
                token.scope.value,
                token.kind.value,
                token.secret_hash,
                token.created_at.timestamp(),
                token.expires_at.timestamp(),
            ),
        )
    except sqlite3.IntegrityError:
        raise Conflict(
            f"{token.owner.user} has a token named {token.name!r}: revoke it first"
        ) from None


def revoke_token(db: sqlite3.Connection, token_id: str, moment: float) -> Token:
    """Revoke the token (revoking one twice is no error); the token as it now is."""
    db.execute(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (moment, token_id)
    )
    row = db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise NotFound(f"token {token_id!r} not found")
    return Token.from_row(row)


def touch_token(db: sqlite3.Connection, token_id: str, moment: float) -> None:
    db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (moment, token_id))


# -- reads ------------------------------------------------------------------------------------


async def get_token(db: aiosqlite.Connection, key: str, reach: Reach) -> Token:
    """A token by its id, or by its owner's name for it: the unrevoked one of that name,
    else the newest."""
    mine, uid = reached(reach)
    row = await fetch_one(
        db,
        f"SELECT * FROM tokens WHERE (id = ? OR name = ?){mine}"
        " ORDER BY id = ? DESC, revoked_at IS NULL DESC, created_at DESC LIMIT 1",
        (key, key, *uid, key),
    )
    if row is None:
        raise NotFound(f"token {key!r} not found")
    return Token.from_row(row)


async def list_tokens(db: aiosqlite.Connection, reach: Reach) -> list[Token]:
    mine, uid = reached(reach)
    rows = await fetch_all(db, f"SELECT * FROM tokens WHERE 1{mine} ORDER BY created_at", uid)
    return [Token.from_row(row) for row in rows]


async def all_tokens(db: aiosqlite.Connection) -> list[Token]:
    """Every token, revoked and expired ones too: what authentication holds."""
    return [Token.from_row(row) for row in await fetch_all(db, "SELECT * FROM tokens", ())]
