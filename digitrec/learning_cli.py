"""`digitrec calibrate | finetune`: make a model's confidence honest, and teach it its users' corrections.

Models are found the way the service and `digitrec models` find them: ``--models-dir``, else
``<--data-dir or $DIGITREC_DATA_DIR or ./data>/trained_models``, then the shipped models. The training
and test images (MNIST, Fashion-MNIST) come from ``--datasets`` or ``$DIGITREC_DATASETS``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitrec import datasets


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="the service's data dir ($DIGITREC_DATA_DIR, default ./data)")
    common.add_argument("--models-dir", type=Path, help="writable models folder (default <data dir>/trained_models)")
    common.add_argument(
        "--datasets",
        type=Path,
        help=f"folder holding mnist/ and fashion-mnist/ (default ${datasets.ENV_VAR} or ~/.cache/digitrec/datasets)",
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


def register(sub: argparse._SubParsersAction) -> None:
    common = _common()
    calibrate = sub.add_parser(
        "calibrate",
        parents=[common],
        help="fit the confidence temperature of a model version on held-out test images",
        description="Fit a temperature (probabilities = softmax(logits / T)) on a fixed half of the model's "
        "test set, report the expected calibration error before and after on the other half and on the whole "
        "test set, and store T in the version's model.json. Labels and accuracy do not change.",
    )
    calibrate.add_argument("model", help="digits, fashion, or a model directory")
    calibrate.add_argument("--version", help="which version of a named model (default: the one that serves)")
    calibrate.add_argument("--dry-run", action="store_true", help="report, but do not write model.json")
    calibrate.set_defaults(handler=cmd_calibrate)


def models_dir(args: argparse.Namespace) -> Path | None:
    if args.models_dir is not None:
        return args.models_dir
    from digitrec.service.config import ServiceConfig

    return ServiceConfig.from_env(data_dir=args.data_dir).trained_models_dir


def resolve(model: str, version: str | None, folder: Path | None) -> Path:
    """A model directory from a path, or from a name (and version) through ``digitrec.versions``."""
    from digitrec import versions

    if Path(model).is_dir():
        if version:
            raise SystemExit("digitrec: error: --version goes with a model name, not a directory")
        from digitrec.checkpoints import resolve_model_dir

        return resolve_model_dir(model)
    if version:
        return versions.get_version(model, version, folder).path
    return versions.promoted_version(model, folder).path


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from digitrec.calibration import calibrate_model_dir

    model_dir = resolve(args.model, args.version, models_dir(args))
    block = calibrate_model_dir(model_dir, args.datasets, write=not args.dry_run)
    if args.json:
        print(json.dumps({"model_dir": str(model_dir), "written": not args.dry_run, "calibration": block}, indent=2))
        return 0
    before, after = block["before"], block["after"]
    print(f"{model_dir}: temperature {block['temperature']:.4f} (was {before['temperature']:.4f})")
    print(f"  fitted on: {block['fitted_on']}")
    print(f"  {'':24} {'ECE':>8} {'accuracy':>9} {'median conf':>12} {'conf >= 0.99':>13}")
    for label, part in (("held-out half", "held_out"), ("full test set", "test")):
        for when, figures in (("before", before[part]), ("after", after[part])):
            print(
                f"  {label + ', ' + when:24} {_pct(figures['ece']):>8} {_pct(figures['accuracy']):>9} "
                f"{figures['median_confidence']:>12.4f} {_pct(figures['share_at_0_99']):>13}"
            )
    print("  (dry run: model.json not changed)" if args.dry_run else f"  wrote {model_dir / 'model.json'}")
    return 0
