"""Small, learnable MNIST-like IDX files for end-to-end tests of the scripts (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend_mlp.data import write_idx


def synthetic_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images, noise plus a bright band whose row depends on the label (0..9)."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 70, (n, 28, 28))
    for i, label in enumerate(labels):
        top = 2 * int(label) + 2
        images[i, top : top + 4, 4:24] += 170
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_synthetic_mnist(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write the four MNIST files into ``folder``: images gzipped, labels raw (both spellings are read)."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = synthetic_images(rng, n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder
