"""The web console in a real headless Chromium (Debian's package, driven by Playwright): sign in, review the
quarantine queue, approve with a reason, waive from an artifact page; then a real client download succeeds.
Also: the session cookie's attributes, CSRF refusal, escaped output, the audit log filters."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients import run_client
from tests.fakes.hf_hub import FakeHub
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.http import get_until_done, request
from tests.integration.test_pipeline_http import NC_CARD, add_model, safetensors_bytes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_sign_in_approve_then_the_client_downloads(make_hubgate, fake_hub: FakeHub, browser: Any) -> None:
    from playwright.sync_api import expect

    weights = safetensors_bytes()
    add_model(fake_hub, "acme/unlicensed", card=None, **{"model.safetensors": weights})
    add_model(fake_hub, "acme/noncommercial", card=NC_CARD)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/unlicensed/resolve/main/model.safetensors"
    held = get_until_done(url)
    assert held.status == 403
    aid = (held.header("X-Error-Message") or "").split("(artifact ")[1].split(")")[0]
    blocked = get_until_done(f"{gate.url}/acme/noncommercial/resolve/main/model.safetensors")
    nc_aid = (blocked.header("X-Error-Message") or "").split("(artifact ")[1].split(")")[0]

    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{gate.url}/admin/")
    assert "/admin/login" in page.url
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert "wrong admin token" in page.inner_text("main")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.fill("input[name=name]", "carol")
    page.click("button[type=submit]")
    assert page.url.endswith("/admin/")
    assert "signed in as carol" in page.inner_text("header")

    cookie = next(c for c in page.context.cookies() if c["name"] == "hubgate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin/"
    assert ADMIN_TOKEN not in cookie["value"]

    queue = page.inner_text("table")
    assert aid in queue and "acme/unlicensed" in queue and "license" in queue
    page.click(f"a:text('{aid}')")
    assert page.url.endswith(f"/admin/artifacts/{aid}")
    body = page.inner_text("main")
    assert "Model card license" in body and "Findings by engine" in body and "History" in body
    assert page.inner_text("#status") == "quarantined"

    # a form post without the session's CSRF token is refused, even with the cookie
    forged = page.request.post(f"{gate.url}/admin/artifacts/{aid}/approve", form={"reason": "forged"})
    assert forged.status == 403
    assert gate.call(gate.store.get_verdict(aid)).status.value == "quarantined"

    page.fill("input[aria-label='approve reason']", "checked the weights <b>by hand</b>")
    page.click("button[value=approve]")
    assert "approved" in page.inner_text("[role=status]")
    assert page.inner_text("#status") == "approved"
    history = page.inner_text("main")
    assert "checked the weights <b>by hand</b>" in history  # shown as text, never as markup
    assert page.locator("main b").count() == 0

    result = run_client(
        """
        from huggingface_hub import hf_hub_download
        emit(size=len(open(hf_hub_download("acme/unlicensed", "model.safetensors"), "rb").read()))
        """,
        endpoint=gate.url,
    )
    assert result.ok, result.output
    assert result.data["size"] == len(weights)

    # waive the non-commercial repo's file from its page, with an expiry
    page.goto(f"{gate.url}/admin/?status=blocked")
    page.click(f"a:text('{nc_aid}')")
    page.select_option("select[name=scope]", "artifact")
    page.fill("input[aria-label='waive reason']", "research use approved by legal")
    page.fill("input[aria-label=expires]", "2d")
    page.click("form[action$='/waive'] button[type=submit]")
    assert re.search(r"waiver w[0-9a-f]{10} created", page.inner_text("[role=status]"))
    assert get_until_done(f"{gate.url}/acme/noncommercial/resolve/main/model.safetensors").status == 200
    page.goto(f"{gate.url}/admin/waivers")
    assert "research use approved by legal" in page.inner_text("table")

    page.goto(f"{gate.url}/admin/audit?actor=carol")
    log = page.inner_text("table")
    assert "approve" in log and "waive" in log and "admin:carol" in log
    page.fill("input[name=event]", "approve")
    page.click("form[action='/admin/audit'] button")
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "approve" in rows.first.inner_text()

    # prefetch from the console: the job page refreshes itself until the job is done
    page.goto(f"{gate.url}/admin/vet")
    page.fill("input[name=repo]", "acme/noncommercial")
    page.fill("input[name=include]", "config.json")
    page.click("form[action='/admin/vet'] button")
    expect(page.locator("#job-state")).to_have_text("done", timeout=20_000)  # our CSP forbids eval
    assert "config.json" in page.inner_text("table") and "blocked" in page.inner_text("table")

    page.click("text=Sign out")
    assert "/admin/login" in page.url
    assert request("GET", f"{gate.url}/admin/").status == 303
