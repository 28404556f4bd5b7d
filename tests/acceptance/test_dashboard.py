"""The dashboard in a real browser (Debian's chromium, driven by playwright) against the real
daemon running real containers: a login with a token; a job that appears live on the jobs
page; its run page following a log line printed after the page opened, charting its CPU, and
cancelling it; the node page; and what a page without a login, or an action without its CSRF
token, gets. Screenshots are kept under test-artifacts/ (looked at, never compared)."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# a run that prints, then keeps a CPU busy, then prints again well after its page opened
WORK = "echo started; yes > /dev/null & sleep 6; echo printed-after-the-page-opened; sleep 300"


@pytest.fixture
def dashboard(daemon_factory: Any) -> Daemon:
    return daemon_factory(config="[metrics]\nsample_seconds = 1\n")


def token(daemon: Daemon, scope: str = "submit") -> str:
    made = daemon.post("/v1/tokens", {"name": f"browser-{scope}", "scope": scope})
    assert made.status == 201, made.text
    return str(made.body["secret"])


def logged_in(browser: Browser, daemon: Daemon) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{daemon.url}/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.fill("input[name=token]", "jobd_not-a-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("unknown token")
    page.fill("input[name=token]", token(daemon))
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_jobs_appear_live_and_a_run_page_follows_charts_and_cancels(
    browser: Browser, dashboard: Daemon
) -> None:
    page = logged_in(browser, dashboard)
    job = dashboard.submit(command=["sh", "-c", WORK], name="render-frames")
    row = page.locator(f"#job-{job['id']}")
    expect(row).to_be_visible(timeout=10_000)  # pushed to the open page, no reload
    expect(row).to_contain_text("render-frames")
    shot(page, "jobs")

    row.get_by_role("link", name=job["latestRunId"]).click()
    expect(page.locator("#status")).to_have_text("running", timeout=15_000)
    log = page.locator("#log")
    expect(log).to_contain_text("printed-after-the-page-opened", timeout=20_000)
    chart = page.locator("#chart-cpu_usage")
    expect(chart).to_have_attribute("data-points", re.compile(r"^([3-9]|\d\d+)$"), timeout=20_000)
    expect(page.locator("#chart-cpu_usage canvas")).to_be_visible()
    shot(page, "run")

    page.click("#cancel")
    expect(page.locator("#status")).to_have_text(re.compile("cancell"), timeout=20_000)
    expect(page.locator("#status")).to_have_text("cancelled", timeout=20_000)
    assert dashboard.run(job["latestRunId"])["status"] == "cancelled"
    expect(page.locator("#run-events")).to_contain_text("cancelled")


def test_the_node_page_shows_capacity_holders_and_the_queue(
    browser: Browser, dashboard: Daemon
) -> None:
    cpus = int(dashboard.get("/v1/node").body["capacity"]["cpus"])
    holder = dashboard.submit(command=["sleep", "300"], resources={"cpuCount": cpus})
    dashboard.wait_status(holder["latestRunId"], {"running"})
    waiting = dashboard.submit(command=["true"])
    page = logged_in(browser, dashboard)
    page.goto(f"{dashboard.url}/node")
    expect(page.locator("table.capacity")).to_contain_text("CPUs")
    expect(page.locator("table.holders")).to_contain_text(holder["latestRunId"])
    queue = page.locator("table.queue")
    expect(queue).to_contain_text(waiting["latestRunId"])
    expect(queue).to_contain_text("CPU")  # why it waits
    shot(page, "node")
    dashboard.post(f"/v1/runs/{holder['latestRunId']}/cancel")
    expect(queue).not_to_contain_text(waiting["latestRunId"], timeout=20_000)  # live


def test_without_a_login_only_the_login_page_and_actions_need_their_csrf_token(
    browser: Browser, dashboard: Daemon
) -> None:
    job = dashboard.submit(command=["sleep", "300"])
    run_id = job["latestRunId"]
    assert request(dashboard, "GET", "/").status == 303  # to the login page
    assert request(dashboard, "GET", f"/runs/{run_id}").status == 303
    assert request(dashboard, "GET", "/login").status == 200
    bearer = {"Authorization": f"Bearer {token(dashboard, 'read')}"}
    assert request(dashboard, "GET", "/", headers=bearer).status == 200, "a script's token"

    page = logged_in(browser, dashboard)
    cookie = next(c for c in page.context.cookies() if c["name"] == "jobd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    session = {"Cookie": f"jobd_session={cookie['value']}"}
    assert request(dashboard, "GET", "/v1/jobs", headers=session).status == 200
    forged = request(dashboard, "POST", f"/runs/{run_id}/cancel", body={}, headers=session)
    assert forged.status == 403, "no CSRF token: refused"
    assert dashboard.run(run_id)["status"] != "cancelled"
    api = request(dashboard, "POST", f"/v1/runs/{run_id}/cancel", headers=session)
    assert api.status == 403, "the API through the cookie: the CSRF token too"

    page.click("form[action='/logout'] button")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert request(dashboard, "GET", "/v1/jobs", headers=session).status == 401
    dashboard.post(f"/v1/runs/{run_id}/cancel")


def request(
    daemon: Daemon,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    form = urllib.parse.urlencode(body).encode() if body is not None else None
    sent = {**(headers or {})}
    if form is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=form, headers=sent)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_jobs_page_filters_by_status_name_label_and_search(dashboard: Daemon) -> None:
    running = dashboard.submit(command=["sleep", "300"], name="trainer", labels={"team": "cv"})
    done = dashboard.submit(command=["true"], name="backup-nightly", labels={"team": "ops"})
    dashboard.wait_status(running["latestRunId"], {"running"})
    dashboard.wait_status(done["latestRunId"])
    login = request(dashboard, "POST", "/login", body={"token": token(dashboard, "read")})
    assert login.status == 303
    cookie = login.getheader("Set-Cookie", "").split(";")[0]

    def rows(query: str) -> str:
        body = rows_page(dashboard, cookie, query)
        return body.split('id="job-rows"', 1)[1].split("</tbody>", 1)[0]

    assert running["id"] in rows("status=running") and done["id"] not in rows("status=running")
    by_name = rows("name=backup-nightly")
    assert done["id"] in by_name and running["id"] not in by_name
    assert running["id"] in rows("label=team%3Dcv") and done["id"] not in rows("label=team%3Dcv")
    assert done["id"] in rows("q=nightly") and running["id"] not in rows("q=nightly")
    assert "not a run status" in rows_page(dashboard, cookie, "status=bogus")
    dashboard.post(f"/v1/runs/{running['latestRunId']}/cancel")


def rows_page(daemon: Daemon, cookie: str, query: str) -> str:
    page = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    page.request("GET", f"/?{query}", headers={"Cookie": cookie})
    body = page.getresponse().read().decode()
    page.close()
    return body
