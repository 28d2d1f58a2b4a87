"""The folds of a trial trained at once, in processes of their own, when cores are free.

Small models use a second core poorly inside one process (see ``../shared/MEASUREMENTS.md``: two
1-thread processes did about 2x the work of one 2-thread process), so ``cv.parallel`` trains up to
that many folds of a trial side by side, each in a spawned process with ``runtime.threads`` torch
threads. ``auto`` picks ``min(folds, cores / runtime.threads)`` for a study running alone on CPU, and 1 (the folds in
turn, in the study's own process) for parallel workers, which already fill the cores, for DDP or
GPU training, and for the Wilcoxon pruner, which needs the folds in order.

The processes start once per study and keep the data set and the prepared folds; a trial sends
only its config, seed and Optuna trial. Each fold gets the same seed as in sequential training
(``seed * 1000 + fold``), so results match the sequential ones up to the last digits that thread
counts may change.

Pruning: each fold reports its epochs to the study storage (step ``fold * max_epochs + epoch``, as
always) and asks the pruner itself. When one fold is pruned or fails, the trial's other folds stop
at their next epoch. Ctrl-C reaches only the study's process (the fold processes ignore it), which
stops the folds the same way.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError, TrialFailed
from nnsearch.interrupt import sigint_ignored

log = logging.getLogger("nnsearch")


def parallel_folds(cfg: DictConfig, n_folds: int, *, per_fold_pruning: bool) -> int:
    """How many folds to train at once: ``cv.parallel`` resolved (``auto`` or a count)."""
    import torch

    from nnsearch import ddp

    setting = OmegaConf.select(cfg, "cv.parallel", default=1)
    if setting in (None, 1, "1"):
        return 1
    if setting != "auto":
        try:
            count = int(setting)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise NNSearchError(f"cv.parallel must be 'auto' or a positive integer, got {setting!r}.")
        return max(1, min(count, n_folds))
    accelerator = str(cfg.trainer.accelerator)
    on_gpu = accelerator in ("gpu", "cuda", "mps") or (accelerator == "auto" and torch.cuda.is_available())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = int(OmegaConf.select(cfg, "runtime.threads", default=None) or 1)
    if on_gpu or per_fold_pruning or ddp.world_size(cfg) > 1:
        return 1
    return max(1, min(n_folds, cores // threads))


class FoldPool:
    """``processes`` fold trainers for one study; ``fit_folds`` trains a trial's folds across them."""

    def __init__(self, data: Any, splits: list, *, processes: int, threads: int) -> None:
        import multiprocessing

        import torch.multiprocessing  # noqa: F401 - tensors cross the process boundary through shared memory

        self.processes, self._n_splits = processes, len(splits)
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        with sigint_ignored():
            self._executor = ProcessPoolExecutor(
                max_workers=processes, mp_context=context, initializer=_init_process, initargs=(data, splits, threads, self._stop)
            )
            # start every process now, while the study is still being set up, not at the first trial
            for future in [self._executor.submit(_ready) for _ in range(processes)]:
                future.add_done_callback(lambda f: None)

    @classmethod
    def from_config(cls, cfg: DictConfig, data: Any, splits: list, *, per_fold_pruning: bool) -> FoldPool | None:
        """A pool when ``cv.parallel`` resolves above 1, else None (folds in turn)."""
        processes = parallel_folds(cfg, len(splits), per_fold_pruning=per_fold_pruning)
        if processes < 2:
            return None
        threads = int(OmegaConf.select(cfg, "runtime.threads", default=None) or 1)
        log.info("cv.parallel: %d folds at a time, %d torch thread(s) each", processes, threads)
        return cls(data, splits, processes=processes, threads=threads)

    def fit_folds(self, cfg: DictConfig, *, seed: int, epoch_metrics: list[str], trial: Any, monitor: str | None, results: list) -> list:
        """Like ``training.fit_folds``: ``results`` gets every fold's result (in fold order) as they finish."""
        import optuna

        from nnsearch.training import FoldResult

        n = self._n_splits
        ticket = (trial.study.study_name, trial.number, trial.study.pruner) if trial is not None else None
        results.extend(FoldResult(k) for k in range(n))
        self._stop.clear()
        with sigint_ignored():  # a process replacing a dead one must ignore Ctrl-C too
            pending: dict[Future, int] = {
                self._executor.submit(_fit_one, cfg, k, seed * 1000 + k, epoch_metrics, ticket, monitor): k for k in range(n)
            }
        stop: BaseException | None = None
        stopped = False  # a fold that stopped because another one was pruned or failed (its result arrives too)
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    k = pending.pop(future)
                    if future.cancelled():
                        continue
                    try:
                        kind, result, message = future.result()
                    except BrokenProcessPool:
                        kind, result, message = "failed", results[k], "a fold process died (out of memory or killed)"
                    results[k] = result
                    stopped = stopped or kind == "stopped"
                    if kind in ("pruned", "failed") and stop is None:
                        self._stop.set()  # the running folds of this trial stop at their next epoch
                        for queued in pending:
                            queued.cancel()  # folds not started yet never start
                        stop = optuna.TrialPruned(message) if kind == "pruned" else TrialFailed(message)
        except BaseException:
            self._stop.set()
            for future in pending:
                future.cancel()
            wait(pending, timeout=30)
            raise
        if stop is not None:
            raise stop
        if stopped:
            raise TrialFailed("a fold was stopped without a reason (interrupted?)")
        return results

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


# -- in the fold processes ----------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_process(data: Any, splits: list, threads: int, stop: Any) -> None:
    import torch

    from nnsearch.cv import FoldCache
    from nnsearch.training import quiet_lightning

    torch.set_num_threads(threads)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    quiet_lightning()
    _STATE.update(folds=FoldCache(data, splits), data=data, stop=stop)


def _ready() -> bool:
    return True


class _Stopped(Exception):
    """Another fold of the trial was pruned or failed, or the study was interrupted."""


def _trial(cfg: DictConfig, ticket: tuple[str, int, Any] | None) -> Any:
    """The running Optuna trial, reopened on this process's own connection to the study storage."""
    import optuna

    from nnsearch.storage import open_storage

    if ticket is None:
        return None
    study_name, number, pruner = ticket
    if "storage" not in _STATE:  # one connection per process, reused by every later trial
        _STATE["storage"] = open_storage(cfg.study.storage)
    storage = _STATE["storage"]
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler())
    return optuna.trial.Trial(study, trial_id)


def _fit_one(cfg: DictConfig, k: int, seed: int, epoch_metrics: list[str], ticket: tuple[str, int, Any] | None, monitor: str | None) -> tuple[str, Any, str]:
    import optuna

    from nnsearch.training import FoldResult, fit_fold

    stop = _STATE["stop"]
    trial = _trial(cfg, ticket)

    def check_stop(fold: int, epoch: int, row: Any) -> None:
        if stop.is_set():
            raise _Stopped()

    result = FoldResult(k)
    if stop.is_set():
        return "stopped", result, "stopped with the trial"
    try:
        fit_fold(cfg, _STATE["data"], _STATE["folds"].get(k, cfg.data.get("scaler")), seed=seed, epoch_metrics=epoch_metrics,
                 trial=trial, monitor=monitor, result=result, on_epoch=check_stop)
    except _Stopped:
        return "stopped", result, "stopped with the trial"
    except optuna.TrialPruned as pruned:
        outcome = ("pruned", result, str(pruned))
    except (TrialFailed, NNSearchError) as err:
        outcome = ("failed", result, str(err))
    except Exception as err:  # noqa: BLE001 - the trial fails with the fold's reason, the study goes on
        outcome = ("failed", result, f"{type(err).__name__}: {err}")
    else:
        return "done", result, ""
    stop.set()  # at once, before this process takes the trial's next queued fold
    return outcome
