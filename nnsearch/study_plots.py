"""Optuna's study plots as PNG files for the parent run, drawn once when the study ends.

``plots/optimization_history.png``, ``param_importances.png``, ``parallel_coordinate.png``,
``contour.png``, ``slice.png`` and, for a multi-objective study, ``pareto_front.png``. They come
from ``optuna.visualization.matplotlib`` (PNG decodes anywhere and needs no JavaScript or
network in the MLflow UI, unlike plotly's HTML). A plot that does not apply (importances with
one complete trial, a contour with one parameter) is skipped, not an error: the study's result
must never depend on a figure.

With several objectives, history, importances, parallel coordinates, contour and slice show the
pick metric (``report.pareto_pick``); the Pareto front shows two or three objectives.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("nnsearch")
CONTOUR_PARAMS = 3  # a contour grid grows with the square of the parameters: keep the most important ones
IMPORTANCE_TREES = 16  # fANOVA's forest: 64 trees (Optuna's default) take ~4x longer for the same ranking here


def write_study_plots(study: Any, out_dir: Path, *, metrics: list[str], pick: str | None = None, dpi: int = 80) -> list[Path]:
    """Draw every applicable plot of ``study`` under ``out_dir``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    pick = pick or metrics[0]
    k = metrics.index(pick) if pick in metrics else 0
    target: dict[str, Any] = {}
    if len(study.directions) > 1:
        target = {"target": lambda t: t.values[k], "target_name": pick}
    else:
        target = {"target_name": metrics[0]}
    params = list(dict.fromkeys(p for t in complete for p in t.params))
    varied = [p for p in params if len({repr(t.params.get(p)) for t in complete}) > 1]
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=IMPORTANCE_TREES, seed=0)
    important = _important_params(study, varied, target, evaluator)
    plots: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **target),
        "slice": lambda: ovm.plot_slice(study, params=varied, **target) if varied else None,
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, params=varied, **target) if varied else None,
        "param_importances": lambda: ovm.plot_param_importances(study, evaluator=evaluator, **target) if len(varied) >= 1 and len(complete) >= 2 else None,
        "contour": lambda: ovm.plot_contour(study, params=important[:CONTOUR_PARAMS], **target) if len(important) >= 2 else None,
    }
    if 2 <= len(study.directions) <= 3:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in plots.items():
        path = out_dir / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning, tight-layout and empty-axes notes
                axes = draw()
                if axes is None:
                    continue
                fig = _figure_of(axes)
                fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})
                plt.close(fig)
            written.append(path)
        except Exception as err:  # a plot must never fail the study
            log.debug("study plot %s skipped: %s", name, err)
            plt.close("all")
    return written


def _figure_of(axes: Any) -> Any:
    """Optuna returns an Axes or an array of them; the Figure either way."""
    import numpy as np

    if isinstance(axes, np.ndarray):
        return axes.flat[0].figure
    return axes.figure


def _important_params(study: Any, varied: list[str], target: dict[str, Any], evaluator: Any) -> list[str]:
    """``varied`` ordered by fANOVA importance, or as given when importances cannot be computed."""
    if len(varied) <= CONTOUR_PARAMS:
        return varied
    try:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied, target=target.get("target"))
        return [p for p in scores if p in varied]
    except Exception:  # too few trials, a constant objective, ...
        return varied
