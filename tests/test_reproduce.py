"""``scripts/reproduce_report.py`` end to end on a tiny synthetic IDX dataset, and the report package's parts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_mnist import write_synthetic_mnist

from backend_mlp.cli.progress import WIDTH
from backend_mlp.cli.reproduce import _RunLines, build_parser, main
from backend_mlp.errors import BackendMLPError, InputValidationError
from backend_mlp.report import Reproduction, reproduction
from backend_mlp.report.figures import Curve, plot_cost_curve, plot_weight_histograms
from backend_mlp.report.markdown import ablation_table, section_table, weight_table
from backend_mlp.report.statistics import acceptance_checks, stats

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mnist(tmp_path_factory.mktemp("tiny_mnist"), n_train=600, n_test=200)


def test_reproduce_end_to_end(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce_report.py"), "--device", "cpu", "--seeds", "2",
           "--max-steps", "200", "--data-dir", str(mnist_dir), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # one line per finished run: 2 seeds x (sections 4, 5, 6 + ablation b, c)
    assert sum(line.startswith("[") for line in proc.stdout.splitlines()) == 10
    # readable at 80 columns (only a path longer than a line may exceed it, alone on its line)
    assert all(len(line) <= WIDTH or "/" in line for line in proc.stdout.splitlines()), proc.stdout

    expected = {"REPORT.md", "results.json", "cost_curves.png", "weights_plain_vs_l2.png", "batchnorm_ablation.png"}
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # files.atomic_write_bytes writes through ".<name>.<random>.part" in the target folder
    assert not list(out.glob(".*.part")), "temporary files left behind"
    assert {p.name for p in out.iterdir()} == expected | {"runs"}
    # the runs are a sweep: one folder per run, named by its id, with the run's metrics.json and model
    run_folders = sorted((out / "runs").iterdir())
    assert len(run_folders) == 10 and all((f / "metrics.json").is_file() and (f / "model.npz").is_file()
                                          for f in run_folders)
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    assert "reproduce_report.py" in results["command"] and "--max-steps 200" in results["command"]
    assert {"cpu_model", "cpu_count", "numpy", "backend"} <= set(results["machine"])
    assert results["settings"]["dtype"] == "float64"
    runs = results["runs"]
    assert len(runs) == 10
    assert {(r["key"], r["seed"]) for r in runs} == {
        (k, s) for k in ("4", "5", "6", "bn-b", "bn-c") for s in (0, 1)
    }
    assert all(r["steps"] <= 200 and 0 <= r["test_accuracy"] <= 1 for r in runs)
    assert all(len(r["weight_std"]) == 4 for r in runs)
    assert all("test_accuracy_batch_statistics" in r for r in runs if r["key"] in ("5", "bn-b", "bn-c"))
    assert len(results["checks"]) == 5 and all(c["passed"] in (True, False) for c in results["checks"])

    report = (out / "REPORT.md").read_text()
    assert report.index("## Acceptance checks") < report.index("## How this was produced")
    assert "--max-steps" in report
    for title in ("### Section 4: plain network", "### Section 5: batch normalisation",
                  "### Section 6: L2 regularisation", "## Section 6: weights with and without L2",
                  "## Why the report's batch norm did worse: ablation"):
        assert title in report
    table_rows = [line for line in report.splitlines() if line.startswith("| ")]
    for label in ("steps", "epochs", "train accuracy", "validation accuracy", "test accuracy",
                  "final training cost", "best validation cost", "wall time (s)"):
        assert sum(row.startswith(f"| {label} |") for row in table_rows) == 3, label
    for layer in ("W1", "W2", "W3", "W4"):
        assert any(row.startswith(f"| {layer} |") for row in table_rows)
    for variant in ("(a)", "(b)", "(c)", "(d)"):
        assert any(row.startswith(f"| {variant} ") for row in table_rows), variant
    for fig in ("cost_curves.png", "weights_plain_vs_l2.png", "batchnorm_ablation.png"):
        assert f"]({fig})" in report
    assert "±" in report and "ours: min – max" in report  # two seeds: spreads and ranges


def test_one_seed_shows_values_without_spread(mnist_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "one"
    assert main(["--seeds", "1", "--max-steps", "100", "--data-dir", str(mnist_dir), "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "±" not in report and "min – max" not in report and "mean " not in report
    assert "| metric | report | ours (one seed) |" in report and "| steps | 15,900 | 100 |" in report
    assert "| variant | test accuracy | validation accuracy | steps | best validation cost |" in report
    assert "Protocol: one seed (0)" in report
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= WIDTH or "/" in line for line in lines), lines


def _entry(*values: float) -> dict:
    e = stats(values)
    return {"steps": e, "test_accuracy": e, "weight_std": [e, e]}


def test_tables_show_spread_only_with_several_seeds() -> None:
    one, two = _entry(0.9), _entry(0.9, 0.92)
    table = section_table("4", one)
    assert "±" not in table and "–" not in table and "0.9000" in table
    assert all(row.count("|") == 4 for row in table.splitlines())  # metric, report, ours
    assert "0.9100 ± 0.0141" in section_table("4", two) and "0.9000 – 0.9200" in section_table("4", two)
    assert "±" not in weight_table({"4": one, "6": one}, [3, 2, 1])
    assert "(mean 0.9100 ± 0.0141)" in weight_table({"4": two, "6": two}, [3, 2, 1])

    def row(e: dict) -> dict:
        return {"variant": "a", "label": "(a) ours", "key": "5", "test": e["test_accuracy"],
                "val": e["test_accuracy"], "steps": e["steps"], "best_val_cost": e["steps"]}

    assert "±" not in ablation_table([row(one)])
    assert "0.9100 ± 0.0141" in ablation_table([row(two)])


def test_default_out_is_a_new_folder_under_runs(mnist_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args([]).out is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduction, "_timestamp", lambda: "20240102-030405")  # every run in the same second
    taken = tmp_path / "runs" / "reproduce-20240102-030405"
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("not yours")
    args = ["--seeds", "1", "--sections", "4", "--no-ablation", "--max-steps", "1", "--data-dir", str(mnist_dir)]
    assert main(args) == 0
    assert main(args) == 0
    assert "runs/reproduce-20240102-030405-2" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "reproduce-20240102-030405", "reproduce-20240102-030405-2", "reproduce-20240102-030405-3"]
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]  # an existing folder is never written into
    for suffix in ("-2", "-3"):
        assert (tmp_path / "runs" / f"reproduce-20240102-030405{suffix}" / "REPORT.md").is_file()
    assert not (tmp_path / "docs").exists()

    # a name taken by another process between choosing it and creating it is not used either
    r = Reproduction(None, seeds=1, sections=("4",), ablation=False)
    assert r.out == tmp_path.joinpath("runs", "reproduce-20240102-030405-4").relative_to(tmp_path)
    r.out.mkdir()
    assert r.make_out().name == "reproduce-20240102-030405-5" and r.make_out() == r.out
    assert list(r.out.iterdir()) == []


def test_run_lines_fit_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _RunLines()
    lines.start -= 700.0  # 700 s for 7 runs: 100 s per run, 993 runs left
    record = {"seed": 99, "key": "bn-c", "steps": 1_234_567, "stopped_reason": "num_iterations",
              "test_accuracy": 0.91234, "train_seconds": 12_345.6}
    lines(7, 1_000, record)
    lines(1_000, 1_000, {**record, "stopped_reason": "early_stopping", "train_seconds": 0.42})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[   7/1000] seed 99 bn-c 1,234,567 steps, step cap, test 0.9123, 3.4 h")
    assert " ".join(" ".join(out[:-1]).split()).endswith("3.4 h; ~27.6 h left")  # wrapped at spaces
    assert out[-1] == "[1000/1000] seed 99 bn-c 1,234,567 steps, early stop, test 0.9123, 0.4 s"
    assert all(len(line) <= WIDTH for line in out)


def test_reproduce_cli_errors(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sections", "4,7", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sections" in err
    assert main(["--device", "tpu", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "y")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tpu" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_reproduce_output_folder_error(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["--seeds", "1", "--max-steps", "1", "--data-dir", str(mnist_dir), "--out", str(blocker / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker / "r") in err


def test_reproduction_settings_are_checked(tmp_path: Path) -> None:
    for kwargs in ({"seeds": 0}, {"threads": -1}, {"max_steps": 0}, {"sections": ("7",)}, {"sections": ()},
                   {"dtype": "float16"}):
        with pytest.raises(InputValidationError):
            Reproduction(tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()
    r = Reproduction(tmp_path / "r", seeds=3, sections=("6", "4"), ablation=True, max_steps=7)
    assert r.sections == ("4", "6")
    assert [s.key for s in r.specs] == ["4", "6", "bn-a", "bn-b", "bn-c"]
    assert all(s.config.num_iterations == 7 for s in r.specs) and r.total_runs == 15


def test_statistics() -> None:
    assert stats([]) == {"n": 0}
    assert stats([None, 2.0]) == {"n": 1, "mean": 2.0, "std": 0.0, "median": 2.0, "min": 2.0, "max": 2.0}
    s = stats([1.0, 2.0, 6.0])
    assert s["median"] == 2.0 and s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(7.0))
    checks = acceptance_checks({})
    assert len(checks) == 5 and all(c["passed"] is None and "—" in c["measured"] for c in checks)


def test_figures_reject_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="costs"):
        plot_cost_curve(tmp_path / "c.png", [1, 2, 3], [0.5, 0.4])
    with pytest.raises(InputValidationError, match="val_steps"):
        plot_cost_curve(tmp_path / "c.png", [1, 2], [0.5, 0.4], [0.6, 0.5], val_steps=[2])
    with pytest.raises(InputValidationError, match="layers"):
        plot_weight_histograms([np.zeros(3)], [np.zeros(3), np.zeros(3)], tmp_path / "w.png")
    with pytest.raises(InputValidationError, match="seed 4"):
        Curve([1, 2], [0.5], [], seed=4)
    assert issubclass(InputValidationError, BackendMLPError) and issubclass(InputValidationError, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_reproduce_options_reach_the_runs(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each option of ``backend-mlp reproduce`` changes what is trained, not only the parsed arguments."""
    import threadpoolctl

    limits: list[object] = []
    real_limits = threadpoolctl.threadpool_limits

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        limits.append(kwargs.get("limits", args[0] if args else None))
        return real_limits(*args, **kwargs)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", spy)
    out = tmp_path / "r"
    argv = ["--device", "array_api_strict", "--dtype", "float32", "--sections", "6,4", "--no-ablation", "--seeds", "2",
            "--max-steps", "30", "--threads", "2", "--data-dir", str(mnist_dir), "--out", str(out)]
    assert main(argv, prog="backend-mlp reproduce") == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert sorted({r["key"] for r in runs}) == ["4", "6"] and sorted({r["seed"] for r in runs}) == [0, 1]
    assert all(r["steps"] == 30 and r["dtype"] == "float32" and r["device"] == "array_api_strict" for r in runs)
    assert all(r["n_train"] == 480 for r in runs)  # the --data-dir files: 600 training images, 20% held out
    assert results["settings"]["threads"] == 2 and 2 in limits
    assert results["command"].startswith("backend-mlp reproduce --device array_api_strict")


def _numbers(results: dict) -> list[dict]:
    """Every run's record without its wall time."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in results["runs"]]


def test_reproduce_on_two_workers_is_identical_and_resumable(mnist_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The reproduction is a sweep: two local Dask workers give the runs one process gives, bit for bit, and the
    same command again rewrites the report from the finished runs without training."""
    from test_sweep import require_dask

    require_dask()
    base = ["--seeds", "2", "--sections", "4,5", "--max-steps", "150", "--data-dir", str(mnist_dir)]
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert _numbers(one) == _numbers(two) and len(one["runs"]) == 8
    assert [(r["key"], r["seed"]) for r in two["runs"]] == [(k, s) for s in (0, 1) for k in ("4", "5", "bn-b", "bn-c")]
    assert two["settings"]["workers"] == 2
    assert "runs on 2 worker processes" in (tmp_path / "two" / "REPORT.md").read_text()
    capsys.readouterr()

    from backend_mlp.runs import Run

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(Run, "execute", no_training)
    report = (tmp_path / "one" / "REPORT.md").read_bytes()
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    assert _numbers(json.loads((tmp_path / "one" / "results.json").read_text())) == _numbers(one)
    assert len(capsys.readouterr().out.splitlines()) > 8  # each run listed (from its folder)
    assert (tmp_path / "one" / "REPORT.md").read_bytes().split(b"## Results per section")[1] == report.split(
        b"## Results per section")[1]  # the same tables (the header has the date and wall time)


def test_a_reproduction_run_is_the_protocol_run(mnist_dir: Path, tmp_path: Path) -> None:
    """Each sweep run of the reproduction gives the record the protocol defines, computed here in memory:
    Section ``s``'s configuration with ``seed``, on the split drawn with ``split_seed=seed``."""
    from dataclasses import replace

    from backend_mlp.data import prepare_mnist
    from backend_mlp.experiment import run_experiment
    from backend_mlp.report.protocol import batch_statistics_accuracy

    r = Reproduction(tmp_path / "r", seeds=2, sections=("6",), ablation=True, max_steps=120, data_dir=str(mnist_dir))
    results = r.run()
    splits = prepare_mnist(str(mnist_dir), split_seed=1)
    checked = 0
    for record in results["runs"]:
        if record["seed"] != 1:
            continue
        spec = next(s for s in r.specs if s.key == record["key"])
        result, metrics = run_experiment(splits, replace(spec.config, seed=1))
        expected = {"key": spec.key, "label": spec.label, **metrics}
        expected["weight_std"] = [float(np.std(np.asarray(result.parameters[f"W{l}"], dtype=np.float64)))
                                  for l in range(1, len(spec.config.layer_dims))]
        if spec.config.batchnorm is not None:
            expected.update(batch_statistics_accuracy(result.parameters, spec.config.batchnorm, splits))
        got = {k: v for k, v in record.items() if k != "run_id"}
        assert got.keys() == expected.keys()
        assert {k: v for k, v in got.items() if k != "train_seconds"} == {
            k: v for k, v in expected.items() if k != "train_seconds"}, spec.key
        checked += 1
    assert checked == 4  # 6, bn-a, bn-b, bn-c
