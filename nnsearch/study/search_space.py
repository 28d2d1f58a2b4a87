"""The study's search space: YAML specs mapped one-to-one onto Optuna distributions.

Each entry is ``dotted.config.path: {type: float|int|categorical, ...}``::

    search_space:
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      model.n_layers: {type: int, low: 1, high: 4}
      model.activation: {type: categorical, choices: [relu, gelu]}

The parameter's name in Optuna and MLflow is its path; a trial's values are written into a copy
of the composed config before any model is built.

**A config group as a choice.** ``model``, ``optimizer`` and ``scheduler`` may themselves be
categorical: each choice names a file of that group (``conf/model/lstm.yaml``), and a trial's
node is replaced by that file before its other values are written. **Conditions.** Any entry may
carry ``when: {NAME: value}`` (or a list of values; several names must all hold), where NAME is
a categorical parameter of the space; the entry is sampled, applied and logged only in trials
where the condition holds. Together they give a conditional space, as in small-scale neural
architecture search::

    search_space:
      model: {type: categorical, choices: [mlp, cnn, lstm, transformer]}
      model.hidden_dim: {type: int, low: 32, high: 256, log: true, when: {model: [mlp, lstm]}}
      model.n_blocks: {type: int, low: 1, high: 3, when: {model: cnn}}
      model.d_model: {type: categorical, choices: [32, 64], when: {model: transformer}}
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}

Group choices are sampled first, then the other entries in file order; a condition may name a
group choice or an entry above it. A path under a chosen group (``model.d_model``) must exist in
every file its conditions allow, which is checked before any trial. Each choice's file is used
as shipped: the study's own ``model.*`` values belong to its base model only. A conditional
space cannot be enumerated by ``sampler=grid``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError
from nnsearch.config.resources import conf_dir

TYPES = ("float", "int", "categorical")
_KEYS = {
    "float": {"type", "low", "high", "log", "step", "values", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}
_MISSING = object()
CONF_DIR = conf_dir()  # the repository's conf/, or the installed package's copy
GROUP_CHOICES = ("model", "optimizer", "scheduler")  # groups a trial may swap; data, cv, ... are fixed per study


@dataclass(frozen=True)
class Parameter:
    """One searched config value and the Optuna distribution it is drawn from."""

    path: str
    distribution: Any  # optuna.distributions.BaseDistribution
    grid_values: tuple | None = None  # explicit float grid (`values:`), else derived from the distribution
    when: tuple[tuple[str, tuple], ...] = ()  # (parameter, allowed values): all must hold

    @property
    def is_group(self) -> bool:
        """The parameter picks a config group's file (``model: lstm``) rather than a value."""
        return self.path in GROUP_CHOICES

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition holds for the values sampled so far (an unsampled name fails it)."""
        return all(name in values and values[name] in allowed for name, allowed in self.when)

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

    @property
    def is_conditional(self) -> bool:
        return any(p.when for p in self.parameters)

    @classmethod
    def from_config(cls, spec: Mapping | None, config: DictConfig) -> SearchSpace:
        """Validate every entry against Optuna's rules and against the paths that exist in ``config``."""
        if spec is None:
            return cls([])
        if not isinstance(spec, Mapping) and not OmegaConf.is_dict(spec):
            raise NNSearchError(f"search_space must be a mapping of config paths to specs, got {type(spec).__name__}.")
        container = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
        # group choices first: the files they load decide which paths exist below them
        ordered = sorted(container.items(), key=lambda item: item[0] not in GROUP_CHOICES)
        parameters: list[Parameter] = []
        for path, entry in ordered:
            parameters.append(_parse(path, entry, config, parameters))
        return cls(parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw every parameter whose condition holds for ``trial``; returns path -> value."""
        values: dict[str, Any] = {}
        for p in self.parameters:
            if p.active(values):
                values[p.path] = p.suggest(trial)
        return values

    @staticmethod
    def apply(config: DictConfig, values: Mapping[str, Any]) -> DictConfig:
        """A copy of ``config`` with each chosen group file loaded, then each dotted path set."""
        trial_config = config.copy()
        for path, value in sorted(values.items(), key=lambda item: item[0] not in GROUP_CHOICES):
            if path in GROUP_CHOICES:
                value = load_option(path, value)
            OmegaConf.update(trial_config, path, value, merge=False)
        return trial_config

    def grid(self) -> dict[str, list]:
        """The search space as the grid sampler's ``{name: [values]}``; every parameter must be discrete."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.is_conditional:
            conditional = next(p.path for p in self.parameters if p.when)
            raise NNSearchError(
                f"sampler=grid cannot enumerate a conditional search space (search_space.{conditional} has `when`); "
                "use sampler=tpe or sampler=random."
            )
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


def load_option(group: str, name: Any) -> DictConfig:
    """The content of ``conf/{group}/{name}.yaml``; an unknown name lists the files there."""
    file = CONF_DIR / group / f"{name}.yaml"
    if not isinstance(name, str) or not file.is_file():
        raise NNSearchError(f"search_space.{group}: no option '{name}' in conf/{group}; choose from {', '.join(group_options(group))}.")
    node = OmegaConf.load(file)
    return node if node is not None else OmegaConf.create({})


def group_options(group: str) -> list[str]:
    return sorted(f.stem for f in (CONF_DIR / group).glob("*.yaml"))


def _parse(path: str, entry: Any, config: DictConfig, earlier: list[Parameter]) -> Parameter:
    from optuna.distributions import CategoricalDistribution

    param = _parse_distribution(path, entry)
    if isinstance(entry, Mapping) and "when" in entry:
        param = Parameter(param.path, param.distribution, param.grid_values, _parse_when(path, entry["when"], earlier))
    if param.is_group:
        if not isinstance(param.distribution, CategoricalDistribution):
            raise NNSearchError(f"search_space.{path} picks a file of conf/{path}: it must be `type: categorical`.")
        for choice in param.distribution.choices:
            load_option(path, choice)
    else:
        _check_path_in_choices(param, config, earlier)
    return param


def _parse_when(path: str, when: Any, earlier: list[Parameter]) -> tuple[tuple[str, tuple], ...]:
    from optuna.distributions import CategoricalDistribution

    where = f"search_space.{path}.when"
    if not isinstance(when, Mapping) or not when:
        raise NNSearchError(f"{where} must map a categorical parameter to its value(s), like {{model: lstm}}; got {when!r}.")
    known = {p.path: p for p in earlier if isinstance(p.distribution, CategoricalDistribution)}
    conditions = []
    for name, allowed in when.items():
        if name not in known:
            choices = ", ".join(known) or "none declared above it"
            raise NNSearchError(f"{where}: '{name}' is not a categorical parameter declared above it (have: {choices}).")
        allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        valid = known[name].distribution.choices
        bad = [v for v in allowed if v not in valid]
        if not allowed:
            raise NNSearchError(f"{where}: {name} needs at least one value; choose from {', '.join(map(str, valid))}.")
        if bad:
            raise NNSearchError(f"{where}: {name}={', '.join(map(str, bad))} is not among its choices {', '.join(map(str, valid))}.")
        conditions.append((name, allowed))
    return tuple(conditions)


def _check_path_in_choices(param: Parameter, config: DictConfig, earlier: list[Parameter]) -> None:
    """A path under a chosen group must exist in every file the parameter can be sampled with."""
    group = next((p for p in earlier if p.is_group and param.path.startswith(f"{p.path}.")), None)
    if group is None:
        _check_path(param.path, config)
        if OmegaConf.is_dict(OmegaConf.select(config, param.path)):
            raise NNSearchError(
                f"search_space.{param.path} is a config node, not a value; "
                f"of the groups only {', '.join(GROUP_CHOICES)} can be chosen per trial."
            )
        return
    key = param.path[len(group.path) + 1 :]
    having = [c for c in group.distribution.choices if OmegaConf.select(load_option(group.path, c), key, default=_MISSING) is not _MISSING]
    lacking = [c for c in _possible(group, param, earlier) if c not in having]
    if lacking:
        hint = f"; add `when: {{{group.path}: [{', '.join(map(str, having))}]}}`" if having else ""
        raise NNSearchError(f"search_space.{param.path}: no such value in conf/{group.path}/{lacking[0]}.yaml{hint}.")


def _possible(group: Parameter, param: Parameter, earlier: list[Parameter]) -> tuple:
    """The choices of ``group`` under which ``param`` can be sampled, following conditions on
    conditional parameters (``model.bidirectional`` when ``model.cell`` when ``model: lstm``)."""
    possible = set(group.distribution.choices)
    for name, allowed in param.when:
        if name == group.path:
            possible &= set(allowed)
        else:
            parent = next(p for p in earlier if p.path == name)
            possible &= set(_possible(group, parent, earlier))
    return tuple(c for c in group.distribution.choices if c in possible)


def _parse_distribution(path: str, entry: Any) -> Parameter:
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
    try:
        if kind == "categorical":
            choices = entry.get("choices")
            if not isinstance(choices, list) or not choices:
                raise NNSearchError(f"{where}: a categorical parameter needs a non-empty list of `choices`.")
            _check_one_type(where, choices)
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


def _kind(value: Any) -> str:
    """The type family of a choice: ints and floats are both numbers (YAML writes ``1`` and ``1.0``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _check_one_type(where: str, choices: list) -> None:
    """Choices of one type (``None`` may join them): ``[32, "64"]`` would build a model with the text "64"
    in every trial that draws it, and Optuna's samplers and plots would order the two kinds inconsistently."""
    kinds: dict[str, Any] = {}
    for choice in choices:
        if choice is not None:
            kinds.setdefault(_kind(choice), choice)
    if len(kinds) > 1:
        shown = ", ".join(f"{value!r} ({kind})" for kind, value in kinds.items())
        raise NNSearchError(f"{where}: choices mix types: {shown}; write them all as one type (e.g. all numbers, or all quoted).")


def _check_path(path: str, config: DictConfig) -> None:
    """A searched path must name an existing config value, so a typo fails before trial 0."""
    if OmegaConf.select(config, path, default=_MISSING, throw_on_missing=False) is not _MISSING:
        return
    known = sorted(p for p in _leaf_paths(config) if not p.startswith("search_space."))  # not the space's own keys
    near = difflib.get_close_matches(path, known, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise NNSearchError(f"search_space.{path}: no such config value.{hint}")


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]
