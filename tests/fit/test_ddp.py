"""A trial may train each fold on several devices: Lightning DDP, here on CPU with gloo and 2 processes.

Rank 0 reports every epoch to the study storage, so pruners see DDP trials like any other, and a
pruned or failed fold stops every rank: no process is left behind.
"""

from __future__ import annotations

import multiprocessing

import optuna
import pytest
import torch

from conftest import compose, load_study, mlflow_runs
from nnsearch.config.building import build
from nnsearch.cv import FoldCache, make_splits
from nnsearch.errors import TrialFailed
from nnsearch.fit import FoldResult, fit_fold

DDP = ["trainer.accelerator=cpu", "trainer.devices=2"]
SMALL = ["cv.folds=2", "trainer.max_epochs=2", "final.retrain=false", "report.study_plots=false"]


@pytest.mark.slow
def test_a_study_trains_each_fold_on_two_processes_and_rank_zero_reports_every_epoch(run_cli, tmp_path):
    done = run_cli("+study=wine_mlp", *DDP, *SMALL, "study.n_trials=2", "pruner=median", "final.retrain=true")
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(tmp_path, "wine_mlp")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        # steps fold * max_epochs + epoch, written by rank 0 of each fold's DDP group
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3]
        assert trial.value == pytest.approx(trial.user_attrs["cv/accuracy"])
    _, parents, children = mlflow_runs(tmp_path, "wine_mlp")
    assert len(parents) == 1 and len(children) == 2
    assert all(c.info.status == "FINISHED" and "cv/f1" in c.data.metrics for c in children)
    assert "test/accuracy" in parents[0].data.metrics  # the final model, refitted on one device


@pytest.mark.slow
def test_pruning_stops_every_rank_at_the_same_epoch(run_cli, tmp_path):
    # accuracy can never reach 1.1: the threshold pruner stops each trial at its first report
    done = run_cli("+study=wine_mlp", *DDP, *SMALL, "study.n_trials=2", "pruner=threshold", "pruner.lower=1.1")
    assert done.returncode == 1, done.stderr[-3000:]  # every trial pruned: no result, said in one line
    assert "no trial of study 'wine_mlp' completed (2 pruned, 0 failed)" in done.stderr
    study = load_study(tmp_path, "wine_mlp")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [0] for t in study.trials)
    assert "pruned at fold 0, epoch 0" in done.stdout + done.stderr  # the trial log line


def _epochs_of_rows(batches, epochs):
    """The training rows (their ``y``, which is their index) of each epoch, in the order the rank saw them."""
    seen = []
    for _ in range(epochs):
        rows = []
        for xb, yb in batches:
            assert xb[:, 0].long().tolist() == yb.tolist()  # x and y rows stay paired
            rows += yb.tolist()
        seen.append(rows)
    return seen


@pytest.mark.parametrize("n", [24, 23])
def test_each_epoch_the_ranks_train_on_disjoint_shares_that_cover_every_row_and_change(n):
    from nnsearch.fit.ddp import rank_batches

    x, y = torch.arange(n).float().unsqueeze(1), torch.arange(n)
    ranks = [rank_batches(x, y, 5, rank=rank, world=2, seed=7) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # every rank runs the same number of steps
    first, second = (_epochs_of_rows(batches, 3) for batches in ranks)
    for epoch in range(3):
        mine, theirs = first[epoch], second[epoch]
        assert len(mine) == len(theirs) == 12
        assert set(mine) | set(theirs) == set(range(n))  # together they cover every row
        # disjoint: an odd row count pads the shares by repeating one row, as DistributedSampler does
        assert len(set(mine) & set(theirs)) == 24 - n and len(set(mine)) == len(set(theirs)) == 12
    assert len({frozenset(share) for share in first}) == 3  # a new share every epoch
    again = rank_batches(x, y, 5, rank=0, world=2, seed=7)
    assert _epochs_of_rows(again, 3) == first  # seeded
    assert _epochs_of_rows(rank_batches(x, y, 5, rank=0, world=2, seed=8), 1)[0] != first[0]


def _fold(overrides):
    cfg = compose(["+study=wine_mlp", *DDP, "trainer.max_epochs=2", *overrides])
    data = build("data", cfg.data)
    return cfg, data, FoldCache(data, make_splits(data, folds=2, seed=0)).get(0)


def test_a_failing_rank_fails_the_fold_without_leaving_processes(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "s.journal"  # rank 0 reopens the trial from the study's storage
    cfg, data, fold = _fold([f"study.storage={journal}"])
    study = optuna.create_study(direction="maximize", storage=JournalStorage(JournalFileBackend(str(journal))))
    result = FoldResult(0)
    with pytest.raises(TrialFailed, match="pruning metric 'val/auc' was not logged; logged: train/loss, val/loss, val/accuracy"):
        fit_fold(cfg, data, fold, seed=1, epoch_metrics=["accuracy"], trial=study.ask(), monitor="val/auc", result=result)
    assert multiprocessing.active_children() == []


def test_two_ranks_return_the_curves_metrics_and_validation_outputs():
    cfg, data, fold = _fold([])
    result = fit_fold(cfg, data, fold, seed=1, epoch_metrics=["accuracy"])
    assert result.epochs == 2 and set(result.history[-1]) >= {"train/loss", "val/loss", "val/accuracy"}
    assert result.metrics["accuracy"] == pytest.approx(result.history[-1]["val/accuracy"])
    pred = result.predictions
    assert len(pred.targets) == len(fold.val_idx)  # every rank validated on all validation rows
    assert (pred.outputs.argmax(1) == pred.targets).mean() == pytest.approx(result.metrics["accuracy"])
    assert multiprocessing.active_children() == []


def test_gpu_workers_are_pinned_to_single_gpus_or_to_gpu_groups_for_ddp_trials():
    from nnsearch.launch.workers import check_launch, worker_plan

    single = worker_plan(compose(["+study=wine_mlp", "launch.gpus=[0,1]", "launch.workers_per_gpu=2"]))
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in single] == ["0", "0", "1", "1"]
    groups = compose(["+study=wine_mlp", "launch.gpus=[[0,1],[2,3]]", "trainer.devices=2"])
    check_launch(groups)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in worker_plan(groups)] == ["0,1", "2,3"]


def test_a_ddp_trial_on_workers_with_too_few_gpus_is_refused_before_anything_runs(run_cli, tmp_path):
    done = run_cli("+study=wine_mlp", "launch.gpus=[0,1]", "trainer.devices=2", "trainer.accelerator=gpu")
    assert done.returncode != 0
    assert "trainer.devices=2 needs 2 GPUs per worker, but launch.gpus gives '0'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "optuna.journal").exists()
