"""Digits and a letter as pen strokes, for the browser tests to draw with the mouse.

Each glyph is a list of strokes; a stroke is a list of (x, y) points in a unit cell (0..1 on both
axes, y downwards). ``place`` puts glyphs side by side in a row of cells, the way a person writes a
number on the page's canvas.
"""

from __future__ import annotations

import math

Point = tuple[float, float]
Stroke = list[Point]


def _ellipse(cx: float, cy: float, rx: float, ry: float, steps: int = 24) -> Stroke:
    return [
        (cx + rx * math.sin(2 * math.pi * i / steps), cy - ry * math.cos(2 * math.pi * i / steps))
        for i in range(steps + 1)
    ]


GLYPHS: dict[str, list[Stroke]] = {
    "0": [_ellipse(0.5, 0.5, 0.26, 0.34)],
    "2": [
        [(0.25, 0.32), (0.33, 0.2), (0.5, 0.15), (0.66, 0.2), (0.72, 0.33), (0.66, 0.48), (0.26, 0.84), (0.78, 0.84)]
    ],
    "6": [
        [
            (0.68, 0.16),
            (0.5, 0.24),
            (0.36, 0.42),
            (0.3, 0.62),
            (0.36, 0.8),
            (0.52, 0.86),
            (0.68, 0.78),
            (0.72, 0.63),
            (0.6, 0.52),
            (0.44, 0.53),
            (0.32, 0.62),
        ]
    ],
    "7": [[(0.28, 0.22), (0.72, 0.22)], [(0.72, 0.22), (0.58, 0.5), (0.46, 0.8)]],
    "A": [[(0.22, 0.84), (0.5, 0.14), (0.78, 0.84)], [(0.33, 0.58), (0.67, 0.58)]],
}


def place(text: str, cell_width: float, *, margin: float = 0.0) -> list[Stroke]:
    """Strokes of ``text`` in unit coordinates of the whole row: x spread over ``len(text)`` cells of
    ``cell_width`` each (after ``margin``), y unchanged."""
    strokes: list[Stroke] = []
    for i, char in enumerate(text):
        left = margin + i * cell_width
        strokes += [[(left + x * cell_width, y) for x, y in stroke] for stroke in GLYPHS[char]]
    return strokes
