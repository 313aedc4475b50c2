"""``backend-mlp predict``, and the one model format: CLI model files load into ``MLPClassifier.load``.

A small network (batch norm included, so the running statistics must travel) is
trained here with :class:`MLPClassifier` on 6x5 synthetic images of 3 classes
(a bright band whose row depends on the class) and saved both ways: with
:func:`backend_mlp.save_model` and the metadata ``backend-mlp train`` writes
(``class_names``, ``image_shape``), and with :meth:`MLPClassifier.save`.  The CSV
``predict`` writes must hold exactly the labels ``backend_mlp.predict`` /
``MLPClassifier.predict`` give for the same images, read from IDX files (raw and
gzipped) and from PNG files (grey, RGB, RGBA).  Prediction runs with ``--device``
set to each selected backend; the rest (errors, metadata) is host-only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

import backend_mlp as bm
from backend_mlp import CheckpointError, MLPClassifier
from backend_mlp.cli.predict import main
from backend_mlp.data import write_idx
from backend_mlp.training import TrainingConfig

ROWS, COLS, NAMES = 6, 5, ["circle", "square", "triangle"]


def images_of(rng: np.random.Generator, n: int, rows: int = ROWS, cols: int = COLS) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, rows, cols): noise plus a bright band at row ``2 * label``, and their labels."""
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 70, (n, rows, cols))
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 2, :] += 150
    return np.clip(images, 0, 255).astype(np.uint8), labels


def flat(images: np.ndarray) -> np.ndarray:
    """Scaled as the training data is: uint8 / 255, one row per image."""
    return images.reshape(len(images), -1).astype(np.float64) / 255


@pytest.fixture(scope="module")
def trained() -> MLPClassifier:
    images, labels = images_of(np.random.default_rng(0), 300)
    clf = MLPClassifier((8,), batchnorm=True, learning_rate=0.1, batch_size=16, max_steps=300, record_every=50,
                        early_stopping=False, random_state=0)
    return clf.fit(flat(images), labels)


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    return images_of(np.random.default_rng(1), 40)[0]


@pytest.fixture(scope="module")
def cli_model(trained: MLPClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model file as ``backend-mlp train`` writes it: save_model, class names and image shape in ``extra``."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    return bm.save_model(path, trained.config_, trained.parameters_, trained.bn_state_,
                         extra={"class_names": NAMES, "image_shape": [ROWS, COLS], "section": "4"})


def expected_labels(trained: MLPClassifier, images: np.ndarray) -> np.ndarray:
    labels = bm.to_numpy(bm.predict(flat(images).T, trained.parameters_, trained.config_.batchnorm, trained.bn_state_))
    assert len(set(labels.tolist())) > 1, "the test model predicts a single class: the comparison would be weak"
    return labels


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ----------------------------------------------------------------------------- IDX and PNG input


@pytest.mark.parametrize("name", ["images.idx", "images-idx3-ubyte.gz"])
def test_idx_file_gives_the_labels_of_predict(trained, test_images, cli_model, tmp_path, backend, capsys, name):
    idx = tmp_path / name
    write_idx(idx, test_images)
    out = tmp_path / "predictions.csv"
    status, stdout, err = run([str(cli_model), str(idx), "--out", str(out), "--device", backend.name,
                               "--batch-size", "7"], capsys)
    assert status == 0, err
    assert stdout == "" and err == [f"wrote {len(test_images)} predictions to {out}"]
    rows = read_csv(out.read_text())
    assert list(rows[0]) == ["index", "label", "class_name", "probability"]
    labels = expected_labels(trained, test_images)
    assert [int(r["index"]) for r in rows] == list(range(len(test_images)))
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert [r["class_name"] for r in rows] == [NAMES[k] for k in labels]
    proba = bm.to_numpy(bm.predict_proba(flat(test_images).T, trained.parameters_, True, trained.bn_state_))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba.max(axis=0), atol=1e-6)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporary left


def test_png_folder_gives_the_labels_of_predict(trained, test_images, cli_model, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    images = test_images[:6]
    names = [f"img{i}.png" for i in range(len(images))]
    for i, (image, name) in enumerate(zip(images, names, strict=True)):
        if i == 1:  # RGB with the grey value in every channel
            Image.fromarray(np.stack([image] * 3, axis=2)).save(folder / name)
        elif i == 2:  # RGBA, half transparent: alpha is not a colour
            Image.fromarray(np.dstack([image, image, image, np.full_like(image, 128)])).save(folder / name)
        else:
            Image.fromarray(image).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    status, stdout, err = run([str(cli_model), str(folder)], capsys)  # CSV to stdout
    assert status == 0, err
    rows = read_csv(stdout)
    assert [r["file"] for r in rows] == names
    labels = expected_labels(trained, images)
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert [r["class_name"] for r in rows] == [NAMES[k] for k in labels]
    proba = bm.to_numpy(bm.predict_proba(flat(images).T, trained.parameters_, True, trained.bn_state_))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], proba.max(axis=0), atol=1e-6)


def test_png_colour_channels_are_averaged(trained, cli_model, tmp_path, capsys):
    """An RGB image is predicted as the grey image of its channel means."""
    from PIL import Image

    rng = np.random.default_rng(5)
    grey = images_of(rng, 1)[0][0].astype(np.int64)
    rgb = np.stack([grey, np.clip(grey + 30, 0, 255), np.clip(grey - 30, 0, 255)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    mean = rgb.astype(np.float64).mean(axis=2) / 255
    status, stdout, err = run([str(cli_model), str(tmp_path)], capsys)
    assert status == 0, err
    proba = bm.to_numpy(bm.predict_proba(mean.reshape(-1, 1), trained.parameters_, True, trained.bn_state_))
    row = read_csv(stdout)[0]
    assert int(row["label"]) == int(np.argmax(proba[:, 0]))
    assert float(row["probability"]) == pytest.approx(float(proba.max()), abs=1e-6)


def test_estimator_file_gives_the_labels_of_mlpclassifier_predict(test_images, tmp_path, capsys):
    images, labels = images_of(np.random.default_rng(0), 300)
    names = np.array(["ant", "bee", "cow"])
    clf = MLPClassifier((8,), learning_rate=0.1, batch_size=16, max_steps=300, early_stopping=False)
    clf.fit(flat(images), names[labels])
    model = clf.save(tmp_path / "classifier.npz")
    write_idx(tmp_path / "images.idx", test_images)
    status, stdout, err = run([str(model), str(tmp_path / "images.idx")], capsys)
    assert status == 0, err
    rows = read_csv(stdout)
    expected = clf.predict(flat(test_images))
    assert len(set(expected.tolist())) > 1
    assert [r["label"] for r in rows] == expected.tolist()
    assert [r["class_name"] for r in rows] == expected.tolist()


def test_model_without_metadata_uses_index_names_and_a_square_image(tmp_path, capsys):
    params = bm.initialize_parameters([16, 4, 3], seed=3)
    model = bm.save_model(tmp_path / "plain.npz", TrainingConfig(layer_dims=(16, 4, 3)), params)
    images = np.random.default_rng(2).integers(0, 256, (9, 4, 4)).astype(np.uint8)
    write_idx(tmp_path / "square.idx", images)
    status, stdout, err = run([str(model), str(tmp_path / "square.idx")], capsys)
    assert status == 0, err
    rows = read_csv(stdout)
    labels = bm.predict(flat(images).T, params)
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert [r["class_name"] for r in rows] == [str(k) for k in labels.tolist()]
    # 2x8 has 16 pixels too, but a model without image_shape expects a square
    write_idx(tmp_path / "wide.idx", images.reshape(9, 2, 8))
    status, _, err = run([str(model), str(tmp_path / "wide.idx")], capsys)
    assert status == 2 and len(err) == 1 and "2x8" in err[0] and "4x4" in err[0]


# ----------------------------------------------------------------------------- refusals


def test_wrong_image_size_is_one_line_exit_2(cli_model, tmp_path, capsys):
    from PIL import Image

    write_idx(tmp_path / "small.idx", np.zeros((3, 5, 5), dtype=np.uint8))
    status, stdout, err = run([str(cli_model), str(tmp_path / "small.idx")], capsys)
    assert status == 2 and stdout == ""
    assert len(err) == 1 and err[0].startswith("backend-mlp predict: error: INPUT ")
    assert "small.idx" in err[0] and "5x5" in err[0] and f"{ROWS}x{COLS}" in err[0]

    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(np.zeros((ROWS, COLS), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((COLS, ROWS), dtype=np.uint8)).save(folder / "b.png")  # transposed: same pixels
    out = tmp_path / "never.csv"
    status, _, err = run([str(cli_model), str(folder), "--out", str(out)], capsys)
    assert status == 2 and len(err) == 1
    assert "b.png" in err[0] and f"{COLS}x{ROWS}" in err[0] and f"{ROWS}x{COLS}" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["{model}", "{missing}"], 2, "no such file or folder"),
        (["{model}", "{empty}"], 2, "no .png files"),
        (["{model}", "{idx}", "--batch-size", "0"], 2, "--batch-size"),
        (["{model}", "{idx}", "--batch-size", "x"], 2, "--batch-size"),
        (["{model}", "{idx}", "--out", "{missing}/p.csv"], 2, "--out"),
        (["{model}"], 2, "INPUT"),
        (["{idx}", "{idx}"], 1, "not an .npz file"),
        (["{missing}", "{idx}"], 1, "not found"),
        (["{model}", "{labels}"], 1, "magic number"),
    ],
)
def test_usage_problems_and_failures_are_one_line(cli_model, tmp_path, capsys, args, status, needle):
    (tmp_path / "empty").mkdir()
    write_idx(tmp_path / "images.idx", np.zeros((2, ROWS, COLS), dtype=np.uint8))
    write_idx(tmp_path / "labels.idx", np.zeros(2, dtype=np.uint8))
    names = {"model": cli_model, "missing": tmp_path / "missing", "empty": tmp_path / "empty",
             "idx": tmp_path / "images.idx", "labels": tmp_path / "labels.idx"}
    code, stdout, err = run([a.format(**names) for a in args], capsys)
    assert code == status and stdout == ""
    assert len(err) == 1 and err[0].startswith("backend-mlp predict: error: ") and needle in err[0], err


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option, default in [("--out", "stdout"), ("--device", "cpu"), ("--batch-size", "10000"), ("--debug", "off")]:
        entry = text[text.index(f"  {option}") :].split("\n  -")[0]
        assert f"(default: {default})" in " ".join(entry.split()), entry
    assert "MODEL" in text and "INPUT" in text


# ----------------------------------------------------------------------------- one model format


def test_cli_model_loads_into_mlpclassifier_with_its_class_names(trained, test_images, cli_model):
    clf = MLPClassifier.load(cli_model)
    assert clf.classes_.tolist() == [0, 1, 2] and clf.class_names_ == NAMES  # labels as in the IDX data
    assert clf.n_features_in_ == ROWS * COLS and clf.layer_dims_ == trained.layer_dims_
    assert clf.hidden_layer_sizes == (8,) and clf.batchnorm == trained.config_.batchnorm
    assert clf.learning_rate == 0.1 and clf.batch_size == 16 and clf.max_steps == 300 and clf.device == "cpu"
    labels = expected_labels(trained, test_images)
    np.testing.assert_array_equal(clf.predict(flat(test_images)), labels)
    np.testing.assert_array_equal(clf.predict_proba(flat(test_images)), trained.predict_proba(flat(test_images)))
    # and refits: the hyperparameters came from the file's configuration
    images, labels = images_of(np.random.default_rng(3), 60)
    assert clf.set_params(max_steps=5).fit(flat(images), np.array(NAMES)[labels]).n_steps_ == 5


def test_model_without_class_names_loads_with_integer_classes(tmp_path):
    params = bm.initialize_parameters([4, 3], seed=0)
    path = bm.save_model(tmp_path / "plain.npz", TrainingConfig(layer_dims=(4, 3)), params)
    clf = MLPClassifier.load(path)
    assert clf.classes_.tolist() == [0, 1, 2] and clf.classes_.dtype.kind == "i" and clf.n_features_in_ == 4
    X = np.random.default_rng(0).normal(size=(10, 4))
    np.testing.assert_array_equal(clf.predict(X), bm.predict(X.T, params))


def test_bad_class_names_are_one_checkpoint_error(tmp_path):
    params = bm.initialize_parameters([4, 3], seed=0)
    path = bm.save_model(tmp_path / "bad.npz", TrainingConfig(layer_dims=(4, 3)), params,
                         extra={"class_names": ["a", "b"]})
    with pytest.raises(CheckpointError, match="class_names") as exc:
        MLPClassifier.load(path)
    assert "\n" not in str(exc.value)


def test_estimator_file_of_another_estimator_is_refused(tmp_path):
    params = bm.initialize_parameters([4, 3], seed=0)
    path = bm.save_model(tmp_path / "other.npz", TrainingConfig(layer_dims=(4, 3)), params,
                         extra={"estimator": "SomethingElse", "classes": [0, 1, 2]})
    with pytest.raises(CheckpointError, match="SomethingElse"):
        MLPClassifier.load(path)
