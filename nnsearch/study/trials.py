"""Creating, resuming and running the Optuna study; no model code lives here."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from nnsearch.errors import NNSearchError, TrialFailed

log = logging.getLogger("nnsearch")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
WORKER_ATTR = "worker"  # "host:pid" of the process that runs a trial
WORKER_STARTED_ATTR = "worker_started"  # that process's start time: a reused pid is not the same process


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_started(pid: int | None = None) -> float | None:
    """When process ``pid`` (default: this one) started, or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return -1.0  # exists, but cannot be inspected (another user's): treat it as alive


def mark_owner(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, so that a later run can tell whether it died."""
    trial.set_user_attr(WORKER_ATTR, worker_id())
    trial.set_user_attr(WORKER_STARTED_ATTR, process_started())


def _owner_dead(trial: optuna.trial.FrozenTrial, host: str, dead_workers: set[str]) -> bool:
    """The trial's owner is a process of this host that no longer exists (or whose pid was reused)."""
    owner = trial.user_attrs.get(WORKER_ATTR, "")
    if owner in dead_workers:
        return True
    owner_host, _, pid = owner.rpartition(":")
    if owner_host != host or not pid.isdigit():
        return False  # another machine's trial: RDB heartbeats fail it when it goes silent
    started = process_started(int(pid))
    if started is None:
        return True
    recorded = trial.user_attrs.get(WORKER_STARTED_ATTR)
    return recorded is not None and started >= 0 and abs(started - float(recorded)) > 1.0


def reap_dead_trials(
    study: optuna.Study,
    storage: Any,
    *,
    max_retry: int = 2,
    dead_workers: set[str] | None = None,
    on_dead: Callable[[optuna.trial.FrozenTrial, str], None] | None = None,
) -> list[int]:
    """Fail the RUNNING trials whose process is gone, and queue each again with its parameters.

    A process killed mid-trial (kill -9, out of memory, a dead machine) cannot record its trial;
    without this the trial stays RUNNING forever and every later run counts it as taken. An owner
    on this host is dead when its pid is gone or belongs to a process started at another time
    (recorded with the trial, so a reused pid is not mistaken for it); an owner on another host is
    judged by RDB heartbeats (``optuna.storages.fail_stale_trials``, called here too). Works on
    every storage: a journal file has no heartbeat, but its trials record their owner.

    The retry is a WAITING trial with the same parameters and Optuna's ``failed_trial`` and
    ``retry_history`` system attributes, at most ``max_retry`` times per original trial; unlike
    ``RetryHeartbeatStaleTrialCallback`` it does not copy the dead trial's user attributes (its
    owner and failure reason would then describe the retry). ``on_dead(trial, reason)`` records
    the dead trial elsewhere (its MLflow run).
    """
    host = socket.gethostname()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_dead(trial, host, dead_workers or set()):
            continue
        reason = f"its process {trial.user_attrs.get(WORKER_ATTR, '?')} died (killed or crashed) before recording a result"
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue  # another process failed it first, and retries it
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if on_dead is not None:
            on_dead(trial, reason)
        requeue(study, storage.get_trial(trial_id), max_retry)
        reaped.append(trial.number)
    optuna.storages.fail_stale_trials(study)  # RDB storages: trials whose heartbeat stopped
    if reaped:
        log.warning("trial(s) %s failed with their dead process; re-queued with the same parameters (at most %d retries)", reaped, max_retry)
    return reaped


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int) -> bool:
    """Queue ``trial`` again with its parameters, marked as a retry of the original trial; False past ``max_retry`` retries.

    The retry resumes from the original trial's checkpoints (:mod:`nnsearch.fit.checkpoint`).
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return False
    if any(t.system_attrs.get("retry_history") == history for t in study.get_trials(deepcopy=False)):
        return True  # queued already: two processes (a worker and the launcher) found the same dead trial at once
    original = original_number(trial)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": original, "retry_history": history},
        )
    )
    return True


def original_number(trial: optuna.trial.FrozenTrial) -> int:
    """The number of the trial that ``trial`` retries (Optuna's ``failed_trial``), or its own number."""
    original = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if original is None else int(original)


def open_study(name: str, storage: Any, *, directions: list[str], sampler: Any, pruner: Any) -> tuple[optuna.Study, bool]:
    """Create the study, or load it to resume; returns it and whether this process created it.

    Creating is atomic in every Optuna storage, so of several processes starting a new study at
    once exactly one is its creator (it samples with the configured seed and opens the MLflow
    parent run). A resumed study must keep its directions.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=directions)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    existing = [d.name.lower() for d in study.directions]
    if existing != list(directions):
        raise NNSearchError(
            f"Study '{name}' already exists in this storage with direction(s) {existing}, not {list(directions)}; "
            "use another study.name or study.storage."
        )
    return study, created


# samplers whose seed must be the same in every process: it fixes an order (grid) or a
# scrambled sequence (QMC) that all processes walk through together
SHARED_SEED_SAMPLERS = ("GridSampler", "BruteForceSampler", "QMCSampler")


def process_seed(seed: int, *, created: bool, trials_before: int, worker_index: int = 0, host: str = "", pid: int = 0) -> int:
    """The sampler seed of this process: ``seed`` itself for the process that created the study.

    An Optuna sampler restarts its random stream at its seed in every process, so a resumed
    study, a second worker or a second machine would sample the first trials' parameters again.
    Every process but the creator gets its own seed, derived from ``seed`` and what sets it apart
    from any other process that can join the study at the same time: host and pid (two runs on
    one host started together), worker number and the trials already in the study.
    """
    if created and worker_index == 0:
        return seed
    key = f"{seed}:{trials_before}:{worker_index}:{host}:{pid}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def enqueue(study: optuna.Study, configurations: list[dict[str, Any]]) -> int:
    """Warm start: known configurations run first, in order; one already tried is not queued again."""
    before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    for params in configurations:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before


def n_finished(study: optuna.Study) -> int:
    """Complete and pruned trials: what ``study.n_trials`` counts."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class _FailureGuard:
    """Stops the study after ``limit`` failed trials in a row: the config is broken, not unlucky."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.user_attrs.get("skipped"):
            return
        self.in_a_row = self.in_a_row + 1 if trial.state == TrialState.FAIL else 0
        if self.limit and self.in_a_row >= self.limit:
            self.tripped = True
            study.stop()


def run_trials(
    study: optuna.Study,
    objective: Any,
    *,
    n_trials: int,
    timeout: float | None = None,
    max_failed_trials: int = 10,
    interruption: Any = None,
    reap: Callable[[], Any] | None = None,
) -> str:
    """Run until the study holds ``n_trials`` finished trials; returns why it stopped.

    Failed trials do not count towards ``n_trials``; they are retried with new parameters until
    ``max_failed_trials`` fail in a row. Other processes may work on the same study meanwhile:
    ``MaxTrialsCallback`` stops every one of them at the shared total.
    """
    from optuna.study import MaxTrialsCallback

    guard = _FailureGuard(max_failed_trials)
    deadline = time.monotonic() + timeout if timeout else None
    callbacks = [MaxTrialsCallback(n_trials, states=FINISHED), guard]
    if interruption is not None:
        callbacks.append(interruption.stop_study_if_requested)
    while True:
        if reap is not None:
            reap()  # a trial whose process died holds a place it will never fill
        remaining = n_trials - n_finished(study)
        if remaining <= 0:
            return "done"
        claimed = len(study.get_trials(deepcopy=False, states=CLAIMED))
        if claimed >= n_trials:
            return "done; other workers are finishing the last trials"
        if _grid_exhausted(study):
            return "grid exhausted"
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return "timeout"
        study.optimize(objective, n_trials=n_trials - claimed, timeout=left, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
        if interruption is not None:
            interruption.raise_if_requested()
        if guard.tripped:
            return f"{guard.in_a_row} trials failed in a row"


def _grid_exhausted(study: optuna.Study) -> bool:
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)
