"""Every ```python block of README.md runs, in order, in one namespace, and so does every ``backend-mlp``
command of its ```bash blocks, in between, so the README cannot drift.

On real MNIST when ``BACKEND_MLP_DATA`` names it (CI sets it), on small synthetic
MNIST files otherwise.  Fashion-MNIST and KMNIST cannot be downloaded on a test
machine: small synthetic stand-ins take their place (in sub-folders of the data
folder, with the registry's digests replaced by the stand-ins'), so the commands
that name them run the real code path on other files.  Commands run in-process
through ``backend_mlp.cli.main`` with ``$VARIABLES`` expanded; other shell lines
(``pip install``, ``nox``) are not run here.  Host-only by nature: the README's
examples choose their own backend.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import shlex
from pathlib import Path
from types import MappingProxyType

import pytest
from conftest import SELECTED_BACKENDS
from synthetic_mnist import write_synthetic_mnist

import backend_mlp.data.sources as sources
from backend_mlp.cli.main import main
from backend_mlp.data import DATASETS

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    """The contents of the ```python fenced blocks of ``text``, in order."""
    return [body for kind, body in BLOCK.findall(text) if kind == "python"]


def commands(body: str) -> list[list[str]]:
    """The ``backend-mlp`` command lines of a bash block, as argument lists (variables expanded)."""
    return [shlex.split(os.path.expandvars(line))[1:] for line in body.splitlines() if line.startswith("backend-mlp ")]


def test_readme_has_python_blocks_and_commands() -> None:
    text = README.read_text()
    assert len(python_blocks(text)) >= 5 and all("bm." in b for b in python_blocks(text))
    assert sum(len(commands(body)) for kind, body in BLOCK.findall(text) if kind == "bash") >= 5


def _data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder: MNIST's files (the real ones linked, else synthetic) plus stand-ins in named sub-folders."""
    folder = tmp_path / "data"
    folder.mkdir()
    real = os.environ.get("BACKEND_MLP_DATA")
    if real:
        for path in Path(real).iterdir():
            if "ubyte" in path.name:
                (folder / path.name).symlink_to(path.resolve())
    else:
        write_synthetic_mnist(folder, n_train=3000, n_test=500)
    stand_ins = dict(DATASETS)
    for seed, name in enumerate(("fashion-mnist", "kmnist"), start=1):
        (folder / name).mkdir()
        sub = write_synthetic_mnist(folder / name, n_train=2000, n_test=300, seed=seed)
        contents = {p.name.removesuffix(".gz"): gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
                    for p in sub.iterdir()}
        digests = {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}
        stand_ins[name] = dataclasses.replace(DATASETS[name], sha256=digests, sha256_gz={}, mirrors=())
    monkeypatch.setattr(sources, "DATASETS", MappingProxyType(stand_ins))
    return folder


@pytest.mark.skipif(
    "numpy" not in SELECTED_BACKENDS, reason="the examples choose their own (NumPy) backend: run in the NumPy session"
)
def test_readme_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("BACKEND_MLP_DATA", str(_data_folder(tmp_path, monkeypatch)))
    monkeypatch.setenv("BACKEND_MLP_CACHE", str(tmp_path / "cache"))  # never download in a test
    monkeypatch.chdir(tmp_path)  # files the examples save land here
    namespace: dict[str, object] = {"__name__": "readme"}
    ran = []
    for i, (kind, body) in enumerate(BLOCK.findall(README.read_text()), start=1):
        if kind == "python":
            exec(compile(body, f"README.md block {i}", "exec"), namespace)  # noqa: S102
            continue
        for argv in commands(body):
            status = main([*argv, "--quiet"] if argv[0] == "train" else argv)
            assert status == 0, (argv, capsys.readouterr().err)
            ran.append(argv[0])
    printed = capsys.readouterr().out
    accuracies = [float(a) for a in re.findall(r"test accuracy (\d\.\d+)", printed)]
    assert len(accuracies) == 5, printed
    assert all(a > 0.8 for a in accuracies[1:]), printed  # trained to convergence: clearly learned
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "classifier.npz").is_file()
    assert sorted(set(ran)) == ["predict", "reproduce", "sweep", "train"]
    assert (tmp_path / "runs" / "sweep" / "SUMMARY.md").is_file()
    for run in ("adam", "fashion", "kmnist", "shapes"):
        assert (tmp_path / "runs" / run / "report.md").is_file(), run
    assert "Ankle boot" in (tmp_path / "runs" / "fashion" / "report.md").read_text()
    assert len(list((tmp_path / "runs").glob("reproduce-*/REPORT.md"))) == 1
