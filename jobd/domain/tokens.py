"""API tokens: what a user hands a script so that it reaches jobd's TCP port as them.

A bearer token is a secret the script sends as it is; jobd keeps only its sha256. A signing
key (HMAC) is a key id and a secret the script signs each request with and never sends; jobd
keeps neither (the secret is derived again from the key id, see jobd/services/tokens.py).
A token's scope says what it may do; revoking one, or its expiry, ends it at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from jobd.domain.owners import Owner, Scope
from jobd.domain.records import Row, from_epoch, maybe_epoch, rfc3339

TOKEN_PREFIX = "jobd_"  # a bearer token's start: secret scanners can find one that leaked
TOKEN_ID_PREFIX = "tok"
DEFAULT_LIFETIME = timedelta(days=30)
MAX_LIFETIME = timedelta(days=366)
MIN_LIFETIME = timedelta(minutes=1)

# signed requests
SIGNATURE_WINDOW_SECONDS = 300  # how far a request's timestamp may be from jobd's clock
NONCE = re.compile(r"[A-Za-z0-9._~-]{8,128}")
KEY_HEADER = "X-Jobd-Key"
TIMESTAMP_HEADER = "X-Jobd-Timestamp"
NONCE_HEADER = "X-Jobd-Nonce"
SIGNATURE_HEADER = "X-Jobd-Signature"


class TokenKind(StrEnum):
    BEARER = "bearer"  # sent as it is: Authorization: Bearer jobd_...
    HMAC = "hmac"  # a key id and a secret that signs each request


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    id: str  # a signing key's key id
    owner: Owner
    name: str | None
    scope: Scope
    kind: TokenKind
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    secret_hash: str | None = None  # a bearer token's sha256; never shown

    def problem(self, moment: datetime) -> str | None:
        """Why the token no longer opens anything, or None while it does."""
        if self.revoked_at is not None:
            return f"token {self.id} was revoked"
        if moment >= self.expires_at:
            return f"token {self.id} expired at {rfc3339(self.expires_at)}"
        return None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner.to_api(),
            "scope": self.scope.value,
            "kind": self.kind.value,
            "createdAt": rfc3339(self.created_at),
            "expiresAt": rfc3339(self.expires_at),
            "revokedAt": rfc3339(self.revoked_at),
            "lastUsedAt": rfc3339(self.last_used_at),
        }

    @classmethod
    def from_row(cls, row: Row) -> Token:
        return cls(
            id=row["id"],
            owner=Owner.from_api(orjson.loads(row["owner"])),
            name=row["name"],
            scope=Scope(row["scope"]),
            kind=TokenKind(row["kind"]),
            created_at=from_epoch(row["created_at"]),
            expires_at=from_epoch(row["expires_at"]),
            revoked_at=maybe_epoch(row["revoked_at"]),
            last_used_at=maybe_epoch(row["last_used_at"]),
            secret_hash=row["secret_hash"],
        )


def secret_hash(secret: str) -> str:
    """What jobd keeps of a bearer token: a plain sha256 is enough for 256 random bits (no
    dictionary to guess from), and costs a microsecond per request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def lifetime_problem(body: Mapping[str, Any]) -> str | None:
    seconds = body.get("expiresInSeconds")
    if seconds is None:
        return None
    if not MIN_LIFETIME.total_seconds() <= seconds <= MAX_LIFETIME.total_seconds():
        return (
            f"expiresInSeconds: between {int(MIN_LIFETIME.total_seconds())} and"
            f" {int(MAX_LIFETIME.total_seconds())} (366 days)"
        )
    return None


def signing_string(
    method: str, path_with_query: str, timestamp: str, nonce: str, body_sha256: str
) -> bytes:
    """What a signed request's signature covers, one item a line: a change to any of them
    (or to the body) is a different signature."""
    return "\n".join((method.upper(), path_with_query, timestamp, nonce, body_sha256)).encode()


class Signer:
    """hex HMAC-SHA256 with one secret. The key is set up once and each signature copies
    that state: under OpenSSL 3 a new HMAC looks its digest up again, several times the
    cost of the copy (and far more in a busy daemon)."""

    def __init__(self, secret: str) -> None:
        self._keyed = hmac.new(secret.encode(), digestmod="sha256")

    def sign(self, message: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()
