"""The study's search space: YAML specs mapped one-to-one onto Optuna distributions.

Each entry is ``dotted.config.path: {type: float|int|categorical, ...}``::

    search_space:
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      model.n_layers: {type: int, low: 1, high: 4}
      model.activation: {type: categorical, choices: [relu, gelu]}

The parameter's name in Optuna and MLflow is its path; a trial's values are written into a copy
of the composed config before any model is built.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "values"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_MISSING = object()


@dataclass(frozen=True)
class Parameter:
    """One searched config value and the Optuna distribution it is drawn from."""

    path: str
    distribution: Any  # optuna.distributions.BaseDistribution
    grid_values: tuple | None = None  # explicit float grid (`values:`), else derived from the distribution

    def suggest(self, trial: Any) -> Any:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.path, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.path, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.path, d.low, d.high, step=d.step, log=d.log)


class SearchSpace:
    """An ordered set of :class:`Parameter` built and validated from the study's ``search_space``."""

    def __init__(self, parameters: list[Parameter]) -> None:
        self.parameters = parameters

    @classmethod
    def from_config(cls, spec: Mapping | None, config: DictConfig) -> SearchSpace:
        """Validate every entry against Optuna's rules and against the paths that exist in ``config``."""
        if spec is None:
            return cls([])
        if not isinstance(spec, Mapping) and not OmegaConf.is_dict(spec):
            raise NNSearchError(f"search_space must be a mapping of config paths to specs, got {type(spec).__name__}.")
        container = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
        return cls([_parse(path, entry, config) for path, entry in container.items()])

    def __len__(self) -> int:
        return len(self.parameters)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw every parameter for ``trial``; returns path -> value."""
        return {p.path: p.suggest(trial) for p in self.parameters}

    @staticmethod
    def apply(config: DictConfig, values: Mapping[str, Any]) -> DictConfig:
        """A copy of ``config`` with each dotted path set to its sampled value."""
        trial_config = config.copy()
        for path, value in values.items():
            OmegaConf.update(trial_config, path, value, merge=False)
        return trial_config

    def grid(self) -> dict[str, list]:
        """The search space as the grid sampler's ``{name: [values]}``; every parameter must be discrete."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        grid: dict[str, list] = {}
        for p in self.parameters:
            d = p.distribution
            if p.grid_values is not None:
                grid[p.path] = list(p.grid_values)
            elif isinstance(d, CategoricalDistribution):
                grid[p.path] = list(d.choices)
            elif isinstance(d, FloatDistribution) and d.step is None:
                raise NNSearchError(
                    f"sampler=grid needs discrete values, but search_space.{p.path} is a continuous float: "
                    "give it a `step` or a list of `values`."
                )
            elif d.log:
                raise NNSearchError(f"sampler=grid cannot enumerate the log-scaled search_space.{p.path}; give it `values`.")
            else:
                n = int(round((d.high - d.low) / d.step)) + 1
                grid[p.path] = [d.low + i * d.step for i in range(n)]
                if isinstance(d, FloatDistribution):
                    grid[p.path] = [round(v, 12) for v in grid[p.path]]
        return grid

    def grid_size(self) -> int:
        return len(list(itertools.product(*self.grid().values()))) if self.parameters else 1


def _parse(path: str, entry: Any, config: DictConfig) -> Parameter:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    where = f"search_space.{path}"
    if not isinstance(entry, Mapping):
        raise NNSearchError(f"{where} must be a mapping like {{type: float, low: 0.1, high: 1.0}}, got {entry!r}.")
    kind = entry.get("type")
    if kind not in TYPES:
        raise NNSearchError(f"{where}: unknown type {kind!r}; choose one of {', '.join(TYPES)}.")
    unknown = set(entry) - _KEYS[kind]
    if unknown:
        raise NNSearchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for type {kind}; allowed: {', '.join(sorted(_KEYS[kind]))}.")
    _check_path(path, config)
    try:
        if kind == "categorical":
            choices = entry.get("choices")
            if not isinstance(choices, list) or not choices:
                raise NNSearchError(f"{where}: a categorical parameter needs a non-empty list of `choices`.")
            return Parameter(path, CategoricalDistribution(choices))
        if kind == "float" and "values" in entry:
            values = entry["values"]
            if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) for v in values):
                raise NNSearchError(f"{where}: `values` must be a non-empty list of numbers.")
            values = sorted(float(v) for v in values)
            return Parameter(path, CategoricalDistribution(values), grid_values=tuple(values))
        for key in ("low", "high"):
            if not isinstance(entry.get(key), (int, float)) or isinstance(entry.get(key), bool):
                raise NNSearchError(f"{where}: `{key}` must be a number, got {entry.get(key)!r}.")
        low, high = entry["low"], entry["high"]
        if low > high:
            raise NNSearchError(f"{where}: low ({low}) is greater than high ({high}).")
        log, step = bool(entry.get("log", False)), entry.get("step")
        if kind == "int":
            if int(low) != low or int(high) != high:
                raise NNSearchError(f"{where}: an int parameter needs whole-number bounds, got low={low}, high={high}.")
            return Parameter(path, IntDistribution(int(low), int(high), log=log, step=int(step) if step else 1))
        return Parameter(path, FloatDistribution(float(low), float(high), log=log, step=step))
    except ValueError as err:  # Optuna's own checks: log with step, log with low <= 0, ...
        raise NNSearchError(f"{where}: {err}") from None


def _check_path(path: str, config: DictConfig) -> None:
    """A searched path must name an existing config value, so a typo fails before trial 0."""
    if OmegaConf.select(config, path, default=_MISSING, throw_on_missing=False) is not _MISSING:
        return
    known = sorted(_leaf_paths(config))
    near = difflib.get_close_matches(path, known, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise NNSearchError(f"search_space.{path}: no such config value.{hint}")


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]
