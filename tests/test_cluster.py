"""Three real service processes behind a real HAProxy (Debian's package), no Docker: any replica answers
for any record and its image, and a replica killed with SIGKILL under load loses nothing that got a 200.

The replicas share one data folder (one SQLite file; Cassandra in a throw-away keyspace when
CASSANDRA_CONTACT_POINTS is set), each with its own spool, and keep images only in the records store
(DIGITREC_KEEP_UPLOAD_FILES=0), so every image served here comes from the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cluster_helpers import cluster, haproxy_binary

from digitrec.records.config import RecordsConfig
from digitrec.records.factory import open_primary, open_store
from tests.records_helpers import new_keyspace_name
from tests.service_helpers import digit_png, multipart, require_models

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LOAD_REQUESTS = 2400  # at least 2,000 requests spread across the kill
KILL_AFTER = 600  # answered requests before one replica is killed


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (.ci/run installs Debian's package)")
    require_models()
    env = {"DIGITREC_KEEP_UPLOAD_FILES": "0", "DIGITREC_THREADS": "16"}
    keyspace = None
    if os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip():
        keyspace = new_keyspace_name()
        env.update({"CASSANDRA_KEYSPACE": keyspace, "CASSANDRA_CONSISTENCY": "ONE"})
        env.setdefault("CASSANDRA_REPLICATION", os.environ.get("CASSANDRA_TEST_REPLICATION", "SimpleStrategy:1"))
    workdir = tmp_path_factory.mktemp("cluster")
    images = [digit_png(i)[0] for i in range(8)]
    try:
        with cluster(workdir, env=env) as (replicas, proxy):
            config = RecordsConfig.from_env({**os.environ, **env}, data_dir=workdir / "data")
            yield replicas, proxy, images, config
    finally:
        if keyspace is not None:
            from digitrec.records.cassandra_store import cassandraModule

            admin = cassandraModule(config=RecordsConfig.from_env({**os.environ, "CASSANDRA_KEYSPACE": keyspace}))
            admin.drop_keyspace()
            admin.close()


class Client:
    """Keep-alive HTTP to one base URL (one connection per instance; reconnects after a failure)."""

    def __init__(self, base: str) -> None:
        self.host, self.port = urlsplit(base).hostname, urlsplit(base).port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            reply = self.conn.getresponse()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise

    def predict(self, png: bytes):
        body, headers = multipart([("file", "digit.png", png, "image/png")])
        return self.request("POST", "/api/v1/predict", body, headers)


def test_a_record_made_through_one_replica_is_listed_corrected_and_its_image_served_by_the_others(rig):
    replicas, proxy, images, _ = rig
    first, second, third = (Client(r.url) for r in replicas)
    status, _, body = first.predict(images[3])
    assert status == 200, body
    request_id = json.loads(body)["predictions"][0]["request_id"]

    status, _, body = second.request("GET", "/api/v1/records?limit=5")
    assert status == 200 and request_id in [r["request_id"] for r in json.loads(body)["records"]]
    status, _, body = third.request(
        "POST", f"/api/v1/records/{request_id}/correction", b'{"label": 8}', {"Content-Type": "application/json"}
    )
    assert status == 200, body
    status, _, body = second.request("GET", f"/api/v1/records/{request_id}")
    assert status == 200 and json.loads(body)["corrected_label"] == 8
    for client in (second, third, Client(proxy.url)):
        for path in (f"/api/v1/records/{request_id}/image", f"/uploads/{request_id}.png"):
            status, headers, image = client.request("GET", path)
            assert status == 200 and headers["content-type"] == "image/png"
            assert image == images[3]  # a PNG is stored as the client sent it
    status, _, page = third.request("GET", "/records")
    assert f"/api/v1/records/{request_id}/preview" in page.decode()  # the thumbnail: what the model saw
    status, headers, preview = third.request("GET", f"/api/v1/records/{request_id}/preview")
    assert status == 200 and headers["content-type"] == "image/png" and preview[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((replicas[0].data_dir / "uploads").rglob("*.png"))  # served from the store, not a file


def test_killing_a_replica_under_load_loses_no_answered_record_and_haproxy_drops_it_within_its_check_interval(rig):
    replicas, proxy, images, config = rig
    victim = replicas[1]
    sha = [hashlib.sha256(png).hexdigest() for png in images]
    answered: dict[str, int] = {}  # request id -> image index, for every 200
    failures: list[tuple[float, int | str]] = []  # (time, status or error) of everything else
    served_by: list[tuple[float, str]] = []
    lock = threading.Lock()
    counter = iter(range(LOAD_REQUESTS))
    killed_at: list[float] = []
    kill_now = threading.Event()

    def worker() -> None:
        client = Client(proxy.url)
        for n in counter:
            index = n % len(images)
            try:
                status, headers, body = client.predict(images[index])
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append((time.monotonic(), type(exc).__name__))
                continue
            with lock:
                if status == 200:
                    answered[json.loads(body)["predictions"][0]["request_id"]] = index
                    served_by.append((time.monotonic(), headers.get("x-served-by", "")))
                    if len(answered) == KILL_AFTER:
                        kill_now.set()
                else:
                    failures.append((time.monotonic(), status))

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(worker) for _ in range(16)]
        assert kill_now.wait(timeout=120), "the load did not reach the kill point"
        killed_at.append(time.monotonic())
        victim.kill9()
        down_after = proxy.wait_for(victim.name, "DOWN", timeout=10)
        for future in futures:
            future.result()

    print(
        f"\n{len(answered)} answered 200, {len(failures)} failed ({sorted({str(f) for _, f in failures})}); "
        f"{victim.name} DOWN in HAProxy {down_after:.2f} s after the kill"
    )
    # HAProxy stops sending to the dead replica within its health-check window (fall x inter, plus a check).
    window = proxy.fall * proxy.inter_ms / 1000 + proxy.inter_ms / 1000
    assert down_after <= window + 0.5, f"DOWN after {down_after:.2f} s, window {window:.2f} s"
    kill = killed_at[0]
    assert all(t <= kill + down_after + 1.0 for t, _ in failures), failures  # failures only inside that window
    assert not [name for t, name in served_by if t > kill + 0.2 and name == victim.name]
    assert {name for _, name in served_by} == {r.name for r in replicas}  # all three took traffic before
    assert len(answered) + len(failures) == LOAD_REQUESTS and len(answered) >= LOAD_REQUESTS - 100

    # Records the killed replica had spooled (if any) are replayed from its spool file.
    leftover = open_store(dataclasses.replace(config, spool_file=Path(f"spool/{victim.name}.sqlite3")))
    try:
        assert leftover.wait_drained(timeout=30)
    finally:
        leftover.close()
    store = open_primary(config)
    try:
        missing, wrong_image = [], []
        for request_id, index in answered.items():
            rid = uuid.UUID(request_id)
            record = store.get(rid)
            if record is None:
                missing.append(request_id)
                continue
            image = store.get_image(rid)
            if image is None or hashlib.sha256(image).hexdigest() != sha[index] or record.image_sha256 != sha[index]:
                wrong_image.append(request_id)
        assert missing == [] and wrong_image == []
    finally:
        store.close()

    # The replica comes back on its port and HAProxy puts it back in rotation.
    victim.start()
    proxy.wait_for(victim.name, "UP", timeout=30)
    client = Client(proxy.url)
    seen = {client.predict(images[0])[1].get("x-served-by") for _ in range(6)}
    assert victim.name in seen
