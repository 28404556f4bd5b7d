"""Tokens against a real store: a bearer token opens the API as its owner with its scope
until it is revoked or expires; a signing key's requests pass only when fresh, unreplayed
and signed over exactly what was sent; jobctl signs as jobd checks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from jobctl.signing import signed_headers
from jobd.config import Config
from jobd.domain.owners import Caller, Owner, Scope
from jobd.domain.records import now
from jobd.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from jobd.services import tokens as tokens_module
from jobd.services.tokens import SignedRequest, Tokens
from jobd.store import Store

ALICE = Caller(owner=Owner(uid=2001, user="alice", via="unix"), admin=False)
CAROL = Caller(owner=Owner(uid=2003, user="carol", via="unix"), admin=True)
DAEMON_TOKEN = "d" * 43


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobd.db")
    yield s
    await s.close()


@pytest.fixture
def tokens(store: Store, tmp_path: Path) -> Tokens:
    config = Config(data_dir=tmp_path, socket=tmp_path / "s", admins=frozenset({"carol"}))
    return Tokens(store, config, daemon_token=DAEMON_TOKEN, signing_key=b"k" * 32)


async def test_a_bearer_token_is_its_owner_with_its_scope_until_revoked(tokens: Tokens) -> None:
    made = await tokens.create({"name": "ci", "scope": "read"}, ALICE)
    secret = made["secret"]
    assert secret.startswith("jobd_") and "keyId" not in made
    who = await tokens.bearer(f"bearer {secret}")  # the scheme in any case (RFC 7235)
    assert who.owner.uid == 2001 and who.owner.via == "token"
    assert who.scope is Scope.READ and not who.admin and who.token_id == made["token"]["id"]
    assert who.may(writes=False) and not who.may(writes=True)
    listed = await tokens.list_tokens(ALICE.reach)
    assert [t["name"] for t in listed] == ["ci"] and "secret" not in str(listed)
    await tokens.revoke("ci", ALICE.reach)  # by name
    with pytest.raises(Unauthorized):
        await tokens.bearer(f"Bearer {secret}")
    assert (await tokens.get(made["token"]["id"], ALICE.reach))["revokedAt"] is not None


async def test_only_a_hash_is_kept_and_the_daemon_token_is_an_admin(
    tokens: Tokens, store: Store
) -> None:
    made = await tokens.create({}, ALICE)
    (kept,) = await store.list_tokens(reach=ALICE.reach)
    assert kept.secret_hash == hashlib.sha256(made["secret"].encode()).hexdigest()
    assert made["token"]["scope"] == "submit"  # the default
    daemon = await tokens.bearer(f"Bearer {DAEMON_TOKEN}")
    assert daemon.admin and daemon.owner.via == "tcp"
    for wrong in ("", "Bearer", "Basic " + made["secret"], "Bearer jobd_nope"):
        with pytest.raises(Unauthorized):
            await tokens.bearer(wrong)


async def test_tokens_are_their_owners_alone(tokens: Tokens) -> None:
    made = await tokens.create({"name": "mine"}, ALICE)
    bob = Caller(owner=Owner(uid=2002, user="bob", via="unix"), admin=False)
    for key in (made["token"]["id"], "mine"):
        with pytest.raises(NotFound):
            await tokens.get(key, bob.reach)
        with pytest.raises(NotFound):
            await tokens.revoke(key, bob.reach)
    assert await tokens.list_tokens(bob.reach) == []
    assert len(await tokens.list_tokens(CAROL.reach)) == 1  # an admin reaches all


async def test_creation_rules(tokens: Tokens) -> None:
    with pytest.raises(Forbidden):  # only an admin holds an admin token
        await tokens.create({"scope": "admin"}, ALICE)
    admin = await tokens.bearer(
        f"Bearer {(await tokens.create({'scope': 'admin'}, CAROL))['secret']}"
    )
    assert admin.admin
    over_tcp = Caller(owner=Owner(uid=2001, user="alice", via="token"), admin=False)
    with pytest.raises(Forbidden):  # a token cannot make more tokens
        await tokens.create({}, over_tcp)
    await tokens.create({"name": "ci"}, ALICE)
    with pytest.raises(Conflict):
        await tokens.create({"name": "ci"}, ALICE)
    for bad in ({"expiresInSeconds": 5}, {"scope": "root"}, {"name": "../x"}, {"extra": 1}):
        with pytest.raises(InvalidRequest):
            await tokens.create(bad, ALICE)


async def test_an_expired_token_opens_nothing(tokens: Tokens) -> None:
    made = await tokens.create({"expiresInSeconds": 60}, ALICE)
    later = now() + timedelta(seconds=61)
    with mock.patch.object(tokens_module, "now", lambda: later), pytest.raises(Unauthorized):
        await tokens.bearer(f"Bearer {made['secret']}")


def signed(
    made: dict[str, Any], method: str, target: str, body: bytes = b"", **kw: Any
) -> SignedRequest:
    headers = signed_headers(
        made["keyId"], made["secret"], method, target, hashlib.sha256(body).hexdigest(), **kw
    )
    return SignedRequest(
        key_id=headers["X-Jobd-Key"],
        timestamp=headers["X-Jobd-Timestamp"],
        nonce=headers["X-Jobd-Nonce"],
        signature=headers["X-Jobd-Signature"],
        method=method,
        target=target,
    )


async def check(tokens: Tokens, request: SignedRequest, body: bytes = b"") -> Caller:
    who, body_check = await tokens.signed(request)
    body_check(hashlib.sha256(body).hexdigest())
    return who


async def test_a_signed_request_passes_once_and_only_as_signed(tokens: Tokens) -> None:
    made = await tokens.create({"kind": "hmac"}, ALICE)
    assert made["keyId"] == made["token"]["id"]
    body = b'{"image": "busybox"}'
    request = signed(made, "POST", "/v1/jobs?x=1", body)
    who = await check(tokens, request, body)
    assert who.owner.uid == 2001 and who.owner.via == "hmac"
    with pytest.raises(Unauthorized, match="replayed"):
        await check(tokens, request, body)
    tampered: list[tuple[SignedRequest, bytes]] = [
        (signed(made, "POST", "/v1/jobs?x=1", body), body + b" "),
    ]
    original = signed(made, "POST", "/v1/jobs?x=1", body)
    for change in ({"method": "PUT"}, {"target": "/v1/jobs?x=2"}, {"target": "/v1/job?x=1"}):
        tampered.append((SignedRequest(**{**_fields(original), "nonce": _fresh(), **change}), body))
    for bad, sent in tampered:
        with pytest.raises(Unauthorized, match="signature"):
            await check(tokens, bad, sent)


async def test_stale_unknown_and_malformed_signatures_fail(tokens: Tokens) -> None:
    made = await tokens.create({"kind": "hmac"}, ALICE)
    old = int(time.time()) - 310
    with pytest.raises(Unauthorized, match="X-Jobd-Timestamp"):
        await check(tokens, signed(made, "GET", "/v1/jobs", timestamp=old))
    with pytest.raises(Unauthorized, match="X-Jobd-Timestamp"):
        await check(tokens, signed(made, "GET", "/v1/jobs", timestamp=int(time.time()) + 310))
    with pytest.raises(Unauthorized, match="X-Jobd-Nonce"):
        await check(tokens, signed(made, "GET", "/v1/jobs", nonce="short"))
    with pytest.raises(Unauthorized, match="signing key"):
        await check(
            tokens, SignedRequest(**{**_fields(signed(made, "GET", "/")), "key_id": "tok-x"})
        )
    bearer = await tokens.create({}, ALICE)  # a bearer token's id is no signing key
    with pytest.raises(Unauthorized, match="signing key"):
        await tokens.signed(
            SignedRequest(**{**_fields(signed(made, "GET", "/")), "key_id": bearer["token"]["id"]})
        )
    await tokens.revoke(made["keyId"], ALICE.reach)
    with pytest.raises(Unauthorized):
        await check(tokens, signed(made, "GET", "/v1/jobs"))


async def test_a_replay_across_a_restart_is_seen(store: Store, tmp_path: Path) -> None:
    """A stop keeps the nonces for the next start; after a crash they are lost, so a request
    signed before that start is refused whatever its nonce."""
    config = Config(data_dir=tmp_path, socket=tmp_path / "s")
    nonces = tmp_path / "nonces"

    def started() -> Tokens:
        return Tokens(store, config, daemon_token=DAEMON_TOKEN, signing_key=b"k" * 32,
                      nonce_file=nonces)  # fmt: skip

    first = started()
    await first.load()
    made = await first.create({"kind": "hmac"}, ALICE)
    accepted = signed(made, "GET", "/v1/jobs", timestamp=int(time.time()) - 1)
    await check(first, accepted)
    first.keep_nonces()
    assert nonces.stat().st_mode & 0o777 == 0o600
    second = started()
    await second.load()
    assert not nonces.exists(), "read once: a crash later leaves none"
    with pytest.raises(Unauthorized, match="replayed"):
        await check(second, accepted)
    unseen = signed(made, "GET", "/v1/jobs", timestamp=int(time.time()) - 1)
    await check(second, unseen)  # a clean restart refuses nothing else

    crashed = started()  # second never kept its nonces
    await crashed.load()
    with pytest.raises(Unauthorized, match="before jobd restarted"):
        await check(crashed, signed(made, "GET", "/v1/jobs", timestamp=int(time.time()) - 1))
    await check(crashed, signed(made, "GET", "/v1/jobs", timestamp=int(time.time()) + 2))


async def test_a_restart_keeps_live_tokens(store: Store, tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, socket=tmp_path / "s")
    first = Tokens(store, config, daemon_token=DAEMON_TOKEN, signing_key=b"k" * 32)
    kept = await first.create({}, ALICE)
    gone = await first.create({}, ALICE)
    await first.revoke(gone["token"]["id"], ALICE.reach)
    restarted = Tokens(store, config, daemon_token=DAEMON_TOKEN, signing_key=b"k" * 32)
    await restarted.load()
    assert (await restarted.bearer(f"Bearer {kept['secret']}")).owner.uid == 2001
    with pytest.raises(Unauthorized):
        await restarted.bearer(f"Bearer {gone['secret']}")


def _fields(request: SignedRequest) -> dict[str, str]:
    return {f: getattr(request, f) for f in SignedRequest.__dataclass_fields__}


def _fresh() -> str:
    return hashlib.sha256(str(time.perf_counter_ns()).encode()).hexdigest()[:16]
