"""Reading numbers on the drawing page, in Debian's Chromium (headless, Playwright) against a real
waitress server and the real digits model: "2 0 2 6" written with the mouse in number mode is read as
2026 with a box and label over each digit; a drawn letter is refused ("doesn't look like a digit");
a correction of a reading sends the right text; number photos are read through the upload area; the
number mode fits a phone.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import test_browser as browser_tests
from test_browser import watch_page

from tests.handwriting import Stroke, place
from tests.service_helpers import mnist_test, recognizer, running_service

pytestmark = browser_tests.pytestmark  # browser, slow, skipped without Debian's chromium

browser = browser_tests.browser  # the same headless Chromium fixture as the drawing page tests
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("read-pages")) as svc:
        yield svc


def draw(page, strokes: list[Stroke]) -> None:
    """Each stroke with the mouse: press, move through its points, release (unit coordinates of the pad)."""
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    for stroke in strokes:
        page.mouse.move(x + stroke[0][0] * w, y + stroke[0][1] * h)
        page.mouse.down()
        for px, py in stroke[1:]:
            page.mouse.move(x + px * w, y + py * h, steps=6)
        page.mouse.up()


def number_mode(page) -> None:
    page.get_by_label("a number").check()
    page.wait_for_function("() => document.getElementById('pad').width === 560")


def overlay_colours(page) -> set[tuple[int, int, int]]:
    """The distinct opaque colours drawn on the overlay canvas (the boxes and labels)."""
    pixels = page.locator("#overlay").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    )
    rgba = np.array(pixels, np.uint8).reshape(-1, 4)
    return {tuple(int(v) for v in p[:3]) for p in rgba[rgba[:, 3] == 255]}


def test_a_number_written_with_the_mouse_is_read_with_a_box_over_each_digit(browser, service):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    problems = watch_page(page, service.url)
    corrections: list[str] = []
    page.on("request", lambda r: corrections.append(r.post_data or "") if r.url.endswith("/correction") else None)
    page.goto(service.url + "/")
    assert page.locator("#pad").evaluate("c => [c.width, c.height]") == [280, 280]  # one digit by default
    number_mode(page)
    assert page.locator(".intro h1").inner_text() == "Write a number"
    draw(page, place("2026", 0.24, margin=0.02))
    page.get_by_role("button", name="read it").click()
    page.locator("#reading").wait_for(state="visible", timeout=20000)
    assert page.locator("#reading-text").inner_text() == "2026"
    assert page.locator("#reading-refused").is_hidden()
    assert page.locator("#reading-digits li").count() == 4
    assert page.locator("#reading-digits img").first.get_attribute("src").startswith("data:image/png;base64,")
    assert (11, 95, 255) in overlay_colours(page)  # the digits' boxes are drawn over the canvas

    newest = service.get("/api/v1/records?limit=1").json()["records"][0]
    assert newest["source"] == "canvas" and newest["text"] == "2026"

    # a correction of a reading is the right text
    page.fill("#correct-text", "2028")
    page.locator("#reading-correction").get_by_role("button", name="save correction").click()
    page.locator("#reading-correction-status").filter(has_text="saved").wait_for(timeout=10000)
    (sent,) = corrections
    assert json.loads(sent)["text"] == "2028" and json.loads(sent)["correction_key"]  # the reading's own key
    assert service.get(f"/api/v1/records/{newest['request_id']}").json()["corrected_text"] == "2028"

    # the boxes go with the drawing: a new stroke or clearing removes them
    page.get_by_role("button", name="clear it").click()
    assert overlay_colours(page) == set()
    assert not problems, problems
    page.close()


def test_a_drawn_letter_is_refused_on_the_page(browser, service):
    if not recognizer("digits").domain.fitted:
        pytest.skip("the digits model has no fitted refusal threshold (model.json 'domain'): it refuses nothing")
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    problems = watch_page(page, service.url)
    page.goto(service.url + "/")
    draw(page, place("A", 1.0))
    page.get_by_role("button", name="predict it").click()
    page.locator("#answer").wait_for(state="visible", timeout=15000)
    assert "doesn't look like a digit" in page.locator("#answer-refused").inner_text()
    assert page.locator("#answer-big").is_hidden()  # no confident number
    assert "doesn't look like a digit" in page.locator("#status").inner_text()

    # in number mode the letter is a refused mark: no text, a dashed red box over it
    page.get_by_role("button", name="clear it").click()
    number_mode(page)
    draw(page, place("A", 0.3, margin=0.35))
    page.get_by_role("button", name="read it").click()
    page.locator("#reading").wait_for(state="visible", timeout=20000)
    assert "doesn't look like a digit" in page.locator("#reading-refused").inner_text()
    assert page.locator("#reading-digits li").count() == 0
    assert (198, 40, 40) in overlay_colours(page)
    assert not problems, problems
    page.close()


def number_photo(labels: str) -> bytes:
    """A row of MNIST test digits with those labels, dark on white paper, as a photographed number."""
    images, truth = mnist_test()
    row = [np.zeros((44, 8), np.uint8)]
    for char in labels:
        index = int(np.flatnonzero(truth == int(char))[3])
        row.append(np.pad(images[index], ((8, 8), (0, 8))))
    strip = np.hstack(row)
    paper = 255 - cv2.resize(strip, (strip.shape[1] * 4, strip.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".png", paper)[1].tobytes()


def test_the_upload_area_reads_numbers_in_number_mode(browser, service):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    problems = watch_page(page, service.url)
    page.goto(service.url + "/")
    number_mode(page)
    page.set_input_files(
        "#files",
        files=[
            {"name": "meter.png", "mimeType": "image/png", "buffer": number_photo("3141")},
            {"name": "house.png", "mimeType": "image/png", "buffer": number_photo("27")},
        ],
    )
    cards = page.locator("#upload-results li")
    cards.nth(1).wait_for(timeout=20000)
    assert cards.nth(0).locator("strong").inner_text() == "3141"
    assert "meter.png" in cards.nth(0).inner_text()
    assert cards.nth(1).locator("strong").inner_text() == "27"
    # one digit mode answers one digit per file again, and says when a file seems to hold several
    page.get_by_label("one digit").check()
    page.set_input_files("#files", files=[{"name": "again.png", "mimeType": "image/png", "buffer": number_photo("27")}])
    cards.nth(2).wait_for(timeout=20000)
    assert "several digits" in cards.nth(0).inner_text()
    assert not problems, problems
    page.close()


def test_number_mode_on_a_phone_fits_the_screen_and_shows_the_reading(browser, service):
    page = browser.new_page(viewport=PHONE, has_touch=True)
    problems = watch_page(page, service.url)
    page.goto(service.url + "/")
    number_mode(page)
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]} px wide in a {width[1]} px viewport"
    pad = page.locator("#pad").bounding_box()
    overlay = page.locator("#overlay").bounding_box()
    assert pad["x"] >= 0 and pad["x"] + pad["width"] <= PHONE["width"]
    assert abs(pad["width"] - 2 * pad["height"]) <= 2  # the number pad keeps its 2:1 shape
    assert all(abs(pad[k] - overlay[k]) <= 1 for k in ("x", "y", "width", "height"))
    draw(page, place("2026", 0.24, margin=0.02))
    page.get_by_role("button", name="read it").click()
    page.locator("#reading").wait_for(state="visible", timeout=20000)
    page.wait_for_function(
        "() => { const r = document.getElementById('reading-text').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight; }",
        timeout=5000,
    )
    assert page.locator("#reading-text").inner_text() == "2026"
    assert not problems, problems
    page.close()
