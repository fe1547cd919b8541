"""A promotion reaches every worker of `digitrec serve --workers 2` through each worker's own poller."""

from __future__ import annotations

import json
import os
import time

import pytest
from service_helpers import digit_png, multipart, require_models
from test_service_workers import metric
from workers_helpers import WorkersServer

from digitrec.model import versions
from tests.model_versions import copy_flat, make_version

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="gunicorn workers need POSIX")]


def test_every_worker_switches_to_the_promoted_version(tmp_path):
    shipped = require_models()
    root = tmp_path / "models"
    copy_flat(shipped, root)
    make_version(shipped, root, "v2")
    server = WorkersServer(
        tmp_path / "data", workers=2, threads=2, env={"DIGITREC_MODEL_POLL_SECONDS": "0.3"}, models_dir=root
    )
    try:
        server.wait_workers_ready()
        versions.promote("digits", "v2", root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, text = server.request("GET", "/metrics")
            if metric(text.decode(), "digitrec_model_serving", model="digits", version="v2") == 2:
                break
            time.sleep(0.3)
        else:
            pytest.fail("both workers did not report serving v2 within 60 s")
        body, headers = multipart([("file", "digit.png", digit_png(0)[0], "image/png")])
        answered = set()
        for _ in range(12):
            status, payload = server.request("POST", "/api/v1/predict", body, headers)
            assert status == 200
            answered.add(json.loads(payload)["model_version"])
        assert answered == {"v2"}
        _, text = server.request("GET", "/metrics")
        assert metric(text.decode(), "digitrec_model_swaps_total", model="digits", result="ok") == 2
    finally:
        server.stop()
