"""Opening the MLflow store: fail at once when a server does not answer, let several processes
create a new store together, and build a new SQLite store ahead of time.

All concern the first moments of a study: a mistyped server URI should not hold the command for
minutes, workers (or machines) starting together on a new database must not crash each other, and
the seconds MLflow takes to build a new store's tables should not hold back the first trial.
"""

from __future__ import annotations

import contextlib
import logging
import hashlib
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnsearch.config.credentials import exported, redact, scrub
from nnsearch.errors import NNSearchError

try:
    import fcntl
except ImportError:  # Windows: no file lock, the retries remain
    fcntl = None

# errors of processes that create a new database store at the same moment: a table, a column,
# the default experiment or the alembic version row is already there, or SQLite is locked
_CREATION_RACE = ("already exists", "duplicate", "unique", "locked", "out-of-date", "alembic_version", "expected to match one row")
STORE_ATTEMPTS = 6
CHECK_TIMEOUT_S = 10
log = logging.getLogger("nnsearch")
_LOCK_KEY = 0x6E6E736561726368  # "nnsearch": the advisory lock of MLflow store creation


def check_reachable(uri: str) -> None:
    """Fail in seconds, with one line, when an ``http(s)://`` tracking URI has no server answering.

    MLflow retries a failed request for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7,
    with exponential backoff; ``MLFLOW_HTTP_REQUEST_TIMEOUT``, default 120 s): right when a server
    restarts in the middle of a study, wrong for a mistyped URI at its start. So a first request
    goes without retries and with a short timeout; the study's own requests keep MLflow's settings.
    """
    if not str(uri).lower().startswith(("http://", "https://")):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    with exported({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CHECK_TIMEOUT_S)}):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except MlflowException as err:
            raise NNSearchError(f"tracking.uri={redact(uri)}: no MLflow server answers ({_reason(err)}); start one or fix the URI.") from None


def _reason(err: Exception) -> str:
    text = str(err)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno[1].strip()
    return "timed out" if "timed out" in text.lower() else scrub(text.splitlines()[0] if text else type(err).__name__)[:300]


def import_mlflow() -> None:
    """Import MLflow's client and its SQL store (seconds of CPU) without opening any store.

    A study calls it while its fold processes import Lightning, before its smoke test: the store,
    which must not be written before that test passes, then opens at once.
    """
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401


SQLITE = "sqlite:///"


class StoreAhead:
    """A new SQLite MLflow store whose tables were built ahead, under a private name beside its file.

    MLflow builds a new store's tables (its alembic migrations) on first opening it: a second or
    more of CPU at every first study in a folder. The study's process has that time free while its
    fold processes import Lightning, but must write nothing before the smoke test passes. So the
    tables are built in a private file (``.mlflow.db.new-PID``); :meth:`place` then links it to the
    store's name, atomically and only if no store appeared there meanwhile (another process' store
    stands, with its runs), and :meth:`drop` removes it when the study does not start.
    """

    def __init__(self, path: Path, private: Path) -> None:
        self.path, self.private = path, private

    @classmethod
    def build(cls, uri: str) -> StoreAhead | None:
        """The store of ``uri`` built ahead; None when ``uri`` is not a plain ``sqlite:///FILE``, when FILE exists,
        or when building fails (the study then opens the store as usual, and says what is wrong)."""
        if not uri.startswith(SQLITE) or "?" in uri:
            return None
        path = Path(uri[len(SQLITE):])
        if path.exists() or not path.parent.is_dir():
            return None
        ahead = cls(path, path.with_name(f".{path.name}.new-{os.getpid()}"))
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=SQLITE + str(ahead.private.absolute())).search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 - opening the store later reports the problem
            log.debug("MLflow store not built ahead: %s", err)
            ahead.drop()
            return None
        return ahead

    def place(self) -> None:
        """The built store under its own name, unless one is there now; the private file goes either way."""
        try:
            os.link(self.private, self.path)
        except OSError as err:  # FileExistsError: another process made the store meanwhile; else no hard links here
            log.debug("MLflow store built ahead not used: %s", err)
        finally:
            self.drop()

    def drop(self) -> None:
        self.private.unlink(missing_ok=True)


def open_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri``, safe when several processes create a new store together.

    The first client on an empty database creates MLflow's tables and runs its migrations, with
    no lock across processes or machines: of workers (or machines) starting at once, all but one
    then fail because a table, a column or the alembic row is already there, and on SQLite, whose
    schema changes are not transactional, a migration cut short by another leaves the schema
    half-changed for good. So the opening is serialized (:func:`_creation_lock`), and where it
    cannot be (another database kind), whoever loses waits a moment and opens the store the
    winner built.
    """
    from mlflow.tracking import MlflowClient

    attempt = 0
    while True:
        try:
            with _creation_lock(uri):
                return MlflowClient(tracking_uri=uri)
        except Exception as err:  # noqa: BLE001 - SQLAlchemy, alembic and MLflow each raise their own
            attempt += 1
            if attempt == STORE_ATTEMPTS or not _creation_race(err):
                raise NNSearchError(f"Cannot open the MLflow store tracking.uri={redact(uri)}: {_reason(err)}") from None
            time.sleep(random.uniform(0.1, 0.2) * 2**attempt)  # jittered: the losers must not collide again


def _creation_race(err: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    text = f"{type(err).__name__}: {err}".lower()
    return isinstance(err, IntegrityError) or any(hint in text for hint in _CREATION_RACE)


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, created or restored; another process may do either meanwhile."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # another process created it meanwhile (unique name)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        try:
            client.restore_experiment(found.experiment_id)
        except MlflowException:  # another process restored it meanwhile
            if client.get_experiment(found.experiment_id).lifecycle_stage == "deleted":
                raise
    return found.experiment_id


@contextlib.contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """Held while a store is opened: a PostgreSQL advisory lock (every machine), a file lock for
    SQLite (this machine; a SQLite file is not for several machines anyway), none for others."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme.startswith("postgresql"):
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        finally:
            engine.dispose()
    elif scheme == "sqlite" and fcntl is not None:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        with open(Path(tempfile.gettempdir()) / f"nnsearch-mlflow-store-{digest}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield
    else:
        yield
