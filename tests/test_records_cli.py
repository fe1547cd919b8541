"""`digitrec records ...` run as a real subprocess against real SQLite files; settings parsed from env."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from records_helpers import FaultyStore, days_ago, make_record

from digitrec.errors import ConfigurationError
from digitrec.records.config import RecordsConfig, Replication
from digitrec.records.factory import open_primary
from digitrec.records.spool import SpooledStore
from digitrec.records.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CASSANDRA_", "DIGITREC_"))}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "digitrec", "records", *args],
        check=False,
        capture_output=True,
        text=True,
        env=clean,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def filled(tmp_path):
    """A data dir with 5 records today and 3 yesterday."""
    store = open_primary(RecordsConfig.from_env({}, data_dir=tmp_path))
    today = [make_record(i) for i in range(5)]
    yesterday = [make_record(i, when=days_ago(1)) for i in range(3)]
    store.add_many(yesterday + today)
    store.close()
    return tmp_path, today, yesterday


def test_init_db_creates_the_sqlite_schema(tmp_path):
    result = run_cli("init-db", "--data-dir", str(tmp_path / "fresh"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fresh" / "records.sqlite3").is_file()
    assert "ready: sqlite" in result.stdout
    store = SQLiteStore(tmp_path / "fresh" / "records.sqlite3")
    assert store.count() == 0
    store.close()


def test_init_db_uses_the_data_dir_from_the_environment(tmp_path):
    result = run_cli("init-db", env={"DIGITREC_DATA_DIR": str(tmp_path / "env-dir")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env-dir" / "records.sqlite3").is_file()


def test_list_json_is_newest_first_and_limited(filled):
    data_dir, today, _ = filled
    result = run_cli("list", "--data-dir", str(data_dir), "--limit", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [str(r.request_id) for r in today[::-1][:3]]
    assert rows[0]["probabilities"] == list(today[-1].probabilities)


def test_verbose_flag_is_accepted_after_the_action(filled):
    data_dir, today, _ = filled
    for args in (("list", "--data-dir", str(data_dir), "--json", "-v"), ("-v", "list", "--data-dir", str(data_dir))):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert str(today[-1].request_id) in result.stdout


def test_list_table_shows_every_record(filled):
    data_dir, today, yesterday = filled
    result = run_cli("list", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("time (UTC)")
    assert len(lines) == 1 + 8
    for record in today + yesterday:
        assert str(record.request_id) in result.stdout


def test_export_csv_writes_all_records_with_probability_columns(filled, tmp_path):
    data_dir, today, yesterday = filled
    out = tmp_path / "export.csv"
    result = run_cli("export", "--csv", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["request_id"] for r in rows] == [str(r.request_id) for r in today[::-1] + yesterday[::-1]]
    first = today[-1]
    assert float(rows[0]["prob_4"]) == first.probabilities[4]
    assert rows[0]["label"] == str(first.label) and rows[0]["corrected_label"] == ""
    assert "exported 8 record(s)" in result.stderr


def test_export_one_day_to_stdout(filled):
    data_dir, _, yesterday = filled
    day = yesterday[0].day.isoformat()
    result = run_cli("export", "--csv", "-", "--day", day, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [r["request_id"] for r in rows] == [str(r.request_id) for r in yesterday[::-1]]


def test_list_outside_the_project_points_to_the_data_dir_before_init_db(tmp_path):
    """Run where there is no ./data: the likely mistake is the folder, and init-db would make a second,
    empty database, so --data-dir / DIGITREC_DATA_DIR come first and init-db is marked as "new, empty"."""
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    result = run_cli("list", cwd=elsewhere)
    assert result.returncode == 2
    message = result.stderr
    assert str(elsewhere / "data" / "records.sqlite3") in message
    assert message.index("--data-dir") < message.index("init-db")
    assert message.index("DIGITREC_DATA_DIR") < message.index("init-db")
    assert "empty" in message
    assert not (elsewhere / "data").exists()  # looking did not create anything


def test_export_neutralises_spreadsheet_formulas_but_keeps_numbers(tmp_path):
    """OWASP CSV injection: text cells starting with = + - @ tab or CR get a leading apostrophe."""
    hostile = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain.png"]
    store = open_primary(RecordsConfig.from_env({}, data_dir=tmp_path))
    store.add_many([make_record(i, file_name=name) for i, name in enumerate(hostile)])
    store.close()
    out = tmp_path / "export.csv"
    result = run_cli("export", "--csv", str(out), "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = sorted(r["file_name"] for r in rows)
    assert names == sorted("'" + n if n != "plain.png" else n for n in hostile)
    for row in rows:
        assert int(row["label"]) in range(10)
        assert float(row["confidence"]) == 0.91
        assert all(0.0 <= float(row[f"prob_{i}"]) <= 1.0 for i in range(10))
        assert not row["prob_0"].startswith("'") and not row["processing_ms"].startswith("'")


def test_list_reports_records_waiting_in_the_spool(tmp_path):
    spooled = SpooledStore(
        FaultyStore(SQLiteStore(tmp_path / "records.sqlite3"), failing=True), tmp_path / "spool.sqlite3"
    )
    spooled.add(make_record(1))
    spooled.close()
    result = run_cli("list", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "1 record(s) wait in" in result.stderr


def test_missing_database_and_bad_settings_are_clear_errors(tmp_path):
    result = run_cli("list", "--data-dir", str(tmp_path / "nothing-here"))
    assert result.returncode == 2
    assert "no records database" in result.stderr and "init-db" in result.stderr
    assert result.stderr.index("--data-dir") < result.stderr.index("init-db")
    result = run_cli(
        "list", "--data-dir", str(tmp_path), env={"CASSANDRA_CONTACT_POINTS": "127.0.0.1", "CASSANDRA_PORT": "ninety"}
    )
    assert result.returncode == 2 and "CASSANDRA_PORT='ninety'" in result.stderr
    result = run_cli("list", "--limit", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "--limit" in result.stderr


# ---------------------------------------------------------------------- settings from the environment


def test_no_contact_points_means_sqlite_on_the_data_volume(tmp_path):
    config = RecordsConfig.from_env({"DIGITREC_DATA_DIR": str(tmp_path)})
    assert config.engine == "sqlite"
    assert config.sqlite_path == tmp_path / "records.sqlite3"
    assert config.spool_path == tmp_path / "spool.sqlite3"


def test_cassandra_settings_are_read_from_the_environment(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    config = RecordsConfig.from_env(
        {
            "CASSANDRA_CONTACT_POINTS": "10.0.0.5, 10.0.0.6",
            "CASSANDRA_PORT": "9142",
            "CASSANDRA_KEYSPACE": "dr_prod",
            "CASSANDRA_USERNAME": "app",
            "CASSANDRA_PASSWORD": "s3cret",
            "CASSANDRA_LOCAL_DC": "dc1",
            "CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3,dc2=2",
            "CASSANDRA_CONSISTENCY": "local_quorum",
            "CASSANDRA_TTL": "86400",
            "CASSANDRA_SSL_CA": str(ca),
        }
    )
    assert config.engine == "cassandra"
    assert config.contact_points == ("10.0.0.5", "10.0.0.6") and config.port == 9142
    assert (config.keyspace, config.table, config.local_dc) == ("dr_prod", "dr_request_log", "dc1")
    assert config.replication.cql_map() == "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    assert config.consistency == "LOCAL_QUORUM" and config.ttl_seconds == 86400 and config.uses_tls
    assert "s3cret" not in config.describe() and "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASSANDRA_REPLICATION": "SimpleStrategy"}, "CASSANDRA_REPLICATION"),
        ({"CASSANDRA_REPLICATION": "SimpleStrategy:0"}, "at least 1"),
        ({"CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1"}, "dc1=3"),
        ({"CASSANDRA_KEYSPACE": "drop table x;"}, "plain CQL name"),
        ({"CASSANDRA_CONSISTENCY": "MOST"}, "consistency"),
        ({"CASSANDRA_USERNAME": "app"}, "CASSANDRA_PASSWORD"),
        ({"CASSANDRA_TTL": "-5"}, "CASSANDRA_TTL"),
        ({"CASSANDRA_SSL_CA": "/no/such/ca.pem"}, "no such file"),
        ({"CASSANDRA_CONTACT_POINTS": "10.0.0.5,,10.0.0.6"}, "CASSANDRA_CONTACT_POINTS"),
        ({"DIGITREC_SPOOL": "maybe"}, "DIGITREC_SPOOL"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigurationError, match=message):
        RecordsConfig.from_env({"CASSANDRA_CONTACT_POINTS": "127.0.0.1", **env})


def test_replication_round_trips_through_text():
    for text in ("SimpleStrategy:1", "NetworkTopologyStrategy:dc1=3,dc2=3"):
        assert str(Replication.parse(text)) == text
