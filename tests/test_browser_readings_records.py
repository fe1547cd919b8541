"""Readings on the dashboard and /records in a real browser (Debian's Chromium via Playwright) against a
real waitress server: the tiles count readings and refusals, a reading in the review list is corrected
by typing its digits, and its thumbnail (the number with a box per mark) loads."""

from __future__ import annotations

import dataclasses

import pytest
import test_browser as browser_tests

from digitrec.records.sqlite_store import SQLiteStore
from tests.service_helpers import running_service
from tests.test_service_readings_records import number_png, reading_record

pytestmark = browser_tests.pytestmark
browser = browser_tests.browser  # the same headless Chromium fixture as the drawing page tests


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-readings")
    store = SQLiteStore(data_dir / "records.sqlite3")
    with running_service(data_dir, store=store) as svc:
        plain_png, plain_boxes = number_png([0, 1])
        blot_png, blot_boxes = number_png([1, 2], blot=True)
        # unsure readings, so the dashboard lists them for review
        svc.plain = dataclasses.replace(reading_record("72", plain_boxes, plain_png), confidence=0.31)
        svc.blotted = dataclasses.replace(reading_record("21", blot_boxes, blot_png, refused=1), confidence=0.42)
        store.add(svc.plain, plain_png)
        store.add(svc.blotted, blot_png)
        svc.store = store
        yield svc
    store.close()


def test_a_reading_is_counted_and_corrected_on_the_dashboard(browser, service):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems = browser_tests.watch_page(page, service.url)
    page.goto(service.url + "/dashboard?model=digits&days=1")
    page.wait_for_selector("body[data-loaded]", timeout=20000)
    assert page.locator('[data-tile="Readings (numbers)"]').inner_text() == "2"
    assert page.locator('[data-tile="Refused"]').inner_text().startswith("1 ")
    item = page.locator(f'#review li[data-record-id="{service.plain.request_id}"]')
    assert item.locator("strong").inner_text().startswith("“72”")
    item.locator("img").wait_for()
    width = page.evaluate("img => img.complete ? img.naturalWidth : 0", item.locator("img").element_handle())
    assert width > 112  # the whole number, not a 28x28 preview
    field = item.get_by_label("the right digits")
    assert field.input_value() == "" and field.get_attribute("placeholder") == "72"  # typed, never pre-filled
    field.fill("73")
    item.get_by_role("button", name="save").click()
    item.locator(".status").filter(has_text="saved").wait_for(timeout=10000)
    assert service.store.get(service.plain.request_id).corrected_text == "73"
    refused = page.locator(f'#review li[data-record-id="{service.blotted.request_id}"] .refused')
    assert refused.inner_text() == "refused"
    page.locator('[data-tile="Refused"] a').click()  # the tile leads to the refused records
    page.wait_for_url("**/records?*refused=1*")
    assert page.locator("table tbody tr").count() == 1
    assert not problems, problems
    page.close()


def test_the_records_page_filters_refusals_and_shows_the_boxes(browser, service):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems = browser_tests.watch_page(page, service.url)
    page.goto(service.url + "/records")
    page.get_by_label("refused only").check()
    page.get_by_role("button", name="filter").click()
    page.wait_for_url("**/records?*refused=1*")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1
    assert rows.first.locator(".reading").inner_text() == "21"
    assert rows.first.locator(".refused").inner_text() == "1 mark refused"
    image = rows.first.locator("td.thumb img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    box = image.bounding_box()
    assert box["height"] == 56 and box["width"] > 56 * 2  # as wide as the number
    assert not problems, problems
    page.close()
