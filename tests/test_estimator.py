"""The scikit-learn style :class:`backend_mlp.MLPClassifier`.

Every estimator that trains is fitted on each selected backend (``backend``
below: conftest's, at module scope so the shared ``fitted`` estimator is
fitted once per backend) and its parameters are checked to live there;
``test_backends_give_the_same_predictions`` compares each backend with NumPy.
Host-only: hyperparameter handling (``get_params``, ``set_params``, clone),
errors raised before anything is placed on a backend, and the save file's
metadata.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from conftest import backend_params, foreign_backend, get_backend

import backend_mlp
from backend_mlp import (
    BackendMLPError,
    BatchNormConfig,
    InputValidationError,
    MLPClassifier,
    NotFittedError,
    backend_of,
    to_numpy,
)
from backend_mlp.estimator import PREDICT_CHUNK  # noqa: F401  (documented knob)
from backend_mlp.training import TrainingResult

N_FEATURES = 20
FAST = {"batch_size": 32, "max_steps": 1500, "record_every": 50, "learning_rate": 0.05}


def make_blobs(n_per_class: int = 80, noise_seed: int = 1, spread: float = 1.0):
    """Three Gaussian blobs in 20 dimensions around fixed, well separated centres."""
    centres = np.random.default_rng(0).standard_normal((3, N_FEATURES)) * 2.0
    rng = np.random.default_rng(noise_seed)
    y = np.repeat(np.arange(3), n_per_class)
    X = centres[y] + spread * rng.standard_normal((y.size, N_FEATURES))
    order = rng.permutation(y.size)
    return X[order], y[order]


def assert_on(backend, clf: MLPClassifier) -> None:
    """The fitted parameters and running statistics live on ``backend``."""
    assert clf.backend_.name == backend.name
    for k, v in {**clf.parameters_, **clf.bn_state_}.items():
        assert backend_of(v).name == backend.name, k


@pytest.fixture(scope="module", params=backend_params())
def backend(request):
    """conftest's ``backend`` at module scope; PyTorch limited to one intra-op thread meanwhile.

    Tiny matrices: PyTorch's intra-op threads only contend for the CPU (16 s instead of 0.1 s on 2 busy cores).
    """
    backend = get_backend(request.param)
    if backend.library != "torch":
        yield backend
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield backend
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(100, noise_seed=1)
    X_test, y_test = make_blobs(40, noise_seed=2)  # same centres, fresh samples
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def fitted(blobs, backend):
    X, y, _, _ = blobs
    return MLPClassifier(**FAST, device=backend.name).fit(X, y)


# ----------------------------------------------------------------------------- fit / predict / score


def test_fit_predict_score_reaches_high_accuracy(blobs, fitted):
    X, y, X_test, y_test = blobs
    assert fitted.score(X, y) >= 0.97
    assert fitted.score(X_test, y_test) >= 0.95
    pred = fitted.predict(X_test)
    assert isinstance(pred, np.ndarray) and pred.shape == (len(y_test),)
    assert set(np.unique(pred)) <= {0, 1, 2}


def test_fitted_attributes(blobs, fitted, backend):
    X, y, _, _ = blobs
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    assert fitted.n_features_in_ == N_FEATURES
    assert fitted.layer_dims_ == (N_FEATURES, 20, 7, 5, 3)
    assert set(fitted.parameters_) == {f"{p}{l}" for p in "Wb" for l in range(1, 5)}
    assert fitted.bn_state_ == {}
    assert len(fitted.loss_curve_) == len(fitted.val_costs_) == len(fitted.recorded_steps_) >= 2
    assert all(np.isfinite(fitted.loss_curve_)) and all(np.isfinite(fitted.val_costs_))
    assert fitted.recorded_steps_[0] == FAST["record_every"]
    assert 0 < fitted.n_steps_ <= FAST["max_steps"]
    assert fitted.n_epochs_ == pytest.approx(fitted.n_steps_ * FAST["batch_size"] / 240, rel=0.2)
    assert fitted.stopped_reason_ in ("early_stopping", "num_iterations")
    assert fitted.best_step_ in fitted.recorded_steps_
    assert isinstance(fitted.training_result_, TrainingResult)
    assert fitted.training_result_.steps == fitted.n_steps_
    assert fitted.dtype_ == "float64" and fitted.device == backend.name
    assert_on(backend, fitted)


def test_predict_proba(blobs, fitted):
    _, _, X_test, _ = blobs
    proba = fitted.predict_proba(X_test)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X_test), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(fitted.predict(X_test), fitted.classes_[np.argmax(proba, axis=1)])
    # empty input: an empty answer
    assert fitted.predict_proba(np.zeros((0, N_FEATURES))).shape == (0, 3)
    assert fitted.predict(np.zeros((0, N_FEATURES))).shape == (0,)


def test_predict_in_chunks_matches_one_pass(blobs, fitted, monkeypatch):
    _, _, X_test, _ = blobs
    whole = fitted.predict_proba(X_test)
    monkeypatch.setattr(backend_mlp.estimator, "PREDICT_CHUNK", 7)
    np.testing.assert_allclose(fitted.predict_proba(X_test), whole, rtol=1e-12, atol=1e-15)


def test_predict_accepts_lists_and_integer_features(blobs, fitted):
    _, _, X_test, _ = blobs
    np.testing.assert_array_equal(fitted.predict(X_test[:5].tolist()), fitted.predict(X_test[:5]))
    Xi = np.round(X_test[:5] * 10).astype(np.int64)
    assert fitted.predict(Xi).shape == (5,)


def test_same_random_state_same_model(blobs, backend):
    X, y, X_test, _ = blobs
    kwargs = {**FAST, "max_steps": 200, "device": backend.name}
    a = MLPClassifier(**kwargs, random_state=3).fit(X, y)
    b = MLPClassifier(**kwargs, random_state=3).fit(X, y)
    c = MLPClassifier(**kwargs, random_state=4).fit(X, y)
    assert_on(backend, a)
    for k in a.parameters_:
        np.testing.assert_array_equal(to_numpy(a.parameters_[k]), to_numpy(b.parameters_[k]))
    assert not np.array_equal(to_numpy(a.parameters_["W1"]), to_numpy(c.parameters_["W1"]))
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))


def test_early_stopping_off_trains_all_steps(blobs, backend):
    X, y, _, _ = blobs
    clf = MLPClassifier(**{**FAST, "max_steps": 120}, early_stopping=False, device=backend.name).fit(X, y)
    assert_on(backend, clf)
    assert clf.n_steps_ == 120 and clf.stopped_reason_ == "num_iterations"
    # records every 50 steps and a final one at the last step
    assert clf.val_costs_ == [] and clf.recorded_steps_ == [50, 100, 120] and len(clf.loss_curve_) == 3
    # every sample is used for training: an epoch of 300 samples is 10 steps (9 of 32, one of 12)
    assert clf.n_epochs_ == pytest.approx(12.0)


def test_batch_size_larger_than_data_is_refused():  # host-only: refused before anything is placed
    X, y = make_blobs(5)
    with pytest.raises(InputValidationError, match=r"batch_size: received 256; expected at most the 12 training"):
        MLPClassifier((4,), batch_size=256, max_steps=3).fit(X, y)


# ----------------------------------------------------------------------------- labels


def test_string_labels(blobs, backend):
    X, y, X_test, y_test = blobs
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = MLPClassifier(**FAST, device=backend.name).fit(X, names[y])
    assert_on(backend, clf)
    np.testing.assert_array_equal(clf.classes_, names)
    pred = clf.predict(X_test)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert clf.score(X_test, names[y_test]) >= 0.95


def test_non_contiguous_integer_labels_and_list_inputs(blobs, backend):
    X, y, X_test, y_test = blobs
    labels = np.array([-7, 3, 42])
    clf = MLPClassifier(**FAST, device=backend.name).fit(X.tolist(), list(labels[y]))
    assert_on(backend, clf)
    np.testing.assert_array_equal(clf.classes_, labels)
    assert set(clf.predict(X_test)) <= set(labels.tolist())
    assert clf.score(X_test, labels[y_test]) >= 0.95


# ----------------------------------------------------------------------------- backends


@pytest.fixture(scope="module")
def numpy_reference(blobs, reference_backend):
    """The reference fit on NumPy (300 steps) that every backend must reproduce."""
    X, y, _, _ = blobs
    return MLPClassifier(**{**FAST, "max_steps": 300}, device=reference_backend.name).fit(X, y)


def test_backends_give_the_same_predictions(blobs, backend, numpy_reference):
    X, y, X_test, _ = blobs
    ref = numpy_reference
    other = MLPClassifier(**{**FAST, "max_steps": 300}, device=backend.name).fit(X, y)
    assert_on(backend, other)
    assert other.n_steps_ == ref.n_steps_
    np.testing.assert_allclose(other.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(other.predict_proba(X_test), ref.predict_proba(X_test), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(other.predict(X_test), ref.predict(X_test))


def test_backend_arrays_as_input(blobs, backend):
    X, y, X_test, _ = blobs
    kwargs = {**FAST, "max_steps": 200, "device": backend.name}
    ref = MLPClassifier(**kwargs).fit(X, y)
    clf = MLPClassifier(**kwargs).fit(backend.asarray(X), backend.asarray(y))
    assert_on(backend, clf)
    np.testing.assert_array_equal(clf.predict(backend.asarray(X_test)), ref.predict(X_test))
    # arrays of another library are accepted as input too (brought to the host first)
    other = foreign_backend(backend)
    np.testing.assert_array_equal(clf.predict(other.asarray(X_test)), ref.predict(X_test))


def test_float32(blobs, backend):
    X, y, X_test, y_test = blobs
    clf = MLPClassifier(**FAST, dtype="float32", device=backend.name).fit(X, y)
    assert_on(backend, clf)
    assert all(v.dtype == backend.dtype("float32") for v in clf.parameters_.values())
    assert clf.predict_proba(X_test).dtype == np.float32
    assert clf.score(X_test, y_test) >= 0.95


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "batchnorm",
    [True, BatchNormConfig(position="before"), BatchNormConfig(affine=False)],
    ids=["on", "before", "plain"],
)
def test_batchnorm_option(blobs, backend, batchnorm):
    X, y, X_test, y_test = blobs
    # 300 steps (early stopping ends the default run at 850): 0.99 test accuracy already, and a third of the time
    clf = MLPClassifier(**{**FAST, "max_steps": 300}, batchnorm=batchnorm, device=backend.name).fit(X, y)
    assert_on(backend, clf)
    assert set(clf.bn_state_) == {f"running_{s}{l}" for s in ("mean", "var") for l in (1, 2, 3)}
    has_affine = not (isinstance(batchnorm, BatchNormConfig) and not batchnorm.affine)
    assert ("gamma1" in clf.parameters_) == has_affine
    assert clf.score(X_test, y_test) >= 0.95
    # inference uses the running statistics: one sample gets the same answer alone as in a batch
    np.testing.assert_allclose(clf.predict_proba(X_test[:1]), clf.predict_proba(X_test)[:1], rtol=1e-10)


def test_l2_option_shrinks_the_weights(blobs, backend):
    X, y, X_test, y_test = blobs
    kwargs = {**FAST, "max_steps": 400, "early_stopping": False, "device": backend.name}
    plain = MLPClassifier(**kwargs).fit(X, y)
    l2 = MLPClassifier(**kwargs, l2=5.0).fit(X, y)

    def norm(clf):
        return sum(float(np.sum(to_numpy(clf.parameters_[f"W{l}"]) ** 2)) for l in range(1, 5))

    assert_on(backend, l2)
    assert norm(l2) < 0.9 * norm(plain)
    assert l2.config_.l2_lambda == 5.0
    assert l2.score(X_test, y_test) >= 0.9


def test_hidden_layer_sizes_forms(blobs, backend):
    X, y, _, _ = blobs
    kwargs = {**FAST, "max_steps": 50, "device": backend.name}
    assert MLPClassifier(8, **kwargs).fit(X, y).layer_dims_ == (N_FEATURES, 8, 3)
    assert MLPClassifier([6, 4], **kwargs).fit(X, y).layer_dims_ == (N_FEATURES, 6, 4, 3)
    softmax_regression = MLPClassifier((), **kwargs).fit(X, y)
    assert softmax_regression.layer_dims_ == (N_FEATURES, 3)
    assert set(softmax_regression.parameters_) == {"W1", "b1"}
    assert_on(backend, softmax_regression)


def test_verbose_prints_progress(blobs, backend, capsys):
    X, y, _, _ = blobs
    MLPClassifier(**{**FAST, "max_steps": 100}, verbose=True, device=backend.name).fit(X, y)
    out = capsys.readouterr().out
    assert "step 50/100" in out and "val cost" in out


def test_divergence_is_reported(backend):
    X, y = make_blobs(20)
    with pytest.raises(backend_mlp.TrainingDivergedError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                # the weight decay step W <- W (1 - lr * l2 / m) multiplies W by about -1e5 each step
                MLPClassifier(
                    (8,), learning_rate=1e6, l2=1.0, batch_size=8, max_steps=200, record_every=5, early_stopping=False,
                    device=backend.name,
                ).fit(X, y)
    assert "learning rate" in str(info.value)


# ----------------------------------------------------------------------------- sklearn protocol
# host-only: hyperparameters and the not-fitted errors involve no arrays


def test_get_params_and_set_params():
    clf = MLPClassifier((10,), l2=0.1, device="array_api_strict")
    params = clf.get_params()
    assert params["hidden_layer_sizes"] == (10,) and params["l2"] == 0.1 and params["device"] == "array_api_strict"
    assert set(params) == {
        "hidden_layer_sizes", "device", "dtype", "batchnorm", "l2", "learning_rate", "lr_decay", "batch_size",
            "max_steps",
        "early_stopping", "validation_fraction", "min_improvement", "patience", "record_every", "optimizer",
        "momentum", "beta1", "beta2", "epsilon", "random_state", "verbose", "compile",
    }  # fmt: skip
    clone = MLPClassifier(**params)
    assert clone.get_params() == params
    assert clf.set_params(learning_rate=0.5, batch_size=16) is clf
    assert clf.get_params(deep=False)["learning_rate"] == 0.5 and clf.batch_size == 16
    with pytest.raises(InputValidationError, match="'nope'"):
        clf.set_params(nope=1)
    assert "l2=0.1" in repr(clf) and "learning_rate=0.5" in repr(clf) and "dtype" not in repr(clf)
    assert repr(MLPClassifier()) == "MLPClassifier()"


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_sklearn_clone():  # pragma: no cover - optional
    from sklearn.base import clone

    clf = MLPClassifier((5,), l2=0.3)
    assert clone(clf).get_params() == clf.get_params()


def test_not_fitted_error(tmp_path):
    clf = MLPClassifier()
    X = np.zeros((3, 4))
    for call in (
        lambda: clf.predict(X),
        lambda: clf.predict_proba(X),
        lambda: clf.score(X, [0, 1, 0]),
        lambda: clf.save(tmp_path / "m.npz"),
    ):
        with pytest.raises(NotFittedError) as info:
            call()
        err = info.value
        assert isinstance(err, BackendMLPError) and isinstance(err, ValueError) and isinstance(err, AttributeError)
        assert "not fitted" in str(err) and "fit(X, y)" in str(err)
    assert not hasattr(clf, "classes_")
    assert backend_mlp.NotFittedError is NotFittedError


# ----------------------------------------------------------------------------- save / load


checkpoint_missing = pytest.mark.skipif(
    importlib.util.find_spec("backend_mlp.checkpoint") is None, reason="backend_mlp.checkpoint not available yet"
)


@checkpoint_missing
@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_save_load_round_trip(blobs, backend, tmp_path, labels):
    X, y, X_test, _ = blobs
    names = np.array(["a", "bb", "ccc"]) if labels == "strings" else np.array([2, 5, 9])
    clf = MLPClassifier(**{**FAST, "max_steps": 200}, batchnorm=True, l2=0.01, device=backend.name).fit(X, names[y])
    path = clf.save(tmp_path / "model.npz")
    loaded = MLPClassifier.load(path)  # back on the backend it was trained on
    assert_on(backend, loaded)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.get_params() == clf.get_params()
    assert loaded.n_features_in_ == clf.n_features_in_ and loaded.layer_dims_ == clf.layer_dims_
    assert loaded.loss_curve_ == clf.loss_curve_ and loaded.val_costs_ == clf.val_costs_
    assert loaded.n_steps_ == clf.n_steps_ and loaded.best_step_ == clf.best_step_
    assert loaded.n_epochs_ == pytest.approx(clf.n_epochs_)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), clf.predict(X_test))
    # onto another backend
    other = foreign_backend(backend)
    moved = MLPClassifier.load(path, device=other.name)
    assert_on(other, moved)
    assert moved.device == other.name
    np.testing.assert_allclose(moved.predict_proba(X_test), clf.predict_proba(X_test), rtol=1e-12, atol=1e-15)
    # the loaded estimator can be saved again and refitted
    again = MLPClassifier.load(moved.save(tmp_path / "again.npz"))
    np.testing.assert_array_equal(again.predict(X_test), clf.predict(X_test))
    assert again.set_params(max_steps=20).fit(X, names[y]).n_steps_ <= 20


@checkpoint_missing
def test_load_files_without_estimator_metadata(tmp_path):  # host-only: the file's metadata
    from backend_mlp.checkpoint import save_model
    from backend_mlp.errors import CheckpointError
    from backend_mlp.training import TrainingConfig

    config = TrainingConfig(layer_dims=(4, 3))
    path = save_model(tmp_path / "plain.npz", config, backend_mlp.initialize_parameters([4, 3]))
    loaded = MLPClassifier.load(path)  # save_model / backend-mlp train: classes 0..K-1
    assert loaded.classes_.tolist() == [0, 1, 2] and loaded.n_features_in_ == 4
    named = save_model(tmp_path / "named.npz", config, backend_mlp.initialize_parameters([4, 3]),
                       extra={"class_names": ["cat", "dog", "eel"]})
    named_clf = MLPClassifier.load(named)
    assert named_clf.classes_.tolist() == [0, 1, 2] and named_clf.class_names_ == ["cat", "dog", "eel"]
    other = save_model(tmp_path / "other.npz", config, backend_mlp.initialize_parameters([4, 3]),
                       extra={"estimator": "Other", "classes": [0, 1, 2]})
    with pytest.raises(CheckpointError, match="MLPClassifier.save"):
        MLPClassifier.load(other)
    with pytest.raises(CheckpointError):
        MLPClassifier.load(tmp_path / "missing.npz")


@checkpoint_missing
def test_numpy_scalar_hyperparameters_and_object_labels_save_and_load(tmp_path):  # host-only: Python types
    X, y = make_blobs(20)
    labels = np.array(["x", "y", "z"], dtype=object)[y]
    clf = MLPClassifier(
        [np.int64(6)], learning_rate=np.float32(0.05), batch_size=np.int64(8), max_steps=60, record_every=20
    ).fit(X, labels)
    assert clf.config_.learning_rate == pytest.approx(0.05) and type(clf.config_.batch_size) is int
    loaded = MLPClassifier.load(clf.save(tmp_path / "m.npz"))
    assert loaded.hidden_layer_sizes == (6,) and loaded.batch_size == 8
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@pytest.mark.parametrize("rule", ["momentum", "nesterov", "adam"])
def test_optimizer_keywords_reach_the_training(blobs, backend, rule):
    from backend_mlp.optimizers import make_optimizer

    X, y, _, _ = blobs
    keywords = {"momentum": 0.5} if rule != "adam" else {"beta1": 0.8, "epsilon": 1e-6}
    clf = MLPClassifier(**FAST, optimizer=rule, patience=2, device=backend.name, **keywords).fit(X, y)
    assert clf.config_.optimizer == make_optimizer(rule, **keywords) and clf.config_.patience == 2
    assert sorted(clf.training_result_.state.optimizer_state)  # the rule's state was threaded through
    sgd = MLPClassifier(**FAST, device=backend.name).fit(X, y)
    assert not np.allclose(to_numpy(sgd.parameters_["W1"]), to_numpy(clf.parameters_["W1"]))
    assert MLPClassifier(**clf.get_params()).get_params() == clf.get_params()


def test_a_keyword_of_another_optimizer_is_refused(blobs):
    X, y, _, _ = blobs
    with pytest.raises(InputValidationError, match="momentum: received 0.9 but optimizer 'adam' has no momentum"):
        MLPClassifier(**FAST, optimizer="adam", momentum=0.9).fit(X, y)


def test_an_optimizer_instance_saves_as_its_name_and_keywords(blobs, tmp_path):
    from backend_mlp.optimizers import Adam

    X, y, _, _ = blobs
    clf = MLPClassifier(**{**FAST, "max_steps": 60}, optimizer=Adam(beta1=0.8)).fit(X, y)
    loaded = MLPClassifier.load(clf.save(tmp_path / "adam.npz"))
    assert loaded.optimizer == "adam" and loaded.beta1 == 0.8 and loaded.config_.optimizer == Adam(beta1=0.8)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
