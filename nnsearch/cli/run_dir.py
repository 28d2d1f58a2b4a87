"""The Hydra run folder (``outputs/STUDY/TIME``) of a command that was refused.

Hydra creates it, with ``.hydra/`` and the job's log file, before nnsearch reads the config; a
command that ends in a one-line error before writing anything there would otherwise leave one
such folder per attempt, next to the folders of the runs that did something.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def remove_unused_run_dir() -> None:
    """Delete this job's run folder if it holds only what Hydra wrote, then the empty folders above it
    up to the directory the command ran in (``outputs/STUDY``, ``outputs``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():  # composed in-process (tests, the API): Hydra made no folder
        return
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    if not run_dir.is_dir() or not _only_hydras_files(run_dir, log_name=f"{hydra.job.name}.log"):
        return
    _close_log_files_in(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    top = Path(hydra.runtime.cwd).resolve()
    folder = run_dir.resolve().parent
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()  # only an empty one
        except OSError:
            break
        folder = folder.parent


def _only_hydras_files(run_dir: Path, *, log_name: str) -> bool:
    names = {p.name for p in run_dir.iterdir()}
    if not names <= {".hydra", log_name}:
        return False
    meta = run_dir / ".hydra"
    return not meta.exists() or (meta.is_dir() and {p.name for p in meta.iterdir()} <= HYDRA_FILES)


def _close_log_files_in(folder: Path) -> None:
    """Hydra's job log handler writes into the folder; close it before the folder goes."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().parent == folder.resolve():
            handler.close()
            root.removeHandler(handler)
