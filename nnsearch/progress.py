"""What the terminal shows while a study runs: trials done/total, best so far, the running trial.

Two displays, chosen by ``report.progress``:

- ``live`` (``auto`` on a terminal): one status line at the bottom, redrawn at most every
  ``refresh`` seconds and cleared before any log record prints, so the per-trial log lines scroll
  above it::

      [ 7/20] best accuracy 0.9712 (trial 4) | trial 7: fold 2/5 epoch 12/20 val/accuracy 0.9531 | 41 s, ~76 s left

- ``plain`` (``auto`` when output goes to a file, a pipe or CI): no control characters and nothing
  per epoch; one line per finished trial with the count, the best so far and the time left::

      progress: 7/20 trials, best accuracy 0.9712 (trial 4), 41 s elapsed, ~76 s left

- ``off``: nothing.

The calls (cheap; every method returns at once when there is nothing to draw)::

    progress = Progress.from_config(cfg, total=n_trials, done=n_done, metrics=[...], directions=[...], folds=k)
    progress.trial_started(number)            # objective, before the first fold
    progress.epoch_end(fold, epoch, row)      # after each validation epoch (row: the history row)
    progress.trial_finished(number, state, values)   # objective, after tracking
    progress.close()                          # study end or interruption
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
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
        mode: ``auto``, ``live``, ``plain`` or ``off``.
        stream: where to draw (stderr by default: stdout stays clean for the summary).
        refresh: minimum seconds between two redraws of the live line.
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
    ) -> None:
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.total, self.done, self.done_at_start = total, done, done
        self.metrics, self.signs = list(metrics), [1.0 if d == "minimize" else -1.0 for d in directions]
        self.folds, self.epochs, self.refresh = folds, epochs, refresh
        self.started = time.monotonic()
        self.best: tuple[int, tuple[float, ...]] | None = None
        self.front: list[tuple[int, tuple[float, ...]]] = []
        self.current: int | None = None
        self.where = ""
        self._shown = False
        self._last_draw = 0.0
        self._filter: _ClearLine | None = None
        if self.mode == "live":
            self._filter = _ClearLine(self)
            for handler in logging.getLogger().handlers + logging.getLogger("nnsearch").handlers:
                handler.addFilter(self._filter)

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> Progress:
        """``report.progress`` from the composed config (``auto`` when absent)."""
        from omegaconf import OmegaConf

        mode = OmegaConf.select(cfg, "report.progress", default="auto") or "auto"
        kwargs.setdefault("epochs", int(OmegaConf.select(cfg, "trainer.max_epochs", default=0) or 0))
        return cls(mode=str(mode), **kwargs)

    # -- events -------------------------------------------------------------------------------

    def trial_started(self, number: int) -> None:
        self.current, self.where = number, "starting"
        self._draw(force=True)

    def epoch_end(self, fold: int, epoch: int, row: Mapping[str, float]) -> None:
        if self.mode != "live":
            return
        shown = next((k for k in row if k.startswith("val/") and k != "val/loss"), "val/loss")
        value = row.get(shown)
        fold_part = f"fold {fold + 1}/{self.folds} " if self.folds else f"fold {fold + 1} "
        epoch_part = f"epoch {epoch + 1}/{self.epochs}" if self.epochs else f"epoch {epoch + 1}"
        self.where = fold_part + epoch_part + (f" {shown} {value:.4f}" if isinstance(value, (int, float)) else "")
        self._draw()

    def trial_finished(self, number: int, state: str, values: float | Sequence[float] | None = None) -> None:
        if state in ("COMPLETE", "PRUNED"):
            self.done += 1
        if state == "COMPLETE" and values is not None:
            self._record(number, (values,) if isinstance(values, (int, float)) else tuple(values))
        self.current, self.where = None, ""
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

    def best_text(self) -> str:
        if len(self.metrics) > 1:
            return f"Pareto front {len(self.front)} trial(s)" if self.front else "no complete trial yet"
        if self.best is None:
            return "no complete trial yet"
        return f"best {self.metrics[0]} {self.best[1][0]:.4f} (trial {self.best[0]})"

    def time_text(self) -> str:
        elapsed = time.monotonic() - self.started
        ran = self.done - self.done_at_start
        text = f"{elapsed:.0f} s elapsed"
        if ran and self.done < self.total:
            text += f", ~{elapsed / ran * (self.total - self.done):.0f} s left"
        return text

    def line(self) -> str:
        width = len(str(self.total))
        parts = [f"[{self.done:>{width}}/{self.total}] {self.best_text()}"]
        if self.current is not None:
            parts.append(f"trial {self.current}: {self.where}")
        parts.append(self.time_text())
        return " | ".join(parts)

    # -- drawing ------------------------------------------------------------------------------

    def _draw(self, *, force: bool = False) -> None:
        if self.mode != "live":
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.refresh:
            return
        self._last_draw = now
        columns = _columns()
        self._write("\r\033[K" + self.line()[: columns - 1])
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


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 120


class _ClearLine(logging.Filter):
    """Clears the live line before a log record is printed; the next event redraws it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress._clear()
        return True
