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
    assert service.post(url, body, {"Content-Type": "application/json"}).status == 401
    assert service.post(url, body, {"Content-Type": "application/json", **good}).json()["corrected_label"] == 3


def test_page_tells_the_browser_a_token_is_needed(service):
    page = service.get("/").body.decode()
    assert '<form id="token-form" class="token">' in page  # shown, not hidden
    assert TOKEN not in page
