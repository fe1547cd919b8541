"""What an anonymous client on the network tries against a digitrec service, and what it got.

    python tests/attack_anonymous.py http://127.0.0.1:5000 [--admin-token TOKEN]

Every attempt is made the way a stranger who can reach the port would: no token, a record id it saw
(its own prediction's), ids it guessed, its own correction key replayed on another record, and posts
from a page of another site (a forged form carrying a signed-in admin's session cookie, which is what
a browser would add). An attempt *succeeds* when the answer is not a 401 or 403. ``tests/test_attack.py``
runs this in CI against a service bound to 0.0.0.0 and reached through 127.0.0.1, and checks nothing
changed; SECURITY.md reports the counts. Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import ipaddress
import json
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

EVIL_ORIGIN = "http://evil.example"


@dataclasses.dataclass
class Attempt:
    name: str
    method: str
    path: str
    status: int

    @property
    def refused(self) -> bool:
        return self.status in (401, 403)


class Client:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise SystemExit(f"only loopback targets are attacked here, not {host}")
        self.host, self.port = host, parts.port or 80

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw
        finally:
            conn.close()

    def predict(self, png: bytes, headers: dict | None = None) -> dict:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + png
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = {"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})}
        status, answer = self.send("POST", "/api/v1/predict", body, head)
        if status != 200:
            raise RuntimeError(f"predict answered {status}: {answer}")
        return answer["predictions"][0]


def digit_png(seed: int) -> bytes:
    """A drawn-looking digit: a thick stroke on paper (what the model gets does not matter here)."""
    image = np.full((112, 112), 255, np.uint8)
    cv2.line(image, (30 + seed % 5, 20), (80, 20), 0, 10)
    cv2.line(image, (80, 20), (45, 95), 0, 10)
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def guessed_ids(seen: str) -> list[str]:
    """Ids a stranger would try: the seen time-based id with its clock moved a little, and a random one."""
    base = uuid.UUID(seen)
    near = [uuid.UUID(fields=(base.time_low + d & 0xFFFFFFFF, *base.fields[1:])) for d in (-1, 1, 10_000)]
    return [str(u) for u in near] + [str(uuid.uuid1())]


def run_attacks(base_url: str, victim_id: str, admin_session: str | None = None) -> list[Attempt]:
    """Every attempt an anonymous stranger could make (listed in SECURITY.md); ``victim_id`` is another
    client's record (what a stranger would guess or scrape), ``admin_session`` a signed-in admin's cookie
    for the forged cross-site posts."""
    client = Client(base_url)
    attempts: list[Attempt] = []

    def attempt(name: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> None:
        status, _ = client.send(method, path, body, headers)
        attempts.append(Attempt(name, method, path, status))

    mine = client.predict(digit_png(1))
    rid, key = mine["request_id"], mine.get("correction_key") or "no-key"
    as_json = {"Content-Type": "application/json"}

    for path in ("/api/v1/records", "/api/v1/records?limit=100", "/records", "/uploads/record", "/api/v1/dashboard"):
        attempt("list records", "GET", path, headers={"Accept": "application/json"})
    attempt("list records (a browser)", "GET", "/records", headers={"Accept": "text/html"})
    for seen in (rid, victim_id, *guessed_ids(rid)):
        label = "an id it saw" if seen == rid else "a guessed id"
        for suffix in ("", "/image", "/preview"):
            attempt(f"fetch record{suffix or ' JSON'} by {label}", "GET", f"/api/v1/records/{seen}{suffix}")
        attempt(f"fetch upload file by {label}", "GET", f"/uploads/{seen}.png")
    body = json.dumps({"label": 3}).encode()
    attempt("correct a record that is not its own", "POST", f"/api/v1/records/{victim_id}/correction", body, as_json)
    replay = json.dumps({"label": 3, "correction_key": key}).encode()
    victims = f"/api/v1/records/{victim_id}/correction"
    attempt("replay its correction key on another record", "POST", victims, replay, as_json)
    attempt(
        "replay its correction key (header)", "POST", f"/api/v1/records/{victim_id}/correction", body,
        {**as_json, "X-Correction-Key": key},
    )  # fmt: skip
    attempt("reject another's correction", "POST", f"/api/v1/records/{victim_id}/correction/reject", b"{}", as_json)
    attempt("reload a model", "POST", "/api/v1/models/digits/reload", b"")
    attempt("promote a model", "POST", "/api/v1/models/digits/promote", b'{"version": "2026-11-21"}', as_json)
    attempt("roll back a model", "POST", "/api/v1/models/digits/rollback", b"")
    png = {"Content-Type": "image/png"}
    attempt("load another version", "POST", "/api/v1/predict?version=2020-01-01", digit_png(2), png)
    attempt("delete a record", "DELETE", f"/api/v1/records/{victim_id}")
    attempt("delete its own record", "DELETE", f"/api/v1/records/{rid}")
    forged = {
        "Origin": EVIL_ORIGIN,
        "Content-Type": "application/x-www-form-urlencoded",
        "Sec-Fetch-Site": "cross-site",
    }
    if admin_session:
        forged["Cookie"] = admin_session
    attempt("forge a cross-site form post (correction)", "POST", victims, b"label=3", forged)
    attempt("forge a cross-site form post (reload)", "POST", "/api/v1/models/digits/reload", b"", forged)
    attempt("forge a cross-site form post (own record, with key)", "POST", f"/api/v1/records/{rid}/correction",
            f"label=3&correction_key={key}".encode(), forged)  # fmt: skip
    return attempts


def summary(attempts: list[Attempt]) -> str:
    by_status: dict[int, int] = {}
    for a in attempts:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    succeeded = [a for a in attempts if 200 <= a.status < 300]
    other = [a for a in attempts if not a.refused and not 200 <= a.status < 300]
    lines = [
        f"{len(attempts)} attempts: {len(attempts) - len(succeeded) - len(other)} refused (401/403), "
        f"{len(succeeded)} succeeded (2xx), {len(other)} not refused but found nothing to act on (404/405)"
    ]
    lines.append("status counts: " + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
    lines += [f"  SUCCEEDED {a.status} {a.method} {a.path} ({a.name})" for a in succeeded]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--admin-token", help="to sign in an admin whose cookie the forged posts carry")
    args = parser.parse_args()
    client = Client(args.url)
    victim = client.predict(digit_png(0))["request_id"]
    session = None
    if args.admin_token:
        conn = http.client.HTTPConnection(client.host, client.port, timeout=30)
        conn.request("GET", f"/?token={args.admin_token}")
        session = (conn.getresponse().getheader("Set-Cookie") or "").split(";", 1)[0] or None
        conn.close()
    attempts = run_attacks(args.url, victim, session)
    for a in attempts:
        print(f"{a.status}  {a.method:6s} {a.path}  ({a.name})")
    print(summary(attempts))
    return 0 if all(a.refused for a in attempts) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
