"""With DIGITREC_API_TOKEN set, records and stored images need `Authorization: Bearer <token>`."""

from __future__ import annotations

import json

import pytest

from tests.service_helpers import digit_png, running_service

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("auth"), api_token=TOKEN) as svc:
        yield svc


def test_prediction_stays_open_but_records_need_the_token(service):
    reply = service.predict(digit_png(0)[0])
    assert reply.status == 200
    rid = reply.json()["predictions"][0]["id"]
    protected = [
        "/api/v1/records",
        f"/api/v1/records/{rid}",
        f"/api/v1/records/{rid}/image",
        f"/api/v1/records/{rid}/preview",
        f"/uploads/{rid}.png",
        "/uploads/record",
        "/records",
    ]
    good = {"Authorization": f"Bearer {TOKEN}"}
    for path in protected:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            r = service.get(path, headers=headers)
            assert r.status == 401, (path, headers)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert service.get(path, headers=good).status == 200, path
    body = json.dumps({"label": 3}).encode()
    url = f"/api/v1/records/{rid}/correction"
    assert service.post(url, body, {"Content-Type": "application/json"}).status == 403  # no key, no token
    assert service.post(url, body, {"Content-Type": "application/json", **good}).json()["corrected_label"] == 3


def test_records_page_without_the_token_shows_a_token_field_and_no_records(service):
    rid = service.predict(digit_png(1)[0], filename="secret-name.png").json()["predictions"][0]["id"]
    page = service.get("/records", headers={"Accept": "text/html"})
    assert page.status == 401 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert 'id="token-form"' in html and "data-locked" in html
    assert "secret-name.png" not in html and rid not in html
    shown = service.get("/records", headers={"Accept": "text/html", "Authorization": f"Bearer {TOKEN}"})
    assert shown.status == 200 and "secret-name.png" in shown.body.decode()
    # thumbnails are plain images: a browser's session cookie comes with their requests
    assert f'src="/api/v1/records/{rid}/preview"' in shown.body.decode()
    assert service.get("/records").content_type.startswith("application/json")  # programs still get JSON


def test_page_tells_the_browser_a_token_is_needed(service):
    page = service.get("/").body.decode()
    assert '<form id="token-form" class="token">' in page  # shown, not hidden
    assert TOKEN not in page
