"""Folds of a trial side by side in processes (``cv.parallel``): same results, pruning still stops the trial.

``cv.parallel=auto`` (the default) depends on the machine's cores: these tests set a count, or
give ``auto`` a fixed number of cores, so they check the same thing on 1 core or 16.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from conftest import REPO, compose, load_study, mlflow_runs
from nnsearch.errors import NNSearchError, StudyFailed
from nnsearch.cv.pool import FOLD_DONE, InTurnPruner, evenly_packed, parallel_folds
from nnsearch.fit.pruning import trial_id_of

WINE = ["+study=wine_mlp", "sampler=random", "study.n_trials=2", "cv.folds=3", "trainer.max_epochs=2", "final.retrain=false", "report.study_plots=false"]


def _cores(monkeypatch, n):
    """What ``cv.parallel=auto`` sees as this machine's cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: n)


def test_folds_in_parallel_give_the_scores_of_folds_in_turn(run_in_process, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="nnsearch")
    _cores(monkeypatch, 2)  # auto: the three folds at once on 2 cores (evenly packed), whatever this machine has
    (tmp_path / "seq").mkdir()
    (tmp_path / "par").mkdir()
    monkeypatch.chdir(tmp_path / "seq")
    in_turn = run_in_process(*WINE, "pruner=none", "cv.parallel=1")
    assert "folds at a time" not in caplog.text
    monkeypatch.chdir(tmp_path / "par")
    side_by_side = run_in_process(*WINE, "pruner=none", "cv.parallel=auto")
    assert "cv.parallel: 3 folds at a time, 1 torch thread(s) each" in caplog.text
    for a, b in zip(in_turn.trials, side_by_side.trials, strict=True):
        assert a.params == b.params
        assert b.user_attrs["fold_scores"] == pytest.approx(a.user_attrs["fold_scores"], abs=1e-6)
        assert b.value == pytest.approx(a.value, abs=1e-6)
    assert multiprocessing.active_children() == []  # the fold processes end with the study


def test_a_pruned_fold_stops_the_other_running_fold_and_the_queued_one_never_starts(run_in_process, tmp_path):
    # no wine model reaches accuracy 1.1: fold 0's first report prunes the trial. Fold 1 runs
    # beside it; which of the two gets further first is up to the scheduler, so fold 1 is made to
    # wait until the trial is decided (tests/fold_gate.py) before it trains: it is running when the
    # trial is pruned, stops at the end of its first epoch, and fold 2 is still queued.
    epochs = 10
    with pytest.raises(StudyFailed, match=r"no trial of study 'wine_mlp' completed \(2 pruned"):
        run_in_process(*WINE, "pruner=threshold", "pruner.lower=1.1", "cv.parallel=2", f"trainer.max_epochs={epochs}",
                       "model._target_=fold_gate.SecondFoldWaits")
    study = load_study(tmp_path, "wine_mlp")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for trial in study.trials:
        assert max(trial.intermediate_values) < 2 * epochs  # folds 0 and 1 only (step = fold * epochs + epoch): fold 2 never trained
        assert [step for step in trial.intermediate_values if step < epochs] == [0]  # pruned at the first report it judged
    _, _, children = mlflow_runs(tmp_path, "wine_mlp")
    for child in children:
        assert child.data.tags["pruned_at"] == "fold 0 epoch 0"  # step 0 is judged first, whichever fold asks
        assert child.data.metrics["epochs"] <= 2  # fold 0 stopped after one epoch, fold 1 after its first; fold 2 never trained
    assert multiprocessing.active_children() == []


@pytest.mark.slow
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


def test_with_fold_processes_the_study_process_never_imports_lightning_and_still_gets_plots_and_a_final_model(tmp_path):
    """The smoke test, the folds, the study plots and the final fit run in the fold processes, which import
    Lightning once, in their fork server: the study's own process spends those seconds on MLflow instead,
    and imports torch only for the final model, after the trials."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from conftest import compose
        import nnsearch.study.session as session
        import nnsearch.runtime.background_import as background
        from nnsearch.launch.run import run_study
        trials = session.run_trials_here
        def run_trials_here(*args, **kwargs):
            print("TORCH BEFORE THE TRIALS", "torch" in sys.modules)
            return trials(*args, **kwargs)
        session.run_trials_here = run_trials_here
        # torch's import on a thread beside the first trial is wanted; left to run, it races the check above
        background.import_in_background = lambda name: print("IMPORTED BESIDE THE TRIALS", name)
        run_study(compose(["+study=digits_mlp", "sampler=random", "study.n_trials=2", "cv.folds=2", "cv.parallel=2", "trainer.max_epochs=2"]))
        print("IMPORTED", sorted({{m.split(".")[0] for m in sys.modules}} & {{"lightning", "pytorch_lightning", "torchmetrics"}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IMPORTED []" in done.stdout
    assert "TORCH BEFORE THE TRIALS False" in done.stdout  # about 1.7 s of CPU off the way to the first trial
    assert "IMPORTED BESIDE THE TRIALS torch" in done.stdout
    client, (parent,), _ = mlflow_runs(tmp_path, "digits_mlp")
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/param_importances.png", "plots/slice.png"} <= plots
    final = client.search_runs([parent.info.experiment_id], filter_string="tags.mlflow.runName = 'final-model'")
    import mlflow.pyfunc
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    before = mlflow.get_tracking_uri()  # another test in this process may have set one: it would win over the environment
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(final[0].data.tags["model_uri"])
    finally:
        mlflow.set_tracking_uri(before)
    columns = model.metadata.get_input_schema().input_names()
    predicted = model.predict(pd.DataFrame(digits.data[:200], columns=columns))["prediction"].to_numpy()
    assert (predicted.astype(str) == digits.target[:200].astype(str)).mean() > 0.5  # labels as the data names them; two epochs on all development rows: far above chance (0.1)


def test_a_bad_parallel_setting_is_refused_before_the_study_exists(run_cli, tmp_path):
    done = run_cli("+study=wine_mlp", "cv.parallel=0")
    assert done.returncode != 0
    assert "cv.parallel must be 'auto' or a positive integer, got 0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "optuna.journal").exists()


# -- units: no training ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "overrides", "expected"),
    [
        (1, [], 1),  # one core: the folds in turn
        (2, [], 3),  # 3 folds on 2 cores: all at once (1.5 rounds) rather than 2 then 1 (2 rounds)
        (16, [], 3),  # never more processes than folds
        (16, ["runtime.threads=4"], 3),
        (8, ["runtime.threads=4"], 2),  # cores / threads per fold
        (16, ["trainer.devices=2", "trainer.accelerator=cpu"], 1),  # DDP: each fold has processes of its own
        (1, ["cv.parallel=2"], 2),  # a count is taken as given, up to the folds
        (16, ["cv.parallel=9"], 3),
        (16, ["cv.parallel=1"], 1),
    ],
    ids=["1-core", "2-cores", "16-cores", "16-cores-4-threads", "8-cores-4-threads", "ddp", "count-on-1-core", "count-above-folds", "in-turn"],
)
def test_auto_takes_the_free_cores_and_a_count_is_kept(monkeypatch, cores, overrides, expected):
    _cores(monkeypatch, cores)
    cfg = compose(["+study=wine_mlp", "trainer.accelerator=cpu", *overrides])
    assert parallel_folds(cfg, 3, per_fold_pruning=False) == expected


@pytest.mark.parametrize(
    ("folds", "cores", "processes"),
    [(5, 2, 3), (3, 2, 3), (4, 2, 2), (10, 2, 2), (5, 4, 5), (8, 4, 4), (5, 1, 1), (2, 16, 2)],
)
def test_auto_packs_the_folds_evenly_on_the_cores(folds, cores, processes):
    """No core idles in a last round of folds: 5 folds on 2 cores in 3 processes (2.5 rounds, not 3)."""
    assert evenly_packed(folds, cores) == processes


def test_auto_keeps_the_folds_in_order_for_a_pruner_that_needs_them_so(monkeypatch):
    _cores(monkeypatch, 16)
    assert parallel_folds(compose(["+study=wine_mlp", "trainer.accelerator=cpu"]), 3, per_fold_pruning=True) == 1  # the Wilcoxon pruner


def test_an_explicit_count_still_keeps_the_folds_in_order_for_the_wilcoxon_pruner_and_ddp(monkeypatch):
    _cores(monkeypatch, 16)
    assert parallel_folds(compose(["+study=wine_mlp", "cv.parallel=3"]), 3, per_fold_pruning=True) == 1
    assert parallel_folds(compose(["+study=wine_mlp", "cv.parallel=3", "trainer.devices=2", "trainer.accelerator=cpu"]), 3, per_fold_pruning=False) == 1
    assert parallel_folds(compose(["+study=wine_mlp", "cv.parallel=3"]), 3, per_fold_pruning=False) == 3


def test_a_parallel_setting_below_one_is_refused():
    with pytest.raises(NNSearchError, match="cv.parallel must be 'auto' or a positive integer, got -1"):
        parallel_folds(compose(["+study=wine_mlp", "cv.parallel=-1"]), 3, per_fold_pruning=False)


class _Recorder(optuna.pruners.BasePruner):
    """A pruner that records what it was shown and prunes at ``prune_at``."""

    def __init__(self, prune_at: int | None = None) -> None:
        self.prune_at, self.seen = prune_at, []

    def prune(self, study, trial) -> bool:
        self.seen.append(dict(trial.intermediate_values))
        return trial.last_step == self.prune_at


def _trial():
    """A running trial of an in-memory study, and a function that reports steps to it as any fold would."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(direction="maximize", storage=storage, study_name="in-turn")
    trial = study.ask()
    trial_id = trial_id_of(storage, "in-turn", trial.number)

    def report(**values: float) -> optuna.trial.FrozenTrial:
        for step, value in values.items():
            trial.report(value, int(step.removeprefix("s")))
        return storage.get_trial(trial_id)  # what Trial.should_prune hands the pruner

    report.mark_done = lambda fold, epochs: storage.set_trial_system_attr(trial_id, FOLD_DONE.format(fold), epochs)  # as a fold's process does
    return study, trial, report


def test_in_turn_a_step_is_judged_once_every_earlier_step_is_in_and_later_steps_are_hidden():
    study, _, report = _trial()
    recorder = _Recorder()
    in_turn = InTurnPruner(recorder, steps_per_fold=3)
    assert in_turn.prune(study, report(s3=0.3)) is False  # fold 1's first epoch, before fold 0 reported anything
    assert recorder.seen == []
    assert in_turn.prune(study, report(s0=0.0, s1=0.1)) is False
    assert recorder.seen == [{0: 0.0}, {0: 0.0, 1: 0.1}]  # step 3 was in, but folds in turn had not reported it yet
    assert in_turn.prune(study, report(s2=0.2)) is False  # completes fold 0: steps 2 and 3 are judged now
    assert recorder.seen[2:] == [{0: 0.0, 1: 0.1, 2: 0.2}, {0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3}]
    assert in_turn.prune(study, report()) is False and len(recorder.seen) == 4  # nothing new: no step judged twice
    assert in_turn.judged == 3 and in_turn.pruned_step is None


def test_in_turn_a_fold_marked_done_counts_as_complete():
    study, trial, report = _trial()
    recorder = _Recorder()
    in_turn = InTurnPruner(recorder, steps_per_fold=3)
    frozen = report(s0=0.0, s1=0.1, s3=0.3)  # fold 0 stopped early after two epochs; fold 1 reported
    assert in_turn.prune(study, frozen) is False
    assert in_turn.judged == 1  # step 2 may still come
    report.mark_done(0, 2)
    assert in_turn.prune(study, report()) is False
    assert recorder.seen[-1] == {0: 0.0, 1: 0.1, 3: 0.3} and in_turn.judged == 3


def test_in_turn_records_the_pruned_step_and_judges_nothing_after_it():
    study, _, report = _trial()
    recorder = _Recorder(prune_at=1)
    in_turn = InTurnPruner(recorder, steps_per_fold=3)
    assert in_turn.prune(study, report(s0=0.5, s1=0.4, s2=0.3, s3=0.2)) is True
    assert in_turn.pruned_step == 1 and len(recorder.seen) == 2
    assert str(in_turn.pruned()) == "pruned at fold 0, epoch 1 (step 1)"


def test_in_turn_a_real_pruner_keeps_its_warm_up():
    # a pruner takes the highest step as the trial's progress: fold 1's first report (step 3) would end the warm-up of 2 steps
    study, _, report = _trial()
    threshold = optuna.pruners.ThresholdPruner(lower=0.5, n_warmup_steps=2)
    frozen = report(s3=0.1, s0=0.1)
    assert threshold.prune(study, frozen) is True  # judged on step 3 after one epoch of fold 0
    in_turn = InTurnPruner(threshold, steps_per_fold=3)
    assert in_turn.prune(study, frozen) is False  # step 0 is inside the warm-up
    assert in_turn.prune(study, report(s1=0.9, s2=0.9)) is True  # steps 1 and 2 pass; step 3 is below the threshold
    assert in_turn.pruned_step == 3
