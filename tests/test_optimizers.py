"""The update rules against ``torch.optim`` on identical inputs, their checks, and bit-identical resume.

The PyTorch comparisons need ``torch`` as the independent reference (skipped
without it); the ``agreement`` nox session installs it and runs them on every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import cut_and_resume, relative_error

from backend_mlp import to_numpy
from backend_mlp.backends import to_backend
from backend_mlp.data import Dataset
from backend_mlp.errors import InputValidationError
from backend_mlp.ops import INPLACE, PURE
from backend_mlp.optimizers import OPTIMIZERS, Adam, Momentum, Nesterov, make_optimizer
from backend_mlp.training import TrainingConfig, new_training_state, train, train_step
from backend_mlp.training.config import configure

#: (our optimizer, torch.optim class name, torch keyword arguments)
RULES = {
    "sgd": (make_optimizer("sgd"), "SGD", {}),
    "momentum": (Momentum(momentum=0.8), "SGD", {"momentum": 0.8}),
    "nesterov": (Nesterov(momentum=0.8), "SGD", {"momentum": 0.8, "nesterov": True}),
    "adam": (Adam(beta1=0.85, beta2=0.99, epsilon=1e-7), "Adam", {"betas": (0.85, 0.99), "eps": 1e-7}),
}
STEPS = 50
RTOL_FLOAT64 = 1e-12


def _torch_optimizer(rule: str, tensors: list[Any], lr: float) -> Any:
    torch = pytest.importorskip("torch")
    _, cls, kwargs = RULES[rule]
    return getattr(torch.optim, cls)(tensors, lr=lr, **kwargs)


def test_every_registered_rule_is_compared_with_torch() -> None:
    assert set(RULES) == set(OPTIMIZERS)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_update_rule_equals_torch_optim(rule: str, backend: Any) -> None:
    """From identical parameters and gradients, 50 updates agree with torch.optim to 1e-12 (float64)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    host = {"W1": rng.standard_normal((5, 4)), "b1": rng.standard_normal((5, 1)), "W2": rng.standard_normal((3, 5))}
    grads = [{k: rng.standard_normal(v.shape) for k, v in host.items()} for _ in range(STEPS)]
    lr = 0.01
    reference = {k: torch.tensor(v, requires_grad=True) for k, v in host.items()}
    torch_opt = _torch_optimizer(rule, list(reference.values()), lr)
    opt = RULES[rule][0]
    for ops in (PURE, INPLACE) if backend.mutable_arrays else (PURE,):
        params = {k: to_backend(v, backend) for k, v in host.items()}
        state = opt.init_state(params)
        for g in grads:
            scale = opt.gradient_scale(lr)
            scaled = {"d" + k: to_backend(v * scale, backend) for k, v in g.items()}
            params, state = opt.update(params, scaled, state, lr, ops)
        if ops is PURE:
            for g in grads:
                for k, t in reference.items():
                    t.grad = torch.tensor(g[k])
                torch_opt.step()
        for k, t in reference.items():
            err = relative_error(params[k], t.detach().numpy())
            assert err <= RTOL_FLOAT64, f"{rule} {k} ({'in place' if ops.inplace else 'pure'}): {err:.2e}"


@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_training_steps_equal_torch_autograd_and_optim(rule: str, l2: float, backend: Any) -> None:
    """50 whole steps (forward, backward with the L2 term in the gradient, update) against torch autograd + optim."""
    torch = pytest.importorskip("torch")
    dims = (6, 5, 4, 3)
    lr = 0.02
    config = TrainingConfig(layer_dims=dims, learning_rate=lr, l2_lambda=l2, batch_size=16, optimizer=RULES[rule][0])
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 16 * STEPS))
    labels = rng.integers(0, 3, 16 * STEPS)
    Y = np.eye(3)[:, labels]
    state = new_training_state(config, to_backend(X[:, :1].T.copy(), backend))
    params, opt_state = state.parameters, state.optimizer_state
    reference = {k: torch.tensor(to_numpy(v), requires_grad=True) for k, v in params.items()}
    torch_opt = _torch_optimizer(rule, list(reference.values()), lr)
    L = len(dims) - 1
    for s in range(STEPS):
        cols = slice(16 * s, 16 * (s + 1))
        Xb, Yb = to_backend(X[:, cols].copy(), backend), to_backend(Y[:, cols].copy(), backend)
        params, opt_state, _, _ = train_step(config, params, opt_state, {}, Xb, Yb)
        A = torch.tensor(X[:, cols])
        for l in range(1, L + 1):
            Z = reference[f"W{l}"] @ A + reference[f"b{l}"]
            A = torch.relu(Z) if l < L else Z
        cost = -(torch.tensor(Y[:, cols]) * torch.log_softmax(A, dim=0)).sum(dim=0).mean()
        cost = cost + l2 / (2 * 16) * sum((reference[f"W{l}"] ** 2).sum() for l in range(1, L + 1))
        torch_opt.zero_grad()
        cost.backward()
        torch_opt.step()
    for k, t in reference.items():
        err = relative_error(params[k], t.detach().numpy())
        assert err <= RTOL_FLOAT64, f"{rule} l2={l2} {k}: {err:.2e}"


# --------------------------------------------------------------------------- keywords and checks


def test_make_optimizer_builds_each_rule_from_the_shared_keywords() -> None:
    assert make_optimizer("momentum", momentum=0.5) == Momentum(momentum=0.5)
    assert make_optimizer("nesterov") == Nesterov(momentum=0.9)
    assert make_optimizer("adam", beta1=0.8, beta2=None, epsilon=1e-6) == Adam(beta1=0.8, epsilon=1e-6)
    assert make_optimizer(Adam(beta1=0.5), epsilon=1e-3) == Adam(beta1=0.5, epsilon=1e-3)


@pytest.mark.parametrize(
    ("name", "keywords", "message"),
    [
        ("adam", {"momentum": 0.9}, r"momentum: received 0.9 but optimizer 'adam' has no momentum"),
        ("sgd", {"beta1": 0.9}, r"beta1: .* 'sgd' has no beta1; expected it only with 'adam'"),
        ("rmsprop", {}, r"optimizer: received 'rmsprop'; expected one of 'sgd', 'momentum'"),
        ("momentum", {"momentum": 1.0}, r"momentum: received 1.0; expected a number in \[0, 1\)"),
        ("momentum", {"momentum": 0}, r"momentum: received 0; .*0 is plain SGD"),
        ("adam", {"beta2": -0.1}, r"beta2: received -0.1; expected a number in \[0, 1\)"),
        ("adam", {"epsilon": 0.0}, r"epsilon: received 0.0; expected a finite positive number"),
    ],
)
def test_bad_optimizer_settings_are_named(name: str, keywords: dict[str, Any], message: str) -> None:
    with pytest.raises(InputValidationError, match=message):
        make_optimizer(name, **keywords)


def test_configure_sizes_the_network_from_the_data_and_applies_keywords() -> None:
    config = configure(n_features=196, n_classes=5, hidden=(32, 16), optimizer="adam", beta1=0.8, patience=3)
    assert config.layer_dims == (196, 32, 16, 5) and config.hidden == (32, 16)
    assert config.optimizer == Adam(beta1=0.8) and config.patience == 3
    assert configure(n_features=784, n_classes=10).layer_dims == (784, 20, 7, 5, 10)
    assert configure(n_features=4, n_classes=2, hidden=()).layer_dims == (4, 2)
    tuned = configure(TrainingConfig(optimizer="momentum"), n_features=784, n_classes=10, momentum=0.5)
    assert tuned.optimizer == Momentum(momentum=0.5) and tuned.layer_dims == (784, 20, 7, 5, 10)
    with pytest.raises(InputValidationError, match="unknown training settings"):
        configure(n_features=4, n_classes=2, lr=0.1)
    with pytest.raises(InputValidationError, match="hidden: received"):
        configure(n_features=4, n_classes=2, hidden=(3, 0))


# --------------------------------------------------------------------------- through train and checkpoints


def _blobs(backend: Any) -> Dataset:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((160, 5))
    return Dataset.from_host(X, np.argmax(X[:, :3], axis=1), n_classes=3, device=backend)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_resume_with_each_optimizer_is_bit_identical(tmp_path: Path, backend: Any, rule: str) -> None:
    config = TrainingConfig(layer_dims=(5, 6, 3), learning_rate=0.01, num_iterations=40, batch_size=16,
                            record_every=5, early_stopping=False, optimizer=RULES[rule][0], lr_decay=0.7)
    # 10 steps per epoch: the cut at step 25 falls inside the third epoch
    full, _, loaded, resumed = cut_and_resume(_blobs(backend), config, tmp_path, backend, at=25)
    assert loaded.config.optimizer == config.optimizer
    for tree in ("parameters", "optimizer_state"):
        expected = getattr(full.state, tree)
        assert sorted(getattr(resumed.state, tree)) == sorted(expected)
        for k, v in expected.items():
            np.testing.assert_array_equal(to_numpy(getattr(resumed.state, tree)[k]), to_numpy(v), err_msg=k)


def test_train_accepts_the_keywords_and_each_rule_trains_differently(backend: Any) -> None:
    data = _blobs(backend)
    finals = {}
    for rule in sorted(RULES):
        result = train(data, hidden=(8,), optimizer=rule, learning_rate=0.01, num_iterations=30, batch_size=16,
                       early_stopping=False)
        assert result.config.layer_dims == (5, 8, 3) and result.config.optimizer.name == rule
        finals[rule] = to_numpy(result.parameters["W1"])
    for a in finals:
        for b in finals:
            if a < b:
                assert not np.allclose(finals[a], finals[b]), (a, b)
