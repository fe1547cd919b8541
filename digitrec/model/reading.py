"""``Reading``: what ``DigitRecognizer.read`` found in an image holding a row of digits.

A reading keeps, besides its text, every digit as a ``Prediction`` with its box in the input image's
pixels, the marks the model refused (``in_domain`` False: they are not digits, and stay out of the
text), and the exact (n, 784) inputs the model saw for each of them, so a page can show every digit
as the model saw it and fine-tuning can learn from a corrected reading's digits without re-reading.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import numpy as np

EMPTY_INPUTS = np.zeros((0, 784), np.float32)
ROW_PRIOR = 1.5  # log-odds a mark gains for standing beside digits the model accepted (see from_marks)
ROW_HEIGHTS = (0.6, 1.6)  # ... when its height is within these multiples of those digits' median height


class Prediction(Protocol):
    """What a reading needs of ``digitrec.model.recognizer.Prediction`` (which imports this module)."""

    name: str
    confidence: float
    in_domain: bool
    domain_score: float
    box: tuple[int, int, int, int] | None

    def to_json(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Reading:
    """The digits of an image, left to right.

    ``text``: the digits' labels in reading order ("" when the image holds none). ``digits``: one
    ``Prediction`` per digit, each with its ``box`` (x, y, width, height in input pixels).
    ``refused``: marks that look like none of the model's classes, with their boxes. ``confidence``:
    the probability that the whole text is right, taken as the product of the digits' confidences
    (0.0 when nothing was read). ``inputs`` and ``refused_inputs``: float32 (n, 784), row ``i`` is what
    the model saw for ``digits[i]`` (``refused[i]``).
    """

    text: str
    digits: list[Prediction]
    refused: list[Prediction]
    confidence: float
    inputs: np.ndarray = dataclasses.field(default_factory=lambda: EMPTY_INPUTS)
    refused_inputs: np.ndarray = dataclasses.field(default_factory=lambda: EMPTY_INPUTS)

    @classmethod
    def from_marks(cls, marks: list[Prediction], inputs: np.ndarray, threshold: float | None = None) -> Reading:
        """Split marks (left to right, with their model inputs) into digits and refused marks.

        With the model's refusal ``threshold``, a refused mark is read as a digit after all when it
        stands next to a digit the model accepted, is about as tall as the accepted digits, and its
        domain score (log-odds that it is a digit) reaches the threshold less ``ROW_PRIOR``: in a row
        of digits a mark of a digit's size is a priori likely a digit (another writer's, unlike the
        training set's), so its odds count ``exp(ROW_PRIOR)`` times higher. A mark on its own, or
        one that scores far below the threshold (a letter, a scribble), stays refused."""
        marks = _row_accepted(marks, threshold)
        accepted = [i for i, mark in enumerate(marks) if getattr(mark, "in_domain", True)]
        refused = [i for i, mark in enumerate(marks) if not getattr(mark, "in_domain", True)]
        digits = [marks[i] for i in accepted]
        confidence = math.prod(d.confidence for d in digits) if digits else 0.0
        return cls(
            text="".join(d.name for d in digits),
            digits=digits,
            refused=[marks[i] for i in refused],
            confidence=float(confidence),
            inputs=np.ascontiguousarray(inputs[accepted], np.float32).reshape(-1, 784),
            refused_inputs=np.ascontiguousarray(inputs[refused], np.float32).reshape(-1, 784),
        )

    @property
    def previews(self) -> np.ndarray:
        """uint8 (n, 28, 28), white on black: each digit as the model saw it."""
        return _as_previews(self.inputs)

    @property
    def refused_previews(self) -> np.ndarray:
        return _as_previews(self.refused_inputs)

    def to_json(self) -> dict[str, Any]:
        """Text, confidence, digits and refused marks (label, confidence, box, ...); no pixel arrays."""
        return {
            "text": self.text,
            "confidence": self.confidence,
            "digits": [d.to_json() for d in self.digits],
            "refused": [r.to_json() for r in self.refused],
        }


def _row_accepted(marks: list[Prediction], threshold: float | None) -> list[Prediction]:
    """``marks`` with the refused marks that ``from_marks`` reads as digits in their row marked in the domain."""
    sure = [i for i, mark in enumerate(marks) if getattr(mark, "in_domain", True)]
    if threshold is None or not sure or len(sure) == len(marks):
        return marks
    heights = [marks[i].box[3] for i in sure if marks[i].box is not None]
    median = float(np.median(heights)) if heights else 0.0
    out = list(marks)
    for i, mark in enumerate(marks):
        if mark.in_domain or mark.domain_score < threshold - ROW_PRIOR:
            continue
        if not ((i > 0 and marks[i - 1].in_domain) or (i + 1 < len(marks) and marks[i + 1].in_domain)):
            continue
        if mark.box is not None and median and not ROW_HEIGHTS[0] <= mark.box[3] / median <= ROW_HEIGHTS[1]:
            continue
        out[i] = dataclasses.replace(mark, in_domain=True)  # type: ignore[type-var]
    return out


def _as_previews(inputs: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(inputs.reshape(-1, 28, 28) * 255.0), 0, 255).astype(np.uint8)
