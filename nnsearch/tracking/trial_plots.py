"""A trial's artifacts for the MLflow UI: learning curves, diagnostic plots and a per-fold table.

Files (the same names in every trial, so MLflow's compare view lines them up):

- ``tables/fold_metrics.csv``: one row per fold with every final metric, then ``mean`` and ``std``.
- ``plots/learning_curves.png``: ``train/loss`` (``train/distill_loss`` for a distilled student: another
  loss than ``val/loss``), ``val/loss`` and each ``val/{metric}`` per epoch, one line per fold.
- with the folds' validation predictions (:mod:`nnsearch.fit.predictions`), pooled out of fold:
  ``plots/confusion_matrix.png`` (classification), ``plots/roc_pr.png`` (ROC and
  precision-recall; one-vs-rest per class for multiclass), ``plots/regression.png``
  (predicted vs true and residuals), each drawn by scikit-learn's display for it
  (``ConfusionMatrixDisplay``, ``RocCurveDisplay`` and ``PrecisionRecallDisplay``,
  ``PredictionErrorDisplay``), then given the fonts and legends below. A multi-task trial has
  them per target, in ``plots/<target>/``: a class target's two, a numeric target's one.

Readable as the MLflow artifact viewer shows them (at their pixel size): 100 dpi, no text under
8 pt, constrained layout so no label is cut, legends beside the panels rather than over the curves.

Why it is cheap enough: figures are drawn with the Agg backend (no display, no GUI toolkit) in the
tracker's background thread, freed at once, and matplotlib is imported only when the first trial
draws (about 0.2-0.6 s per trial on a loaded 2-core machine, against 0.1-0.4 s for the
unreadable 72 dpi figures before). Everything is written to one folder that the tracker uploads
in one call.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.fit.predictions import Predictions, pooled, target_predictions

DPI = 100  # the MLflow artifact viewer shows a PNG at its pixel size: 100 dpi makes 8 pt text 11 px tall
TICK, LABEL, TITLE = 8, 9, 10  # font sizes in points; nothing smaller than 8 pt
PLOT_MODES = ("all", "complete", "none")
MAX_CLASS_CURVES = 10  # one-vs-rest curves drawn; more classes make the legend unreadable


def figure(width: float, height: float, *, rows: int = 1, cols: int = 1, sharex: bool = False) -> tuple[Any, Any]:
    """A bare Agg figure with constrained layout and its axes grid, imported on first use (about 0.7 s).

    ``matplotlib.figure.Figure`` with an Agg canvas, not pyplot: no global figure registry to
    leak into, no GUI backend, nothing to close; the figure is freed with its last reference.
    Constrained layout sizes the margins to the labels, so none is cut at the canvas edge.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=sharex)
    for ax in axes.flat:
        ax.tick_params(labelsize=TICK)
    return fig, axes


def infer_task(pred: Predictions) -> str:
    """``binary``, ``multiclass`` or ``regression`` from the shapes and types of the predictions."""
    if pred.outputs.ndim == 2 and pred.outputs.shape[1] > 1:
        return "multiclass"
    if np.issubdtype(pred.targets.dtype, np.integer):
        return "binary"
    return "regression"


def write_trial_artifacts(folds: list[Any], out_dir: Path, *, plots: bool = True, task: str | None = None, classes: tuple = (),
                          targets: tuple = (), rows: str = "out of fold") -> list[Path]:
    """Write a trial's table and (when ``plots``) figures under ``out_dir``; returns the files.

    Args:
        folds: the trial's ``FoldResult`` objects (``index``, ``history``, ``metrics`` and,
            when present, ``predictions``).
        plots: draw figures; the table is always written, it costs well under a millisecond.
        task: ``binary``, ``multiclass`` or ``regression``; inferred from the predictions if None.
        classes: class labels, for axis ticks.
        targets: a multi-task data set's ``TargetSpec``s: each target's figures go to ``plots/<target>/``.
        rows: which rows the predictions are, as the confusion matrix says ("held-out test" for the final model's).
    """
    written = []
    table = fold_table(folds)
    if table:
        written.append(write_csv(table, out_dir / "tables" / "fold_metrics.csv"))
    if not plots:
        return written
    plot_dir = out_dir / "plots"
    if any(f.history for f in folds):
        written.append(learning_curves(folds, plot_dir / "learning_curves.png"))
    pred = pooled(folds)
    if pred is not None and len(pred.targets):
        if targets:  # multi-task: each target's own figures, in a folder named after it
            for spec, own in target_predictions(pred, targets):
                written += _diagnostics(own, plot_dir / spec.name, task=spec.task.value, classes=spec.classes, target=spec.name, rows=rows)
        else:
            written += _diagnostics(pred, plot_dir, task=task or infer_task(pred), classes=classes, rows=rows)
    return [p for p in written if p is not None]


def _diagnostics(pred: Predictions, plot_dir: Path, *, task: str, classes: tuple, target: str | None = None, rows: str = "out of fold") -> list[Path | None]:
    """Confusion matrix and ROC/PR of a class target, or the regression plots of a numeric one; ``target``
    (a multi-task data set's target) heads their titles, so a figure opened alone says which target it shows."""
    if task in ("binary", "multiclass"):
        return [confusion_matrix(pred, plot_dir / "confusion_matrix.png", task=task, classes=classes, target=target, rows=rows),
                roc_pr_curves(pred, plot_dir / "roc_pr.png", task=task, classes=classes, target=target)]
    if task == "regression":
        return [regression_plots(pred, plot_dir / "regression.png", target=target)]
    return []


def fold_table(folds: list[Any]) -> list[dict[str, Any]]:
    """Rows ``fold, metric...`` for folds that finished, then their mean and (population) std."""
    done = [f for f in folds if f.metrics]
    if not done:
        return []
    names = list(done[0].metrics)
    rows: list[dict[str, Any]] = [{"fold": f.index, "epochs": len(f.history), **{n: f.metrics.get(n, math.nan) for n in names}} for f in done]
    values = np.array([[r[n] for n in names] for r in rows], dtype=float)
    rows.append({"fold": "mean", "epochs": float(np.mean([r["epochs"] for r in rows])), **dict(zip(names, values.mean(axis=0)))})
    rows.append({"fold": "std", "epochs": float(np.std([r["epochs"] for r in rows[:-1]])), **dict(zip(names, values.std(axis=0)))})
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """A CSV with a header from the first row's keys; floats with 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def save_png(fig: Any, path: Path, *, same_layout: bool = False) -> Path:
    """PNG with fast zlib compression: level 1 is several times quicker and barely larger here.
    Every trial and study plot is written here (tests look at the figures through it).

    The layout engine places the axes first, as ``Figure.draw`` would, and is then removed: with
    any engine set (even ``"none"``), ``savefig`` draws the whole figure once unseen before
    drawing it into the PNG (a tenth to a fifth of a trial figure's CPU, a third of a study
    plot's). A layout that fails otherwise raises here, before the file is written.
    ``same_layout``: a figure drawn for every trial, whose layout is taken from the last one
    of its kind when its text matches (:mod:`nnsearch.tracking.figure_layout`).
    """
    import matplotlib

    from nnsearch.tracking import figure_layout

    path.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:
        if fig.axes:
            try:
                figure_layout.lay_out(fig, engine) if same_layout else engine.execute(fig)
            except ValueError:  # skipped, as Figure.draw skips it
                pass
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # None with these settings: no engine at all
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    return path


def title(ax: Any, text: str) -> None:
    """The panel's title just above it, placed once.

    Left to matplotlib, a title is placed again at every layout pass and draw, each time measuring
    the y axis' tick labels in case an offset text (``1e-5``, ``+0.99``) rises into it: a sixth of a
    learning-curve figure's CPU. Our panels have their x ticks below and no offset text (see
    :func:`plain_numbers`), so the title's place is fixed.
    """
    ax.set_title(text, fontsize=TITLE, y=1.0)


def plain_numbers(axis: Any) -> None:
    """Tick labels as plain numbers (0.9975, not 0.0025 + 0.995): readable alone, and no offset text under the title."""
    axis.get_major_formatter().set_useOffset(False)
    axis.get_major_formatter().set_scientific(False)


def _headed(target: str | None) -> str:
    """A title's prefix naming a multi-task data set's target ("sex: "), empty for a single target."""
    return f"{target}: " if target else ""


def _label(key: str) -> str:
    """``val/accuracy`` -> ``accuracy``: the axis label of a metric's panel."""
    return key.split("/", 1)[-1]


def learning_curves(folds: list[Any], path: Path) -> Path:
    """Losses in one panel (train solid, validation dashed), one panel per validation metric;
    one colour per fold: over- and under-fitting show at a glance. One legend beside the panels.

    The panels share their epoch axis, numbered under the lowest panel of each column only: a
    third less CPU than six panels each with their own (tick labels are most of a figure's cost).
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    keys = list(dict.fromkeys(k for f in folds for row in f.history for k in row))
    losses = [k for k in keys if k.endswith("loss")]
    panels = [p for p in [losses] + [[k] for k in keys if not k.endswith("loss")] if p]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = figure(3.0 * cols + 1.2, 2.6 * rows, rows=rows, cols=cols, sharex=True)
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # shared by every panel
    for i, (ax, panel) in enumerate(zip(axes.flat, panels)):
        for f in folds:
            for key in panel:
                ys = [row.get(key, math.nan) for row in f.history]
                style = "--" if key.startswith("val") and len(panel) > 1 else "-"
                ax.plot(range(1, len(ys) + 1), ys, style, color=f"C{f.index % 10}", marker="." if len(ys) < 30 else None)
        title(ax, " / ".join(panel))
        ax.set_ylabel("loss" if panel is losses else _label(panel[0]), fontsize=LABEL)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        plain_numbers(ax.yaxis)
        if i + cols >= len(panels):  # no panel below: the epochs are numbered here
            ax.set_xlabel("epoch", fontsize=LABEL)
        else:
            ax.tick_params(labelbottom=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [Line2D([], [], color=f"C{f.index % 10}", label=f"fold {f.index}") for f in folds[:10]]
    if len(losses) > 1:
        handles += [Line2D([], [], color="grey", label="train"), Line2D([], [], color="grey", linestyle="--", label="validation")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=TICK, frameon=False)
    return save_png(fig, path, same_layout=True)


def _probabilities(pred: Predictions, task: str) -> np.ndarray:
    """P(class 1) per row for binary, a probability row per sample for multiclass (from logits)."""
    from scipy.special import expit, softmax

    out = pred.outputs.astype(np.float64)
    return expit(out.reshape(-1)) if task == "binary" else softmax(out, axis=1)


def _labels(classes: tuple, n: int) -> list[str]:
    return [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]


def confusion_matrix(pred: Predictions, path: Path, *, task: str, classes: tuple = (), target: str | None = None, rows: str = "out of fold") -> Path:
    """Out-of-fold (or ``rows``) confusion matrix, counts annotated (rows: true class, columns: predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    prob = _probabilities(pred, task)
    n = 2 if task == "binary" else prob.shape[1]
    predicted = (prob >= 0.5).astype(int) if task == "binary" else prob.argmax(axis=1)
    labels = _labels(classes, n)
    longest = max(len(label) for label in labels)
    size = 2.4 + 0.32 * n + 0.07 * min(longest, 30)
    fig, axes = figure(size, size)
    ax = axes[0, 0]
    turned = n > 6 or longest > 4
    shown = ConfusionMatrixDisplay.from_predictions(
        pred.targets.astype(int), predicted, labels=list(range(n)), display_labels=labels, ax=ax, cmap="Blues", colorbar=False,
        xticks_rotation=45 if turned else "horizontal", text_kw={"fontsize": TICK},
    )  # fmt: skip
    for count in shown.text_.flat:  # inside the axes: the layout need not measure the n x n counts
        count.set_in_layout(False)
    if turned:  # each label ends at its own column (centred, a long one reached into the next)
        for label in ax.get_xticklabels():
            label.set(horizontalalignment="right", rotation_mode="anchor")
    ax.tick_params(labelsize=TICK)
    ax.set_xlabel("predicted", fontsize=LABEL)
    ax.set_ylabel("true", fontsize=LABEL)
    title(ax, f"{_headed(target)}confusion matrix\n({len(pred.targets)} rows, {rows})")
    return save_png(fig, path, same_layout=True)


def roc_pr_curves(pred: Predictions, path: Path, *, task: str, classes: tuple = (), target: str | None = None) -> Path | None:
    """ROC (left) and precision-recall (right) with scikit-learn's ``RocCurveDisplay`` and
    ``PrecisionRecallDisplay``; one-vs-rest, one curve per class, for multiclass. The legends sit
    beside the panels, so they hide no curve.

    scikit-learn 1.9 draws binary curves only, so a multiclass panel takes one curve per class (its
    own one-vs-rest recipe). The curves are computed with ``roc_curve`` and ``precision_recall_curve``
    and handed to the displays, whose ``from_predictions`` checks its input again for every class
    (a third of the curves' CPU). Each is drawn unlabelled and named afterwards: a display given a
    label rebuilds the panel's legend at every call (ten classes: 0.33 s of CPU per figure against
    0.24 s, on the tracker's background thread).
    """
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay, auc, average_precision_score, precision_recall_curve, roc_curve

    prob = _probabilities(pred, task)
    targets = pred.targets.astype(int)
    if task == "binary":
        curves = [(_labels(classes, 2)[1], targets == 1, prob)]
    else:
        labels = _labels(classes, prob.shape[1])
        curves = [(labels[k], targets == k, prob[:, k]) for k in range(prob.shape[1])][:MAX_CLASS_CURVES]
    curves = [(name, y, p) for name, y, p in curves if 0 < y.sum() < len(y)]  # undefined with one class present
    if not curves:
        return None
    fig, axes = figure(9.0, 3.6, cols=2)
    roc_ax, pr_ax = axes[0]
    # label=None: a display draws a legend of the curves so far when its curve has a label (ten legends
    # built and dropped for ten classes, a sixth of the figure's CPU); each curve is named here, one legend per panel
    line, chance = {"linewidth": 1, "label": None}, {"color": "grey", "linestyle": ":", "linewidth": 1}
    for k, (name, y, p) in enumerate(curves):
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        roc = RocCurveDisplay(fpr=fpr, tpr=tpr, roc_auc=auc(fpr, tpr), pos_label=True)
        pr = PrecisionRecallDisplay(precision, recall, average_precision=average_precision_score(y, p), pos_label=True, prevalence_pos_label=float(y.mean()))
        roc.plot(ax=roc_ax, curve_kwargs=line, plot_chance_level=k == len(curves) - 1, chance_level_kw=chance)
        pr.plot(ax=pr_ax, curve_kwargs=line, plot_chance_level=task == "binary", chance_level_kw=chance)
        roc.line_.set_label(f"{name} (AUC = {roc.roc_auc:.2f})")
        pr.line_.set_label(f"{name} (AP = {pr.average_precision:.2f})")
    one_vs_rest = " (one-vs-rest)" if task == "multiclass" else ""
    for ax, heading, xlabel, ylabel in ((roc_ax, "ROC" + one_vs_rest, "false positive rate", "true positive rate"), (pr_ax, "precision-recall" + one_vs_rest, "recall", "precision")):
        title(ax, _headed(target) + heading)
        ax.set_xlabel(xlabel, fontsize=LABEL)  # the displays add "(Positive label: 1)" to theirs
        ax.set_ylabel(ylabel, fontsize=LABEL)
        ax.legend(fontsize=TICK, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
        # the displays make the panels square: beside long legends they shrank to a stamp, and
        # constrained layout, placing them before the aspect is applied, cut the y label
        ax.set_aspect("auto")
    return save_png(fig, path, same_layout=True)


def regression_plots(pred: Predictions, path: Path, *, target: str | None = None) -> Path:
    """Predicted against true values (left) and residuals against predictions (right), with
    scikit-learn's ``PredictionErrorDisplay`` (at most 1000 points drawn)."""
    from sklearn.metrics import PredictionErrorDisplay

    y, p = pred.targets.reshape(-1).astype(float), pred.outputs.reshape(-1).astype(float)
    fig, axes = figure(8.0, 3.6, cols=2)
    scatter, resid = axes[0]
    for ax, kind, heading in ((scatter, "actual_vs_predicted", "predicted vs true"), (resid, "residual_vs_predicted", "residuals")):
        PredictionErrorDisplay.from_predictions(y, p, kind=kind, ax=ax, random_state=0, scatter_kwargs={"s": 6, "alpha": 0.6})
        title(ax, _headed(target) + heading)
        plain_numbers(ax.yaxis)
        ax.tick_params(labelsize=TICK)
        ax.xaxis.label.set_fontsize(LABEL)
        ax.yaxis.label.set_fontsize(LABEL)
    return save_png(fig, path, same_layout=True)
