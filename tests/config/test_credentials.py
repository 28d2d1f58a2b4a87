"""Passwords in study.storage and tracking.uri: masked in every file nnsearch writes and every line it prints.

The end-to-end tests run real studies on the PostgreSQL server on 127.0.0.1:5432 (trust auth:
any password is accepted, so a distinctive one can be searched for afterwards) and look for it
everywhere: files under the run's folder, output, the Optuna study's attributes, and the MLflow
store (runs, logged models, artifacts, and every row of its database).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import TINY, postgres_available
from nnsearch.config import credentials
from nnsearch.config.credentials import from_environment, redact, redacted_yaml, remember, scrub
from nnsearch.errors import NNSearchError

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
NEEDLE = "Nn5-s3cr3t"  # in every form of the password below: as decoded, as typed, re-encoded
PASSWORD = NEEDLE + "%2Fq%40z"  # typed URL-encoded: the server sees Nn5-s3cr3t/q@z



@pytest.fixture(autouse=True)
def _fresh_secrets(monkeypatch):
    monkeypatch.setattr(credentials, "_known", set())


# -- scrub and redact -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://u1:plain-pw@127.0.0.1:5432/test", "postgresql://u1:***@127.0.0.1:5432/test"),
        ("postgresql+psycopg://u1:p%2F%40w%3Ax@db:5432/s?sslmode=require", "postgresql+psycopg://u1:***@db:5432/s?sslmode=require"),
        ("postgresql://u1:pa/ss:w@h/d", "postgresql://u1:***@h/d"),  # "/" and ":" unencoded
        ("mysql+pymysql://u:p@ss@h/db", "mysql+pymysql://u:***@h/db"),  # an unencoded "@" (an invalid URL) leaks nothing
        ("https://user:tok3n-xyz@mlflow.example.com/prefix", "https://user:***@mlflow.example.com/prefix"),
    ],
)
def test_redact_masks_the_whole_password(url, masked):
    assert redact(url) == masked


@pytest.mark.parametrize(
    "url, masked",
    [
        ("mysql://root:hunter22@db.example.com:3306/optuna", "mysql://root:***@db.example.com:3306/optuna"),
        ("postgresql://alice:s%40cr%2Bt%20x@db/optuna", "postgresql://alice:***@db/optuna"),  # encoded "@", "+", " "
        ("postgresql://alice:pa+ss@db/optuna", "postgresql://alice:***@db/optuna"),
        ("postgresql+psycopg2://user%40srv:p%40ss@h.example.com/db", "postgresql+psycopg2://user%40srv:***@h.example.com/db"),  # "@" in the user
        ("postgresql://u:secret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("oracle+oracledb://scott:tiger@tnsname", "oracle+oracledb://scott:***@tnsname"),
        ("postgresql://u:secret@h:port/db", "postgresql://u:***@h:port/db"),  # a port SQLAlchemy rejects
    ],
)
def test_redact_masks_database_urls(url, masked):
    assert redact(url) == masked


def test_redact_keeps_the_query_of_a_database_url():
    from sqlalchemy.engine import make_url

    url = "mysql+pymysql://u:Secr3t-pw@h:3306/db?ssl_ca=/etc/ca.pem&charset=utf8mb4"
    masked = redact(url)
    assert "Secr3t" not in masked and masked.startswith("mysql+pymysql://u:***@h:3306/db?")
    assert make_url(masked).query == make_url(url).query  # SQLAlchemy sorts and encodes it: the same settings


@pytest.mark.parametrize(
    "url",
    [
        "optuna.journal", "/data/study.journal", "./runs/a:b@c/optuna.journal", "C:\\runs\\optuna.journal", "runs with spaces/x.journal",
        "sqlite:////tmp/a@b/mlflow.db", "sqlite:///optuna.db", "grpc://host:13000", "http://127.0.0.1:5000",
        "postgresql://alice@db:5432/optuna?sslmode=require", "postgresql:///optuna",
    ],
)  # fmt: skip
def test_redact_keeps_urls_without_a_password(url):
    assert redact(url) == url
    assert redact(None) == "None"
    assert redact("") == ""


def test_redact_remembers_the_password_for_other_texts():
    redact("postgresql://u1:Wx7-pw%2Fz@h/db")
    assert scrub("connection refused for password Wx7-pw/z") == "connection refused for password ***"


def test_scrub_masks_a_remembered_password_in_every_form_and_leaves_interpolations():
    remember("postgresql://u1:Abc%2Fd%40ef@h/db")
    text = "decoded Abc/d@ef, typed Abc%2Fd%40ef, as an error: password 'Abc/d@ef' rejected"
    assert scrub(text) == "decoded ***, typed ***, as an error: password '***' rejected"
    interpolation = "storage: postgresql://u1:${oc.env:PGPASSWORD}@h/db"
    assert scrub(interpolation) == interpolation


def test_a_short_password_is_masked_inside_urls_only():
    remember("postgresql://u:ab@h/db")
    assert scrub("tab and postgresql://u:ab@h/db") == "tab and postgresql://u:***@h/db"


def test_redacted_yaml_masks_both_urls_and_copies_of_them():
    cfg = OmegaConf.create(
        {"study": {"storage": "postgresql://u1:Zq-9%2Fpw@h/test"}, "tracking": {"uri": "mysql+pymysql://u2:Other%40pw@h/ml"}, "note": "${tracking.uri}"}
    )
    text = redacted_yaml(cfg)
    assert "Zq-9" not in text and "Other" not in text
    assert text.count("***@h/") == 3


def test_a_worker_takes_the_masked_urls_from_its_environment(monkeypatch):
    url = "postgresql://u1:Zq-9%2Fpw@h/test"
    masked = OmegaConf.create(redacted_yaml(OmegaConf.create({"study": {"storage": url}, "tracking": {"uri": "sqlite:////tmp/m.db"}})))
    assert "***" in masked.study.storage
    monkeypatch.delenv("NNSEARCH_STUDY_STORAGE", raising=False)
    with pytest.raises(NNSearchError, match="NNSEARCH_STUDY_STORAGE"):
        from_environment(masked.copy())
    monkeypatch.setenv("NNSEARCH_STUDY_STORAGE", "postgresql://u1:stale@other/test")  # another study's: not used
    with pytest.raises(NNSearchError, match="NNSEARCH_STUDY_STORAGE"):
        from_environment(masked.copy())
    monkeypatch.setenv("NNSEARCH_STUDY_STORAGE", url)
    from_environment(masked)
    assert masked.study.storage == url and masked.tracking.uri == "sqlite:////tmp/m.db"


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture
def tracking_db():
    """A fresh PostgreSQL database for the MLflow store; dropped afterwards."""
    import sqlalchemy

    name = f"nnsearch_secrets_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def _leaks(tmp_path: Path, output: str, study_name: str, tracking_db: str) -> list[str]:
    """Everywhere the password shows up: files, output, the Optuna study, the MLflow store."""
    import optuna
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    found = [f"file {p.relative_to(tmp_path)}" for p in tmp_path.rglob("*") if p.is_file() and NEEDLE.encode() in p.read_bytes()]
    found += [f"output: {line}" for line in output.splitlines() if NEEDLE in line]
    storage = optuna.storages.RDBStorage(ADMIN_URL)
    study_id = storage.get_study_id_from_name(study_name)
    trials = storage.get_all_trials(study_id)
    attrs = [storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(study_id)]
    attrs += [a for t in trials for a in (t.user_attrs, t.system_attrs, t.params)]
    assert trials and "nnsearch.config" in attrs[1]  # the stored config is searched too
    found += [f"Optuna attribute {a}" for a in attrs if NEEDLE in str(a)]
    client = MlflowClient(tracking_uri=f"postgresql://postgres@127.0.0.1:5432/{tracking_db}")
    experiments = client.search_experiments()
    for run in client.search_runs([e.experiment_id for e in experiments], max_results=1000):
        if NEEDLE in str(run.data.params) + str(run.data.tags) + str(run.info):
            found.append(f"MLflow run {run.info.run_name}: params/tags")
        folder = tmp_path / "downloaded" / run.info.run_id
        folder.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(folder))
        found += [f"artifact {p}" for p in folder.rglob("*") if p.is_file() and NEEDLE.encode() in p.read_bytes()]
    for model in client.search_logged_models([e.experiment_id for e in experiments]):
        if NEEDLE in str(model.params) + str(model.tags):
            found.append(f"MLflow logged model {model.name}")
    engine = sqlalchemy.create_engine(f"postgresql://postgres@127.0.0.1:5432/{tracking_db}")
    with engine.connect() as conn:
        for table in sqlalchemy.inspect(conn).get_table_names():
            rows = conn.exec_driver_sql(f'SELECT t::text FROM "{table}" t').scalars().all()
            found += [f"MLflow table {table}" for row in rows if NEEDLE in row]
    engine.dispose()
    return found


def _run_and_search(run_cli, tmp_path, tracking_db, *, literal: bool, extra: list[str]) -> tuple[str, str]:
    name = f"secrets_{uuid.uuid4().hex[:8]}"
    secret = PASSWORD if literal else "${oc.env:PGPASSWORD}"
    urls = [f"study.storage=postgresql://postgres:{secret}@127.0.0.1:5432/test", f"tracking.uri=postgresql://postgres:{secret}@127.0.0.1:5432/{tracking_db}"]
    result = run_cli("+study=wine_mlp", f"study.name={name}", *TINY, *urls, *extra, env={"PGPASSWORD": PASSWORD}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    # the run wrote what is searched: Hydra's files, the export, trial artifacts
    assert list(tmp_path.glob(f"outputs/{name}/*/.hydra/overrides.yaml")) and list(tmp_path.glob(f"outputs/{name}/*/best_config.yaml"))
    assert "postgres:***@127.0.0.1" in output
    return name, output


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_a_literal_password_leaks_nowhere_with_workers(run_cli, tmp_path, tracking_db):
    name, output = _run_and_search(run_cli, tmp_path, tracking_db, literal=True, extra=["launch.workers=2"])
    workers = sorted(tmp_path.glob(f"outputs/{name}/*/workers/worker_*.yaml"))
    assert len(workers) == 2 and all("postgres:***@127.0.0.1" in w.read_text() for w in workers)
    assert "postgres:***@127.0.0.1" in next(tmp_path.glob(f"outputs/{name}/*/.hydra/overrides.yaml")).read_text()
    warnings = [line for line in output.splitlines() if "literal password" in line]
    assert len(warnings) == 1 and "${oc.env:PGPASSWORD}" in warnings[0]
    try:
        assert _leaks(tmp_path, output, name, tracking_db) == []
    finally:
        import optuna

        optuna.delete_study(study_name=name, storage=ADMIN_URL)


@pytest.mark.slow
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL on 127.0.0.1:5432 is not reachable")
def test_an_env_password_leaks_nowhere_with_the_final_model_and_a_command(run_cli, tmp_path, tracking_db):
    name, output = _run_and_search(run_cli, tmp_path, tracking_db, literal=False, extra=["final.retrain=true"])
    assert "Final model: trial" in output
    assert "literal password" not in output
    # a command on the finished study reads its stored (masked) config, with the URLs of its own command line
    secret = "${oc.env:PGPASSWORD}"
    export = run_cli(
        "+study=wine_mlp", f"study.name={name}", "command=export", f"study.storage=postgresql://postgres:{secret}@127.0.0.1:5432/test",
        f"tracking.uri=postgresql://postgres:{secret}@127.0.0.1:5432/{tracking_db}", env={"PGPASSWORD": PASSWORD},
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert "Exported trial" in export.stdout
    try:
        assert _leaks(tmp_path, output + export.stdout + export.stderr, name, tracking_db) == []
    finally:
        import optuna

        optuna.delete_study(study_name=name, storage=ADMIN_URL)
