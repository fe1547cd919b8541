"""The pages on a phone and with a token, in Debian's Chromium (headless, Playwright) against a real
waitress server: the result comes into view, the records read without sideways scrolling, the
correction starts empty, thumbnails show what the model saw, /records takes a token, 404 has the header.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import test_browser as browser_tests
from test_browser import draw_seven

from tests.service_helpers import digit_png, running_service

PHONE = {"width": 390, "height": 844}
TOKEN = "correct horse battery staple"
LONG_NAME = "scan-of-the-whole-class-exercise-sheet-number-0042-page-3-cropped-final-v2.png"

pytestmark = browser_tests.pytestmark  # browser, slow, skipped without Debian's chromium


browser = browser_tests.browser  # the same headless Chromium fixture as the drawing page tests


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("pages")) as svc:
        yield svc


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("pages-token"), api_token=TOKEN) as svc:
        yield svc


def watch(page) -> list[str]:
    """Console errors and failed requests of a page (a 404 favicon shows up here)."""
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"{msg.text} {msg.location.get('url', '')}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def transparent_png(stroke: int) -> bytes:
    """A 7 drawn in ``stroke`` grey on a fully transparent 140x140 PNG (alpha carries the drawing)."""
    alpha = np.zeros((140, 140), np.uint8)
    cv2.line(alpha, (35, 30), (105, 30), 255, 12)
    cv2.line(alpha, (105, 30), (60, 118), 255, 12)
    bgra = np.zeros((140, 140, 4), np.uint8)
    bgra[..., :3] = stroke
    bgra[..., 3] = alpha
    return cv2.imencode(".png", bgra)[1].tobytes()


def contrast(png: bytes) -> int:
    grey = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return int(grey.max()) - int(grey.min())


def in_viewport(page, selector: str) -> bool:
    return page.locator(selector).evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }"
    )


def test_phone_predict_brings_the_result_into_view(browser, service):
    page = browser.new_page(viewport=PHONE, has_touch=True)
    problems = watch(page)
    page.goto(service.url + "/")
    draw_seven(page)
    page.get_by_role("button", name="predict it").click()
    page.locator("#answer").wait_for(state="visible", timeout=15000)
    page.wait_for_function(
        "() => { const r = document.getElementById('answer-label').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight; }",
        timeout=5000,
    )
    assert page.locator("#answer-label").inner_text() == "7"
    assert in_viewport(page, "#answer-label")
    assert not problems, problems
    page.close()


def test_phone_records_page_reads_without_sideways_scrolling(browser, service):
    png, _ = digit_png(3)
    assert service.predict(png, filename=LONG_NAME).status == 200
    page = browser.new_page(viewport=PHONE)
    problems = watch(page)
    page.goto(service.url + "/records")
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]} px wide in a {width[1]} px viewport"
    assert page.locator("td.file", has_text=LONG_NAME).count() >= 1
    # the time is one line, not four
    lines = page.locator("td.when time").first.evaluate(
        "t => Math.round(t.getBoundingClientRect().height / parseFloat(getComputedStyle(t).lineHeight))"
    )
    assert lines == 1
    assert not problems, problems
    page.close()


def test_correction_starts_empty_and_is_refused_until_a_class_is_chosen(browser, service):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    corrections: list[str] = []
    page.on("request", lambda req: corrections.append(req.url) if req.url.endswith("/correction") else None)
    page.goto(service.url + "/")
    draw_seven(page)
    page.get_by_role("button", name="predict it").click()
    page.locator("#answer").wait_for(state="visible", timeout=15000)
    select = page.locator("#correct-label")
    assert select.input_value() == ""
    assert select.locator("option").count() == 11  # the empty choice and the ten classes
    page.get_by_role("button", name="save correction").click()
    assert "Choose" in page.locator("#correction-status").inner_text()
    assert corrections == []
    newest = service.get("/api/v1/records?limit=1").json()["records"][0]
    assert newest["corrected_label"] is None
    page.select_option("#correct-label", "1")
    page.get_by_role("button", name="save correction").click()
    page.locator("#correction-status").filter(has_text="saved").wait_for(timeout=10000)
    assert len(corrections) == 1
    assert service.get(f"/api/v1/records/{newest['request_id']}").json()["corrected_label"] == 1
    page.close()


def test_the_api_refuses_a_correction_without_a_class(service):
    record = service.predict(digit_png(5)[0]).json()["predictions"][0]
    url = f"/api/v1/records/{record['id']}/correction"
    for body, ctype in (
        (b"{}", "application/json"),
        (b'{"label": ""}', "application/json"),
        (b"label=", "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
    ):
        reply = service.post(url, body, {"Content-Type": ctype})
        assert reply.status == 400, body
        assert reply.json()["error"] == "invalid_label" and "0-9" in reply.json()["message"]
    assert service.get(f"/api/v1/records/{record['id']}").json()["corrected_label"] is None


def test_thumbnails_show_what_the_model_saw(browser, service):
    dark = service.predict(transparent_png(0), filename="dark-on-transparent.png").json()["predictions"][0]
    # the preview endpoint answers the same 28x28 image the prediction showed
    reply = service.get(f"/api/v1/records/{dark['id']}/preview")
    assert reply.status == 200 and reply.content_type.startswith("image/png")
    served = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_UNCHANGED)
    shown = base64.b64decode(dark["preview_png"].split(",", 1)[1])
    assert served.shape == (28, 28)
    assert np.array_equal(served, cv2.imdecode(np.frombuffer(shown, np.uint8), cv2.IMREAD_UNCHANGED))
    assert service.get(f"/api/v1/records/{dark['id']}").json()["preview_url"].endswith("/preview")

    # the drawing page's latest records: dark strokes on transparency must not vanish on a dark card
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(service.url + "/")
    card = page.locator(f'#latest li[data-record-id="{dark["id"]}"] img')
    card.wait_for(timeout=10000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=card.element_handle())
    assert contrast(card.screenshot()) > 150

    # /records: light strokes on transparency must not vanish on a light table (pure white ones are
    # blank to the model: transparent counts as white paper, so they are refused before any record)
    light = service.predict(transparent_png(200), filename="light-on-transparent.png").json()["predictions"][0]
    page.goto(service.url + "/records")
    thumb = page.locator("tr", has_text="light-on-transparent.png").first.locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert contrast(thumb.screenshot()) > 150
    assert light["label"] == dark["label"] == 7
    page.close()


def test_records_page_asks_for_the_token_and_then_shows_the_records(browser, protected):
    record = protected.predict(digit_png(2)[0], filename="two.png").json()["predictions"][0]
    page = browser.new_page()
    problems = watch(page)
    response = page.goto(protected.url + "/records")
    assert response.status == 401
    assert page.locator("header.top nav").is_visible()
    page.fill("#token", "wrong token")
    page.get_by_role("button", name="use token").click()
    page.locator("#token-status", has_text="not accepted").wait_for(timeout=10000)
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="use token").click()
    row = page.locator("table.records tr", has_text="two.png")
    row.wait_for(timeout=10000)
    img = row.locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth === 28", arg=img.element_handle())
    assert page.locator("#token-form").is_hidden()
    # the token stays for the tab: the next visit shows the records without asking again
    page.goto(protected.url + f"/records?limit=5&r={record['id']}")
    page.locator("table.records tr", has_text="two.png").wait_for(timeout=10000)
    # the wrong-token attempt is the only error the console saw (its 401)
    assert all("401" in p for p in problems), problems
    page.close()


def test_not_found_page_has_the_site_header_and_there_is_a_favicon(browser, service):
    page = browser.new_page()
    problems = watch(page)
    response = page.goto(service.url + "/no/such/page")
    assert response.status == 404
    assert page.locator("header.top nav a", has_text="Records").is_visible()
    assert page.locator("h1").inner_text() == "404"
    page.goto(service.url + "/")
    page.wait_for_load_state("networkidle")
    assert not [p for p in problems if "404" not in p or "favicon" in p], problems
    icon = service.get("/favicon.ico")
    assert icon.status == 200 and icon.content_type.startswith("image/svg+xml") and b"<svg" in icon.body
    api = service.get("/api/v1/no-such-thing", headers={"Accept": "text/html"})
    assert api.status == 404 and api.content_type.startswith("application/json")
    page.close()
