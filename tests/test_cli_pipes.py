"""Every command that prints ends quietly when its reader has gone (`digitrec ... | head -c 3`).

Each command runs as a real subprocess whose stdout is a pipe with no reader left, so its first write
fails with EPIPE, as it does once `head` has read enough and exited. The command must exit 0 with
nothing on stderr about the pipe: no BrokenPipeError traceback, no "Exception ignored" at exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.model_versions import make_version
from tests.service_helpers import REPO, require_models

EXAMPLES = [str(REPO / "examples" / name) for name in ("seven.png", "four-on-paper.jpg", "ankle-boot.jpg")]
PIPE_NOISE = ("Traceback", "BrokenPipe", "Exception ignored", "Broken pipe")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_", "TF_CPP_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_into_gone_reader(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m digitrec ARGS`` with stdout a pipe whose read end is already closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "digitrec", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=cwd,
            timeout=timeout,
        )
    finally:
        os.close(write_end)


def data_dir_with_records_and_versions(root: Path) -> Path:
    """A data dir with three records (one corrected) and a second digits version beside the shipped one."""
    from digitrec.records.config import RecordsConfig
    from digitrec.records.factory import open_primary
    from digitrec.records.record import PredictionRecord

    data = root / "data"
    with open_primary(RecordsConfig(data_dir=data)) as store:
        for label in (3, 7, 9):
            record = PredictionRecord.new(
                model_name="digits",
                model_version="2026-11-21",
                label=label,
                class_name=str(label),
                confidence=0.9,
                probabilities=[0.1 / 9] * label + [0.9] + [0.1 / 9] * (9 - label),
                source="upload",
                file_name=f"d{label}.png",
            )
            store.add(record, (REPO / "examples" / "seven.png").read_bytes())
            if label == 9:
                store.set_correction(record.request_id, 4)
    make_version(require_models(), data / "trained_models", "v2")
    return data


# (command, needs the datasets); {data}, {datasets} and {tmp} are filled in per test.
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "predict": (["predict", *EXAMPLES], False),
    "predict --json": (["predict", "--json", *EXAMPLES], False),
    "models list": (["models", "list", "--data-dir", "{data}"], False),
    "models list --json": (["models", "list", "--json", "--data-dir", "{data}"], False),
    "models promote": (["models", "promote", "digits", "v2", "--data-dir", "{data}"], False),
    "models rollback": (["models", "rollback", "digits", "--data-dir", "{data}"], False),
    "records init-db": (["records", "init-db", "--data-dir", "{data}"], False),
    "records list": (["records", "list", "--data-dir", "{data}"], False),
    "records list --json": (["records", "list", "--json", "--data-dir", "{data}"], False),
    "records export --csv -": (["records", "export", "--csv", "-", "--data-dir", "{data}"], False),
    "records migrate": (["records", "migrate", "--no-progress", "--data-dir", "{data}"], False),
    "evaluate": (["evaluate", "--json", "--data-dir", "{datasets}", "--report-dir", "{tmp}", "--worst", "4"], True),
    "calibrate": (["calibrate", "digits", "--dry-run", "--data-dir", "{data}", "--datasets", "{datasets}"], True),
    "train": (
        ["train", "--data-dir", "{datasets}", "--epochs", "1", "--limit", "256", "--validation", "0"]
        + ["--output", "{tmp}/trained", "--quiet"],
        True,
    ),
    "finetune": (["finetune", "digits", "--data-dir", "{data}", "--datasets", "{datasets}", "--quiet"], True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_whose_reader_has_gone_exits_quietly(name, tmp_path, request):
    args, needs_datasets = COMMANDS[name]
    datasets = request.getfixturevalue("data_dir") if needs_datasets else None
    data = data_dir_with_records_and_versions(tmp_path)
    if name == "models rollback":  # something to roll back from
        subprocess.run(
            [sys.executable, "-m", "digitrec", "models", "promote", "digits", "v2", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            env=child_env(),
        )
    filled = [arg.format(data=data, datasets=datasets, tmp=tmp_path) for arg in args]
    result = run_into_gone_reader(filled, tmp_path)
    noise = [word for word in PIPE_NOISE if word in result.stderr]
    assert result.returncode == 0 and not noise, f"exit {result.returncode}, {noise}:\n{result.stderr[-3000:]}"


def test_a_real_head_pipeline_ends_with_status_0():
    """`digitrec models list --json | head -c 300` under `set -o pipefail`, as a shell user runs it."""
    script = f"set -o pipefail; {sys.executable} -m digitrec models list --json | head -c 300"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=child_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 300 and result.stdout.startswith("{")
    assert not [word for word in PIPE_NOISE if word in result.stderr], result.stderr


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_the_server_keeps_serving_when_its_stdout_reader_has_gone(workers, tmp_path):
    """`digitrec serve | head -1`: the URL line cannot be written, the service serves on regardless."""
    port = free_port()
    read_end, write_end = os.pipe()
    os.close(read_end)
    args = [sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--workers", str(workers)]
    args += ["--data-dir", str(tmp_path / "data"), "--models-dir", str(require_models()), "--threads", "2"]
    with open(tmp_path / "stderr.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=write_end, stderr=log, env=child_env(), cwd=tmp_path)
    os.close(write_end)
    try:
        deadline = time.monotonic() + 300
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
                    status = reply.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (tmp_path / "stderr.log").read_text()[-3000:]
    finally:
        proc.terminate()
        code = proc.wait(timeout=120)
    stderr = (tmp_path / "stderr.log").read_text()
    assert code == 0, stderr[-3000:]
    assert not [word for word in PIPE_NOISE if word in stderr], stderr[-3000:]
