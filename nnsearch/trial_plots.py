"""A trial's artifacts for the MLflow UI: learning curves, diagnostic plots and a per-fold table.

Files (the same names in every trial, so MLflow's compare view lines them up):

- ``tables/fold_metrics.csv``: one row per fold with every final metric, then ``mean`` and ``std``.
- ``plots/learning_curves.png``: ``train/loss``, ``val/loss`` and each ``val/{metric}`` per epoch,
  one line per fold.
- with the folds' validation predictions (:mod:`nnsearch.predictions`), pooled out of fold:
  ``plots/confusion_matrix.png`` (classification), ``plots/roc_pr.png`` (ROC and
  precision-recall; one-vs-rest per class for multiclass), ``plots/regression.png``
  (predicted vs true and residuals).

Why it is cheap: trials often train in about a second, so figures are small, drawn with the Agg
backend (no display, no GUI toolkit), closed at once, and matplotlib is imported only when the
first trial draws. Everything is written to one folder that the tracker uploads in one call.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.predictions import Predictions, pooled

DPI = 72
PLOT_MODES = ("all", "complete", "none")
MAX_CLASS_CURVES = 10  # one-vs-rest curves drawn; more classes make the legend unreadable


def figure(width: float, height: float, *, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    """A bare Agg figure and its axes grid, imported on first use (about 0.7 s).

    ``matplotlib.figure.Figure`` with an Agg canvas, not pyplot: no global figure registry to
    leak into, no GUI backend, nothing to close; the figure is freed with its last reference.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.35 / height, wspace=0.35, hspace=0.55)
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
    return fig, axes


def infer_task(pred: Predictions) -> str:
    """``binary``, ``multiclass`` or ``regression`` from the shapes and types of the predictions."""
    if pred.outputs.ndim == 2 and pred.outputs.shape[1] > 1:
        return "multiclass"
    if np.issubdtype(pred.targets.dtype, np.integer):
        return "binary"
    return "regression"


def write_trial_artifacts(folds: list[Any], out_dir: Path, *, plots: bool = True, task: str | None = None, classes: tuple = ()) -> list[Path]:
    """Write a trial's table and (when ``plots``) figures under ``out_dir``; returns the files.

    Args:
        folds: the trial's ``FoldResult`` objects (``index``, ``history``, ``metrics`` and,
            when present, ``predictions``).
        plots: draw figures; the table is always written, it costs well under a millisecond.
        task: ``binary``, ``multiclass`` or ``regression``; inferred from the predictions if None.
        classes: class labels, for axis ticks.
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
        kind = task or infer_task(pred)
        if kind in ("binary", "multiclass"):
            written.append(confusion_matrix(pred, plot_dir / "confusion_matrix.png", task=kind, classes=classes))
            written.append(roc_pr_curves(pred, plot_dir / "roc_pr.png", task=kind, classes=classes))
        elif kind == "regression":
            written.append(regression_plots(pred, plot_dir / "regression.png"))
    return [p for p in written if p is not None]


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


def _save(fig: Any, path: Path) -> Path:
    """PNG with fast zlib compression: level 1 is several times quicker and barely larger here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    return path


def learning_curves(folds: list[Any], path: Path) -> Path:
    """Losses in one panel (train solid, validation dashed), one panel per validation metric;
    one colour per fold: over- and under-fitting show at a glance."""
    keys = list(dict.fromkeys(k for f in folds for row in f.history for k in row))
    panels = [[k for k in keys if k.endswith("loss")]] + [[k] for k in keys if not k.endswith("loss")]
    panels = [p for p in panels if p]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = figure(3.3 * cols, 2.5 * rows, rows=rows, cols=cols)
    for ax, panel in zip(axes.flat, panels):
        for f in folds:
            colour = f"C{f.index % 10}"
            for key in panel:
                ys = [row.get(key, math.nan) for row in f.history]
                style = "--" if key.startswith("val") and len(panel) > 1 else "-"
                ax.plot(range(len(ys)), ys, style, color=colour, marker="." if len(ys) < 30 else None, label=f"fold {f.index} {key}" if len(panel) > 1 else f"fold {f.index}")
        ax.set_title(" / ".join(panel), fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if len(folds) <= 5:
        axes.flat[0].legend(fontsize=6)
    return _save(fig, path)


def _probabilities(pred: Predictions, task: str) -> np.ndarray:
    """P(class 1) per row for binary, a probability row per sample for multiclass."""
    out = pred.outputs.astype(np.float64)
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-out.reshape(-1)))
    out = out - out.max(axis=1, keepdims=True)
    exp = np.exp(out)
    return exp / exp.sum(axis=1, keepdims=True)


def _labels(classes: tuple, n: int) -> list[str]:
    return [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]


def confusion_matrix(pred: Predictions, path: Path, *, task: str, classes: tuple = ()) -> Path:
    """Out-of-fold confusion matrix, counts annotated (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    prob = _probabilities(pred, task)
    n = 2 if task == "binary" else prob.shape[1]
    predicted = (prob >= 0.5).astype(int) if task == "binary" else prob.argmax(axis=1)
    matrix = sk_confusion(pred.targets.astype(int), predicted, labels=list(range(n)))
    labels = _labels(classes, n)
    size = 2.6 + 0.3 * n
    fig, axes = figure(size, size)
    ax = axes[0, 0]
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, fontsize=7, rotation=45 if n > 6 else 0)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i, j in zip(*np.nonzero(matrix)):  # zeros left blank: fewer texts to lay out
        ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6, color="white" if matrix[i, j] > threshold else "black")
    ax.set_title(f"confusion matrix ({len(pred.targets)} rows, out of fold)", fontsize=8)
    return _save(fig, path)


def roc_pr_curves(pred: Predictions, path: Path, *, task: str, classes: tuple = ()) -> Path | None:
    """ROC (left) and precision-recall (right); one-vs-rest per class for multiclass."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    prob = _probabilities(pred, task)
    targets = pred.targets.astype(int)
    if task == "binary":
        curves = [("positive", targets == 1, prob)]
    else:
        labels = _labels(classes, prob.shape[1])
        curves = [(labels[k], targets == k, prob[:, k]) for k in range(prob.shape[1])][:MAX_CLASS_CURVES]
    curves = [(name, y, p) for name, y, p in curves if 0 < y.sum() < len(y)]  # undefined with one class present
    if not curves:
        return None
    fig, axes = figure(7.0, 3.2, cols=2)
    roc_ax, pr_ax = axes[0]
    for name, y, p in curves:
        fpr, tpr, _ = roc_curve(y, p)
        roc_ax.plot(fpr, tpr, linewidth=1, label=f"{name} ({auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        pr_ax.plot(recall, precision, linewidth=1, label=f"{name} ({average_precision_score(y, p):.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    roc_ax.set_title("ROC, AUC" + (" (one-vs-rest)" if task == "multiclass" else ""), fontsize=8)
    roc_ax.set_xlabel("false positive rate", fontsize=7)
    roc_ax.set_ylabel("true positive rate", fontsize=7)
    pr_ax.set_title("precision-recall, average precision", fontsize=8)
    pr_ax.set_xlabel("recall", fontsize=7)
    pr_ax.set_ylabel("precision", fontsize=7)
    roc_ax.legend(fontsize=5, loc="lower right")
    return _save(fig, path)


def regression_plots(pred: Predictions, path: Path) -> Path:
    """Predicted against true values (left) and residuals against predictions (right)."""
    y, p = pred.targets.reshape(-1).astype(float), pred.outputs.reshape(-1).astype(float)
    fig, axes = figure(7.0, 3.2, cols=2)
    scatter, resid = axes[0]
    scatter.scatter(y, p, s=5, alpha=0.6)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    scatter.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=0.8)
    scatter.set_title("predicted vs true", fontsize=8)
    scatter.set_xlabel("true", fontsize=7)
    scatter.set_ylabel("predicted", fontsize=7)
    resid.scatter(p, y - p, s=5, alpha=0.6)
    resid.axhline(0.0, color="grey", linestyle=":", linewidth=0.8)
    resid.set_title("residuals", fontsize=8)
    resid.set_xlabel("predicted", fontsize=7)
    resid.set_ylabel("true - predicted", fontsize=7)
    return _save(fig, path)
