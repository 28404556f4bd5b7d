"""API tokens as the edge asks for them (create, list, read, revoke), and who a request on the
TCP port is: the daemon's own token (an admin's), a user's bearer token, or a request signed
with a user's signing key.

Authentication reads memory only: every token is held by its hash and its id, loaded at start
and changed with each creation and revocation, which this process makes itself; so a
revocation bites on the very next request (and is named in its 401), and checking a token
costs a sha256 and a lookup.
A signing key's secret is never stored: it is HMAC-SHA256(the daemon's signing key, the key
id), derived again on each request, so the database holds nothing that signs.

The nonces of accepted signed requests live in memory, and are written to a file when the
daemon stops and read back when it starts, so a replay across a restart is seen too. After a
crash they are lost: until the window has passed, a request signed before that start is
refused (its nonce may have been used), whatever its nonce.
"""

from __future__ import annotations

import base64
import heapq
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from jobd.config import Config
from jobd.domain.owners import Caller, Owner, Reach, Scope
from jobd.domain.records import new_id, now
from jobd.domain.tokens import (
    DEFAULT_LIFETIME,
    NONCE,
    SIGNATURE_WINDOW_SECONDS,
    TOKEN_ID_PREFIX,
    TOKEN_PREFIX,
    Signer,
    Token,
    TokenKind,
    lifetime_problem,
    secret_hash,
    signing_string,
)
from jobd.errors import Forbidden, InvalidRequest, Unauthorized, lacks_space
from jobd.services.validation import validate
from jobd.store import Store
from jobd.users import user_name

TOUCH_EVERY = timedelta(minutes=1)  # how stale a token's lastUsedAt may be
BodyCheck = Callable[[str], None]  # given the body's sha256, raises Unauthorized if it differs


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """A signed request's headers, and what it signed besides its body."""

    key_id: str
    timestamp: str
    nonce: str
    signature: str
    method: str
    target: str  # the path and query, as sent


class Nonces:
    """The nonces of the signed requests accepted lately, each kept as long as its request's
    timestamp would be accepted again; so a replay within the window is seen."""

    def __init__(self, kept: list[tuple[float, str, str]] | None = None) -> None:
        self._expiries: list[tuple[float, str, str]] = list(kept or [])
        heapq.heapify(self._expiries)
        self._seen = {(key_id, nonce) for _, key_id, nonce in self._expiries}

    def kept(self) -> list[tuple[float, str, str]]:
        """(expiry, key id, nonce) of each nonce remembered."""
        return list(self._expiries)

    def first_use(self, key_id: str, nonce: str, timestamp: int, moment: float) -> bool:
        while self._expiries and self._expiries[0][0] < moment:
            _, old_key, old_nonce = heapq.heappop(self._expiries)
            self._seen.discard((old_key, old_nonce))
        if (key_id, nonce) in self._seen:
            return False
        self._seen.add((key_id, nonce))
        heapq.heappush(self._expiries, (timestamp + SIGNATURE_WINDOW_SECONDS, key_id, nonce))
        return True


class Tokens:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        daemon_token: str,
        signing_key: bytes,
        nonce_file: Path | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._daemon_token = daemon_token.encode()
        self._signing_key = signing_key
        self._nonce_file = nonce_file
        # after a crash, requests signed before this start may have been seen: refused
        self._signed_after: float | None = None
        self._by_hash: dict[str, Token] = {}
        self._by_id: dict[str, Token] = {}
        self._callers: dict[str, Caller] = {}  # who each token is, made once
        self._signers: dict[str, Signer] = {}  # each signing key's, its secret derived once
        self._touched: dict[str, float] = {}
        self._nonces = Nonces()
        uid = os.getuid()
        self._daemon = Caller(
            owner=Owner(uid=uid, user=user_name(uid), via="tcp"), admin=True, scope=Scope.ADMIN
        )

    async def load(self) -> None:
        """Hold every token, and the nonces the last stop kept; at start, before the API
        serves. Without those (a crash), a request signed before now is refused."""
        tokens = await self.store.all_tokens()
        for token in tokens:
            self._hold(token)
        kept = _read_nonces(self._nonce_file) if self._nonce_file else None
        if kept is not None:
            self._nonces = Nonces(kept)
        elif any(t.kind is TokenKind.HMAC for t in tokens):
            self._signed_after = now().timestamp()

    def keep_nonces(self) -> None:
        """At a stop: the nonces still in their window, for the next start to read."""
        if self._nonce_file is not None:
            _write_nonces(self._nonce_file, self._nonces.kept())

    # -- what users ask -------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """A new token for the caller, on the Unix socket only (a token cannot make more
        tokens), with its secret: shown this once."""
        validate(body, "TokenCreate")
        if caller.owner.via != "unix":
            raise Forbidden("tokens are created over the Unix socket (jobctl token create)")
        problem = lifetime_problem(body)
        if problem:
            raise InvalidRequest(problem)
        scope = Scope(body.get("scope", Scope.SUBMIT.value))
        if scope is Scope.ADMIN and not caller.admin:
            raise Forbidden(f"an admin token: {caller.owner.user} is not an admin of jobd")
        token, secret = self._new_token(body, caller.owner, scope)
        await self.store.create_token(token)
        self._hold(token)
        found = {"token": token.to_api(), "secret": secret}
        return found if token.kind is TokenKind.BEARER else {**found, "keyId": token.id}

    def _new_token(self, body: Mapping[str, Any], owner: Owner, scope: Scope) -> tuple[Token, str]:
        kind = TokenKind(body.get("kind", TokenKind.BEARER.value))
        token_id = new_id(TOKEN_ID_PREFIX)
        secret = (
            TOKEN_PREFIX + secrets.token_urlsafe(32)
            if kind is TokenKind.BEARER
            else self._derived_secret(token_id)
        )
        lifetime = body.get("expiresInSeconds")
        created = now()
        token = Token(
            id=token_id,
            owner=owner,
            name=body.get("name"),
            scope=scope,
            kind=kind,
            created_at=created,
            expires_at=created + (timedelta(seconds=lifetime) if lifetime else DEFAULT_LIFETIME),
            secret_hash=secret_hash(secret) if kind is TokenKind.BEARER else None,
        )
        return token, secret

    async def list_tokens(self, reach: Reach) -> list[dict[str, Any]]:
        return [t.to_api() for t in await self.store.list_tokens(reach=reach)]

    async def get(self, key: str, reach: Reach) -> dict[str, Any]:
        return (await self.store.get_token(key, reach=reach)).to_api()

    async def revoke(self, key: str, reach: Reach) -> dict[str, Any]:
        """Revoke a token (by id, or by name): from the next request on, it opens nothing."""
        token = await self.store.get_token(key, reach=reach)
        revoked = await self.store.revoke_token(token.id)
        self._hold(revoked)
        return revoked.to_api()

    # -- who a request is -----------------------------------------------------------------

    async def bearer(self, authorization: str) -> Caller:
        """The caller an `Authorization: Bearer ...` header names. The scheme is
        case-insensitive (RFC 7235); the token is not."""
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized(
                "the TCP API needs a token (Authorization: Bearer <token>) or a signed request"
            )
        if hmac.compare_digest(given.encode(), self._daemon_token):
            return self._daemon
        token = self._by_hash.get(secret_hash(given))
        if token is None:
            raise Unauthorized("unknown token")
        return await self._caller(token)

    async def signed(self, request: SignedRequest) -> tuple[Caller, BodyCheck]:
        """The caller a signed request's key names, once its timestamp and nonce pass; and the
        check of its signature, to call with the body's sha256 when the body has been read
        (at once for a JSON body; after the stream for an upload)."""
        token = self._by_id.get(request.key_id)
        if token is None or token.kind is not TokenKind.HMAC:
            raise Unauthorized(f"unknown signing key {request.key_id!r}")
        self._check_freshness(request)
        caller = await self._caller(token)
        signer = self._signers[token.id]

        def check(body_sha256: str) -> None:
            message = signing_string(
                request.method, request.target, request.timestamp, request.nonce, body_sha256
            )
            if not hmac.compare_digest(signer.sign(message), request.signature.lower()):
                raise Unauthorized(
                    "bad signature: it does not match the method, path, query, timestamp,"
                    " nonce and body sent"
                )

        return caller, check

    def _check_freshness(self, request: SignedRequest) -> None:
        moment = time.time()
        try:
            timestamp = int(request.timestamp)
        except ValueError:
            raise Unauthorized("X-Jobd-Timestamp: unix seconds, an integer") from None
        if abs(moment - timestamp) > SIGNATURE_WINDOW_SECONDS:
            raise Unauthorized(
                f"X-Jobd-Timestamp is {int(moment - timestamp)} s from jobd's clock"
                f" (at most {SIGNATURE_WINDOW_SECONDS} s either way)"
            )
        if self._signed_after is not None and timestamp <= self._signed_after:
            raise Unauthorized("X-Jobd-Timestamp: signed before jobd restarted; sign it again")
        if not NONCE.fullmatch(request.nonce):
            raise Unauthorized("X-Jobd-Nonce: 8 to 128 letters, digits, or . _ ~ -")
        if not self._nonces.first_use(request.key_id, request.nonce, timestamp, moment):
            raise Unauthorized("X-Jobd-Nonce was used before: a replayed request")

    async def _caller(self, token: Token) -> Caller:
        moment = now()
        problem = token.problem(moment)
        if problem:
            raise Unauthorized(problem)
        stamp = moment.timestamp()
        if stamp - self._touched.get(token.id, 0.0) > TOUCH_EVERY.total_seconds():
            self._touched[token.id] = stamp
            await self.store.touch_token(token.id, moment)
        return self._callers[token.id]

    def _derived_secret(self, token_id: str) -> str:
        digest = hmac.digest(self._signing_key, token_id.encode(), "sha256")
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _hold(self, token: Token) -> None:
        self._by_id[token.id] = token
        if token.secret_hash:
            self._by_hash[token.secret_hash] = token
        if token.kind is TokenKind.HMAC:
            self._signers[token.id] = Signer(self._derived_secret(token.id))
        owner = token.owner
        self._callers[token.id] = Caller(
            owner=Owner(
                uid=owner.uid,
                user=owner.user,
                via="hmac" if token.kind is TokenKind.HMAC else "token",
            ),
            admin=token.scope is Scope.ADMIN and self.config.is_admin(owner.user, owner.uid),
            scope=token.scope,
            token_id=token.id,
            projects=self.config.sharing.projects_of(owner.user),
        )


def _read_nonces(path: Path) -> list[tuple[float, str, str]] | None:
    """The nonces a stop kept, once: the file is removed, so a crash later leaves none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    path.unlink()
    try:
        return [(float(e), str(k), str(n)) for e, k, n in orjson.loads(raw)]
    except (ValueError, TypeError):
        return None


def _write_nonces(path: Path, kept: list[tuple[float, str, str]]) -> None:
    """Without room for them (a full disk) none are kept: the next start takes it as a
    crash, which is only stricter."""
    partial = path.with_name(path.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(kept))
    except OSError as e:
        partial.unlink(missing_ok=True)
        if not lacks_space(e):
            raise
        logging.getLogger(__name__).warning("the nonces of signed requests not kept: %s", e)
        return
    partial.replace(path)
