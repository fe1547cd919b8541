"""`digitrec token show | rotate`: the service's access token (see ``access``), kept in the data volume,
or in the records store when that is Cassandra (replicas share the store, not always a volume).

``show`` prints it (making one if there is none yet, as the service would); ``rotate`` replaces it, which
ends every browser session signed in with the old one. Running services, and every replica sharing the
volume, use the new token within a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "token",
        help="show or rotate the service's access token",
        description="Show or rotate the admin token a service bound off loopback keeps in <data dir>/"
        "access_token (owner-only). Tokens set in DIGITREC_*_TOKEN variables are not managed here.",
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION")
    for name, handler, text in (
        ("show", cmd_show, "print the token (made now if there is none yet)"),
        ("rotate", cmd_rotate, "replace the token; sessions signed in with the old one end"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="the service's data directory (default: $DIGITREC_DATA_DIR or ./data)",
        )
        action.set_defaults(handler=handler)


@contextlib.contextmanager
def _secrets(args: argparse.Namespace) -> Iterator:
    """Where the service keeps its token: the records store with Cassandra, else the data directory."""
    from digitrec.records.config import RecordsConfig
    from digitrec.service.access import FileSecrets, secrets_for

    records = RecordsConfig.from_env(data_dir=args.data_dir)
    if records.engine != "cassandra":
        yield FileSecrets(records.data_dir)
        return
    from digitrec.records.factory import open_primary

    with open_primary(records) as store:
        yield secrets_for(store, records.data_dir)


def _note_environment() -> None:
    from digitrec.service.access import ROLE_VARIABLES

    names = [name for role, name in ROLE_VARIABLES if role == "admin" and os.environ.get(name)]
    if names:
        print(f"note: {' and '.join(names)} is set; a service started with it uses that admin token", file=sys.stderr)


def cmd_show(args: argparse.Namespace) -> int:
    from digitrec.service.access import TOKEN_FILE, new_token

    with _secrets(args) as secrets:
        token, made = secrets.get(TOKEN_FILE, new_token)
        where = secrets.where(TOKEN_FILE)
    print(token)
    print(f"{'made' if made else 'read'} {where}", file=sys.stderr)
    _note_environment()
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from digitrec.service.access import TOKEN_FILE, new_token

    with _secrets(args) as secrets:
        token = secrets.rotate(TOKEN_FILE, new_token)
        where = secrets.where(TOKEN_FILE)
    print(token)
    print(f"wrote a new token to {where}; running services use it within a few seconds", file=sys.stderr)
    _note_environment()
    return 0
