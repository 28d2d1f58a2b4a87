"""Creating, resuming and running the Optuna study; no model code lives here."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from nnsearch.errors import NNSearchError, TrialFailed

log = logging.getLogger("nnsearch")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
WORKER_ATTR = "worker"  # "host:pid" of the process that runs a trial


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_trials(study: optuna.Study, *, max_retry: int = 2, dead_workers: set[str] | None = None) -> list[int]:
    """Fail the RUNNING trials whose worker process on this host is gone, and queue each again.

    A worker killed mid-trial cannot record its trial; without this the trial stays RUNNING in
    a journal file forever (RDB storages detect it through heartbeats instead). The retry reuses
    the trial's parameters, at most ``max_retry`` times per original trial.
    """
    host = socket.gethostname()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR, "")
        owner_host, _, pid = owner.rpartition(":")
        dead = owner in (dead_workers or set()) or (owner_host == host and pid.isdigit() and not _alive(int(pid)))
        if not dead:
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.set_user_attr(f"trial_{trial.number}_fail_reason", f"worker {owner} died")
        retry(study, study.get_trials(deepcopy=False)[trial.number])
        reaped.append(trial.number)
    if reaped:
        log.warning("trial(s) %s failed with their dead worker; re-queued (max %d retries)", reaped, max_retry)
    return reaped


def open_study(name: str, storage: Any, *, directions: list[str], sampler: Any, pruner: Any) -> optuna.Study:
    """Create the study, or load it to resume; a resumed study must keep its directions."""
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=directions, load_if_exists=True
    )
    existing = [d.name.lower() for d in study.directions]
    if existing != list(directions):
        raise NNSearchError(
            f"Study '{name}' already exists in this storage with direction(s) {existing}, not {list(directions)}; "
            "use another study.name or study.storage."
        )
    return study


# samplers whose seed must be the same in every process: it fixes an order (grid) or a
# scrambled sequence (QMC) that all processes walk through together
SHARED_SEED_SAMPLERS = ("GridSampler", "BruteForceSampler", "QMCSampler")


def process_seed(seed: int, *, trials_before: int, worker_index: int = 0, host: str | None = None) -> int:
    """The sampler seed of this process: ``seed`` itself for the first process of a fresh study.

    An Optuna sampler restarts its random stream at its seed in every process, so a resumed
    study, a second worker or a second machine would sample the first trials' parameters again.
    Each of those gets its own seed, derived from ``seed`` and what sets it apart.
    """
    if trials_before == 0 and worker_index == 0 and not host:
        return seed
    key = f"{seed}:{trials_before}:{worker_index}:{host or ''}".encode()
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


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The single best (feasible) trial; None when none completed or the study has several objectives."""
    if len(study.directions) > 1:
        return None
    try:
        return study.best_trial
    except ValueError:
        return None


TrialTicket = tuple[str, int, Any]  # (study name, trial number, pruner): what a helper process needs to reopen a trial


def trial_ticket(trial: optuna.Trial | None) -> TrialTicket | None:
    """What a fold process or a DDP rank needs to report to ``trial`` through its own storage connection."""
    return None if trial is None else (trial.study.study_name, trial.number, trial.study.pruner)


def reopen_trial(storage: Any, ticket: TrialTicket | None) -> optuna.Trial | None:
    """The running trial of ``ticket``, read afresh from ``storage`` (with every step reported so far).

    The pruner then sees the trial's earlier reports, as it would in the study's own process.
    """
    if ticket is None:
        return None
    study_name, number, pruner = ticket
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler())
    return optuna.trial.Trial(study, trial_id)
