"""A data set of another image size and class count, end to end: CLI train, predict, the estimator, errors.

The test writes a 14x14, 5-class IDX data set (a bright bar whose row depends on
the class, plus noise), trains on it through ``backend-mlp train`` and through
``MLPClassifier``, predicts with the saved model, and checks the one-line errors
for a label outside the classes and for images of mixed sizes.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from backend_mlp import MLPClassifier
from backend_mlp.cli.main import main
from backend_mlp.data import load_dataset, prepare_splits, write_idx
from backend_mlp.data.sources import folder_spec

SIZE, K = (14, 14), 5


def _images(rng: np.random.Generator, n: int, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    labels = (np.arange(n) % K).astype(np.uint8)
    images = rng.integers(0, 60, (n, *size))
    for i, label in enumerate(labels):
        images[i, 2 * int(label) + 2: 2 * int(label) + 4, 2:12] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(folder: Path, *, size: tuple[int, int] = SIZE, test_size: tuple[int, int] | None = None,
                  bad_label: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, shape in (("train", 500, size), ("t10k", 100, test_size or size)):
        images, labels = _images(rng, n, shape)
        if bad_label is not None and prefix == "t10k":
            labels[7] = bad_label
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def _one_line(err: str, prog: str = "backend-mlp train") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_trains_and_predicts_on_14x14_images_of_5_classes(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("BACKEND_MLP_DATA", raising=False)
    data = write_dataset(tmp_path / "shapes")
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(data), "--hidden", "16", "--optimizer", "momentum", "--lr", "0.05",
            "--batch-size", "40", "--record-every", "10", "--patience", "3", "--out", str(out), "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"]["layer_dims"] == [196, 16, 5]
    assert metrics["dataset"]["image_shape"] == [14, 14] and metrics["dataset"]["class_names"] == list("01234")
    assert metrics["dataset"]["name"] == "idx folder" and metrics["name"].startswith("shapes-h16-momentum")
    assert metrics["test_accuracy"] > 0.9 and sorted(metrics["test_accuracy_per_class"]) == list("01234")
    assert "| class | 0 | 1 | 2 | 3 | 4 |" in (out / "report.md").read_text()
    capsys.readouterr()

    assert main(["predict", str(out / "model.npz"), str(data / "t10k-images-idx3-ubyte.gz")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    splits = prepare_splits(None, data)
    labels = np.argmax(splits.test.Y_rows, axis=1)
    predicted = np.array([int(r["label"]) for r in rows])
    assert len(rows) == 100 and np.mean(predicted == labels) == pytest.approx(metrics["test_accuracy"])
    assert {r["class_name"] for r in rows} <= set("01234")

    clf = MLPClassifier.load(out / "model.npz")  # the CLI's model file in the estimator
    assert clf.classes_.tolist() == list(range(5)) and clf.n_features_in_ == 196
    np.testing.assert_array_equal(clf.predict(splits.test.X_rows), predicted)


def test_estimator_trains_on_the_same_data_set(tmp_path: Path) -> None:
    data = load_dataset(folder_spec(tmp_path), write_dataset(tmp_path / "shapes"))
    clf = MLPClassifier(hidden_layer_sizes=(16,), optimizer="adam", learning_rate=0.01, batch_size=40,
                        record_every=10, patience=3).fit(data.train_images, data.train_labels)
    assert clf.layer_dims_ == (196, 16, 5) and clf.classes_.tolist() == list(range(5))
    assert clf.score(data.test_images, data.test_labels) > 0.9


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("bad_label", ["test labels", "outside 0..9", "first value 12 at index 7"]),
        ("stray_label", ["test labels", "outside 0..4", "first value 7 at index 7", "classes of the training labels"]),
        ("mixed_sizes", ["14x14", "12x12", "same image size"]),
        ("other_size", ["received 14x14 images; expected 28x28", "Kuzushiji-MNIST"]),
    ],
)
def test_bad_data_is_one_line(tmp_path: Path, capsys, kind: str, words: list[str]) -> None:
    data, extra = {  # a named data set's class count and image size decide; in a bare folder, the training data's
        "bad_label": lambda d: (write_dataset(d, size=(28, 28), bad_label=12), ["--dataset", "kmnist"]),
        "stray_label": lambda d: (write_dataset(d, bad_label=7), []),
        "mixed_sizes": lambda d: (write_dataset(d, test_size=(12, 12)), []),
        "other_size": lambda d: (write_dataset(d), ["--dataset", "kmnist"]),
    }[kind](tmp_path / "d")
    assert main(["train", "--data-dir", str(data), *extra, "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    for word in words:
        assert word in line, line
    assert not (tmp_path / "out").exists()


def test_files_that_differ_from_the_published_ones_are_noted(tmp_path: Path, capsys) -> None:
    data = write_dataset(tmp_path / "d", size=(28, 28))
    argv = ["train", "--dataset", "kmnist", "--data-dir", str(data), "--max-steps", "20", "--batch-size", "50",
            "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "note: train-images-idx3-ubyte.gz" in err and "differ from the published" in err
    assert "**differs**" in (tmp_path / "run" / "report.md").read_text()
