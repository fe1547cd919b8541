"""`digitrec calibrate | finetune`: make a model's confidence honest, and teach it its users' corrections.

Models are found the way the service and `digitrec models` find them: ``--models-dir``, else
``<--data-dir or $DIGITREC_DATA_DIR or ./data>/trained_models``, then the shipped models. The training
and test images (MNIST, Fashion-MNIST) come from ``--datasets`` or ``$DIGITREC_DATASETS``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitrec.learning import datasets


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="the service's data dir ($DIGITREC_DATA_DIR, default ./data)")
    common.add_argument("--models-dir", type=Path, help="writable models folder (default <data dir>/trained_models)")
    common.add_argument(
        "--datasets",
        type=Path,
        help=datasets.LOOKUP_HELP,
    )
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


def register(sub: argparse._SubParsersAction) -> None:
    common = _common()
    calibrate = sub.add_parser(
        "calibrate",
        parents=[common],
        help="fit the confidence temperature of a model version on images it never trained on",
        description="Fit a temperature (probabilities = softmax(logits / T)) on the model's validation split "
        "(training images it was never trained on, declared in its model.json), report the expected calibration "
        "error before and after on the full test set, and store T in the version's model.json. A model without "
        "a validation split (trained with --validation 0, or before it existed) is fitted on a fixed half of "
        "its test set instead, and the figures say so. Labels and accuracy do not change.",
    )
    calibrate.add_argument("model", help="digits, fashion, or a model directory")
    calibrate.add_argument("--version", help="which version of a named model (default: the one that serves)")
    calibrate.add_argument(
        "--objective",
        choices=["nll", "ece"],
        default="nll",
        help="what the temperature minimises on the validation split: negative log-likelihood (default) or "
        "the 15-bin ECE itself (validation split only)",
    )
    calibrate.add_argument("--dry-run", action="store_true", help="report, but do not write model.json")
    calibrate.set_defaults(handler=cmd_calibrate)

    refusal = sub.add_parser(
        "train-refusal",
        parents=[common],
        help="train a model version's refusal head: what is none of its classes (letters, shapes, noise ...)",
        description="Train the small 'none of these' head on the frozen classifier's features (its training "
        "images against synthetic letters, scribbles, shapes, textures and the other dataset's images), fit "
        "its threshold so that at most 0.5 % of held-out in-domain images are refused, measure it on non-domain "
        "kinds it never saw, and store it in the version's checkpoint and model.json. The classifier's "
        "weights, labels and confidences do not change. Run it again after fine-tuning.",
    )
    refusal.add_argument("model", help="digits, fashion, or a model directory")
    refusal.add_argument("--version", help="which version of a named model (default: the one that serves)")
    refusal.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic non-domain images and the training (default 0)"
    )
    refusal.add_argument("--dry-run", action="store_true", help="train and report, but write nothing")
    refusal.set_defaults(handler=cmd_train_refusal)

    from digitrec.learning.finetune import HOLDOUT_PERCENT, MIN_CORRECTIONS, FinetuneConfig
    from digitrec.records.trust import MAX_CLIENT_SHARE

    finetune = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune a model on the corrected records; promote the new version if it is better",
        description="Train the serving version further on the images of corrected records (read from the "
        "records store, else the upload files), mixed with replayed training images; write a new version; "
        "promote it only if it beats its parent on held-out corrections and loses at most 0.05 points on "
        "the test set.",
    )
    finetune.add_argument("model", choices=["digits", "fashion"], help="which model's serving version to train further")
    finetune.add_argument(
        "--min-corrections", type=int, default=MIN_CORRECTIONS, help=f"refuse below this (default {MIN_CORRECTIONS})"
    )
    finetune.add_argument(
        "--holdout-percent",
        type=int,
        default=HOLDOUT_PERCENT,
        help=f"share of corrected images kept to judge the new version (default {HOLDOUT_PERCENT})",
    )
    finetune.add_argument(
        "--epochs", type=int, default=None, help="this many passes over the replayed images instead of --steps"
    )
    finetune.add_argument(
        "--replay",
        type=int,
        default=None,
        help="training images replayed (default: all of them but the parent's validation split)",
    )
    finetune.add_argument(
        "--distill",
        type=float,
        default=FinetuneConfig.distill,
        help="weight of matching the teacher's probabilities on the replayed images (default "
        f"{FinetuneConfig.distill:g}; 0 trains on their labels only)",
    )
    finetune.add_argument(
        "--distill-from",
        choices=["shipped", "parent"],
        default="shipped",
        help="whose probabilities the replayed images are matched to: the first version of the lineage "
        "(default; every fine-tuned version then keeps the shipped model's answers on its dataset) or the parent",
    )
    defaults = FinetuneConfig()
    finetune.add_argument(
        "--steps", type=int, default=defaults.steps, help=f"training steps of 128 images (default {defaults.steps})"
    )
    finetune.add_argument(
        "--correction-share",
        type=float,
        default=defaults.correction_share,
        help=f"share of each batch from corrections (default {defaults.correction_share})",
    )
    finetune.add_argument(
        "--anchor",
        type=float,
        default=defaults.anchor,
        help="weight of the squared distance of the weights from the parent's (L2-SP; default "
        f"{defaults.anchor}; 0 turns it off)",
    )
    finetune.add_argument(
        "--max-client-share",
        type=float,
        default=MAX_CLIENT_SHARE,
        help="most of the corrections used that one anonymous client (correction key, no token) may "
        f"contribute (default {MAX_CLIENT_SHARE}); reviewer and admin corrections are always used",
    )
    finetune.add_argument(
        "--learning-rate", type=float, default=1e-4, help="peak of the warm-up + cosine schedule (default 0.0001)"
    )
    finetune.add_argument(
        "--seed", type=int, default=0, help="seed of the replay choice, batch order and augmentation (default 0)"
    )
    finetune.add_argument(
        "--promote",
        dest="promote",
        action="store_true",
        default=True,
        help="promote the new version when it passes the gate (the default)",
    )
    finetune.add_argument(
        "--no-promote", dest="promote", action="store_false", help="write and judge the version, never promote"
    )
    finetune.add_argument("--quiet", action="store_true", help="no progress bar")
    finetune.set_defaults(handler=cmd_finetune)


def models_dir(args: argparse.Namespace) -> Path | None:
    if args.models_dir is not None:
        return args.models_dir
    from digitrec.service.config import ServiceConfig

    return ServiceConfig.from_env(data_dir=args.data_dir).trained_models_dir


def resolve(model: str, version: str | None, folder: Path | None) -> Path:
    """A model directory from a path, or from a name (and version) through ``digitrec.model.versions``."""
    from digitrec.model import versions

    if Path(model).is_dir():
        if version:
            raise SystemExit("digitrec: error: --version goes with a model name, not a directory")
        from digitrec.model.versions import resolve_model_dir

        return resolve_model_dir(model)
    if version:
        return versions.get_version(model, version, folder).path
    return versions.promoted_version(model, folder).path


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from digitrec.errors import ConfigurationError
    from digitrec.learning.calibrate import calibrate_model_dir

    model_dir = resolve(args.model, args.version, models_dir(args))
    try:
        block = calibrate_model_dir(model_dir, args.datasets, write=not args.dry_run, objective=args.objective)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if args.json:
        print(json.dumps({"model_dir": str(model_dir), "written": not args.dry_run, "calibration": block}, indent=2))
        return 0
    before, after = block["before"], block["after"]
    print(f"{model_dir}: temperature {block['temperature']:.4f} (was {before['temperature']:.4f})")
    print(f"  fitted on: {block['fitted_on']}")
    print(f"  judged on: {block['held_out']}")
    print(f"  {'':24} {'ECE':>8} {'accuracy':>9} {'median conf':>12} {'conf >= 0.99':>13}")
    if block.get("fit_split") == "validation":
        parts = (("validation (fit)", "validation"), ("full test set", "test"))
    else:
        parts = (("held-out half", "held_out"), ("full test set", "test"))
    for label, part in parts:
        for when, figures in (("before", before[part]), ("after", after[part])):
            print(
                f"  {label + ', ' + when:24} {_pct(figures['ece']):>8} {_pct(figures['accuracy']):>9} "
                f"{figures['median_confidence']:>12.4f} {_pct(figures['share_at_0_99']):>13}"
            )
    print("  (dry run: model.json not changed)" if args.dry_run else f"  wrote {model_dir / 'model.json'}")
    return 0


def cmd_train_refusal(args: argparse.Namespace) -> int:
    import shlex

    from digitrec.learning.refusal import fit_domain_head

    model_dir = resolve(args.model, args.version, models_dir(args))
    log = (lambda message: None) if args.json else print
    block = fit_domain_head(
        model_dir,
        args.datasets,
        write=not args.dry_run,
        seed=args.seed,
        command="digitrec " + shlex.join(args.argv),
        log=log,
    )
    if args.json:
        print(json.dumps({"model_dir": str(model_dir), "written": not args.dry_run, "domain": block}, indent=2))
    elif args.dry_run:
        print("  (dry run: nothing written)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    import shlex

    from digitrec.errors import ConfigurationError
    from digitrec.learning.finetune import FinetuneConfig, finetune
    from digitrec.records.config import RecordsConfig
    from digitrec.records.factory import open_primary
    from digitrec.service.config import ServiceConfig

    counts = (args.min_corrections, args.epochs or 1, args.replay or 1, args.steps)
    if min(counts) < 1 or not 0 < args.holdout_percent < 100:
        raise ConfigurationError(
            "--min-corrections, --epochs, --replay and --steps must be >= 1; --holdout-percent 1-99"
        )
    if not 0.0 < args.correction_share < 1.0:
        raise ConfigurationError("--correction-share must be between 0 and 1")
    if args.distill < 0 or args.anchor < 0:
        raise ConfigurationError("--distill and --anchor must be at least 0")
    if not 0.0 < args.max_client_share <= 1.0:
        raise ConfigurationError("--max-client-share must be above 0 and at most 1")
    service = ServiceConfig.from_env(data_dir=args.data_dir, models_dir=args.models_dir)
    config = FinetuneConfig(
        name=args.model,
        data_dir=service.data_dir,
        models_dir=service.trained_models_dir,
        datasets_dir=args.datasets,
        min_corrections=args.min_corrections,
        max_client_share=args.max_client_share,
        holdout_percent=args.holdout_percent,
        replay=args.replay,
        correction_share=args.correction_share,
        anchor=args.anchor,
        epochs=args.epochs,
        distill=args.distill,
        distill_from=args.distill_from,
        steps=args.steps,
        learning_rate=args.learning_rate,
        promote=args.promote,
        seed=args.seed,
        progress=not args.quiet,
        command="digitrec " + shlex.join(args.argv),
    )
    log = (lambda message: None) if args.json else print
    with open_primary(RecordsConfig.from_env(data_dir=service.data_dir)) as store:
        result = finetune(config, store, log=log)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"wrote {result['name']} version {result['version']} ({result['path']}), parent {result['parent']}")
    print(
        f"  held-out corrections ({result['corrections_held_out']}): {_pct(result['parent_holdout_accuracy'])} -> "
        f"{_pct(result['holdout_accuracy'])}"
    )
    print(f"  test set: {_pct(result['parent_test_accuracy'])} -> {_pct(result['test_accuracy'])}")
    fitted = "the validation split" if result["calibration_fit_split"] == "validation" else "half the test set (legacy)"
    print(
        f"  calibration: temperature {result['temperature']:.4f} fitted on {fitted}; full test set ECE "
        f"{_pct(result['ece_before'])} -> {_pct(result['ece_after'])}"
    )
    if result["promoted"]:
        print(f"  promoted: {'; '.join(result['reasons'])}")
    elif result["gate_passed"]:
        print(
            "  passes the gate but not promoted (--no-promote); promote with "
            f"`digitrec models promote {result['name']} {result['version']}`"
        )
    else:
        print(f"  NOT promoted: {'; '.join(r for r in result['reasons'])}")
    return 0
