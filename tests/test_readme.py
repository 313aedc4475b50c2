"""Every ```python block of README.md runs, in order, in one namespace, so the README cannot drift.

On real MNIST when ``BACKEND_MLP_DATA`` names it (CI sets it), on small synthetic
MNIST files otherwise (written here and pointed to by the same variable).
Host-only by nature: the README's examples choose their own backend.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import SELECTED_BACKENDS
from synthetic_mnist import write_synthetic_mnist

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    """The contents of the ```python fenced blocks of ``text``, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_readme_has_python_blocks() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3 and all("bm." in b for b in blocks)


@pytest.mark.skipif(
    "numpy" not in SELECTED_BACKENDS, reason="the examples choose their own (NumPy) backend: run in the NumPy session"
)
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    if not os.environ.get("BACKEND_MLP_DATA"):
        (tmp_path / "mnist").mkdir()
        data = write_synthetic_mnist(tmp_path / "mnist", n_train=3000, n_test=500)
        monkeypatch.setenv("BACKEND_MLP_DATA", str(data))
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(tmp_path / "cache"))  # never download in a test
    monkeypatch.chdir(tmp_path)  # files the examples save land here
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, block in enumerate(python_blocks(README.read_text()), start=1):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    accuracies = [float(a) for a in re.findall(r"test accuracy (\d\.\d+)", printed)]
    assert len(accuracies) == 3, printed
    assert accuracies[1] > 0.8 and accuracies[2] > 0.8, printed  # trained to convergence: clearly learned
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "classifier.npz").is_file()
