"""The attack script (tests/attack_anonymous.py) against a real service bound to 0.0.0.0, reached through
127.0.0.1 only: every attempt gets 401 or 403 and nothing changes (records, corrections, images, the
serving model). The service is started as `digitrec serve --host 0.0.0.0`, with no token configured:
it makes its own, which the test reads from the address the service prints (as an operator would)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from attack_anonymous import Client, digit_png, run_attacks, summary
from processes import stop_process

from tests.service_helpers import REPO, require_models

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    """(base URL through 127.0.0.1, the admin token the service printed)."""
    require_models()
    data = tmp_path_factory.mktemp("exposed")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DIGITREC_MODEL_POLL_SECONDS": "0", "DIGITREC_ACCESS_LOG": "0"}
    command = [sys.executable, "-m", "digitrec", "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(data)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    port = token = None
    deadline = time.monotonic() + 240
    try:
        while (port is None or token is None) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            if match := re.search(r"serving on http://[^:/]+:(\d+)/", line):
                port = int(match.group(1))
            if match := re.search(r"\?token=([A-Za-z0-9_-]+)", line):
                token = match.group(1)
        assert port and token, "the service did not print its address and sign-in token"
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop_process(proc)


def state(client: Client, token: str) -> dict:
    """Everything an attacker might have changed, read with the admin token."""
    admin = {"Authorization": f"Bearer {token}"}
    status, page = client.send("GET", "/api/v1/records?limit=100", headers=admin)
    assert status == 200
    records = {
        r["request_id"]: (r["corrected_label"], r["corrected_by"], r["correction_rejected"], r["image_url"])
        for r in page["records"]
    }
    _, models = client.send("GET", "/api/v1/models")
    digits = next(m for m in models["models"] if m["name"] == "digits")
    return {"records": records, "version": digits.get("version"), "served": digits.get("served")}


def test_every_anonymous_attempt_is_refused_and_changes_nothing(exposed):
    url, token = exposed
    client = Client(url)
    victim = client.predict(digit_png(0))
    own = json.dumps({"label": 5, "correction_key": victim["correction_key"]}).encode()
    status, _ = client.send("POST", f"/api/v1/records/{victim['request_id']}/correction", own, JSON)
    assert status == 200  # the victim corrected its own answer: the attacker must not change that
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    conn.request("GET", f"/?token={token}")
    signed_in = conn.getresponse()
    session = signed_in.getheader("Set-Cookie").split(";", 1)[0]
    conn.close()
    assert signed_in.status == 303 and session.startswith("digitrec_session=admin.")
    before = state(client, token)
    attempts = run_attacks(url, victim["request_id"], session)
    print(summary(attempts))
    assert len(attempts) >= 30
    assert [a for a in attempts if not a.refused] == []
    after = state(client, token)
    # the attacker's own prediction is the one new record; nothing else moved
    new = set(after["records"]) - set(before["records"])
    assert len(new) == 1 and after["records"][next(iter(new))][0] is None
    assert {k: v for k, v in after["records"].items() if k not in new} == before["records"]
    assert (after["version"], after["served"]) == (before["version"], before["served"])
    assert before["records"][victim["request_id"]][:2] == (5, "submitter")


def test_the_operator_can_still_do_everything_with_the_token(exposed):
    url, token = exposed
    client = Client(url)
    admin = {"Authorization": f"Bearer {token}"}
    record = client.predict(digit_png(3))
    rid = record["request_id"]
    assert client.send("GET", f"/api/v1/records/{rid}/image", headers=admin)[0] == 200
    assert client.send("POST", f"/api/v1/records/{rid}/correction", b'{"label": 2}', {**JSON, **admin})[0] == 200
    assert client.send("POST", "/api/v1/models/digits/reload", b"", admin)[0] == 200
    assert client.send("DELETE", f"/api/v1/records/{rid}", headers=admin)[0] == 200
    assert client.send("GET", f"/api/v1/records/{rid}", headers=admin)[0] == 404
