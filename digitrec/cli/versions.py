"""`digitrec models list | promote NAME VERSION | rollback NAME`: look at and choose model versions.

The folder is the service's: ``--models-dir``, else ``<--data-dir or $DIGITREC_DATA_DIR or ./data>/
trained_models`` (``$DIGITREC_MODELS_DIR`` as the service reads it). A running service notices a promotion
within ``DIGITREC_MODEL_POLL_SECONDS`` or at once after ``POST /api/v1/models/<name>/reload``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODEL_NAMES = ("digits", "fashion")


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="the service's data dir ($DIGITREC_DATA_DIR, default ./data)")
    common.add_argument("--models-dir", type=Path, help="writable models folder (default <data dir>/trained_models)")
    parser = sub.add_parser(
        "models",
        help="list model versions, promote one, roll back",
        description=__doc__.splitlines()[0],
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    lister = actions.add_parser("list", parents=[common], help="every version of each model; * marks the serving one")
    lister.add_argument("names", nargs="*", help="models to list (default: digits fashion)")
    lister.add_argument("--json", action="store_true", help="print JSON")
    lister.set_defaults(handler=cmd_list)

    promote = actions.add_parser("promote", parents=[common], help="make VERSION the one that serves NAME")
    promote.add_argument("name", help="the model: digits or fashion")
    promote.add_argument("version", help="a version id as `digitrec models list` shows it")
    promote.set_defaults(handler=cmd_promote)

    rollback = actions.add_parser("rollback", parents=[common], help="serve the version that served before")
    rollback.add_argument("name", help="the model: digits or fashion")
    rollback.set_defaults(handler=cmd_rollback)


def models_dir(args: argparse.Namespace) -> Path:
    from digitrec.service.config import ServiceConfig

    return ServiceConfig.from_env(data_dir=args.data_dir, models_dir=args.models_dir).trained_models_dir


def _percent(value: object) -> str:
    return f"{100 * float(value):.2f}%" if isinstance(value, (int, float)) else "-"


def cmd_list(args: argparse.Namespace) -> int:
    from digitrec.model.versions import list_versions

    folder = models_dir(args)
    listing = {name: [v.to_json() for v in list_versions(name, folder)] for name in (args.names or MODEL_NAMES)}
    if args.json:
        print(json.dumps({"models_dir": str(folder), "models": listing}, indent=2))
        return 0
    rows = [("", "MODEL", "VERSION", "TEST ACC", "PARENT", "PROMOTED AT", "WHERE")]
    for name, found in listing.items():
        if not found:
            rows.append((" ", name, "(none)", "", "", "", ""))
        for v in found:
            where = "shipped" if v["shipped"] else v["path"]
            rows.append(
                (
                    "*" if v["promoted"] else " ",
                    name,
                    v["version"],
                    _percent(v.get("test_accuracy")),
                    v["parent"] or "-",
                    v["promoted_at"] or "-",
                    where,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from digitrec.model.versions import promote, promoted_version

    folder = models_dir(args)
    before = promoted_version(args.name, folder).id
    info = promote(args.name, args.version, folder, reason="digitrec models promote")
    if before == info.id:
        print(f"{args.name}: {info.id} already serves (promotion time updated)")
    else:
        print(f"{args.name}: promoted {info.id} (was {before}); running services switch within their poll interval")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from digitrec.model.versions import promoted_version, rollback

    folder = models_dir(args)
    before = promoted_version(args.name, folder).id
    info = rollback(args.name, folder)
    print(f"{args.name}: rolled back from {before} to {info.id}")
    return 0
