"""The README's promise, end to end through the real CLI in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from optuna.trial import TrialState

from conftest import TINY, load_study, mlflow_runs


def test_classification_study_records_trials_in_optuna_and_mlflow(run_cli, tmp_path):
    result = run_cli("+study=digits_mlp", *TINY)
    assert result.returncode == 0, result.stderr
    assert "Best trial" in result.stdout and "best_config.yaml" in result.stdout

    study = load_study(tmp_path, "digits_mlp")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        assert 0.0 <= trial.value <= 1.0
        assert len(trial.user_attrs["fold_scores"]) == 2
        assert trial.user_attrs["cv/accuracy"] == pytest.approx(trial.value)

    client, parents, children = mlflow_runs(tmp_path, "digits_mlp")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["sampler"] == "TPESampler" and parent.data.params["sampler.seed"] == "0"
    assert parent.data.metrics["best/accuracy"] == pytest.approx(study.best_value)
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["state"] == "COMPLETE" and child.data.tags["folds"] == "2"
        assert set(child.data.params) == set(study.trials[0].params)
        for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
            assert f"cv/{name}" in child.data.metrics and f"cv/{name}_std" in child.data.metrics
        curve = client.get_metric_history(child.info.run_id, "fold1/val/loss")
        assert [m.step for m in curve] == [0, 1]
        assert "config.yaml" in [a.path for a in client.list_artifacts(child.info.run_id)]
    assert "best_config.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]


@pytest.mark.slow
def test_regression_study_optimizes_rmse_in_target_units(run_cli, tmp_path):
    result = run_cli("+study=diabetes_mlp", *TINY)
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path, "diabetes_mlp")
    assert study.direction.name == "MINIMIZE"
    # the diabetes target spans 25..346: an RMSE in standardized units would be near 1
    assert 30 < study.best_value < 200
    _, _, children = mlflow_runs(tmp_path, "diabetes_mlp")
    assert {"cv/mse", "cv/rmse", "cv/mae", "cv/r2"} <= set(children[0].data.metrics)


def test_resume_runs_only_the_missing_trials_under_the_same_parent_run(run_cli, tmp_path):
    assert run_cli("+study=wine_mlp", *TINY).returncode == 0
    _, parents, _ = mlflow_runs(tmp_path, "wine_mlp")
    first_parent = parents[0].info.run_id

    result = run_cli("+study=wine_mlp", *TINY[1:], "study.n_trials=3")
    assert result.returncode == 0, result.stderr
    assert "2/3 trials finished" in result.stdout + result.stderr
    study = load_study(tmp_path, "wine_mlp")
    assert len(study.trials) == 3
    _, parents, children = mlflow_runs(tmp_path, "wine_mlp")
    assert [p.info.run_id for p in parents] == [first_parent]
    assert parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["optuna.trial_number"] for c in children) == ["0", "1", "2"]
    # the resumed process samples with a seed of its own, not again trial 0's parameters
    assert study.trials[2].params != study.trials[0].params
    seeds = {c.data.tags["optuna.trial_number"]: c.data.tags["sampler.seed"] for c in children}
    assert seeds["0"] == seeds["1"] == "0" and seeds["2"] != "0"


@pytest.mark.slow
def test_grid_search_stops_when_the_grid_is_exhausted(run_cli, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "grid_wine.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - override /data: wine
              - override /sampler: grid
            study:
              n_trials: 50
            search_space:
              model.hidden_dim: {type: categorical, choices: [8, 16]}
              optimizer.lr: {type: float, low: 0.001, high: 0.003, step: 0.001}
            """
        )
    )
    result = run_cli("+study=grid_wine", "cv.folds=2", "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr
    assert "grid exhausted" in result.stdout
    study = load_study(tmp_path, "grid_wine")
    points = [(t.params["model.hidden_dim"], round(t.params["optimizer.lr"], 6)) for t in study.trials]
    assert sorted(points) == sorted((h, lr) for h in (8, 16) for lr in (0.001, 0.002, 0.003))


@pytest.mark.slow
def test_nan_loss_fails_that_trial_with_its_reason_and_the_study_goes_on(run_cli, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "explode.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - override /data: wine
              - override /optimizer: sgd
              - override /sampler: grid
            study:
              n_trials: 2
            search_space:
              optimizer.lr: {type: categorical, choices: [1.0e+12, 1.0e-2]}
            """
        )
    )
    result = run_cli("+study=explode", "cv.folds=2", "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    study = load_study(tmp_path, "explode")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and "nan" in failed[0].user_attrs["fail_reason"]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    _, _, children = mlflow_runs(tmp_path, "explode")
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]


@pytest.mark.slow
def test_best_config_export_reproduces_the_best_trial(run_cli, tmp_path):
    assert run_cli("+study=breast_cancer_mlp", *TINY).returncode == 0
    best = load_study(tmp_path, "breast_cancer_mlp").best_trial
    exported = next(tmp_path.glob("outputs/breast_cancer_mlp/*/best_config.yaml"))
    # as the README writes it: a path relative to the folder the study ran in
    result = run_cli("--config-path", str(exported.parent.relative_to(tmp_path)), "--config-name", "best_config")
    assert result.returncode == 0, result.stderr
    rerun = load_study(tmp_path, "breast_cancer_mlp-best")
    assert rerun.best_value == pytest.approx(best.value, abs=1e-6)
    assert list(tmp_path.glob("outputs/breast_cancer_mlp-best/*/best_config.yaml"))  # the re-run's own folder says what it is


def test_ctrl_c_interrupts_cleanly_and_the_same_command_resumes(tmp_path):
    args = [sys.executable, "-m", "nnsearch", "+study=digits_mlp", "study.n_trials=4", "cv.folds=2", "trainer.max_epochs=10",
            "final.retrain=false", "report.study_plots=false"]  # the report's own Ctrl-C: study/test_integrity.py
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if "trial 0:" in line:
            proc.send_signal(signal.SIGINT)
            break
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in output
    _, parents, _ = mlflow_runs(tmp_path, "digits_mlp")
    assert parents[0].info.status == "KILLED"
    interrupted = len(load_study(tmp_path, "digits_mlp").get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    assert interrupted < 4

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path, "digits_mlp")
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 4
    _, parents, children = mlflow_runs(tmp_path, "digits_mlp")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [c for c in children if c.info.status == "RUNNING"]


def test_help_describes_each_study_in_whole_sentences(tmp_path):
    from nnsearch.cli.help import SUMMARY_CHARS, _summary, help_text
    from nnsearch.config.studies import study_files

    for name, file in study_files().items():
        summary = _summary(file)
        assert summary and summary[-1] in ".?!", (name, summary)
    text = help_text()
    assert "Anomaly detection: an autoencoder trained on digits 0-4 flags digits 5-9 (10% of the rows) by their reconstruction error." in text
    assert "A GAN generating breast-cancer feature rows (30 features).\n" in text  # not "... Scored honestly, not by its losses:"

    study = tmp_path / "mine.yaml"
    study.write_text(
        "# @package _global_\n# My study, e.g. of a model whose comment wraps\n# over two lines. A second sentence.\n#\n"
        "# Another paragraph.\ndefaults:\n  - override /model: mlp\n# a trailing comment\n"
    )
    assert _summary(study) == "My study, e.g. of a model whose comment wraps over two lines. A second sentence."
    study.write_text("# " + "Long words here. " * 20 + "\nseed: 1\n")
    assert _summary(study) == "Long words here. " * (SUMMARY_CHARS // 17 - 1) + "Long words here."
    study.write_text("seed: 1\n")
    assert _summary(study) == ""


def test_the_clock_starts_at_the_launch_even_when_a_shell_execs_the_command(monkeypatch):
    """`a && python -m nnsearch ...` in `sh -c` may exec: the process then dates from before `a` ran."""
    import psutil

    import nnsearch.__main__ as entry

    monkeypatch.setattr(psutil.Process, "create_time", lambda self: entry.IMPORTED - 0.3)
    assert entry._process_started() == entry.IMPORTED - 0.3  # the interpreter's own start-up counts
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: entry.IMPORTED - 60)
    assert entry._process_started() == entry.IMPORTED  # not the minute the shell spent on `a`
