"""The test matrix: one session per backend, their agreement, and lint.

Plain ``nox`` runs everything a CPU-only machine can run.  The CuPy session
installs nothing and skips itself (with the reason) where ``nvidia-smi``
finds no GPU.  The PyTorch session runs by default only where pip can see a
CPU-only PyTorch wheel locally (``torch-*+cpu*.whl`` in pip's find-links), so
plain ``nox`` never pulls multi-gigabyte CUDA wheels; elsewhere run it on
purpose with ``nox -s tests-torch`` (it then uses PyTorch's CPU index).

Environment: ``BACKEND_MLP_DATA`` (folder with the four MNIST files) enables
the real-data tests; they skip without it.  Extra pytest arguments go after
``--``, e.g. ``nox -s tests-numpy -- -k gradients``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox

nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = False

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TORCH_VERSION = "2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_PYTEST = ["-m", "not slow", "-p", "no:cacheprovider"]


def _pip_find_links() -> list[str]:
    """Folders pip is configured to look in for local wheels (``find-links``)."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            links.extend(value.strip("'\"").split())
    return [link.removeprefix("file://") for link in links]


def local_cpu_torch_wheel() -> str | None:
    """Path of a local CPU-only PyTorch wheel for this Python, if pip can see one."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in _pip_find_links():
        hits = sorted(glob.glob(os.path.join(folder, f"torch-{TORCH_VERSION}+cpu-{tag}-*.whl")))
        if hits:
            return hits[-1]
    return None


def has_cuda_gpu() -> bool:
    """True when ``nvidia-smi`` lists at least one GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


TORCH_WHEEL = local_cpu_torch_wheel()


def _install(session: nox.Session, *extra: str, extras: tuple[str, ...] = ()) -> None:
    """The project with its test extra (plus ``extras``) in editable mode, and ``extra`` requirements."""
    session.install("-e", f".[{','.join(('test', *extras))}]", *extra)


def _pytest(session: nox.Session, backends: str, *paths: str, extra_env: dict[str, str] | None = None) -> None:
    # one BLAS/OpenMP thread: the test matrices are tiny, and on a busy machine
    # spinning BLAS threads make them many times slower
    env = {"BACKEND_MLP_TEST_BACKENDS": backends, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    if "BACKEND_MLP_DATA" in os.environ:
        env["BACKEND_MLP_DATA"] = os.path.abspath(os.environ["BACKEND_MLP_DATA"])
    env.update(extra_env or {})
    session.run("pytest", *DEFAULT_PYTEST, *paths, *session.posargs, env=env)


@nox.session(name="tests-numpy", python=PYTHON, tags=["cpu"])
def tests_numpy(session: nox.Session) -> None:
    """The whole suite on NumPy (CPU), including data, CLI, estimator, a short real MNIST run and the
    Dask sweeps (which must run here: ``BACKEND_MLP_REQUIRE_SWEEP`` turns their skip into a failure)."""
    _install(session, extras=("sweep",))
    _pytest(session, "numpy", extra_env={"BACKEND_MLP_REQUIRE_SWEEP": "1"})


@nox.session(name="tests-array_api_strict", python=PYTHON, tags=["cpu"])
def tests_array_api_strict(session: nox.Session) -> None:
    """The whole suite on array-api-strict, which rejects anything outside the standard."""
    _install(session)
    _pytest(session, "array_api_strict")


@nox.session(name="tests-torch", python=PYTHON, tags=["cpu"], default=TORCH_WHEEL is not None)
def tests_torch(session: nox.Session) -> None:
    """The whole suite on PyTorch (CPU), benchmark machinery included; opt-in where no local CPU wheel exists."""
    if TORCH_WHEEL is not None:
        _install(session, TORCH_WHEEL)
    else:
        session.install(f"torch=={TORCH_VERSION}", "--index-url", TORCH_CPU_INDEX)
        _install(session)
    _pytest(session, "torch")


@nox.session(name="tests-jax", python=PYTHON, tags=["cpu"])
def tests_jax(session: nox.Session) -> None:
    """The whole suite on JAX (CPU, float64 enabled), compiled steps (``jax.jit``) included, and the
    benchmark's hand-written jax.jit and scikit-learn sides."""
    _install(session, extras=("jax", "bench"))
    _pytest(session, "jax", extra_env={"JAX_PLATFORMS": "cpu"})


@nox.session(name="tests-cupy", python=PYTHON, tags=["gpu"])
def tests_cupy(session: nox.Session) -> None:
    """The numeric tests on CuPy (GPU); skipped with a reason where there is no CUDA device."""
    if not has_cuda_gpu():
        session.skip("no CUDA device available (nvidia-smi found no GPU): CuPy tests not run")
    _install(session, os.environ.get("BACKEND_MLP_CUPY", "cupy-cuda12x"))
    _pytest(session, "cupy", *NUMERIC_TESTS)


@nox.session(name="agreement", python=PYTHON, tags=["cpu"])
def agreement(session: nox.Session) -> None:
    """Every available backend against NumPy (forward, gradients, a 50-step SGD trajectory) and the update
    rules against torch.optim on every backend; JAX always (it installs from the registry)."""
    backends = ["numpy", "array_api_strict", "jax"]
    extra = []
    if TORCH_WHEEL is not None:
        extra.append(TORCH_WHEEL)
        backends.append("torch")
    if has_cuda_gpu():
        extra.append(os.environ.get("BACKEND_MLP_CUPY", "cupy-cuda12x"))
        backends.append("cupy")
    _install(session, *extra, extras=("jax",))
    _pytest(session, ",".join(backends), "tests/test_backend_agreement.py", "tests/test_optimizers.py",
            extra_env={"JAX_PLATFORMS": "cpu"})


@nox.session(python=PYTHON, tags=["cpu"])
def lint(session: nox.Session) -> None:
    """ruff on the package, scripts, tests and this file."""
    session.install("ruff")
    session.run("ruff", "check", "backend_mlp", "scripts", "tests", "noxfile.py")


NUMERIC_TESTS = (
    "tests/test_backend.py",
    "tests/test_gradients.py",
    "tests/test_backend_agreement.py",
    "tests/test_numerics.py",
    "tests/test_validation.py",
    "tests/test_estimator.py",
    "tests/test_properties.py",
    "tests/test_step.py",
    "tests/test_optimizer_seam.py",
    "tests/test_optimizers.py",
    "tests/test_training_loop.py",
    "tests/test_resume.py",
    "tests/test_checkpoint.py",
    "tests/test_blas_threads.py",
    "tests/test_cli_train.py",
)
