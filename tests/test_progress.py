"""The training progress display: 80 columns on a terminal, honest about the step cap, a clean line after Ctrl-C."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from backend_mlp.cli import progress as progress_module
from backend_mlp.cli.progress import WIDTH, Progress, count, fit, format_duration
from backend_mlp.training import ProgressEvent


class FakeTerminal(io.StringIO):
    """A StringIO that says it is a terminal, so tqdm draws its bar into it."""

    def isatty(self) -> bool:
        return True


def _events(total: int, steps: range, n_train: int = 48_000) -> list[ProgressEvent]:
    return [ProgressEvent(step=s, epoch=s * 256 / n_train, train_cost=2.302585 / (1 + s / 1000),
                          val_cost=None if s == steps[0] else 1.234567e-1 * (1 + 1 / s),
                          elapsed_seconds=s / 1234, num_iterations=total) for s in steps]


def _rendered_lines(text: str) -> list[str]:
    """What a terminal shows over time: every piece between carriage returns and newlines."""
    return [line for line in re.split(r"[\r\n]", text) if line]


@pytest.mark.parametrize("total", [500, 30_000, 100_000, 2_500_000])
def test_bar_fits_80_columns_and_says_max_steps(total: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module.shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((200, 50)))
    out = FakeTerminal()
    progress = Progress(False, total, 0, file=out)  # a wide terminal still gets at most 80 columns
    events = _events(total, range(100, min(total, 15_000), 100))
    for event in events:
        progress(event)
    last_step = min(total, 12_345)
    progress(ProgressEvent(last_step, 12_345.6, float("nan"), 1.5e300, 99_999.0, total))  # wide numbers still fit
    progress.close()
    lines = _rendered_lines(out.getvalue())
    assert len(lines) >= len(events) + 2  # the start, every record step, the end
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert all(f"/{count(total)} max steps |" in line for line in lines)
    last = lines[-1]
    assert last.startswith(f"{count(last_step)}/{count(total)} max steps") and "val 1.5e+300" in last
    assert "ep 12345.6 train nan" in last
    assert out.getvalue().endswith("\n")


def test_bar_shows_steps_costs_and_a_resumed_start() -> None:
    out = FakeTerminal()
    progress = Progress(False, 10_000, 4_000, file=out, ncols=80)
    assert _rendered_lines(out.getvalue())[0].startswith("4,000/10k max steps |")
    progress(ProgressEvent(4_100, 21.87, 0.31234, 0.29876, 3.0, 10_000))
    line = _rendered_lines(out.getvalue())[-1]
    assert line.startswith("4,100/10k max steps |") and line.endswith("ep 21.9 train 0.312 val 0.299")
    progress.close()


def test_ctrl_c_leaves_a_clean_line() -> None:
    out = FakeTerminal()
    with pytest.raises(KeyboardInterrupt), Progress(False, 30_000, 0, file=out, ncols=80) as progress:
        for event in _events(30_000, range(100, 1_000, 100)):
            progress(event)
        raise KeyboardInterrupt
    print("train_mnist: interrupted", file=out)
    text = out.getvalue()
    assert text.endswith("\ntrain_mnist: interrupted\n")  # the next message starts at column 0
    final_bar = text.rsplit("\n", 2)[-3].rsplit("\r", 1)[-1]
    assert final_bar.startswith("900/30k max steps")
    progress.close()  # closing twice writes nothing more
    assert out.getvalue() == text


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    events = _events(30_000, range(100, 1_001, 100))
    with open(tmp_path / "log.txt", "w", encoding="utf-8") as f:
        progress = Progress(False, 30_000, 0, file=f)
        for event in events:
            progress(event)
        progress.close()
    lines = (tmp_path / "log.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events)  # one line per record step, no bar, no carriage returns
    assert lines[0] == "step 100  epoch 0.53  train 2.0933  val -  0.1s"
    assert lines[1].startswith("step 200  epoch 1.07  train 1.9188  val 0.1241  ")
    assert all(len(line) <= WIDTH and "\r" not in line for line in lines)


@pytest.mark.parametrize("stream", [FakeTerminal, io.StringIO])
def test_quiet_prints_nothing(stream: type[io.StringIO]) -> None:
    out = stream()
    with Progress(True, 1_000, 0, file=out) as progress:
        for event in _events(1_000, range(100, 1_001, 100)):
            progress(event)
    assert out.getvalue() == ""


def test_helpers() -> None:
    assert [count(n) for n in (0, 9_999, 10_000, 12_345, 100_000, 999_499, 2_500_000)] == [
        "0", "9,999", "10k", "12.3k", "100k", "999k", "2.5M"]
    assert [format_duration(s) for s in (0.43, 41.2, 192.0, 5_400.0)] == ["0.4 s", "41 s", "3.2 min", "1.5 h"]
    path = "/a/very/long/folder/name/that/must/not/be/broken/" + "x" * 60
    text = fit(f"reproduce_report: wrote {path}/REPORT.md, results.json and 3 figure(s) in 3.2 min")
    assert f"  {path}/REPORT.md," in text.split("\n")  # the path on a line of its own, unbroken
    assert all(len(line) <= WIDTH for line in fit("word " * 50).split("\n"))
