"""Access in a real browser (Debian's Chromium, headless): a page of another site (another loopback port
is another origin) cannot make the service change anything, not even on an open laptop service, and
the drawing page of a protected service corrects its own answer without any token.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest
import test_browser as browser_tests
from test_browser import draw_seven

from tests.service_helpers import digit_png, running_service

pytestmark = browser_tests.pytestmark  # browser, slow, skipped without Debian's chromium

browser = browser_tests.browser  # the same headless Chromium fixture as the drawing page tests
JSON = {"Content-Type": "application/json"}


@contextlib.contextmanager
def other_site(html: str):
    """A page served from another port of 127.0.0.1: another origin for the browser."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """An open service (loopback, no token): whoever is at the machine may do everything."""
    with running_service(tmp_path_factory.mktemp("open")) as svc:
        yield svc


def test_a_page_of_another_site_cannot_correct_or_reload(browser, laptop):
    record = laptop.predict(digit_png(0)[0]).json()["predictions"][0]
    rid = record["request_id"]
    html = f"""<!doctype html><html><body>
<form id="f" method="post" action="{laptop.url}/api/v1/records/{rid}/correction">
<input name="label" value="3"></form>
<script>
fetch("{laptop.url}/api/v1/models/digits/reload", {{method: "POST", mode: "no-cors"}})
  .then(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }})
  .catch(() => {{ document.title = "fetched"; document.getElementById("f").submit(); }});
</script></body></html>"""
    reloads_before = laptop.get("/api/v1/models").json()["models"][0]["served"]
    with other_site(html) as evil:
        page = browser.new_page()
        with page.expect_response(lambda r: "/correction" in r.url, timeout=15000) as posted:
            page.goto(evil + "/")
        answer = posted.value
        assert answer.status == 403
        assert answer.json()["error"] == "cross_site_request"
        page.close()
    assert laptop.get(f"/api/v1/records/{rid}").json()["corrected_label"] is None
    assert laptop.get("/api/v1/models").json()["models"][0]["served"] == reloads_before


def test_the_drawing_page_of_a_protected_service_corrects_its_own_answer_without_a_token(browser, tmp_path):
    with running_service(tmp_path / "data", host="0.0.0.0") as svc:
        token = (tmp_path / "data" / "access_token").read_text().strip()
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(svc.url + "/")
        assert page.locator("#token-form").is_visible()  # the latest records need a token here
        draw_seven(page)
        page.get_by_role("button", name="predict it").click()
        page.locator("#answer").wait_for(state="visible", timeout=15000)
        page.select_option("#correct-label", "4")
        page.get_by_role("button", name="save correction").click()
        page.locator("#correction-status", has_text="Thanks").wait_for(timeout=10000)
        newest = svc.get("/api/v1/records?limit=1", headers={"Authorization": f"Bearer {token}"}).json()
        stored = newest["records"][0]
        assert stored["corrected_label"] == 4 and stored["corrected_by"] == "submitter"
        # signing in with the token field: the latest records appear, and no script can read the cookie
        page.fill("#token", token)
        page.get_by_role("button", name="use token").click()
        page.locator("#latest li[data-record-id]").first.wait_for(timeout=10000)
        assert page.evaluate("document.cookie") == ""
        assert token not in page.evaluate("JSON.stringify(sessionStorage) + JSON.stringify(localStorage)")
        page.close()


def test_a_reviewer_sees_who_corrected_on_the_dashboard_and_rejects_a_correction(browser, tmp_path):
    reviewer = "reviewer-token-for-the-dashboard"
    with running_service(tmp_path / "data", host="0.0.0.0", environ={"DIGITREC_REVIEWER_TOKEN": reviewer}) as svc:
        first, second = (svc.predict(digit_png(i)[0]).json()["predictions"][0] for i in (0, 1))
        own = json.dumps({"label": 8, "correction_key": first["correction_key"]}).encode()
        assert svc.post(f"/api/v1/records/{first['request_id']}/correction", own, JSON).status == 200
        by_token = {"Authorization": f"Bearer {reviewer}", **JSON}
        assert svc.post(f"/api/v1/records/{second['request_id']}/correction", b'{"label": 9}', by_token).status == 200
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(svc.url + f"/dashboard?token={reviewer}")
        assert "token" not in page.url  # the token left the address bar
        page.locator('#by-role dd[data-role="submitter"]').wait_for(timeout=15000)
        assert page.locator('#by-role dd[data-role="submitter"]').inner_text() == "1"
        assert page.locator('#by-role dd[data-role="reviewer"]').inner_text() == "1"
        card = page.locator(f'#corrections li[data-record-id="{first["request_id"]}"]')
        card.get_by_role("button", name="reject").click()
        card.locator(".status", has_text="rejected").wait_for(timeout=10000)
        page.close()
        stored = svc.get(f"/api/v1/records/{first['request_id']}", headers=by_token).json()
        assert stored["correction_rejected"] is True and stored["corrected_label"] == 8
