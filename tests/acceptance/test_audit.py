"""The audit log through the real daemon: each state-changing request, whatever its outcome,
is recorded with who made it, from which peer or token, what it asked, how it ended and the
ids it touched; reads are not; admins read the log, others get 403."""

from __future__ import annotations

import contextlib
import http.client
import json
from typing import Any

import pytest

from tests.acceptance.conftest import ALICE, BOB, CAROL
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


@pytest.fixture
def daemon(team_daemon: Daemon) -> Daemon:
    return team_daemon


def entries(daemon: Daemon, query: str = "") -> list[dict[str, Any]]:
    response = daemon.request("GET", f"/v1/audit{query}", user=CAROL)
    assert response.status == 200, response.text
    return response.body["entries"]  # type: ignore[no-any-return]


def test_every_state_changing_request_is_recorded(daemon: Daemon) -> None:
    job = daemon.request("POST", "/v1/jobs", {"image": TEST_IMAGE, "network": "none",
                                              "command": ["sleep", "300"]}, user=ALICE)  # fmt: skip
    assert job.status == 201
    run_id = job.body["latestRunId"]
    assert daemon.request("POST", f"/v1/runs/{run_id}/cancel", user=BOB).status == 404
    assert daemon.request("GET", f"/v1/jobs/{job.body['id']}", user=ALICE).status == 200
    token = daemon.request("POST", "/v1/tokens", {"name": "ci"}, user=ALICE)
    assert token.status == 201
    with contextlib.closing(
        http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    ) as tcp:
        tcp.request("POST", f"/v1/runs/{run_id}/cancel", body=b"{}",
                    headers={"Authorization": f"Bearer {token.body['secret']}"})  # fmt: skip
        answer = tcp.getresponse()
        assert answer.status == 202 and answer.read()
        tcp.request("DELETE", f"/v1/jobs/{job.body['id']}", headers={"Authorization": "Bearer x"})
        answer = tcp.getresponse()
        assert answer.status == 401 and answer.read()

    log = entries(daemon)
    (refused, cancelled, made_token, bobs, created) = log[:5]
    assert created["user"] == ALICE and created["via"] == "unix" and created["peer"] == "unix"
    assert (created["method"], created["path"], created["status"]) == ("POST", "/v1/jobs", 201)
    assert created["ids"] == [job.body["id"], run_id] and created["outcome"] == "ok"
    assert (bobs["user"], bobs["status"], bobs["outcome"]) == (BOB, 404, "refused")
    assert bobs["ids"] == [run_id]
    assert made_token["ids"] == [token.body["token"]["id"], "ci"]
    assert token.body["secret"] not in json.dumps(log), "never a secret"
    assert cancelled["via"] == "token" and cancelled["tokenId"] == token.body["token"]["id"]
    assert cancelled["peer"] == "127.0.0.1" and cancelled["status"] == 202
    assert refused["user"] is None and refused["status"] == 401
    assert not [e for e in log if e["method"] == "GET"], "reads are not recorded"

    assert [e["user"] for e in entries(daemon, f"?user={BOB}")] == [BOB]
    page = entries(daemon, "?limit=2")
    assert [e["id"] for e in page] == [log[0]["id"], log[1]["id"]]
    assert daemon.request("GET", "/v1/audit", user=ALICE).status == 403
    shown = daemon.jobctl("audit", "--limit", "5").stdout
    assert "POST /v1/jobs" in shown and "401 refused" in shown and ALICE in shown
