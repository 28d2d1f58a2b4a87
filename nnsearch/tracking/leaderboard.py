"""The ranking of a study's trials: the top-k table, the Pareto front, and the trial to export.

One module serves the end-of-study report, the parent run's table artifacts and the
``leaderboard`` command, so the terminal, MLflow and the exported YAML always agree on which
trial is "best".

Single objective: complete trials sorted by the objective (Optuna's best trial first; among
constrained studies, feasible trials rank before infeasible ones).
Several objectives: there is no single best; the Pareto front (``study.best_trials``) comes first,
then the dominated trials, each group sorted by the *pick metric* (``report.pareto_pick``, the
first objective by default). The trial exported as ``best_config.yaml`` and retrained as the
final model is the Pareto trial that is best on that metric; every Pareto trial is exported too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nnsearch.errors import NNSearchError


@dataclass(frozen=True)
class Ranking:
    """Complete trials in rank order and the subset that is the Pareto front (or the best)."""

    metrics: list[str]
    directions: list[str]
    trials: list[Any]
    front: list[Any]
    pick_metric: str

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def chosen(self) -> Any | None:
        """The trial whose configuration is exported as ``best_config.yaml`` (None if none completed)."""
        return self.front[0] if self.front else None


def study_metrics(study: Any) -> list[str]:
    """Objective names as recorded with ``study.set_metric_names`` (or, by an earlier nnsearch, as a
    user attribute), else ``objective{i}``."""
    names = study.metric_names or study.user_attrs.get("nnsearch.metrics")
    if names and len(names) == len(study.directions):
        return list(names)
    if len(study.directions) == 1:
        # a single-objective trial records cv/{metric}; its value tells which one
        for trial in study.get_trials(deepcopy=False):
            for key, value in trial.user_attrs.items():
                if key.startswith("cv/") and not key.endswith("_std") and trial.value is not None and value == trial.value:
                    return [key[3:]]
    return [f"objective{i}" for i in range(len(study.directions))]


def _feasible(trial: Any) -> bool:
    # FrozenTrial.constraints reads Optuna 5's per-key system attributes ("constraints:n_params") and the older list
    return all(c <= 0 for c in trial.constraints.values())


def rank(study: Any, *, metrics: list[str] | None = None, pick: str | None = None) -> Ranking:
    """Rank the complete trials of ``study`` (see the module docstring).

    Args:
        metrics: the objective names, in the study's order; read from the study if None.
        pick: the objective that orders the Pareto front and chooses the exported trial.
    """
    from optuna.trial import TrialState

    metrics = metrics or study_metrics(study)
    directions = [d.name.lower() for d in study.directions]
    if pick is None:
        pick = metrics[0]
    if pick not in metrics:
        raise NNSearchError(f"report.pareto_pick='{pick}' is not an objective of this study; choose one of {', '.join(metrics)}.")
    k = metrics.index(pick)
    sign = 1.0 if directions[k] == "minimize" else -1.0
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
    key = lambda t: (not _feasible(t), _sort_value(sign * t.values[k]), t.number)  # noqa: E731
    if len(directions) == 1:
        ordered = sorted(complete, key=key)
        front = ordered[:1] if ordered and _feasible(ordered[0]) else []
        return Ranking(metrics, directions, ordered, front, pick)
    front_numbers = {t.number for t in study.best_trials}
    front = sorted((t for t in complete if t.number in front_numbers), key=key)
    rest = sorted((t for t in complete if t.number not in front_numbers), key=key)
    return Ranking(metrics, directions, front + rest, front, pick)


def _sort_value(value: float) -> float:
    return math.inf if value is None or math.isnan(value) else value


def rows(ranking: Ranking, *, top_k: int | None = None) -> list[dict[str, Any]]:
    """Table rows: rank, trial, objective values with their CV std, Pareto flag, then params."""
    out = []
    front = {t.number for t in ranking.front}
    for position, trial in enumerate(ranking.trials[: top_k or None], start=1):
        row: dict[str, Any] = {"rank": position, "trial": trial.number}
        if ranking.multi:
            row["pareto"] = trial.number in front
        for name, value in zip(ranking.metrics, trial.values):
            row[name] = value
            std = trial.user_attrs.get(f"cv/{name}_std")
            if std is not None:
                row[f"{name}_std"] = std
        if trial.constraints:
            row["feasible"] = _feasible(trial)
        row["seconds"] = round(trial.duration.total_seconds(), 2) if trial.duration else None
        row.update({f"param:{k}": v for k, v in trial.params.items()})
        out.append(row)
    return out


def stdout_width() -> int | None:
    """The columns of the terminal stdout prints on, less one (a full line would wrap), or None
    when stdout is a file or a pipe: :func:`format_table` then keeps one line per row."""
    import sys

    from nnsearch.tracking.progress import terminal_columns

    return terminal_columns(sys.stdout) - 1 if sys.stdout.isatty() else None


def format_table(table: list[dict[str, Any]], metrics: list[str], width: int | None = None) -> str:
    """Fixed-width text for the terminal: ``mean ± std`` per metric, params as ``k=v``.

    ``width``: the terminal's columns; a row's params then continue on lines of their own, broken
    between parameters, instead of the terminal cutting them mid-word. None (output to a file or a
    pipe): one line per row.
    """
    if not table:
        return "(no complete trial)"
    header = ["rank", "trial", *(["pareto"] if "pareto" in table[0] else []), *metrics, "params"]
    lines = []
    for row in table:
        cells = [str(row["rank"]), str(row["trial"])]
        if "pareto" in row:
            cells.append("*" if row["pareto"] else "")
        for name in metrics:
            value, std = row.get(name), row.get(f"{name}_std")
            cells.append(_number(value) + (f" ± {_number(std)}" if std is not None else ""))
        cells.append(", ".join(f"{k[6:]}={short_value(v)}" for k, v in row.items() if k.startswith("param:")))
        lines.append(cells)
    widths = [max(len(header[i]), *(len(c[i]) for c in lines)) for i in range(len(header) - 1)]
    start = sum(widths) + 2 * len(widths)  # where the params column begins
    longest = max((len(part) + 1 for c in lines for part in c[-1].split(", ")), default=0)
    indent = start if width is None or width - start >= longest else 4  # a parameter would not fit beside the numbers: under them

    def fmt(cells: list[str]) -> str:
        head = "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  "
        if width is None or len(head) + len(cells[-1]) <= width:
            return head + cells[-1]
        out, line = ([], head) if indent == start else ([head.rstrip()], " " * indent)
        for i, part in enumerate(cells[-1].split(", ")):
            piece = part + ("," if i < cells[-1].count(", ") else "")
            if line.strip() and len(line) + len(piece) > width and line not in (head, " " * indent):
                out.append(line.rstrip())
                line = " " * indent
            line += piece + " "
        out.append(line.rstrip())
        return "\n".join(out)

    return "\n".join([fmt(header), *(fmt(c) for c in lines)])


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))  # counts such as n_params
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def short_value(value: Any) -> str:
    """A parameter as the summary prints it: floats to 4 significant digits (best_config.yaml keeps them whole)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
