"""The cluster's HAProxy at the edge: container/haproxy.cfg (and haproxy-tls.cfg) pass `haproxy -c`, and
run for real on loopback ports: one client address over its request rate gets a JSON 429, another
address still passes, TLS terminates with a certificate file and counts in the same table, and the
backend is told the scheme and the client's address.

The backend here is a small HTTP server that echoes the forwarded headers, not a digitrec replica: what
is tested is HAProxy's part (tests/test_cluster.py runs real replicas behind it)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cluster_helpers import free_port, haproxy_binary

REPO = Path(__file__).resolve().parent.parent
CONTAINER = REPO / "container"

pytestmark = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed")


def certificate(folder: Path) -> Path:
    """A self-signed certificate and its key in one PEM file, as HAProxy's ``crt`` takes it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = folder / "digitrec.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    return pem


def test_the_shipped_configuration_is_valid(tmp_path):
    pem = certificate(tmp_path)
    tls = tmp_path / "haproxy-tls.cfg"
    tls.write_text((CONTAINER / "haproxy-tls.cfg").read_text().replace("/etc/haproxy/tls/digitrec.pem", str(pem)))
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(CONTAINER / "haproxy.cfg"), "-f", str(tls)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr


@contextlib.contextmanager
def echo_backend():
    """Answers /readyz, and any other path with the forwarded headers it received, as JSON."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body = json.dumps(
                {"proto": self.headers.get("X-Forwarded-Proto"), "for": self.headers.get("X-Forwarded-For")}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def local_config(workdir: Path, backend_port: int, http_port: int, https_port: int, pem: Path) -> list[Path]:
    """The shipped files with loopback ports, a local backend and the test's certificate."""
    base = (CONTAINER / "haproxy.cfg").read_text()
    base = base.replace("bind :8080", f"bind 127.0.0.1:{http_port}").replace(
        "bind :8404", f"bind 127.0.0.1:{free_port()}"
    )
    base = base.replace("stats socket /tmp/haproxy.sock", f"stats socket {workdir / 'haproxy.sock'}")
    base = re.sub(
        r"^backend digitrec\n.*?\n\n",
        f"backend digitrec\n    server echo 127.0.0.1:{backend_port}\n\n",
        base,
        flags=re.S | re.M,
    )
    tls = (CONTAINER / "haproxy-tls.cfg").read_text()
    tls = tls.replace("bind :8443 ssl crt /etc/haproxy/tls/digitrec.pem", f"bind 127.0.0.1:{https_port} ssl crt {pem}")
    paths = [workdir / "haproxy.cfg", workdir / "haproxy-tls.cfg"]
    paths[0].write_text(base)
    paths[1].write_text(tls)
    return paths


def get(port: int, source: str = "127.0.0.1", tls: bool = False) -> tuple[int, http.client.HTTPMessage, dict]:
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, source_address=(source, 0), context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/api/v1/models")
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        conn.close()


def test_a_client_over_its_rate_gets_json_429_and_tls_terminates(tmp_path):
    pem = certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    with echo_backend() as backend:
        files = local_config(tmp_path, backend, http_port, https_port, pem)
        command = [haproxy_binary(), "-db"] + [arg for f in files for arg in ("-f", str(f))]
        proc = subprocess.Popen(
            command, env={**os.environ, "DIGITREC_LB_RATE": "5"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 10
            while not (tmp_path / "haproxy.sock").exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
            status, _, body = get(https_port, "127.0.0.9", tls=True)
            assert status == 200 and body == {"proto": "https", "for": "127.0.0.9"}
            answers = [get(http_port, "127.0.0.7") for _ in range(8)]
            statuses = [a[0] for a in answers]
            assert statuses[:5] == [200] * 5 and statuses[-1] == 429, statuses
            _, headers, body = answers[-1]
            assert headers["Content-Type"].startswith("application/json") and headers["Retry-After"] == "10"
            assert body["error"] == "too_many_requests"
            assert answers[0][2] == {"proto": "http", "for": "127.0.0.7"}
            assert get(http_port, "127.0.0.8")[0] == 200  # another client is not held back
            assert get(https_port, "127.0.0.7", tls=True)[0] == 429  # the same client over TLS: the same count
        finally:
            proc.terminate()
            proc.wait(timeout=10)
