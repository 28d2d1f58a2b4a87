"""Opening the MLflow store: several processes creating a new one at once, and a server that is not there."""

from __future__ import annotations

import multiprocessing
import socket
import traceback
import uuid

import pytest

from conftest import postgres_available

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
N_PROCESSES = 3



def _open_tracker(uri: str, barrier, answers) -> None:
    """One process: imports done, wait for the others, then open the store at the same moment."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - paid before the barrier, so the opens coincide

    from nnsearch.tracking.runs import Tracker

    barrier.wait(timeout=300)
    try:
        answers.put(("ok", Tracker(uri, "exp").experiment_id))
    except BaseException:  # noqa: BLE001 - reported to the test
        answers.put(("error", traceback.format_exc()))


def _open_together(uri: str) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, answers = ctx.Barrier(N_PROCESSES), ctx.Queue()
    processes = [ctx.Process(target=_open_tracker, args=(uri, barrier, answers)) for _ in range(N_PROCESSES)]
    for process in processes:
        process.start()
    try:
        return [answers.get(timeout=300) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)


def _assert_one_experiment(uri: str, results: list[tuple[str, str]]) -> None:
    from mlflow.tracking import MlflowClient

    errors = [detail for state, detail in results if state != "ok"]
    assert not errors, errors[0]
    ids = {detail for _, detail in results}
    assert len(ids) == 1
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("exp").experiment_id == ids.pop()


def test_processes_creating_a_new_sqlite_store_together_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _assert_one_experiment(uri, _open_together(uri))


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_processes_creating_a_new_postgresql_store_together_all_succeed():
    import sqlalchemy

    name = f"nnsearch_race_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        uri = f"postgresql://postgres@127.0.0.1:5432/{name}"
        _assert_one_experiment(uri, _open_together(uri))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_an_unreachable_tracking_server_fails_at_once_in_one_line(run_cli, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    # MLflow alone would retry for minutes: the timeout is the test
    result = run_cli("+study=wine_mlp", f"tracking.uri={uri}", "study.n_trials=1", timeout=90)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("nnsearch: error: ") and uri in lines[0]
    assert not (tmp_path / "optuna.journal").exists()  # failed before the study was created


class _FlakyClient:
    """Fails like a process that lost the race to create the store, ``failures`` times, then opens."""

    calls = 0

    def __init__(self, *, tracking_uri: str, failures: int = 2, error: Exception | None = None) -> None:
        type(self).calls += 1
        if type(self).calls <= failures:
            raise error or RuntimeError("(sqlite3.OperationalError) table experiments already exists")


def test_a_process_that_loses_the_creation_race_retries(monkeypatch, tmp_path):
    from nnsearch.tracking.store import open_client

    monkeypatch.setattr("mlflow.tracking.MlflowClient", _FlakyClient)
    _FlakyClient.calls = 0
    assert isinstance(open_client(f"sqlite:///{tmp_path / 'm.db'}"), _FlakyClient)
    assert _FlakyClient.calls == 3


def test_a_store_that_cannot_be_opened_is_one_line_at_once(monkeypatch):
    from nnsearch.errors import NNSearchError
    from nnsearch.tracking.store import open_client

    def refused(*, tracking_uri: str) -> None:
        _FlakyClient(tracking_uri=tracking_uri, failures=99, error=RuntimeError("connection refused\nmore detail"))

    monkeypatch.setattr("mlflow.tracking.MlflowClient", refused)
    _FlakyClient.calls = 0
    with pytest.raises(NNSearchError, match=r"^Cannot open the MLflow store tracking.uri=mysql://u:\*\*\*@h/db: connection refused$"):
        open_client("mysql://u:pw-123@h/db")
    assert _FlakyClient.calls == 1  # not a race: no retry


def test_a_new_sqlite_store_built_ahead_takes_its_name_only_when_placed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from nnsearch.tracking.store import StoreAhead

    monkeypatch.chdir(tmp_path)
    ahead = StoreAhead.build("sqlite:///mlflow.db")
    assert ahead is not None and ahead.private.exists()
    assert not (tmp_path / "mlflow.db").exists(), "nothing may carry the store's name before the study starts"
    ahead.place()
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("exp"))
    assert client.get_run(run.info.run_id).info.experiment_id == client.get_experiment_by_name("exp").experiment_id


def test_a_store_built_ahead_yields_to_one_another_process_made_meanwhile(tmp_path):
    from mlflow.tracking import MlflowClient

    from nnsearch.tracking.store import StoreAhead

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ahead = StoreAhead.build(uri)
    theirs = MlflowClient(tracking_uri=uri)
    theirs.create_experiment("theirs")
    ahead.place()
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("theirs") is not None
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]


def test_a_store_built_ahead_and_dropped_leaves_nothing_and_an_existing_or_remote_store_is_left_alone(tmp_path):
    from mlflow.tracking import MlflowClient

    from nnsearch.tracking.store import StoreAhead

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    StoreAhead.build(uri).drop()
    assert not list(tmp_path.iterdir())
    MlflowClient(tracking_uri=uri).search_experiments()
    assert StoreAhead.build(uri) is None
    assert StoreAhead.build("http://127.0.0.1:5000") is None
    assert StoreAhead.build("postgresql://postgres@127.0.0.1:5432/test") is None
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
