"""``scripts/gpu_check.sh`` where no GPU is: its help, its usage errors and its one-line refusal.

The check itself needs an NVIDIA GPU (see docs/gpu.md); here it must fail fast and clearly.
A stand-in ``nvidia-smi`` first on ``PATH`` makes the outcome the same on every machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(tmp_path: Path, *args: str, gpu_listed: bool) -> subprocess.CompletedProcess[str]:
    """The script, run in ``tmp_path``, with a stand-in ``nvidia-smi`` that lists one GPU or none."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Stand-in (UUID: GPU-0)'\n" if gpu_listed else
                   "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 9\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, timeout=60).returncode == 0


def test_help_says_how_to_prepare_the_wheels(tmp_path: Path) -> None:
    result = run(tmp_path, "--help", gpu_listed=False)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: bash scripts/gpu_check.sh --wheels DIR")
    assert "pip download --only-binary=:all:" in result.stdout and "array-api-compat" in result.stdout


def test_without_a_gpu_it_fails_fast_with_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "--wheels", str(tmp_path), gpu_listed=False)
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == (
        "gpu_check: no NVIDIA GPU found (nvidia-smi is missing or lists no GPU); "
        "run this on a machine with an NVIDIA GPU\n"
    )
    assert not (tmp_path / "gpu_check_results").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "gpu_check: --wheels DIR is required (see --help for the command that prepares it)\n"),
        (("--wheels", "nowhere"), "gpu_check: --wheels: received 'nowhere'; expected a folder of wheels\n"),
        (("--frobnicate",), "gpu_check: unknown argument '--frobnicate' (see --help)\n"),
        (("--wheels",), "gpu_check: --wheels needs a folder\n"),
    ],
    ids=["no-wheels", "missing-folder", "unknown-argument", "wheels-without-folder"],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run(tmp_path, *args, gpu_listed=True)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_relative_folders_are_the_callers_and_missing_packages_are_one_line(tmp_path: Path) -> None:
    """``--wheels wheels --out res`` name folders where the command runs, not in the checkout; a Python that
    cannot import what the check needs stops it with exit status 2 before any test runs."""
    (tmp_path / "wheels").mkdir()
    python = tmp_path / "bin" / "python-without-packages"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\ncat >/dev/null\necho 'cannot import array_api_compat (stand-in)' >&2\nexit 1\n")
    python.chmod(0o755)
    result = run(tmp_path, "--wheels", "wheels", "--out", "res", "--python", str(python), gpu_listed=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith(
        f"gpu_check: the packages from {tmp_path / 'wheels'} are not enough for {python} (above); add the missing "
        "wheels with the command in --help\n"
    )
    assert "cannot import array_api_compat (stand-in)" in result.stderr
    assert (tmp_path / "res").is_dir() and not (SCRIPT.parents[1] / "res").exists()


def _acceptance():  # the results summary's function, taken from the script's embedded Python
    text = SCRIPT.read_text()
    namespace: dict = {}
    exec(text[text.index("def per_step(record, side):"):text.index("figures = acceptance(")], namespace)
    return namespace["acceptance"]


def _record(workload: str, dtype: str, fastest: str, **us: float) -> dict:
    return {"part": "steps", "workload": workload, "dtype": dtype, "fastest_backend_mlp": fastest,
            **{side: {"us_per_step_median": v} for side, v in us.items()}}


def test_the_results_state_the_issues_gpu_figures() -> None:
    """The fastest backend_mlp path over PyTorch CUDA eager per report record, and the CPU's train() over the
    fastest GPU path on the wide network at batch 1024; nothing where a record is missing."""
    acceptance = _acceptance()
    gpu = {"results": [
        _record("report", "float32", "backend_mlp jax.jit", backend_mlp=90.0, torch=120.0,
                **{"backend_mlp jax.jit": 60.0}),
        _record("wide2048-b1024", "float32", "backend_mlp torch.compile", backend_mlp=900.0,
                **{"backend_mlp torch.compile": 500.0}),
    ]}
    cpu = {"results": [_record("wide2048-b1024", "float32", "backend_mlp", backend_mlp=12_500.0)]}
    figures = acceptance(gpu, cpu)
    assert [round(f["value"], 6) for f in figures] == [0.5, 25.0]
    assert "(backend_mlp jax.jit) / PyTorch CUDA eager" in figures[0]["what"] and figures[0]["target"] == "<= 1.0"
    assert "(backend_mlp torch.compile)" in figures[1]["what"] and figures[1]["target"] == ">= 20"
    assert acceptance(gpu, None) == figures[:1]  # no CPU reference: no speed-up figure
    assert acceptance(None, cpu) == []
