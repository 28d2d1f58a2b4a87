"""Passwords of the configured URLs, kept out of every file nnsearch writes and every line it prints.

``study.storage`` and ``tracking.uri`` may carry a password (``postgresql://user:PASSWORD@host/db``,
best written ``postgresql://user:${oc.env:PGPASSWORD}@host/db``). Where it would otherwise land:

- configs nnsearch writes (``best_config.yaml``, ``pareto/*.yaml``, each trial's ``config.yaml``
  artifact, the config stored on the Optuna study, worker configs) and MLflow params and tags:
  masked with :func:`scrub` (``postgresql://user:***@host/db``);
- printed lines and log records: masked by :func:`guard_output` (stdout, stderr, log handlers);
- Hydra's ``.hydra/`` files (the override as typed, when the password is literal): masked at the
  start of the job by :func:`protect_job`, which also warns once that the shell history keeps it;
- worker processes: the real URLs travel in their environment (``NNSEARCH_STUDY_STORAGE``,
  ``NNSEARCH_TRACKING_URI``), never in a file; local workers get it from ``Popen``, submitit jobs
  inherit the environment they were submitted from (sbatch exports it unless the cluster sets
  ``SBATCH_EXPORT``), Ray workers get them in the call that starts them (not in Ray's runtime
  environment, which Ray's dashboard shows). :func:`from_environment` puts them back into the worker's config.

Passwords are found with SQLAlchemy's URL parser, so drivers (``postgresql+psycopg://``) and
URL-encoded characters (``%2F``, ``%40``) are understood; any ``scheme://user:password@`` in a
text is masked too, even for a URL nnsearch was not told about.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("nnsearch")

MASK = "***"
# the configured URLs that may carry a password, and the variable that hands each to a worker
URL_KEYS = {"study.storage": "NNSEARCH_STUDY_STORAGE", "tracking.uri": "NNSEARCH_TRACKING_URI"}
# a shorter password is masked only inside URLs: masking every "ab" of a log would garble it
MIN_BARE = 4
# scheme://user:PASSWORD@ -- the password runs to the last "@" before a blank, so one holding
# "/", ":" or an unencoded "@" is masked whole; an interpolation (${oc.env:PGPASSWORD}) is no secret
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/@\s]*):(?!\$\{)\S*@", re.IGNORECASE)
_known: set[str] = set()


def password(url: Any) -> str | None:
    """The (decoded) password of ``url``, or None for a URL without one or a path."""
    if not url or "://" not in str(url) or "@" not in str(url):  # no user part, no password (and no SQLAlchemy import at start-up)
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).password or None
    except (ArgumentError, ValueError):
        return None


def remember(*urls: Any) -> None:
    """Mask the passwords of ``urls`` from now on, in every form a text may hold them."""
    for url in urls:
        secret = password(url)
        if secret:
            _known.update({secret, quote(secret, safe=""), quote_plus(secret), _as_written(str(url))} - {""})


def _as_written(url: str) -> str:
    """The password as typed in ``url`` (URL-encoded or not); "" when there is none."""
    rest = url.split("://", 1)[1]
    if "@" not in rest:
        return ""
    user, colon, secret = rest.split("@", 1)[0].partition(":")  # SQLAlchemy's reading: up to the first "@"
    return secret if colon and "/" not in user else ""


def watch(cfg: DictConfig) -> dict[str, str]:
    """Remember the passwords of ``study.storage`` and ``tracking.uri``; returns those URLs that have one."""
    found = {}
    for key in URL_KEYS:
        try:
            url = OmegaConf.select(cfg, key)
        except Exception:  # noqa: BLE001 - e.g. an unset ${oc.env:...}: the run itself reports it
            continue
        if password(url):
            found[key] = str(url)
            remember(url)
    return found


def scrub(text: Any) -> str:
    """``text`` with every URL password and every remembered password replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", str(text))
    for secret in sorted(_known, key=len, reverse=True):
        if len(secret) >= MIN_BARE:
            text = text.replace(secret, MASK)
    return text


def redact(url: Any) -> str:
    """One URL with its password masked, for messages, MLflow params and exported configs.

    A URL SQLAlchemy reads is rendered by it with the password hidden (``user:***@``; its query
    comes back sorted and URL-encoded); a text without a password (a journal file's path, a URL
    with none) is returned as it is; what SQLAlchemy rejects or misreads (a port that is not a
    number, an unencoded ``@`` in the password) is masked by :func:`scrub`, from ``user:`` to the
    last ``@``. The password is remembered, so it is masked wherever else it shows up.
    """
    from sqlalchemy.engine import make_url

    if not url:
        return str(url)
    remember(url)
    if password(url):
        url = make_url(str(url)).render_as_string(hide_password=True)
    return scrub(url)


def redacted_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML with every password masked."""
    watch(cfg)
    return scrub(OmegaConf.to_yaml(cfg, resolve=True))


def worker_environment(cfg: DictConfig) -> dict[str, str]:
    """``{NNSEARCH_STUDY_STORAGE: url, ...}``: the URLs a worker needs but its config file masks."""
    return {URL_KEYS[key]: url for key, url in watch(cfg).items()}


@contextlib.contextmanager
def exported(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in this process's environment meanwhile (for jobs that inherit it, as submitit's do)."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def from_environment(cfg: DictConfig, *, source: str = "the worker config") -> None:
    """Put back the URLs a worker config holds masked, from the variables the launcher set.

    A variable is used only where it is the masked URL's own (a stale one, from another study,
    is ignored); a masked URL with no variable is an error.
    """
    from nnsearch.errors import NNSearchError

    for key, name in URL_KEYS.items():
        masked = OmegaConf.select(cfg, key)
        if masked is None or MASK not in str(masked):
            continue
        url = os.environ.get(name)
        if url:
            remember(url)
        if not url or scrub(url) != str(masked):
            raise NNSearchError(f"{key}={masked} in {source} has its password masked; the launcher passes the URL in ${name}, which is not set for it.")
        OmegaConf.update(cfg, key, url, merge=False)


class _Scrub(logging.Filter):
    """Masks passwords in a log record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class _ScrubbedStream:
    """A text stream that masks passwords in what is written to it; all else is the stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_FILTER = _Scrub()


def guard_output() -> None:
    """Mask passwords in this process's printed lines and log records (the handlers present now)."""
    for logger in (logging.getLogger("nnsearch"), logging.getLogger()):
        targets = [logger, *logger.handlers]
        for target in targets:
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _ScrubbedStream):
            setattr(sys, name, _ScrubbedStream(stream))


def protect_job(cfg: DictConfig) -> None:
    """At the start of the Hydra job: mask the configured passwords everywhere from now on, and in
    the ``.hydra/`` files Hydra has already written; warn once about a literal password."""
    found = watch(cfg)
    if not found:
        return
    guard_output()
    _scrub_hydra_files()
    literal = [key for key in found if _typed_literally(cfg, key)]
    if literal:
        example = redact(found[literal[0]]).replace(MASK, "${oc.env:PGPASSWORD}", 1)
        log.warning(
            "%s %s a literal password (nnsearch masks it in what it writes, but your shell history and process list keep it): "
            "write it as '%s=%s' with PGPASSWORD exported.",
            " and ".join(literal), "hold" if len(literal) > 1 else "holds", literal[0], example,
        )


def _typed_literally(cfg: DictConfig, key: str) -> bool:
    """Whether the password is in the config as text rather than an interpolation (``${oc.env:...}``)."""
    section, _, name = key.rpartition(".")
    raw = OmegaConf.to_container(cfg[section], resolve=False).get(name)
    typed = _as_written(str(OmegaConf.select(cfg, key)))
    return bool(typed) and typed in str(raw)


def _scrub_hydra_files() -> None:
    """Mask passwords in Hydra's ``config.yaml``, ``overrides.yaml`` and ``hydra.yaml`` of this run."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not a Hydra job
        return
    if not hydra_cfg.output_subdir:
        return
    folder = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
    for path in folder.glob("*.yaml"):
        text = path.read_text()
        clean = scrub(text)
        if clean != text:
            path.write_text(clean)
