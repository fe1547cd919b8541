"""PNG figures for training and evaluation (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curve_png(history: Sequence[dict], path: Path, title: str = "training") -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.plot(epochs, [100 * h["train_accuracy"] for h in history], marker="o", label="train (augmented)")
    ax_acc.plot(epochs, [100 * h["test_accuracy"] for h in history], marker="o", label="test (EMA weights)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy %", title="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> None:
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    shown = np.log1p(matrix)
    ax.imshow(shown, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                color = "white" if shown[i, j] > shown.max() / 2 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def mistakes_grid_png(images: np.ndarray, captions: Sequence[str], path: Path, title: str, columns: int = 8) -> None:
    """A grid of 28x28 images with 'true -> predicted (confidence)' captions."""
    count = max(1, len(images))
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
