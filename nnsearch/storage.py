"""Where the Optuna study lives: a journal file by default, or any storage URL Optuna accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nnsearch.errors import NNSearchError

DEFAULT_JOURNAL = "optuna.journal"
_URL = re.compile(r"^[a-z][a-z0-9+]*://", re.IGNORECASE)


def redact(url: str | None) -> str:
    """The URL with any password replaced, for logs, MLflow params and exported configs."""
    if not url:
        return str(url)
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(url: str | None) -> Any:
    """An Optuna storage for ``url``.

    - ``None``: the journal file ``./optuna.journal`` (safe for several local processes)
    - a path without a scheme: a journal file at that path
    - ``sqlite:///...``, ``postgresql://...``, ``mysql+pymysql://...``: Optuna's RDB storage
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not url or not _URL.match(str(url)):
        path = Path(url or DEFAULT_JOURNAL).expanduser()
        if path.parent and not path.parent.exists():
            raise NNSearchError(f"study.storage: folder {path.parent} does not exist.")
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(str(url), heartbeat_interval=None)
    except Exception as err:  # SQLAlchemy raises many kinds: bad driver, refused connection, ...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NNSearchError(f"Cannot open study storage {redact(str(url))}: {first}") from None
