"""API tokens and signed requests through the real daemon, its TCP port and podman: a user's
token acts as that user with its scope, and stops at once when revoked; a request signed with
a user's key passes once, fresh and as signed, and replays, stale and tampered ones fail;
jobctl signs every kind of request (JSON, an upload, a followed log, exec); repeated
failures slow down."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobctl.signing import signed_headers
from tests.acceptance.conftest import ALICE, BOB, CAROL
from tests.support import TEST_IMAGE, VENV_BIN, Daemon, Response

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


@pytest.fixture
def daemon(team_daemon: Daemon) -> Daemon:
    return team_daemon


def make_token(daemon: Daemon, user: str, **body: Any) -> dict[str, Any]:
    """A token `user` makes for themselves over the Unix socket."""
    response = daemon.request("POST", "/v1/tokens", body, user=user)
    assert response.status == 201, response.text
    return response.body  # type: ignore[no-any-return]


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    connection.request(method, target, body=body, headers=headers or {})
    response = connection.getresponse()
    text = response.read().decode()
    parsed = json.loads(text) if text.startswith("{") else None
    return Response(status=response.status, body=parsed, text=text)


@pytest.fixture
def connection(daemon: Daemon) -> Iterator[http.client.HTTPConnection]:
    """One kept-alive connection to the daemon's TCP port, closed whatever the test did."""
    with contextlib.closing(
        http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    ) as kept:
        yield kept


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def job_body(**spec: Any) -> bytes:
    return json.dumps({"image": TEST_IMAGE, "network": "none", **spec}).encode()


def test_a_token_is_its_owner_on_tcp_and_a_revocation_bites_at_once(
    daemon: Daemon, connection: http.client.HTTPConnection
) -> None:
    made = make_token(daemon, ALICE, name="ci")
    assert made["token"]["owner"]["user"] == ALICE and made["secret"].startswith("jobd_")
    bobs = daemon.request("POST", "/v1/jobs", json.loads(job_body(command=["true"])), user=BOB)
    assert bobs.status == 201

    auth = bearer(made["secret"])
    created = exchange(connection, "POST", "/v1/jobs", job_body(command=["true"]), auth)
    assert created.status == 201, created.text
    assert created.body["owner"] == {"uid": created.body["owner"]["uid"], "user": ALICE,
                                     "via": "token"}  # fmt: skip
    listed = exchange(connection, "GET", "/v1/jobs", headers=auth)
    assert [j["id"] for j in listed.body["jobs"]] == [created.body["id"]]
    assert exchange(connection, "GET", f"/v1/jobs/{bobs.body['id']}", headers=auth).status == 404
    assert exchange(connection, "GET", "/v1/jobs?allUsers=true", headers=auth).status == 403
    more = exchange(connection, "POST", "/v1/tokens", b"{}", auth)
    assert more.status == 403 and "Unix socket" in more.text, "a token makes no tokens"

    shown = daemon.request("GET", "/v1/tokens", user=ALICE).body["tokens"]
    assert [t["name"] for t in shown] == ["ci"] and "secret" not in json.dumps(shown)
    assert shown[0]["lastUsedAt"] is not None
    assert daemon.request("GET", "/v1/tokens", user=BOB).body["tokens"] == []
    assert daemon.request("DELETE", "/v1/tokens/ci", user=BOB).status == 404
    revoked = daemon.request("DELETE", "/v1/tokens/ci", user=ALICE)
    assert revoked.status == 200 and revoked.body["revokedAt"], revoked.text

    after = exchange(connection, "GET", "/v1/jobs", headers=auth)
    assert after.status == 401 and "revoked" in after.text


def test_scopes_limit_what_a_token_may_do(
    daemon: Daemon, connection: http.client.HTTPConnection
) -> None:
    reader = make_token(daemon, ALICE, scope="read")["secret"]
    assert exchange(connection, "GET", "/v1/jobs", headers=bearer(reader)).status == 200
    for method, target in (("POST", "/v1/jobs"), ("GET", "/v1/runs/run-x/exec?cmd=true"),
                           ("POST", "/v1/volumes")):  # fmt: skip
        refused = exchange(connection, method, target, job_body(), bearer(reader))
        assert refused.status == 403 and "scope is read" in refused.text, (method, refused.text)

    no_admin = daemon.request("POST", "/v1/tokens", {"scope": "admin"}, user=ALICE)
    assert no_admin.status == 403 and "not an admin" in no_admin.text
    admin = make_token(daemon, CAROL, scope="admin")["secret"]
    everyone = exchange(connection, "GET", "/v1/tokens?allUsers=true", headers=bearer(admin))
    assert everyone.status == 200 and {t["owner"]["user"] for t in everyone.body["tokens"]} == {
        ALICE, CAROL}  # fmt: skip
    submitter = make_token(daemon, CAROL, scope="submit")["secret"]
    not_admin = exchange(connection, "GET", "/v1/jobs?allUsers=true", headers=bearer(submitter))
    assert not_admin.status == 403, "an admin's submit token has a user's reach"


def signed(
    key: dict[str, Any], method: str, target: str, body: bytes = b"", **kw: Any
) -> dict[str, str]:
    digest = hashlib.sha256(body).hexdigest()
    headers = signed_headers(key["keyId"], key["secret"], method, target, digest, **kw)
    return {"Content-Type": "application/json", **headers}


def test_signed_requests_pass_once_fresh_and_as_signed(
    daemon: Daemon, connection: http.client.HTTPConnection
) -> None:
    key = make_token(daemon, ALICE, kind="hmac", name="laptop")
    assert set(key) == {"token", "keyId", "secret"} and key["token"]["kind"] == "hmac"
    body = job_body(command=["true"])
    headers = signed(key, "POST", "/v1/jobs", body)
    created = exchange(connection, "POST", "/v1/jobs", body, headers)
    assert created.status == 201 and created.body["owner"]["via"] == "hmac", created.text
    replayed = exchange(connection, "POST", "/v1/jobs", body, headers)
    assert replayed.status == 401 and "replayed" in replayed.text

    listing = "/v1/jobs?limit=5"
    cases = {
        "a changed body": ("POST", "/v1/jobs", job_body(command=["false"]),
                           signed(key, "POST", "/v1/jobs", body)),
        "a changed query": ("GET", "/v1/jobs?limit=6", None, signed(key, "GET", listing)),
        "a changed path": ("GET", "/v1/volumes?limit=5", None, signed(key, "GET", listing)),
        "a changed method": ("DELETE", f"/v1/jobs/{created.body['id']}", None,
                             signed(key, "GET", f"/v1/jobs/{created.body['id']}")),
        # well past the 300 s either way (a second's rounding must not make it pass)
        "a stale timestamp": ("GET", listing, None,
                              signed(key, "GET", listing, timestamp=int(time.time()) - 310)),
        "a future timestamp": ("GET", listing, None,
                               signed(key, "GET", listing, timestamp=int(time.time()) + 310)),
        "another key's secret": ("GET", listing, None,
                                 signed({**key, "secret": "x" * 43}, "GET", listing)),
        "a bad signature on the uploads' listing": (
            "GET", "/v1/uploads", None, signed({**key, "secret": "x" * 43}, "GET", "/v1/uploads")),
    }  # fmt: skip
    for case, (method, target, sent, case_headers) in cases.items():
        response = exchange(connection, method, target, sent, case_headers)
        assert response.status == 401, f"{case}: {response.status} {response.text}"
    assert daemon.run(created.body["latestRunId"])["jobId"] == created.body["id"], "not deleted"
    assert exchange(connection, "GET", listing, None, signed(key, "GET", listing)).status == 200

    upload = b"signed file\n"
    target = "/v1/uploads?name=f.txt"
    tampered = {**signed(key, "POST", target, upload), "Content-Type": "application/octet-stream"}
    refused = exchange(connection, "POST", target, upload + b"!", tampered)
    assert refused.status == 401 and "signature" in refused.text
    good = {**signed(key, "POST", target, upload), "Content-Type": "application/octet-stream"}
    kept = exchange(connection, "POST", target, upload, good)
    assert kept.status == 201 and kept.body["sha256"] == hashlib.sha256(upload).hexdigest()
    uploads = daemon.request("GET", "/v1/uploads", user=ALICE).body["uploads"]
    assert [u["slug"] for u in uploads] == [kept.body["slug"]], "the tampered one was not kept"

    daemon.request("DELETE", "/v1/tokens/laptop", user=ALICE)
    gone = exchange(connection, "GET", listing, None, signed(key, "GET", listing))
    assert gone.status == 401


def test_jobctl_makes_tokens_and_signs_every_kind_of_request(
    daemon: Daemon, tmp_path: Path
) -> None:
    """jobctl's token commands on the socket; then jobctl over TCP with alice's signing key
    acts as alice (whoever runs it): a job run and followed, a listing, an upload, an exec
    into a running job; a wrong secret and a revoked key are refused."""
    made = daemon.jobctl("token", "create", "--name", "mine", "--expires", "2h", "--scope", "read")
    assert made.returncode == 0 and made.stdout.startswith("jobd_"), made.stderr
    listed = daemon.jobctl("token", "ls")
    assert "mine" in listed.stdout and "read" in listed.stdout, listed.stderr
    assert made.stdout.split()[0] not in listed.stdout, "never the secret again"
    assert daemon.jobctl("token", "revoke", "mine").returncode == 0
    assert "revoked" in daemon.jobctl("token", "inspect", "mine").stdout

    key = make_token(daemon, ALICE, kind="hmac", name="cli")
    signing = {"JOBD_URL": daemon.url, "JOBD_KEY_ID": key["keyId"], "JOBD_SECRET": key["secret"]}

    def jobctl(*args: str, env: dict[str, str] = signing) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "jobctl"), *args], env={**os.environ, **env}, capture_output=True,
            text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    ran = jobctl("run", "--network", "none", "--follow", TEST_IMAGE, "--", "echo",
                 "signed hello")  # fmt: skip
    assert ran.returncode == 0 and "signed hello" in ran.stdout, ran.stderr
    shown = jobctl("ls", "--json")
    assert shown.returncode == 0, shown.stderr
    (job,) = json.loads(shown.stdout)["jobs"]
    assert job["owner"]["user"] == ALICE and job["owner"]["via"] == "hmac"

    data = tmp_path / "data.txt"
    data.write_text("uploaded with a signature\n")
    sent = jobctl("upload", "add", str(data), "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()

    sleeper = jobctl("run", "--network", "none", TEST_IMAGE, "--", "sleep", "300")
    assert sleeper.returncode == 0, sleeper.stderr
    run_id = next(w for w in sleeper.stdout.split() if w.startswith("run-"))
    daemon.wait_status(run_id, {"running"})
    inside = jobctl("exec", run_id, "--", "echo", "in the container")
    assert inside.returncode == 0 and "in the container" in inside.stdout, inside.stderr
    wrong = jobctl("ls", env={**signing, "JOBD_SECRET": "not-the-secret"})
    assert wrong.returncode == 1 and "bad signature" in wrong.stderr

    assert daemon.request("DELETE", "/v1/tokens/cli", user=ALICE).status == 200
    after = jobctl("ls")
    assert after.returncode == 1 and "revoked" in after.stderr
    daemon.request("POST", f"/v1/runs/{run_id}/cancel", user=ALICE)


def test_repeated_failures_from_one_peer_slow_down(
    daemon: Daemon, connection: http.client.HTTPConnection
) -> None:
    started = time.monotonic()
    for _ in range(5):
        assert exchange(connection, "GET", "/v1/jobs", headers=bearer("jobd_guess")).status == 401
    assert time.monotonic() - started < 2.0, "the first few are answered at once"
    waits = []
    for _ in range(3):
        began = time.monotonic()
        assert exchange(connection, "GET", "/v1/jobs", headers=bearer("jobd_guess")).status == 401
        waits.append(time.monotonic() - began)
    assert waits[0] >= 0.25 and waits[1] >= 0.5 and waits[2] >= 1.0, waits
    good = make_token(daemon, ALICE)["secret"]
    began = time.monotonic()
    assert exchange(connection, "GET", "/v1/jobs", headers=bearer(good)).status == 200
    assert time.monotonic() - began < 0.25, "a request that authenticates is not held up"


def readme_example(name: str) -> str:
    """The code block that follows `<!-- example: NAME -->` in the README."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    after = text.split(f"<!-- example: {name} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_the_readmes_signed_request_examples_work(daemon: Daemon, tmp_path: Path) -> None:
    key = make_token(daemon, ALICE, kind="hmac")
    env = {**os.environ, "JOBD_URL": daemon.url, "JOBD_KEY_ID": key["keyId"],
           "JOBD_SECRET": key["secret"]}  # fmt: skip
    curl = subprocess.run(["bash", "-euc", readme_example("signed-curl")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert curl.returncode == 0, curl.stderr
    created, listed = (json.loads(line) for line in curl.stdout.replace("}{", "}\n{").splitlines())
    assert created["owner"]["via"] == "hmac", created
    assert [j["id"] for j in listed["jobs"]] == [created["id"]]

    script = tmp_path / "signed.py"
    script.write_text(readme_example("signed-python"))
    python = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert python.returncode == 0, python.stderr
    job_id, ids = python.stdout.split(" ", 1)
    assert job_id.startswith("job-") and job_id in ids and created["id"] in ids
    for job in (created["id"], job_id):
        run = daemon.request("GET", f"/v1/jobs/{job}", user=ALICE).body["latestRunId"]
        daemon.wait_status(run, timeout=120)
