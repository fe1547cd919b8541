"""The Kubernetes sample (container/k8s/): parsed as YAML and checked against the fields the API server
requires for these kinds, with the probes, ports and labels that make the Service route only to ready pods.
No cluster here, so this is a schema check, not a deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parent.parent / "container" / "k8s" / "digitrec.yaml"
# apiVersion per kind, and the fields the API server refuses an object without.
KINDS = {"ConfigMap": "v1", "Deployment": "apps/v1", "Service": "v1"}


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


def test_every_object_has_its_kind_api_version_and_a_valid_name(objects):
    import re

    assert set(objects) == set(KINDS)
    for kind, doc in objects.items():
        assert doc["apiVersion"] == KINDS[kind]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert all(isinstance(v, str) for v in doc["metadata"].get("labels", {}).values())


def test_the_deployment_selects_its_own_pods_and_probes_readyz(objects):
    spec = objects["Deployment"]["spec"]
    assert isinstance(spec["replicas"], int) and spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] and container["image"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 5000}
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and readiness["port"] in ("http", 5000)
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in ports or container[probe]["httpGet"]["port"] in ports.values()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert set(mounts) <= volumes and mounts["data"] == "/data"
    assert container["envFrom"][0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # a rollout never drops below the replica count


def test_the_service_routes_to_the_pods_named_port(objects):
    service = objects["Service"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert 0 < port["port"] < 65536


def test_the_config_map_is_accepted_by_the_real_config_parsers(objects):
    from digitrec.records.config import RecordsConfig
    from digitrec.service.config import ServiceConfig

    env = objects["ConfigMap"]["data"]
    assert all(isinstance(v, str) for v in env.values())  # ConfigMap values must be strings
    records = RecordsConfig.from_env(env)
    assert records.engine == "cassandra" and records.consistency == "LOCAL_QUORUM"
    service = ServiceConfig.from_env(env)
    assert (service.host, service.port, str(service.data_dir)) == ("0.0.0.0", 5000, "/data")
    assert service.keep_upload_files is False  # no shared volume: images live in Cassandra only
