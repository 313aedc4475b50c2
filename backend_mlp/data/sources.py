"""Named data sets: what files make them up, how to verify them and where to download them.

A :class:`DatasetSpec` describes one image-classification data set distributed
as four IDX files (train images, train labels, test images, test labels):
their names by role, the SHA-256 of each file's UNCOMPRESSED content and/or of
the ``.gz`` file its mirrors serve, the base URLs of mirrors that serve
``NAME.gz``, the class names and the published image shape.  :data:`MNIST`,
:data:`FASHION_MNIST` and :data:`KMNIST` are defined here and registered in
:data:`DATASETS` (:func:`get_dataset` looks them up by name); all are loaded by
the same code (:func:`backend_mlp.data.load_dataset`).

A spec without checksums, mirrors or class names describes a bare folder of
IDX files (:func:`folder_spec`): nothing is downloaded or verified, and the
number of classes is read from the labels (largest label + 1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InputValidationError
from .idx import IMAGES_MAGIC, LABELS_MAGIC

__all__ = [
    "ROLES", "DATASETS", "DatasetSpec", "FASHION_MNIST", "KMNIST", "MNIST", "folder_spec", "get_dataset", "recognise",
]

#: The roles of a data set's four files, in this order.
ROLES: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One named data set of four IDX files (frozen; compare specs by ``name``).

    ``name``: short identifier, also the cache sub-folder (``$BACKEND_MLP_CACHE/<name>`` or
    ``~/.cache/backend_mlp/<name>``);
    ``title``: the name used in messages (``"MNIST"``);
    ``files``: role -> file name (uncompressed spelling), for every role in :data:`ROLES`;
    ``sha256``: file name -> SHA-256 hex digest of the uncompressed content;
    ``sha256_gz``: file name -> SHA-256 hex digest of the ``NAME.gz`` bytes the mirrors
    serve (for data sets whose publishers list only those).  A download is verified
    against ``sha256`` when it has an entry, else against ``sha256_gz``; a file with
    neither is only checked for a valid IDX structure;
    ``mirrors``: base URLs tried in turn, each serving ``NAME.gz``;
    ``class_names``: one name per class label 0..k-1 (empty: k is one more than the
    largest training label);
    ``image_shape``: the published ``(rows, cols)``: files of another size are refused
    as this data set (``None``: any size, read from the files).
    """

    name: str
    title: str
    files: Mapping[str, str]
    sha256: Mapping[str, str] = field(default_factory=dict)
    sha256_gz: Mapping[str, str] = field(default_factory=dict)
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
        digests = {}
        for arg, what in (("sha256", "their uncompressed content"), ("sha256_gz", "their served .gz files")):
            got = getattr(self, arg)
            sha = dict(got) if isinstance(got, Mapping) else None
            if sha is None or not set(sha) <= set(names) or not all(
                isinstance(d, str) and _SHA256.fullmatch(d) for d in sha.values()
            ):
                raise InputValidationError(
                    f"{arg}: received {got!r}; expected a mapping from some of the file names {names} "
                    f"to 64-digit hexadecimal SHA-256 digests of {what}"
                )
            digests[arg] = MappingProxyType({k: v.lower() for k, v in sha.items()})
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
        object.__setattr__(self, "sha256", digests["sha256"])
        object.__setattr__(self, "sha256_gz", digests["sha256_gz"])
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

# Fashion-MNIST and KMNIST publish no SHA-256 of the uncompressed files that we could find, so their
# downloads are verified against the SHA-256 of the .gz files their mirrors serve, as listed by
# TensorFlow Datasets (github.com/tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt
# and kmnist.txt: "URL  size  sha256" of each .gz).  Cross-check: torchvision's MD5s of the same .gz files
# (github.com/pytorch/vision, torchvision/datasets/mnist.py, classes FashionMNIST and KMNIST), which are
# also the MD5s in the Fashion-MNIST README.  The uncompressed digest of every file loaded is recorded
# in ``ImageData.source``.

#: Fashion-MNIST (Zalando Research; Xiao, Rasul, Vollgraf 2017): 60,000 + 10,000 28x28 grey images of
#: clothing in 10 classes, with MNIST's file names and format.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=MNIST.files,
    sha256_gz={
        # .gz sizes 26,421,880 / 29,515 / 4,422,102 / 5,148 bytes; torchvision MD5s 8d4fb7e6c68d591d4c3dfef9ec88bf0d,
        # 25c81989df183df01b3e8a0aad5dffbe, bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310
        "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    image_shape=(28, 28),
)

#: Kuzushiji-MNIST (ROIS-DS CODH; Clanuwat et al. 2018): 60,000 + 10,000 28x28 grey images of cursive
#: hiragana in 10 classes (romanised as in the data set's classmap: お o, き ki, す su, つ tsu, な na,
#: は ha, ま ma, や ya, れ re, を wo), with MNIST's file names and format.
KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST",
    files=MNIST.files,
    sha256_gz={
        # .gz sizes 18,165,135 / 29,497 / 3,041,136 / 5,120 bytes; torchvision MD5s bdb82020997e1d708af4cf47b453dcf7,
        # e144d726b3acfaa3e44228e80efcd344, 5c965bf0a639b31b8f53240b1b52f4d7, 7320c461ea6c1c855c0b718fb2a4b134
        "train-images-idx3-ubyte": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
    mirrors=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    image_shape=(28, 28),
)

#: The named data sets, by :attr:`DatasetSpec.name` (read-only).
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)})


def get_dataset(name_or_spec: str | DatasetSpec) -> DatasetSpec:
    """The :class:`DatasetSpec` named ``name_or_spec`` in :data:`DATASETS` (case and ``_``/``-`` ignored),
    or ``name_or_spec`` itself when it is a spec."""
    if isinstance(name_or_spec, DatasetSpec):
        return name_or_spec
    key = name_or_spec.strip().lower().replace("_", "-") if isinstance(name_or_spec, str) else None
    if key not in DATASETS:
        raise InputValidationError(
            f"dataset: received {name_or_spec!r}; expected one of {', '.join(map(repr, DATASETS))} "
            "or a DatasetSpec"
        )
    return DATASETS[key]


def recognise(source: Mapping[str, Any]) -> DatasetSpec | None:
    """The registered data set that all four files of ``source`` (:attr:`~backend_mlp.data.loading.ImageData.source`)
    are, by its published digests (of the content, or of the ``.gz`` file), else ``None``."""
    files = source.get("files", {})

    def matches(spec: DatasetSpec, role: str) -> bool:
        entry, name = files.get(role, {}), spec.files[role]
        return (name in spec.sha256 and entry.get("sha256") == spec.sha256[name]) or (
            name in spec.sha256_gz and entry.get("sha256_gz") == spec.sha256_gz[name])

    for spec in DATASETS.values():
        if all(matches(spec, role) for role in ROLES):
            return spec
    return None


def folder_spec(folder: str | os.PathLike[str]) -> DatasetSpec:
    """A bare spec for a folder of the four IDX files under MNIST's names: no checksums, no mirrors, no
    class names (the labels decide), named after the folder (``title`` ``"IDX"``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(folder).expanduser().resolve().name).strip("-.")
    return DatasetSpec(name=name or "idx", title="IDX", files=MNIST.files)
