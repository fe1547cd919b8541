"""The dashboard in a real browser (Debian's Chromium via Playwright) against a real waitress server:
predictions made and corrected through the HTTP API show up in its figures and its confusion matrix,
a review item is corrected from the page, and on a 390x844 phone nothing overflows sideways."""

from __future__ import annotations

import io
import json
import os

import pytest
import test_browser as browser_tests
from PIL import Image

from tests.service_helpers import REPO, digit_png, running_service

SCREENSHOT = REPO / "docs" / "dashboard.png"
PHONE = {"width": 390, "height": 844}

pytestmark = browser_tests.pytestmark
browser = browser_tests.browser  # the same headless Chromium fixture as the drawing page tests


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("browser-dashboard")) as svc:
        yield svc


@pytest.fixture(scope="module")
def corrected(service):
    """40 MNIST test digits through POST /api/v1/predict; 8 corrected (6 to another label, 2 confirmed)."""
    made = []
    for i in range(40):
        png, _truth = digit_png(i)
        reply = service.predict(png)
        assert reply.status == 200, reply.body
        p = reply.json()["predictions"][0]
        made.append((p["request_id"], p["label"]))
    fixes = {}
    for k, (rid, label) in enumerate(made[:8]):
        fixes[rid] = label if k in (3, 6) else (label + 1 + k % 3) % 10
    for rid, label in fixes.items():
        reply = service.post(
            f"/api/v1/records/{rid}/correction",
            json.dumps({"label": label}).encode(),
            {"Content-Type": "application/json"},
        )
        assert reply.status == 200, reply.body
    expected = {}
    labels = dict(made)
    for rid, label in fixes.items():
        expected[(labels[rid], label)] = expected.get((labels[rid], label), 0) + 1
    return made, fixes, expected


def _open_dashboard(page, service) -> None:
    page.goto(service.url + "/dashboard?model=digits&days=1")
    page.wait_for_selector("body[data-loaded]", timeout=20000)


def test_dashboard_shows_the_corrections_made_through_the_api(browser, service, corrected, tmp_path):
    made, fixes, expected = corrected
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems = browser_tests.watch_page(page, service.url)
    page.goto(service.url + "/")
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_selector("body[data-loaded]", timeout=20000)
    tile = page.locator('[data-tile="Corrected"]').inner_text()
    assert tile.startswith("8 ") and "20.0 %" in tile, tile  # 8 of 40
    assert page.locator('[data-tile="Predictions"]').inner_text() == "40"
    assert page.locator('[data-tile="Corrected to another label"]').inner_text().startswith("6 ")
    for (predicted, fixed), count in expected.items():
        cell = page.locator(f'#confusion td[data-predicted="{predicted}"][data-corrected="{fixed}"]')
        assert cell.inner_text() == str(count)
    filled = page.locator("#confusion td").evaluate_all("cells => cells.filter(c => c.textContent).length")
    assert filled == len(expected)
    assert page.locator("#chart-volume svg .bar rect").count() >= 1
    assert page.locator("#chart-confidence svg .bar").count() == 20
    assert page.locator("#versions tbody tr").count() == 1
    review = page.locator("#review li[data-record-id]")
    assert review.count() == 12
    review.first.locator("img").wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", review.first.locator("img").element_handle())

    # "worth reviewing": correct the least confident prediction from the dashboard itself
    first_id = review.first.get_attribute("data-record-id")
    assert first_id not in fixes
    was = dict(made)[first_id]
    review.first.locator("select").select_option(str((was + 5) % 10))
    review.first.get_by_role("button", name="save").click()
    review.first.locator(".status").filter(has_text="saved").wait_for(timeout=10000)
    assert service.get(f"/api/v1/records/{first_id}").json()["corrected_label"] == (was + 5) % 10

    update = os.environ.get("DIGITREC_UPDATE_SCREENSHOT") == "1"
    target = SCREENSHOT if update else tmp_path / "dashboard.png"
    page.evaluate("window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True, scale="css"))).convert("RGB")
    # 128 colours lose nothing visible on flat charts and keep the README image small
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
    assert 10_000 < target.stat().st_size < 150_000
    assert not problems, problems
    page.close()


def test_dashboard_and_filtered_records_fit_a_phone(browser, service, corrected):
    page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    problems = browser_tests.watch_page(page, service.url)
    _open_dashboard(page, service)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the dashboard is {width}px wide on a {PHONE['width']}px phone"
    chart = page.locator("#chart-volume svg").bounding_box()
    assert chart["width"] <= PHONE["width"] and chart["height"] > 60

    page.goto(service.url + "/records?corrected=1")
    assert page.locator("table.records tbody tr").count() >= 8
    assert page.locator('input[name="corrected"]').is_checked()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the filtered records page is {width}px wide"
    page.select_option('select[name="label"]', "3")
    page.get_by_role("button", name="filter").click()
    page.wait_for_url("**/records?**label=3**")
    rows = page.locator("table.records tbody tr")
    assert rows.count() >= 1
    assert not problems, problems
    page.close()


def test_review_cards_start_with_no_label_chosen(browser, service, corrected):
    """One click on "save" must not store a confirmation nobody meant: the picker starts empty, and
    saving without a choice stores nothing and asks for one (as on the drawing page)."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems = browser_tests.watch_page(page, service.url)
    _open_dashboard(page, service)
    cards = page.locator("#review li[data-record-id]")
    assert cards.count() >= 2
    shown = dict(cards.evaluate_all("all => all.map(c => [c.dataset.recordId, c.querySelector('select').value])"))
    saved = {rid: service.get(f"/api/v1/records/{rid}").json()["corrected_label"] for rid in shown}
    assert shown == {rid: "" if label is None else str(label) for rid, label in saved.items()}  # never the prediction
    record_id = next(rid for rid, label in saved.items() if label is None)
    card = page.locator(f'#review li[data-record-id="{record_id}"]')
    before = None
    card.get_by_role("button", name="save").click()
    card.locator(".status").filter(has_text="Choose").wait_for(timeout=10000)
    assert service.get(f"/api/v1/records/{record_id}").json()["corrected_label"] == before
    assert not problems, problems
    page.close()
