"""The study's report as a user reads it: artifacts in MLflow decode, tables parse, the final
model loads and predicts, multi-objective studies export their Pareto front."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY, mlflow_runs


def _image(client, run_id, path):
    local = client.download_artifacts(run_id, path)
    with Image.open(local) as img:
        img.load()
        assert img.width > 100 and img.height > 100
        assert len(np.unique(np.asarray(img.convert("L")))) > 5, f"{path} is blank"


def _csv(client, run_id, path):
    with open(client.download_artifacts(run_id, path), newline="") as fh:
        return list(csv.DictReader(fh))


def _paths(client, run_id, folder=None):
    out = []
    for item in client.list_artifacts(run_id, folder):
        out += _paths(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(out)


@pytest.mark.parametrize(
    ("study", "plots"),
    [
        ("digits_mlp", ["plots/confusion_matrix.png", "plots/roc_pr.png"]),
        pytest.param("diabetes_mlp", ["plots/regression.png"], marks=pytest.mark.slow),
    ],
)
def test_trial_and_study_artifacts_decode_and_the_final_model_predicts(run_in_process, tmp_path, study, plots):
    import mlflow.pyfunc

    optuna_study = run_in_process(f"+study={study}", *TINY, "final.retrain=true", "report.study_plots=true")
    client, parents, children = mlflow_runs(tmp_path, study)
    child = next(c for c in children if c.data.tags["state"] == "COMPLETE")
    paths = _paths(client, child.info.run_id)
    assert {"config.yaml", "tables/fold_metrics.csv", "plots/learning_curves.png", *plots} <= set(paths), paths
    for path in paths:
        if path.endswith(".png"):
            _image(client, child.info.run_id, path)
    table = _csv(client, child.info.run_id, "tables/fold_metrics.csv")
    assert [r["fold"] for r in table] == ["0", "1", "mean", "std"]
    metric = optuna_study.metric_names[0]
    assert float(table[2][metric]) == pytest.approx(child.data.metrics[f"cv/{metric}"], rel=1e-4)
    assert "artifacts_s" in child.data.metrics

    parent = parents[0]
    assert parent.info.status == "FINISHED"
    parent_paths = _paths(client, parent.info.run_id)
    assert {"best_config.yaml", "leaderboard.csv", "environment.json", "plots/optimization_history.png"} <= set(parent_paths), parent_paths
    for path in parent_paths:
        if path.endswith(".png"):
            _image(client, parent.info.run_id, path)
    board = _csv(client, parent.info.run_id, "leaderboard.csv")
    assert int(board[0]["trial"]) == optuna_study.best_trial.number
    assert float(board[0][metric]) == pytest.approx(optuna_study.best_value, rel=1e-4)
    environment = json.loads(open(client.download_artifacts(parent.info.run_id, "environment.json")).read())
    assert environment["packages"]["torch"].startswith("2.") and parent.data.tags["env.torch"] == environment["packages"]["torch"]
    assert f"test/{metric}" in parent.data.metrics and f"best/{metric}" in parent.data.metrics

    # the final model: a child run with the test metrics and a pyfunc model that predicts raw rows
    final = [r for r in client.search_runs([parent.info.experiment_id]) if r.data.tags.get("nnsearch.role") == "final"]
    assert len(final) == 1 and final[0].info.status == "FINISHED"
    assert set(plots) <= set(_paths(client, final[0].info.run_id, "plots"))  # the trials' diagnostics, drawn for the test rows
    for path in plots:
        _image(client, final[0].info.run_id, path)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        for uri in (final[0].data.tags["model_uri"], f"runs:/{final[0].info.run_id}/model"):
            model = mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert model.metadata.signature is not None
    dev, test = _development_and_test(study)
    columns = model.metadata.get_input_schema().input_names()
    assert columns == list(dev.feature_names)  # tabular: named columns, float64 as pandas reads a CSV
    predicted = model.predict(pd.DataFrame(test.X.astype(np.float64), columns=columns))
    assert len(predicted) == len(test.y)
    if test.task.is_classification:
        truth = np.asarray(test.classes, dtype=object)[test.y]
        accuracy = float(np.mean(predicted["prediction"].to_numpy() == truth))
        assert accuracy == pytest.approx(final[0].data.metrics["test/accuracy"], abs=1e-6)
    else:
        rmse = float(np.sqrt(np.mean((predicted["prediction"].to_numpy() - test.y) ** 2)))
        assert rmse == pytest.approx(final[0].data.metrics["test/rmse"], rel=1e-4)
    assert len(set(dev.extra["rows"]) & set(test.extra["rows"])) == 0


def _development_and_test(study):
    """The study's held-out split, rebuilt from its config as the study built it."""
    from conftest import compose
    from nnsearch.config.building import build
    from nnsearch.cv import holdout_split

    cfg = compose([f"+study={study}", *TINY])
    return holdout_split(build("data", cfg.data), test_size=cfg.cv.test_size, seed=cfg.cv.seed, stratified=cfg.cv.stratified)


@pytest.mark.slow
def test_multi_objective_study_reports_and_exports_its_pareto_front(run_in_process, tmp_path):
    import yaml

    study = run_in_process("+study=wine_mlp", "study.n_trials=3", "cv.folds=2", "trainer.max_epochs=1", "study.metric=[accuracy,n_params]", "pruner=none", "final.retrain=false")
    front = {t.number for t in study.best_trials}
    client, parents, _ = mlflow_runs(tmp_path, "wine_mlp")
    parent = parents[0]
    paths = _paths(client, parent.info.run_id)
    assert "pareto_front.csv" in paths and "plots/pareto_front.png" in paths, paths
    _image(client, parent.info.run_id, "plots/pareto_front.png")
    table = _csv(client, parent.info.run_id, "pareto_front.csv")
    assert {int(r["trial"]) for r in table} == front
    assert {"accuracy", "accuracy_std", "n_params"} <= set(table[0])
    assert {p for p in paths if p.startswith("pareto/")} == {f"pareto/trial-{n:04d}.yaml" for n in front}
    chosen = max(study.best_trials, key=lambda t: t.values[0])  # report.pareto_pick defaults to the first objective
    assert parent.data.tags["best_trial"] == str(chosen.number)
    exported = yaml.safe_load((tmp_path / "outputs" / "best_config.yaml").read_text())
    for path, value in chosen.params.items():
        node = exported
        for part in path.split("."):
            node = node[part]
        assert node == value


@pytest.mark.parametrize("study_plots", [True, False], ids=["study-plots", "no-study-plots"])
def test_trial_plots_none_keeps_only_the_config_and_the_fold_table(run_in_process, tmp_path, study_plots):
    run_in_process("+study=wine_mlp", "study.n_trials=1", "cv.folds=2", "trainer.max_epochs=1", "final.retrain=false",
                   "tracking.trial_plots=none", f"report.study_plots={str(study_plots).lower()}")
    client, parents, children = mlflow_runs(tmp_path, "wine_mlp")
    assert _paths(client, children[0].info.run_id) == ["config.yaml", "tables/fold_metrics.csv"]
    # the study's own plots follow report.study_plots alone, not tracking.trial_plots
    study_plots_logged = [p for p in _paths(client, parents[0].info.run_id) if p.startswith("plots/")]
    if study_plots:
        assert "plots/optimization_history.png" in study_plots_logged, study_plots_logged
    else:
        assert study_plots_logged == []


# -- units: no training ------------------------------------------------------------------------


def _fold(index, task, rng, n=60):
    from nnsearch.fit.predictions import Predictions
    from nnsearch.fit import FoldResult

    fold = FoldResult(index, [{"train/loss": 1.0 / (e + 1), "val/loss": 1.2 / (e + 1), "val/accuracy": 0.5 + e / 10} for e in range(3)], {"accuracy": 0.8 + index / 100, "f1": 0.7})
    if task == "multiclass":
        fold.predictions = Predictions(rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 3, n))
    elif task == "binary":
        fold.predictions = Predictions(rng.normal(size=n).astype(np.float32), rng.integers(0, 2, n))
    else:
        fold.predictions = Predictions(rng.normal(size=n), rng.normal(size=n))
    return fold


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("binary", {"confusion_matrix.png", "roc_pr.png"}),
        ("multiclass", {"confusion_matrix.png", "roc_pr.png"}),
        ("regression", {"regression.png"}),
    ],
)
def test_trial_plots_per_task_decode(tmp_path, task, expected):
    from nnsearch.tracking.trial_plots import infer_task, write_trial_artifacts

    rng = np.random.default_rng(0)
    folds = [_fold(0, task, rng), _fold(1, task, rng)]
    assert infer_task(folds[0].predictions) == task
    files = write_trial_artifacts(folds, tmp_path, classes=("a", "b", "c") if task == "multiclass" else ())
    names = {f.name for f in files}
    assert {"learning_curves.png", "fold_metrics.csv", *expected} == names
    for f in files:
        if f.suffix == ".png":
            with Image.open(f) as img:
                assert img.format == "PNG" and img.width > 100
    rows = list(csv.DictReader(io.StringIO((tmp_path / "tables" / "fold_metrics.csv").read_text())))
    assert [r["fold"] for r in rows] == ["0", "1", "mean", "std"]
    assert float(rows[2]["accuracy"]) == pytest.approx(0.805) and float(rows[3]["accuracy"]) == pytest.approx(0.005)


def test_progress_plain_mode_prints_one_line_per_trial_and_no_control_characters():
    from nnsearch.tracking.progress import Progress

    out = io.StringIO()
    progress = Progress(total=3, metrics=["accuracy"], directions=["maximize"], folds=2, epochs=2, mode="auto", stream=out)
    assert progress.mode == "plain"  # a StringIO is no terminal
    for number, value in enumerate([0.5, 0.9, 0.7]):
        progress.trial_started(number)
        progress.epoch_end(0, 0, {"val/loss": 1.0, "val/accuracy": value})
        progress.trial_finished(number, "COMPLETE", value)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\033" not in out.getvalue()
    assert lines[-1].startswith("progress: 3/3 trials, best accuracy 0.9000 (trial 1)")


def test_progress_live_mode_redraws_one_line_and_clears_it_for_log_records():
    import logging

    from nnsearch.tracking.progress import Progress

    out = io.StringIO()
    progress = Progress(total=4, metrics=["accuracy", "n_params"], directions=["maximize", "minimize"], folds=2, epochs=5, mode="live", stream=out, refresh=0, columns=160)
    progress.trial_started(0)
    progress.epoch_end(1, 3, {"train/loss": 0.3, "val/loss": 0.4, "val/accuracy": 0.875})
    assert "trial 0: fold 2/2 epoch 4/5 val/accuracy 0.8750" in out.getvalue().rsplit("\r", 1)[-1]
    progress.trial_finished(0, "COMPLETE", (0.9, 1000.0))
    progress.trial_finished(1, "COMPLETE", (0.8, 10.0))
    progress.trial_finished(2, "COMPLETE", (0.7, 100.0))  # dominated by trial 1
    assert "Pareto front 2 trial(s)" in out.getvalue().rsplit("\r", 1)[-1]
    progress.close()
    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(handler)
    try:
        progress2 = Progress(total=1, metrics=["accuracy"], directions=["maximize"], mode="live", stream=out, refresh=0)
        progress2.trial_started(0)
        out.truncate(0)
        out.seek(0)
        logging.getLogger("nnsearch.test").warning("a log line")
        assert out.getvalue() == "\r\033[K"
        progress2.close()
    finally:
        logging.getLogger().removeHandler(handler)


def test_leaderboard_ranks_feasible_trials_first_and_picks_the_pareto_trial_by_rule():
    import optuna

    from nnsearch.tracking.leaderboard import format_table, rank, rows

    study = optuna.create_study(directions=["maximize", "minimize"])
    for values in [(0.9, 100.0), (0.8, 10.0), (0.7, 50.0), (0.95, 1000.0)]:
        study.add_trial(optuna.trial.create_trial(params={"x": values[1]}, distributions={"x": optuna.distributions.FloatDistribution(0, 2000)}, values=list(values)))
    by_accuracy = rank(study, metrics=["accuracy", "n_params"])
    assert [t.number for t in by_accuracy.front] == [3, 0, 1] and by_accuracy.chosen.number == 3
    assert [t.number for t in by_accuracy.trials] == [3, 0, 1, 2]
    assert rank(study, metrics=["accuracy", "n_params"], pick="n_params").chosen.number == 1
    table = rows(by_accuracy, top_k=2)
    assert [r["pareto"] for r in table] == [True, True] and "param:x" in table[0]
    assert "*" in format_table(table, ["accuracy", "n_params"])

    from nnsearch.errors import NNSearchError

    with pytest.raises(NNSearchError, match="pareto_pick='f1'"):
        rank(study, metrics=["accuracy", "n_params"], pick="f1")


def test_leaderboard_puts_infeasible_trials_last_and_never_picks_one():
    import optuna

    from nnsearch.tracking.leaderboard import rank, rows

    def study(*trials):
        made = optuna.create_study(direction="maximize")
        for value, violation in trials:  # as Trial.set_constraint("n_params", ...) records it
            made.add_trial(optuna.trial.create_trial(params={"x": value}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                                                     value=value, system_attrs={"constraints:n_params": violation}))
        return made

    ranking = rank(study((0.99, 500.0), (0.8, -10.0), (0.9, 0.0)), metrics=["accuracy"])
    assert [t.number for t in ranking.trials] == [2, 1, 0]  # the best score breaks the constraint
    assert ranking.chosen.number == 2
    assert [r["feasible"] for r in rows(ranking)] == [True, True, False]
    assert rank(study((0.99, 1.0)), metrics=["accuracy"]).chosen is None  # no feasible trial: nothing to export


def test_environment_records_the_git_commit_of_the_users_project(tmp_path):
    import subprocess

    from nnsearch.runtime.environment import describe, git_state, tags

    assert git_state(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "m"], check=True)
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "a.txt").write_text("y")
    info = describe(tmp_path)
    assert info["git"]["dirty"] is True
    assert tags(info)["mlflow.source.git.commit"] == state["commit"]


def test_the_leaderboard_breaks_params_between_parameters_in_a_narrow_terminal():
    from nnsearch.tracking.leaderboard import format_table

    row = {"rank": 1, "trial": 3, "accuracy": 0.9644, "accuracy_std": 0.0116, "param:model.hidden_dim": 100, "param:model.n_layers": 3,
           "param:optimizer.lr": 0.001213, "param:optimizer.weight_decay": 0.003691}  # fmt: skip
    wide = format_table([row], ["accuracy"])
    assert len(wide.splitlines()) == 2  # a file or a pipe: one line per row
    for width in (60, 40):
        narrow = format_table([row], ["accuracy"], width=width)
        assert all(len(line) <= width for line in narrow.splitlines()), narrow
        # every parameter whole, on some line; nothing lost
        assert [p.rstrip(",") for p in narrow.split() if "=" in p] == [p.rstrip(",") for p in wide.split() if "=" in p]


def test_the_summary_prints_the_best_parameters_as_the_leaderboard_rounds_them(run_in_process, capsys):
    study = run_in_process("+study=wine_mlp", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=1", "final.retrain=false", "report.study_plots=false",
                           "tracking.trial_plots=none")
    out = capsys.readouterr().out
    lr = study.best_trial.params["optimizer.lr"]
    assert f"\n  optimizer.lr = {lr:.4g}\n" in out, out
    assert repr(lr) not in out  # best_config.yaml keeps the whole value; the summary does not spell out 17 digits


def test_in_a_narrow_terminal_the_summary_breaks_between_words_and_keeps_commands_whole():
    from nnsearch.study.report import wrapped

    prose = "Final model: trial 17 retrained on all 1437 development rows (20 epochs), MLflow run 5173613c7b8f49d08b98f41a7353aeb2"
    command = "  reproduce: python -m nnsearch --config-path /tmp/user/outputs/digits_mlp/2026-12-03_05-12-42 --config-name best_config"
    table = "rank  trial  accuracy\n1     17     0.9784"
    out = wrapped([prose, command, table, "short"], 60)
    assert out[-3:] == [command, table, "short"]  # a command a user copies stays one line; tables come sized already
    broken = out[:-3]
    assert len(broken) > 1 and all(len(line) <= 60 for line in broken)
    assert " ".join(line.strip() for line in broken) == prose  # broken between words, nothing lost
    assert all(line.startswith("  ") for line in broken[1:])  # continued lines indented under their first
    assert wrapped([prose], None) == [prose]  # a file or a pipe gets whole lines
