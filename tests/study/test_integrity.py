"""A study you can trust: its identity on resume, recovery after a kill, one final model, a clear end.

Every test runs the real CLI in a temporary folder and reads the result with Optuna's and
MLflow's own clients. Kills wait for events (a trial RUNNING in the storage, a line printed),
never for a fixed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import psutil
import pytest
from optuna.trial import TrialState

from conftest import TINY, cli, load_study, mlflow_runs, postgres_available

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)



def _no_running_anywhere(tmp_path, name, storage=None):
    study = load_study(tmp_path, name, storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    _, parents, children = mlflow_runs(tmp_path, name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    return study, children


def _wait_for_running_trial(proc, tmp_path, name, storage=None, *, timeout=240):
    """Block until the study holds a RUNNING trial that has reported an epoch (the process is mid-training), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study ended before a trial was running"
        try:
            running = [t for t in load_study(tmp_path, name, storage).get_trials(states=(TrialState.RUNNING,)) if t.intermediate_values]
        except (KeyError, FileNotFoundError, ValueError):
            running = []
        if running:
            return running
        time.sleep(0.1)
    pytest.fail("no trial started running")


# -- identity on resume ---------------------------------------------------------------------------


@pytest.mark.slow
def test_resuming_with_other_data_folds_or_objective_is_refused_naming_what_differs(run_cli, tmp_path):
    base = ["+study=wine_mlp", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=2", "final.retrain=false", "report.study_plots=false"]
    assert run_cli(*base).returncode == 0
    _, parents, _ = mlflow_runs(tmp_path, "wine_mlp")

    for change, named in [
        (["data=iris", "study.n_trials=4"], "data."),
        (["cv.folds=3", "study.n_trials=4"], "cv.folds (2 -> 3)"),
        (["study.metric=f1", "study.n_trials=4"], "study.metric ('accuracy' -> 'f1')"),
    ]:
        result = run_cli(*base, *change)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("nnsearch: error: study 'wine_mlp'") and named in error, error
        assert "study.name=" in error

    study, _ = _no_running_anywhere(tmp_path, "wine_mlp")
    assert len(study.trials) == 2  # nothing of the refused runs reached the study
    _, after, _ = mlflow_runs(tmp_path, "wine_mlp")
    assert [p.info.run_id for p in after] == [parents[0].info.run_id]

    # how the study runs may change: budget, sampler, pruner, report, launch
    result = run_cli(*base[:1], *base[2:], "study.n_trials=3", "sampler=random", "pruner=none", "report.top_k=3")
    assert result.returncode == 0, result.stderr
    assert len(load_study(tmp_path, "wine_mlp").get_trials(states=FINISHED)) == 3


@pytest.mark.slow
def test_an_edited_data_file_under_the_same_path_is_refused(run_cli, tmp_path):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.to_csv(tmp_path / "flowers.csv", index=False)
    args = ["+study=wine_mlp", "data=csv", "data.path=flowers.csv", "data.target=target", *TINY]
    assert run_cli(*args).returncode == 0

    frame.iloc[:20, 0] += 1.0
    frame.to_csv(tmp_path / "flowers.csv", index=False)
    result = run_cli(*args[:-len(TINY)], *TINY[1:], "study.n_trials=3")
    assert result.returncode == 2
    assert "the data's rows (120 rows x 4 features" in result.stderr
    assert len(load_study(tmp_path, "wine_mlp").trials) == 2


# -- crash recovery -------------------------------------------------------------------------------

LONG = ["+study=digits_mlp", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=100", "pruner=none", "cv.test_size=0",
        "final.retrain=false", "report.study_plots=false", "tracking.trial_plots=none"]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_a_study_killed_with_sigkill_leaves_no_process_and_the_rerun_retries_its_trial(tmp_path, storage):
    args, store, name = list(LONG), None, "digits_mlp"
    if storage == "postgresql":
        if not postgres_available():
            pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
        import optuna

        name = f"kill_{uuid.uuid4().hex[:8]}"
        args += [f"study.storage={PG_URL}", f"study.name={name}"]
        store = optuna.storages.RDBStorage(PG_URL)
    proc = subprocess.Popen([sys.executable, "-m", "nnsearch", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = _wait_for_running_trial(proc, tmp_path, name, store)
    helpers = psutil.Process(proc.pid).children(recursive=True)  # the fold processes
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(helpers, timeout=60)
    assert not alive, f"processes outlived the killed study: {alive}"
    assert load_study(tmp_path, name, store).get_trials(states=(TrialState.RUNNING,))  # as the kill left it

    result = cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study, children = _no_running_anywhere(tmp_path, name, store)
    assert len(study.get_trials(states=FINISHED)) == 2
    dead = study.trials[running[0].number]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == dead.params and retry[0].state in FINISHED  # the same configuration, trained
    logged = {c.data.tags["optuna.trial_number"]: c for c in children}
    assert logged[str(dead.number)].info.status == "FAILED"
    assert "died" in logged[str(dead.number)].data.tags["reason"]


@pytest.mark.slow
def test_sigterm_stops_the_study_like_ctrl_c_and_the_same_command_resumes(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nnsearch", *LONG], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_running_trial(proc, tmp_path, "digits_mlp")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "run the same command again to resume" in output and "Traceback" not in output
    _, parents, _ = mlflow_runs(tmp_path, "digits_mlp")
    assert parents[0].info.status == "KILLED"
    assert not load_study(tmp_path, "digits_mlp").get_trials(states=(TrialState.RUNNING,))

    result = cli(LONG, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study, _ = _no_running_anywhere(tmp_path, "digits_mlp")
    assert len(study.get_trials(states=FINISHED)) == 2


@pytest.mark.slow
def test_a_killed_launcher_takes_its_workers_with_it_and_the_rerun_completes(tmp_path):
    args = [*LONG, "launch.workers=2", "study.n_trials=3"]
    proc = subprocess.Popen([sys.executable, "-m", "nnsearch", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_running_trial(proc, tmp_path, "digits_mlp")
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=120)
    assert not alive, f"workers ran on without their launcher: {alive}"
    # each worker recorded its running trial as failed on its way out
    assert not load_study(tmp_path, "digits_mlp").get_trials(states=(TrialState.RUNNING,))

    result = cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study, _ = _no_running_anywhere(tmp_path, "digits_mlp")
    assert len(study.get_trials(states=FINISHED)) == 3


@pytest.mark.slow
def test_ctrl_c_during_the_final_retrain_is_honoured(tmp_path):
    args = ["+study=digits_mlp", "study.n_trials=1", "cv.folds=2", "trainer.max_epochs=100", "report.study_plots=false"]
    proc = subprocess.Popen([sys.executable, "-m", "nnsearch", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "final model: retraining trial" in line:
            proc.send_signal(signal.SIGINT)
            break
    output = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "run the same command again" in output and "Traceback" not in output
    client, parents, _ = mlflow_runs(tmp_path, "digits_mlp")
    assert parents[0].info.status == "KILLED"


@pytest.mark.slow
def test_a_resume_that_adds_no_trial_keeps_the_final_model(run_cli, tmp_path):
    args = ["+study=wine_mlp", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=2", "report.study_plots=false"]
    assert run_cli(*args).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "keeping its final model" in again.stdout
    assert "Held-out test split" in again.stdout  # the kept model's test scores are still reported
    client, parents, _ = mlflow_runs(tmp_path, "wine_mlp")
    finals = client.search_runs([parents[0].info.experiment_id], filter_string="tags.`nnsearch.role` = 'final'")
    assert len(finals) == 1


@pytest.mark.slow
def test_a_study_where_no_trial_completes_exits_non_zero_with_one_line(run_cli, tmp_path):
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
              optimizer.lr: {type: categorical, choices: [1.0e+12, 1.0e+13]}
            """
        )
    )
    result = run_cli("+study=explode", "cv.folds=2", "trainer.max_epochs=2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nnsearch: error: no trial of study 'explode' completed (0 pruned, 2 failed; last failure:") and "nan" in last
    _, parents, _ = mlflow_runs(tmp_path, "explode")
    assert parents[0].info.status == "FAILED"


# -- processes joining one study (the seed each derives: tests/study/test_trials.py) -------------------


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_two_runs_started_together_on_one_postgresql_study_share_it_without_repeating_trials(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the store exists; its creation race is tested apart
    name = f"twin_{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", "nnsearch", "+study=wine_mlp", "study.n_trials=6", "cv.folds=2", "trainer.max_epochs=2", "cv.test_size=0",
            "sampler=random", "pruner=none", "final.retrain=false", "report.study_plots=false", f"study.storage={PG_URL}", f"study.name={name}"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = optuna.load_study(study_name=name, storage=PG_URL)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 6
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 6  # no process repeated the other's samples
    _, parents, children = mlflow_runs(tmp_path, name)
    assert len(parents) == 1, [p.info.run_id for p in parents]  # one parent run, though both started the study
    seeds = {c.data.tags["sampler.seed"] for c in children if c.data.tags["state"] == "COMPLETE"}
    assert len(seeds) == 2


@pytest.mark.slow
def test_the_study_keeps_its_user_attributes_for_the_user_and_names_its_objectives(run_cli, tmp_path):
    """``optuna studies`` shows user attributes in its table; nnsearch's records stay out of it."""
    assert run_cli("+study=wine_mlp", *TINY).returncode == 0
    study = load_study(tmp_path, "wine_mlp")
    assert study.user_attrs == {}
    assert study.metric_names == ["accuracy"]  # optuna-dashboard's axis label
    optuna_cli = os.path.join(os.path.dirname(sys.executable), "optuna")
    listing = subprocess.run([optuna_cli, "--storage", str(tmp_path / "optuna.journal"), "--storage-class", "JournalFileBackend", "studies"],
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert max(len(line) for line in listing.stdout.splitlines()) < 200, listing.stdout
