"""Where the Optuna study lives, shared by every worker of a study.

- ``None``: the journal file ``./optuna.journal``: safe for several processes on one machine
  (SQLite is not: its writers lock each other out).
- a path without a scheme: a journal file at that path.
- ``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``: Optuna's RDB storage, with
  heartbeats so that a trial whose worker died is failed and retried (``launch.heartbeat_*``).
- ``grpc://HOST:PORT``: Optuna's gRPC storage proxy (``python -m nnsearch command=storage_server``
  serves one in front of an RDB), for many workers that should not each hold database connections.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nnsearch.config.credentials import redact
from nnsearch.errors import NNSearchError

DEFAULT_JOURNAL = "optuna.journal"
_URL = re.compile(r"^[a-z][a-z0-9+]*://", re.IGNORECASE)


def is_journal(url: str | None) -> bool:
    return not url or not _URL.match(str(url))


def open_storage(url: str | None, *, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 2) -> Any:
    """An Optuna storage for ``url`` (see the module docstring)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if is_journal(url):
        path = Path(url or DEFAULT_JOURNAL).expanduser().absolute()  # a later chdir must not move the study
        if not path.parent.exists():
            raise NNSearchError(f"study.storage: folder {path.parent} does not exist.")
        return JournalStorage(JournalFileBackend(str(path)))
    url = str(url)
    if url.startswith("grpc://"):
        host, _, port = url[len("grpc://") :].rstrip("/").partition(":")
        if not port.isdigit():
            raise NNSearchError(f"study.storage={url}: a gRPC storage URL is grpc://HOST:PORT.")
        try:
            from optuna.storages import GrpcStorageProxy

            return GrpcStorageProxy(host=host, port=int(port))
        except ImportError as err:
            raise NNSearchError(f"study.storage={url} needs grpcio: {err}") from None
    try:
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=heartbeat_interval or None,
            grace_period=grace_period if heartbeat_interval else None,
            heartbeat_stale_trial_callback=callback,
        )
    except Exception as err:  # SQLAlchemy raises many kinds: bad driver, refused connection, ...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NNSearchError(f"Cannot open study storage {redact(url)}: {first}") from None


def storage_from_config(cfg: DictConfig) -> Any:
    launch = cfg.get("launch") or {}
    return open_storage(
        cfg.study.storage,
        heartbeat_interval=launch.get("heartbeat_interval"),
        grace_period=launch.get("grace_period"),
        max_retry=launch.get("max_retry", 2),
    )
