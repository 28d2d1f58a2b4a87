"""Optuna's study plots as PNG files for the parent run, drawn once when the study ends.

``plots/optimization_history.png``, ``param_importances.png``, ``parallel_coordinate.png``,
``contour.png``, ``slice.png`` and, for a multi-objective study, ``pareto_front.png``. They come
from ``optuna.visualization.matplotlib`` (PNG decodes anywhere and needs no JavaScript or
network in the MLflow UI, unlike plotly's HTML). A plot that does not apply (importances with
one complete trial, a contour with one parameter) is skipped, not an error: the study's result
must never depend on a figure.

With several objectives, history, importances, parallel coordinates, contour and slice show the
pick metric (``report.pareto_pick``); the Pareto front shows two or three objectives.

Optuna draws each figure at matplotlib's default 6.4 x 4.8 in, whatever it holds; here each is
resized to its content (the importance bars grow with the parameters, the slice and parallel
coordinates with their axes, the contour grid with its cells), laid out by matplotlib's
constrained layout so that no label is cut at the edge, and saved at 100 dpi with text of at
least 8 pt, readable at the pixel size the MLflow artifact viewer shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("nnsearch")
CONTOUR_PARAMS = 3  # a contour grid grows with the square of the parameters: keep the most important ones
MIN_FONT = 8.0  # points
IMPORTANCE_TREES = 16  # fANOVA's forest: 64 trees (Optuna's default) take ~4x longer for the same ranking here


def write_study_plots(study: Any, out_dir: Path, *, metrics: list[str], pick: str | None = None) -> list[Path]:
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
    counted = frozenset(p for t in complete for p, d in t.distributions.items() if isinstance(d, optuna.distributions.IntDistribution))
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
            # Optuna's matplotlib plots call plt.style.use("ggplot"): keep it from restyling this process's later figures
            with warnings.catch_warnings(), plt.rc_context():
                warnings.simplefilter("ignore")  # ExperimentalWarning, tight-layout and empty-axes notes
                axes = draw()
                if axes is None:
                    continue
                fig = _figure_of(axes)
                size = fit_to_content(fig, name, n_params=len(varied) if name != "contour" else len(important[:CONTOUR_PARAMS]), counted=counted)
                if name in ("parallel_coordinate", "contour"):
                    _best_dark(fig, flip="target" in target and study.directions[k].name == "MAXIMIZE", lines=name == "parallel_coordinate")
                save_laid_out(fig, path, size)
                plt.close(fig)
            written.append(path)
        except Exception as err:  # a plot must never fail the study
            log.debug("study plot %s skipped: %s", name, err)
            plt.close("all")
    return written


def write_stored_study_plots(storage_url: str | None, study_name: str, out_dir: Path, *, metrics: list[str], pick: str | None = None) -> list[Path]:
    """:func:`write_study_plots` of the study as stored, for another process on this machine (a
    fold process, idle once the trials are done, draws them while the study's process retrains
    the final model: see :func:`nnsearch.study.report.finish`)."""
    import optuna

    from nnsearch.storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    return write_study_plots(study, out_dir, metrics=metrics, pick=pick)


def fit_to_content(fig: Any, name: str, *, n_params: int, counted: frozenset[str] = frozenset()) -> tuple[float, float]:
    """Size an Optuna figure to what it shows; returns the size (width, height) in inches, for
    :func:`save_laid_out`.

    Sizes in inches: a row per parameter for the importances, a column per axis for the slice
    and the parallel coordinates, square cells for the contour grid. Log axes that span less
    than two decades get ticks at 1, 2 and 5, and less than one a few plain ticks (Optuna's minor
    labels there overlap); fonts below
    ``MIN_FONT`` are raised to it. Axes labelled ``Trial`` or with a name in ``counted`` (integer
    parameters) get whole-number ticks: Optuna's read 0.25, 0.5 for trial numbers.
    """
    from matplotlib.ticker import MaxNLocator

    n = max(n_params, 1)
    size = {
        "param_importances": (7.0, 1.2 + 0.4 * n),
        "slice": (2.6 * n + 1.4, 3.4),
        "parallel_coordinate": (1.3 * (n + 1) + 2.0, 4.6),
        "contour": (2.6 * n + 1.6, 2.4 * n + 0.8) if n > 2 else (6.0, 4.6),
    }.get(name, (7.0, 4.6))
    fig.set_size_inches(*size)
    _raise_small_fonts(fig)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            _readable_log_ticks(axis)
            if axis.get_scale() == "linear" and axis.get_label_text() in counted | {"Trial"}:
                axis.set_major_locator(MaxNLocator(integer=True))
    return size


def _best_dark(fig: Any, *, flip: bool, lines: bool) -> None:
    """Colours where the best trials are dark, as in a one-objective study, and no line white.

    Optuna colours by value with ``Blues`` (dark = high) for a maximized objective, but takes any
    ``target`` (here: the pick metric of a multi-objective study) as one to minimize: ``flip``
    turns those colour maps back for a maximized pick. The parallel coordinates' lines start at
    white, invisible on the white panel (``lines``): the map's lightest fifth is left out.
    """
    import numpy as np
    from matplotlib.colors import ListedColormap, to_rgb

    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue  # a colour bar follows its plot's mappable
        for mappable in ax.collections:
            cmap = mappable.get_cmap() if mappable.get_array() is not None else None
            if cmap is None:
                continue
            if flip:
                cmap = cmap.reversed()
            if lines:
                light_first = sum(to_rgb(cmap(0.0))) > sum(to_rgb(cmap(1.0)))
                cmap = ListedColormap(cmap(np.linspace(0.2, 1.0, 256) if light_first else np.linspace(0.0, 0.8, 256)))
            if flip or lines:
                mappable.set_cmap(cmap)


def save_laid_out(fig: Any, path: Path, size: tuple[float, float]) -> Path:
    """Save laid out by constrained layout, so that no label is cut, or where it fails, with
    margins by hand. Laid out and drawn once, as it is saved: a layout pass of its own before
    (``draw_without_rendering``) drew every study plot one more time."""
    from nnsearch.tracking import trial_plots

    try:
        fig.set_layout_engine("constrained")
        return trial_plots.save_png(fig, path)
    except (ZeroDivisionError, ValueError, RuntimeError):  # the parallel coordinates' twinned axes
        fig.set_layout_engine("none")
        _place_by_hand(fig, *size)
        return trial_plots.save_png(fig, path)


def _raise_small_fonts(artist: Any) -> None:
    """Texts under ``MIN_FONT`` raised to it; tick labels through their axis' tick settings.

    Not ``findobj(Text)``: that asks every axis for all its ticks, creating the minor ticks of
    each log axis, about a fifth of a contour grid's CPU; one tick per axis tells the size.
    """
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    for child in artist.get_children():
        if isinstance(child, Axis):
            for which, ticks in (("major", child.majorTicks), ("minor", child.minorTicks)):
                if ticks[0].label1.get_fontsize() < MIN_FONT:
                    child.set_tick_params(which=which, labelsize=MIN_FONT)
            texts = [child.label, child.offsetText]
        elif isinstance(child, Text):
            texts = [child]
        else:
            _raise_small_fonts(child)
            continue
        for text in texts:
            if text.get_fontsize() < MIN_FONT:
                text.set_fontsize(MIN_FONT)


def _place_by_hand(fig: Any, width: float, height: float) -> None:
    """Margins in inches for a figure constrained layout cannot handle: the main axes and its
    twins (one per parameter) in the middle, names below at an angle, any colorbar on the right."""
    main = fig.axes[0]
    twins = main.get_shared_x_axes().get_siblings(main)
    left, right, bottom, top = 0.9, 2.0, 1.1, 0.5
    box = [left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height]
    for ax in twins:
        ax.set_position(box)
    for ax in fig.axes:
        if ax not in twins:  # the colorbar
            ax.set_position([1 - (right - 0.9) / width, box[1], 0.2 / width, box[3]])
    for label in main.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")


def _readable_log_ticks(axis: Any) -> None:
    import math

    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    if axis.get_scale() != "log":
        return
    lo, hi = sorted(axis.get_view_interval())
    if lo <= 0:
        return
    axis.set_minor_formatter(NullFormatter())
    decades = math.log10(hi / lo)
    if decades < 1:  # 1, 2, 5 would leave one tick, and matplotlib then labels every unit as 1.9x10^1, 2x10^1, ...
        axis.set_major_locator(MaxNLocator(nbins=4))
        axis.set_major_formatter(ScalarFormatter())
    elif decades < 2:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))


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
