"""`digitrec records export --images` and `digitrec records migrate`, as real subprocesses on real SQLite
files and real upload files."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import zipfile

import pytest
from records_helpers import image_bytes, make_record, with_image
from test_records_cli import run_cli

from digitrec.records.config import RecordsConfig
from digitrec.records.factory import open_primary
from digitrec.records.images import ProgressBar


def _old_record(data_dir, i: int, image: bytes, *, write_file: bool = True):
    """A record as the service wrote it before images went into the store: a file and its SHA-256 only."""
    record = make_record(i)
    relative = f"uploads/{record.request_time:%Y/%m/%d}/{record.request_id}.png"
    if write_file:
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(image)
    return dataclasses.replace(record, image_path=relative, image_sha256=hashlib.sha256(image).hexdigest())


@pytest.fixture
def volume(tmp_path):
    """A data dir holding every kind of record the commands meet."""
    images = {name: image_bytes(1500 + n * 100, seed=n) for n, name in enumerate(["new", "old1", "old2", "gone"])}
    store = open_primary(RecordsConfig.from_env({}, data_dir=tmp_path))
    new = with_image(dataclasses.replace(make_record(1), image_path=None), images["new"])
    store.add(new, images["new"])  # written with its image (files turned off)
    old1 = _old_record(tmp_path, 2, images["old1"])
    old2 = _old_record(tmp_path, 3, images["old2"])
    gone = _old_record(tmp_path, 4, images["gone"], write_file=False)
    swapped = _old_record(tmp_path, 5, image_bytes(900, seed=99))
    (tmp_path / swapped.image_path).write_bytes(image_bytes(900, seed=98))  # not the file its record names
    bare = dataclasses.replace(make_record(6), image_path=None, image_sha256=None)
    store.add_many([old1, old2, gone, swapped, bare])
    store.close()
    records = {"new": new, "old1": old1, "old2": old2, "gone": gone, "swapped": swapped, "bare": bare}
    return tmp_path, records, images


def test_export_writes_the_csv_and_a_folder_of_pngs_named_by_record_id(volume, tmp_path_factory):
    data_dir, records, images = volume
    out = tmp_path_factory.mktemp("out")
    result = run_cli("export", "--data-dir", str(data_dir), "--csv", str(out / "r.csv"), "--images", str(out / "img"))
    assert result.returncode == 0, result.stderr
    with open(out / "r.csv", newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    files = {p.name: p.read_bytes() for p in (out / "img").iterdir()}
    assert files[f"{records['new'].request_id}.png"] == images["new"]  # from the store
    assert files[f"{records['old1'].request_id}.png"] == images["old1"]  # from its upload file
    assert f"{records['gone'].request_id}.png" not in files and f"{records['bare'].request_id}.png" not in files
    assert len(files) == 4  # new, old1, old2 and the swapped file (exported as found)
    assert "exported 4 image(s)" in result.stderr and "2 record(s) without one" in result.stderr


def test_export_writes_a_zip_when_the_name_ends_in_zip(volume, tmp_path_factory):
    data_dir, records, images = volume
    out = tmp_path_factory.mktemp("zip")
    result = run_cli("export", "--data-dir", str(data_dir), "--csv", "-", "--images", str(out / "images.zip"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("request_id,")
    with zipfile.ZipFile(out / "images.zip") as archive:
        assert archive.testzip() is None
        assert archive.read(f"{records['old2'].request_id}.png") == images["old2"]
        assert len(archive.namelist()) == 4


def test_migrate_moves_old_upload_files_into_the_store_once_and_reports_the_rest(volume):
    data_dir, records, images = volume
    first = run_cli("migrate", "--data-dir", str(data_dir))
    assert first.returncode == 1, first.stderr  # one file does not match its record: reported, not stored
    assert "copied 2, already in the store 0, file missing 1" in first.stderr
    assert "SHA-256 1" in first.stderr and str(records["swapped"].request_id) in first.stderr
    assert "files removed 2" in first.stderr
    assert "[#" not in first.stderr  # no bar when stderr is not a terminal

    for name in ("old1", "old2"):  # moved: the image is kept once, in the store
        assert not (data_dir / records[name].image_path).exists()
    assert (data_dir / records["swapped"].image_path).is_file()  # not its record's image: left alone
    store = open_primary(RecordsConfig.from_env({}, data_dir=data_dir))
    try:
        assert store.get_image(records["old1"].request_id) == images["old1"]
        assert store.get_image(records["old2"].request_id) == images["old2"]
        assert store.get_image(records["swapped"].request_id) is None
        assert store.get_image(records["new"].request_id) == images["new"]
    finally:
        store.close()

    again = run_cli("migrate", "--data-dir", str(data_dir), "--no-progress")
    assert "copied 0, already in the store 2, file missing 1" in again.stderr and "files removed 0" in again.stderr


def test_migrate_keep_files_copies_and_a_later_move_removes_the_copies(volume):
    data_dir, records, images = volume
    kept = run_cli("migrate", "--data-dir", str(data_dir), "--keep-files")
    assert "copied 2" in kept.stderr and "files removed 0" in kept.stderr
    assert (data_dir / records["old1"].image_path).read_bytes() == images["old1"]
    moved = run_cli("migrate", "--data-dir", str(data_dir))
    assert "already in the store 2" in moved.stderr and "files removed 2" in moved.stderr
    assert not (data_dir / records["old1"].image_path).exists()
    assert (data_dir / records["swapped"].image_path).is_file()


def test_migrate_on_a_missing_database_names_the_problem(tmp_path):
    result = run_cli("migrate", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode != 0 and "records" in result.stderr and "Traceback" not in result.stderr


def test_the_progress_bar_draws_on_a_terminal_and_finishes_at_100_percent():
    out = io.StringIO()
    bar = ProgressBar(4, "migrating images", out=out, force=True)
    for _ in range(4):
        bar.advance()
    bar.finish()
    text = out.getvalue()
    assert "\rmigrating images [" in text and text.rstrip().endswith("4/4 100%")
    quiet = io.StringIO()
    ProgressBar(4, "x", out=quiet).advance()  # a StringIO is not a terminal
    assert quiet.getvalue() == ""
