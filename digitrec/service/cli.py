"""`digitrec serve`: read settings from arguments and the environment, then serve (granian, gunicorn or waitress)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `digitrec serve` and `python webservice.py`; unset ones fall back to DIGITREC_*."""
    parser.add_argument("--host", help="address to listen on (DIGITREC_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (DIGITREC_PORT, default 5000; 0 picks a free one)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="records, uploads and optional trained_models/ (DIGITREC_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "--threads", type=int, help="request threads per serving process (DIGITREC_THREADS, default 16)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="serving processes: pre-fork workers sharing one socket (DIGITREC_WORKERS, default 1; docs/scaling.md)",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "waitress", "gunicorn", "granian"),
        help="HTTP server (DIGITREC_SERVER, default auto: granian, waitress on Windows; docs/scaling.md)",
    )
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        help="largest accepted request body (DIGITREC_MAX_UPLOAD_BYTES, default 10 MB)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="most images per model call; 1 turns micro-batching off (DIGITREC_BATCH_SIZE, 32)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        help="longest wait for a batch to fill (DIGITREC_BATCH_WAIT_MS, default 2)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="folder with <model>/ checkpoints (default <data dir>/trained_models, else shipped)",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="no line per request on stderr (DIGITREC_ACCESS_LOG=0; on by default)",
    )


def config_from_args(args: argparse.Namespace):
    from digitrec.service.config import ServiceConfig

    return ServiceConfig.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        threads=args.threads,
        workers=args.workers,
        server=args.server,
        max_upload_bytes=args.max_upload_bytes,
        batch_size=args.batch_size,
        batch_wait_ms=args.batch_wait_ms,
        models_dir=args.models_dir,
        access_log=args.access_log,
    )


def run(args: argparse.Namespace) -> int:
    from digitrec.service.server import serve

    return serve(config_from_args(args))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve the web page and JSON API (granian workers; waitress on Windows or with --server waitress)",
        description="Serve the drawing page, the JSON API and the seed-compatible URLs. Records go to "
        "SQLite in the data dir, or to Cassandra when CASSANDRA_CONTACT_POINTS is set. "
        "Set DIGITREC_API_TOKEN to protect records and stored images.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
