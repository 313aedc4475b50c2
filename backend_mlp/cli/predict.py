"""``backend-mlp predict``: label images with a saved model and write them as CSV.

MODEL is a ``model.npz`` written by ``backend-mlp train`` (or
:func:`backend_mlp.checkpoint.save_model`) or by :meth:`MLPClassifier.save
<backend_mlp.MLPClassifier.save>`.  INPUT is an IDX images file (raw or ``.gz``,
uint8 ``(n, rows, cols)`` as MNIST's) or a folder of ``.png`` files (RGB(A) made
grey by averaging the colour channels).  Pixels are scaled as the training data
is (uint8 / 255).  Every image must have the model's image shape (the file's
``extra["image_shape"]``; else a square of the model's number of inputs).

The CSV has the columns ``index`` (``file`` for PNGs), ``label`` (the network's
output index, or the estimator's class label for a file of ``MLPClassifier.save``:
what ``backend_mlp.predict`` / ``MLPClassifier.predict`` return), ``class_name``
(the model's ``extra["class_names"]``, else the label as text) and ``probability``
(of that class).  It goes to ``--out`` (written atomically) or to stdout.
Exit status: 0 done, 1 error, 2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import Backend, resolve_backend, to_numpy
from ..checkpoint import Checkpoint, load_model
from ..errors import CheckpointError, DataError, InputValidationError, UsageError
from ..estimator import classes_from_metadata
from ..validation import short_repr
from . import DefaultsHelpFormatter
from .common import EXIT_OK, Parser, one_line, run_command

PROG = "backend-mlp predict"
DEFAULT_BATCH_SIZE = 10_000


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command-line options (every default shown by ``--help``)."""
    p = Parser(
        prog=prog,
        description="Label images with a saved model and write one CSV row per image "
        "(index or file, label, class_name, probability).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument(
        "model", metavar="MODEL",
        help="model.npz written by 'backend-mlp train' (or save_model) or by MLPClassifier.save",
    )
    p.add_argument(
        "input", metavar="INPUT",
        help="IDX images file (raw or .gz, uint8 (n, rows, cols)) or a folder of .png files",
    )
    p.add_argument("--out", metavar="FILE", default=None,
                   help="CSV file to write, atomically (default: stdout)")
    p.add_argument("--device", default="cpu",
                   help="where to run the network: cpu, gpu, gpu:N, torch, torch:cuda:N, array_api_strict, ...")
    p.add_argument("--batch-size", metavar="N", type=int, default=DEFAULT_BATCH_SIZE,
                   help="images per forward pass (bounds device memory)")
    return p


# --------------------------------------------------------------------------- the model


@dataclass
class Model:
    """What prediction needs from a model file."""

    checkpoint: Checkpoint
    labels: np.ndarray  # one label per network output
    class_names: list[str]
    image_shape: tuple[int, int] | None  # None: any rows x cols with rows * cols == n_features

    @property
    def n_features(self) -> int:
        return int(self.checkpoint.config.layer_dims[0])

    def describe_shape(self) -> str:
        if self.image_shape is None:
            return f"images of {self.n_features} pixels"
        rows, cols = self.image_shape
        return f"{rows}x{cols} images ({self.n_features} pixels)"


def load_predict_model(path: str, device: str | Backend = "cpu") -> Model:
    """Load ``path`` (a model of ``backend-mlp train``, ``save_model`` or ``MLPClassifier.save``) for prediction."""
    ckpt = load_model(path, device)
    extra = ckpt.extra or {}
    dims = ckpt.config.layer_dims
    k = int(dims[-1])
    if "classes" in extra:  # MLPClassifier.save: its labels are classes_
        labels = classes_from_metadata(path, extra, k)  # checked before any conversion (no dtype bombs)
    else:
        labels = np.arange(k, dtype=np.int64)
    names = extra.get("class_names")
    if names is None:
        class_names = [str(x) for x in labels.tolist()]
    elif isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
        class_names = list(names)
    else:
        raise CheckpointError(
            f"{path}: the metadata's class_names are {short_repr(names)}; expected {k} strings, one per output of "
            "the network"
        )
    return Model(ckpt, labels, class_names, _image_shape(path, extra.get("image_shape"), int(dims[0])))


def _image_shape(path: str, value: Any, n_features: int) -> tuple[int, int] | None:
    if value is not None:
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        )
        if not ok or value[0] * value[1] != n_features:
            raise CheckpointError(
                f"{path}: the metadata's image_shape is {value!r}; expected [rows, cols] with rows * cols equal to "
                f"the network's {n_features} inputs"
            )
        return int(value[0]), int(value[1])
    side = math.isqrt(n_features)
    return (side, side) if side * side == n_features else None


def _check_size(model: Model, shape: tuple[int, ...], source: str, what: str = "images") -> None:
    rows, cols = shape
    fits = (rows, cols) == model.image_shape if model.image_shape else rows * cols == model.n_features
    if not fits:
        raise InputValidationError(
            f"{source}: received {what} of {rows}x{cols} ({rows * cols} pixels); the model expects "
            f"{model.describe_shape()}"
        )


# --------------------------------------------------------------------------- the images


def read_idx_images(path: Path, model: Model, dtype: str) -> np.ndarray:
    """``(n, n_features)`` in ``dtype``, scaled to [0, 1] as the training data is (uint8 / 255)."""
    from ..data.idx import IMAGES_MAGIC, read_idx

    images = read_idx(path, expected_magic=IMAGES_MAGIC)
    n, rows, cols = images.shape
    _check_size(model, (rows, cols), f"INPUT {path}")
    flat = images.reshape(n, rows * cols).astype(dtype)
    flat /= 255
    return flat


def png_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise UsageError(f"INPUT {folder}: the folder holds no .png files; expected PNG images or an IDX file")
    return files


def read_png(path: Path) -> tuple[np.ndarray, int]:
    """A grey image ``(rows, cols)`` as pixel values and their full scale (255 for 8-bit PNGs).

    Colour channels are averaged, alpha ignored; ``values / scale`` is in [0, 1]
    and equals the training data's ``uint8 / 255`` for 8-bit images.
    """
    import matplotlib.image

    try:
        image = np.asarray(matplotlib.image.imread(path))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL reports bad files as OSError / SyntaxError
        raise DataError(f"INPUT {path}: cannot read the PNG image ({one_line(exc)}); expected a PNG file") from None
    if image.dtype.kind in "ui":
        scale = int(np.iinfo(image.dtype).max)
        values = image.astype(np.float64)
    else:  # matplotlib gives float32 in [0, 1]: value / 255 for 8-bit PNGs, value / 65535 for 16-bit ones
        scale = 255
        values = image.astype(np.float64) * 255
        eight_bit = np.round(values)
        if np.max(np.abs(eight_bit - values), initial=0.0) < 1e-3:
            values = eight_bit
        else:
            scale, values = 65535, np.round(image.astype(np.float64) * 65535)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        values = np.mean(values[:, :, :3], axis=2)
    elif values.ndim == 3 and values.shape[2] in (1, 2):
        values = values[:, :, 0]
    if values.ndim != 2:
        raise DataError(f"INPUT {path}: image array of shape {image.shape}; expected a grey, RGB or RGBA image")
    return values, scale


def read_png_folder(folder: Path, model: Model, dtype: str) -> tuple[np.ndarray, list[Path]]:
    """``(n, n_features)`` in ``dtype`` scaled to [0, 1], one row per ``.png`` file (sorted by name), and the files."""
    files = png_files(folder)
    X = np.empty((len(files), model.n_features), dtype=dtype)
    for i, f in enumerate(files):
        values, scale = read_png(f)
        _check_size(model, values.shape, f"INPUT {f}", "an image")
        X[i] = values.reshape(-1).astype(dtype) / np.asarray(scale, dtype=dtype)
    return X, files


# --------------------------------------------------------------------------- prediction


def predict_rows(model: Model, X: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Output indices ``(n,)`` and their probabilities ``(n,)`` for ``X`` (n, n_features) on the model's device."""
    from ..backends import backend_of
    from ..network import predict_proba

    ckpt = model.checkpoint
    params = ckpt.parameters
    backend = backend_of(next(iter(params.values())))
    index_parts, prob_parts = [], []
    with backend.device_context():  # CuPy: kernels run on the current GPU
        for start in range(0, X.shape[0], batch_size):
            chunk = backend.asarray(np.ascontiguousarray(X[start : start + batch_size].T))
            AL = to_numpy(predict_proba(chunk, params, ckpt.config.batchnorm or False, ckpt.bn_state))
            index = np.argmax(AL, axis=0)
            index_parts.append(index)
            prob_parts.append(AL[index, np.arange(AL.shape[1])])
    if not index_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(index_parts), np.concatenate(prob_parts)


def format_csv(model: Model, index: np.ndarray, probability: np.ndarray, files: list[Path] | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file" if files is not None else "index", "label", "class_name", "probability"])
    for i, (k, p) in enumerate(zip(index.tolist(), probability.tolist(), strict=True)):
        key = files[i].name if files is not None else i
        writer.writerow([key, model.labels[k].item(), model.class_names[k], f"{p:.6f}"])
    return buffer.getvalue()


# --------------------------------------------------------------------------- the command


def _run(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.batch_size <= 0:
        raise UsageError(f"argument --batch-size: received {args.batch_size}; expected a positive integer")
    source = Path(args.input)
    if not source.exists():
        raise UsageError(f"INPUT {source}: no such file or folder; expected an IDX images file or a folder of PNGs")
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"argument --out: the folder {out.parent} does not exist")
    model = load_predict_model(args.model, resolve_backend(args.device))
    files = None
    if source.is_dir():
        X, files = read_png_folder(source, model, model.checkpoint.dtype)
    else:
        X = read_idx_images(source, model, model.checkpoint.dtype)
    index, probability = predict_rows(model, X, args.batch_size)
    text = format_csv(model, index, probability, files)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from ..files import atomic_write_bytes

        atomic_write_bytes(out, text.encode("utf-8"))
        print(f"wrote {len(index)} predictions to {out}", file=sys.stderr, flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Entry point: returns the exit status (see :mod:`backend_mlp.cli.common`); ``prog`` names it in messages."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return run_command(prog, lambda: _run(args_list, prog), args_list)


if __name__ == "__main__":
    sys.exit(main())
