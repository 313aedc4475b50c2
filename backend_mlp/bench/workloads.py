"""What is timed: the networks and batch sizes, the host data every side shares, and the batch order.

Every side trains on the same host images, in the same mini-batches, in the
order :func:`backend_mlp.training.train` draws them (``training.batch_indices``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import numpy as np

from ..batchnorm import BatchNormConfig
from ..training import batch_indices

REPORT_DIMS = (784, 20, 7, 5, 10)
N_TRAIN = 48_000
N_TEST = 10_000
N_FEATURES = 784
N_CLASSES = 10
LEARNING_RATE = 0.009
DTYPES = ("float32", "float64")
#: steps after which every side's parameters are compared (before chaotic growth of rounding
#: differences: batch norm on 5-unit layers amplifies float32 rounding within ~20 steps)
CHECK_STEPS = 3
#: the sides' labels, the keys of their entries in the JSON records: backend_mlp's paths ...
TRAIN, FUNCTIONAL = "backend_mlp", "backend_mlp functional"
BM_TORCH, BM_TORCH_COMPILE, BM_JAX = "backend_mlp torch", "backend_mlp torch.compile", "backend_mlp jax.jit"
#: ... and the peers
TORCH, COMPILE, JAX, HAND_NUMPY, SKLEARN = "torch", "torch.compile", "jax.jit", "numpy by hand", "sklearn"
JAX_SCAN = "jax.jit scan"
BACKEND_MLP_PATHS = (TRAIN, BM_TORCH, BM_TORCH_COMPILE, BM_JAX)
#: the peers a backend_mlp path must match ("fastest peer"); scikit-learn and the hand-written NumPy step are
#: reported beside them (the NumPy step is the eager path's yardstick).  The hand-written scan is there
#: because backend_mlp's compiled run on JAX fuses steps the same way: it is the peer that does as much
FAST_PEERS = (TORCH, COMPILE, JAX, JAX_SCAN)


@dataclass(frozen=True)
class Workload:
    """One network at one batch size (the dtype is chosen separately)."""

    name: str
    layer_dims: tuple[int, ...]
    batch_size: int
    batchnorm: bool = False

    @property
    def bn_config(self) -> BatchNormConfig | None:
        return BatchNormConfig() if self.batchnorm else None


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("report", REPORT_DIMS, 256),
        Workload("report-bn", REPORT_DIMS, 256, batchnorm=True),
        Workload("wide512-b256", (784, 512, 512, 10), 256),
        Workload("wide512-b1024", (784, 512, 512, 10), 1024),
        Workload("wide2048-b256", (784, 2048, 2048, 10), 256),
        Workload("wide2048-b1024", (784, 2048, 2048, 10), 1024),
    )
}
DEFAULT_EPOCH_WORKLOADS = ("report", "report-bn")
QUICK_WORKLOADS = ("report", "report-bn", "wide512-b256")


@dataclass
class HostData:
    """Host arrays shared by all sides: ``(m, 784)`` images in [0, 1] and integer labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def cast(self, dtype: str) -> HostData:
        """The images in ``dtype`` (no copy when they already are)."""
        return HostData(
            self.train_images.astype(dtype, copy=False),
            self.train_labels,
            self.test_images.astype(dtype, copy=False),
            self.test_labels,
            self.source,
        )


def synthetic_data(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST) -> HostData:
    """MNIST-sized random data: uniform [0, 1) pixels, labels from a random linear map (learnable)."""
    rng = np.random.default_rng((seed, 2))
    images = rng.random((n_train + n_test, N_FEATURES), dtype=np.float32)
    weights = rng.standard_normal((N_FEATURES, N_CLASSES)).astype(np.float32)
    labels = np.argmax((images - 0.5) @ weights, axis=1).astype(np.int64)
    return HostData(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], f"synthetic (seed {seed})")


def mnist_data(data_dir: str | None) -> HostData:
    """Real MNIST split as in the report (80/20, split seed 0): 48,000 train, 10,000 test."""
    from ..data import load_mnist, split_train_validation

    mnist = load_mnist(data_dir, dtype="float32")
    tr_x, tr_y, _, _ = split_train_validation(mnist.train_images, mnist.train_labels, 0.2, seed=0)
    return HostData(tr_x, tr_y, mnist.test_images, mnist.test_labels, f"MNIST ({data_dir or 'default location'})")


def step_batches(n_samples: int, batch_size: int, seed: int, n_steps: int) -> list[np.ndarray]:
    """The host index arrays of the first ``n_steps`` steps, as :func:`~backend_mlp.training.train` visits them."""
    return list(islice(batch_indices(n_samples, batch_size, seed), n_steps))


@dataclass(frozen=True)
class BlockIndices:
    """All of a block's batch indices in one host array; step ``i`` uses ``flat[offsets[i]:offsets[i + 1]]``.

    Sides upload ``flat`` once per timed block (the training loop uploads once
    per epoch) and slice it per step.
    """

    flat: np.ndarray
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, n_samples: int, batch_size: int, seed: int, n_steps: int) -> BlockIndices:
        batches = step_batches(n_samples, batch_size, seed, n_steps)
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in batches])])
        return cls(np.concatenate(batches), tuple(int(o) for o in offsets))

    @property
    def n_steps(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_samples(self) -> int:
        """Samples processed by the block (the sum of its batch sizes)."""
        return self.offsets[-1]

    def spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` into :attr:`flat` of every step."""
        return list(zip(self.offsets[:-1], self.offsets[1:], strict=True))


def samples_in_steps(n_samples: int, batch_size: int, n_steps: int) -> int:
    """Samples the first ``n_steps`` steps process (every epoch's last batch may be smaller)."""
    per_epoch = math.ceil(n_samples / batch_size)
    epochs, rest = divmod(n_steps, per_epoch)
    return epochs * n_samples + min(rest * batch_size, n_samples)
