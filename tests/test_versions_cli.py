"""`digitrec models list | promote | rollback` on a real models folder (copies of the shipped checkpoint)."""

from __future__ import annotations

import json

import pytest

from digitrec.cli import main
from digitrec.model import checkpoints, versions
from tests.model_versions import copy_flat, make_version
from tests.service_helpers import require_models


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoints.MODELS_ENV_VAR, raising=False)
    monkeypatch.delenv("DIGITREC_DATA_DIR", raising=False)
    shipped = require_models()
    copy_flat(shipped, tmp_path / "trained_models")
    make_version(shipped, tmp_path / "trained_models", "v2", metadata={"parent": "x", "test_accuracy": 0.9971})
    return tmp_path


def shipped_id() -> str:
    return json.loads((require_models() / "digits" / "model.json").read_text())["version"]


def test_list_promote_rollback(data_dir, capsys):
    assert main(["models", "list", "digits", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["MODEL", "VERSION", "TEST"]
    serving = [line for line in lines if line.startswith("*")]
    assert len(serving) == 1 and shipped_id() in serving[0]
    assert any("v2" in line and "99.71%" in line for line in lines)

    assert main(["models", "promote", "digits", "v2", "--data-dir", str(data_dir)]) == 0
    assert f"promoted v2 (was {shipped_id()})" in capsys.readouterr().out
    assert versions.promoted_version("digits", data_dir / "trained_models").id == "v2"

    assert main(["models", "list", "digits", "--json", "--data-dir", str(data_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]["digits"]
    assert [v["version"] for v in listed if v["promoted"]] == ["v2"]

    assert main(["models", "rollback", "digits", "--data-dir", str(data_dir)]) == 0
    assert f"rolled back from v2 to {shipped_id()}" in capsys.readouterr().out
    assert main(["models", "rollback", "digits", "--data-dir", str(data_dir)]) == 2
    assert "no earlier version" in capsys.readouterr().err


def test_data_dir_from_the_environment_and_clear_errors(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("DIGITREC_DATA_DIR", str(data_dir))
    assert main(["models", "promote", "digits", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no version 'nope'" in err and "v2" in err
    assert main(["models", "promote", "digits", "v2"]) == 0
    assert json.loads((data_dir / "trained_models" / "digits" / "promoted.json").read_text())["version"] == "v2"
    assert main(["models", "promote", "nothing", "v2"]) == 2
    assert "no model named 'nothing'" in capsys.readouterr().err
