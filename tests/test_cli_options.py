"""Every option of ``backend-mlp train`` reaches the training, not only the parser.

Each option is given on its own in a short run on small synthetic MNIST-shaped
files; ``backend_mlp.runs.train`` is wrapped by a spy that keeps what the
training actually received (configuration, data, state, BLAS threads), and the
run's files are read back.  ``test_every_option_is_covered`` fails when an option
is added to the parser without an entry here.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from synthetic_mnist import write_synthetic_mnist

import backend_mlp.data.sources as sources
import backend_mlp.runs as runs
import backend_mlp.training.loop as loop
from backend_mlp.checkpoint import load_checkpoint, load_model
from backend_mlp.cli.train import build_parser, main
from backend_mlp.data import DATASETS
from backend_mlp.optimizers import Adam, Momentum, Nesterov

BASE = ["--max-steps", "20", "--record-every", "10", "--lr", "0.05", "--batch-size", "50", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("options_data"), n_train=600, n_test=200)


@dataclasses.dataclass
class Outcome:
    """What one CLI run did: exit status, what ``train`` received, the files, the output."""

    status: int
    calls: list[dict[str, Any]]
    out: Path
    stdout: str
    stderr: str

    @property
    def config(self) -> Any:
        return self.calls[-1]["config"]

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.out / "metrics.json").read_text())


@pytest.fixture
def run_cli(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    real_train = runs.train

    def run(extra: list[str], *, base: list[str] = BASE, data: list[str] | None = None, out: str = "run") -> Outcome:
        calls: list[dict[str, Any]] = []

        def spy(train_data, config, val_data=None, **kwargs):  # type: ignore[no-untyped-def]
            state = kwargs.get("state")
            calls.append({"train_data": train_data, "config": config, "start_step": state.step if state else 0,
                          **kwargs})
            return real_train(train_data, config, val_data, **kwargs)

        monkeypatch.setattr(runs, "train", spy)
        target = tmp_path / out
        data = ["--data-dir", str(data_dir)] if data is None else data
        status = main([*data, *base, "--out", str(target), *extra])
        captured = capsys.readouterr()
        return Outcome(status, calls, target, captured.out, captured.err)

    return run


def _check_hidden(run: Callable[..., Outcome]) -> None:
    o = run(["--hidden", "16,8"])
    assert o.config.layer_dims == (784, 16, 8, 10)
    assert load_model(o.out / "model.npz").parameters["W2"].shape == (8, 16)
    assert run(["--hidden", "none"], out="softmax").config.layer_dims == (784, 10)


def _check_optimizer(run: Callable[..., Outcome]) -> None:
    o = run(["--optimizer", "adam"])
    assert o.config.optimizer == Adam()
    assert "exp_avg.W1" in load_checkpoint(o.out / "checkpoint.npz").state.optimizer_state
    assert o.metrics["hyperparameters"]["optimizer"]["name"] == "adam"


def _check_momentum(run: Callable[..., Outcome]) -> None:
    assert run(["--optimizer", "momentum", "--momentum", "0.5"]).config.optimizer == Momentum(momentum=0.5)
    assert run(["--optimizer", "nesterov", "--momentum", "0.7"], out="n").config.optimizer == Nesterov(momentum=0.7)


def _check_adam_keywords(option: str, field: str) -> Callable[[Callable[..., Outcome]], None]:
    def check(run: Callable[..., Outcome]) -> None:
        o = run(["--optimizer", "adam", option, "0.123"])
        assert getattr(o.config.optimizer, field) == 0.123 and o.metrics["hyperparameters"]["optimizer"][field] == 0.123

    return check


def _check_lr(run: Callable[..., Outcome]) -> None:
    o = run(["--lr", "0.01"], base=[b for b in BASE if b not in ("--lr", "0.05")])
    assert o.config.learning_rate == 0.01 and o.metrics["hyperparameters"]["learning_rate"] == 0.01


def _check_lr_decay(run: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch) -> None:
    rates: list[float] = []
    real = loop._train_step

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        rates.append(args[8])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_step", spy)
    o = run(["--lr-decay", "0.5"])  # 480 samples in batches of 50: epochs of 10 steps
    assert o.config.lr_decay == 0.5 and rates == [0.05] * 10 + [0.025] * 10


def _check_batch_size(run: Callable[..., Outcome]) -> None:
    o = run(["--batch-size", "160"])  # the last of repeated options wins: 20 steps of 160 of 480 samples
    assert o.config.batch_size == 160 and o.metrics["epochs"] == pytest.approx(20 * 160 / 480)


def _check_seed(run: Callable[..., Outcome]) -> None:
    a, b = run(["--seed", "1"], out="a"), run(["--seed", "2"], out="b")
    assert a.config.seed == 1 and b.config.seed == 2
    assert not np.array_equal(load_model(a.out / "model.npz").parameters["W1"],
                              load_model(b.out / "model.npz").parameters["W1"])


def _check_dtype(run: Callable[..., Outcome]) -> None:
    o = run(["--dtype", "float32"])
    assert str(o.calls[-1]["train_data"].X_rows.dtype) == "float32" and o.metrics["dtype"] == "float32"
    assert load_model(o.out / "model.npz").parameters["W1"].dtype == np.float32


def _check_max_steps(run: Callable[..., Outcome]) -> None:
    o = run(["--max-steps", "30"])
    assert o.config.num_iterations == 30 and o.metrics["steps"] == 30


def _check_record_every(run: Callable[..., Outcome]) -> None:
    assert run(["--record-every", "4"]).metrics["recorded_steps"] == [4, 8, 12, 16, 20]


def _check_patience(run: Callable[..., Outcome]) -> None:
    # every check after the first is stale (the cost never drops by 100): patience N stops at check N + 1
    o = run(["--max-steps", "200", "--min-improvement", "100", "--patience", "3"])
    assert o.config.patience == 3 and o.metrics["steps"] == 40 and o.metrics["stopped_reason"] == "early_stopping"


def _check_min_improvement(run: Callable[..., Outcome]) -> None:
    stale, fresh = run(["--max-steps", "200", "--min-improvement", "100"], out="a"), run(
        ["--max-steps", "200", "--min-improvement", "0"], out="b")
    assert stale.config.min_improvement == 100 and stale.metrics["steps"] == 20
    assert fresh.metrics["steps"] > 20


def _check_no_early_stopping(run: Callable[..., Outcome]) -> None:
    o = run(["--max-steps", "60", "--min-improvement", "100", "--no-early-stopping"])
    assert o.config.early_stopping is False and o.metrics["steps"] == 60
    assert o.metrics["stopped_reason"] == "num_iterations"


def _check_batchnorm(run: Callable[..., Outcome]) -> None:
    o = run(["--batchnorm"])
    assert o.config.batchnorm is not None and "gamma1" in load_model(o.out / "model.npz").parameters
    assert "-bn" in o.metrics["name"]


def _check_l2(run: Callable[..., Outcome]) -> None:
    o = run(["--l2", "0.5"])
    assert o.config.l2_lambda == 0.5 and o.metrics["name"].endswith("l2_0.5")


def _check_section(run: Callable[..., Outcome]) -> None:
    assert run(["--section", "5"]).config.batchnorm is not None
    six = run(["--section", "6"], out="six")
    assert six.config.l2_lambda == 1.0 and six.metrics["section"] == "6"


def _check_data_dir(run: Callable[..., Outcome]) -> None:
    o = run([])
    assert o.calls[-1]["train_data"].n_samples == 480 and o.metrics["n_test"] == 200
    assert o.metrics["data_dir"] and o.metrics["dataset"]["source"]["files"]


def _check_dataset(run: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch, data_dir: Path,
                   tmp_path: Path) -> None:
    """A named data set found in the cache (the test's files stand in for Fashion-MNIST's)."""
    cache = tmp_path / "cache"
    (cache / "fashion-mnist").mkdir(parents=True)
    digests = {}
    for path in data_dir.iterdir():
        target = cache / "fashion-mnist" / path.name
        target.write_bytes(path.read_bytes())
        name = path.name.removesuffix(".gz")
        content = path.read_bytes()
        digests[name] = hashlib.sha256(gzip.decompress(content) if path.suffix == ".gz" else content).hexdigest()
    stand_in = dataclasses.replace(DATASETS["fashion-mnist"], sha256=digests, sha256_gz={}, mirrors=())
    monkeypatch.setattr(sources, "DATASETS", MappingProxyType({**DATASETS, "fashion-mnist": stand_in}))
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(cache))
    monkeypatch.delenv("BACKEND_MLP_DATA", raising=False)
    o = run(["--dataset", "fashion-mnist"], data=[])
    assert o.status == 0, o.stderr
    assert o.metrics["dataset"]["name"] == "fashion-mnist" and o.metrics["name"].startswith("fashion-mnist-")
    assert o.metrics["dataset"]["class_names"][9] == "Ankle boot"
    assert "Ankle boot" in o.metrics["test_accuracy_per_class"]


def _check_device(run: Callable[..., Outcome]) -> None:
    o = run(["--device", "array_api_strict"])
    assert o.status == 0, o.stderr
    assert type(o.calls[-1]["train_data"].X_rows).__module__.startswith("array_api_strict")
    assert o.metrics["device"] == "array_api_strict"


def _check_out(run: Callable[..., Outcome]) -> None:
    o = run([], out="chosen")
    assert o.out.name == "chosen" and (o.out / "model.npz").exists() and str(o.out) in o.stdout


def _check_resume(run: Callable[..., Outcome]) -> None:
    first = run([])
    o = run(["--resume", str(first.out / "checkpoint.npz"), "--max-steps", "30"], base=["--threads", "1"],
            data=[], out="run")
    assert o.status == 0, o.stderr
    assert o.calls[-1]["start_step"] == 20 and o.metrics["steps"] == 30 and o.metrics["resumed_from"]


def _check_checkpoint_every(run: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch) -> None:
    saves: list[int] = []
    real = runs.save_checkpoint

    def counting(path, config, state, **kwargs):  # type: ignore[no-untyped-def]
        saves.append(state.step)
        return real(path, config, state, **kwargs)

    monkeypatch.setattr(runs, "save_checkpoint", counting)
    run(["--max-steps", "40", "--checkpoint-every", "2"])
    assert saves == [20, 40, 40]  # every second record, then the final save


def _check_overwrite(run: Callable[..., Outcome]) -> None:
    first = run([])
    refused = run([])  # the same --out again
    assert refused.status == 2 and "holds a finished run" in refused.stderr and refused.calls == []
    replaced = run(["--overwrite", "--seed", "5"])
    assert replaced.status == 0 and replaced.metrics["seed"] == 5 and first.out == replaced.out


def _check_threads(run: Callable[..., Outcome]) -> None:
    assert run(["--threads", "2"]).calls[-1]["blas_threads"] == 2


def _check_compile(run: Callable[..., Outcome]) -> None:
    eager, o = run([], out="eager"), run(["--compile"])
    assert o.status == 0 and o.calls[-1]["compile"] is True and eager.calls[-1]["compile"] is False
    # NumPy has no compiler: one note, the eager step, the same numbers
    assert "note: compile: numpy has no compiler; the training step runs eagerly" in o.stderr
    assert o.metrics["compiled"] is False and o.metrics["compile_seconds"] == 0.0
    assert o.metrics["test_accuracy"] == eager.metrics["test_accuracy"]
    pytest.importorskip("jax")
    jax_run = run(["--compile", "--device", "jax"], out="jax")
    assert jax_run.status == 0, jax_run.stderr
    assert jax_run.metrics["compiled"] is True and jax_run.metrics["compile_seconds"] > 0.0
    assert 0.0 < jax_run.metrics["step_seconds"] < jax_run.metrics["total_train_seconds"]
    assert "compiling the step and checks:" in jax_run.stdout and "note:" not in jax_run.stderr
    assert abs(jax_run.metrics["test_accuracy"] - eager.metrics["test_accuracy"]) < 1e-9


def _check_quiet(run: Callable[..., Outcome]) -> None:
    loud, quiet = run([], out="loud"), run(["--quiet"], out="quiet")
    assert "step 10" in loud.stdout and quiet.stdout == "" and quiet.status == 0


def _check_debug(run: Callable[..., Outcome]) -> None:
    plain, debug = run(["--lr", "-1"], out="a"), run(["--lr", "-1", "--debug"], out="b")
    assert plain.status == debug.status == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr


CHECKS: dict[str, Callable[..., None]] = {
    "--hidden": _check_hidden,
    "--optimizer": _check_optimizer,
    "--momentum": _check_momentum,
    "--beta1": _check_adam_keywords("--beta1", "beta1"),
    "--beta2": _check_adam_keywords("--beta2", "beta2"),
    "--epsilon": _check_adam_keywords("--epsilon", "epsilon"),
    "--lr": _check_lr,
    "--lr-decay": _check_lr_decay,
    "--batch-size": _check_batch_size,
    "--seed": _check_seed,
    "--dtype": _check_dtype,
    "--max-steps": _check_max_steps,
    "--record-every": _check_record_every,
    "--patience": _check_patience,
    "--min-improvement": _check_min_improvement,
    "--no-early-stopping": _check_no_early_stopping,
    "--batchnorm": _check_batchnorm,
    "--l2": _check_l2,
    "--section": _check_section,
    "--data-dir": _check_data_dir,
    "--dataset": _check_dataset,
    "--device": _check_device,
    "--out": _check_out,
    "--resume": _check_resume,
    "--checkpoint-every": _check_checkpoint_every,
    "--overwrite": _check_overwrite,
    "--threads": _check_threads,
    "--compile": _check_compile,
    "--quiet": _check_quiet,
    "--debug": _check_debug,
}


def test_every_option_is_covered() -> None:
    options = {s for a in build_parser()._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    assert options == set(CHECKS)


@pytest.mark.parametrize("option", sorted(CHECKS))
def test_option_reaches_the_training(option: str, run_cli, monkeypatch, data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    check = CHECKS[option]
    extra = {"monkeypatch": monkeypatch, "data_dir": data_dir, "tmp_path": tmp_path}
    wanted = check.__code__.co_varnames[1:check.__code__.co_argcount]
    check(run_cli, **{k: extra[k] for k in wanted})


def test_resuming_a_run_that_stopped_early_finishes_it(run_cli) -> None:  # type: ignore[no-untyped-def]
    """An early-stopped checkpoint (e.g. interrupted while its results were written) resumes to its results."""
    first = run_cli(["--max-steps", "200", "--min-improvement", "100"])
    assert first.metrics["stopped_reason"] == "early_stopping"
    (first.out / "metrics.json").unlink()  # as if the first run had been killed before writing it
    again = run_cli(["--resume", str(first.out / "checkpoint.npz"), "--max-steps", "400"], base=[], data=[],
                    out="again")
    assert again.status == 0, again.stderr
    assert again.calls[-1]["start_step"] == 20 and again.metrics["steps"] == 20  # no step more, results written
