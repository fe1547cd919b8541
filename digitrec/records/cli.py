"""`digitrec records ...` subcommands (filled in by the records work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("records", help="manage the request records store")
    parser.set_defaults(handler=lambda args: parser.print_help())
