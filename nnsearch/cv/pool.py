"""The folds of a trial trained at once, in processes of their own, when cores are free.

Small models use a second core poorly inside one process (see ``../shared/MEASUREMENTS.md``: two
1-thread processes did about 2x the work of one 2-thread process), so ``cv.parallel`` trains up to
that many folds of a trial side by side, each in a process of its own with ``runtime.threads`` torch
threads. ``auto`` picks, for a study running alone on CPU, as many 1-thread processes as pack the
folds evenly on the cores (:func:`evenly_packed`: 3 for 5 folds on 2 cores), or ``min(folds,
cores / runtime.threads)`` with more threads each; and 1 (the folds in turn, in the study's own
process) for parallel workers, which already fill the cores, for DDP or GPU training, and for the
Wilcoxon pruner, which needs the folds in order.

The processes start once per study and keep the data set and the prepared folds; a trial sends
only its config, seed and Optuna trial. They are forked from a server that imported torch,
Lightning and scikit-learn once, early, beside this process's own imports
(:mod:`nnsearch.runtime.fork_server`). Each fold gets the same seed as in sequential training
(:func:`nnsearch.cv.fold_seed`), so results match the sequential ones up to the last digits that
thread counts may change.

Pruning: each fold reports its epochs to the study storage (step ``fold * max_epochs + epoch``,
:mod:`nnsearch.fit.pruning`) and asks the pruner through ``InTurnPruner``, which judges the steps in the order and with
the reports of folds in turn, so a trial is pruned at the step where sequential training prunes it.
When one fold is pruned or fails, the trial's other folds stop at their next epoch. Ctrl-C
reaches only the study's process (the fold processes start with SIGINT blocked), which stops the
folds the same way.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import tempfile
import weakref
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from nnsearch.cv.settings import fold_slots
from nnsearch.cv.splits import fold_seed
from nnsearch.errors import NNSearchError, TrialFailed
from nnsearch.fit.pruning import FoldPruned, reopen_trial, trial_id_of, trial_ticket
from nnsearch.runtime import fork_server
from nnsearch.runtime.interrupt import die_with_parent, stop_signals_blocked

log = logging.getLogger("nnsearch")


def parallel_folds(cfg: DictConfig, n_folds: int, *, per_fold_pruning: bool) -> int:
    """How many folds to train at once: ``cv.parallel`` resolved (``auto`` or a count)."""
    from nnsearch.fit.settings import cuda_device_count, world_size

    setting = OmegaConf.select(cfg, "cv.parallel", default=1)
    if setting in (None, 1, "1"):
        return 1
    count = 0
    if setting != "auto":
        try:
            count = int(setting)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise NNSearchError(f"cv.parallel must be 'auto' or a positive integer, got {setting!r}.")
    if per_fold_pruning or world_size(cfg) > 1:
        # the Wilcoxon pruner judges each finished fold before the next starts; a DDP fit spawns its own processes
        log.info("cv.parallel=%s: folds run in turn (%s)", setting, "pruner=wilcoxon" if per_fold_pruning else "trainer.devices > 1")
        return 1
    if count:
        return max(1, min(count, n_folds))
    accelerator = str(cfg.trainer.accelerator)
    on_gpu = accelerator in ("gpu", "cuda", "mps") or (accelerator == "auto" and cuda_device_count() > 0)
    if on_gpu:
        return 1
    slots, threads = fold_slots(cfg)
    return evenly_packed(n_folds, slots) if threads == 1 else min(n_folds, slots)


def evenly_packed(n_folds: int, cores: int) -> int:
    """The fewest 1-thread processes that train ``n_folds`` folds in the least time on ``cores``.

    One process per core leaves cores idle in the last round when the folds do not divide
    evenly: 5 folds on 2 cores take 3 rounds of a fold's time, with one core idle in the third.
    3 processes share the 2 cores for the first 3 folds (1.5 rounds), then take the last 2: 2.5,
    the least possible. The operating system shares a core between 1-thread processes at little
    cost (multi-threaded ones spin: with ``runtime.threads`` > 1 it stays one process per slot).
    Measured, digits_mlp, 6 trials, 5 folds, on 2 cores: 28-29 s start to exit against 31.5-34 s.
    """

    def makespan(processes: int) -> float:
        full, rest = divmod(n_folds, processes)
        return sum(max(1.0, k / cores) for k in [processes] * full + ([rest] if rest else []))

    return min(range(min(cores, n_folds), n_folds + 1), key=lambda n: (makespan(n), n))


class FoldPool:
    """``processes`` fold trainers for one study; ``fit_folds`` trains a trial's folds across them."""

    def __init__(self, data: Any, splits: list, *, processes: int, threads: int) -> None:
        self.processes, self._n_splits, self._threads = processes, len(splits), threads
        self._context = fork_server.context()
        self._stop = self._context.Event()
        self._handoff = _Handoff((data, splits))
        self._initargs = (self._handoff.path, threads, self._stop, dict(os.environ))
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        with stop_signals_blocked():  # the fold processes never see Ctrl-C: this process stops them
            executor = ProcessPoolExecutor(max_workers=self.processes, mp_context=self._context, initializer=_init_process, initargs=self._initargs)
            # start every process now, while the study is still being set up, not at the first trial
            for _ in range(self.processes):
                executor.submit(_ready)
        return executor

    @classmethod
    def from_config(cls, cfg: DictConfig, data: Any, splits: list, *, per_fold_pruning: bool) -> FoldPool | None:
        """A pool when ``cv.parallel`` resolves above 1, else None (folds in turn)."""
        processes = parallel_folds(cfg, len(splits), per_fold_pruning=per_fold_pruning)
        if processes < 2:
            return None
        threads = int(OmegaConf.select(cfg, "runtime.threads", default=None) or 1)
        return cls(data, splits, processes=processes, threads=threads)

    def announce(self) -> None:
        """Say how the folds will train, once the study is sure to run (a refused start prints only its reason)."""
        log.info("cv.parallel: %d folds at a time, %d torch thread(s) each", self.processes, self._threads)

    def fit_folds(self, cfg: DictConfig, *, seed: int, epoch_metrics: list[str], trial: Any, monitor: str | None, results: list,
                  checkpoints: Any = None) -> list:
        """Like :meth:`nnsearch.cv.in_turn.InTurn.fit_folds`: ``results`` gets every fold's result (in fold order) as they finish."""
        from nnsearch.fit.result import FoldResult

        n = self._n_splits
        ticket = trial_ticket(trial)
        results.extend(FoldResult(k) for k in range(n))
        self._stop.clear()
        try:
            with stop_signals_blocked():  # a process replacing a dead one must not see Ctrl-C either
                pending: dict[Future, int] = {
                    self._executor.submit(_fit_one, cfg, k, fold_seed(seed, k), epoch_metrics, ticket, monitor,
                                          checkpoints.fold(k) if checkpoints is not None else None): k
                    for k in range(n)
                }
        except BrokenProcessPool:
            self._restart()
            raise TrialFailed("the fold processes had died; they were started again") from None
        stop: BaseException | None = None
        stopped = False  # a fold that stopped because another one was pruned or failed (its result arrives too)
        broken = False
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
                        broken = True
                        kind, result, message = "failed", results[k], "a fold process died (out of memory or killed)"
                    results[k] = result
                    stopped = stopped or kind == "stopped"
                    if kind in ("pruned", "failed") and stop is None:
                        self._stop.set()  # the running folds of this trial stop at their next epoch
                        for queued in pending:
                            queued.cancel()  # folds not started yet never start
                        stop = message if kind == "pruned" else TrialFailed(message)  # a pruned fold sends its FoldPruned
        except BaseException:
            # Ctrl-C: the running folds stop at their next epoch; wait for them so none runs into the next trial
            self._stop.set()
            for future in pending:
                future.cancel()
            wait(pending)
            raise
        finally:
            if broken:
                self._restart()
        if stop is not None:
            raise stop
        if stopped:
            raise TrialFailed("a fold was stopped without a reason (interrupted?)")
        return results

    def _restart(self) -> None:
        """A dead fold process breaks the whole executor: replace it for the next trials."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.warning("a fold process died; starting the fold processes again")
        self._executor = self._start()

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in one of the fold processes, between trials or after the last one.

        After the trials they sit idle while this process writes the report and retrains the
        final model: the study plots are drawn there meanwhile (:func:`nnsearch.study.report.finish`).
        """
        with stop_signals_blocked():  # a process replacing a dead one must not see Ctrl-C either
            return self._executor.submit(fn, *args, **kwargs)

    def submit_on_data(self, fn: Any, *args: Any, **kwargs: Any) -> Future:
        """``fn(data, *args, **kwargs)`` in one of the fold processes, with the study's data set they hold (sent once, at start)."""
        return self.submit(_on_data, fn, *args, **kwargs)

    def smoke_test(self, cfg: DictConfig, space: Any) -> Future:
        """The study's smoke test (:func:`nnsearch.study.smoke.smoke_test`) on fold 0, in one of the fold processes:
        they have Lightning imported already, and the study's own process then never imports it."""
        return self.submit(_smoke_test, cfg, space)

    def close(self) -> None:
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._handoff.remove()


class _Handoff:
    """The data set and splits, pickled once into a private file that each fold process reads at start.

    Handed over as ``initargs`` instead, they travel through the spawn pipe: its writes block until
    the child has booted (imported torch and Lightning) far enough to read them, so the processes
    started one after the other while this process waited (~5 s each on 2 cores, measured), rather
    than booting side by side while the study and the MLflow store open.
    """

    def __init__(self, payload: Any) -> None:
        fd, self.path = tempfile.mkstemp(prefix="nnsearch-folds-", suffix=".pickle")
        with os.fdopen(fd, "wb") as file:
            pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)
        weakref.finalize(self, _remove, self.path)  # also at exit, if close() never ran

    def remove(self) -> None:
        _remove(self.path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


FOLD_DONE = "nnsearch:fold_done:{}"  # trial system attribute: this fold has reported all its epochs


class InTurnPruner(optuna.pruners.BasePruner):
    """The study's pruner, asked about every step in the order of folds in turn, with later steps hidden.

    With folds side by side the second fold reports step ``max_epochs`` after one epoch. An Optuna
    pruner takes a trial's highest step as its progress: it would see the warm-up over at once and
    judge one-epoch models (in a first run of digits_cnn, 14 of 15 trials were pruned in 0.1 s).
    This view judges step ``s`` only once every earlier step is in (a fold that stopped early counts
    as in once it is done, see ``FOLD_DONE``), showing the pruner the reports up to ``s`` and
    nothing after: what it sees with the folds in turn, step by step. Whichever fold's report
    completes a stretch of steps judges it, so each decision is the one sequential training makes.
    """

    def __init__(self, pruner: optuna.pruners.BasePruner, steps_per_fold: int) -> None:
        self.pruner, self.steps_per_fold = pruner, steps_per_fold
        self.judged = -1  # steps up to this one were judged (by this fold; another may have too)
        self.pruned_step: int | None = None

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        while (step := self._next_step(trial)) is not None:
            in_turn = copy.copy(trial)
            in_turn.intermediate_values = {s: v for s, v in trial.intermediate_values.items() if s <= step}
            self.judged = step
            if self.pruner.prune(study, in_turn):
                self.pruned_step = step
                return True
            trial = _running_trial(study, trial.number)  # a pruner may have written to it (rungs)
        return False

    def _next_step(self, trial: optuna.trial.FrozenTrial) -> int | None:
        """The first step after ``judged`` that folds in turn would report next, if it is in yet."""
        step = self.judged + 1
        while True:
            if step in trial.intermediate_values:
                return step
            fold = step // self.steps_per_fold
            if FOLD_DONE.format(fold) not in trial.system_attrs:
                return None
            step = (fold + 1) * self.steps_per_fold  # that fold stopped early: its next steps never come

    def pruned(self) -> FoldPruned:
        """The trial's pruned exception at the step this pruner judged."""
        assert self.pruned_step is not None
        return FoldPruned.at(self.pruned_step, self.steps_per_fold)


def _running_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` as the storage holds it now (a running trial: the storage reads only those)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return next(t for t in running if t.number == number)


# -- in the fold processes ----------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_process(handoff: str, threads: int, stop: Any, environ: dict[str, str]) -> None:
    import torch

    if os.environ != environ:  # forked from a server started earlier: the study's environment as it is now
        os.environ.clear()
        os.environ.update(environ)

    from nnsearch.cv.splits import FoldCache
    from nnsearch.fit.trainer import quiet_lightning
    from nnsearch.runtime import fast_exit, startup_gc

    startup_gc.release()  # what the fork server imported is frozen; this process collects its own objects as usual
    fast_exit.fold_process()  # the pool closes in milliseconds (see nnsearch.runtime.fast_exit)
    die_with_parent()  # a study killed with SIGKILL takes its fold processes with it
    torch.set_num_threads(threads)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    quiet_lightning()
    with open(handoff, "rb") as file:
        data, splits = pickle.load(file)
    _STATE.update(folds=FoldCache(data, splits), data=data, stop=stop)


def _ready() -> bool:
    return True


def _on_data(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(_STATE["data"], *args, **kwargs)


def _smoke_test(cfg: DictConfig, space: Any) -> None:
    """On a fold 0 of its own, not the cached one the trials train on: whichever process runs the smoke
    test, every fold process holds the same folds when the trials start."""
    from nnsearch.cv.splits import FoldCache
    from nnsearch.study.smoke import smoke_test

    cached = _STATE["folds"]
    smoke_test(cfg, _STATE["data"], FoldCache(cached.data, cached.splits).get(0), space)


class _Stopped(Exception):
    """Another fold of the trial was pruned or failed, or the study was interrupted."""


def _fit_one(cfg: DictConfig, k: int, seed: int, epoch_metrics: list[str], ticket: tuple[str, int, Any] | None, monitor: str | None,
             checkpoint: Any = None) -> tuple[str, Any, Any]:
    from nnsearch.fit.fold import FoldResult, fit_fold

    stop = _STATE["stop"]

    def check_stop(fold: int, epoch: int, row: Any) -> None:
        if stop.is_set():
            raise _Stopped()

    result = FoldResult(k)
    if stop.is_set():
        return "stopped", result, "stopped with the trial"
    try:
        trial, in_turn = None, None
        if ticket is not None:
            if "storage" not in _STATE:  # one connection per process, reused by every later trial
                from nnsearch.storage import open_storage

                _STATE["storage"] = open_storage(cfg.study.storage)
            name, number, pruner = ticket
            in_turn = InTurnPruner(pruner, int(cfg.trainer.max_epochs))
            trial = reopen_trial(_STATE["storage"], (name, number, in_turn))
        fit_fold(cfg, _STATE["data"], _STATE["folds"].get(k, cfg.data.get("scaler")), seed=seed, epoch_metrics=epoch_metrics,
                 trial=trial, monitor=monitor, result=result, on_epoch=check_stop, checkpoint=checkpoint)
        if trial is not None and monitor is not None:  # done: its missing steps (early stop) no longer hold back later ones
            storage = _STATE["storage"]
            storage.set_trial_system_attr(trial_id_of(storage, name, number), FOLD_DONE.format(k), result.epochs)
            if trial.should_prune():
                raise optuna.TrialPruned()
    except _Stopped:
        return "stopped", result, "stopped with the trial"
    except optuna.TrialPruned as pruned:
        # the step judged, which need not be this fold's last report
        outcome = ("pruned", result, in_turn.pruned() if in_turn and in_turn.pruned_step is not None else pruned)
    except (TrialFailed, NNSearchError) as err:
        outcome = ("failed", result, str(err))
    except Exception as err:  # noqa: BLE001 - the trial fails with the fold's reason, the study goes on
        outcome = ("failed", result, f"{type(err).__name__}: {err}")
    else:
        return "done", result, ""
    stop.set()  # at once, before this process takes the trial's next queued fold
    return outcome
