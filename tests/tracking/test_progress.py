"""The live progress line fits the terminal it is drawn on, counts a resumed study's earlier
trials and measures time from when the caller says the command started."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from nnsearch.tracking.progress import Progress, terminal_columns


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _running(clock, **kwargs):
    """20 trials, 7 done 41 s in, trial 7 in its second fold."""
    progress = Progress(total=20, metrics=["accuracy"], directions=["maximize"], folds=5, epochs=20, mode="live", stream=io.StringIO(), refresh=0, clock=clock, **kwargs)
    for number in range(7):
        progress.trial_started(number)
        progress.trial_finished(number, "COMPLETE", 0.9 + number / 1000 if number != 4 else 0.9712)
    clock.now += 41
    progress.trial_started(7)
    progress.epoch_end(1, 11, {"val/loss": 0.2, "val/accuracy": 0.9531})
    return progress


def test_the_full_line_when_it_fits():
    progress = _running(Clock(), started=1000.0)
    assert progress.line(160) == "[ 7/20] best accuracy 0.9712 (trial 4) | trial 7: fold 2/5 epoch 12/20 val/accuracy 0.9531 | 41 s elapsed, ~76 s left"


@pytest.mark.parametrize("width", [30, 40, 50, 60, 70, 80, 90, 100, 110])
def test_a_narrow_line_drops_whole_words_least_useful_first(width):
    progress = _running(Clock(), started=1000.0)
    words = lambda text: text.replace("|", " ").replace(":", " ").replace(",", " ").split()  # noqa: E731
    full = words(progress.line(None))
    line = progress.line(width)
    assert len(line) <= width
    assert line.startswith("[ 7/20]")  # the count is always there
    assert all(word in full for word in words(line)), line  # no cut word
    if width >= 40:
        assert "~76 s left" in line and "0.9712" in line, line
    if width < 110:
        assert "0.9531" not in line  # the epoch's metric is the first to go


def test_dropping_order_at_60_and_80_columns():
    progress = _running(Clock(), started=1000.0)
    assert progress.line(80) == "[ 7/20] best accuracy 0.9712 | trial 7: fold 2/5 epoch 12/20 | ~76 s left"
    assert progress.line(61) == "[ 7/20] best accuracy 0.9712 | trial 7: fold 2/5 | ~76 s left"
    assert progress.line(60) == "[ 7/20] best accuracy 0.9712 | trial 7 | ~76 s left"
    assert progress.line(40) == "[ 7/20] best 0.9712 | ~76 s left"


def test_the_live_line_uses_the_terminal_width(monkeypatch):
    out = io.StringIO()
    progress = _running(Clock(), started=1000.0)
    progress.stream = out
    monkeypatch.setenv("COLUMNS", "62")  # the last column is left free
    progress.epoch_end(1, 12, {"val/loss": 0.2, "val/accuracy": 0.95})
    assert out.getvalue().rsplit("\r\033[K", 1)[-1] == "[ 7/20] best accuracy 0.9712 | trial 7: fold 2/5 | ~76 s left"
    monkeypatch.setenv("COLUMNS", "200")
    assert terminal_columns(out) == 200


def test_elapsed_counts_from_the_start_the_caller_gives():
    clock = Clock(1000.0)
    progress = Progress(total=4, metrics=["rmse"], directions=["minimize"], mode="plain", stream=io.StringIO(), clock=clock, started=981.0)
    clock.now = 1043.0  # 19 s of start-up before the progress existed, 43 s since
    assert progress.time_text() == "62 s elapsed"
    progress.trial_finished(0, "COMPLETE", 1.5)
    assert progress.time_text() == "62 s elapsed, ~186 s left"


def test_the_time_left_counts_the_trials_not_the_start_up():
    clock = Clock(1000.0)
    progress = Progress(total=4, metrics=["rmse"], directions=["minimize"], mode="plain", stream=io.StringIO(), clock=clock, started=970.0)
    progress.trial_started(0)  # 30 s of imports, smoke test and stores before the first trial
    clock.now = 1010.0
    progress.trial_finished(0, "COMPLETE", 1.5)
    assert progress.time_text() == "40 s elapsed, ~30 s left"  # 10 s a trial, 3 to go


def test_a_resumed_study_counts_its_earlier_trials_in_best_so_far():
    earlier = [
        SimpleNamespace(number=0, state=SimpleNamespace(name="COMPLETE"), values=[0.95]),
        SimpleNamespace(number=1, state=SimpleNamespace(name="PRUNED"), values=None),
        SimpleNamespace(number=2, state=SimpleNamespace(name="COMPLETE"), values=[0.91]),
    ]
    progress = Progress(total=6, done=3, metrics=["accuracy"], directions=["maximize"], mode="plain", stream=io.StringIO(), trials=earlier)
    assert progress.best_text() == "best accuracy 0.9500 (trial 0)"
    progress.trial_finished(3, "COMPLETE", 0.93)  # this run's best is worse than the study's
    assert progress.best_text() == "best accuracy 0.9500 (trial 0)"
    pareto = Progress(total=6, metrics=["accuracy", "n_params"], directions=["maximize", "minimize"], mode="plain", stream=io.StringIO(),
                      trials=[SimpleNamespace(number=0, state=SimpleNamespace(name="COMPLETE"), values=[0.9, 100.0])])  # fmt: skip
    pareto.trial_finished(1, "COMPLETE", (0.8, 10.0))
    assert pareto.best_text() == "Pareto front 2 trial(s)"
