"""Bring your own Lightning code: a user's project folder with its own LightningModule, image Dataset and k-fold DataModule.

The project is the README's example (``examples/mylab``), copied into a temporary folder with a
few hundred digit images written as PNG files; studies run from that folder as a user runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nnsearch.errors import NNSearchError, StudyFailed
from conftest import cli, compose, load_study, mlflow_runs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mylab"
SMALL = ["study.n_trials=2", "cv.folds=2", "trainer.max_epochs=2", "cv.test_size=0.25", "report.progress=off", "report.study_plots=false",
         "tracking.trial_plots=none", "cv.parallel=1"]
BAD_CODE = '''
import lightning as L
import torch
from torch.utils.data import Dataset

from mylab.models import Classifier


class DictItems(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return {"x": torch.zeros(1, 8, 8), "y": i % 2}


class NoOptimizer(Classifier):
    configure_optimizers = L.LightningModule.configure_optimizers


class NoFoldArguments(L.LightningDataModule):
    def __init__(self, root: str, batch_size: int = 32):
        super().__init__()
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder: the package ``mylab``, its ``studies/``, 300 digit PNGs; the working directory, on ``sys.path``."""
    shutil.copytree(EXAMPLE / "mylab", tmp_path / "mylab")
    shutil.copytree(EXAMPLE / "studies", tmp_path / "studies")
    (tmp_path / "mylab" / "broken.py").write_text(BAD_CODE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from mylab.data import write_digit_pngs

    write_digit_pngs(tmp_path / "digit_pngs", limit=300)
    return tmp_path


def run_here(*overrides: str):
    """The study of ``overrides`` run in this process, in the project folder (the CLI's code path without its start-up)."""
    from nnsearch.launch.run import run_study

    return run_study(compose(list(overrides)))


def test_a_lightning_module_of_your_own_is_tuned_on_your_own_image_files(project):
    done = cli(["+study=digits_own_module", *SMALL], project)
    assert done.returncode == 0, done.stderr
    study = load_study(project, "digits_own_module")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    best = study.best_trial
    assert best.value == pytest.approx(best.user_attrs["cv/val/acc"])  # the objective is the module's own val/acc
    assert 0.0 <= best.value <= 1.0
    assert {"cv/val/loss", "cv/train/acc", "cv/accuracy", "cv/f1"} <= set(best.user_attrs)  # what it logs, and nnsearch's metrics
    _, parents, children = mlflow_runs(project, "digits_own_module")
    assert len(parents) == 1 and len(children) == 2
    child = next(c for c in children if c.data.tags["optuna.trial_number"] == str(best.number))
    client, _, _ = mlflow_runs(project, "digits_own_module")
    curve = client.get_metric_history(child.info.run_id, "fold1/val/acc")
    assert [m.step for m in curve] == [0, 1]  # one point per epoch, per fold (no extra end-of-fold point)
    assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")] == [0, 1]  # mean over folds, per epoch
    assert "Held-out test split (75 rows" in done.stdout and "val/acc" in done.stdout
    final = client.search_runs([parents[0].info.experiment_id], "tags.`nnsearch.role` = 'final'")
    assert len(final) == 1
    # the final model, with the user's package inside, predicts in a fresh process started in another folder
    elsewhere = project.parent / f"{project.name}-elsewhere"
    elsewhere.mkdir()
    load = (f"import mlflow, numpy as np; mlflow.set_tracking_uri('sqlite:///{project / 'mlflow.db'}'); "
            f"m = mlflow.pyfunc.load_model('{final[0].data.tags['model_uri']}'); "
            "print(np.asarray(m.predict(np.zeros((3, 1, 8, 8), dtype=np.float32))).tolist())")
    loaded = subprocess.run([sys.executable, "-c", load], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert loaded.returncode == 0, loaded.stderr
    predicted = eval(loaded.stdout.strip().splitlines()[-1])  # noqa: S307 - a list of class labels printed by the child
    assert len(predicted) == 3 and set(predicted) <= set(range(10))


def test_folds_side_by_side_score_as_folds_in_turn(project, monkeypatch):
    scores = {}
    for parallel in (1, 2):
        where = project / f"parallel{parallel}"
        where.mkdir()
        monkeypatch.chdir(where)
        for shared in ("digit_pngs", "studies"):
            (where / shared).symlink_to(project / shared)
        study = run_here("+study=digits_own_module", *SMALL, f"cv.parallel={parallel}", "final.retrain=false")
        scores[parallel] = study.trials
    for in_turn, side_by_side in zip(scores[1], scores[2], strict=True):
        assert side_by_side.params == in_turn.params
        assert side_by_side.user_attrs["fold_scores"] == pytest.approx(in_turn.user_attrs["fold_scores"], abs=1e-6)


def test_the_pruner_prunes_on_the_metric_your_module_logs(project):
    with pytest.raises(StudyFailed, match=r"no trial of study 'digits_own_module' completed \(2 pruned"):
        run_here("+study=digits_own_module", *SMALL, "pruner=threshold", "pruner.lower=1.1")
    for trial in load_study(project, "digits_own_module").trials:
        assert trial.state == TrialState.PRUNED
        assert list(trial.intermediate_values) == [0]  # fold 0's first epoch: its val/acc is below 1.1


def test_a_resumed_study_adds_the_missing_trials_and_a_k_fold_datamodule_is_told_its_fold(project):
    run_here("+study=digits_kfold_datamodule", *SMALL, "study.n_trials=1")
    study = run_here("+study=digits_kfold_datamodule", *SMALL)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        folds = trial.user_attrs["fold_scores"]
        assert len(folds) == 2 and folds[0] != folds[1]  # two different folds of the DataModule
        assert trial.value == pytest.approx(sum(folds) / 2)
    _, parents, children = mlflow_runs(project, "digits_kfold_datamodule")
    assert len(parents) == 1 and len(children) == 2


def test_the_fold_score_is_the_best_epoch_when_asked(project):
    study = run_here("+study=digits_own_module", *SMALL, "study.n_trials=1", "cv.fold_score=best", "trainer.max_epochs=3", "final.retrain=false")
    trial = study.trials[0]
    assert trial.user_attrs["cv/val/acc"] == pytest.approx(trial.user_attrs["cv/val/acc_best"])  # the module's own running max agrees


@pytest.mark.parametrize(("overrides", "message"), [
    (["study.metric=val/nope", "study.direction=maximize"], "study.metric 'val/nope' is never logged by mylab.models.Classifier: it logs train/acc, train/loss, val/acc, "
                                "val/acc_best, val/loss"),
    (["model.module._target_=mylab.nowhere.Model"], "model.module._target_=mylab.nowhere.Model: cannot import it"),
    (["data.dataset._target_=mylab.broken.DictItems", "~data.dataset.root"], "item 0 is dict, not (tensor, label)"),
    (["model.module._target_=mylab.broken.NoOptimizer"], "configure_optimizers"),
    (["data=datamodule", "data.datamodule._target_=mylab.broken.NoFoldArguments", "+data.datamodule.root=x"],
     "does not take the fold arguments fold, n_folds, split_seed"),
], ids=["metric-never-logged", "target-not-importable", "item-not-a-pair", "no-configure-optimizers", "datamodule-without-fold-args"])
def test_bad_own_code_is_refused_in_one_line_before_the_study_exists(project, overrides, message):
    with pytest.raises(NNSearchError) as refused:
        run_here("+study=digits_own_module", *SMALL, *overrides)
    assert message in str(refused.value)
    assert not (project / "optuna.journal").exists() and not (project / "mlflow.db").exists()


def test_a_plain_network_of_your_own_gets_only_the_arguments_it_takes(project):
    study = run_here("data=digits", "model=net", "model.net._target_=mylab.nets.TinyNet", "+model.net.width=16", "study.name=tiny", *SMALL,
                     "study.n_trials=1", "final.retrain=false", "trainer.max_epochs=10")
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value > 0.5  # accuracy on digits: 10 outputs, trained


@pytest.mark.slow
def test_two_workers_share_a_study_of_your_own_code(project):
    done = cli(["+study=digits_own_module", *SMALL, "study.n_trials=3", "launch.workers=2", "final.retrain=false"], project, timeout=600)
    assert done.returncode == 0, done.stderr
    study = load_study(project, "digits_own_module")
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 3
    assert all(t.state != TrialState.RUNNING for t in study.trials)


def test_one_of_nnsearchs_families_trains_on_your_own_dataset(project):
    (project / "studies" / "images_cnn.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /model: cnn\n  - override /data: dataset\n"
        "data:\n  dataset:\n    _target_: mylab.data.DigitImages\n    root: digit_pngs\n"
        "search_space:\n  model.channels: {type: categorical, choices: [8, 16]}\n"
    )
    study = run_here("+study=images_cnn", *SMALL, "study.n_trials=1", "final.retrain=false")
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(trial.user_attrs["cv/accuracy"])
    assert {"cv/f1", "cv/roc_auc"} <= set(trial.user_attrs)  # scored as on shipped data
