"""Folds of a trial side by side in processes (``cv.parallel``): same results, pruning still stops the trial.

On this 2-core machine ``cv.parallel=auto`` (the default) trains two folds at a time, one torch
thread each.
"""

from __future__ import annotations

import logging
import multiprocessing
import re

import pytest
from optuna.trial import TrialState

from conftest import mlflow_runs

WINE = ["+study=wine_mlp", "sampler=random", "study.n_trials=2", "cv.folds=3", "trainer.max_epochs=2", "final.retrain=false", "report.study_plots=false"]


def test_folds_in_parallel_give_the_scores_of_folds_in_turn(run_in_process, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="nnsearch")
    (tmp_path / "seq").mkdir()
    (tmp_path / "par").mkdir()
    monkeypatch.chdir(tmp_path / "seq")
    in_turn = run_in_process(*WINE, "pruner=none", "cv.parallel=1")
    assert "folds at a time" not in caplog.text
    monkeypatch.chdir(tmp_path / "par")
    side_by_side = run_in_process(*WINE, "pruner=none", "cv.parallel=auto")
    assert "cv.parallel: 2 folds at a time, 1 torch thread(s) each" in caplog.text
    for a, b in zip(in_turn.trials, side_by_side.trials, strict=True):
        assert a.params == b.params
        assert b.user_attrs["fold_scores"] == pytest.approx(a.user_attrs["fold_scores"], abs=1e-6)
        assert b.value == pytest.approx(a.value, abs=1e-6)
    assert multiprocessing.active_children() == []  # the fold processes end with the study


def test_a_pruned_fold_stops_the_other_running_fold_and_the_queued_one_never_starts(run_in_process, tmp_path):
    # no wine model reaches accuracy 1.1: the first fold to report prunes the trial
    study = run_in_process(*WINE, "pruner=threshold", "pruner.lower=1.1", "cv.parallel=2", "trainer.max_epochs=5")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for trial in study.trials:
        assert set(trial.intermediate_values) <= {0, 5}  # epoch 0 of folds 0 and 1 (step = fold * 5 + epoch)
    _, _, children = mlflow_runs(tmp_path, "wine_mlp")
    for child in children:
        assert re.fullmatch(r"fold [01] epoch 0", child.data.tags["pruned_at"])
        assert child.data.metrics["epochs"] <= 2  # fold 2 was never trained
    assert multiprocessing.active_children() == []


def test_a_bad_parallel_setting_is_refused_before_the_study_exists(run_cli, tmp_path):
    done = run_cli("+study=wine_mlp", "cv.parallel=0")
    assert done.returncode != 0
    assert "cv.parallel must be 'auto' or a positive integer, got 0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "optuna.journal").exists()
