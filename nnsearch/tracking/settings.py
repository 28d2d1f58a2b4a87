"""What is tracked and reported (the ``tracking`` and ``report`` keys), built once from the config and checked eagerly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

PLOT_MODES = ("all", "complete", "none")
PROGRESS_MODES = ("auto", "live", "plain", "off")
KEEP_CHECKPOINTS = ("none", "best", "complete")


@dataclass(frozen=True)
class TrackingSettings:
    """Where MLflow runs go (``uri``, ``experiment``) and what each trial logs."""

    uri: str
    experiment: str
    log_config: bool = True
    trial_plots: str = "complete"
    epoch_metrics: tuple[str, ...] = ()
    keep_checkpoints: str = "none"  # the final weights of the best (or every complete) trial's folds, logged to its MLflow run

    def __post_init__(self) -> None:
        if self.trial_plots not in PLOT_MODES:
            raise NNSearchError(f"tracking.trial_plots must be one of {', '.join(PLOT_MODES)}, got {self.trial_plots!r}.")
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise NNSearchError(f"tracking.keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, got {self.keep_checkpoints!r}.")
        if not self.experiment:
            raise NNSearchError("tracking.experiment is empty; name the MLflow experiment (it defaults to study.name).")

    @property
    def absolute_uri(self) -> str:
        """``sqlite:///mlflow.db`` made absolute: MLflow caches stores by URI, so a relative one would
        keep pointing at the first directory it was opened in."""
        prefix = "sqlite:///"
        if self.uri.startswith(prefix) and not self.uri.startswith(prefix + "/"):
            return prefix + str(Path(self.uri[len(prefix):]).resolve())
        return self.uri

    @classmethod
    def from_config(cls, tracking: DictConfig) -> TrackingSettings:
        plots = tracking.get("trial_plots", "complete")
        epoch_metrics = tracking.get("epoch_metrics")
        return cls(uri=str(tracking.uri), experiment=str(tracking.experiment), log_config=bool(tracking.get("log_config", True)),
                   trial_plots="none" if plots in (None, False) else str(plots),
                   epoch_metrics=tuple(OmegaConf.to_container(epoch_metrics)) if epoch_metrics else (),
                   keep_checkpoints=str(tracking.get("keep_checkpoints") or "none"))


@dataclass(frozen=True)
class ReportSettings:
    """The terminal display and the study's report (``report``)."""

    progress: str = "auto"
    top_k: int = 10
    study_plots: bool = True
    pareto_pick: str | None = None

    def __post_init__(self) -> None:
        if self.progress not in PROGRESS_MODES:
            raise NNSearchError(f"report.progress must be one of {', '.join(PROGRESS_MODES)}, got {self.progress!r}.")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise NNSearchError(f"report.top_k must be a positive integer, got {self.top_k!r}.")

    @classmethod
    def from_config(cls, report: DictConfig) -> ReportSettings:
        progress = report.get("progress", "auto")
        return cls(progress="off" if progress is False else str(progress), top_k=report.get("top_k", 10), study_plots=bool(report.get("study_plots", True)),
                   pareto_pick=report.get("pareto_pick"))
