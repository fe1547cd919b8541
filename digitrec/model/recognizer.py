"""``DigitRecognizer``: load a checkpoint once, then predict from files, bytes or arrays.

Data flows one way: image -> ``preprocess.prepare`` -> (N, 784) tensor -> network -> probabilities and
domain score -> ``Prediction``. The seed projects' names (``Load_Model``, ``Predict_Label``) are thin
aliases.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError, InvalidImageError, ModelNotFoundError
from digitrec.imaging.preprocess import DEFAULT_MAX_PIXELS, ImageInput, PreparedImage, load_image, prepare
from digitrec.imaging.segment import FEATURE_NAMES, Segmentation, log_best, segment
from digitrec.model import checkpoints, touching, versions
from digitrec.model.calibration import temperature_of
from digitrec.model.classes import MNIST_CLASSES
from digitrec.model.domain import DomainSpec, new_head
from digitrec.model.inline import INLINE_MAX_ROWS, inline_runner
from digitrec.model.legacy import LegacyDeepMnist, is_legacy_checkpoint
from digitrec.model.marks import MARK_BONUS, UNLIKELY, UNREAD_FIT, log_whole, serving_judge
from digitrec.model.network import INPUT_DIM, DigitNet, FoldedNet, NetworkSpec, resolve_precision
from digitrec.model.reading import Reading
from digitrec.model.sequence import SequenceReader
from digitrec.runtime.tf_loader import tf

# How much lower (in the domain score's log-odds) the threshold is for a mark cut off a touching digit
# (``DigitRecognizer._mark_thresholds``).
CUT_MARGIN = 3.0
SEQUENCE_MODEL = "sequence"  # the shipped sequence reader's folder (``digitrec.model.sequence``)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The nearest class, its calibrated confidence, and whether the input is one of the classes at all.

    ``domain_score`` is higher for inputs more like the model's classes; ``in_domain`` is
    ``domain_score >= threshold`` of the model (see ``digitrec.model.domain``). An input that is not
    in the domain still gets its nearest label, so callers that only read the label keep working.
    ``confidence`` is calibrated for in-domain input only.
    """

    label: int
    name: str
    confidence: float
    probabilities: list[float]
    in_domain: bool
    domain_score: float
    box: tuple[int, int, int, int] | None = None  # x, y, width, height in the input's pixels (read only)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _style_for(metadata: dict[str, Any]) -> str:
    default = "garment" if metadata.get("dataset") == "fashion-mnist" else "digit"
    return metadata.get("input", {}).get("style") or default


class DigitRecognizer:
    """A loaded model. Thread-safe: the compiled inference function can be called from many threads."""

    def __init__(self) -> None:
        self._network: tf.Module | None = None
        self._inference: tf.Module | None = None  # what predicts: the folded network, or the network itself
        self._infer = None
        self._inline = None  # small batches run in the caller's thread (see ``digitrec.model.inline``)
        self.metadata: dict[str, Any] = {}
        self.model_dir: Path | None = None
        self.precision = "float32"  # of the inference network: "float32" or "bfloat16"
        self.domain = DomainSpec()  # how in_domain is decided (model.json's "domain" block)
        self._sequence: SequenceReader | None = None  # read's reader of touching digits, loaded on first use
        self._sequence_tried = False
        self.sequence_reading = True  # False: read touching digits by the segmentation alone
        self._sequence_lock = threading.Lock()

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = "digits",
        models_dir: str | os.PathLike[str] | None = None,
        precision: str | None = None,
    ) -> DigitRecognizer:
        """``"digits"``, ``"fashion"``, or a path to a model directory (``model.json`` + checkpoint).

        ``precision``: "auto" (default; ``$DIGITREC_PRECISION``), "float32" or "bfloat16"; see
        ``network.resolve_precision``.
        """
        recognizer = cls()
        recognizer._load_model_dir(versions.resolve_model_dir(model, models_dir), precision=precision)
        return recognizer

    def _load_model_dir(
        self, model_dir: Path, prefix: str = checkpoints.CHECKPOINT_PREFIX, precision: str | None = None
    ) -> None:
        metadata = checkpoints.read_metadata(model_dir)
        if metadata.get("architecture") != "digitrec-cnn":
            raise CheckpointError(f"{model_dir}: unknown architecture {metadata.get('architecture')!r}")
        network = DigitNet(NetworkSpec.from_json(metadata["params"]))
        domain = DomainSpec.from_metadata(metadata)
        head = new_head(network, domain.hidden, layout=domain.layout) if domain.method == "head" else None
        parts = {"model": network} if head is None else {"model": network, "domain_head": head}
        try:
            tf.train.Checkpoint(**parts).read(str(model_dir / prefix)).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise CheckpointError(f"{model_dir}: checkpoint does not match its model.json ({exc})") from None
        temperature = temperature_of(metadata)
        inference = FoldedNet(
            network, resolve_precision(precision), temperature=temperature, head=head, layout=domain.layout
        )
        self._install(network, metadata, model_dir, inference=inference, domain=domain)

    def _install(
        self,
        network: tf.Module,
        metadata: dict[str, Any],
        model_dir: Path | None,
        inference: tf.Module | None = None,
        domain: DomainSpec | None = None,
    ) -> None:
        self._network = network
        self.domain = domain or DomainSpec()
        self._inference = inference or network
        self._infer = self._inference.__call__.get_concrete_function()
        self._inline = inline_runner(self._infer)
        self.precision = getattr(inference, "precision", "float32")
        self.metadata = metadata
        self.model_dir = model_dir
        self._infer(tf.zeros([1, INPUT_DIM]))  # trace and warm the kernels now, not on the first request
        if self._inline is not None:
            self._inline(np.zeros([1, INPUT_DIM], np.float32))

    def Load_Model(self, directory: str | os.PathLike[str], name: str) -> DigitRecognizer:
        """Seed-compatible loader: ``recognizer.Load_Model(model_dir, "deepCNN.ckpt")``.

        Takes a TF1 ``Saver`` checkpoint of the deep-MNIST tutorial network (``directory/name`` is its
        prefix), or one of our model directories (``directory/name`` or ``directory`` itself).
        """
        directory = Path(directory)
        prefix = directory / name
        if is_legacy_checkpoint(str(prefix)):
            metadata = {
                "name": "legacy-deep-mnist",
                "version": name,
                "architecture": "tf1-deep-mnist-tutorial",
                "class_names": MNIST_CLASSES,
                "dataset": "mnist",
                "input": {"style": "digit"},
            }
            self._install(LegacyDeepMnist(str(prefix)), metadata, directory)
        elif checkpoints.is_model_dir(prefix):
            self._load_model_dir(prefix)
        elif (directory / checkpoints.METADATA_FILE).is_file() and Path(f"{prefix}.index").is_file():
            self._load_model_dir(directory, name)
        else:
            raise ModelNotFoundError(
                f"no checkpoint {prefix} (neither a TF1 deep-MNIST checkpoint nor a model directory)"
            )
        return self

    # --- facts about the model ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "unknown"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names", MNIST_CLASSES))

    @property
    def style(self) -> str:
        return _style_for(self.metadata)

    @property
    def temperature(self) -> float:
        """The calibration temperature applied to the logits (1.0: uncalibrated)."""
        return float(getattr(self._inference, "temperature", 1.0))

    def _require_loaded(self) -> None:
        if self._infer is None:
            raise ModelNotFoundError("no model loaded: use DigitRecognizer.load(...) or Load_Model(dir, name)")

    # --- prediction -----------------------------------------------------------------------------

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) float32 in [0, 1], already white-on-black and centred -> (N, classes + 1): the
        probabilities, then the domain score, from one model call (``prediction_from_scores`` reads a row)."""
        self._require_loaded()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1 and x.shape[0] == INPUT_DIM:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != INPUT_DIM:
            raise InvalidImageError(f"the model expects inputs of shape (N, {INPUT_DIM}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(self.class_names) + 1), np.float32)
        return self._call_network(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) float32 in [0, 1], already white-on-black and centred -> (N, 10) probabilities."""
        return self.predict_scores(x)[:, : len(self.class_names)]

    def domain_scores(self, x: np.ndarray) -> np.ndarray:
        """(N, 784) inputs -> (N,) domain scores (higher: more like the model's classes)."""
        return self.predict_scores(x)[:, len(self.class_names)]

    def logits(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """(N, 784) inputs -> (N, classes) raw logits, before the calibration temperature (for fitting it)."""
        self._require_loaded()
        if not isinstance(self._network, DigitNet):
            raise CheckpointError(f"{self.name}: raw logits need a digitrec-cnn network (not the legacy one)")
        x = np.asarray(x, dtype=np.float32).reshape(-1, INPUT_DIM)
        parts = [self._network.logits(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)

    def _call_network(self, x: np.ndarray) -> np.ndarray:
        """One model call: a small batch in the caller's thread, a large one spread over the cores."""
        if self._inline is not None and len(x) <= INLINE_MAX_ROWS:
            return self._inline(x)
        return self._infer(tf.constant(x)).numpy()

    def prediction_from_scores(self, row: np.ndarray) -> Prediction:
        """One row of ``predict_scores`` -> ``Prediction``."""
        names = self.class_names
        row = np.asarray(row, dtype=np.float64)
        if row.shape != (len(names) + 1,):
            raise ValueError(f"a scores row has {len(names) + 1} values (probabilities, domain score), not {row.shape}")
        return self._prediction(names, row[:-1], float(row[-1]))

    def prediction_from_proba(self, probabilities: np.ndarray, domain_score: float | None = None) -> Prediction:
        """Probabilities plus the domain score of the same input, or one row of ``predict_scores``."""
        names = self.class_names
        p = np.asarray(probabilities, dtype=np.float64)
        if domain_score is None:
            if len(p) != len(names) + 1:
                raise ValueError("prediction_from_proba needs the domain score: pass a predict_scores row")
            p, domain_score = p[:-1], float(p[-1])
        return self._prediction(names, p, domain_score)

    def _prediction(
        self,
        names: list[str],
        p: np.ndarray,
        domain_score: float,
        box: tuple[int, int, int, int] | None = None,
        threshold: float | None = None,
    ) -> Prediction:
        label = int(np.argmax(p))
        values = p.tolist()  # Python floats, as JSON wants them
        return Prediction(
            label,
            names[label],
            values[label],
            values,
            in_domain=bool(domain_score >= (self.domain.threshold if threshold is None else threshold)),
            domain_score=float(domain_score),
            box=box,
        )

    def prepare(self, image: ImageInput, max_pixels: int | None = None) -> PreparedImage:
        """Preprocess the way this model's training data was made (digit or garment style)."""
        return prepare(image, max_pixels or DEFAULT_MAX_PIXELS, self.style)

    def predict(self, image: ImageInput, max_pixels: int | None = None) -> Prediction:
        prepared = self.prepare(image, max_pixels)
        return self.prediction_from_scores(self.predict_scores(prepared.tensor)[0])

    def predict_batch(self, images: Sequence[ImageInput], max_pixels: int | None = None) -> list[Prediction]:
        """Preprocess each image, then run all of them through the network in one call."""
        if not len(images):
            return []
        x = np.concatenate([self.prepare(image, max_pixels).tensor for image in images])
        return [self.prediction_from_scores(row) for row in self.predict_scores(x)]

    def read(self, image: ImageInput, max_pixels: int | None = None) -> Reading:
        """Read the digits written in a row in one image (a path, bytes or an array, as ``predict``).

        ``digitrec.imaging.segment`` proposes candidate marks (strokes, strokes joined, touching digits
        cut apart); the mark scorer (``digitrec.model.marks``) says which could be whole digits, those
        go through the model in one batch, and the reading is the split of the ink into marks that
        the model, the scorer and the marks' shapes agree on best. An image without ink reads as ""
        (``predict`` raises ``NoDigitFoundError`` there); an unreadable file raises as in ``predict``.
        """
        self._require_loaded()
        image = load_image(image, max_pixels or DEFAULT_MAX_PIXELS)
        segmentation = segment(image, self.style, judge=serving_judge(self.style))
        reader = self._sequence_reader()
        whole = log_whole(segmentation, self.style) if segmentation.candidates else np.zeros(0)
        proposals = touching.propose(segmentation, reader, whole, self.style) if reader is not None else []
        marks, inputs, proposed = self._read_marks(segmentation, touching.proposed_rows(proposals), whole)
        if proposals:
            marks, inputs = touching.reread(
                proposals,
                proposed,
                marks,
                inputs,
                self._prediction,
                self.class_names,
                self.domain.threshold,
                CUT_MARGIN,
            )
        return Reading.from_marks(marks, inputs, self.domain.threshold)

    def _sequence_reader(self) -> SequenceReader | None:
        """The shipped sequence reader of touching digits, for a digit model (None for others, or when
        it is not installed: reading then relies on the segmentation alone)."""
        if not self.sequence_reading:
            return None
        if self._sequence_tried:
            return self._sequence
        with self._sequence_lock:
            if not self._sequence_tried:
                folder = checkpoints.shipped_models_dir() / SEQUENCE_MODEL
                if self.style == "digit" and self.class_names == MNIST_CLASSES and folder.is_dir():
                    self._sequence = SequenceReader.load(folder)
                self._sequence_tried = True
        return self._sequence

    def _read_marks(
        self, segmentation: Segmentation, extra: np.ndarray | None = None, whole: np.ndarray | None = None
    ) -> tuple[list[Prediction], np.ndarray, np.ndarray]:
        """The chosen marks of ``segmentation``, left to right, and their model inputs; and the scores
        of ``extra`` (n, 784) inputs, which go through the model in the same batch as the candidates.
        ``whole``: the mark scorer's ``log_whole`` of the candidates, if the caller has it already."""
        extra = np.zeros((0, INPUT_DIM), np.float32) if extra is None else extra
        if not segmentation.candidates:
            return [], segmentation.inputs, self.predict_scores(extra)
        whole = log_whole(segmentation, self.style) if whole is None else whole
        scores = np.zeros((len(whole), len(self.class_names) + 1))
        fit = np.full(len(whole), UNREAD_FIT)
        asked = np.flatnonzero(whole >= UNLIKELY)  # the others are fragments or pairs, near enough surely
        batch = self.predict_scores(np.concatenate([segmentation.inputs[asked], extra]))
        scores[asked], extra_scores = batch[: len(asked)], batch[len(asked) :]
        if len(asked):
            if len(whole) > segmentation.pieces:  # else the pieces alone are the only split: nothing to weigh
                fit[asked] = self._mark_fit(scores[asked])
        chosen = segmentation.choose(fit + whole + MARK_BONUS)
        unread = [i for i in chosen if whole[i] < UNLIKELY]
        if unread:  # no likelier split covered some ink: read those marks after all
            scores[unread] = self.predict_scores(segmentation.inputs[unread])
        names = self.class_names
        thresholds = self._mark_thresholds(segmentation, chosen, scores[chosen, -1])
        marks = [
            self._prediction(names, scores[i, :-1], scores[i, -1], segmentation.candidates[i].box, threshold)
            for i, threshold in zip(chosen, thresholds)
        ]
        return marks, segmentation.inputs[chosen], extra_scores

    def _mark_thresholds(self, segmentation: Segmentation, chosen: list[int], domain_scores: np.ndarray) -> list[float]:
        """The domain threshold of each chosen mark: the model's, lowered by ``CUT_MARGIN`` for a mark
        cut off a digit it touched (a cut edge next to a mark the model takes for a digit). The
        refusal head learnt whole digits; a cut leaves stray ends of the neighbour's stroke or
        clips its own, and the head refused 3-8 % of rightly cut digits at its threshold, which
        dropped them from the text. A mark cut off a non-digit keeps the full threshold."""
        threshold = self.domain.threshold
        accepted = domain_scores >= threshold
        left_cut = segmentation.features[chosen, FEATURE_NAMES.index("left_cut")] > 0
        right_cut = segmentation.features[chosen, FEATURE_NAMES.index("right_cut")] > 0
        result = []
        for k in range(len(chosen)):
            beside_digit = (left_cut[k] and k > 0 and accepted[k - 1]) or (
                right_cut[k] and k + 1 < len(chosen) and accepted[k + 1]
            )
            result.append(threshold - CUT_MARGIN if beside_digit else threshold)
        return result

    def _mark_fit(self, scores: np.ndarray) -> np.ndarray:
        """How well each candidate mark reads as one of the classes, as a log-probability: the best
        label's, plus, with a trained "none of these" head, the log-probability that the mark is one
        of the classes at all (its score is log-odds; a fragment or two digits run together that the
        softmax still names confidently score low there)."""
        fit = log_best(scores[:, : len(self.class_names)])
        if self.domain.method == "head" and self.domain.fitted:
            fit = fit - np.logaddexp(0.0, -(scores[:, len(self.class_names)] - self.domain.threshold))
        return fit

    def Predict_Label(self, processed: np.ndarray) -> int:
        """Seed-compatible: the label of an already preprocessed (1, 784) image."""
        return int(np.argmax(self.predict_proba(processed)[0]))
