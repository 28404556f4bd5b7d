"""Progress on the dashboard, in a real browser (Debian's chromium, driven by playwright)
against the real daemon running real containers: a job printing `::jobd phase` and
`::jobd progress i/N` markers half a second apart; the jobs list, left open, sees its bar fill
(and an array job's indices end) without a reload; its run page sees the bar move, the phase
timeline list the phases, the time left, and the last phase and 100% once the run has ended.
A message with HTML in it is shown as text, in the browser and in the page as served."""

from __future__ import annotations

import http.client
import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.acceptance.test_dashboard import ARTIFACTS, logged_in, token
from tests.support import Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance, pytest.mark.browser]

STEPS = 24
# preparing, then rendering STEPS frames half a second apart (a message with HTML in it),
# then finalizing
RENDER = f"""
echo '::jobd phase preparing'; sleep 1.5
echo '::jobd phase rendering'
i=0
while [ $i -lt {STEPS} ]; do
  i=$((i + 1)); echo "::jobd progress $i/{STEPS} frame $i <b>x</b>"; sleep 0.5
done
echo '::jobd phase finalizing'; sleep 1
"""


def shot(part: Locator, name: str) -> None:
    """A screenshot of part of a page, kept under test-artifacts/ (looked at, never compared;
    docs/screenshots has copies)."""
    ARTIFACTS.mkdir(exist_ok=True)
    part.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def value_of(bar: Locator) -> float:
    return float(bar.get_attribute("value") or "0")


def moves(bar: Locator, what: str) -> None:
    """The bar's value goes up while we watch."""
    expect(bar).to_be_visible(timeout=30_000)
    first = value_of(bar)
    wait_until(lambda: value_of(bar) > first, 15, f"{what} to move on from {first}")


@pytest.mark.timeout(90)
def test_the_jobs_list_and_the_run_page_show_the_bar_move_and_the_phases_live(
    browser: Browser, daemon: Daemon
) -> None:
    page = logged_in(browser, daemon)
    page.evaluate("window.notReloaded = true")
    job = daemon.submit(command=["sh", "-c", RENDER], name="render-frames")
    array = daemon.submit(
        command=["sleep", "1"], name="sweep", array={"indices": "0-3", "parallelism": 2}
    )
    run_id = job["latestRunId"]

    row = page.locator(f"#job-{job['id']}")
    moves(row.get_by_role("progressbar"), "the jobs list's bar")
    expect(row).to_contain_text("rendering")
    expect(row.locator(".eta")).to_contain_text(re.compile(r"\d+s left"), timeout=10_000)
    indices = page.locator(f"#job-{array['id']}").get_by_role("progressbar")
    expect(indices).to_have_attribute("max", "4")
    expect(indices).to_have_attribute("value", "4", timeout=30_000)
    expect(page.locator(f"#job-{array['id']}")).to_contain_text("4/4 indices")
    assert page.evaluate("window.notReloaded") is True, "pushed to the open page, no reload"
    shot(page.locator("table.jobs"), "jobs-progress")

    row.get_by_role("link", name=run_id).click()
    moves(page.locator("#run-bar").get_by_role("progressbar"), "the run page's bar")
    phases = page.locator("#phases")
    expect(phases).to_contain_text("preparing")
    expect(phases).to_contain_text("rendering")
    expect(page.locator("#run-progress")).to_contain_text(f"of {STEPS}")
    message = page.locator("#progress-message")
    expect(message).to_contain_text("<b>x</b>")  # as text: the job's HTML is not markup
    assert message.locator("b").count() == 0
    shot(page.locator("#run-progress"), "run-progress")

    page.evaluate("window.notReloaded = true")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=40_000)
    expect(phases).to_contain_text("finalizing", timeout=15_000)  # written after it ended
    bar = page.locator("#run-bar").get_by_role("progressbar")
    expect(bar).to_have_attribute("value", "1.0")
    expect(page.locator("#run-bar")).to_contain_text("100%")
    assert page.evaluate("window.notReloaded") is True
    assert [p["name"] for p in daemon.run(run_id)["phases"]] == [
        "preparing",
        "rendering",
        "finalizing",
    ]

    served = page_as_served(daemon, f"/runs/{run_id}")
    assert "frame 24 &lt;b&gt;x&lt;/b&gt;" in served and "<b>x</b>" not in served


def page_as_served(daemon: Daemon, path: str) -> str:
    bearer = {"Authorization": f"Bearer {token(daemon, 'read')}"}
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    connection.request("GET", path, headers=bearer)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 200, body[:200]
    return body


def test_a_page_without_progress_shows_none(browser: Browser, daemon: Daemon) -> None:
    job = daemon.submit(command=["true"])
    daemon.wait_status(job["latestRunId"])
    page: Page = logged_in(browser, daemon)
    expect(page.locator(f"#job-{job['id']} .progress-cell")).to_have_text("-")
    page.goto(f"{daemon.url}/runs/{job['latestRunId']}")
    expect(page.locator("#status")).to_have_text("succeeded")
    assert page.locator("#run-progress").inner_text().strip() == ""
