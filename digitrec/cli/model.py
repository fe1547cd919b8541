"""`digitrec train | evaluate | predict`: the maintainer's and the scripter's commands."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from digitrec.learning import datasets


def register(sub: argparse._SubParsersAction) -> None:
    # --datasets names the datasets folder in every command; train and evaluate also take --data-dir, their
    # older spelling, which elsewhere means the service's data dir.
    data_help = datasets.LOOKUP_HELP + " (--data-dir: the same, older spelling)"

    train = sub.add_parser("train", help="train a model (or continue with --resume)")
    train.add_argument(
        "--dataset",
        choices=["mnist", "fashion"],
        default="mnist",
        help="mnist: handwritten digits; fashion: Fashion-MNIST clothing (default mnist)",
    )
    train.add_argument("--output", type=Path, help="model directory to write (default data/trained_models/<name>)")
    train.add_argument("--datasets", "--data-dir", dest="datasets", type=Path, help=data_help)
    train.add_argument("--download", action="store_true", help="download missing files from the official mirrors")
    train.add_argument(
        "--epochs",
        type=int,
        default=15,
        help="passes over the training images (default 15; the shipped digits model took 20, fashion 24)",
    )
    train.add_argument("--batch-size", type=int, default=128, help="images per training step (default 128)")
    train.add_argument(
        "--learning-rate", type=float, default=2e-3, help="peak of AdamW's warm-up + cosine schedule (default 0.002)"
    )
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights, shuffling and augmentation (default 0)"
    )
    train.add_argument(
        "--head",
        choices=["gap", "flatten"],
        help="classifier head: global average pooling, or flatten (default: gap for mnist, flatten for fashion)",
    )
    train.add_argument("--no-augment", dest="augment", action="store_false", help="turn augmentation off")
    train.add_argument(
        "--validation",
        type=int,
        default=5000,
        help="training images held out, equal per class, never trained on; the confidence temperature is "
        "fitted on them (default 5000; 0: none, train on all and calibrate later on half the test set)",
    )
    train.add_argument("--validation-seed", type=int, default=0, help="seed of the validation split (default 0)")
    train.add_argument("--limit", type=int, help="train on the first N images only, after the validation split")
    train.add_argument("--resume", action="store_true", help="continue from the training state in --output")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--from-records",
        action="store_true",
        help="fine-tune on the corrected records instead: the same as `digitrec finetune MODEL` and takes its "
        "options (see `digitrec finetune --help`)",
    )
    train.add_argument(
        "--model", choices=["digits", "fashion"], help="with --from-records: which model (default digits)"
    )
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser("evaluate", help="accuracy, per-class accuracy, confusion matrix, worst mistakes")
    evaluate.add_argument("--model", default="digits", help="digits, fashion, or a model directory")
    evaluate.add_argument("--dataset", choices=["mnist", "fashion"], help="default: the model's own dataset")
    evaluate.add_argument("--datasets", "--data-dir", dest="datasets", type=Path, help=data_help)
    evaluate.add_argument(
        "--download", action="store_true", help="download missing test files from the official mirrors"
    )
    evaluate.add_argument("--report-dir", type=Path, help="where to write the PNGs (default: current folder)")
    evaluate.add_argument("--worst", type=int, default=32, help="how many mistakes to show")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(handler=_evaluate)

    predict = sub.add_parser("predict", help="recognise the digit (or garment) in image files")
    predict.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="image files (PNG, JPEG, BMP, TIFF, WebP...): a drawing, a photo or scan of paper, a 28x28 image",
    )
    predict.add_argument("--model", default="digits", help="digits, fashion, or a model directory")
    predict.add_argument("--json", action="store_true", help="one JSON object per file")
    predict.set_defaults(handler=_predict)


def from_records_argv(argv: list[str]) -> list[str] | None:
    """``train --from-records [--model NAME] ...`` rewritten as ``finetune NAME ...``; None for other commands.

    The alias delegates to ``digitrec finetune`` by its arguments, so there is one fine-tuning path.
    """
    command = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if command is None or argv[command] != "train" or "--from-records" not in argv[command + 1 :]:
        return None
    rest = [arg for arg in argv[command + 1 :] if arg != "--from-records"]
    name = "digits"
    for i, arg in enumerate(rest):
        if arg == "--model" and i + 1 < len(rest):
            name = rest[i + 1]
            del rest[i : i + 2]
            break
        if arg.startswith("--model="):
            name = arg.split("=", 1)[1]
            del rest[i]
            break
    return [*argv[:command], "finetune", name, *rest]


def _train(args: argparse.Namespace) -> int:
    if args.from_records:  # only reached when the alias was not rewritten (e.g. called with a parsed Namespace)
        raise SystemExit("digitrec: error: use `digitrec train --from-records` on the command line")
    from digitrec.learning.training import TrainConfig, train
    from digitrec.model.network import NetworkSpec

    name = "digits" if args.dataset == "mnist" else "fashion"
    head = args.head or ("gap" if args.dataset == "mnist" else "flatten")
    config = TrainConfig(
        dataset=args.dataset,
        output=args.output or Path("data/trained_models") / name,
        data_dir=args.datasets,
        download=args.download,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        augment=args.augment,
        limit=args.limit,
        validation=args.validation,
        validation_seed=args.validation_seed,
        resume=args.resume,
        progress=not args.quiet,
        name=name,
        command="digitrec " + shlex.join(args.argv),
        spec=NetworkSpec(head=head),
    )
    metadata = train(config)
    print(
        f"wrote {config.output}: test accuracy {100 * metadata['test_accuracy']:.2f}% "
        f"after {metadata['training']['epochs']} epochs ({metadata['training']['seconds']:.0f}s)"
    )
    block = metadata.get("calibration")
    if block:
        print(
            f"  temperature {block['temperature']:.4f} fitted on the validation split ({metadata['validation']['size']}"
            f" images); full test set ECE {100 * block['ece_before']:.2f}% -> {100 * block['ece_after']:.2f}%"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from digitrec.learning.evaluation import evaluate

    report = evaluate(
        args.model,
        dataset=args.dataset,
        data_dir=args.datasets,
        download=args.download,
        report_dir=args.report_dir or Path("."),
        worst=args.worst,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"model {report['model']} on {report['dataset']} test: accuracy {100 * report['accuracy']:.2f}% "
        f"({report['errors']} errors in {report['examples']})"
    )
    print(
        f"confidence: median {report['median_confidence']:.4f}, expected calibration error "
        f"{100 * report['ece']:.2f}% (temperature {report['temperature']:.4f})"
    )
    for name, acc in report["per_class_accuracy"].items():
        print(f"  {name:>12}: {100 * acc:6.2f}%")
    print(f"confusion matrix: {report['confusion_matrix_png']}\nworst mistakes: {report['mistakes_png']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from digitrec.errors import DigitrecError
    from digitrec.model.recognizer import DigitRecognizer

    recognizer = DigitRecognizer.load(args.model)
    failures = 0
    for path in args.files:
        try:
            prediction = recognizer.predict(path)
        except (DigitrecError, OSError) as exc:
            failures += 1
            if args.json:
                print(json.dumps({"file": str(path), "error": type(exc).__name__, "message": str(exc)}))
            else:
                print(f"{path}: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"file": str(path), **prediction.to_json()}))
        else:
            print(f"{path}: {prediction.name} ({100 * prediction.confidence:.1f}%)")
    return 1 if failures else 0
