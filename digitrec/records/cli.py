"""`digitrec records init-db | list | export | migrate | delete | purge`: create the schema, look at and
export the request records (and their images), copy old upload files into the store, delete records for
good (one by one, or every record before a date).

These commands open the engine store directly (no spool replayer), so they never move records behind
the running service's back; they report how many records wait in the spool.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO

from digitrec.errors import ConfigurationError, DigitrecError
from digitrec.records.record import RECORD_FIELDS


def _csv_columns() -> list[str]:
    """The record's fields, with ``day`` after the time and one column per probability."""
    columns = [*RECORD_FIELDS[:2], "day"]
    for field in RECORD_FIELDS[2:]:
        columns.extend([f"prob_{i}" for i in range(10)] if field == "probabilities" else [field])
    return columns


CSV_COLUMNS = _csv_columns()


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory holding records.sqlite3 and spool.sqlite3 (default: $DIGITREC_DATA_DIR or ./data)",
    )
    parser = sub.add_parser(
        "records",
        help="manage the request records store",
        description="Manage the request records store (SQLite by default, Cassandra when "
        "CASSANDRA_CONTACT_POINTS is set).",
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="records_command", metavar="ACTION")

    init = actions.add_parser("init-db", parents=[common], help="create the keyspace and tables, or the SQLite schema")
    init.set_defaults(handler=cmd_init_db)

    lister = actions.add_parser("list", parents=[common], help="show the newest records")
    lister.add_argument("--limit", type=_positive, default=20, help="how many records (default 20)")
    lister.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    lister.add_argument(
        "--refused",
        action="store_true",
        help="only records where something did not look like one of the model's classes (a refused mark)",
    )
    lister.set_defaults(handler=cmd_list)

    export = actions.add_parser("export", parents=[common], help="write records to a CSV file, newest first")
    export.add_argument("--csv", required=True, metavar="FILE", help="output file, or - for standard output")
    export.add_argument("--day", type=_day, default=None, help="only this UTC day (YYYY-MM-DD)")
    export.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR|FILE.zip",
        help="also write each record's image as <record id>.png into this folder, or into this zip file",
    )
    export.set_defaults(handler=cmd_export)

    migrate = actions.add_parser(
        "migrate",
        parents=[common],
        help="move upload files of older records into the store (idempotent)",
        description="Move the files under <data dir>/uploads of records written before images were stored "
        "with their record (or by a service with DIGITREC_KEEP_UPLOAD_FILES=1) into the records store, so "
        "every replica can serve them and each image is kept once. A file is deleted only after the store "
        "has committed the same bytes. Safe to run again: images already in the store are skipped; a file "
        "whose SHA-256 is not the record's is reported and left in place.",
    )
    migrate.add_argument(
        "--keep-files", action="store_true", help="copy into the store but leave the upload files in place"
    )
    migrate.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on terminals only)")
    migrate.set_defaults(handler=cmd_migrate)

    delete = actions.add_parser(
        "delete",
        parents=[common],
        help="delete records for good: record, image, upload file, spooled copies",
        description="Delete records everywhere their bytes are kept: the store (SQLite overwrites them and "
        "truncates its log), the upload file and every spool file in the data directory. "
        "`records export` first to keep a copy.",
    )
    delete.add_argument("ids", nargs="+", metavar="ID", help="record ids (request_id)")
    delete.set_defaults(handler=cmd_delete)

    purge = actions.add_parser(
        "purge",
        parents=[common],
        help="delete every record of the days before a date",
        description="Delete every record of the UTC days before --before, in batches of --batch records "
        "(a running service keeps serving meanwhile), with their images, upload files and spooled copies.",
    )
    purge.add_argument("--before", type=_day, required=True, help="first UTC day to keep (YYYY-MM-DD)")
    purge.add_argument("--batch", type=_positive, default=500, help="records per transaction (default 500)")
    purge.set_defaults(handler=cmd_purge)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-21") from None


def _config(args: argparse.Namespace):
    from digitrec.records.config import RecordsConfig

    return RecordsConfig.from_env(data_dir=args.data_dir)


def _note_spool(config) -> None:
    from digitrec.records.spool_files import total_depth

    depth = total_depth(config.spool_path)  # every process's spool (<spool> and <spool>.worker-<pid>)
    if depth:
        print(
            f"note: {depth} record(s) wait in {config.spool_path} (and its workers' spools beside it) "
            "and appear once the service replays them",
            file=sys.stderr,
        )


def cmd_init_db(args: argparse.Namespace) -> int:
    from digitrec.records.factory import open_primary

    config = _config(args)
    with open_primary(config) as store:
        if config.engine == "cassandra":
            for statement in store.init_schema():
                print(statement.rstrip() + ";")
        health = store.health()
    if not health.ok:
        print(f"digitrec: error: store not usable: {health.detail}", file=sys.stderr)
        return 1
    print(f"ready: {config.describe()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from digitrec.records.factory import open_primary

    config = _config(args)
    _check_sqlite_exists(config)
    with open_primary(config) as store:
        if args.refused:
            from digitrec.records.query import RecordFilter

            records = _found(store, RecordFilter(refused=True), args.limit)
        else:
            records = store.latest(args.limit).records
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        _print_table(records, sys.stdout)
    _note_spool(config)
    return 0


def _found(store, where, limit: int) -> list:
    """Up to ``limit`` matching records, newest first (a Cassandra page may be short: read on)."""
    found, cursor = [], None
    while len(found) < limit:
        page = store.find(where, limit - len(found), cursor)
        found.extend(page.records)
        cursor = page.next_cursor
        if not cursor:
            break
    return found


def cmd_export(args: argparse.Namespace) -> int:
    from digitrec.records.factory import open_primary

    config = _config(args)
    _check_sqlite_exists(config)
    from digitrec.records.images import ImageSink, record_image

    count = images = no_image = 0
    with open_primary(config) as store, _output(args.csv) as out:
        sink = ImageSink(args.images) if args.images is not None else None
        try:
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for record in _all_records(store, args.day):
                writer.writerow(_csv_row(record))
                count += 1
                if sink is not None:
                    data = record_image(store, record, config.data_dir)
                    if data is None:
                        no_image += 1
                    else:
                        sink.write(record, data)
                        images += 1
        finally:
            if sink is not None:
                sink.close()
    if args.csv != "-":
        print(f"exported {count} record(s) to {args.csv}", file=sys.stderr)
    if sink is not None:
        print(f"exported {images} image(s) to {args.images} ({no_image} record(s) without one)", file=sys.stderr)
    _note_spool(config)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from digitrec.records.factory import open_primary
    from digitrec.records.images import ProgressBar, migrate_images

    config = _config(args)
    _check_sqlite_exists(config)
    with open_primary(config) as store:
        total = sum(1 for r in _all_records(store, None) if r.image_path is not None)
        progress = None if args.no_progress else ProgressBar(total, "migrating images")
        candidates = (r for r in _all_records(store, None) if r.image_path is not None)
        report = migrate_images(store, candidates, config.data_dir, progress, remove_files=not args.keep_files)
    print(f"{total} record(s) with an upload file: {report.summary()}", file=sys.stderr)
    for request_id in report.mismatched:
        print(f"warning: the upload file of {request_id} is not the image its record names; left out", file=sys.stderr)
    _note_spool(config)
    return 1 if report.mismatched else 0


def cmd_delete(args: argparse.Namespace) -> int:
    import uuid

    from digitrec.records.deletion import delete_record
    from digitrec.records.factory import open_primary

    config = _config(args)
    _check_sqlite_exists(config)
    try:
        ids = [uuid.UUID(text) for text in args.ids]
    except ValueError as exc:
        raise DigitrecError(f"not a record id: {exc}") from None
    missing = 0
    with open_primary(config) as store:
        for request_id in ids:
            report = delete_record(store, request_id, config.data_dir, config.spool_path.parent)
            if report.found:
                print(
                    f"deleted {request_id} ({report.upload_files} upload file(s), {report.spool_rows} spooled row(s))"
                )
            else:
                print(f"no record {request_id}", file=sys.stderr)
                missing += 1
    return 1 if missing else 0


def cmd_purge(args: argparse.Namespace) -> int:
    from digitrec.records.deletion import purge
    from digitrec.records.factory import open_primary

    config = _config(args)
    _check_sqlite_exists(config)

    def progress(count: int) -> None:
        if sys.stderr.isatty():
            print(f"\rpurged {count} record(s)", end="", file=sys.stderr, flush=True)

    with open_primary(config) as store:
        report = purge(
            store, args.before, config.data_dir, config.spool_path.parent, batch=args.batch, progress=progress
        )
    if sys.stderr.isatty() and report.records:
        print(file=sys.stderr)
    print(
        f"purged {report.records} record(s) from before {args.before} ({report.upload_files} upload file(s), "
        f"{report.spool_rows} spooled row(s))"
    )
    return 0


def _output(name: str) -> IO[str]:
    if name == "-":
        return nullcontext(sys.stdout)  # type: ignore[return-value]
    try:
        return open(name, "w", newline="", encoding="utf-8")
    except OSError as exc:
        raise DigitrecError(f"cannot write {name}: {exc.strerror}") from None


def _check_sqlite_exists(config) -> None:
    """No database here usually means the wrong folder, not a missing one: say where to point first,
    and offer ``init-db`` (which makes a new, empty database) only as the last resort."""
    if config.engine == "sqlite" and not config.sqlite_path.exists():
        raise ConfigurationError(
            f"no records database at {config.sqlite_path.resolve()}. If the service keeps its data in another "
            "folder, point there with --data-dir DIR or DIGITREC_DATA_DIR=DIR (the folder that holds "
            "records.sqlite3; the service's default is ./data where it was started). Only to start a new, "
            "empty database here: `digitrec records init-db`"
        )


def _all_records(store, day: dt.date | None) -> Iterator:
    if day is not None:
        yield from store.by_day(day)
        return
    cursor = None
    while True:
        page = store.latest(500, cursor)
        yield from page.records
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"); a file
# name is chosen by whoever uploads, so such text cells get a leading apostrophe, which spreadsheets show
# as plain text. Numbers are written as numbers and never changed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """``value`` as a CSV cell a spreadsheet shows as text, never evaluates (numbers unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_row(record) -> list:
    data = record.to_json()
    row = []
    for column in CSV_COLUMNS:
        if column.startswith("prob_"):
            row.append(float(record.probabilities[int(column[5:])]))  # written as repr(): exact
        elif column in ("digits", "refused"):  # a reading's marks as one JSON cell, as the stores keep them
            row.append(json.dumps(data[column], separators=(",", ":")) if record.is_reading else "")
        else:
            value = data.get(column)
            row.append("" if value is None else spreadsheet_safe(value))
    return row


def _print_table(records, out: IO[str]) -> None:
    header = ("time (UTC)", "request id", "model", "label", "name", "conf", "source", "corrected", "file")
    rows = [
        (
            r.request_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            str(r.request_id),
            r.model_name,
            _shown_label(r),
            r.class_name,
            f"{r.confidence:.3f}",
            r.source,
            "" if r.correction is None else str(r.correction),
            r.file_name or "",
        )
        for r in records
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip(), file=out)
    if not rows:
        print("(no records)", file=out)


def _shown_label(record) -> str:
    """A one-digit record's label; a reading's text in quotes, with its refused marks counted."""
    if not record.is_reading:
        return str(record.label) + (" (refused)" if record.is_refused else "")
    refused = f" +{len(record.refused)} refused" if record.refused else ""
    return f'"{record.text}"{refused}'
