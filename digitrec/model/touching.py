"""Blobs of touching digits: read by the sequence reader, where it disagrees with the segmentation.

The segmentation reader (``DigitRecognizer._read_marks``) reads a blob of touching digits by cutting
it; where neighbours overlap no cut leaves both whole, and it miscounts or misreads them. The
sequence reader (``digitrec.model.sequence``) reads the same blob uncut. For every blob that
``segment`` cut (several parts), unless the mark scorer takes the whole blob for one digit (a
broad digit written apart), both readings are compared. The segmentation's marks stay where the
two agree; where both find one digit (the digit model reads a single digit better); where the
sequence reader finds fewer digits than the segmentation's marks and the refusal head took all of
those for digits (it overlooked an odd one); where it finds more digits in a blob no wider than
tall (one broad digit, its halves read as two), or several where the segmentation found one digit
it is surer of than the sequence reader is of each of them; and where the refusal head refused
most of them (a shape, not a number: the sequence reader knows only digits). Otherwise the blob's
marks are the sequence reader's digits. Measured on touching numbers composed from MNIST test
digits, the sequence reader's count and labels were right far more often than the segmentation's
where the two disagreed, while on numbers written apart the rules leave the reading as it was
(BENCHMARKS.md, "Reading numbers").

Each such digit is the segmentation's parts whose ink lies between the midpoints of its columns
and its neighbours' (split along its least-ink cuts), or where that leaves a digit without a part,
the blob's ink between those midpoints. That gives it a box and an input for the digit model, which
goes in the same batch as the segmentation's candidates, and a domain score: the higher of that
input's and that of the segmentation's mark under it (a digit cut off an overlapping neighbour
holds bits of it, which the refusal head, trained on whole digits, doubts). ``in_domain`` is
decided as for a mark cut off a touching digit (the model's threshold, lowered by ``CUT_MARGIN``
beside a digit it accepts). Its label and confidence are the sequence reader's: the probabilities
over the ten digits of its most certain column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from digitrec.imaging.segment import ONE_DIGIT, Box, Segmentation, union
from digitrec.model.sequence import DIGITS, HEIGHT, INNER, STRIDE, Decoded, SequenceReader, input_scale

# (names, probabilities, domain score, box, threshold) -> Prediction (``DigitRecognizer._prediction``)
MakePrediction = Callable[[list[str], np.ndarray, float, Box, float], object]


def _centre(box: Box) -> float:
    return box[0] + box[2] / 2.0


def _domain_score(box: Box, marks: list, own: float) -> float:
    """The higher of ``own`` (the crop's domain score) and that of the segmentation's mark under
    ``box``'s centre (the nearest, if none is)."""
    if not marks:
        return own
    centre = _centre(box)
    under = [m for m in marks if m.box[0] <= centre < m.box[0] + m.box[2]]
    under = under or [min(marks, key=lambda m: abs(_centre(m.box) - centre))]
    return max(own, *(m.domain_score for m in under))


def _digit_masks(
    segmentation: Segmentation, run: tuple[int, int], box: Box, mask: np.ndarray, decoded: Decoded
) -> list[tuple[Box, np.ndarray]] | None:
    """The blob's ink split between the sequence reader's digits (None if a digit gets no ink).

    The boundary between two digits is the midpoint between their columns. Where every digit gets
    at least one of the segmentation's parts (by where each part's ink lies), a digit is its parts,
    split along the segmentation's least-ink cuts; otherwise the blob is split straight down."""
    scale = input_scale(mask.shape[0])
    margin = (HEIGHT - INNER) // 2  # ``strip_input``'s blank margin, in input columns

    def pixel(column: float) -> float:
        return (column * STRIDE + STRIDE / 2.0 - margin) / scale

    edges = [pixel((end + start) / 2.0) for (_, end), (start, _) in zip(decoded.spans[:-1], decoded.spans[1:])]
    parts = segmentation.parts[run[0] : run[1] + 1]
    centres = [p.box[0] - box[0] + float(np.nonzero(p.mask)[1].mean()) for p in parts]
    owners = np.searchsorted(np.asarray(edges), centres)
    if len(parts) > 1 and set(owners.tolist()) == set(range(len(decoded.labels))):
        return [union([p for p, o in zip(parts, owners) if o == k]) for k in range(len(decoded.labels))]
    bounds = [0, *(min(max(int(round(e)), 1), mask.shape[1] - 1) for e in edges), mask.shape[1]]
    digits = []
    for left, right in zip(bounds[:-1], bounds[1:]):
        part = np.zeros_like(mask)
        part[:, left:right] = mask[:, left:right]
        ys, xs = np.nonzero(part)
        if not len(ys):
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        digits.append(((box[0] + int(x0), box[1] + int(y0), int(x1 - x0), int(y1 - y0)), part[y0:y1, x0:x1]))
    return digits


@dataclasses.dataclass(frozen=True)
class Proposal:
    """The sequence reader's reading of one blob, and its digits' boxes and model inputs."""

    box: Box
    decoded: Decoded
    boxes: list[Box]
    rows: np.ndarray  # float32 (digits, 784): each digit as the digit model's input


def propose(
    segmentation: Segmentation, reader: SequenceReader, whole: np.ndarray, style: str = "digit"
) -> list[Proposal]:
    """The sequence reader's digits for every cut blob that may hold several, before the digit model
    runs (their inputs go through it in the same batch as the segmentation's candidates). ``whole``:
    the mark scorer's log P(one whole digit) of each candidate; a blob whose whole-blob candidate it
    takes for one digit (at least ``ONE_DIGIT``: a broad digit written apart) is not read again."""
    if segmentation.ink is None:
        return []
    spans = {(c.first, c.last): i for i, c in enumerate(segmentation.candidates)}
    runs = [
        run for run in segmentation.blobs() if run[1] > run[0] and not (run in spans and whole[spans[run]] >= ONE_DIGIT)
    ]
    if not runs:
        return []
    wholes = [union(segmentation.parts[first : last + 1]) for first, last in runs]
    proposals = []
    for run, (box, mask), decoded in zip(runs, wholes, reader.read([mask for _, mask in wholes])):
        if not decoded.labels:
            continue
        digits = _digit_masks(segmentation, run, box, mask, decoded)
        if digits is None:
            continue
        previews = np.stack([segmentation.render(b, m, style) for b, m in digits])
        rows = previews.astype(np.float32).reshape(len(digits), -1) * (1.0 / 255.0)
        proposals.append(Proposal(box, decoded, [b for b, _ in digits], rows))
    return proposals


def proposed_rows(proposals: list[Proposal]) -> np.ndarray:
    """All proposals' digit inputs, in order: (n, 784)."""
    return np.concatenate([p.rows for p in proposals]) if proposals else np.zeros((0, 784), np.float32)


def reread(
    proposals: list[Proposal],
    scores: np.ndarray,
    marks: list,
    inputs: np.ndarray,
    make: MakePrediction,
    names: list[str],
    threshold: float,
    cut_margin: float,
) -> tuple[list, np.ndarray]:
    """``marks`` (left to right, with their model ``inputs``) with the marks of each proposed blob
    replaced by the sequence reader's digits where the rule above says so. ``scores``: the digit
    model's ``predict_scores`` rows of ``proposed_rows(proposals)``."""
    if not proposals:
        return marks, inputs
    owner = []  # which proposal's blob each mark lies in (-1: none)
    for mark in marks:
        centre = _centre(mark.box)
        inside = [i for i, p in enumerate(proposals) if p.box[0] <= centre < p.box[0] + p.box[2]]
        owner.append(inside[0] if inside else -1)
    made, k = {}, 0
    for i, proposal in enumerate(proposals):
        crop = scores[k : k + len(proposal.boxes), -1]
        k += len(proposal.boxes)
        under = [mark for mark, o in zip(marks, owner) if o == i]
        reading = proposal.decoded
        ours = [int(np.argmax(mark.probabilities)) for mark in under]
        if reading.labels == ours or len(reading.labels) == len(ours) == 1:
            continue  # agreed, or one digit both ways: the digit model reads a single digit best
        if len(reading.labels) < len(ours) and all(mark.in_domain for mark in under):
            continue  # fewer digits than the segmentation's marks, all taken for digits: it missed one
        if len(reading.labels) > len(ours) and proposal.box[2] <= proposal.box[3]:
            continue  # more digits in a blob no wider than tall: one broad digit read twice
        if len(ours) == 1 < len(reading.labels) and min(reading.confidences) < under[0].confidence:
            continue  # one digit, surer than the sequence reader is of any of its several
        if 2 * sum(mark.in_domain for mark in under) <= len(under):
            continue  # the refusal head took most of it for no digit: a shape, not a number
        domain = [_domain_score(b, under, float(c)) for b, c in zip(proposal.boxes, crop)]
        accepted = [score >= threshold for score in domain]
        for j, b in enumerate(proposal.boxes):
            beside = (j > 0 and accepted[j - 1]) or (j + 1 < len(domain) and accepted[j + 1])
            probabilities = np.asarray(reading.probabilities[j][:DIGITS], np.float64)
            probabilities = probabilities / max(probabilities.sum(), 1e-12)
            prediction = make(names, probabilities, domain[j], b, threshold - cut_margin if beside else threshold)
            made.setdefault(i, []).append((prediction, proposal.rows[j]))
    if not made:
        return marks, inputs
    out_marks, out_inputs = [], []
    for index, (mark, o) in enumerate(zip(marks, owner)):
        if o not in made:
            out_marks.append(mark)
            out_inputs.append(inputs[index])
    for digits in made.values():
        for prediction, row in digits:
            out_marks.append(prediction)
            out_inputs.append(row)
    order = sorted(range(len(out_marks)), key=lambda n: _centre(out_marks[n].box))
    return [out_marks[n] for n in order], np.stack([out_inputs[n] for n in order]).astype(np.float32)
