"""Fine-tuning settings screened in one process: styles learnt in sequence, no service, no refusal head.

    python benchmarks/bench_finetune_screen.py --datasets ../shared/datasets [--sequence dotted,bubbly,continental]
        [--images 300] [--fresh 500] [--seed 0] [--set focus=0.5 --set steps=1200] [--save DIR]
        [--resume DIR/round1.npz --from-round 2]

The same data as ``bench_finetune_loop.py`` (the same training digits sent per style and seed, the same
held-out split by the SHA-256 of each PNG, the same fresh test digits), prepared by the shipped model's
own preprocessing, and ``digitrec.learning.finetune.train_on`` called as ``digitrec finetune`` calls it
(all MNIST training images replayed, the shipped model as teacher, every earlier style's corrections
trained on again). Each round prints the style's error ratio, every style's fresh accuracy, MNIST test
parent -> new, the held-out corrections and the gate's decision; a refused round leaves the parent in
place, as the service would. It skips HTTP, the records store and the refusal head, so one setting costs
only its training time: a screen before the full loop, whose figures are the ones that count.
``--save`` keeps each promoted round's weights; ``--resume`` starts a later round from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from finetune_loop import fresh_digits  # noqa: E402
from finetune_styles import STYLES  # noqa: E402

from digitrec.learning import datasets  # noqa: E402
from digitrec.learning.augment import DIGITS_AUGMENT, STRONG_DIGITS_AUGMENT  # noqa: E402
from digitrec.learning.finetune import FinetuneConfig, accuracy, gate, is_held_out, train_on  # noqa: E402
from digitrec.model.inputs import to_inputs  # noqa: E402
from digitrec.model.network import DigitNet  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402
from digitrec.runtime.tf_loader import tf  # noqa: E402


@dataclasses.dataclass
class StyleData:
    x_sent: np.ndarray  # model inputs of the digits sent and corrected
    y_sent: np.ndarray
    held_out: np.ndarray  # which of them the gate judges with (never trained on)
    x_fresh: np.ndarray  # model inputs of fresh test digits in the style
    y_fresh: np.ndarray


def style_data(shipped: DigitRecognizer, style: str, train: tuple, test: tuple, images: int, fresh: int, seed: int):
    """What one round of the loop would see for ``style``, through the shipped model's preprocessing."""
    (x_train, y_train), (x_test, y_test) = train, test
    sent = STYLES[style].pick(y_train, images, np.random.default_rng([seed, sorted(STYLES).index(style)]))
    pngs = [STYLES[style].png(d, label) for d, label in zip(x_train[sent], y_train[sent])]
    chosen = fresh_digits(style, y_test, fresh)
    fresh_pngs = [STYLES[style].png(d, label) for d, label in zip(x_test[chosen], y_test[chosen])]

    def inputs(items: list[bytes]) -> np.ndarray:
        return np.stack([shipped.prepare(png).tensor.reshape(784) for png in items]).astype(np.float32)

    held = np.array([is_held_out(hashlib.sha256(png).hexdigest()) for png in pngs])
    return StyleData(inputs(pngs), y_train[sent].astype(np.int32), held, inputs(fresh_pngs), y_test[chosen])


def logits_of(net: DigitNet, x: np.ndarray) -> np.ndarray:
    return np.concatenate([net.logits(tf.constant(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)])


def copy_of(net: DigitNet) -> DigitNet:
    twin = DigitNet(net.spec)
    for src, dst in zip(net.variables, twin.variables):
        dst.assign(src)
    return twin


def value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, help="folder with mnist/ ($DIGITREC_DATASETS)")
    parser.add_argument("--sequence", default="dotted,bubbly,continental")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--fresh", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a FinetuneConfig field")
    parser.add_argument("--save", type=Path, help="folder for each promoted round's weights (roundN.npz)")
    parser.add_argument("--resume", type=Path, help="weights saved by --save: the parent of --from-round")
    parser.add_argument("--from-round", type=int, default=1, help="first round to train (1-based)")
    parser.add_argument("--rounds", type=int, default=None, help="last round to train (default: all)")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    config = FinetuneConfig(progress=False, seed=args.seed, **{k: value(v) for k, v in settings.items()})
    sequence = args.sequence.split(",")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()}; settings {settings or 'defaults'}, "
          f"seed {args.seed}", flush=True)  # fmt: skip

    train, test = (
        datasets.load_split("mnist", "train", args.datasets),
        datasets.load_split("mnist", "test", args.datasets),
    )
    shipped = DigitRecognizer.load(REPO / "data" / "trained_models" / "digits")
    data = {s: style_data(shipped, s, train, test, args.images, args.fresh, args.seed) for s in sequence}
    x_replay, y_replay = to_inputs(train[0]), train[1].astype(np.int32)
    x_test, y_test = to_inputs(test[0]), test[1]
    teacher = parent = shipped._network

    def read(net: DigitNet) -> dict[str, float]:
        return {s: accuracy(logits_of(net, d.x_fresh), d.y_fresh) for s, d in data.items()}

    before = read(parent)
    print(f"shipped: MNIST {100 * accuracy(logits_of(parent, x_test), y_test):.2f} %, fresh accuracy "
          + ", ".join(f"{s} {100 * a:.1f} %" for s, a in before.items()), flush=True)  # fmt: skip
    if args.resume:
        parent = copy_of(parent)
        weights = np.load(args.resume)
        for i, variable in enumerate(parent.variables):
            variable.assign(weights[f"arr_{i}"])
    last = args.rounds or len(sequence)
    for number, style in enumerate(sequence[:last], start=1):
        if number < args.from_round:
            continue
        learnt = [data[s] for s in sequence[:number]]  # every earlier style's corrections stay in the records
        x_corr = np.concatenate([d.x_sent[~d.held_out] for d in learnt])
        y_corr = np.concatenate([d.y_sent[~d.held_out] for d in learnt])
        x_held = np.concatenate([d.x_sent[d.held_out] for d in learnt])
        y_held = np.concatenate([d.y_sent[d.held_out] for d in learnt])
        distill_teacher = parent if config.distill_from == "parent" else teacher
        started = time.perf_counter()
        child = train_on(copy_of(parent), x_corr, y_corr, x_replay, y_replay, config, DIGITS_AUGMENT, 0.05,
                         teacher=distill_teacher, correction_augment=STRONG_DIGITS_AUGMENT)  # fmt: skip
        seconds = time.perf_counter() - started
        figures = {
            who: {
                "holdout_accuracy": accuracy(logits_of(net, x_held), y_held),
                "test_accuracy": accuracy(logits_of(net, x_test), y_test),
            }
            for who, net in (("parent", parent), ("child", child))
        }
        passed, _ = gate(figures["parent"], figures["child"], config.max_test_drop)
        after = read(child)
        ratio = (1 - after[style]) / max(1e-9, 1 - before[style])
        parent_fig, child_fig = figures["parent"], figures["child"]
        print(f"round {number} {style}: errors {100 * (1 - before[style]):.1f} -> {100 * (1 - after[style]):.1f} % "
              f"(x{ratio:.2f}); MNIST {100 * parent_fig['test_accuracy']:.2f} -> "
              f"{100 * child_fig['test_accuracy']:.2f} %; "
              f"held-out {100 * parent_fig['holdout_accuracy']:.1f} -> {100 * child_fig['holdout_accuracy']:.1f} %; "
              f"gate {'promotes' if passed else 'refuses'}; fresh accuracy "
              + ", ".join(f"{s} {100 * a:.1f} %" for s, a in after.items())
              + f"; {seconds:.0f} s training, load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        if passed:
            parent = child
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                np.savez(args.save / f"round{number}.npz", *[v.numpy() for v in child.variables])
    return 0


if __name__ == "__main__":
    sys.exit(main())
