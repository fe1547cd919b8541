"""A real browser (Debian's Chromium, headless, driven by Playwright) draws a 7 with the mouse on the
page served by a real waitress server, predicts it, corrects it, uploads a file, and clears the canvas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitrec.model.checkpoints import is_model_dir
from digitrec.model.classes import FASHION_CLASSES
from tests.service_helpers import REPO, digit_png, require_models, running_service

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "docs" / "screenshot.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    models = ("digits", "fashion") if is_model_dir(require_models() / "fashion") else ("digits",)
    with running_service(tmp_path_factory.mktemp("browser"), models=models) as svc:
        yield svc


def watch_page(page, own_url: str) -> list[str]:
    """Collect the page's console errors, uncaught exceptions and any request that leaves ``own_url``."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "request",
        lambda req: (
            problems.append(f"external request {req.url}")
            if not req.url.startswith((own_url, "data:", "blob:"))
            else None
        ),
    )
    return problems


def draw_seven(page) -> None:
    """Two strokes with the mouse: the bar of the 7, then its stem."""
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]

    def stroke(points):
        page.mouse.move(x + points[0][0] * w, y + points[0][1] * h)
        page.mouse.down()
        for px, py in points[1:]:
            page.mouse.move(x + px * w, y + py * h, steps=12)
        page.mouse.up()

    stroke([(0.28, 0.22), (0.72, 0.22)])
    stroke([(0.72, 0.22), (0.58, 0.50), (0.46, 0.80)])


def test_draw_predict_correct_upload_and_clear(browser, service, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    problems = watch_page(page, service.url)
    page.goto(service.url + "/")
    assert page.locator("#pad").evaluate("c => getComputedStyle(c).touchAction") == "none"

    draw_seven(page)
    page.get_by_role("button", name="predict it").click()
    page.locator("#answer").wait_for(state="visible", timeout=15000)
    assert page.locator("#answer-label").inner_text() == "7"
    assert page.locator("#bars li").count() == 10
    assert page.locator("#answer-preview").get_attribute("src").startswith("data:image/png;base64,")

    # the record shows up in the latest records list and in the API, marked as drawn on the canvas
    page.locator("#latest li[data-record-id]").first.wait_for(timeout=10000)
    newest = service.get("/api/v1/records?limit=1").json()["records"][0]
    assert newest["source"] == "canvas" and newest["label"] == 7
    assert page.locator("#latest li[data-record-id]").first.get_attribute("data-record-id") == newest["request_id"]

    # "wrong, it was a 4": the correction is stored
    page.select_option("#correct-label", "4")
    page.get_by_role("button", name="save correction").click()
    page.locator("#correction-status").filter(has_text="saved").wait_for(timeout=10000)
    assert service.get(f"/api/v1/records/{newest['request_id']}").json()["corrected_label"] == 4

    # several files through the upload area
    png, truth = digit_png(0)
    page.set_input_files(
        "#files",
        files=[
            {"name": "paper-seven.png", "mimeType": "image/png", "buffer": png},
            {"name": "again.png", "mimeType": "image/png", "buffer": png},
        ],
    )
    page.locator("#upload-results li").nth(1).wait_for(timeout=15000)
    assert "paper-seven.png" in page.locator("#upload-results").inner_text()

    # docs/screenshot.png (for the README) is rewritten only when asked, so test runs leave git clean.
    update = os.environ.get("DIGITREC_UPDATE_SCREENSHOT") == "1"
    target = SCREENSHOT if update else tmp_path / "screenshot.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000

    page.get_by_role("button", name="clear it").click()
    assert page.locator("#answer").is_hidden()
    blank = page.locator("#pad").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 255)"
    )
    assert blank
    assert not problems, problems
    page.close()


def test_records_page_lists_the_drawing_with_its_thumbnail(browser, service):
    page = browser.new_page()
    page.goto(service.url + "/records")
    rows = page.locator("table.records tbody tr")
    assert rows.count() >= 1
    first_img = rows.first.locator("img")
    first_img.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", first_img.element_handle())
    page.close()


def test_switching_to_the_clothing_model_and_uploading_a_shoe(browser, service):
    names = [m["name"] for m in service.get("/api/v1/models").json()["models"]]
    if "fashion" not in names:
        pytest.skip("no trained fashion model in the models folder")
    page = browser.new_page()
    page.goto(service.url + "/")
    page.get_by_label("Clothing (Fashion-MNIST)").check()
    assert page.locator(".intro h1").inner_text() == "Draw a piece of clothing"
    png, _ = digit_png(0, dataset="fashion")  # an ankle boot, dark on white paper
    page.set_input_files("#files", files=[{"name": "boot.png", "mimeType": "image/png", "buffer": png}])
    page.locator("#upload-results li").first.wait_for(timeout=15000)
    title = page.locator("#upload-results li strong").first.inner_text()
    assert any(name in title for name in FASHION_CLASSES), title
    newest = service.get("/api/v1/records?limit=1").json()["records"][0]
    assert newest["model_name"] == "fashion" and newest["file_name"] == "boot.png"
    page.close()


def test_an_upload_with_one_bad_file_shows_each_files_own_result(browser, service):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.goto(service.url + "/")
    png, _ = digit_png(3)
    page.set_input_files(
        "#files",
        files=[
            {"name": "good-one.png", "mimeType": "image/png", "buffer": png},
            {"name": "x.png", "mimeType": "image/png", "buffer": b"a text file named .png\n"},
            {"name": "good-two.png", "mimeType": "image/png", "buffer": png},
        ],
    )
    cards = page.locator("#upload-results li")
    cards.nth(2).wait_for(timeout=15000)
    texts = [cards.nth(i).inner_text() for i in range(3)]
    assert "good-one.png" in texts[0] and "good-two.png" in texts[2], texts
    assert "x.png: not an image" in texts[1] and "Upload failed" not in " ".join(texts), texts
    assert cards.nth(0).locator("img").count() == 1 and cards.nth(1).locator("img").count() == 0
    page.close()
