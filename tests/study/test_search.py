"""Every Optuna sampler and pruner from a study file, multi-objective studies, constraints, warm starts."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from conftest import load_study, mlflow_runs
from nnsearch.errors import StudyFailed
from nnsearch.errors import NNSearchError

TINY = ["cv.folds=2", "trainer.max_epochs=2", "cv.test_size=0"]
# a discrete space that every sampler can handle (brute force and grid need steps)
DISCRETE = [
    "+study=wine_mlp",
    "~search_space",
    "+search_space={model.hidden_dim: {type: int, low: 8, high: 32, step: 8}, optimizer.lr: {type: float, low: 0.01, high: 0.05, step: 0.01}}",
]


SAMPLER_CLASSES = {
    "tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "gp": "GPSampler", "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler", "nsga3": "NSGAIIISampler", "qmc": "QMCSampler", "bruteforce": "BruteForceSampler",
}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "gp", "cmaes", "nsga2", "nsga3", "qmc", "bruteforce"])
def test_every_sampler_runs_a_study(run_in_process, sampler):
    study = run_in_process(*DISCRETE, f"sampler={sampler}", "pruner=none", "study.n_trials=3", *TINY)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert type(study.sampler).__name__ == SAMPLER_CLASSES[sampler]
    assert all({"model.hidden_dim", "optimizer.lr"} == set(t.params) for t in complete)


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["none", "median", "percentile", "successive_halving", "hyperband", "patient", "wilcoxon"])
def test_every_pruner_runs_a_study(run_in_process, pruner):
    study = run_in_process("+study=wine_mlp", f"pruner={pruner}", "sampler=random", "study.n_trials=4", *TINY)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 4


def test_threshold_pruner_stops_trials_below_the_bound(run_in_process, tmp_path):
    with pytest.raises(StudyFailed, match=r"no trial of study 'wine_mlp' completed \(3 pruned"):  # a study without a result says so
        run_in_process(
            "+study=wine_mlp", "pruner=threshold", "pruner.lower=0.99", "sampler=random", "study.n_trials=3",
            "cv.folds=3", "trainer.max_epochs=5", "cv.test_size=0", "cv.parallel=1",  # folds in turn (see cv/test_pool.py)
        )
    study = load_study(tmp_path, "wine_mlp")
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) == 3  # no wine model reaches 99 % accuracy after one epoch
    _, _, children = mlflow_runs(tmp_path, "wine_mlp")
    for child in children:
        assert child.data.tags["state"] == "PRUNED"
        assert child.data.tags["pruned_at"] == "fold 0 epoch 0"
        assert child.data.metrics["epochs"] == 1.0 < 3 * 5


@pytest.mark.slow
def test_median_pruning_stops_bad_trials_early(run_in_process, tmp_path):
    study = run_in_process(
        "+study=digits_mlp", "pruner=median", "pruner.n_startup_trials=2", "pruner.n_warmup_steps=0",
        "sampler=random", "study.n_trials=8", "cv.folds=2", "trainer.max_epochs=4", "cv.test_size=0",
        "cv.parallel=1",  # folds in turn: side by side, a fold may train on past the step that prunes it (see cv/test_pool.py)
    )
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "with 8 random trials at least one should fall below the median"
    _, _, children = mlflow_runs(tmp_path, "digits_mlp")
    by_number = {int(c.data.tags["optuna.trial_number"]): c for c in children}
    for trial in pruned:
        assert by_number[trial.number].data.metrics["epochs"] < 2 * 4
        assert trial.user_attrs["epochs"] < 2 * 4


@pytest.mark.slow
def test_multi_objective_study_yields_a_pareto_front(run_in_process, tmp_path):
    study = run_in_process(
        "+study=breast_cancer_mlp", "study.metric=[f1,n_params]", "pruner=none", "sampler=nsga2", "study.n_trials=5", *TINY
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = study.best_trials
    assert front
    for trial in front:
        assert len(trial.values) == 2 and trial.values[1] == trial.user_attrs["n_params"]
    _, parents, _ = mlflow_runs(tmp_path, "breast_cancer_mlp")
    history = parents[0].data.metrics
    assert "trials/f1" in history and "trials/n_params" in history


def test_constraints_mark_infeasible_trials_and_the_best_trial_is_feasible(run_in_process, tmp_path):
    # the first two trials are queued on either side of the bound: ~500 and ~37,000 parameters
    sizes = "study.enqueue=[{model.hidden_dim: 16, model.n_layers: 1}, {model.hidden_dim: 128, model.n_layers: 3}]"
    study = run_in_process("+study=breast_cancer_mlp", "study.constraints={n_params: {max: 1500}}", sizes, "study.n_trials=4", *TINY)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for trial in complete:
        (violation,) = [v for k, v in trial.system_attrs.items() if k.startswith("constraints")]
        assert violation == pytest.approx(trial.user_attrs["n_params"] - 1500)
    feasible = [t for t in complete if t.user_attrs["n_params"] <= 1500]
    assert 0 in [t.number for t in feasible] and 1 not in [t.number for t in feasible]
    best = study.best_trial
    assert best.number in [t.number for t in feasible] and best.value == max(t.value for t in feasible)
    _, parents, _ = mlflow_runs(tmp_path, "breast_cancer_mlp")
    assert parents[0].data.tags["best_trial"] == str(best.number)  # the report picks it too


@pytest.mark.slow
def test_enqueued_configurations_run_first(run_in_process):
    warm = "study.enqueue=[{model.hidden_dim: 8, model.n_layers: 1}, {model.hidden_dim: 64, model.n_layers: 2}]"
    study = run_in_process("+study=wine_mlp", warm, "study.n_trials=3", *TINY)
    first, second = study.trials[0].params, study.trials[1].params
    assert (first["model.hidden_dim"], first["model.n_layers"]) == (8, 1)
    assert (second["model.hidden_dim"], second["model.n_layers"]) == (64, 2)
    # resuming does not queue them again
    study = run_in_process("+study=wine_mlp", warm, "study.n_trials=4", *TINY)
    assert len(study.trials) == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sampler=tpe", "+sampler.n_startup=3"], "sampler: cannot build optuna.samplers.TPESampler"),
        (["pruner=hyperband", "+pruner.eta=3"], "pruner: cannot build optuna.pruners.HyperbandPruner"),
        (["sampler=grid", "~search_space", "+search_space={model.dropout: {type: float, low: 0.0, high: 0.5}}"],
         "sampler=grid needs discrete values, but search_space.model.dropout is a continuous float"),
        (["study.metric=[f1,n_params]"], "pruner=MedianPruner needs a single objective"),
        (["study.metric=[f1,accuracy]", "study.direction=maximize"], "study.direction has 1 entries for 2 metrics"),
        (["study.constraints={size: {max: 3}}"], "study.constraints.size: unknown metric"),
        (["study.enqueue=[{model.width: 3}]"], "study.enqueue\\[0\\]: 'model.width' is not in search_space"),
        (["study.enqueue=[{model.n_layers: 9}]"], "study.enqueue\\[0\\]: model.n_layers=9 is outside its search space"),
    ],
)
def test_bad_search_settings_fail_before_any_trial(run_in_process, tmp_path, overrides, message):
    with pytest.raises(NNSearchError, match=message):
        run_in_process("+study=wine_mlp", *overrides)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.journal").exists()


@pytest.mark.slow
def test_a_multi_objective_study_can_minimize_latency(run_in_process):
    study = run_in_process("+study=wine_mlp", "study.metric=[accuracy,latency_ms]", "pruner=none", "study.n_trials=2", *TINY)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and study.best_trials
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.values == [trial.user_attrs["cv/accuracy"], trial.user_attrs["latency_ms"]] and trial.values[1] > 0


@pytest.mark.slow
def test_wilcoxon_pruner_reports_once_per_fold(run_in_process, tmp_path):
    study = run_in_process(
        "+study=digits_mlp", "pruner=wilcoxon", "pruner.n_startup_steps=1", "pruner.p_threshold=0.5", "sampler=random",
        "study.n_trials=6", "cv.folds=4", "trainer.max_epochs=2", "cv.test_size=0",
    )
    complete, pruned = study.get_trials(states=(TrialState.COMPLETE,)), study.get_trials(states=(TrialState.PRUNED,))
    assert complete and pruned and len(complete) + len(pruned) == 6, "the test needs both kinds"
    for trial in complete:
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3]
        assert [trial.intermediate_values[k] for k in range(4)] == pytest.approx(trial.user_attrs["fold_scores"])
    for trial in pruned:
        assert len(trial.intermediate_values) < 4 and trial.user_attrs["epochs"] < 4 * 2
