"""`digitrec serve` (filled in by the service work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="serve the web page and JSON API with waitress")
    parser.set_defaults(handler=lambda args: parser.print_help())
