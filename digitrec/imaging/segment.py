"""A row of handwritten digits -> candidate marks, each turned into the model's 28x28 input.

``segment(image)`` finds the ink the way ``preprocess.prepare`` does for one digit (paper colour,
polarity, transparent canvases, specks: ``preprocess.find_ink``), then:

1. measures the line height ``H`` (the median height of the tall blobs), so every rule below scales
   with the writing, from a 28 px strip to a phone photo;
2. removes what is not part of a digit: underlines (long thin horizontal runs below the writing, also
   when they touch the digits), dots and specks (blobs smaller than a quarter of ``H``);
3. joins a short stroke to the tall one below or above it (a 5's flag, the top of a 7);
4. proposes cuts through blobs wide enough to hold two digits (wider than ``CUT_WIDTH`` line
   heights: a 1 touching a 0 is not much wider than one broad digit): paths from top to bottom that
   cross as little ink as possible, found by dynamic programming along lines of several slants, so a
   cut may follow a leaning stroke or go round a loop (a blob under ``NARROW`` line heights holds
   one digit, or two of which one is narrow: it is cut only when the judge, the mark scorer, doubts
   that the whole blob is one digit, and then gets a few cuts only). Where two digits press together
   along a stroke (a 1 against a 0) every such path crosses ink for the length of the contact, so
   cuts also run between the valleys the contact leaves in the blob's outline, one opening upwards
   above it and one downwards below it, or from a lone valley along the path across least ink
   (``_valley_cuts``). Several cuts per digit's
   width are kept, as long as they are nested (each leaves more ink on its left than the one
   before), so every boundary between two touching digits is likely among them; the pieces between
   cuts are what candidate marks are made of;
5. renders every run of one to ``MAX_RUN`` neighbouring pieces as a candidate mark with
   ``preprocess.place_mark``, exactly as ``prepare`` renders one digit, and describes its shape
   (``FEATURE_NAMES``) for the mark scorer.

The recognizer asks the mark scorer (``digitrec.model.marks``) which candidates could be one whole
digit, sends those to the model in one batch, and ``Segmentation.choose`` picks the marks: the path
through the pieces, left to right, with the best sum of the model's log-probabilities, the scorer's
and shape terms (a digit is about as tall as the line and not much wider than tall; a cut through
ink costs a little per stroke it crosses; joining pieces across a clear gap costs, splitting them
where they nearly touch costs too). So strokes of one digit that do not touch (a 4 in two strokes,
a 0 broken by a light pen) are merged when the merged mark reads as a digit, and touching neighbours
are split where both sides read as whole digits.

Slant and a drifting baseline need nothing special: marks are ordered by their centres, and heights,
not positions, are compared with the line height.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

import cv2
import numpy as np

from digitrec.errors import NoDigitFoundError
from digitrec.imaging import preprocess

TALL = 0.6  # a blob at least this fraction of the line height can stand alone as a digit
DOT = 0.25  # a blob whose longest side is below this fraction of the line height is a dot or speck
UNDERLINE = 1.3  # a horizontal run at least this many line heights long is an underline
CUT_WIDTH = 0.9  # a blob wider than this many line heights may hold more than one digit
MIN_PIECE = 0.2  # a cut leaves at least this many line heights of width on either side
SEAM_ROWS = 32  # cuts are searched on the blob scaled to about this many rows
BAND = 0.15  # a cut strays at most this many line heights from a vertical line
MAX_CUTS = 40
SLANTS = np.linspace(-0.6, 0.6, 13)  # slants tried, in columns per row (up to about 30 degrees)
CUT_SLANTS = (-0.5, -0.25, 0.0, 0.25, 0.5)  # cuts are searched along these slants and the writing's
MAX_CROSSED = 4.0  # a path crossing more strokes than this is no cut
CONCAVITY_CUTS = True  # also cut between the valleys of a blob's outline (``_valley_cuts``)
VALLEY_DEPTH = 0.08  # a valley is at least this many line heights deep
VALLEY_SLANT = 0.8  # a cut between an upper and a lower valley leans at most this many columns per row
VALLEY_SINGLES = True  # a valley without a partner starts a cut too (``_drop``)
VALLEY_CROSSED = 1.0  # strokes a cut between valleys counts as crossing, at most: it follows where two digits touch
PIECE_INK = 0.15  # a piece between cuts holds at least a stroke this many line heights long
NARROW = 1.25  # a blob at most this many line heights wide holds one digit, or two with a narrow one
ONE_DIGIT = math.log(0.9)  # a narrow blob the judge gives at least this log-probability of one digit is not cut
NARROW_CUTS = 3  # ... and gets at most this many cuts (one is enough to take a 1 off its neighbour)
CUTS_PER_HEIGHT = 12.0  # at most this many cuts per line height of a blob's width
NESTED_SLACK = 0.02  # share of a blob's ink two cuts may disagree on and still count as nested
SLIVER = 0.25  # a bit cut off a neighbour's stroke has less than this share of a mark's largest blob
MAX_RUN = 8  # a candidate mark joins at most this many pieces
MAX_WIDTH = 1.3  # ... and is at most this many line heights wide
BROKEN_GAP = 1.5  # tall pieces closer than this many stroke widths may be one digit (a broken stroke)
LOOSE_GAP = 0.3  # a short piece may join a neighbour this many line heights away

# Shape terms, in the units of the model's log-probabilities (see Segmentation.choose).
SHORT_PENALTY = 8.0  # per line height a mark falls short of SHORT_FROM
SHORT_FROM = 0.7
WIDE_PENALTY = 10.0  # per line height of width above WIDE_FROM
WIDE_FROM = 1.1
CUT_PENALTY = 0.35  # per stroke a cut crosses
GAP_PENALTY = 6.0  # per line height of clear gap between pieces joined into one mark
CLOSE_BONUS = 1.0  # for not splitting pieces closer than a stroke width (a broken stroke)

Box = tuple[int, int, int, int]  # x, y, width, height in input-image pixels
# (n, 784) model inputs and (n, FEATURES) shape features -> (n,) log P(one whole digit): the mark scorer
Judge = Callable[[np.ndarray, np.ndarray], np.ndarray]

# What a candidate mark's shape says besides its pixels (``Segmentation.features``, one row each), in
# line heights where a length: width, height, log aspect ratio, pieces joined, whether its left and
# right edges are cuts and how many strokes each cut crosses, the share of its box that is ink, and
# how far its centre sits above or below the line's.
FEATURE_NAMES = (
    "width",
    "height",
    "log_aspect",
    "pieces",
    "left_cut",
    "left_crossed",
    "right_cut",
    "right_crossed",
    "ink_share",
    "centre_offset",
)
FEATURES = len(FEATURE_NAMES)


@dataclasses.dataclass(frozen=True)
class Piece:
    """Ink that belongs to one mark at most: a blob, or the part of a wide blob between two cuts."""

    box: Box
    mask: np.ndarray  # uint8 0/1, the size of ``box``

    @property
    def centre_x(self) -> float:
        return self.box[0] + self.box[2] / 2.0


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Pieces ``first..last`` (inclusive) read as one mark, its box and its shape term."""

    first: int
    last: int
    box: Box
    shape_score: float


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """Candidate marks for one image; ``inputs[i]`` is candidate ``i`` as the model's (784,) input."""

    candidates: list[Candidate]
    inputs: np.ndarray  # float32 (n, 784)
    previews: np.ndarray  # uint8 (n, 28, 28)
    split_scores: np.ndarray  # (pieces - 1,): added when a mark ends between piece i and i + 1
    join_scores: np.ndarray  # (pieces - 1,): added when one mark spans that boundary
    line_height: float
    pieces: int
    features: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, FEATURES), np.float32))
    parts: list[Piece] = dataclasses.field(default_factory=list)  # the pieces, left to right
    cuts: frozenset[int] = frozenset()  # boundaries i (between parts i and i + 1) that cut through a blob
    ink: np.ndarray | None = None  # the image's ink map (``preprocess.ink_map``), to render other marks

    def blobs(self) -> list[tuple[int, int]]:
        """The blobs as runs of parts (first, last), left to right; a blob that was cut has several."""
        runs, first = [], 0
        for boundary in range(self.pieces - 1):
            if boundary not in self.cuts:
                runs.append((first, boundary))
                first = boundary + 1
        return [*runs, (first, self.pieces - 1)] if self.pieces else []

    def render(self, box: Box, mask: np.ndarray, style: str = "digit") -> np.ndarray:
        """A mark of this image (its box and 0/1 ink mask) as the model's 28x28 uint8 input."""
        if self.ink is None:
            raise ValueError("this segmentation kept no ink map to render marks from")
        return _render(self.ink, box, mask, style)

    def choose(self, log_probabilities: np.ndarray) -> list[int]:
        """Indices of the candidates that make up the best reading, left to right.

        ``log_probabilities[i]``: the model's log-probability of its best label for candidate ``i``.
        Every piece belongs to exactly one chosen candidate.
        """
        if not self.candidates:
            return []
        n = self.pieces
        if len(self.candidates) == n:  # only the pieces alone (each always is a candidate): one split
            return list(range(n))
        best = np.full(n + 1, -np.inf)
        best[0] = 0.0
        came_from = [-1] * (n + 1)
        by_end: dict[int, list[int]] = {}
        for index, candidate in enumerate(self.candidates):
            by_end.setdefault(candidate.last, []).append(index)
        joins = np.concatenate([[0.0], np.cumsum(self.join_scores)])
        for end in range(n):
            for index in by_end.get(end, []):
                c = self.candidates[index]
                if best[c.first] == -np.inf:
                    continue
                score = best[c.first] + float(log_probabilities[index]) + c.shape_score
                score += joins[c.last] - joins[c.first]  # boundaries inside the mark
                if c.first > 0:
                    score += self.split_scores[c.first - 1]  # the boundary before it
                if score > best[end + 1]:
                    best[end + 1], came_from[end + 1] = score, index
        chosen, end = [], n
        while end > 0:
            index = came_from[end]
            chosen.append(index)
            end = self.candidates[index].first
        return chosen[::-1]


def empty_segmentation() -> Segmentation:
    no_inputs, no_previews = np.zeros((0, 784), np.float32), np.zeros((0, 28, 28), np.uint8)
    return Segmentation([], no_inputs, no_previews, np.zeros(0), np.zeros(0), 0.0, 0)


# --- ink -> blobs -----------------------------------------------------------------------------------


def _blobs(mask: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, float]:
    """8-connected blobs: their outlines and stats rows (x, y, w, h, area), and the length of every
    outline in the ink, holes' too (for ``_stroke_width``).

    Traced as outlines (``cv2.findContours``), an order of magnitude cheaper than labelling every
    pixel; the area is the outline's enclosed area plus half its length (the boundary pixels). One
    trace of the whole tree costs what tracing the outer outlines alone does, and gives both.
    """
    every, hierarchy = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    lengths = [cv2.arcLength(c, True) for c in every]
    outer = [] if hierarchy is None else np.flatnonzero(hierarchy[0, :, 3] < 0).tolist()
    contours = [every[i] for i in outer]
    stats = np.zeros((len(contours), 5), np.int64)
    for row, i in enumerate(outer):
        stats[row, :4] = cv2.boundingRect(every[i])
        stats[row, 4] = int(cv2.contourArea(every[i]) + lengths[i] / 2 + 1)
    return contours, stats, float(sum(lengths))


def _blob_mask(mask: np.ndarray, contours: list[np.ndarray], box: Box, alone: bool = False) -> np.ndarray:
    """The ink of the blobs outlined by ``contours`` within ``box``, as a 0/1 crop; ``alone``: they are
    all the blobs of ``mask``, so that is all the ink in the box."""
    x, y, w, h = box
    if alone:
        return mask[y : y + h, x : x + w].copy()
    inside = np.zeros((h, w), np.uint8)
    cv2.drawContours(inside, contours, -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
    return cv2.bitwise_and(inside, mask[y : y + h, x : x + w])


def _line_height(stats: np.ndarray) -> float:
    heights = stats[:, cv2.CC_STAT_HEIGHT].tolist()  # a few numbers: plain Python beats np.median here
    top = max(heights)
    return float(statistics.median(h for h in heights if h >= 0.5 * top))


def _remove_underlines(mask: np.ndarray, stats: np.ndarray, height: float) -> bool:
    """Erase long thin horizontal runs that lie below the middle of the writing; True if any was."""
    if not np.any(stats[:, cv2.CC_STAT_WIDTH] >= UNDERLINE * height):
        return False
    length = max(3, int(UNDERLINE * height))
    runs = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
    if not runs.any():
        return False
    rows = np.flatnonzero(mask.any(axis=1))
    middle = (rows[0] + rows[-1]) / 2.0
    _, labels, line_stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    removed = False
    for label, (x, y, w, h, _) in enumerate(line_stats[1:], start=1):
        thin = h <= 0.3 * height
        if thin and y + h / 2.0 > middle:
            # Erase the run and the pixels just above and below it (its anti-aliased rim).
            band = (labels[y : y + h, x : x + w] == label).astype(np.uint8)
            band = cv2.dilate(band, np.ones((3, 1), np.uint8))
            top, bottom = max(0, y - 1), min(mask.shape[0], y + h + 1)
            rim = np.zeros((bottom - top, w), np.uint8)
            rim[y - top : y - top + h] = band[:h]
            rim = cv2.dilate(rim, np.ones((3, 1), np.uint8))
            mask[top:bottom, x : x + w][rim > 0] = 0
            removed = True
    return removed


def _stroke_width(outline: float, area: float) -> float:
    """Typical stroke width: a stroke's area over half its outline's length (``_blobs`` measures the
    length; cheaper than a distance transform of the whole image)."""
    return max(1.0, 2.0 * float(area) / max(outline, 1.0))


def _join_stacked(stats: np.ndarray, height: float) -> np.ndarray:
    """Group id per blob: a short blob over or under a tall one (a 5's flag) joins that one."""
    group = np.arange(len(stats))
    x, w, h = stats[:, 0], stats[:, 2], stats[:, 3]
    y = stats[:, 1]
    tall = np.flatnonzero(h >= TALL * height)
    for i in np.flatnonzero(h < TALL * height):
        if not len(tall):
            break
        overlap = np.minimum(x[i] + w[i], x[tall] + w[tall]) - np.maximum(x[i], x[tall])
        vertical_gap = np.maximum(0, np.maximum(y[tall] - (y[i] + h[i]), y[i] - (y[tall] + h[tall])))
        fits = (overlap >= 0.6 * w[i]) & (vertical_gap <= 0.5 * height)
        if fits.any():
            group[i] = tall[np.flatnonzero(fits)[np.argmax(overlap[fits])]]
    return group


# --- cuts through a wide blob -----------------------------------------------------------------------


def _cuts(mask: np.ndarray, height: float, stroke: float) -> list[tuple[np.ndarray, float]]:
    """Top-to-bottom paths through ``mask`` that cross little ink: (x per row, strokes crossed).

    Paths are searched along lines of several slants (the writing's own, and steeper and flatter
    ones: a leaning 1 beside an upright 3 is cut along its own lean). Every path keeps within a band
    of +-``BAND`` line heights round its line, so it may slip round a stroke but two cuts never merge
    into one. Of each slant's lines every few pixels, those whose best path crosses least ink
    (locally) are candidates; the cheapest are kept (at most ``CUTS_PER_HEIGHT`` per line height of
    width), so long as each pair is nested and leaves a piece of ink between them (``_nested``).
    """
    h, w = mask.shape
    scale = min(1.0, SEAM_ROWS / max(h, 1))
    sh, sw = max(2, round(h * scale)), max(3, round(w * scale))
    per_px = sw / w  # small columns per input pixel
    small = cv2.resize(mask.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    margin = max(1, int(MIN_PIECE * height * per_px))
    band = max(1, int(BAND * height * per_px))
    centres = np.arange(margin, sw - margin)
    if not len(centres):
        return []
    stroke_small = max(1.0, stroke * per_px)
    limit = max(1, min(math.ceil(CUTS_PER_HEIGHT * w / height), MAX_CUTS))
    if w <= NARROW * height:
        limit = min(limit, NARROW_CUTS)
    own = _slant(small)
    found = _seams_at(small, centres, band, sorted({round(own, 2), *CUT_SLANTS}))  # (ink crossed, x per row)
    rows = np.minimum((np.arange(h) * sh) // h, sh - 1)
    ink_y, ink_x = np.nonzero(mask)
    least = max(PIECE_INK * stroke * height, NESTED_SLACK * len(ink_y))  # ink a piece holds at least
    slack = NESTED_SLACK * len(ink_y)
    chosen: list[tuple[np.ndarray, np.ndarray, float]] = []  # (x per row, ink left of it, strokes crossed)
    valleys = _valley_cuts(mask, height, stroke, small) if CONCAVITY_CUTS else []
    seams = [(seam, crossed) for crossed, seam in valleys]
    seams += [((xs[rows] + 0.5) / per_px, cost / stroke_small) for cost, xs in sorted(found, key=lambda item: item[0])]
    for seam, crossed in seams:
        if len(chosen) >= limit or crossed > MAX_CROSSED:
            if len(chosen) >= limit:
                break
            continue
        left = ink_x < seam[ink_y]
        if left.sum() < least or (~left).sum() < least:
            continue
        # Cuts must be nested (the ink left of one holds the ink left of the other, give or take a
        # few pixels), so the pieces between them are well defined even where the paths cross in
        # blank paper; and hold a piece's worth of ink between them.
        if all(_nested(left, other, slack, least) for _, other, _ in chosen):
            chosen.append((seam, left, crossed))
    chosen.sort(key=lambda cut: int(cut[1].sum()))
    return [(seam, crossed) for seam, _, crossed in chosen]


def _valley_cuts(mask: np.ndarray, height: float, stroke: float, small: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Cuts between the valleys two touching digits leave in the blob's outline: (strokes crossed,
    x per row), cheapest first.

    Where two digits press together along a stroke (a 1 against a 0), every path from top to bottom
    crosses ink for the length of the contact, so the cheapest paths run elsewhere. The contact
    shows in the outline instead: a valley opening upwards above it and one opening downwards below
    it. Each cut drops straight from the top to an upper valley, runs straight to a lower valley
    not far to the side of it, and drops to the bottom; from a valley without a partner, the cut
    follows the path across least ink (``_drop``, on ``small``, the blob scaled as ``_cuts`` does).
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    outline = max(contours, key=len)
    if len(outline) < 8:
        return []
    hull = cv2.convexHull(outline, returnPoints=False)
    try:
        defects = cv2.convexityDefects(outline, np.sort(hull, axis=0))
    except cv2.error:  # a self-touching outline OpenCV cannot take
        return []
    if defects is None:
        return []
    points = outline[:, 0, :]
    h, w = mask.shape
    upper, lower = [], []
    for start, end, far, depth in defects.reshape(-1, 4):
        if depth / 256.0 < VALLEY_DEPTH * height:
            continue
        fx, fy = points[far]
        mouth = (points[start][1] + points[end][1]) / 2.0
        if mouth < fy and MIN_PIECE * height <= fx <= w - MIN_PIECE * height:
            upper.append((int(fx), int(fy)))
        elif mouth > fy and MIN_PIECE * height <= fx <= w - MIN_PIECE * height:
            lower.append((int(fx), int(fy)))
    rows = np.arange(h)

    def facing(u: tuple[int, int], v: tuple[int, int]) -> bool:
        return v[1] > u[1] and abs(v[0] - u[0]) <= VALLEY_SLANT * (v[1] - u[1]) + BAND * height

    cuts = []
    for u in upper:
        for v in (v for v in lower if facing(u, v)):
            path = np.interp(rows, [u[1], v[1]], [u[0], v[0]])
            xs = np.clip(np.round(path).astype(np.int64), 0, w - 1)
            crossed = float(mask[rows, xs].sum()) / max(stroke, 1.0)
            cuts.append((min(crossed, VALLEY_CROSSED), path + 0.5))
    if VALLEY_SINGLES:
        sh, sw = small.shape
        per_px, small_rows = sw / w, np.minimum((rows * sh) // h, sh - 1)
        band = max(1, int(BAND * height * per_px))
        stroke_small = max(1.0, stroke * per_px)
        alone = [(u, True) for u in upper if not any(facing(u, v) for v in lower)]
        alone += [(v, False) for v in lower if not any(facing(u, v) for u in upper)]
        for (x, y), down in alone:
            xs, ink = _drop(small, min(int(x * per_px), sw - 1), min(int(y * sh / h), sh - 1), band, down)
            cuts.append((ink / stroke_small, (xs[small_rows] + 0.5) / per_px))
    return sorted(cuts, key=lambda cut: cut[0])


def _least_ink(cost: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-cost paths down the rows of ``cost`` (rows, ..., columns), moving at most one column per
    row: from ``first`` (the first row's cost, inf where no path may start), the cost of the cheapest
    path to each column of the last row, and the step (0, -1, +1) that reached each cell (for tracing
    a path back). Sums are in float64, so equal paths tie the same way whatever ``cost``'s dtype."""
    total = np.asarray(first, np.float64)
    steps = np.zeros(cost.shape, np.int8)
    edge = np.full((*total.shape[:-1], 1), np.inf)
    moves = np.array([0, -1, 1], np.int8)
    for r in range(1, len(cost)):
        shifted = (np.concatenate([edge, total[..., :-1]], -1), np.concatenate([total[..., 1:], edge], -1))
        options = np.stack([total, *shifted])
        choice = options.argmin(axis=0)
        total = cost[r] + np.take_along_axis(options, choice[None], 0)[0]
        steps[r] = moves[choice]
    return total, steps


def _drop(small: np.ndarray, x: int, y: int, band: int, down: bool) -> tuple[np.ndarray, float]:
    """The path across least ink from (``x``, ``y``) to the bottom (``down``) or the top, a step of at
    most one column per row and within ``band`` columns of ``x``; straight up (down) through the
    valley's mouth on the other side. Returns x per row and the ink it crosses."""
    sh, sw = small.shape
    rows = np.arange(y, sh) if down else np.arange(y, -1, -1)
    columns = np.arange(max(0, x - band), min(sw, x + band + 1))
    cost = small[rows][:, columns]
    total, steps = _least_ink(cost, np.where(columns == x, cost[0], np.inf))
    j = int(np.argmin(total))
    ink = float(total[j])
    path = np.empty(len(rows), np.int64)
    for r in range(len(rows) - 1, -1, -1):
        path[r] = j
        j += int(steps[r, j])
    xs = np.full(sh, x, np.int64)
    xs[rows] = columns[path]
    return xs, ink


def _nested(a: np.ndarray, b: np.ndarray, slack: float, least: float) -> bool:
    a_not_b = np.count_nonzero(a & ~b)
    b_not_a = np.count_nonzero(b & ~a)
    small, large = min(a_not_b, b_not_a), max(a_not_b, b_not_a)
    return small <= slack and large >= least


def _seams_at(small: np.ndarray, centres: np.ndarray, band: int, slants: list[float]) -> list[tuple[float, np.ndarray]]:
    """The least-ink path in the band round each line through ``centres`` at each of ``slants`` (one
    dynamic programme for all), kept where it is a local minimum over a slant's neighbouring lines:
    (ink crossed, x per row)."""
    sh, sw = small.shape
    rows_small = np.arange(sh)
    lines = len(centres)
    shift = np.round(np.asarray(slants)[:, None] * (rows_small - (sh - 1) / 2.0)).astype(np.int64)  # (S, sh)
    starts = np.tile(centres, len(slants))  # line l: centre starts[l], slant l // lines
    shifts = np.repeat(shift, lines, axis=0).T  # (sh, S * lines)
    offsets = np.arange(-band, band + 1)
    # Cost of each column of each band, rows x lines x (2 band + 1); outside the image: forbidden.
    columns = starts[None, :, None] + offsets[None, None, :] + shifts[:, :, None]
    inside = (columns >= 0) & (columns < sw)
    padded = np.concatenate([small, np.full((sh, 1), np.inf, np.float32)], axis=1)
    cost = padded[rows_small[:, None, None], np.where(inside, columns, sw)]
    cost = cost + 0.02 * np.abs(offsets) / band  # rather straight
    total, steps = _least_ink(cost, cost[0])
    end = total.argmin(axis=1)
    best = total[np.arange(len(starts)), end].reshape(len(slants), lines)
    # Only local minima: of a run of lines whose paths cross the same stroke, the cheapest one.
    inf_column = np.full((len(slants), 1), np.inf)
    left = np.concatenate([inf_column, best[:, :-1]], axis=1)
    right = np.concatenate([best[:, 1:], inf_column], axis=1)
    minima = np.flatnonzero((best <= left) & (best < right) & np.isfinite(best))
    seams = []
    for j in minima:
        path = np.empty(sh, np.int64)
        path[-1] = end[j]
        for r in range(sh - 1, 0, -1):
            path[r - 1] = path[r] + steps[r, j, path[r]]
        xs = starts[j] + shifts[:, j] + offsets[path]
        seams.append((float(small[rows_small, xs].sum()), xs))
    return seams


def _slant(small: np.ndarray) -> float:
    """Columns per row of the writing's slant: the shear that makes the column profile sharpest."""
    ys, xs = np.nonzero(small > 0.25)
    if len(ys) < 4:
        return 0.0
    middle = (small.shape[0] - 1) / 2.0
    best, best_score = 0.0, -1.0
    for shear in SLANTS:
        columns = np.round(xs - shear * (ys - middle)).astype(np.int64)
        counts = np.bincount(columns - columns.min())
        score = float(np.dot(counts, counts))
        if score > best_score:
            best, best_score = float(shear), score
    return best


def _split_blob(mask: np.ndarray, box: Box, height: float, stroke: float) -> tuple[list[Piece], list[float]]:
    """A blob's pieces, left to right, and the strokes crossed by the cut between each pair."""
    cuts = _cuts(mask, height, stroke)
    if not cuts:
        return [Piece(box, mask)], []
    x0, y0 = box[0], box[1]
    columns = np.arange(mask.shape[1])[None, :]
    order = np.zeros(mask.shape, np.int32)
    for seam, _ in cuts:
        order += columns >= seam[:, None]
    pieces, crossed = [], []
    for index in range(len(cuts) + 1):
        part = ((order == index) & (mask > 0)).astype(np.uint8)
        if not part.any():
            continue
        x, y, w, h = cv2.boundingRect(part)
        if pieces and index > 0:
            crossed.append(cuts[index - 1][1])
        pieces.append(Piece((x0 + x, y0 + y, w, h), part[y : y + h, x : x + w]))
    return pieces, crossed


# --- pieces -> candidate marks ----------------------------------------------------------------------


def union(pieces: list[Piece]) -> tuple[Box, np.ndarray]:
    """The box round ``pieces`` and their ink in it (0/1)."""
    x0 = min(p.box[0] for p in pieces)
    y0 = min(p.box[1] for p in pieces)
    x1 = max(p.box[0] + p.box[2] for p in pieces)
    y1 = max(p.box[1] + p.box[3] for p in pieces)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for p in pieces:
        x, y, w, h = p.box
        mask[y - y0 : y - y0 + h, x - x0 : x - x0 + w] |= p.mask
    return (x0, y0, x1 - x0, y1 - y0), mask


def _shape_score(box: Box, height: float) -> float:
    _, _, w, h = box
    score = -SHORT_PENALTY * max(0.0, SHORT_FROM - h / height)
    score -= WIDE_PENALTY * max(0.0, w / height - WIDE_FROM)
    return score


def _gap(a: Piece, b: Piece, reach: float) -> float:
    """Shortest distance in pixels between the ink of two pieces (0 when they touch), capped at
    ``reach``. Only the strip where they face each other is measured: ink further than ``reach``
    from the other piece's near edge cannot be closer than ``reach`` to it."""
    if a.centre_x > b.centre_x:
        a, b = b, a
    between = b.box[0] - (a.box[0] + a.box[2])
    if between >= reach:
        return float(reach)
    x0 = max(min(a.box[0], b.box[0]), int(b.box[0] - reach))
    x1 = min(max(a.box[0] + a.box[2], b.box[0] + b.box[2]), int(math.ceil(a.box[0] + a.box[2] + reach)))
    y0 = min(a.box[1], b.box[1])
    y1 = max(a.box[1] + a.box[3], b.box[1] + b.box[3])
    if x1 <= x0:
        return float(reach)
    field = np.ones((y1 - y0, x1 - x0), np.uint8)
    inside_b = np.zeros_like(field)
    for piece, target, value in ((a, field, 0), (b, inside_b, 1)):
        x, y, w, h = piece.box
        left, right = max(x, x0), min(x + w, x1)
        if right > left:
            part = piece.mask[:, left - x : right - x] > 0
            target[y - y0 : y - y0 + h, left - x0 : right - x0][part] = value
    if field.all() or not inside_b.any():
        return float(reach)
    distance = cv2.distanceTransform(field, cv2.DIST_L2, 3)
    return float(min(reach, distance[inside_b > 0].min()))


def segment(image: np.ndarray, style: str = "digit", judge: Judge | None = None) -> Segmentation:
    """Candidate marks of a decoded image (grey, BGR or BGRA uint8); empty when it holds no ink.

    ``judge``: log P(one whole digit) of marks (the mark scorer's ``log_whole``). With it, a blob
    only a little wider than one digit (at most ``NARROW`` line heights) is cut only when the judge
    doubts that the whole blob is one digit: a broad 0 or 4 alone then costs one candidate, not a
    dozen, while a 1 run into its neighbour is still cut.
    """
    try:
        ink, (mask, _) = preprocess.find_ink(image, drop_specks=False)  # specks: below, with the dots
    except NoDigitFoundError:
        return empty_segmentation()
    contours, stats, outline = _blobs(mask)
    if not len(stats):
        return empty_segmentation()
    height = _line_height(stats)
    if _remove_underlines(mask, stats, height):
        contours, stats, outline = _blobs(mask)
        if not len(stats):
            return empty_segmentation()
        height = _line_height(stats)
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= DOT * height
    keep &= areas >= max(2, preprocess.SPECK_SHARE * areas.max())
    if not keep.any():
        return empty_segmentation()
    group = _join_stacked(np.where(keep[:, None], stats, 0), height)
    pieces: list[Piece] = []
    cut_between: dict[int, float] = {}  # boundary index -> strokes crossed, for boundaries that are cuts
    blobs: list[tuple[Box, np.ndarray]] = []
    for root in sorted(set(group[keep].tolist())):
        members = np.flatnonzero((group == root) & keep) + 1
        x, y, w, h = _group_box(stats[members - 1])
        crop = _blob_mask(mask, [contours[m - 1] for m in members], (x, y, w, h), len(members) == len(contours))
        blobs.append(((x, y, w, h), crop))
    blobs.sort(key=lambda blob: blob[0][0] + blob[0][2] / 2.0)
    to_cut = [box[2] > CUT_WIDTH * height for box, _ in blobs]
    rendered: dict[Box, np.ndarray] = {}  # previews made already, by the box of a whole blob
    if judge is not None and any(to_cut):
        rendered = _spare_single_digits(ink, blobs, to_cut, height, style, judge)
    # the stroke width measures gaps between pieces and cuts through a blob: one uncut blob needs neither
    alone = len(blobs) == 1 and not to_cut[0]
    stroke = 0.0 if alone else _stroke_width(outline, areas[keep].sum())
    for (box, crop), cut in zip(blobs, to_cut):
        if cut:
            parts, crossed = _split_blob(crop, box, height, stroke)
        else:
            parts, crossed = [Piece(box, crop)], []
        for offset, strokes in enumerate(crossed):
            cut_between[len(pieces) + offset] = strokes
        pieces.extend(parts)
    return _candidates(ink, pieces, cut_between, height, stroke, style, rendered)


def _spare_single_digits(
    ink: np.ndarray, blobs: list[tuple[Box, np.ndarray]], to_cut: list[bool], height: float, style: str, judge: Judge
) -> dict[Box, np.ndarray]:
    """Clear ``to_cut`` for blobs at most ``NARROW`` line heights wide that ``judge`` takes for one whole
    digit (log-probability at least ``ONE_DIGIT``), all such blobs judged in one call; the previews
    of the blobs left whole, by box (their candidate marks need them again)."""
    narrow = [i for i, cut in enumerate(to_cut) if cut and blobs[i][0][2] <= NARROW * height]
    if not narrow:
        return {}
    line_centre = _line_centre([box for box, _ in blobs], height)
    previews, features = [], []
    for i in narrow:
        box, crop = blobs[i]
        previews.append(_render(ink, box, crop, style))
        features.append(_features(box, crop, 1, None, None, height, line_centre))
    inputs = np.stack(previews).astype(np.float32).reshape(len(narrow), 784) * (1.0 / 255.0)
    verdict = judge(inputs, np.asarray(features, np.float32).reshape(len(narrow), FEATURES))
    spared = {}
    for i, preview, log_whole in zip(narrow, previews, verdict):
        if log_whole >= ONE_DIGIT:
            to_cut[i] = False
            spared[blobs[i][0]] = preview
    return spared


def _group_box(rows: np.ndarray) -> Box:
    x0, y0 = rows[:, 0].min(), rows[:, 1].min()
    x1, y1 = (rows[:, 0] + rows[:, 2]).max(), (rows[:, 1] + rows[:, 3]).max()
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _without_slivers(box: Box, mask: np.ndarray, left: bool, right: bool, stroke: float) -> tuple[Box, np.ndarray]:
    """Drop small bits a cut sliced off a neighbour's stroke: blobs at a cut edge with little ink."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 2:
        return box, mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    near = 1.5 * stroke
    keep = np.ones(count - 1, bool)
    for i, (x, _, w, _, area) in enumerate(stats[1:]):
        at_edge = (left and x <= near) or (right and x + w >= mask.shape[1] - near)
        keep[i] = not (at_edge and area < SLIVER * areas.max())
    if keep.all():
        return box, mask
    mask = np.isin(labels, np.flatnonzero(keep) + 1).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(mask)
    return (box[0] + x, box[1] + y, w, h), np.ascontiguousarray(mask[y : y + h, x : x + w])


def _line_centre(boxes: list[Box], height: float) -> float:
    """The middle of the line of writing: the median centre of the tall boxes (of all, if none is)."""
    centres = [y + h / 2.0 for _, y, _, h in boxes if h >= TALL * height]
    return float(statistics.median(centres or [y + h / 2.0 for _, y, _, h in boxes]))


def _render(ink: np.ndarray, box: Box, mask: np.ndarray, style: str) -> np.ndarray:
    """A mark (its box and 0/1 ink mask) as the model's 28x28 uint8 input, as ``prepare`` makes one."""
    x, y, w, h = box
    patch = cv2.bitwise_and(ink[y : y + h, x : x + w], ink[y : y + h, x : x + w], mask=mask)
    return preprocess.place_mark(patch, mask, style)


def _features(
    box: Box, mask: np.ndarray, pieces: int, left: float | None, right: float | None, height: float, line_centre: float
) -> tuple[float, ...]:
    """A mark's ``FEATURE_NAMES`` row; ``left``/``right``: strokes crossed by the cut at that edge, None
    where the edge is not a cut."""
    _, y, w, h = box
    return (
        w / height,
        h / height,
        math.log(max(w, 1) / max(h, 1)),
        pieces,
        left is not None,
        left or 0.0,
        right is not None,
        right or 0.0,
        float(np.count_nonzero(mask)) / max(w * h, 1),
        (y + h / 2.0 - line_centre) / height,
    )


def _candidates(
    ink: np.ndarray,
    pieces: list[Piece],
    cut_between: dict[int, float],
    height: float,
    stroke: float,
    style: str,
    rendered: dict[Box, np.ndarray] | None = None,
) -> Segmentation:
    n = len(pieces)
    split_scores = np.zeros(max(n - 1, 0))
    join_scores = np.zeros(max(n - 1, 0))
    joinable = np.ones(max(n - 1, 0), bool)
    for i in range(n - 1):
        if i in cut_between:
            split_scores[i] = -CUT_PENALTY * cut_between[i]
            continue
        short = min(pieces[i].box[3], pieces[i + 1].box[3]) < TALL * height
        # measured only as far as it can matter: past the reach, the pieces are not joined
        reach = max(BROKEN_GAP * stroke, LOOSE_GAP * height) if short else BROKEN_GAP * stroke
        gap = _gap(pieces[i], pieces[i + 1], reach + 1.0)
        joinable[i] = gap <= BROKEN_GAP * stroke or (short and gap <= LOOSE_GAP * height)
        join_scores[i] = -GAP_PENALTY * max(0.0, gap - stroke) / height
        if gap <= stroke:
            split_scores[i] = -CLOSE_BONUS
    candidates, previews, features = [], [], []
    ink_of = [int(np.count_nonzero(p.mask)) for p in pieces]
    line_centre = _line_centre([p.box for p in pieces], height)
    for first in range(n):
        for last in range(first, min(n, first + MAX_RUN)):
            if last > first and not joinable[last - 1]:
                break
            box, mask = union(pieces[first : last + 1])
            if last > first and box[2] > MAX_WIDTH * height:
                break
            if (first - 1 in cut_between) or (last in cut_between):
                before = int(np.count_nonzero(mask))
                box, mask = _without_slivers(box, mask, first - 1 in cut_between, last in cut_between, stroke)
                dropped = before - int(np.count_nonzero(mask))
                if last > first and dropped and dropped >= min(ink_of[first], ink_of[last]):
                    # A whole piece at its edge went as a sliver: the mark is a shorter run's, and
                    # would hide that piece from the mark it belongs to.
                    continue
            done = rendered.get(box) if rendered and first == last else None
            previews.append(_render(ink, box, mask, style) if done is None else done)
            candidates.append(Candidate(first, last, box, _shape_score(box, height)))
            left, right = cut_between.get(first - 1), cut_between.get(last)
            features.append(_features(box, mask, last - first + 1, left, right, height, line_centre))
    stack = np.stack(previews)
    inputs = (stack.astype(np.float32) * (1.0 / 255.0)).reshape(len(stack), 784)
    shape = np.asarray(features, np.float32).reshape(-1, FEATURES)
    cuts = frozenset(cut_between)
    return Segmentation(candidates, inputs, stack, split_scores, join_scores, height, n, shape, pieces, cuts, ink)


def log_best(probabilities: np.ndarray) -> np.ndarray:
    """The log-probability of each row's best label (what ``Segmentation.choose`` takes)."""
    return np.log(np.maximum(probabilities.max(axis=1), 1e-12))


__all__ = ["Box", "Candidate", "Piece", "Segmentation", "log_best", "segment", "union", "math"]
