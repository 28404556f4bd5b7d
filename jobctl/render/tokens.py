"""API tokens, as rows, as details, and as the one moment their secret is shown."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jobctl.render.layout import Row, details
from jobctl.render.values import NONE, local_time

TOKEN_HEADERS = ("ID", "NAME", "KIND", "SCOPE", "STATE", "EXPIRES", "LAST USED")


def token_state(token: Mapping[str, Any]) -> str:
    if token.get("revokedAt"):
        return "revoked"
    expires = token.get("expiresAt")
    if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        return "expired"
    return "active"


def token_row(token: Mapping[str, Any]) -> Row:
    return (
        token["id"],
        token.get("name") or NONE,
        token["kind"],
        token["scope"],
        token_state(token),
        local_time(token.get("expiresAt")),
        local_time(token.get("lastUsedAt")),
    )


def token_details(token: Mapping[str, Any]) -> str:
    return details(
        [
            ("id", token["id"]),
            ("name", token.get("name")),
            ("owner", (token.get("owner") or {}).get("user")),
            ("kind", token["kind"]),
            ("scope", token["scope"]),
            ("state", token_state(token)),
            ("created", local_time(token.get("createdAt"))),
            ("expires", local_time(token.get("expiresAt"))),
            ("revoked", local_time(token.get("revokedAt"))),
            ("last used", local_time(token.get("lastUsedAt"))),
        ]
    )


def created_token(doc: Mapping[str, Any]) -> str:
    """The new token's secret, with how to use it: it is never shown again."""
    token = doc["token"]
    expires = local_time(token.get("expiresAt"))
    if token["kind"] == "hmac":
        return "\n".join(
            (
                f"key id:  {doc['keyId']}",
                f"secret:  {doc['secret']}",
                "",
                f"Scope {token['scope']}, expires {expires}. The secret is shown once; sign"
                " requests with it:",
                f"  JOBD_KEY_ID={doc['keyId']} JOBD_SECRET=<secret> jobctl --url URL ls",
            )
        )
    return "\n".join(
        (
            doc["secret"],
            "",
            f"Token {token['id']}: scope {token['scope']}, expires {expires}. It is shown once;"
            " use it as:",
            "  JOBD_TOKEN=<token> jobctl --url URL ls",
            "  curl -H 'Authorization: Bearer <token>' URL/v1/jobs",
        )
    )
