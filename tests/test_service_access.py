"""Who may do what: the rule by bind address, the token file, roles, sessions, correction keys, the
cross-site check and the correction rate limit, against a real app behind a real waitress server.

The app is configured as bound to 0.0.0.0 (the rule follows the configured address) while the test
server listens on 127.0.0.1 only; tests/test_attack.py runs a real server bound to 0.0.0.0.
"""

from __future__ import annotations

import json
import stat
import time

import pytest
from records_helpers import cassandra_env_config
from test_records_contract import NEEDS_CASSANDRA, cassandra_keyspace  # noqa: F401 (a fixture)

from digitrec.service import access as access_module
from digitrec.service.access import TOKEN_FILE, AccessPolicy, is_loopback
from digitrec.service.access_log import format_line
from tests.service_helpers import digit_png, running_service

VIEWER = "viewer-token-0123456789"
REVIEWER = "reviewer-token-0123456789"
ADMIN = "admin-token-0123456789abc"
JSON = {"Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def predicted(svc, index: int = 0, headers: dict[str, str] | None = None) -> dict:
    reply = svc.predict(digit_png(index)[0], headers=headers)
    assert reply.status == 200, reply.body
    return reply.json()["predictions"][0]


def correct(svc, rid: str, label: int, key: str | None = None, headers: dict[str, str] | None = None):
    body = {"label": label} if key is None else {"label": label, "correction_key": key}
    return svc.post(f"/api/v1/records/{rid}/correction", json.dumps(body).encode(), {**JSON, **(headers or {})})


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    environ = {"DIGITREC_VIEWER_TOKEN": VIEWER, "DIGITREC_REVIEWER_TOKEN": REVIEWER, "DIGITREC_ADMIN_TOKEN": ADMIN}
    with running_service(tmp_path_factory.mktemp("roles"), host="0.0.0.0", environ=environ) as svc:
        yield svc


def test_loopback_addresses_are_told_apart_from_the_others():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.5", "example.org"))


def test_bound_off_loopback_without_a_token_the_service_makes_one_and_protects_records(tmp_path):
    data = tmp_path / "data"
    with running_service(data, host="0.0.0.0") as svc:
        token_file = data / TOKEN_FILE
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        rid = predicted(svc)["request_id"]  # prediction stays open
        for path in ("/api/v1/records", f"/api/v1/records/{rid}", f"/api/v1/records/{rid}/image", "/api/v1/dashboard"):
            assert svc.get(path).status == 401, path
            assert svc.get(path, headers=bearer(token)).status == 200, path
        assert svc.app.context.access.startup.made
        # a second replica on the same volume uses the same token
        replica = AccessPolicy(host="0.0.0.0", data_dir=data, environ={})
        assert replica.role_for_token(token) == "admin" and not replica.startup.made
    assert (data / TOKEN_FILE).read_text().strip() == token  # kept for the next start


def test_on_loopback_without_a_token_everything_stays_open(tmp_path):
    with running_service(tmp_path / "data") as svc:
        rid = predicted(svc)["request_id"]
        assert svc.get("/api/v1/records").status == 200
        assert correct(svc, rid, 4).json()["corrected_by"] == "local"
        assert not (tmp_path / "data" / TOKEN_FILE).exists()


def test_each_role_can_do_exactly_what_it_should(roles):
    own = predicted(roles, 1)
    rid = own["request_id"]
    record_paths = ("/api/v1/records", f"/api/v1/records/{rid}", f"/api/v1/records/{rid}/preview", "/api/v1/dashboard")
    expected = {  # role -> (may read, may correct others' records, may reject, may reload models)
        None: (False, False, False, False),
        VIEWER: (True, False, False, False),
        REVIEWER: (True, True, True, False),
        ADMIN: (True, True, True, True),
    }
    for token, (read, review, reject, admin) in expected.items():
        headers = bearer(token) if token else {}
        for path in record_paths:
            assert (roles.get(path, headers=headers).status == 200) == read, (token, path)
        corrected = correct(roles, rid, 5, headers=headers)
        assert (corrected.status == 200) == review, (token, corrected.body)
        if not review:
            assert corrected.status == 403
        rejected = roles.post(f"/api/v1/records/{rid}/correction/reject", b'{"rejected": true}', {**JSON, **headers})
        assert (rejected.status in (200, 409)) == reject, (token, rejected.body)
        reload = roles.post("/api/v1/models/digits/reload", b"", headers)
        assert (reload.status == 200) == admin, (token, reload.body)
        assert reload.status in ((200,) if admin else (401, 403))
    record = roles.get(f"/api/v1/records/{rid}", headers=bearer(ADMIN)).json()
    assert record["corrected_by"] == "admin" and record["correction_rejected"] is True
    assert "correction_key_sha256" not in record


def test_the_submitter_corrects_with_its_key_and_nobody_else_without_a_token(roles):
    mine, other = predicted(roles, 2), predicted(roles, 3)
    assert len(mine["correction_key"]) >= 20 and mine["correction_key"] != other["correction_key"]
    for attempt in (
        correct(roles, other["request_id"], 1),  # no key
        correct(roles, other["request_id"], 1, key=mine["correction_key"]),  # a key replayed on another record
        correct(roles, other["request_id"], 1, key="x" * 22),  # a guessed key
        correct(roles, "00000000-0000-1000-8000-000000000000", 1, key=mine["correction_key"]),  # a guessed id
    ):
        assert attempt.status == 403, attempt.body
    assert roles.get(f"/api/v1/records/{other['request_id']}", headers=bearer(VIEWER)).json()["corrected_label"] is None
    done = correct(roles, mine["request_id"], 7, key=mine["correction_key"])
    assert done.status == 200 and done.json() == {
        "request_id": mine["request_id"],
        "label": mine["label"],
        "corrected_label": 7,
        "corrected_text": None,
    }
    stored = roles.get(f"/api/v1/records/{mine['request_id']}", headers=bearer(VIEWER)).json()
    assert stored["corrected_by"] == "submitter"
    client = stored["corrected_client"]
    assert len(client) == 16 and int(client, 16) >= 0 and "127.0.0.1" not in json.dumps(stored)


def test_a_token_in_the_address_becomes_a_session_cookie_and_leaves_the_address(roles):
    reply = roles.get(f"/records?model=digits&token={VIEWER}")
    assert reply.status == 303
    assert reply.headers["Location"] == "/records?model=digits"
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert VIEWER not in cookie
    session = cookie.split(";", 1)[0]
    page = roles.get("/records", headers={"Accept": "text/html", "Cookie": session})
    assert page.status == 200 and "records-content" in page.body.decode()
    assert roles.get("/api/v1/records", headers={"Cookie": session}).status == 200
    assert correct(roles, predicted(roles)["request_id"], 1, headers={"Cookie": session}).status == 403  # viewer
    wrong = roles.get("/records?token=not-a-valid-token-at-all")
    assert wrong.status == 303 and "Set-Cookie" not in wrong.headers
    forged = session.rsplit(".", 1)[0] + ".AAAA"
    assert roles.get("/api/v1/records", headers={"Cookie": forged}).status == 401
    upgraded = session.replace("digitrec_session=viewer", "digitrec_session=admin")
    assert roles.get("/api/v1/records", headers={"Cookie": upgraded}).status == 401


def test_the_token_field_posts_for_a_cookie_and_tls_behind_a_trusted_proxy_makes_it_secure(tmp_path):
    environ = {"DIGITREC_REVIEWER_TOKEN": REVIEWER, "DIGITREC_TRUSTED_PROXIES": "127.0.0.0/8"}
    with running_service(tmp_path / "data", host="0.0.0.0", environ=environ) as svc:
        assert svc.post("/api/v1/session", b'{"token": "nope-nope-nope-nope"}', JSON).status == 401
        reply = svc.post("/api/v1/session", json.dumps({"token": REVIEWER}).encode(), JSON)
        assert reply.status == 200 and reply.json() == {"role": "reviewer"}
        assert "Secure" not in reply.headers["Set-Cookie"]
        behind_tls = svc.post(
            "/api/v1/session", json.dumps({"token": REVIEWER}).encode(), {**JSON, "X-Forwarded-Proto": "https"}
        )
        assert "Secure" in behind_tls.headers["Set-Cookie"]
        session = reply.headers["Set-Cookie"].split(";", 1)[0]
        assert svc.get("/api/v1/session", headers={"Cookie": session}).json()["role"] == "reviewer"


def test_rotating_the_token_file_ends_the_old_token_and_its_sessions(tmp_path, monkeypatch):
    data = tmp_path / "data"
    with running_service(data, host="0.0.0.0") as svc:
        old = (data / TOKEN_FILE).read_text().strip()
        session = svc.get(f"/?token={old}").headers["Set-Cookie"].split(";", 1)[0]
        assert svc.get("/api/v1/records", headers={"Cookie": session}).status == 200
        new = access_module.rotate_secret(data / TOKEN_FILE)
        svc.app.context.access._next_check = 0.0  # instead of waiting TOKEN_FILE_CHECK_SECONDS
        assert svc.get("/api/v1/records", headers=bearer(old)).status == 401
        assert svc.get("/api/v1/records", headers={"Cookie": session}).status == 401
        assert svc.get("/api/v1/records", headers=bearer(new)).status == 200


def test_cross_site_posts_are_refused_even_on_an_open_laptop_service(tmp_path):
    with running_service(tmp_path / "data") as svc:
        rid = predicted(svc)["request_id"]
        host = svc.url.removeprefix("http://")
        evil = {"Origin": "http://127.0.0.1:1", **JSON}
        for path, body in (
            (f"/api/v1/records/{rid}/correction", b'{"label": 2}'),
            ("/api/v1/models/digits/reload", b""),
        ):
            refused = svc.post(path, body, evil)
            assert refused.status == 403 and refused.json()["error"] == "cross_site_request"
        assert (
            svc.post(
                f"/api/v1/records/{rid}/correction", b'{"label": 2}', {**JSON, "Sec-Fetch-Site": "cross-site"}
            ).status
            == 403
        )
        assert svc.get(f"/api/v1/records/{rid}").json()["corrected_label"] is None
        same = svc.post(f"/api/v1/records/{rid}/correction", b'{"label": 2}', {"Origin": f"http://{host}", **JSON})
        assert same.status == 200 and same.json()["corrected_label"] == 2


def test_more_corrections_per_minute_than_allowed_get_429(tmp_path):
    with running_service(tmp_path / "data", host="0.0.0.0", corrections_per_minute=3) as svc:
        answers = [predicted(svc, i) for i in range(4)]
        statuses = [correct(svc, p["request_id"], 1, key=p["correction_key"]).status for p in answers]
        assert statuses == [200, 200, 200, 429]
        last = svc.get(f"/api/v1/records/{answers[3]['request_id']}", headers=bearer(svc_token(svc)))
        assert last.json()["corrected_label"] is None


def svc_token(svc) -> str:
    return (svc.data_dir / TOKEN_FILE).read_text().strip()


def test_a_predict_token_closes_predictions(tmp_path):
    environ = {"DIGITREC_PREDICT_TOKEN": "predict-token-0123456789"}
    with running_service(tmp_path / "data", environ=environ) as svc:
        assert svc.predict(digit_png(0)[0]).status == 401
        assert svc.predict(digit_png(0)[0], headers=bearer("predict-token-0123456789")).status == 200
        assert svc.predict(digit_png(0)[0], headers=bearer(svc_token(svc))).status == 200  # any role may


def test_the_sign_in_token_never_reaches_the_access_log():
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "token=s3cr3t&a=1", "REMOTE_ADDR": "1.2.3.4"}
    line = format_line(environ, "303 See Other", 0, 0.001, time.time())
    assert "s3cr3t" not in line and "token=<redacted>&a=1" in line


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_replicas_sharing_only_a_cassandra_store_share_the_token_and_the_salt(tmp_path, cassandra_keyspace):  # noqa: F811
    from digitrec.records.cassandra_store import cassandraModule
    from digitrec.service.access import StoreSecrets, secrets_for

    stores = [cassandraModule(config=cassandra_env_config(cassandra_keyspace)) for _ in range(2)]
    try:
        replicas = [
            AccessPolicy(
                host="0.0.0.0", data_dir=tmp_path / f"pod-{i}", environ={}, secrets_source=secrets_for(s, tmp_path)
            )
            for i, s in enumerate(stores)
        ]
        assert isinstance(replicas[0].secrets, StoreSecrets)
        first, second = replicas[0].startup, replicas[1].startup
        assert first.made and not second.made and first.token == second.token  # one token, made once
        assert replicas[0]._salt == replicas[1]._salt  # the same client hashes on every pod
        assert not (tmp_path / "pod-0" / TOKEN_FILE).exists()  # nothing on the pods' own volumes
        rotated = replicas[0].secrets.rotate(TOKEN_FILE, access_module.new_token)
        replicas[1]._next_check = 0.0
        assert replicas[1].role_for_token(rotated) == "admin" and replicas[1].role_for_token(first.token) is None
    finally:
        for store in stores:
            store.close()


def test_token_show_and_rotate(tmp_path, capsys, monkeypatch):
    from digitrec.cli import main

    monkeypatch.delenv("CASSANDRA_CONTACT_POINTS", raising=False)  # the data volume's token file

    data = tmp_path / "data"
    assert main(["token", "show", "--data-dir", str(data)]) == 0
    shown = capsys.readouterr().out.strip()
    assert (data / TOKEN_FILE).read_text().strip() == shown and stat.S_IMODE(
        (data / TOKEN_FILE).stat().st_mode
    ) == 0o600
    assert main(["token", "show", "--data-dir", str(data)]) == 0 and capsys.readouterr().out.strip() == shown
    assert main(["token", "rotate", "--data-dir", str(data)]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != shown and (data / TOKEN_FILE).read_text().strip() == rotated
    policy = AccessPolicy(host="0.0.0.0", data_dir=data, environ={})
    assert policy.role_for_token(rotated) == "admin" and policy.role_for_token(shown) is None
