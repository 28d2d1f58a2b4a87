"""Trial checkpoints: a trial interrupted mid-fold is queued again and resumes where it stopped.

The interruption is deterministic: the test makes the checkpoint callback raise KeyboardInterrupt
(what Ctrl-C raises) right after it saved fold 1's epoch 2; the same study run again must then
read fold 0 back, resume fold 1 at epoch 3, and score exactly what an uninterrupted trial scores.
The kill -9 test kills the whole run once a checkpoint file exists.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from optuna.trial import TrialState

from conftest import cli, load_study, mlflow_runs

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# dropout, a step scheduler and early stopping (which never fires here) all carry state a resume must restore
BASE = ["+study=digits_mlp", "study.n_trials=1", "cv.folds=3", "trainer.max_epochs=6", "trainer.checkpoint_every=1", "cv.parallel=1",
        "sampler=random", "scheduler=step", "scheduler.step_size=2", "trainer.early_stopping.patience=50", "final.retrain=false",
        "report.study_plots=false", "tracking.trial_plots=none", "report.progress=off", "tracking.keep_checkpoints=complete"]


def test_checkpoint_every_takes_epochs_seconds_or_nothing():
    from nnsearch.errors import NNSearchError
    from nnsearch.fit.settings import CheckpointEvery

    assert CheckpointEvery.parse(5) == CheckpointEvery(epochs=5)
    assert CheckpointEvery.parse("90s") == CheckpointEvery(seconds=90.0)
    assert not CheckpointEvery.parse(None).enabled
    with pytest.raises(NNSearchError, match="trainer.checkpoint_every must be"):
        CheckpointEvery.parse("often")


def test_keep_checkpoints_best_logs_the_weights_of_a_trial_that_is_the_best_so_far():
    import optuna

    from nnsearch.study.objective import Objective
    from nnsearch.study.objectives import Objectives

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.8))
    objective = Objective.__new__(Objective)  # only the policy is asked here
    objective.keep_checkpoints, objective.objectives = "best", Objectives(["accuracy"], ["maximize"])
    trial = study.ask()
    assert objective._keep_weights(trial, {"accuracy": 0.9}) and not objective._keep_weights(trial, {"accuracy": 0.7})
    objective.keep_checkpoints = "none"
    assert not objective._keep_weights(trial, {"accuracy": 0.9})


def _interrupt_after_saving(monkeypatch, fold: int, epoch: int) -> None:
    from nnsearch.fit.callbacks import FoldCheckpoint

    save = FoldCheckpoint.save

    def save_then_interrupt(self, trainer):
        save(self, trainer)
        if self.checkpointing.fold == fold and trainer.current_epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(FoldCheckpoint, "save", save_then_interrupt)


def _folds_trained(monkeypatch) -> list[int]:
    """The folds that ``fit_one_fold`` trains from here on (a fold read back from its checkpoint is not)."""
    import nnsearch.fit.fold as fold_module

    trained: list[int] = []
    fit_one_fold = fold_module.fit_one_fold

    def counting(cfg, data, fold, *args, **kwargs):
        trained.append(fold.index)
        return fit_one_fold(cfg, data, fold, *args, **kwargs)

    monkeypatch.setattr(fold_module, "fit_one_fold", counting)
    return trained


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fast", "lightning"])
def test_an_interrupted_trial_resumes_from_its_checkpoint_and_scores_as_if_never_interrupted(run_in_process, tmp_path, monkeypatch, engine):
    args = [*BASE, f"trainer.engine={engine}"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "interrupted").mkdir()
    monkeypatch.chdir(tmp_path / "whole")
    from conftest import compose
    from nnsearch.launch.run import run_study

    run_study(compose(args))
    whole = load_study(tmp_path / "whole", "digits_mlp").trials[0]

    monkeypatch.chdir(tmp_path / "interrupted")
    with monkeypatch.context() as patch:
        _interrupt_after_saving(patch, fold=1, epoch=2)
        with pytest.raises(KeyboardInterrupt):
            run_study(compose(args))
    folder = tmp_path / "interrupted" / "checkpoints" / "digits_mlp" / "trial-0000"
    assert (folder / "fold0.done").is_file() and (folder / f"fold1.{engine}.ckpt").is_file()
    with monkeypatch.context() as patch:
        trained = _folds_trained(patch)
        run_study(compose(args))  # the same command again

    study = load_study(tmp_path / "interrupted", "digits_mlp")
    first, retry = study.trials[0], study.trials[1]
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE and len(study.get_trials(states=FINISHED)) == 1
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == first.params == whole.params
    assert trained == [1, 2]  # fold 0 was read back, fold 1 resumed, fold 2 trained
    scores = {k: v for k, v in whole.user_attrs.items() if k.startswith("cv/")}
    assert scores and {k: retry.user_attrs[k] for k in scores} == scores  # exactly equal (CPU, same seed, one thread)
    assert retry.user_attrs["epochs"] == whole.user_attrs["epochs"] == 18
    assert retry.intermediate_values == whole.intermediate_values  # the pruner saw the whole curve, restored epochs included

    client, parents, children = mlflow_runs(tmp_path / "interrupted", "digits_mlp")
    by_number = {c.data.tags["optuna.trial_number"]: c for c in children}
    assert by_number["1"].data.tags["resumed_from"] == "fold 1 epoch 3"
    assert by_number["1"].info.status == "FINISHED" and "resumed_from" not in by_number["0"].data.tags
    assert not [c for c in children if c.info.status == "RUNNING"] and parents[0].info.status == "FINISHED"
    assert not folder.exists()  # a finished trial's checkpoints are deleted ...
    logged = [f.path for f in client.list_artifacts(by_number["1"].info.run_id, "checkpoints")]
    assert logged == [f"checkpoints/fold{k}.pt" for k in range(3)]  # ... after keep_checkpoints=complete logged its final weights


@pytest.mark.slow
def test_a_run_killed_mid_fold_resumes_the_trial_and_completes_the_study(tmp_path):
    args = ["+study=digits_mlp", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=30", "trainer.checkpoint_every=1", "cv.parallel=2",
            "pruner=none", "final.retrain=false", "report.study_plots=false", "tracking.trial_plots=none"]
    proc = subprocess.Popen([sys.executable, "-m", "nnsearch", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "checkpoints" / "digits_mlp" / "trial-0000"
    deadline = time.monotonic() + 300
    while not list(folder.glob("fold*.ckpt")):
        assert proc.poll() is None, "the study ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    helpers = psutil.Process(proc.pid).children(recursive=True)  # the fold processes
    proc.kill()
    proc.wait()
    psutil.wait_procs(helpers, timeout=60)
    assert load_study(tmp_path, "digits_mlp").trials[0].state == TrialState.RUNNING  # as the kill left it

    result = cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path, "digits_mlp")
    assert len(study.get_trials(states=FINISHED)) == 2 and not study.get_trials(states=(TrialState.RUNNING,))
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == study.trials[0].params
    _, parents, children = mlflow_runs(tmp_path, "digits_mlp")
    resumed = {c.data.tags["optuna.trial_number"]: c.data.tags.get("resumed_from") for c in children}
    assert resumed[str(retry.number)] and resumed[str(retry.number)].startswith("fold ")
    assert not [c for c in children if c.info.status == "RUNNING"] and [p.info.status for p in parents] == ["FINISHED"]
    assert not folder.exists()


@pytest.mark.slow
def test_a_ddp_fold_whose_ranks_died_resumes_from_the_checkpoint_rank_zero_wrote(tmp_path):
    import multiprocessing

    from conftest import compose
    from nnsearch.config.building import build
    from nnsearch.cv import FoldCache, make_splits
    from nnsearch.errors import TrialFailed
    from nnsearch.fit import fit_fold
    from nnsearch.fit.checkpoint import FoldCheckpointing
    from nnsearch.fit.settings import CheckpointEvery

    marker = tmp_path / "died"
    cfg = compose(["+study=wine_mlp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=4", "model.dropout=0.2",
                   "+callbacks.exit._target_=exit_at.ExitAt", "+callbacks.exit.epoch=2", f"+callbacks.exit.marker={marker}"])
    data = build("data", cfg.data)
    fold = FoldCache(data, make_splits(data, folds=2, seed=0)).get(0)
    marker.touch()  # the uninterrupted fold: the callback stays quiet
    whole = fit_fold(cfg, data, fold, seed=1, epoch_metrics=["accuracy"], checkpoint=FoldCheckpointing(tmp_path / "whole", 0, CheckpointEvery(epochs=1)))
    marker.unlink()
    checkpoint = FoldCheckpointing(tmp_path / "interrupted", 0, CheckpointEvery(epochs=1))
    with pytest.raises(TrialFailed):  # both ranks die at the end of epoch 2
        fit_fold(cfg, data, fold, seed=1, epoch_metrics=["accuracy"], checkpoint=checkpoint)
    assert checkpoint.resume_path("lightning") and not list((tmp_path / "interrupted").glob("*.tmp*"))  # rank 0's, complete
    resumed = fit_fold(cfg, data, fold, seed=1, epoch_metrics=["accuracy"], checkpoint=checkpoint)
    assert resumed.restored_epochs == 2  # epochs 0 and 1 from the checkpoint
    assert resumed.history == whole.history and resumed.metrics == whole.metrics
    assert checkpoint.done_path.is_file() and not checkpoint.resume_path("lightning")
    assert multiprocessing.active_children() == []
