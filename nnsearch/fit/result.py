"""What one fold's fit produced: its per-epoch history, validation metrics and outputs.

Apart from the fit itself (:mod:`nnsearch.fit.fold`), so that the study's own process, which only
receives results from the fold processes, never imports Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nnsearch.fit.predictions import Predictions


@dataclass
class FoldResult:
    index: int
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: Predictions | None = None  # validation outputs for the per-trial plots
    restored_epochs: int = 0  # epochs read back from a checkpoint of an earlier attempt (nnsearch.fit.checkpoint)
    restored_whole: bool = False  # the whole fold was read back: it had finished in an earlier attempt

    @property
    def epochs(self) -> int:
        return len(self.history)
