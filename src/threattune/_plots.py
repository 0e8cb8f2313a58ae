"""Figures for reports: confusion matrices and precision-recall curves (matplotlib, no GUI)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def confusion_png(confusion: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    """A row-normalised confusion matrix with counts in each cell."""
    counts = np.asarray(confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(counts[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if shares[i, j] > 0.6 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pr_curve_png(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    path: Path,
    points: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Precision-recall of the attack score (1 - P(benign)) for each named model.

    ``points`` marks decisions on the curves, as (recall, precision) by name.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (is_attack, score) in curves.items():
        if 0 < is_attack.sum() < len(is_attack):
            precision, recall, _ = precision_recall_curve(is_attack, score)
            ax.plot(recall, precision, label=name, linewidth=1.5)
    for name, (recall, precision) in (points or {}).items():
        ax.plot(
            [recall],
            [precision],
            marker="o",
            markersize=7,
            linestyle="none",
            label=name,
            color="crimson",
        )
    ax.set_xlabel("recall of attacks")
    ax.set_ylabel("precision of alerts")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
