"""The service pointed at a real Cassandra with the environment variables an operator would set.

Runs only when CASSANDRA_CONTACT_POINTS names a reachable node; it writes to its own keyspace.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from tests.service_helpers import digit_png, running_service

pytestmark = [
    pytest.mark.cassandra,
    pytest.mark.skipif(not os.environ.get("CASSANDRA_CONTACT_POINTS"), reason="CASSANDRA_CONTACT_POINTS is not set"),
]


def reachable(environ: dict[str, str]) -> bool:
    host = environ["CASSANDRA_CONTACT_POINTS"].split(",")[0].strip()
    try:
        with socket.create_connection((host, int(environ.get("CASSANDRA_PORT", 9042))), timeout=2):
            return True
    except OSError:
        return False


def test_predictions_are_recorded_in_cassandra(tmp_path):
    if not reachable(dict(os.environ)):
        pytest.skip(f"no Cassandra answers at {os.environ['CASSANDRA_CONTACT_POINTS']}")
    keyspace = f"digitrec_svc_test_{uuid.uuid4().hex[:8]}"
    environ = {key: value for key, value in os.environ.items() if key.startswith("CASSANDRA_")}
    environ["CASSANDRA_KEYSPACE"] = keyspace
    with running_service(tmp_path, environ=environ) as service:
        ready = service.get("/readyz").json()
        assert ready["store"]["engine"] == "cassandra" and ready["status"] == "ready"
        png, _ = digit_png(0)
        prediction = service.predict(png, filename="seven.png").json()["predictions"][0]
        record = service.get(f"/api/v1/records/{prediction['id']}").json()
        assert record["label"] == prediction["label"] and record["file_name"] == "seven.png"
        newest = service.get("/api/v1/records?limit=1").json()["records"][0]
        assert newest["request_id"] == prediction["id"]
        legacy = service.predict(png, path="/digitRecognition/localService/v1.0")
        assert legacy.body == f"The digit is recognized as : {prediction['label']}.\n".encode()
        # The image is kept once, in Cassandra with its record (no upload file), and served from there.
        assert record["image_path"] is None
        image = service.get(f"/api/v1/records/{prediction['id']}/image")
        assert image.status == 200 and image.body == png
        assert service.app.context.store.get_image(uuid.UUID(prediction["id"])) == png
    from cassandra.cluster import Cluster

    cluster = Cluster(
        environ["CASSANDRA_CONTACT_POINTS"].split(","),
        port=int(environ.get("CASSANDRA_PORT", 9042)),
        protocol_version=4,
    )
    try:
        session = cluster.connect()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    finally:
        cluster.shutdown()
