"""Shared helpers: run the real CLI in a temporary directory, or compose a config in-process.

CLI tests pay ~6 s of imports per run; in-process tests (``run_in_process``) share one
interpreter and suit tables of variants. Both write only below ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = str(REPO / "conf")
# a study small enough to finish in a few seconds: use with any study
TINY = ["study.n_trials=2", "cv.folds=2", "trainer.max_epochs=2", "final.retrain=false", "report.study_plots=false"]


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"  # the local server (trust auth), as CI has it


def postgres_available() -> bool:
    """PostgreSQL answers on 127.0.0.1:5432 (tests of shared storages and stores use it for real)."""
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(POSTGRES).connect():
            return True
    except Exception:
        return False


def cli(args: list[str], cwd: Path, *, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m nnsearch ARGS`` in ``cwd``; output captured as text."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nnsearch", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run the CLI in this test's temporary directory."""

    def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return cli(list(args), tmp_path, **kwargs)

    return _run


def compose(overrides: list[str]):
    """The config the CLI would build for ``overrides`` (studies registered as ``+study=NAME``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from nnsearch.config.studies import register_studies

    register_studies()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


@pytest.fixture
def run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Compose ``overrides`` and run the study in this process, inside ``tmp_path``; returns the study."""
    monkeypatch.chdir(tmp_path)

    def _run(*overrides: str):
        from nnsearch.launch.run import run_study

        return run_study(compose(list(overrides)))

    return _run


def mlflow_runs(tmp_path: Path, experiment: str):
    """Parent and child runs of ``experiment`` in the default store below ``tmp_path``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("nnsearch.role") == "study"]
    children = [r for r in runs if r.data.tags.get("nnsearch.role") == "trial"]
    return client, parents, children


def load_study(tmp_path: Path, name: str, storage: str | None = None):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    store = storage or JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=store)
