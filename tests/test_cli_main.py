"""``backend-mlp <command>``: the dispatcher, ``python -m backend_mlp``, the console script and the aliases.

One test starts real processes (``python -m backend_mlp``, the ``backend-mlp``
entry point named in pyproject.toml, ``scripts/predict.py``); the rest call
:func:`backend_mlp.cli.main.main` in-process.  Host-only: nothing here trains.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import backend_mlp
from backend_mlp.cli import bench as bench_cli
from backend_mlp.cli import predict as predict_cli
from backend_mlp.cli import reproduce as reproduce_cli
from backend_mlp.cli import sweep as sweep_cli
from backend_mlp.cli import train as train_cli
from backend_mlp.cli.main import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
MODULES = {"train": train_cli, "reproduce": reproduce_cli, "sweep": sweep_cli, "bench": bench_cli,
           "predict": predict_cli}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _console_script(name: str) -> str:
    """``module:function`` of a ``[project.scripts]`` entry of pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    table = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    match = re.search(rf'^{re.escape(name)}\s*=\s*"([\w.]+):(\w+)"', table, re.MULTILINE)
    assert match, f"pyproject.toml has no [project.scripts] entry {name!r}"
    return f"{match.group(1)}:{match.group(2)}"


def test_processes_python_m_console_script_and_alias():
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, *argv], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    # python -m backend_mlp --help: every command, one line each
    done = run("-m", "backend_mlp", "--help")
    assert done.returncode == 0, done.stderr
    for name in ("train", "reproduce", "bench", "predict"):
        assert re.search(rf"^  {name}\s+\S", done.stdout, re.MULTILINE), done.stdout
    # the backend-mlp console script as an installer generates it (module:function from pyproject.toml)
    module, function = _console_script("backend-mlp").split(":")
    assert _console_script("backend-mlp-train") == "backend_mlp.cli.main:train_main"  # the old name stays
    wrapper = f"import sys; from {module} import {function}; sys.argv[0] = 'backend-mlp'; sys.exit({function}())"
    done = run("-c", wrapper, "bench", "--repeats", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "backend-mlp bench: error: --repeats, --steps, --n-train, --n-test: expected positive integers"
    ]
    # scripts/predict.py: a thin alias
    done = run(str(REPO / "scripts" / "predict.py"), "--help")
    assert done.returncode == 0 and "--batch-size" in done.stdout, done.stderr


def test_help_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: backend-mlp <command>")
    listed = re.findall(r"^  (\w+)  +(.+)$", out, re.MULTILINE)
    assert [name for name, _ in listed] == list(COMMANDS) == ["train", "reproduce", "sweep", "bench", "predict"]
    assert all(len(line) > 20 for _, line in listed)
    assert main(["help"]) == 0 and capsys.readouterr().out == out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"backend-mlp {backend_mlp.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["trian"], "unknown command 'trian' (did you mean 'train'?)"), (["--frob"], "unknown option '--frob'"),
     (["help", "nope"], "unknown command 'nope'")],
)
def test_unknown_command_is_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("backend-mlp: error: ") and needle in lines[0]
    assert "train, reproduce, sweep, bench, predict" in lines[0]


def test_no_command_shows_the_commands_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "predict" in err and err.splitlines()[-1].startswith("backend-mlp: error: no command given")


@pytest.mark.parametrize("name", ["train", "reproduce", "sweep", "bench", "predict"])
def test_each_command_gets_the_rest_of_the_line_and_its_name(monkeypatch, name):
    calls = []

    def fake_main(argv=None, *, prog="?"):
        calls.append((argv, prog))
        return 7

    monkeypatch.setattr(MODULES[name], "main", fake_main)
    assert main([name, "--device", "cpu", "x y"]) == 7
    assert calls == [(["--device", "cpu", "x y"], f"backend-mlp {name}")]


@pytest.mark.parametrize(
    ("name", "argv", "needle"),
    [
        ("train", ["--lr", "-1"], "--lr"),
        ("reproduce", ["--seeds", "0"], "--seeds"),
        ("bench", ["--parts", "nope"], "--parts"),
        ("predict", ["only-one"], "INPUT"),
    ],
)
def test_errors_name_the_command(capsys, name, argv, needle):
    assert main([name, *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"backend-mlp {name}: error: ") and needle in lines[0], lines


@pytest.mark.parametrize("name", ["bench", "predict"])
def test_help_of_a_command_shows_every_default(capsys, name):
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: backend-mlp {name} ")
    options = text.split("options:\n", 1)[1]
    entries = [" ".join(e.split()) for e in re.split(r"\n(?=  -)", options) if e.strip()]
    parser = MODULES[name].build_parser()
    flags = [a.option_strings[-1] for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(entries) == len(flags) + 1  # + --help
    for flag in flags:
        entry = next(e for e in entries if re.match(rf"(-\w, )?{re.escape(flag)}\b", e))
        assert "default" in entry, entry
    assert main(["help", name]) == 0 and capsys.readouterr().out == text
