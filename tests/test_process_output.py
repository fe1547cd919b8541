"""What a person sees on the terminal: the CLI and the server in real subprocesses.

No TensorFlow internals on stderr unless asked for (``-v``), no plotting library in the server, one
access-log line per request, a logged shutdown, and a prompt exit on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from digitrec.service.access_log import AccessLog, format_line
from digitrec.service.config import ServiceConfig
from digitrec.service.server import with_access_log
from tests.service_helpers import REPO, digit_png, require_models

# Lines TensorFlow prints at import and first use when nobody quiets it (seen with TensorFlow 2.21).
TF_NOISE = re.compile(r"cuInit|oneDNN custom operations|cudart_stub|absl::InitializeLog|cpu_feature_guard")
CLF = re.compile(
    r"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<size>\d+|-) (?P<seconds>\d+\.\d{6})$'
)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASSANDRA_", "TF_CPP_"))}
    env.update({"PYTHONPATH": str(REPO), **extra})
    return env


@pytest.mark.slow
def test_cli_predict_is_quiet_by_default_and_verbose_with_v(tmp_path):
    models = require_models()
    png = tmp_path / "seven.png"
    png.write_bytes(digit_png(0)[0])
    command = [sys.executable, "-m", "digitrec", "predict", "--model", str(models / "digits"), str(png)]
    quiet = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert re.search(r"seven\.png: 7 \(", quiet.stdout), quiet.stdout
    assert not TF_NOISE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    verbose = subprocess.run(
        command[:3] + ["-v"] + command[3:], capture_output=True, text=True, env=child_env(), timeout=300
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "oneDNN" in verbose.stderr  # -v shows what TensorFlow says (it prints this banner on every CPU)


@pytest.mark.slow
def test_train_prints_no_absl_checkpoint_lines(tmp_path, data_dir):
    """TensorFlow logs "Sharding callback duration" through absl at every checkpoint save; `digitrec
    train` shows its own progress and figures only (``-v`` shows everything)."""
    command = [sys.executable, "-m", "digitrec", "train", "--data-dir", str(data_dir), "--epochs", "2"]
    command += ["--limit", "256", "--validation", "0", "--output", str(tmp_path / "model"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "model" / "model.json").is_file()
    assert "Sharding callback" not in result.stderr, result.stderr[-3000:]
    assert not re.search(r"^\S+ \S+ INFO absl:", result.stderr, re.M), result.stderr[-3000:]


@pytest.mark.slow
def test_create_app_does_not_import_matplotlib(tmp_path):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from digitrec.service import ServiceConfig, create_app\n"
        f"config = ServiceConfig(data_dir=Path({str(tmp_path)!r}), models=('digits',), lazy_models=(),"
        f" models_dir=Path({str(require_models())!r}))\n"
        "app = create_app(config)\n"
        "assert 'tensorflow' in sys.modules\n"
        "print('matplotlib' in sys.modules, 'digitrec.learning.plots' in sys.modules)\n"
        "app.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"], done.stdout
    assert not TF_NOISE.search(done.stderr), done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("server", ["default", "waitress"])
def test_server_logs_requests_and_stops_promptly_on_sigterm(tmp_path, server):
    """The default server (granian's master and one worker on POSIX) and waitress in this process."""
    models = require_models()
    command = [
        sys.executable,
        "-m",
        "digitrec",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--models-dir",
        str(models),
        *(["--server", server] if server != "default" else []),
    ]
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env())
        try:
            line = proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            assert match, f"no URL in {line!r}; stderr: {stderr_path.read_text()}"
            url = match.group(1)
            with urllib.request.urlopen(url + "/healthz?probe=1", timeout=30) as reply:
                assert reply.status == 200
                body = reply.read()
            # idle: no request in flight, and the background release and re-warm of the models after
            # start (which shutdown waits for, on purpose) has finished
            deadline = time.monotonic() + 180
            while "released read-only library pages" not in stderr_path.read_text():
                assert time.monotonic() < deadline, stderr_path.read_text()
                time.sleep(0.2)
            time.sleep(1.0)
            sent = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            seconds = time.perf_counter() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = stderr_path.read_text()
    print(f"SIGTERM to exit when idle: {seconds:.2f} s")
    assert code == 0, output
    assert seconds < 2.0, f"took {seconds:.2f} s to exit after SIGTERM (requirement: within 1 s when idle)"
    assert not TF_NOISE.search(output), output
    access = [line for line in output.splitlines() if "/healthz" in line]
    assert len(access) == 1, output
    parsed = CLF.match(access[0])
    assert parsed, access[0]
    assert parsed["method"] == "GET" and parsed["uri"] == "/healthz?probe=1" and parsed["status"] == "200"
    assert int(parsed["size"]) == len(body)
    if server == "waitress":
        assert re.search(r"shutting down \(SIGTERM\)", output), output
        assert re.search(r"stopped in \d+\.\d+ s", output), output
    else:
        assert "Shutting down granian" in output and "stopped (exit code 0)" in output, output
        assert "[WARNING]" not in output, output  # e.g. granian's "16 Python threads ... quite high"


def test_access_log_is_switched_by_setting():
    app = lambda environ, start_response: []  # noqa: E731 - any WSGI app will do
    assert isinstance(with_access_log(app, ServiceConfig()), AccessLog)
    assert isinstance(with_access_log(app, ServiceConfig.from_env({})), AccessLog)
    assert with_access_log(app, ServiceConfig.from_env({"DIGITREC_ACCESS_LOG": "0"})) is app


def test_gunicorn_never_opens_stderr_a_second_time(tmp_path):
    """Workers log requests through AccessLog to the stderr they inherited; gunicorn's own access log
    (a second open file on /dev/stderr, with its own offset) stays off, whatever the setting."""
    from digitrec.service.prefork import WorkerProcesses

    for environ in ({}, {"DIGITREC_ACCESS_LOG": "0"}):
        assert WorkerProcesses(ServiceConfig.from_env(environ, workers=2), tmp_path).cfg.accesslog is None


def test_stderr_writer_writes_each_line_whole_to_its_descriptor(tmp_path):
    from digitrec.service.access_log import stderr_writer

    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        write = stderr_writer(fd)
        for i in range(3):
            write(f"line {i} \u00e9")
    finally:
        os.close(fd)
    assert path.read_text(encoding="utf-8").splitlines() == [f"line {i} \u00e9" for i in range(3)]


def test_access_log_line_escapes_what_a_client_controls():
    environ = {
        "REMOTE_ADDR": "10.0.0.7",
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": '/records?x="\n127.0.0.1 - - forged',
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    line = format_line(environ, "404 NOT FOUND", 0, 0.0123456, when=0.0)
    assert "\n" not in line and "\\x22" in line and "\\x0a" in line
    assert line.endswith('" 404 - 0.012346')
    assert line.startswith("10.0.0.7 - - [")


def test_access_log_writes_one_line_after_the_body():
    lines: list[str] = []

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"abc", b"de"]

    wrapped = AccessLog(app, lines.append)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "POST", "PATH_INFO": "/a b", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = wrapped(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"abcde"
    assert lines == []  # not before the server closes the body
    body.close()
    assert len(lines) == 1
    assert CLF.match(lines[0]) and '"POST /a%20b HTTP/1.1" 201 5 ' in lines[0]


def test_access_log_at_end_writes_the_line_once_the_last_chunk_is_taken():
    """granian's mode: the line must not wait for a close that a stopping worker may never run."""
    lines: list[str] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc", b"de"]

    wrapped = AccessLog(app, lines.append, at_end=True)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/x", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = wrapped(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"abcde"
    assert len(lines) == 1 and '"GET /x HTTP/1.1" 200 5 ' in lines[0]
    body.close()
    assert len(lines) == 1  # not twice


def test_verbose_flag_works_before_and_after_the_command():
    from digitrec.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "predict", "x.png"]).verbose is True
    assert parser.parse_args(["predict", "-v", "x.png"]).verbose is True
    assert parser.parse_args(["predict", "x.png"]).verbose is False
    assert parser.parse_args(["serve", "--no-access-log"]).access_log is False
    assert parser.parse_args(["serve"]).access_log is None  # unset: DIGITREC_ACCESS_LOG decides


def test_quiet_tensorflow_respects_an_explicit_level():
    from digitrec.runtime.tf_loader import quiet_requested

    assert quiet_requested({}) and quiet_requested({"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert not quiet_requested({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert not quiet_requested({"TF_CPP_MIN_LOG_LEVEL": "2"})


def test_digitrec_plots_is_only_imported_where_it_plots():
    users = [
        p for p in (REPO / "digitrec").rglob("*.py") if "digitrec.learning.plots" in p.read_text() and p.stem != "plots"
    ]
    for path in users:
        for line in path.read_text().splitlines():
            if "digitrec.learning.plots" in line:
                assert line.startswith((" ", "\t")), f"{path.name} imports plots at module level: {line}"
    assert Path(REPO / "digitrec" / "learning" / "plots.py").exists()
