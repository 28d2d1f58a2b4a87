"""What the terminal shows while a study runs: trials done/total, best so far, the running trial.

Two displays, chosen by ``report.progress``:

- ``live`` (``auto`` on a terminal): one status line at the bottom, redrawn at most every
  ``refresh`` seconds and cleared before any log record prints, so the per-trial log lines scroll
  above it::

      [ 7/20] best accuracy 0.9712 (trial 4) | trial 7: fold 2/5 epoch 12/20 val/accuracy 0.9531 | 41 s elapsed, ~76 s left

  It fits the terminal's width (read at every redraw, so a resized window is followed): the
  least useful words go first, whole (the epoch's metric, the best trial's number, the elapsed
  time, the epoch, the fold, ...), never a cut word::

      [ 7/20] best accuracy 0.9712 | trial 7: fold 2/5 | ~76 s left        (a 62-column terminal)

- ``plain`` (``auto`` when output goes to a file, a pipe or CI): no control characters and nothing
  per epoch; one line per finished trial with the count, the best so far and the time left::

      progress: 7/20 trials, best accuracy 0.9712 (trial 4), 41 s elapsed, ~76 s left

- ``off``: nothing.

The calls (cheap; every method returns at once when there is nothing to draw)::

    progress = Progress(mode=report.progress, total=n_trials, done=n_done, metrics=[...], directions=[...], folds=k,
                                    trials=study.get_trials(deepcopy=False), started=time_the_command_started)
    progress.trial_started(number)            # objective, before the first fold
    progress.epoch_end(fold, epoch, row)      # after each validation epoch (row: the history row)
    progress.trial_finished(number, state, values)   # objective, after tracking
    progress.close()                          # study end or interruption
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

MODES = ("auto", "live", "plain", "off")
_CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "TF_BUILD")


def resolve_mode(mode: str, stream: TextIO) -> str:
    """``auto`` becomes ``live`` on an interactive terminal outside CI, else ``plain``."""
    if mode not in MODES:
        from nnsearch.errors import NNSearchError

        raise NNSearchError(f"report.progress must be one of {', '.join(MODES)}, got {mode!r}.")
    if mode != "auto":
        return mode
    interactive = getattr(stream, "isatty", lambda: False)() and os.environ.get("TERM", "") != "dumb"
    in_ci = any(os.environ.get(name) for name in _CI_VARIABLES)
    return "live" if interactive and not in_ci else "plain"


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    return all(s * x <= s * y for x, y, s in zip(a, b, signs)) and any(s * x < s * y for x, y, s in zip(a, b, signs))


class Progress:
    """Progress of one study in one process (see the module docstring).

    Args:
        total: ``study.n_trials``; done: trials already finished (a resumed study).
        metrics, directions: the objectives, to show the best value (or the Pareto front size).
        folds, epochs: to show "fold f/F epoch e/E".
        trials: the study's trials so far (Optuna ``FrozenTrial``s): after a resume, "best so
            far" counts the earlier runs' complete trials too.
        started: when the command started, in ``clock``'s seconds (``time.time()`` by default), so
            that "elapsed" agrees with the summary's "done in" (default: now).
        mode: ``auto``, ``live``, ``plain`` or ``off``.
        stream: where to draw (stderr by default: stdout stays clean for the summary).
        refresh: minimum seconds between two redraws of the live line.
        clock: seconds now (tests pass their own); columns: the live line's width (default: the
            terminal's, read at each redraw).
    """

    def __init__(
        self,
        *,
        total: int,
        metrics: Sequence[str],
        directions: Sequence[str],
        done: int = 0,
        folds: int = 0,
        epochs: int = 0,
        mode: str = "auto",
        stream: TextIO | None = None,
        refresh: float = 0.2,
        trials: Sequence[Any] = (),
        started: float | None = None,
        clock: Callable[[], float] = time.time,
        columns: int | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.total, self.done, self.done_at_start = total, done, done
        self.metrics, self.signs = list(metrics), [1.0 if d == "minimize" else -1.0 for d in directions]
        self.folds, self.epochs, self.refresh = folds, epochs, refresh
        self.clock, self.columns = clock, columns
        self.started = clock() if started is None else started
        self.trials_started: float | None = None  # when this run's first trial began: the time left counts trials, not start-up
        self.best: tuple[int, tuple[float, ...]] | None = None
        self.front: list[tuple[int, tuple[float, ...]]] = []
        for trial in trials:  # a resumed study's earlier trials
            if getattr(trial.state, "name", trial.state) == "COMPLETE" and trial.values:
                self._record(trial.number, tuple(trial.values))
        self.current: int | None = None
        self.where: list[str] = []  # fold, epoch, metric: dropped from the end when the line is too long
        self._shown = False
        self._last_draw = 0.0
        self._filter: _ClearLine | None = None
        if self.mode == "live":
            self._filter = _ClearLine(self)
            for handler in logging.getLogger().handlers + logging.getLogger("nnsearch").handlers:
                handler.addFilter(self._filter)

    # -- events -------------------------------------------------------------------------------

    def trial_started(self, number: int) -> None:
        if self.trials_started is None:
            self.trials_started = self.clock()
        self.current, self.where = number, ["starting"]
        self._draw(force=True)

    def epoch_end(self, fold: int, epoch: int, row: Mapping[str, float]) -> None:
        if self.mode != "live":
            return
        shown = next((k for k in row if k.startswith("val/") and k != "val/loss"), "val/loss")
        value = row.get(shown)
        fold_part = f"fold {fold + 1}/{self.folds} " if self.folds else f"fold {fold + 1} "
        epoch_part = f"epoch {epoch + 1}/{self.epochs}" if self.epochs else f"epoch {epoch + 1}"
        self.where = [fold_part.strip(), epoch_part] + ([f"{shown} {value:.4f}"] if isinstance(value, (int, float)) else [])
        self._draw()

    def trial_finished(self, number: int, state: str, values: float | Sequence[float] | None = None) -> None:
        if state in ("COMPLETE", "PRUNED"):
            self.done += 1
        if state == "COMPLETE" and values is not None:
            self._record(number, (values,) if isinstance(values, (int, float)) else tuple(values))
        self.current, self.where = None, []
        if self.mode == "plain":
            self._write(f"progress: {self.done}/{self.total} trials, {self.best_text()}, {self.time_text()}\n")
        else:
            self._draw(force=True)

    def close(self) -> None:
        """Remove the live line and the logging filter."""
        self._clear()
        if self._filter is not None:
            for handler in logging.getLogger().handlers + logging.getLogger("nnsearch").handlers:
                handler.removeFilter(self._filter)
            self._filter = None

    # -- text ---------------------------------------------------------------------------------

    def _record(self, number: int, values: tuple[float, ...]) -> None:
        if not all(math.isfinite(v) for v in values):
            return
        if len(values) == 1:
            if self.best is None or self.signs[0] * values[0] < self.signs[0] * self.best[1][0]:
                self.best = (number, values)
            return
        if any(_dominates(v, values, self.signs) or v == values for _, v in self.front):
            return
        self.front = [(n, v) for n, v in self.front if not _dominates(values, v, self.signs)] + [(number, values)]

    def best_forms(self) -> list[str]:
        """The best-so-far text, longest first."""
        if len(self.metrics) > 1:
            return [f"Pareto front {len(self.front)} trial(s)", f"front {len(self.front)}"] if self.front else ["no complete trial yet"]
        if self.best is None:
            return ["no complete trial yet"]
        (number, (value,)), metric = self.best, self.metrics[0]
        return [f"best {metric} {value:.4f} (trial {number})", f"best {metric} {value:.4f}", f"best {value:.4f}"]

    def best_text(self) -> str:
        return self.best_forms()[0]

    def time_forms(self) -> list[str]:
        """``41 s elapsed, ~76 s left``, then ``~76 s left``."""
        now = self.clock()
        elapsed = max(0.0, now - self.started)
        ran = self.done - self.done_at_start
        if ran and self.done < self.total:
            per_trial = max(0.0, now - (self.trials_started if self.trials_started is not None else self.started)) / ran
            left = f"~{per_trial * (self.total - self.done):.0f} s left"
            return [f"{elapsed:.0f} s elapsed, {left}", left]
        return [f"{elapsed:.0f} s elapsed"]

    def time_text(self) -> str:
        return self.time_forms()[0]

    def line(self, width: int | None = None) -> str:
        """The live line, fitted to ``width`` columns (no limit when None): the least useful
        words are dropped first, whole; a word is never cut."""
        count = f"[{self.done:>{len(str(self.total))}}/{self.total}]"
        trial = [f"trial {self.current}: " + " ".join(self.where[:k]) if k else f"trial {self.current}" for k in range(len(self.where), -1, -1)] if self.current is not None else []
        forms = {"best": self.best_forms() + [""], "trial": trial + [""], "time": self.time_forms() + [""]}
        pick = dict.fromkeys(forms, 0)

        def render() -> str:
            head = " ".join(p for p in (count, forms["best"][pick["best"]]) if p)
            return " | ".join(p for p in (head, forms["trial"][pick["trial"]], forms["time"][pick["time"]]) if p)

        # least useful first: the epoch's metric, the best trial's number, the elapsed time, the
        # epoch, the fold, the best's metric name, then whole parts (the trial, the time, the best)
        order = ["trial", "best", "time", "trial", "trial", "best", "trial", "trial", "time", "time", "best", "best", "best"]
        text = render()
        for name in order:
            if width is None or len(text) <= width:
                break
            pick[name] = min(pick[name] + 1, len(forms[name]) - 1)
            text = render()
        if width is not None and len(text) > width:
            text = text[: width + 1].rsplit(" ", 1)[0] if " " in text[:width] else text[:width]
        return text

    # -- drawing ------------------------------------------------------------------------------

    def _draw(self, *, force: bool = False) -> None:
        if self.mode != "live":
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.refresh:
            return
        self._last_draw = now
        columns = self.columns or terminal_columns(self.stream)
        self._write("\r\033[K" + self.line(columns - 1))  # the last column would wrap on some terminals
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self._write("\r\033[K")
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the study
            self.mode = "off"


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` draws on; ``COLUMNS`` when set, else 80 when unknown.

    The stream's own terminal first (stdout may be redirected while stderr is not), then
    ``shutil.get_terminal_size``, which reads ``COLUMNS`` and stdout's terminal.
    """
    if not os.environ.get("COLUMNS"):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            pass
    return shutil.get_terminal_size().columns


class _ClearLine(logging.Filter):
    """Clears the live line before a log record is printed; the next event redraws it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress._clear()
        return True
