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
least 8 pt, readable at the pixel size the MLflow artifact viewer shows. Parameter names show
in full (Optuna cuts them at 20 characters in the parallel coordinates), broken after dots
where a panel is too narrow; integer parameters get whole-number ticks, categories their plain
values, and a tick label that would touch its neighbour is left out.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("nnsearch")
CONTOUR_PARAMS = 2  # the two most important parameters, one panel: three drew a grid of 3 pairs for 4-5x the CPU (the study plots' largest share)
MIN_FONT = 8.0  # points
PARALLEL_NAME_CHARS = 20  # the parallel coordinates' names, turned under their axes: lines up to this long
IMPORTANCE_TREES = 16  # fANOVA's forest: 64 trees (Optuna's default) take ~4x longer for the same ranking here


# the plots in two groups of about equal drawing time, for two processes (measured on a 6-parameter study)
PLOT_GROUPS = (("param_importances", "contour", "optimization_history"), ("slice", "parallel_coordinate", "pareto_front"))


def write_study_plots(study: Any, out_dir: Path, *, metrics: list[str], pick: str | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """Draw every applicable plot of ``study`` (or those named in ``only``) under ``out_dir``; returns the files written."""
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
    contoured = functools.cache(lambda: _important_params(study, varied, target, evaluator)[:CONTOUR_PARAMS])  # fANOVA: only for the contour
    plots: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **target),
        "slice": lambda: ovm.plot_slice(study, params=varied, **target) if varied else None,
        "parallel_coordinate": lambda: ovm.plot_parallel_coordinate(study, params=varied, **target) if varied else None,
        "param_importances": lambda: ovm.plot_param_importances(study, evaluator=evaluator, **target) if len(varied) >= 1 and len(complete) >= 2 else None,
        "contour": lambda: ovm.plot_contour(study, params=contoured(), **target) if len(contoured()) >= 2 else None,
    }
    if 2 <= len(study.directions) <= 3:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=metrics)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in plots.items():
        if only is not None and name not in only:
            continue
        path = out_dir / f"{name}.png"
        try:
            # Optuna's matplotlib plots call plt.style.use("ggplot"): keep it from restyling this process's later figures
            with warnings.catch_warnings(), plt.rc_context():
                warnings.simplefilter("ignore")  # ExperimentalWarning, tight-layout and empty-axes notes
                axes = draw()
                if axes is None:
                    continue
                fig = _figure_of(axes)
                size = fit_to_content(fig, name, n_params=len(varied) if name != "contour" else len(contoured()), counted=counted, names=varied)
                if name in ("parallel_coordinate", "contour"):
                    _best_dark(fig, flip="target" in target and study.directions[k].name == "MAXIMIZE", lines=name == "parallel_coordinate")
                save_laid_out(fig, path, size, constrained=name != "parallel_coordinate")
                plt.close(fig)
            written.append(path)
        except Exception as err:  # a plot must never fail the study
            log.debug("study plot %s skipped: %s", name, err)
            plt.close("all")
    return written


def write_stored_study_plots(storage_url: str | None, study_name: str, out_dir: Path, *, metrics: list[str], pick: str | None = None,
                             only: Sequence[str] | None = None) -> list[Path]:
    """:func:`write_study_plots` of the study as stored, for another process on this machine (a
    fold process, idle once the trials are done, draws them while the study's process retrains
    the final model: see :func:`nnsearch.study.report.finish`)."""
    import optuna

    from nnsearch.storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    return write_study_plots(study, out_dir, metrics=metrics, pick=pick, only=only)


def fit_to_content(fig: Any, name: str, *, n_params: int, counted: frozenset[str] = frozenset(), names: Sequence[str] = ()) -> tuple[float, float]:
    """Size an Optuna figure to what it shows; returns the size (width, height) in inches, for
    :func:`save_laid_out`.

    Sizes in inches: a row per parameter for the importances, a column per axis for the slice
    and the parallel coordinates, square cells for the contour grid. Log axes that span less
    than two decades get ticks at 1, 2 and 5, and less than one a few plain ticks; on every
    numeric axis a tick label that would touch its neighbour is left out (:func:`_thinned`);
    fonts below ``MIN_FONT`` are raised to it. Axes labelled ``Trial`` or with a name in
    ``counted`` (integer parameters) get whole-number ticks: Optuna's read 0.25, 0.5 for trial
    numbers. Axis labels longer than their panel are wrapped after a dot; the parallel
    coordinates get the full names of ``names`` (:func:`_name_parallel_axes`).
    """
    n = max(n_params, 1)
    size = {
        "param_importances": (7.0, 1.2 + 0.4 * n),
        "slice": (2.6 * n + 1.4, 3.4),
        "parallel_coordinate": (1.3 * (n + 1) + 2.0, 4.6),
        "contour": (2.6 * n + 1.6, 2.4 * n + 0.8) if n > 2 else (5.2, 4.2),
    }.get(name, (7.0, 4.6))
    fig.set_size_inches(*size)
    panel = {  # a panel's width and height in inches as laid out (margins, colour bar and spacing off)
        "slice": (2.3, 2.6),
        "contour": (1.9, 1.8) if n > 2 else (size[0] - 2.5, size[1] - 1.5),
    }.get(name, (size[0] - 2.0, size[1] - 1.5))
    _raise_small_fonts(fig)
    twins = _name_parallel_axes(fig, names) if name == "parallel_coordinate" else {}
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            whole = axis.get_label_text() in counted | {"Trial"} or (axis is ax.yaxis and twins.get(ax) in counted)
            _readable_ticks(axis, whole=whole)
        if ax.get_label() != "<colorbar>":
            _wrap_axis_labels(ax, panel)
    return size


def _name_parallel_axes(fig: Any, names: Sequence[str]) -> dict[Any, str]:
    """The parallel coordinates' axes named in full, turned and wrapped after dots; returns each
    twinned axes (one per parameter, with no label of its own) with its parameter's name.

    Optuna cuts names of 20 characters or more to 17 and "..." (``optimizer.weight_...``) and
    puts the objective first, then the parameters in sorted order: a label that is a sorted
    name, or its start and "...", stands for it (two names cut alike keep their own by their
    order). A twin's right spine stands at the x tick of its parameter, at ``(i + 1) / n`` of
    the main axes' width.
    """
    main = fig.axes[0]
    ticks = list(main.get_xticks())
    labels = [label.get_text() for label in main.get_xticklabels()]
    full = labels[:1] + sorted(names)
    if len(full) != len(labels) or not all(name == label or (label.endswith("...") and name.startswith(label[:-3])) for label, name in zip(labels, full)):
        full = labels  # not labelled as this Optuna version does: left as they are
    main.set_xticks(ticks, [_wrapped(label, PARALLEL_NAME_CHARS) for label in full], rotation=30, ha="right", rotation_mode="anchor")
    twins = {}
    last = len(ticks) - 1
    for ax in main.get_shared_x_axes().get_siblings(main):
        if ax is main or last < 1:
            continue
        position = ax.spines["right"].get_position()
        if isinstance(position, tuple) and position[0] == "axes":
            where = position[1]
            i = round(where * last)
            if 0 < i <= last and abs(where * last - i) < 1e-6:
                twins[ax] = full[i]
    return twins


def _wrapped(name: str, width: int) -> str:
    """``name`` in lines of at most ``width`` characters where it can be, broken after dots."""
    *heads, tail = name.split(".")
    lines = []
    for part in [h + "." for h in heads] + [tail]:
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(lines)


def _wrap_axis_labels(ax: Any, panel: tuple[float, float]) -> None:
    """An axis label longer than its side of the ``panel`` (inches) broken after dots, so that it
    does not run under the next panel's label (``model.task_weights.progression`` in a slice)."""
    for axis, room in ((ax.xaxis, panel[0] * 72), (ax.yaxis, panel[1] * 72)):
        text = axis.label.get_text()
        if "." not in text or "\n" in text:
            continue
        wide = _text_size(text, axis.label.get_fontproperties())[0]
        if wide > room:
            axis.label.set_text(_wrapped(text, max(int(room / (wide / len(text))), 1)))
            axis.label.set_multialignment("center")


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


def save_laid_out(fig: Any, path: Path, size: tuple[float, float], *, constrained: bool = True) -> Path:
    """Save laid out by constrained layout, so that no label is cut, or where it fails, with
    margins by hand. Laid out and drawn once, as it is saved: a layout pass of its own before
    (``draw_without_rendering``) drew every study plot one more time. ``constrained=False``
    goes to the margins by hand at once, for the parallel coordinates, whose twinned axes
    constrained layout always fails on (after most of its work)."""
    from nnsearch.tracking import trial_plots

    if constrained:
        try:
            fig.set_layout_engine("constrained")
            return trial_plots.save_png(fig, path)
        except (ZeroDivisionError, ValueError, RuntimeError):  # the parallel coordinates' twinned axes
            pass
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
    twins (one per parameter) in the middle, names below at an angle (as high and, for the
    first, as far out to the left as they reach), any colorbar on the right."""
    main = fig.axes[0]
    twins = main.get_shared_x_axes().get_siblings(main)
    for label in main.get_xticklabels():
        if not label.get_rotation():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    names = [label.get_window_extent(fig.canvas.get_renderer()) for label in main.get_xticklabels() if label.get_text()]
    pad = 0.15  # inches: the tick and its gap to the name
    below = max((box.height / fig.dpi for box in names), default=0.6) + pad
    first = names[0].width / fig.dpi + 0.1 if names else 0.0
    left, right, bottom, top = max(0.9, first), 2.0, max(1.1, below), 0.5
    box = [left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height]
    for ax in twins:
        ax.set_position(box)
    for ax in fig.axes:
        if ax not in twins:  # the colorbar
            ax.set_position([1 - (right - 0.9) / width, box[1], 0.2 / width, box[3]])


def _readable_ticks(axis: Any, *, whole: bool) -> None:
    """An axis' ticks as :func:`fit_to_content` describes them; ``whole``: whole numbers only."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullFormatter

    _readable_log_ticks(axis, whole=whole)
    if whole and axis.get_scale() == "linear" and not isinstance(axis.get_major_locator(), FixedLocator):  # fixed: Optuna's own ticks for a missing value
        axis.set_major_locator(MaxNLocator(integer=True))
    formatter = axis.get_major_formatter()
    if axis.axes.get_label() == "<colorbar>" or isinstance(formatter, (FixedFormatter, NullFormatter, _spaced_formatter())):
        return  # names and category values are never left out; shared axes share their formatter
    categories = isinstance(formatter, StrCategoryFormatter)
    axis.set_major_formatter(_spaced_formatter()(formatter, thin=not categories, unquote=categories))


@functools.cache
def _spaced_formatter() -> type:
    """A Formatter class (matplotlib imported on first use) that shows another's labels, with
    the quotes taken off string categories (``unquote``: Optuna's slice plot draws their
    ``repr``, 'relu') and, with ``thin``, without those that would touch (:func:`_thinned`)."""
    import ast

    from matplotlib.ticker import Formatter

    class Spaced(Formatter):
        def __init__(self, inner: Any, *, thin: bool, unquote: bool) -> None:
            self.inner, self.thin, self.unquote = inner, thin, unquote

        def set_axis(self, axis: Any) -> None:
            super().set_axis(axis)
            self.inner.set_axis(axis)

        def set_locs(self, locs: Any) -> None:
            super().set_locs(locs)
            self.inner.set_locs(locs)

        def __call__(self, x: Any, pos: Any = None) -> str:
            return self._plain(self.inner(x, pos))

        def format_ticks(self, values: Any) -> list[str]:
            labels = [self._plain(text) for text in self.inner.format_ticks(values)]
            return _thinned(self.axis, values, labels) if self.thin and self.axis is not None else labels

        def get_offset(self) -> str:
            return self.inner.get_offset()

        def format_data(self, value: Any) -> str:
            return self.inner.format_data(value)

        def format_data_short(self, value: Any) -> str:
            return self.inner.format_data_short(value)

        def _plain(self, text: str) -> str:
            if self.unquote and text[:1] in ("'", '"'):
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    return text
                return value if isinstance(value, str) else text
            return text

    return Spaced


def _thinned(axis: Any, values: Any, labels: list[str]) -> list[str]:
    """``labels`` without those that would come closer than half a letter to one shown: the
    shortest first (10^0 before 2x10^0, 0 before 0.25), each shown where it has room.

    Measured as drawn: called as the axis is drawn, after the layout has placed it, with the
    label's font. On a log axis labels bunch at one end (0.0006 and 0.0008 where 0.0002 and
    0.0004 have room), and a narrow panel has room for few.
    """
    ax = axis.axes
    horizontal = axis is ax.xaxis
    lo, hi = sorted(axis.get_view_interval())
    candidates = [i for i, (v, text) in enumerate(zip(values, labels)) if lo <= v <= hi and text]
    font = axis.get_major_ticks(1)[0].label1
    if len(candidates) < 2 or font.get_rotation() % 180 or any("\n" in labels[i] for i in candidates):
        return labels  # turned or on several lines: not measured here
    prop = font.get_fontproperties()
    scale = ax.figure.dpi / 72
    trans = ax.get_xaxis_transform() if horizontal else ax.get_yaxis_transform()
    points = [(values[i], 0) if horizontal else (0, values[i]) for i in candidates]
    at = dict(zip(candidates, trans.transform(points)[:, 0 if horizontal else 1]))
    extent = {i: _text_size(labels[i], prop)[0 if horizontal else 1] * scale for i in candidates}
    gap = 0.5 * prop.get_size_in_points() * scale
    shown: list[int] = []
    for i in sorted(candidates, key=lambda i: (len(labels[i]), i)):
        if all(abs(at[i] - at[j]) >= (extent[i] + extent[j]) / 2 + gap for j in shown):
            shown.append(i)
    return [text if i in shown or i not in at else "" for i, text in enumerate(labels)]


@functools.lru_cache(maxsize=4096)
def _text_size(text: str, prop: Any) -> tuple[float, float]:
    """A one-line text's width and height in points; cached, as the formatter of every axis is
    asked again at each layout pass and draw (a thousand times for a study's plots)."""
    from matplotlib.cbook import is_math_text
    from matplotlib.textpath import text_to_path

    width, height, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=is_math_text(text))
    return width, height


def _readable_log_ticks(axis: Any, *, whole: bool = False) -> None:
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
        axis.set_major_locator(MaxNLocator(nbins=4, integer=whole))
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
