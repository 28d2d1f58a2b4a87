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

from conftest import load_study, mlflow_runs
from nnsearch.errors import StudyFailed

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
    # no wine model reaches accuracy 1.1: fold 0's first report prunes the trial. Fold 1 runs
    # beside it and may report first (its reports wait for fold 0's: see InTurnPruner); with 50
    # epochs a fold it cannot finish before fold 0's first epoch, so fold 2 would only start if
    # the pool ignored the pruned fold.
    epochs = 50
    with pytest.raises(StudyFailed, match=r"no trial of study 'wine_mlp' completed \(2 pruned"):
        run_in_process(*WINE, "pruner=threshold", "pruner.lower=1.1", "cv.parallel=2", f"trainer.max_epochs={epochs}")
    study = load_study(tmp_path, "wine_mlp")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for trial in study.trials:
        assert max(trial.intermediate_values) < 2 * epochs  # folds 0 and 1 only (step = fold * epochs + epoch)
        assert [step for step in trial.intermediate_values if step < epochs] == [0]  # pruned at the first report it judged
    _, _, children = mlflow_runs(tmp_path, "wine_mlp")
    for child in children:
        assert child.data.tags["pruned_at"] == "fold 0 epoch 0"  # the first fold alone asks the pruner
        assert child.data.metrics["epochs"] < 1 + epochs  # fold 0 stopped after one epoch, fold 1 soon after; fold 2 never trained
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("pruner", [
    ["pruner=median", "pruner.n_startup_trials=2", "pruner.n_warmup_steps=3"],
    ["pruner=hyperband", "pruner.min_resource=1"],
    ["pruner=median", "pruner.n_startup_trials=2", "trainer.early_stopping.patience=1", "trainer.early_stopping.monitor=val/accuracy", "trainer.early_stopping.mode=max"],
], ids=["median", "hyperband", "median-early-stopping"])
def test_the_pruner_prunes_folds_side_by_side_where_it_prunes_folds_in_turn(pruner, run_in_process, tmp_path, monkeypatch):
    # with two folds at once the second reports step 5 after one epoch: the pruner must still
    # wait out its warm-up and judge each step with the reports folds in turn would have made
    overrides = [*WINE, *pruner, "study.n_trials=10", "trainer.max_epochs=5"]
    (tmp_path / "seq").mkdir()
    (tmp_path / "par").mkdir()
    monkeypatch.chdir(tmp_path / "seq")
    in_turn = run_in_process(*overrides, "cv.parallel=1")
    monkeypatch.chdir(tmp_path / "par")
    side_by_side = run_in_process(*overrides, "cv.parallel=2")
    pruned_at = {}
    for where in ("seq", "par"):
        _, _, children = mlflow_runs(tmp_path / where, "wine_mlp")
        pruned_at[where] = {c.data.tags["optuna.trial_number"]: c.data.tags.get("pruned_at") for c in children}
    assert pruned_at["par"] == pruned_at["seq"]  # in MLflow: "fold F epoch E" of every pruned trial
    states = []
    for a, b in zip(in_turn.trials, side_by_side.trials, strict=True):
        assert a.params == b.params
        assert b.state == a.state
        if a.state == TrialState.PRUNED:  # in turn the pruned step is the last report; side by side the reports up to it are the same
            seen = {step: value for step, value in b.intermediate_values.items() if step <= a.last_step}
            assert seen == pytest.approx(a.intermediate_values, abs=1e-6)
        states.append(a.state)
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, "the test needs both kinds"


def test_a_bad_parallel_setting_is_refused_before_the_study_exists(run_cli, tmp_path):
    done = run_cli("+study=wine_mlp", "cv.parallel=0")
    assert done.returncode != 0
    assert "cv.parallel must be 'auto' or a positive integer, got 0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "optuna.journal").exists()
