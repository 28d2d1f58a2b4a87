"""Checks of settings that no model build exercises, run before the study or any MLflow run exists.

Each would otherwise fail late: a bad ``study.timeout`` or ``data.batch_size`` in every trial (ten
failed trials, then exit 0), an unwritable store in the middle of opening the study (a traceback,
and a journal file already written), ``sampler=bruteforce`` over a continuous range in the first
trial (a traceback, a FAIL trial and a FAILED MLflow parent run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nnsearch.errors import NNSearchError

SQLITE = "sqlite:///"


def check_settings(cfg: DictConfig) -> None:
    """Study and data settings read only once trials run."""
    timeout = cfg.study.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise NNSearchError(f"study.timeout must be a positive number of seconds (or null for no limit), got {timeout!r}.")
    batch_size = cfg.data.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise NNSearchError(f"data.batch_size must be a positive integer, got {batch_size!r}.")


def check_data_early(cfg: DictConfig) -> None:
    """Data settings a file's header settles, checked before the heavy imports (~4 s: torch,
    Lightning, scikit-learn) that loading the data set needs: a mistyped column or an unknown file
    extension is reported at once. :func:`nnsearch.data.files.load_csv` and
    :func:`nnsearch.data.text.load_text` check the same again when they read the file."""
    target = str(cfg.data.get("_target_", ""))
    kinds = {"nnsearch.data.files.load_csv": "csv", "nnsearch.data.text.load_text": "text"}
    if target not in kinds:
        return
    from omegaconf import OmegaConf

    from nnsearch.data.files import check_csv_columns

    features = cfg.data.get("features")
    check_csv_columns(
        cfg.data.get("path"),
        cfg.data.get("target"),
        features=OmegaConf.to_container(features) if features is not None else None,
        text=cfg.data.get("text"),
        kind=kinds[target],
    )


def check_sampler(sampler: Any, space: Any) -> None:
    """Optuna's ``BruteForceSampler`` enumerates every value, so it cannot draw from a continuous range."""
    from optuna.distributions import FloatDistribution
    from optuna.samplers import BruteForceSampler

    if not isinstance(sampler, BruteForceSampler):
        return
    continuous = [f"search_space.{p.path}" for p in space.parameters if isinstance(p.distribution, FloatDistribution) and p.distribution.step is None]
    if continuous:
        raise NNSearchError(
            f"sampler=bruteforce tries every value of every parameter, so each float needs a `step` (or a list of "
            f"`values`); {', '.join(continuous)} {'is' if len(continuous) == 1 else 'are'} continuous. "
            "Use sampler=tpe or sampler=random for continuous ranges."
        )


def check_stores(cfg: DictConfig) -> None:
    """The Optuna storage file and the SQLite MLflow store can be created and written by this user.

    Only local files are checked; a database server says for itself whether it accepts the user.
    Running as root, ``os.access`` grants writing whatever the mode bits say (as the kernel does),
    so there only a folder that is a file, or a file that is a folder, is caught.
    """
    from nnsearch.storage import DEFAULT_JOURNAL, is_journal

    storage = cfg.study.get("storage")
    if is_journal(storage):
        _check_file("study.storage", Path(storage or DEFAULT_JOURNAL), create_folders=False)
    elif str(storage).startswith(SQLITE):
        _check_file("study.storage", Path(str(storage)[len(SQLITE) :]), create_folders=False)
    uri = str(cfg.tracking.get("uri") or "")
    if uri.startswith(SQLITE):
        _check_file("tracking.uri", Path(uri[len(SQLITE) :]), create_folders=True)  # MLflow creates missing folders


def _check_file(setting: str, file: Path, *, create_folders: bool) -> None:
    """``file`` will be created or appended to, next to lock or journal files in its folder."""
    file = file.expanduser().absolute()
    if file.is_dir():
        raise NNSearchError(f"{setting}: {file} is a folder; give the path of a file (in it or elsewhere).")
    folder = file.parent
    if create_folders:
        while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
            folder = folder.parent  # the nearest existing ancestor, in which the rest will be created
    if not folder.exists():
        raise NNSearchError(f"{setting}: folder {folder} does not exist.")
    if not folder.is_dir():
        raise NNSearchError(f"{setting}: cannot create {file}: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NNSearchError(f"{setting}: cannot write {file}: folder {folder} is not writable by this user.")
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        raise NNSearchError(f"{setting}: cannot write {file}: the file is read-only for this user.")
