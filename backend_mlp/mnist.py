"""MNIST: find, download, verify and load the four standard files.

Where the files are read from, in order:

1. the ``data_dir`` argument (the CLI's ``--data-dir``),
2. the environment variable ``BACKEND_MLP_DATA``,
3. the cache folder :func:`default_cache_dir`, downloading missing files into it.

An explicit folder (1 or 2) is never written to; each file may be there gzipped
(``NAME.gz``) or raw (``NAME``, or the ``train-images.idx3-ubyte`` spelling).
Downloads are checked against the SHA-256 of the uncompressed content and
written atomically, stored gzipped as ``NAME.gz`` in the cache.

Arrays returned here are host NumPy arrays with one sample per ROW
(``(m, 784)`` images); :func:`one_hot` returns ``(n_classes, m)``, the model's
column-per-sample convention.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import array_api_compat
import numpy as np

from .backends import resolve_dtype_name, to_numpy
from .errors import ChecksumError, DataError, DownloadError, InputValidationError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, atomic_write_bytes, parse_idx, read_idx_bytes

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "DEFAULT_MIRRORS",
    "DATA_ENV",
    "CACHE_ENV",
    "MnistData",
    "default_cache_dir",
    "locate_mnist",
    "load_mnist",
    "one_hot",
    "split_train_validation",
]

#: The four standard MNIST file names (uncompressed spelling).
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the UNCOMPRESSED content of each file.
MNIST_SHA256: Mapping[str, str] = MappingProxyType(
    {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }
)

#: Base URLs tried in turn; each serves ``NAME.gz``.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Environment variable naming a folder that holds the MNIST files.
DATA_ENV = "BACKEND_MLP_DATA"
#: Environment variable overriding the download cache folder.
CACHE_ENV = "BACKEND_MLP_CACHE"

_MAGIC = {name: (IMAGES_MAGIC if "images" in name else LABELS_MAGIC) for name in MNIST_FILES}
_N_CLASSES = 10

#: ``progress(file_name, bytes_received, total_bytes_or_None)``, called while downloading.
ProgressCallback = Callable[[str, int, "int | None"], None]

_PROVIDE_HINT = (
    "To use MNIST files you already have, pass --data-dir FOLDER (data_dir=FOLDER in Python) "
    f"or set the environment variable {DATA_ENV}=FOLDER, where FOLDER holds the four MNIST files "
    "(gzipped NAME.gz or raw NAME)."
)


def default_cache_dir() -> Path:
    """The download cache: ``$BACKEND_MLP_CACHE``, else ``$XDG_CACHE_HOME/backend_mlp/mnist``,
    else ``~/.cache/backend_mlp/mnist``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "backend_mlp" / "mnist"


def _spellings(name: str) -> list[str]:
    """Accepted file names for ``name``: raw first (fastest to read), then gzipped."""
    dotted = name.replace("-idx", ".idx")
    out = [name, dotted, name + ".gz", dotted + ".gz"]
    return list(dict.fromkeys(out))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in _spellings(name):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _explicit_folder(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir argument / --data-dir"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), f"environment variable {DATA_ENV}"
    return None


def locate_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Paths of the four MNIST files, keyed by the names in :data:`MNIST_FILES`.

    Looks in ``data_dir``, else ``$BACKEND_MLP_DATA``, else the cache folder
    (``cache_dir`` or :func:`default_cache_dir`).  Only the cache is ever written
    to: with ``download=True`` missing files are fetched from ``mirrors`` (default
    :data:`DEFAULT_MIRRORS`) and verified against ``checksums`` (default
    :data:`MNIST_SHA256`; a name absent from the mapping is only checked for a
    valid IDX structure).  Raises :class:`DataError` (missing files),
    :class:`DownloadError` (no mirror reachable) or :class:`ChecksumError`.
    """
    explicit = _explicit_folder(data_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if explicit is not None:
        folder, source = explicit
        return _locate_explicit(folder, source, cache)

    found = {name: _find(cache, name) for name in MNIST_FILES}
    missing = [name for name, p in found.items() if p is None]
    if missing and not download:
        raise DataError(
            f"MNIST files missing from the cache folder {cache}: {', '.join(missing)}; "
            f"download=False, so nothing was downloaded. Allow the download, or: {_PROVIDE_HINT}"
        )
    if missing:
        mirror_list = _check_mirrors(mirrors)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InputValidationError(
                f"timeout: received {timeout!r}; expected a positive number of seconds"
            )
        sums = MNIST_SHA256 if checksums is None else checksums
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create the MNIST cache folder {cache}: {exc.strerror or exc}. "
                f"Set {CACHE_ENV} to a writable folder, or: {_PROVIDE_HINT}"
            ) from None
        for name in missing:
            found[name] = _download(name, cache, mirror_list, sums.get(name), timeout, progress)
    return {name: p for name, p in found.items() if p is not None}


def _locate_explicit(folder: Path, source: str, cache: Path) -> dict[str, Path]:
    how = (
        f"Put the files there (each as NAME.gz, NAME, or NAME with '.idx' for '-idx'), point "
        f"--data-dir / {DATA_ENV} at a folder that has them, or leave both unset to download "
        f"them automatically into the cache folder {cache}."
    )
    if not folder.exists():
        raise DataError(f"MNIST data folder {folder} (from the {source}) does not exist. {how}")
    if not folder.is_dir():
        raise DataError(f"MNIST data folder {folder} (from the {source}) is not a folder. {how}")
    found = {name: _find(folder, name) for name in MNIST_FILES}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"MNIST data folder {folder} (from the {source}) is missing {len(missing)} of "
            f"{len(MNIST_FILES)} files: {', '.join(missing)}. {how}"
        )
    return {name: p for name, p in found.items() if p is not None}


def _check_mirrors(mirrors: Sequence[str] | None) -> tuple[str, ...]:
    if mirrors is None:
        return DEFAULT_MIRRORS
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    out = tuple(mirrors)
    if not out or not all(isinstance(m, str) and m for m in out):
        raise InputValidationError(
            f"mirrors: received {mirrors!r}; expected a non-empty sequence of base URLs "
            "such as 'https://example.org/mnist/'"
        )
    return out


def _fetch(url: str, name: str, timeout: float, progress: ProgressCallback | None) -> bytes:
    # A fresh opener per call so proxy settings are read from the environment now.
    opener = urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": "backend_mlp"})
    with opener.open(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        chunks: list[bytes] = []
        received = 0
        while True:
            chunk = response.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
            if progress is not None:
                progress(name, received, total)
    return b"".join(chunks)


def _download(
    name: str,
    folder: Path,
    mirrors: tuple[str, ...],
    expected_sha256: str | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> Path:
    """Fetch ``name`` from the first mirror that serves good data; store it as ``folder/NAME.gz``."""
    attempts: list[str] = []
    bad_data = False
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        try:
            payload = _fetch(url, name, timeout, progress)
        except urllib.error.HTTPError as exc:
            exc.close()
            attempts.append(f"{url} (HTTP {exc.code} {exc.reason})")
            continue
        except urllib.error.URLError as exc:
            attempts.append(f"{url} ({exc.reason})")
            continue
        except (http.client.HTTPException, OSError, ValueError) as exc:
            attempts.append(f"{url} ({type(exc).__name__}: {exc})")
            continue

        is_gzip = payload.startswith(b"\x1f\x8b")
        try:
            content = gzip.decompress(payload) if is_gzip else payload
        except (EOFError, OSError, ValueError) as exc:  # gzip.BadGzipFile, zlib.error
            bad_data = True
            attempts.append(f"{url} (damaged gzip data: {exc})")
            continue
        digest = hashlib.sha256(content).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            bad_data = True
            attempts.append(f"{url} (SHA-256 mismatch: got {digest}, expected {expected_sha256})")
            continue
        if expected_sha256 is None:
            try:
                parse_idx(content, source=url, expected_magic=_MAGIC.get(name))
            except DataError as exc:
                bad_data = True
                attempts.append(f"{url} (not a valid IDX file: {exc})")
                continue
        target = folder / (name + ".gz")
        atomic_write_bytes(target, payload if is_gzip else gzip.compress(content, mtime=0))
        return target

    tried = "; ".join(attempts)
    if bad_data:
        raise ChecksumError(
            f"could not get a valid copy of MNIST file {name}: every mirror either failed or "
            f"served data that did not verify (expected SHA-256 {expected_sha256} of the "
            f"uncompressed file). Mirrors tried: {tried}. Last error: {attempts[-1]}. "
            f"Nothing was written to {folder}. {_PROVIDE_HINT}"
        )
    raise DownloadError(
        f"could not download MNIST file {name} from any of {len(mirrors)} mirrors (no network "
        f"access, or the mirrors are down). Mirrors tried: {tried}. Last error: {attempts[-1]}. "
        f"{_PROVIDE_HINT}"
    )


@dataclass(frozen=True, eq=False, repr=False)
class MnistData:
    """MNIST as host NumPy arrays, one sample per row.

    ``train_images``: ``(m_train, rows*cols)`` floats in [0, 1];
    ``train_labels``: ``(m_train,)`` int64 in 0..9; likewise ``test_images`` and
    ``test_labels``.  ``image_shape`` is ``(rows, cols)`` (``(28, 28)`` for MNIST)
    and ``files`` the paths the data was read from.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, int] = (28, 28)
    files: Mapping[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"MnistData(train={self.train_images.shape}, test={self.test_images.shape}, "
            f"dtype={self.train_images.dtype}, image_shape={self.image_shape})"
        )


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dtype: str = "float64",
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    progress: ProgressCallback | None = None,
) -> MnistData:
    """Load MNIST as an :class:`MnistData` of host arrays (images scaled to [0, 1]).

    Files are found as in :func:`locate_mnist`.  Downloads are always verified;
    files already on disk are verified against ``checksums`` only when it is given
    explicitly.  Raises :class:`DataError` when a file is damaged or the files
    disagree (image count != label count, image sizes differ, labels outside 0..9).
    """
    dtype_name = resolve_dtype_name(dtype)
    paths = locate_mnist(
        data_dir,
        download=download,
        cache_dir=cache_dir,
        mirrors=mirrors,
        checksums=checksums,
        timeout=timeout,
        progress=progress,
    )
    arrays: dict[str, np.ndarray] = {}
    for name in MNIST_FILES:
        path = paths[name]
        content = read_idx_bytes(path)
        expected = None if checksums is None else checksums.get(name)
        if expected is not None:
            digest = hashlib.sha256(content).hexdigest()
            if digest != expected.lower():
                raise ChecksumError(
                    f"MNIST file {path} has SHA-256 {digest} (of the uncompressed content); "
                    f"expected {expected}. The file is damaged or not the expected data: replace it."
                )
        arrays[name] = parse_idx(content, source=str(path), expected_magic=_MAGIC[name])

    splits = {}
    image_shape: tuple[int, int] | None = None
    for split, images_name, labels_name in (
        ("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        images, labels = arrays[images_name], arrays[labels_name]
        n_images, rows, cols = images.shape
        if n_images == 0 or rows == 0 or cols == 0:
            raise DataError(
                f"{split} images {paths[images_name]} have shape {images.shape}; expected at least "
                "one non-empty image"
            )
        if n_images != labels.shape[0]:
            raise DataError(
                f"{split} split: {paths[images_name]} has {n_images} images but "
                f"{paths[labels_name]} has {labels.shape[0]} labels; expected equal counts"
            )
        if image_shape is None:
            image_shape = (rows, cols)
        elif (rows, cols) != image_shape:
            raise DataError(
                f"{split} images {paths[images_name]} are {rows}x{cols} but the train images are "
                f"{image_shape[0]}x{image_shape[1]}; expected the same image size in both splits"
            )
        bad = np.flatnonzero(labels >= _N_CLASSES)
        if bad.size:
            raise DataError(
                f"{split} labels {paths[labels_name]}: {bad.size} labels outside 0..{_N_CLASSES - 1}, "
                f"first value {int(labels[bad[0]])} at index {int(bad[0])}; expected digits 0..9"
            )
        flat = images.reshape(n_images, rows * cols).astype(dtype_name)
        flat /= 255
        splits[split] = (flat, labels.astype(np.int64))

    assert image_shape is not None
    return MnistData(
        train_images=splits["train"][0],
        train_labels=splits["train"][1],
        test_images=splits["test"][0],
        test_labels=splits["test"][1],
        image_shape=image_shape,
        files=dict(paths),
    )


def _host(x: Any) -> np.ndarray:
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
        return to_numpy(x)
    return np.asarray(x)


def one_hot(labels: Any, n_classes: int = 10, dtype: str = "float64") -> np.ndarray:
    """One-hot encode integer class labels ``(m,)`` into a host array ``(n_classes, m)``.

    Columns are samples (the library's convention).  Raises
    :class:`InputValidationError` for non-integer labels or labels outside
    ``0..n_classes-1``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise InputValidationError(f"n_classes: received {n_classes!r}; expected a positive integer")
    dtype_name = resolve_dtype_name(dtype)
    arr = _host(labels)
    if arr.ndim != 1:
        raise InputValidationError(
            f"labels: received shape {arr.shape}; expected a 1-D array of class labels (m,)"
        )
    if arr.dtype.kind not in "iu":
        raise InputValidationError(
            f"labels: received dtype {arr.dtype}; expected integer class labels in 0..{n_classes - 1}"
        )
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        raise InputValidationError(
            f"labels: {bad.size} values outside 0..{n_classes - 1}, first {int(arr[bad[0]])} at index "
            f"{int(bad[0])}; expected integers in 0..{n_classes - 1} (n_classes={n_classes})"
        )
    m = arr.shape[0]
    out = np.zeros((int(n_classes), m), dtype=dtype_name)
    out[arr, np.arange(m)] = 1
    return out


def split_train_validation(
    images: Any,
    labels: Any,
    validation_fraction: float = 0.2,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``np.random.default_rng(seed).permutation`` and split off a validation set.

    ``images`` ``(m, ...)`` and ``labels`` ``(m,)`` have one sample per row.
    Returns ``(train_images, train_labels, val_images, val_labels)``; the first
    ``m - round(m * validation_fraction)`` shuffled samples are the training part.
    """
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float, np.floating))
        or not 0 < validation_fraction < 1
    ):
        raise InputValidationError(
            f"validation_fraction: received {validation_fraction!r}; expected a number strictly "
            "between 0 and 1, e.g. 0.2"
        )
    x = _host(images)
    y = _host(labels)
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise InputValidationError(
            f"images/labels: received shapes {x.shape} and {y.shape}; expected (m, ...) and (m,) "
            "with the same number of samples m"
        )
    m = x.shape[0]
    n_val = round(m * float(validation_fraction))
    if n_val < 1 or n_val > m - 1:
        raise InputValidationError(
            f"validation_fraction: {validation_fraction} of {m} samples gives {n_val} validation and "
            f"{m - n_val} training samples; expected at least one in each part"
        )
    order = np.random.default_rng(seed).permutation(m)
    train_idx, val_idx = order[: m - n_val], order[m - n_val :]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]
