"""Mistakes an operator makes when starting the service get one line and exit status 2, in real
subprocesses: a port already in use (found before any model is loaded, with the default server,
gunicorn workers and waitress) and a data dir that is a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service_helpers import REPO


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def start(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=child_env(), cwd=cwd, timeout=300)


SERVERS = {
    "webservice.py": lambda: [sys.executable, str(REPO / "webservice.py")],
    "serve --workers 2": lambda: [sys.executable, "-m", "digitrec", "serve", "--workers", "2"],
    "serve --server waitress": lambda: [sys.executable, "-m", "digitrec", "serve", "--server", "waitress"],
}

# Runs a server command with an import hook that leaves a file behind if TensorFlow gets imported.
GUARDED = """
import runpy, sys
marker, script, *argv = sys.argv[1:]
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            open(marker, "w").close()
sys.meta_path.insert(0, Watch())
sys.argv = [script, *argv]
if script == "-m":
    sys.argv = ["digitrec", *argv]
    runpy.run_module("digitrec", run_name="__main__", alter_sys=True)
else:
    runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("server", SERVERS)
def test_a_port_in_use_is_one_line_and_exit_2_before_models_load(server, tmp_path):
    marker = tmp_path / "tensorflow-imported"
    command = SERVERS[server]()
    guarded = [
        sys.executable,
        "-c",
        GUARDED,
        str(marker),
        *(command[1:] if server == "webservice.py" else ["-m", *command[3:]]),
    ]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = start(guarded + ["--port", str(port), "--data-dir", str(tmp_path / "data")], tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(f"error: 127.0.0.1:{port} is in use; pass --port"), lines
    assert result.stdout == ""
    assert not marker.exists(), "TensorFlow was imported (models loading) before the port was checked"


def test_the_import_watch_sees_tensorflow(tmp_path):
    """The watch above is not blind: a command that loads a model leaves the marker."""
    marker = tmp_path / "tensorflow-imported"
    command = [sys.executable, "-c", GUARDED, str(marker), "-m", "predict", str(REPO / "examples" / "seven.png")]
    result = start(command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker.exists()


@pytest.mark.parametrize("server", SERVERS)
def test_a_data_dir_that_is_a_file_is_named_as_not_a_folder(server, tmp_path):
    a_file = tmp_path / "records.txt"
    a_file.write_text("not a folder\n")
    result = start(SERVERS[server]() + ["--port", "0", "--data-dir", str(a_file)], tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].endswith(f"error: data dir {a_file} is a file, not a folder"), lines
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize(
    "command",
    [["records", "list"], ["records", "init-db"], ["models", "list"]],
    ids=" ".join,
)
def test_other_commands_name_a_data_dir_that_is_a_file(command, tmp_path):
    a_file = tmp_path / "data"
    a_file.write_text("")
    result = start([sys.executable, "-m", "digitrec", *command, "--data-dir", str(a_file)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(f"error: data dir {a_file} is a file, not a folder"), result.stderr


def test_an_address_of_another_machine_names_host():
    from digitrec.errors import ConfigurationError
    from digitrec.service.listen import check_can_listen

    with pytest.raises(ConfigurationError, match=r"^192\.0\.2\.1 is not an address of this machine; pass --host$"):
        check_can_listen("192.0.2.1", 5000)  # TEST-NET-1: never assigned to a host
    check_can_listen("127.0.0.1", 0)  # any free port: nothing to check
