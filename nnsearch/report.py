"""The end of a study: its best trial in the terminal, on the MLflow parent run, and as a YAML
config that reproduces it (``python -m nnsearch --config-path DIR --config-name best_config``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.search_space import SearchSpace
from nnsearch.storage import redact

log = logging.getLogger("nnsearch")


def output_dir() -> Path:
    """Hydra's run folder when running under Hydra, else ``./outputs``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        path = Path("outputs")
        path.mkdir(exist_ok=True)
        return path


def best_config(cfg: DictConfig, params: dict[str, Any], number: int = 0) -> DictConfig:
    """The study's config with the best trial's values applied: one trial, no search left.

    Trial N trains with torch seed ``seed + N``; the export's ``seed`` is set to that value (after
    every interpolation of the original seed, such as ``cv.seed``, is resolved) so that its single
    trial 0 repeats the best trial exactly.
    """
    best = SearchSpace.apply(cfg, params)
    OmegaConf.update(best, "search_space", {}, merge=False)
    OmegaConf.update(best, "study.name", f"{cfg.study.name}-best", merge=False)
    OmegaConf.update(best, "study.n_trials", 1, merge=False)
    OmegaConf.update(best, "tracking.experiment", f"{cfg.study.name}-best", merge=False)
    if best.study.storage:
        OmegaConf.update(best, "study.storage", redact(best.study.storage), merge=False)
    resolved = OmegaConf.create(OmegaConf.to_container(best, resolve=True))
    resolved.seed = int(cfg.seed) + number
    return resolved


def finish(cfg: DictConfig, study: Any, tracker: Any, p: dict[str, Any], *, reason: str, seconds: float) -> None:
    """Print the summary, export the best config and close the parent run as FINISHED."""
    from optuna.trial import TrialState

    from nnsearch.study import best_trial

    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best = best_trial(study)
    metric = p["metric"]
    lines = [
        "",
        f"Study '{study.study_name}' ({reason}) in {seconds:.1f} s: "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed trials.",
    ]
    metrics: dict[str, float] = {}
    texts: dict[str, str] = {}
    if best is None:
        lines.append("No trial completed, so there is no best configuration.")
    else:
        lines.append(f"Best trial {best.number}: {metric} = {best.value:.4f} ({p['direction']})")
        for name, value in best.params.items():
            lines.append(f"  {name} = {value}")
        lines.append("Cross-validated metrics (mean ± std over folds):")
        for key, value in best.user_attrs.items():
            if key.startswith("cv/") and not key.endswith("_std"):
                std = best.user_attrs.get(f"{key}_std", float("nan"))
                lines.append(f"  {key[3:]:<10} {value:.4f} ± {std:.4f}")
                metrics[f"best/{key[3:]}"] = value
                metrics[f"best/{key[3:]}_std"] = std
        exported = best_config(cfg, best.params, best.number)
        path = output_dir() / "best_config.yaml"
        text = OmegaConf.to_yaml(exported)
        path.write_text(text)
        texts["best_config.yaml"] = text
        lines.append(f"Best configuration: {path}")
        lines.append(f"  reproduce: python -m nnsearch --config-path {path.parent.resolve()} --config-name best_config")
    tags = {"state": "finished", "stop_reason": reason, "trials.complete": counts["complete"], "trials.pruned": counts["pruned"], "trials.failed": counts["fail"]}
    if best is not None:
        tags["best_trial"] = best.number
    tracker.close_parent("FINISHED", metrics=metrics, tags=tags, texts=texts)
    lines.append(f"Optuna storage: {redact(cfg.study.storage) if cfg.study.storage else 'optuna.journal'} (study '{study.study_name}')")
    lines.append(f"MLflow: {tracker.uri}, {tracker.run_url()}; browse with `mlflow ui`" + (f" --backend-store-uri {tracker.uri}" if tracker.uri != "sqlite:///mlflow.db" else ""))
    print("\n".join(lines), flush=True)
