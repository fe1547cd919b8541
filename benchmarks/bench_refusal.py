"""Refusal figures of the shipped models: how much that is none of their classes they refuse, and at what cost.

    python benchmarks/bench_refusal.py --datasets ../shared/datasets [--per-family 400] [--json]

For each model (digits, fashion) it scores, with the model as it serves (``predict_scores``, one call):

- in the domain: the model's whole test set (10,000 images), the same test images redrawn as canvas
  drawings or paper photos (1,000), and the model's images in ``examples/`` read from their files;
  for digits also the 1,797 digits of writers outside MNIST in scikit-learn's optdigits (prepared as
  ``bench_reading.optdigits`` makes them; "other writers refused");
- not in the domain (``refusal.non_domain_test_set``): ``--per-family`` synthetic letters, words,
  scribbles, shapes and textures of the *test* kinds (fonts, shapes, scribble and texture generators
  the head never trained on), the other dataset's *test* images (2,000: Fashion-MNIST for digits, MNIST
  for garments; half as they are, half redrawn), and crops of the two photos scikit-learn ships,
  when it is installed ("photos"): the set a newly fitted head is measured on for its model.json.

"refused" is the share below the model's threshold (model.json "domain"); the non-domain share weighs
each group equally. "in a row" is the head's figures at the looser threshold a mark standing beside
accepted digits meets in ``read`` (the threshold less ``reading.ROW_PRIOR``). The baselines are the
calibrated maximum softmax probability and the energy (logsumexp of the raw logits), each with its
threshold fitted the same way as the head's (the same quantile of the same held-out in-domain
images), and the max-softmax threshold that refuses exactly 0.5 % of the test set (fitted on the
test set itself: the baseline's best case).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from digitrec.learning import datasets, refusal, validation  # noqa: E402
from digitrec.model.inputs import to_inputs  # noqa: E402
from digitrec.model.reading import ROW_PRIOR  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402

EXAMPLES = {"mnist": ("seven.png", "four-on-paper.jpg"), "fashion": ("ankle-boot.jpg",)}


def held_out_inputs(recognizer: DigitRecognizer, own: str, data_dir: Path | None) -> tuple[np.ndarray, float]:
    """The in-domain images the threshold was fitted on, and the quantile used (as ``fit_domain_head``)."""
    x_train, y_train = datasets.load_split(own, "train", data_dir)
    declared = validation.declared(recognizer.metadata)
    if declared is not None:
        _, held = validation.rebuild(declared, y_train)
        return to_inputs(x_train[held]), refusal.FIT_SHARE
    _, held = validation.split_indices(y_train, refusal.HELD_OUT, refusal.SEED)
    return to_inputs(x_train[held]), refusal.FIT_SHARE


def scores_of(recognizer: DigitRecognizer, x: np.ndarray) -> dict[str, np.ndarray]:
    """Method -> (N,) scores, higher = more in the domain."""
    rows = np.concatenate([recognizer.predict_scores(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    logits = recognizer.logits(x)
    classes = len(recognizer.class_names)
    return {
        "head": rows[:, classes],
        "max softmax": rows[:, :classes].max(axis=1),
        "energy": np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1),
    }


def measure(model: str, data_dir: Path | None, per_family: int) -> dict:
    recognizer = DigitRecognizer.load(model)
    if recognizer.domain.method != "head":
        raise SystemExit(f"{model}: no refusal head (run `digitrec train-refusal {model}`)")
    own = refusal.own_dataset(recognizer.metadata)
    style = refusal.style_of(own)
    x_test, _ = datasets.load_split(own, "test", data_dir)
    rng = np.random.default_rng(7)
    redrawn = refusal.prepared(refusal.rendered(x_test[rng.permutation(len(x_test))[:1000]], rng), style)
    sizes = refusal.Sizes(test_per_family=per_family)
    groups = refusal.non_domain_test_set(own, data_dir, sizes)
    held, share = held_out_inputs(recognizer, own, data_dir)
    examples = [recognizer.predict(REPO / "examples" / name) for name in EXAMPLES[own]]
    writers = None
    if own == "mnist":
        from bench_reading import optdigits

        writers = scores_of(recognizer, refusal.prepared(list(optdigits()[0]), style))

    test_scores, redrawn_scores, held_scores = (scores_of(recognizer, x) for x in (to_inputs(x_test), redrawn, held))
    group_scores = {name: scores_of(recognizer, x) for name, x in groups.items()}
    results: dict = {
        "model": f"{recognizer.name} {recognizer.version}",
        "threshold": recognizer.domain.threshold,
        "examples": {
            name: {"in_domain": p.in_domain, "domain_score": p.domain_score}
            for name, p in zip(EXAMPLES[own], examples, strict=True)
        },
        "methods": {},
    }
    for method in ("head", "max softmax", "energy"):
        threshold = recognizer.domain.threshold if method == "head" else float(np.quantile(held_scores[method], share))
        figures = refusal.figures(test_scores[method], {k: v[method] for k, v in group_scores.items()}, threshold)
        figures["threshold"] = threshold
        figures["redrawn_test_refused"] = float(np.mean(redrawn_scores[method] < threshold))
        if writers is not None:
            figures["other_writers_refused"] = float(np.mean(writers[method] < threshold))
        results["methods"][method] = figures
    row = recognizer.domain.threshold - ROW_PRIOR
    head_groups = {k: v["head"] for k, v in group_scores.items()}
    results["head in a row"] = refusal.figures(test_scores["head"], head_groups, row)
    results["head in a row"]["redrawn_test_refused"] = float(np.mean(redrawn_scores["head"] < row))
    if writers is not None:
        results["head in a row"]["other_writers_refused"] = float(np.mean(writers["head"] < row))
    best_case = float(np.quantile(test_scores["max softmax"], 0.005))
    results["max softmax at 0.5 % of the test set"] = refusal.figures(
        test_scores["max softmax"], {k: v["max softmax"] for k, v in group_scores.items()}, best_case
    )
    return results


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def print_table(results: dict) -> None:
    print(
        f"\n{results['model']}: threshold {results['threshold']:.4f}; examples/ "
        + ", ".join(
            f"{n} {'accepted' if e['in_domain'] else 'REFUSED'} ({e['domain_score']:.2f})"
            for n, e in results["examples"].items()
        )
    )
    rows = [(m, f) for m, f in results["methods"].items()] + [
        ("head in a row of accepted digits", results["head in a row"]),
        ("max softmax, 0.5 % of test", results["max softmax at 0.5 % of the test set"]),
    ]
    groups = list(rows[0][1]["groups"])
    print(
        "| method | test refused | redrawn test refused | other writers refused | non-domain refused | AUROC | "
        f"{' | '.join(groups)} |"
    )
    print("|---" * (6 + len(groups)) + "|")
    for method, f in rows:
        redrawn = pct(f["redrawn_test_refused"]) if "redrawn_test_refused" in f else "-"
        writers = pct(f["other_writers_refused"]) if "other_writers_refused" in f else "-"
        cells = " | ".join(f"{100 * f['groups'][g]['refused']:.1f} %" for g in groups)
        print(
            f"| {method} | {pct(f['in_domain_refused'])} | {redrawn} | {writers} | {pct(f['non_domain_refused'])} | "
            f"{f['auroc']:.4f} | {cells} |"
        )
    counts = ", ".join(f"{g} {rows[0][1]['groups'][g]['count']}" for g in groups)
    print(f"non-domain images: {counts}; test images: {rows[0][1]['in_domain_count']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=os.environ.get(datasets.ENV_VAR))
    parser.add_argument("--models", nargs="+", default=["digits", "fashion"])
    parser.add_argument("--per-family", type=int, default=400, help="synthetic images per family (default 400)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = {model: measure(model, args.datasets, args.per_family) for model in args.models}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results.values():
            print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
