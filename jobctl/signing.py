"""Signed requests: the headers that sign one request with a signing key (`jobctl token
create --hmac`), as jobd checks them. Standard library only; the README shows the same in a
few lines of curl and openssl, and of Python."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def signed_headers(
    key_id: str,
    secret: str,
    method: str,
    target: str,
    body_sha256: str = EMPTY_SHA256,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """X-Jobd-Key, -Timestamp, -Nonce and -Signature for `method` on `target` (the path and
    query exactly as sent) with a body of that sha256."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = nonce or secrets.token_urlsafe(16)
    message = "\n".join((method.upper(), target, stamp, once, body_sha256)).encode()
    return {
        "X-Jobd-Key": key_id,
        "X-Jobd-Timestamp": stamp,
        "X-Jobd-Nonce": once,
        "X-Jobd-Signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
    }
