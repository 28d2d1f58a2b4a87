"""Several worker processes on one study: exact trial totals, no duplicate grid points, dead workers.

These start real processes and, for PostgreSQL, use the server on 127.0.0.1:5432 (database
`test`, trust auth), as CI has it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from optuna.trial import TrialState

from conftest import load_study, mlflow_runs, postgres_available

PG_URL = "postgresql://postgres:not-a-real-secret@127.0.0.1:5432/test"
FAST = ["cv.folds=2", "trainer.max_epochs=2", "cv.test_size=0"]



def _assert_exact(tmp_path, name, n_trials, storage=None):
    study = load_study(tmp_path, name, storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == n_trials
    assert not study.get_trials(states=(TrialState.RUNNING,))
    _, parents, children = mlflow_runs(tmp_path, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    logged = sorted(int(c.data.tags["optuna.trial_number"]) for c in children if c.data.tags["state"] in ("COMPLETE", "PRUNED"))
    assert logged == sorted(t.number for t in finished)
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert not [c for c in children if c.info.status == "RUNNING"]
    return study


def _assert_retried_once(tmp_path, name, n_trials, number, output):
    """The study reached exactly ``n_trials``; trial ``number``, whose worker was killed, alone failed ("died",
    in Optuna and in MLflow) and was retried once with its parameters. Returns the retry and the MLflow trial runs."""
    study = _assert_exact(tmp_path, name, n_trials)
    killed = study.trials[number]
    assert killed.state == TrialState.FAIL and "died" in killed.user_attrs["fail_reason"], output[-3000:]
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [number]  # only the trial it was training
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the dead trial is in MLflow too, FAILED with its reason
    _, _, children = mlflow_runs(tmp_path, name)
    dead = [c for c in children if c.data.tags["optuna.trial_number"] == str(killed.number)]
    assert len(dead) == 1 and dead[0].info.status == "FAILED" and "died" in dead[0].data.tags["reason"]
    return retries[0], children


def test_three_workers_on_a_journal_file_reach_exactly_n_trials(run_cli, tmp_path):
    result = run_cli("+study=wine_mlp", "launch.workers=3", "study.n_trials=7", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _assert_exact(tmp_path, "wine_mlp", 7)
    # every worker started and sampled with a seed of its own; how the trials spread over them is
    # up to the scheduler (a worker that boots late may find the study complete)
    started = re.findall(r"\[worker (\d+)\]\[INFO\] - sampler seed (\d+) \(derived from sampler.seed=0: \d+ trials already in the study, worker (\d+)\)",
                         result.stderr)
    assert sorted(index for _, _, index in started) == ["0", "1", "2"], result.stderr[-3000:]
    seed_of = {pid: seed for pid, seed, _ in started}
    assert len(seed_of) == 3 and len(set(seed_of.values())) == 3
    # each trial ran in a worker, not in the launcher, and was sampled with that worker's seed
    _, _, children = mlflow_runs(tmp_path, "wine_mlp")
    seeds = {int(c.data.tags["optuna.trial_number"]): c.data.tags["sampler.seed"] for c in children}
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):  # not a surplus start a worker skipped
        pid = trial.user_attrs["worker"].rsplit(":", 1)[1]
        assert pid in seed_of, (trial.number, trial.user_attrs["worker"], seed_of)
        assert seeds[trial.number] == seed_of[pid]


@pytest.mark.slow
def test_grid_points_are_evaluated_once_across_workers(run_cli, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "grid.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - override /data: iris
              - override /sampler: grid
              - override /pruner: none
            study:
              n_trials: 100
            search_space:
              model.hidden_dim: {type: categorical, choices: [4, 8, 16]}
              model.n_layers: {type: int, low: 1, high: 2}
            """
        )
    )
    result = run_cli("+study=grid", "launch.workers=2", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path, "grid")
    done = [(t.params["model.hidden_dim"], t.params["model.n_layers"]) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(done) == sorted((h, n) for h in (4, 8, 16) for n in (1, 2))


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_two_workers_on_postgresql_and_the_password_never_leaks(run_cli, tmp_path):
    name = f"pg_{uuid.uuid4().hex[:8]}"
    result = run_cli("+study=wine_mlp", "launch.workers=2", "study.n_trials=5", f"study.storage={PG_URL}", f"study.name={name}", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    _assert_exact(tmp_path, name, 5, optuna.storages.RDBStorage(PG_URL))
    trials = optuna.load_study(study_name=name, storage=PG_URL).trials
    # each worker samples with a seed of its own: none repeats the other's parameters
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    assert "not-a-real-secret" not in result.stdout + result.stderr
    client, parents, children = mlflow_runs(tmp_path, name)
    for run in [*parents, *children]:
        assert "not-a-real-secret" not in str(run.data.params) + str(run.data.tags)
    config = client.download_artifacts(children[0].info.run_id, "config.yaml", str(tmp_path))
    assert "not-a-real-secret" not in open(config).read()
    assert "not-a-real-secret" not in next(tmp_path.glob(f"outputs/{name}/*/best_config.yaml")).read_text()


def _running_trials(tmp_path, name):
    try:
        return load_study(tmp_path, name).get_trials(states=(TrialState.RUNNING,))
    except (KeyError, FileNotFoundError, ValueError):  # the study is not there yet
        return []


def _stop_a_worker_mid_trial(proc, tmp_path, name, *, timeout=300):
    """Freeze (SIGSTOP) the worker of a trial that is RUNNING and has reported an epoch; returns
    its pid and that trial. Whether the trial is still running is checked once the worker is frozen,
    so a trial that ended between the look and the stop is never taken for one in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study ended before a worker was seen mid-trial"
        for trial in [t for t in _running_trials(tmp_path, name) if t.intermediate_values]:
            owner = trial.user_attrs["worker"]
            pid = int(owner.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGSTOP)
            if any(t.number == trial.number and t.user_attrs.get("worker") == owner for t in _running_trials(tmp_path, name)):
                return pid, trial
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.1)
    pytest.fail("no worker was seen mid-trial")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_that_trial_which_is_retried(tmp_path):
    args = [sys.executable, "-m", "nnsearch", "+study=digits_mlp", "launch.workers=2", "study.n_trials=6",
            "cv.folds=2", "trainer.max_epochs=15", "cv.test_size=0", "pruner=none"]
    with open(tmp_path / "output.txt", "w") as out:  # a file, not a pipe: nothing blocks on unread output
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            victim, caught = _stop_a_worker_mid_trial(proc, tmp_path, "digits_mlp")
            os.kill(victim, signal.SIGKILL)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = (tmp_path / "output.txt").read_text()
    assert proc.returncode == 0, output[-3000:]
    _assert_retried_once(tmp_path, "digits_mlp", 6, caught.number, output)


@pytest.mark.slow
def test_submitit_local_executor_runs_the_workers(run_cli, tmp_path):
    result = run_cli("+study=wine_mlp", "launch.backend=submitit", "launch.submitit.cluster=local", "launch.workers=2",
                     "study.n_trials=4", *FAST, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_exact(tmp_path, "wine_mlp", 4)


def test_sqlite_is_refused_for_parallel_workers(run_cli, tmp_path):
    result = run_cli("+study=wine_mlp", "launch.workers=2", "study.storage=sqlite:///study.db")
    assert result.returncode == 2
    assert "SQLite cannot take writes from several workers" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_workers_through_the_grpc_storage_proxy(run_cli, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "nnsearch", "command=storage_server", f"study.storage={PG_URL}", f"launch.grpc.port={port}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        name = f"grpc_{uuid.uuid4().hex[:8]}"
        result = run_cli("+study=wine_mlp", "launch.workers=2", "study.n_trials=4", f"study.storage=grpc://127.0.0.1:{port}",
                         f"study.name={name}", *FAST)
        assert result.returncode == 0, result.stderr[-3000:]
        import optuna

        _assert_exact(tmp_path, name, 4, optuna.storages.RDBStorage(PG_URL))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_workers_log_to_an_mlflow_store_on_postgresql(run_cli, tmp_path):
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    with sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT").connect() as conn:
        if not conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = 'nnsearch_mlflow'").first():
            conn.exec_driver_sql("CREATE DATABASE nnsearch_mlflow")
    mlflow_uri = "postgresql://postgres@127.0.0.1:5432/nnsearch_mlflow"
    name = f"pgml_{uuid.uuid4().hex[:8]}"
    result = run_cli("+study=wine_mlp", "launch.workers=2", "study.n_trials=3", f"study.storage={PG_URL}",
                     f"study.name={name}", f"tracking.uri={mlflow_uri}", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if r.data.tags.get("nnsearch.role") == "study"]
    children = [r for r in runs if r.data.tags.get("nnsearch.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len([c for c in children if c.data.tags["state"] == "COMPLETE"]) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
