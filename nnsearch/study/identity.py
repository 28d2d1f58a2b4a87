"""A study's identity: the settings that decide what its trials' scores mean.

Trials of one study are compared with each other by the sampler, the pruner and the
leaderboard, so a resumed study must run with the settings its trials ran with: the data (source,
path, target, task, preprocessing and the rows themselves), the fixed model and training settings,
the folds (count, seed, test split), the objective(s) and directions, and the search space.
Changing any of them on resume would silently mix incomparable trials (a 3-fold trial pruned
against 2-fold ones, iris trials in a wine study); the study refuses, naming the keys that differ.

What may change on resume (:data:`MAY_CHANGE`) says how a study runs, not what it computes: the
trial budget and time limit, how trials are launched, reported and tracked, the sampler and
pruner (they choose which trials run, not what a trial scores), the threads, DataLoader workers and image
cache, and the fit engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError


MAY_CHANGE = (
    "command",
    "study.n_trials",
    "study.timeout",
    "study.max_failed_trials",
    "study.enqueue",
    "study.storage",
    "study.name",
    "launch",
    "report",
    "tracking",
    "final",
    "runtime",
    "sampler",
    "pruner",
    "cv.parallel",
    "data.num_workers",  # DataLoader worker processes and the decoded-image cache: how files are read, not which
    "data.cache_mb",
    "trainer.engine",
    "trainer.checkpoint_every",
    "hydra",
)

# blocks whose settings change nothing while their switch is null (distillation without a teacher)
SWITCHED = {"distill": "distill.teacher"}


def settings(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The identity settings of ``cfg``, flattened to dotted keys (values resolved)."""
    tree = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    flat: dict[str, Any] = {}
    _flatten(tree, "", flat)
    idle = [block for block, switch in SWITCHED.items() if flat.get(switch) is None]
    # a null setting counts as unset, so a key added later with a null default does not stop older studies from resuming
    return {k: v for k, v in flat.items() if not _may_change(k) and v is not None and not any(k.startswith(b + ".") for b in idle)}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}{key}.", out)
    else:
        out[prefix[:-1]] = node


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MAY_CHANGE)


def data_digest(X: Any, y: Any) -> str:
    """``rows x columns, sha256 prefix`` of the arrays a study cross-validates: an edited file under
    the same path changes it."""
    import numpy as np

    digest = hashlib.sha256()
    for array in (X, y):
        array = np.ascontiguousarray(array)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return f"{len(y)} rows x {int(np.prod(X.shape[1:]))} features, sha256 {digest.hexdigest()[:16]}"


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key (stored -> current)`` for every identity setting that differs, sorted by key."""
    keys = sorted(set(stored) | set(current))
    missing = "(unset)"
    return [
        f"{k} ({_show(stored.get(k, missing))} -> {_show(current.get(k, missing))})"
        for k in keys
        if stored.get(k, missing) != current.get(k, missing)
    ]


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) and value != "(unset)" else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(record: Any, cfg: DictConfig, digest: str, *, where: str) -> None:
    """Refuse to resume ``study`` with other identity settings or other data than its trials had.

    A study without a stored config (created before nnsearch kept one, or never started a trial)
    has nothing to compare against and is accepted.
    """
    from nnsearch.study.record import CONFIG, DATA

    study = record.study
    if not study.get_trials(deepcopy=False):
        return
    stored_yaml = record.get(CONFIG)
    diffs = []
    if stored_yaml is not None:
        diffs = differences(settings(OmegaConf.create(stored_yaml)), settings(cfg))
    stored_digest = record.get(DATA)
    if stored_digest is not None and stored_digest != digest and not any(d.startswith("data.") for d in diffs):
        diffs.append(f"the data's rows ({stored_digest} -> {digest})")
    if not diffs:
        return
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    raise NNSearchError(
        f"study '{study.study_name}' in {where} has {len(study.get_trials(deepcopy=False))} trials run with other settings: {shown}. "
        f"Its trials would not be comparable: add study.name=NEW_NAME to start a new study with these settings, "
        f"or drop the changes to resume it."
    )


def remember_data(record: Any, digest: str) -> None:
    """Store the data digest on the study (its config is stored by :func:`nnsearch.study.report.remember_config`)."""
    from nnsearch.study.record import DATA

    record.set(DATA, digest)
