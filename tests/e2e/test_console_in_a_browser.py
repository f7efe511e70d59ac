"""The risk officers' console driven in a real browser (Debian's Chromium, headless, through
Playwright): a risk officer signs in, opens the queue, reads a request and approves it with a
comment; a model developer signs in and finds no way to decide. Screenshots of the queue and
the request page go to ``SCREENSHOT_DIR`` (default ``data/screenshots``).

``.ci/run`` installs Chromium, so CI always runs this; elsewhere it runs where
``/usr/bin/chromium`` exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import transaction

from governance.models import ApprovalRequest
from registry.models import VersionState
from tests.factories import submitted

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"

if not CHROMIUM.exists() and os.environ.get("CI") == "true":
    raise RuntimeError("CI runs the browser test: install Debian's chromium (.ci/run does)")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are ordinary blocking calls, which Django would otherwise refuse there.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def shots() -> Path:
    path = Path(os.environ.get("SCREENSHOT_DIR", "data/screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(browser, live_server, username):
    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def test_a_risk_officer_approves_in_the_browser_and_a_developer_cannot(
    browser, shots, live_server, developer, owner, risk_officer
):
    with transaction.atomic():  # a flag's change and its audit event go together
        for user in (developer, risk_officer):
            user.is_staff = True
            user.save()
    version, request = submitted(developer, owner, 4)

    page = sign_in(browser, live_server, "risk")
    page.click("text=Awaiting my decision")
    page.wait_for_url("**/admin/governance/awaitingdecision/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.locator(f'a[href$="/awaitingdecision/{request.pk}/change/"]')
    page.screenshot(path=str(shots / "queue.png"), full_page=True)
    row.first.click()
    page.wait_for_url(f"**/admin/governance/approvalrequest/{request.pk}/change/")
    assert version.artifact_sha256 in page.inner_text("#version")
    assert "T4 approval policy, version 1" in page.inner_text("#summary")
    page.screenshot(path=str(shots / "request-page.png"), full_page=True)
    page.check("input[name=outcome][value=approve]")
    page.fill("textarea[name=comment]", "Evidence read; acknowledged.")
    page.click("input[name=_decide]")
    page.wait_for_selector(".messagelist .success")
    assert f"request #{request.pk}" in page.inner_text(".messagelist")

    request = ApprovalRequest.objects.get(pk=request.pk)
    version.refresh_from_db()
    assert (request.state, version.state) == ("approved", VersionState.APPROVED)
    assert request.decisions.get().comment == "Evidence read; acknowledged."

    _, pending = submitted(developer, owner, 4)
    dev = sign_in(browser, live_server, "dev")
    dev.goto(f"{live_server.url}/admin/governance/approvalrequest/{pending.pk}/change/")
    assert dev.inner_text("#refusal") == "You cannot approve: you created this version."
    assert dev.locator("input[name=_decide]").count() == 0
    dev.goto(f"{live_server.url}/admin/governance/awaitingdecision/")
    assert "0 awaiting my decision" in dev.inner_text("#changelist")
