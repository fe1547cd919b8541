"""Record filters and the dashboard over real HTTP: real model, real SQLite file, real waitress server."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.service_helpers import digit_png, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("dashboard")) as svc:
        yield svc


@pytest.fixture(scope="module")
def made(service):
    """Twelve predictions through the API; three corrected (two to another label, one confirmed)."""
    ids = []
    for i in range(12):
        png, _truth = digit_png(i)
        reply = service.predict(png)
        assert reply.status == 200, reply.body
        prediction = reply.json()["predictions"][0]
        ids.append((prediction["request_id"], prediction["label"]))
    corrections = {ids[0][0]: (ids[0][1] + 1) % 10, ids[1][0]: (ids[1][1] + 2) % 10, ids[2][0]: ids[2][1]}
    for rid, label in corrections.items():
        reply = service.post(
            f"/api/v1/records/{rid}/correction", f'{{"label": {label}}}'.encode(), {"Content-Type": "application/json"}
        )
        assert reply.status == 200, reply.body
    return ids, corrections


def test_records_api_filters_by_each_parameter(service, made):
    ids, corrections = made
    reply = service.get("/api/v1/records?corrected=1&limit=100")
    assert reply.status == 200
    body = reply.json()
    assert {r["request_id"] for r in body["records"]} == set(corrections)
    assert body["filters"] == {"corrected": "1"}
    label = ids[5][1]
    got = service.get(f"/api/v1/records?label={label}&model=digits&limit=100").json()["records"]
    assert got and all(r["label"] == label for r in got)
    assert {r["request_id"] for r in got} == {rid for rid, lab in ids if lab == label}
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert len(service.get(f"/api/v1/records?day={today}&limit=100").json()["records"]) == 12
    assert service.get("/api/v1/records?day=2001-01-01").json()["records"] == []
    assert service.get("/api/v1/records?model=fashion").json()["records"] == []
    low = service.get("/api/v1/records?confidence_below=0.999999&limit=100").json()["records"]
    assert all(r["confidence"] < 0.999999 for r in low)
    # paging with a filter: two records per page, the cursor keeps the filter's order
    first = service.get("/api/v1/records?corrected=true&limit=2").json()
    second = service.get(f"/api/v1/records?corrected=true&limit=2&cursor={first['next_cursor']}").json()
    assert len(first["records"]) == 2 and len(second["records"]) == 1 and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("label=12", "label"),
        ("label=x", "label"),
        ("corrected=maybe", "corrected"),
        ("confidence_below=2", "confidence_below"),
        ("confidence_below=abc", "confidence_below"),
        ("confidence_below=0", "confidence_below"),
        ("day=2026-13-01", "day"),
        ("day=yesterday", "day"),
        ("model=a%20b", "model"),
        ("version=%3Cscript%3E", "version"),
    ],
)
def test_bad_filter_values_are_a_400_naming_the_parameter(service, query, parameter):
    reply = service.get(f"/api/v1/records?{query}")
    assert reply.status == 400
    body = reply.json()
    assert body["error"] == f"invalid_{parameter}" and body["message"].startswith(parameter)


def test_dashboard_json_counts_the_corrections(service, made):
    ids, corrections = made
    reply = service.get("/api/v1/dashboard?model=digits&days=1")
    assert reply.status == 200
    d = reply.json()
    assert d["totals"]["count"] == 12 and d["totals"]["corrected"] == 3 and d["totals"]["wrong"] == 2
    assert d["totals"]["corrected_share"] == pytest.approx(3 / 12)
    assert d["totals"]["implied_accuracy"] == pytest.approx(1 - 2 / 12)
    assert d["totals"]["reviewed_accuracy"] == pytest.approx(1 / 3)
    label = dict(ids)
    for rid, fixed in corrections.items():
        assert d["confusion"]["matrix"][label[rid]][fixed] >= 1
    assert sum(map(sum, d["confusion"]["matrix"])) == 3
    assert sum(b["count"] for b in d["confidence_histogram"]) == 12
    assert sum(p["count"] for p in d["per_hour"]) == 12 and len(d["per_hour"]) == 24
    assert [v["count"] for v in d["versions"]] == [12] and d["versions"][0]["version"] == d["serving_version"]
    assert len(d["review"]) == 9 and not set(corrections) & {r["request_id"] for r in d["review"]}
    confidences = [r["confidence"] for r in d["review"]]
    assert confidences == sorted(confidences)
    assert all(r["image_url"] for r in d["review"])
    other = service.get("/api/v1/dashboard?model=digits&days=1&version=nope").json()
    assert other["totals"]["count"] == 0 and other["totals"]["implied_accuracy"] is None
    for query, parameter in (("days=0", "days"), ("days=999", "days"), ("model=%2F", "model")):
        reply = service.get(f"/api/v1/dashboard?{query}")
        assert reply.status == 400 and reply.json()["error"] == f"invalid_{parameter}"


def test_records_page_has_the_filter_form_and_keeps_filters_when_paging(service, made):
    _ids, corrections = made
    reply = service.get("/records?corrected=1&limit=2", {"Accept": "text/html"})
    assert reply.status == 200
    html = reply.body.decode()
    assert 'name="confidence_below"' in html and 'name="corrected" value="1" checked' in html
    assert html.count("<tr><td data-label=") == 2  # one row per record
    older = re.search(r'class="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "corrected=1" in older and "cursor=" in older
    rest = service.get(older, {"Accept": "text/html"}).body.decode()
    assert rest.count("<tr><td data-label=") == 1
    assert "No records match" in service.get("/records?model=fashion", {"Accept": "text/html"}).body.decode()
    bad = service.get("/records?label=99", {"Accept": "text/html"})
    assert bad.status == 400 and b"label" in bad.body


def test_dashboard_page_is_linked_and_serves_its_own_script(service):
    home = service.get("/").body.decode()
    assert 'href="/dashboard"' in home
    page = service.get("/dashboard").body.decode()
    assert '<script src="/static/dashboard.js" defer></script>' in page
    script = service.get("/static/dashboard.js")
    assert (
        script.status == 200
        and b"/api/v1/dashboard" in script.body
        and b"http" not in script.body.replace(b"http://www.w3.org/2000/svg", b"")
    )
