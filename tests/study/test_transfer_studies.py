"""A study that starts from an earlier study's final model (transfer) or learns from it (distillation), run as a user
runs it: the CLI in a temporary folder, results read back with the MLflow client."""

from __future__ import annotations

import pytest

from conftest import mlflow_runs

# folds in turn (no fold processes to start): each study is one process
TINY = ["cv.folds=2", "cv.parallel=1", "trainer.max_epochs=2", "report.study_plots=false", "tracking.trial_plots=none", "cv.test_size=0.2"]


def _study(tmp_path, name: str, body: str) -> None:
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / f"{name}.yaml").write_text("# @package _global_\n" + body)


def _one_line_error(result, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


@pytest.mark.slow
def test_studies_start_from_or_distill_an_earlier_final_model(tmp_path):
    from conftest import cli

    def run_cli(*args: str):
        return cli(list(args), tmp_path, timeout=900)

    def run_study(name: str, body: str, *overrides: str):
        """Write the study ``name``, run it to the end, and return its MLflow client and trial runs."""
        _study(tmp_path, name, body)
        result = run_cli(f"+study={name}", *overrides, *TINY)
        assert result.returncode == 0, result.stderr[-3000:]
        client, _, trials = mlflow_runs(tmp_path, name)
        return client, trials

    # the source: an MLP on digits 0-4, its final model logged to MLflow
    client, _ = run_study("first_half", "data: {keep_classes: [0, 1, 2, 3, 4]}\nmodel: {hidden_dim: 32, n_layers: 2}\nstudy: {n_trials: 1}\n")
    experiment = client.get_experiment_by_name("first_half")
    final = client.search_runs([experiment.experiment_id], "tags.`nnsearch.role` = 'final'")[0]
    by_run, by_model = f"runs:/{final.info.run_id}/model", final.data.tags["model_uri"]

    # transfer: fine-tune on digits 5-9 from those weights, the number of frozen blocks searched
    _, trials = run_study("second_half", "data: {keep_classes: [5, 6, 7, 8, 9]}\nmodel: {hidden_dim: 32, n_layers: 2}\n"
                                         "study: {n_trials: 2}\nfinal: {retrain: false}\n"
                                         "search_space:\n  model.freeze: {type: int, low: 0, high: 2}\n",
                          f"model.init_from={by_run}")
    assert len(trials) == 2 and all(t.data.tags["init_from"] == by_run for t in trials)
    assert all("model.freeze" in t.data.params for t in trials)

    # distillation: a smaller student of the same classes, temperature searched
    _, trials = run_study("student", "data: {keep_classes: [0, 1, 2, 3, 4]}\nmodel: {hidden_dim: 8, n_layers: 1}\n"
                                     "study: {n_trials: 1}\nfinal: {retrain: false}\n"
                                     "search_space:\n  distill.temperature: {type: float, low: 1, high: 8}\n",
                          f"distill.teacher={by_model}")
    assert [t.data.tags["distill.teacher"] for t in trials] == [by_model]
    assert 1 <= float(trials[0].data.params["distill.temperature"]) <= 8 and float(trials[0].data.metrics["cv/accuracy"]) > 0.2

    # bad input, one line each, before any trial
    _one_line_error(run_cli("+study=student", "study.name=wrong_classes", "data.keep_classes=[5,6,7,8,9]", f"distill.teacher={by_model}", *TINY),
                    "predicts classes ['0', '1', '2', '3', '4'], but the data's classes are ['5', '6', '7', '8', '9']")
    _one_line_error(run_cli("+study=student", "study.name=no_teacher", "distill.teacher=models:/no_such_model/1", *TINY),
                    "distill.teacher=models:/no_such_model/1 does not load as an MLflow model")
    _one_line_error(run_cli("+study=student", "study.name=no_match", f"model.init_from={by_run}", "distill.teacher=null", *TINY),
                    f"model.init_from={by_run}: no layer of the model matches the source by name and shape")
    client, _, _ = mlflow_runs(tmp_path, "student")
    assert client.get_experiment_by_name("wrong_classes") is None and client.get_experiment_by_name("no_match") is None


def test_where_a_study_starts_from_is_part_of_its_identity():
    from conftest import compose
    from nnsearch.study.identity import differences, settings

    plain = settings(compose([]))
    assert not any(k.startswith("distill.") for k in plain)  # no teacher: temperature and alpha change nothing
    assert "model.init_from" not in plain  # null counts as unset, so studies from before these keys still resume
    assert differences(plain, settings(compose(["model.init_from=models:/a/1"]))) == ["model.init_from ((unset) -> 'models:/a/1')"]
    taught, warmer = settings(compose(["distill.teacher=models:/t/1"])), settings(compose(["distill.teacher=models:/t/1", "distill.temperature=2"]))
    assert differences(taught, warmer) == ["distill.temperature (4.0 -> 2)"]
