"""The figures say what they plot: labels, axes and titles checked on the matplotlib objects, files as PNGs."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend_mlp.errors import InputValidationError
from backend_mlp.report.figures import (
    Curve,
    batchnorm_ablation_figure,
    confusion_matrix_figure,
    cost_curve_figure,
    cost_curves_figure,
    misclassified_figure,
    misclassified_indices,
    plot_batchnorm_ablation,
    plot_confusion_matrix,
    plot_cost_curve,
    plot_misclassified,
)

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress"]


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and a plausible file size."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    assert len(data) > 5_000, f"{path}: {len(data)} bytes, too small to hold the figure"
    assert not list(path.parent.glob(".*.part")), "temporary files left behind"
    return struct.unpack(">II", data[16:24])


def _legend_texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _labels(rng: np.random.Generator, m: int = 300, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, m)
    p = y.copy()
    flip = rng.random(m) < 0.2
    p[flip] = (y[flip] + 1) % k  # every flipped sample is a mistake
    return y, p


# ----------------------------------------------------------------------------- cost curves


def test_cost_curve_labels_the_l2_penalty_only_for_l2(tmp_path: Path) -> None:
    steps, costs, val = [100, 200, 300], [1.0, 0.8, 0.6], [1.1, 0.9, 0.7]
    ax = cost_curve_figure(steps, costs, val, title="plain run").axes[0]
    assert _legend_texts(ax) == ["training mini-batch cost", "validation cost"]
    assert ax.get_ylabel() == "cross-entropy cost" and ax.get_title() == "plain run"

    ax = cost_curve_figure(steps, costs, val, title="L2 run", l2_lambda=0.5).axes[0]
    train, validation = _legend_texts(ax)
    assert "cross-entropy + L2 penalty" in train and "λ=0.5" in train
    assert validation == "validation cross-entropy" and "L2" not in validation
    assert ax.get_ylabel() == "cost" and ax.get_title() == "L2 run"

    path = plot_cost_curve(tmp_path / "c.png", steps, costs, val, "L2 run", l2_lambda=1.0)
    assert path == tmp_path / "c.png" and _png_size(path)[0] >= 600


def test_report_cost_curves_label_the_penalty_in_l2_panels() -> None:
    runs = [Curve([100, 200], [1.0, 0.8], [1.1, 0.9], seed=s) for s in (0, 1)]
    fig = cost_curves_figure({"plain": runs, "L2": runs}, l2_lambdas={"L2": 1.0})
    plain, l2 = fig.axes
    assert not any("L2" in t for t in _legend_texts(plain))
    assert "validation cost" in _legend_texts(plain)
    assert any("L2 penalty" in t for t in _legend_texts(l2)) and "validation cross-entropy" in _legend_texts(l2)
    assert "cross-entropy" not in plain.get_ylabel()  # one shared axis: "cost" when a panel includes the penalty
    fig = cost_curves_figure({"plain": runs})
    assert fig.axes[0].get_ylabel().startswith("cross-entropy cost")


# ----------------------------------------------------------------------------- batch-norm ablation


def test_ablation_bars_start_at_zero(tmp_path: Path) -> None:
    curves = {"a: ours": [Curve([100, 200], [1.0, 0.8], [1.1, 0.9])]}
    accs = {"a: ours": [0.92, 0.93, 0.925], "b: no γ/β": [0.90, 0.91, 0.905], "d: c + batch stats": [0.85]}
    fig = batchnorm_ablation_figure(curves, accs, reference_accuracy={"report": 0.8578})
    ax = next(a for a in fig.axes if a.get_ylabel() == "test accuracy")
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 0.93
    bars = ax.patches
    assert [b.get_y() for b in bars] == [0.0, 0.0, 0.0]
    assert [b.get_height() for b in bars] == pytest.approx([0.925, 0.905, 0.85])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "d"]
    path = plot_batchnorm_ablation(curves, accs, tmp_path / "ab.png", reference_accuracy={"report": 0.8578})
    assert _png_size(path)[0] >= 1000


# ----------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_shows_counts_names_and_accuracy(tmp_path: Path) -> None:
    y, p = _labels(np.random.default_rng(0))
    counts = np.zeros((4, 4), dtype=int)
    np.add.at(counts, (y, p), 1)
    fig = confusion_matrix_figure(y, p, NAMES, title="test set")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())  # long names are rotated
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "test set" in ax.get_title() and f"accuracy {np.mean(y == p):.4f}" in ax.get_title()
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(i, j): f"{counts[i, j]:,}" for i in range(4) for j in range(4)}
    colour = ax.images[0].get_array()
    assert np.allclose(colour.sum(axis=1), 1.0)  # row-normalised
    assert np.allclose(colour, counts / counts.sum(axis=1, keepdims=True))

    short = confusion_matrix_figure(y, p, ["0", "1", "2", "3"]).axes[0]
    assert all(t.get_rotation() == 0 for t in short.get_xticklabels())

    path = plot_confusion_matrix(tmp_path / "cm.png", y, p, NAMES)
    width, height = _png_size(path)
    assert width >= 400 and height >= 400


def test_confusion_matrix_rejects_bad_labels(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="y_true"):
        plot_confusion_matrix(tmp_path / "cm.png", [0, 1, 4], [0, 1, 2], NAMES)  # 4 classes: 0..3
    with pytest.raises(InputValidationError, match="y_pred"):
        plot_confusion_matrix(tmp_path / "cm.png", [0, 1, 2], [0, 1], NAMES)
    with pytest.raises(InputValidationError, match="y_true"):
        plot_confusion_matrix(tmp_path / "cm.png", [0.0, 1.0], [0, 1], NAMES)
    assert list(tmp_path.iterdir()) == []


def test_figures_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    y, p = _labels(np.random.default_rng(1))
    path = plot_confusion_matrix(tmp_path / "cm.png", y, p, NAMES)
    before = path.read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        plot_confusion_matrix(path, p, y, NAMES)
    monkeypatch.undo()
    assert path.read_bytes() == before and [q.name for q in tmp_path.iterdir()] == ["cm.png"]


# ----------------------------------------------------------------------------- misclassified images


def _image_titles(fig: Any) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.images]


def test_misclassified_grid_in_sample_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y, p = _labels(rng)
    images = rng.integers(0, 256, (y.size, 6 * 5), dtype=np.uint8)
    wrong = np.flatnonzero(y != p)
    fig = misclassified_figure(images, y, p, NAMES, (6, 5), max_images=7)
    titles = _image_titles(fig)
    assert len(titles) == 7
    for title, i in zip(titles, wrong[:7], strict=True):
        assert title.startswith(f"true: {NAMES[y[i]][:9]}") and f"pred: {NAMES[p[i]][:9]}" in title
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert shown[0].shape == (6, 5) and np.array_equal(shown[0], images[wrong[0]].reshape(6, 5))
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    assert f"of {wrong.size} mistakes" in fig.get_suptitle()

    path = plot_misclassified(tmp_path / "mis.png", images.astype(np.float64) / 255, y, p, NAMES, (6, 5))
    assert _png_size(path)[0] >= 400


def test_misclassified_most_confident_first() -> None:
    y = np.array([0, 1, 2, 3, 0, 1])
    p = np.array([1, 1, 3, 0, 2, 1])  # mistakes at 0, 2, 3, 4
    probs = np.full((6, 4), 0.1)
    probs[[0, 2, 3, 4], [1, 3, 0, 2]] = [0.4, 0.9, 0.4, 0.7]
    assert misclassified_indices(y, p, max_images=3, probabilities=probs).tolist() == [2, 4, 0]  # ties: sample order
    assert misclassified_indices(y, p).tolist() == [0, 2, 3, 4]
    fig = misclassified_figure(np.zeros((6, 4)), y, p, NAMES, (2, 2), probabilities=probs)
    assert _image_titles(fig)[0] == "true: Pullover\npred: Dress (0.90)"


def test_misclassified_without_mistakes_says_so(tmp_path: Path) -> None:
    y = np.arange(4)
    fig = misclassified_figure(np.zeros((4, 9)), y, y, NAMES, (3, 3))
    assert not _image_titles(fig) and any("No misclassified" in t.get_text() for t in fig.texts)
    assert plot_misclassified(tmp_path / "none.png", np.zeros((4, 9)), y, y, NAMES, (3, 3)).is_file()


def test_misclassified_rejects_bad_inputs(tmp_path: Path) -> None:
    y = np.array([0, 1, 2])
    with pytest.raises(InputValidationError, match="image_shape"):
        plot_misclassified(tmp_path / "m.png", np.zeros((3, 10)), y, y[::-1], NAMES, (3, 3))
    with pytest.raises(InputValidationError, match="probabilities"):
        plot_misclassified(tmp_path / "m.png", np.zeros((3, 9)), y, y[::-1], NAMES, (3, 3),
                           probabilities=np.zeros((4, 3)))
    with pytest.raises(InputValidationError, match="max_images"):
        plot_misclassified(tmp_path / "m.png", np.zeros((3, 9)), y, y[::-1], NAMES, (3, 3), max_images=0)
    assert list(tmp_path.iterdir()) == []
