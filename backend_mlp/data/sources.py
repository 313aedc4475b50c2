"""Named data sets: what files make them up, how to verify them and where to download them.

A :class:`DatasetSpec` describes one image-classification data set distributed
as four IDX files (train images, train labels, test images, test labels):
their names by role, the SHA-256 of each file's UNCOMPRESSED content, the base
URLs of mirrors that serve ``NAME.gz``, the class names and the published
image shape.  :data:`MNIST` is the one defined here; a data set in the same
format (Fashion-MNIST, KMNIST, ...) is one more instance, loaded by the same
code (:func:`backend_mlp.data.load_dataset`).

A spec without checksums, mirrors or class names describes a bare folder of
IDX files: nothing is downloaded or verified, and the number of classes is
read from the labels (largest label + 1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import InputValidationError
from .idx import IMAGES_MAGIC, LABELS_MAGIC

__all__ = ["ROLES", "DatasetSpec", "MNIST"]

#: The roles of a data set's four files, in this order.
ROLES: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One named data set of four IDX files (frozen; compare specs by ``name``).

    ``name``: short identifier, also the cache sub-folder (``~/.cache/backend_mlp/<name>``);
    ``title``: the name used in messages (``"MNIST"``);
    ``files``: role -> file name (uncompressed spelling), for every role in :data:`ROLES`;
    ``sha256``: file name -> SHA-256 hex digest of the uncompressed content (files
    without an entry are only checked for a valid IDX structure when downloaded);
    ``mirrors``: base URLs tried in turn, each serving ``NAME.gz``;
    ``class_names``: one name per class label 0..k-1 (empty: read k from the labels);
    ``image_shape``: the published ``(rows, cols)`` (informative: the loader takes the
    shape from the files themselves).
    """

    name: str
    title: str
    files: Mapping[str, str]
    sha256: Mapping[str, str] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise InputValidationError(
                f"name: received {self.name!r}; expected a short identifier usable as a folder name, e.g. 'mnist'"
            )
        if not isinstance(self.title, str) or not self.title:
            raise InputValidationError(f"title: received {self.title!r}; expected a non-empty string, e.g. 'MNIST'")
        files = dict(self.files) if isinstance(self.files, Mapping) else None
        if files is None or set(files) != set(ROLES):
            got = sorted(files) if files is not None else type(self.files).__name__
            raise InputValidationError(
                f"files: received {got}; expected a mapping with exactly the roles {', '.join(ROLES)}"
            )
        names = [files[role] for role in ROLES]
        if not all(isinstance(n, str) and n and "/" not in n for n in names) or len(set(names)) != len(names):
            raise InputValidationError(
                f"files: received file names {names}; expected four different non-empty file names without '/'"
            )
        sha = dict(self.sha256) if isinstance(self.sha256, Mapping) else None
        if sha is None or not set(sha) <= set(names) or not all(
            isinstance(d, str) and _SHA256.fullmatch(d) for d in sha.values()
        ):
            raise InputValidationError(
                f"sha256: received {self.sha256!r}; expected a mapping from some of the file names {names} "
                "to 64-digit hexadecimal SHA-256 digests of their uncompressed content"
            )
        mirrors = (self.mirrors,) if isinstance(self.mirrors, str) else tuple(self.mirrors)
        if not all(isinstance(m, str) and m for m in mirrors):
            raise InputValidationError(
                f"mirrors: received {self.mirrors!r}; expected a sequence of base URLs such as "
                "'https://example.org/mnist/'"
            )
        class_names = tuple(self.class_names)
        if not all(isinstance(c, str) for c in class_names) or len(set(class_names)) != len(class_names):
            raise InputValidationError(
                f"class_names: received {self.class_names!r}; expected distinct strings, one per class label 0..k-1"
            )
        shape = self.image_shape
        if shape is not None:
            shape = tuple(shape)
            if len(shape) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
                raise InputValidationError(
                    f"image_shape: received {self.image_shape!r}; expected (rows, cols) of positive integers, or None"
                )
        object.__setattr__(self, "files", MappingProxyType(files))
        object.__setattr__(self, "sha256", MappingProxyType({k: v.lower() for k, v in sha.items()}))
        object.__setattr__(self, "mirrors", mirrors)
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "image_shape", shape)

    @property
    def file_names(self) -> tuple[str, ...]:
        """The four file names in :data:`ROLES` order."""
        return tuple(self.files[role] for role in ROLES)

    @property
    def n_classes(self) -> int | None:
        """Number of classes from ``class_names``; None when the labels decide."""
        return len(self.class_names) or None

    def magic(self, file_name: str) -> int:
        """The IDX magic number ``file_name`` must have (images 2051, labels 2049)."""
        for role in ROLES:
            if self.files[role] == file_name:
                return IMAGES_MAGIC if role.endswith("images") else LABELS_MAGIC
        raise InputValidationError(
            f"file_name: received {file_name!r}; expected one of the files of {self.title}: {list(self.file_names)}"
        )

    def __repr__(self) -> str:
        return f"DatasetSpec(name={self.name!r}, files={list(self.file_names)}, n_classes={self.n_classes})"


#: The MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 + 10,000 28x28 grey images, digits 0..9.
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files={
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    },
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    class_names=tuple(str(d) for d in range(10)),
    image_shape=(28, 28),
)
