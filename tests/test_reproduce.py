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

from backend_mlp.cli.reproduce import main
from backend_mlp.errors import BackendMLPError, InputValidationError
from backend_mlp.report import Reproduction
from backend_mlp.report.figures import Curve, plot_cost_curve, plot_weight_histograms
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

    expected = {"REPORT.md", "results.json", "cost_curves.png", "weights_plain_vs_l2.png", "batchnorm_ablation.png"}
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # files.atomic_write_bytes writes through ".<name>.<random>.part" in the target folder
    assert not list(out.glob(".*.part")), "temporary files left behind"
    assert {p.name for p in out.iterdir()} == expected
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
