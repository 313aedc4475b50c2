"""Loading a data set's four IDX files into host arrays, one sample per ROW.

:func:`load_dataset` loads any :class:`~backend_mlp.data.sources.DatasetSpec`;
:func:`load_mnist` is ``load_dataset(MNIST, ...)``.  Where the files are read
from (see :mod:`backend_mlp.data.download`): the ``data_dir`` argument, else the
folder named by the environment variable ``BACKEND_MLP_DATA``, else the per-user
cache (``~/.cache/backend_mlp/<name>`` or ``$BACKEND_MLP_CACHE``), downloading
and verifying missing files into it.

Images come back as ``(m, rows*cols)`` floats in [0, 1] (``rows*cols`` read from
the files, the same in both splits: 784 for MNIST), labels as ``(m,)`` int64
class indices.  The number of classes K is the spec's (``len(spec.class_names)``)
or, for a spec without class names, the largest label + 1 over train and test;
every label must lie in 0..K-1.  Each file is read once; the SHA-256 of its
uncompressed content is computed on the way and reported in ``ImageData.source``,
and files from the download cache are verified with it every time (see :func:`load_dataset`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import resolve_dtype_name
from ..errors import DataError
from .download import (
    DATA_ENV,
    ProgressCallback,
    _locate,
    cached_file_problem,
    check_digest,
    published_size,
    replace_cached_file,
)
from .idx import parse_idx, read_idx_file
from .sources import MNIST, ROLES, DatasetSpec, recognise

__all__ = ["ImageData", "load_dataset", "load_mnist"]


@dataclass(frozen=True, eq=False, repr=False)
class ImageData:
    """A data set as host NumPy arrays, one sample per row.

    ``train_images``: ``(m_train, rows*cols)`` floats in [0, 1];
    ``train_labels``: ``(m_train,)`` int64 in ``0..n_classes-1``; likewise
    ``test_images`` and ``test_labels``.  ``image_shape`` is ``(rows, cols)`` as
    read from the files, ``files`` the paths the data was read from (file name ->
    path), ``class_names`` one name per class (``n_classes`` of them), and
    ``source`` where the data came from, JSON-ready::

        {"dataset": spec name, or "idx folder" for a bare folder spec, "title": ...,
         "folder": absolute path of the folder the four files were read from,
         "files": {role: {"file": file name on disk, "sha256": of the uncompressed content,
                          "matches_published": bool or None,
                          "sha256_gz": of the file itself, for a gzipped file}, ...}}   # roles: ROLES

    ``matches_published`` is True when the file equals the spec's published digest
    (of the uncompressed content, else, for a spec that publishes only ``.gz``
    digests, of the gzip file itself), False when it differs, None when there is
    none to compare with.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, int]
    files: Mapping[str, Path] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of classes: ``len(class_names)``, else the largest label + 1."""
        if self.class_names:
            return len(self.class_names)
        return int(max(self.train_labels.max(initial=-1), self.test_labels.max(initial=-1))) + 1

    @property
    def n_features(self) -> int:
        """Pixels per image, ``rows * cols``."""
        return int(self.train_images.shape[1])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(train={self.train_images.shape}, test={self.test_images.shape}, "
            f"dtype={self.train_images.dtype}, image_shape={self.image_shape}, n_classes={self.n_classes})"
        )


def load_dataset(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dtype: str = "float64",
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    progress: ProgressCallback | None = None,
) -> ImageData:
    """Load ``spec`` as an :class:`ImageData` of host arrays (images scaled to [0, 1]).

    Files are found as in :func:`~backend_mlp.data.download.locate_dataset`:
    ``data_dir``, else ``$BACKEND_MLP_DATA``, else the cache (downloading into
    it).  Downloads are always verified, and so are files in the cache, every time
    they are loaded: against ``checksums`` (file name -> SHA-256 of the uncompressed
    content; default the spec's), else the spec's digest of the ``.gz`` file; a wrong
    cached file is downloaded again with a warning (refused with ``download=False``).
    Files in a folder you name are verified against ``checksums`` only when it is
    given explicitly (``source`` reports whether they match the spec's digests).
    Files are read within the limits of :mod:`backend_mlp.data.idx` (a size checked
    against the header, 2 GiB at most).  Raises :class:`DataError` when a file is
    unreadable, damaged, too large, present as two different copies, or the files
    disagree (image count != label count, train and test image sizes differ, a label
    outside 0..K-1) and :class:`ChecksumError` for a file that does not match
    ``checksums`` or a wrong cached file that cannot be downloaded again.
    """
    return _load(spec, data_dir, dtype, download, cache_dir, mirrors, checksums, timeout, progress)


def load_mnist(data_dir: str | os.PathLike[str] | None = None, **options: Any) -> ImageData:
    """:func:`load_dataset` for :data:`~backend_mlp.data.sources.MNIST` (same keyword options).

    Images ``(60000, 784)`` and ``(10000, 784)`` floats in [0, 1], labels int64 in 0..9.
    """
    return load_dataset(MNIST, data_dir, **options)


def _load(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None,
    dtype: str,
    download: bool,
    cache_dir: str | os.PathLike[str] | None,
    mirrors: Sequence[str] | None,
    checksums: Mapping[str, str] | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> ImageData:
    dtype_name = resolve_dtype_name(dtype)
    paths, cache = _locate(spec, data_dir, download, cache_dir, mirrors, checksums, timeout, progress)
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        name = spec.files[role]
        # a file that must match a published digest may not declare more than that file's size
        enforced = cache is not None or (checksums is not None and name in checksums)
        limit = published_size(spec, name, checksums) if enforced else None
        content, files[role] = _read(spec, name, paths[name], limit)
        problem = None if cache is None else cached_file_problem(spec, name, files[role], checksums)
        if problem is not None:  # a wrong file in the cache: refused, or downloaded again
            paths[name] = replace_cached_file(spec, name, paths[name], problem, download=download, mirrors=mirrors,
                                              checksums=checksums, timeout=timeout, progress=progress)
            content, files[role] = _read(spec, name, paths[name], limit)
        expected = None if checksums is None else checksums.get(name)
        if expected is not None:
            check_digest(files[role]["sha256"], expected, source=paths[name], title=spec.title)
        # the array uses the buffer read (no copy): reading takes about the file's declared size once
        arrays[name] = parse_idx(content, source=str(paths[name]), expected_magic=spec.magic(name), copy=False)
        del content

    splits: dict[str, tuple[np.ndarray, np.ndarray, Path]] = {}
    image_shape: tuple[int, int] | None = None
    for split in ("train", "test"):
        images_name, labels_name = spec.files[f"{split}_images"], spec.files[f"{split}_labels"]
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
        try:
            flat = images.reshape(n_images, rows * cols).astype(dtype_name)
        except MemoryError:
            need = images.size * np.dtype(dtype_name).itemsize
            raise DataError(
                f"{split} images {paths[images_name]}: {n_images} images of {rows}x{cols} need {need} bytes as "
                f"{dtype_name}, more memory than this process could allocate; use fewer images or more memory"
            ) from None
        flat /= 255
        splits[split] = (flat, labels.astype(np.int64), paths[labels_name])

    class_names = spec.class_names
    classes_of = f"the {len(class_names)} classes of {spec.title}"
    if not class_names:  # a bare folder: the training labels say how many classes there are
        class_names = tuple(str(k) for k in range(1 + int(splits["train"][1].max())))
        classes_of = f"the {len(class_names)} classes of the training labels"
    n_classes = len(class_names)
    for split, (_, labels, path) in splits.items():
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))  # < 0 only for non-ubyte label files
        if bad.size:
            raise DataError(
                f"{split} labels {path}: {bad.size} labels outside 0..{n_classes - 1}, first value "
                f"{int(labels[bad[0]])} at index {int(bad[0])}; expected class indices 0..{n_classes - 1}, "
                f"{classes_of}"
            )
    if spec.image_shape is not None and image_shape != spec.image_shape:
        raise DataError(
            f"{spec.title} images in {paths[spec.files['train_images']].parent}: received {image_shape[0]}x"
            f"{image_shape[1]} images; expected {spec.image_shape[0]}x{spec.image_shape[1]}, the size of "
            f"{spec.title}'s (for other data, pass --data-dir without --dataset)"
        )
    bare = not (spec.sha256 or spec.sha256_gz or spec.mirrors or spec.class_names)
    source = {
        "dataset": "idx folder" if bare else spec.name,
        "title": spec.title,
        "folder": str(paths[spec.file_names[0]].parent.resolve()),
        "files": files,
    }
    other = None if bare else recognise(source)
    if other is not None and other.name != spec.name:
        raise DataError(
            f"the files in {source['folder']} are {other.title} (their SHA-256 digests are {other.title}'s), "
            f"not {spec.title}; pass --data-dir (data_dir=) with the {spec.title} files, put them in a "
            f"sub-folder {spec.name} of ${DATA_ENV}, or unset {DATA_ENV} to download them"
        )

    assert image_shape is not None
    return ImageData(
        train_images=splits["train"][0],
        train_labels=splits["train"][1],
        test_images=splits["test"][0],
        test_labels=splits["test"][1],
        image_shape=image_shape,
        files=dict(paths),
        class_names=class_names,
        source=source,
    )


def _read(
    spec: DatasetSpec, name: str, path: Path, limit: int | None = None
) -> tuple[bytearray | bytes, dict[str, Any]]:
    """The uncompressed content of the file ``name`` at ``path`` (at most ``limit`` bytes, default the
    IDX limit), and its ``source`` entry (digests)."""
    content, gz = read_idx_file(path, what=f"{spec.title} file", limit=limit)
    digest = hashlib.sha256(content).hexdigest()
    gz_digest = None if gz is None else hashlib.sha256(gz).hexdigest()
    published = None  # the uncompressed digest decides when the spec has one, else the .gz digest
    if name in spec.sha256:
        published = digest == spec.sha256[name]
    elif name in spec.sha256_gz and gz_digest is not None:
        published = gz_digest == spec.sha256_gz[name]
    entry: dict[str, Any] = {"file": path.name, "sha256": digest, "matches_published": published}
    if gz_digest is not None:
        entry["sha256_gz"] = gz_digest
    return content, entry
