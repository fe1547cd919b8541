"""The test suite's own plumbing: failing child processes show their output; CI runs in a fresh venv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from processes import run_checked

REPO = Path(__file__).resolve().parent.parent


def test_a_failing_child_process_shows_its_output():
    script = "import sys; print('made it to step 2'); sys.exit('error: invalid command bdist_wheel')"
    with pytest.raises(AssertionError) as raised:
        run_checked([sys.executable, "-c", script], timeout=60)
    message = str(raised.value)
    assert "exited with 1" in message
    assert "made it to step 2" in message and "invalid command bdist_wheel" in message


def test_a_hanging_child_process_shows_what_it_printed_before_the_timeout():
    script = "import time; print('waiting', flush=True); time.sleep(30)"
    with pytest.raises(AssertionError, match=r"(?s)did not finish within 2 s.*waiting"):
        run_checked([sys.executable, "-u", "-c", script], timeout=2)


def test_ci_runs_the_readme_test_command_inside_a_fresh_virtualenv():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    venv_at = next(i for i, line in enumerate(commands) if " -m venv " in line)
    activate_at = next(i for i, line in enumerate(commands) if line.startswith(". ") and "bin/activate" in line)
    assert venv_at < activate_at < commands.index('pip install -e ".[test]" && python -m pytest')
    assert any("apt-get install -y chromium" in line for line in commands)
