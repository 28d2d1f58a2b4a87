"""One fold on several devices: Lightning DDP in processes that nnsearch starts itself.

``trainer.devices`` above 1 (``trainer.accelerator=cpu trainer.devices=2`` uses gloo; GPUs use
NCCL) makes each fold a DDP fit. Lightning's own DDP launcher starts the extra processes by
re-running the command line, which would start the whole study again in each of them, and its
spawn launcher hands back only the weights. So nnsearch spawns the ranks itself, with the
variables Lightning reads for processes created outside it (``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``); each rank builds the same module and ``Trainer(strategy="ddp")``.

- Data: a ``DistributedSampler`` (seeded with the fold's seed, the same on every rank) deals each
  rank a disjoint share of the training rows, reshuffled every epoch; the shares are equal (padded
  by repeating rows), so every rank runs the same number of steps. Every rank validates on all
  validation rows, so each history row is the full-validation curve and early stopping decides
  the same on every rank.
- Pruning: rank 0 reports each epoch's objective to the Optuna trial (the trial is pickled to the
  rank with its storage: a journal file, a database or the gRPC proxy all take writes from other
  processes), asks the pruner and broadcasts the answer; all ranks stop at the same epoch and the
  parent raises ``TrialPruned``.
- Results: rank 0 sends the history, the final metrics and the validation outputs back through a
  queue. A rank that fails ends the others; its error becomes the trial's failure reason.
- Ctrl-C: ranks ignore SIGINT; the parent stops them and re-raises ``KeyboardInterrupt``.

The ``train/loss`` of a history row is rank 0's shard; the validation metrics cover all rows.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import warnings
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from nnsearch.data.batches import TensorBatches
from nnsearch.errors import TrialFailed
from nnsearch.runtime.interrupt import die_with_parent, stop_signals_blocked
from nnsearch.fit.pruning import trial_ticket
from nnsearch.fit.settings import world_size

log = logging.getLogger("nnsearch")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_fold_ddp(cfg: DictConfig, data: Any, fold: Any, *, seed: int, epoch_metrics: list[str], trial: Any, monitor: str | None, result: Any, keep_predictions: bool,
                 checkpoint: Any = None) -> Any:
    """Train ``fold`` with DDP over ``world_size(cfg)`` processes; fills and returns ``result``.

    ``checkpoint``: every rank saves and resumes through it (rank 0 writes, see :mod:`nnsearch.fit.checkpoint`)."""
    import torch.multiprocessing as mp

    world = world_size(cfg)
    context = mp.get_context("spawn")
    answers = context.SimpleQueue()
    threads = max(1, torch.get_num_threads() // world)
    args = (world, _free_port(), cfg, data, fold, seed, epoch_metrics, trial_ticket(trial), monitor, keep_predictions, threads, answers, checkpoint)
    ranks = [context.Process(target=_rank_main, args=(rank, *args), daemon=True) for rank in range(world)]
    try:
        with stop_signals_blocked():  # inherited through exec: Ctrl-C reaches only this process, which stops the ranks
            for process in ranks:
                process.start()
        answer = _wait_for_answer(answers, ranks)
        if answer["kind"] != "error":
            for process in ranks:
                process.join(timeout=60)
    finally:
        _stop(ranks)
    result.history[:] = answer.get("history", [])
    if answer["kind"] == "error":
        raise TrialFailed(f"DDP rank {answer['rank']}: {answer['message']}")
    result.metrics = answer["metrics"]
    result.restored_epochs = answer.get("restored_epochs", 0)
    result.predictions = answer.get("predictions")
    if answer["kind"] == "pruned":
        raise answer["message"]  # the FoldPruned that rank 0 raised
    return result


def _wait_for_answer(answers: Any, ranks: list[Any]) -> dict[str, Any]:
    """Rank 0's result, or the first error; a rank that dies silently (killed, out of memory) fails the fold."""
    while True:
        if not answers.empty():
            return answers.get()
        dead = [(i, p.exitcode) for i, p in enumerate(ranks) if p.exitcode not in (None, 0)]
        if dead:
            time.sleep(0.5)  # its error message may still be on its way
            if not answers.empty():
                return answers.get()
            rank, code = dead[0]
            return {"kind": "error", "rank": rank, "message": f"process ended with exit code {code}"}
        if all(p.exitcode == 0 for p in ranks):
            if not answers.empty():  # put just before the ranks exited
                return answers.get()
            return {"kind": "error", "rank": 0, "message": "ranks ended without a result"}
        time.sleep(0.05)


def _stop(ranks: list[Any]) -> None:
    """End ranks still running (after an error or Ctrl-C); Lightning's SIGTERM handler does not exit, so kill."""
    started = [p for p in ranks if p.pid is not None]
    for process in started:
        if process.is_alive():
            process.kill()
    for process in started:
        process.join()


class DDPPruning(L.Callback):
    """Rank 0 reports to the trial and asks the pruner; the decision is broadcast to every rank."""

    def __init__(self, trial: Any, monitor: str, fold: int, max_epochs: int) -> None:
        from nnsearch.fit.callbacks import FoldPruning

        self.single = FoldPruning(trial, monitor, fold, max_epochs)
        self.pruned: BaseException | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        import optuna

        if trainer.sanity_checking:
            return
        decision: tuple[str, str] | None = None
        if trainer.is_global_zero:
            try:
                self.single.on_validation_end(trainer, pl_module)
            except optuna.TrialPruned as pruned:
                decision = ("pruned", pruned)
            except Exception as err:  # noqa: BLE001 - every rank must hear of it, or the others hang
                decision = ("error", f"{type(err).__name__}: {err}")
        decision = trainer.strategy.broadcast(decision, src=0)
        if decision is None:
            return
        if decision[0] == "error":
            raise TrialFailed(decision[1])
        self.pruned = decision[1]
        trainer.should_stop = True


def _rank_main(rank: int, world: int, port: int, cfg: DictConfig, data: Any, fold: Any, seed: int, epoch_metrics: list[str], ticket: Any,
               monitor: str | None, keep_predictions: bool, threads: int, answers: Any, checkpoint: Any = None) -> None:
    """One DDP rank: train, then (rank 0) send the fold's result to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the ranks
    die_with_parent()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), NODE_RANK="0", LOCAL_RANK=str(rank), RANK=str(rank))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # else Lightning sets cores / world itself
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    try:
        trial = None
        if rank == 0 and ticket is not None:  # only rank 0 talks to the study storage
            from nnsearch.storage import open_storage
            from nnsearch.fit.pruning import reopen_trial

            trial = reopen_trial(open_storage(cfg.study.storage), ticket)
        answer = _train_rank(rank, world, cfg, data, fold, seed, epoch_metrics, trial, monitor if ticket is not None else None, keep_predictions,
                             checkpoint)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the trial
        answers.put({"kind": "error", "rank": rank, "message": f"{type(err).__name__}: {err}"})
        raise SystemExit(1) from None
    if answer is not None:
        answers.put(answer)


def _train_rank(rank: int, world: int, cfg: DictConfig, data: Any, fold: Any, seed: int, epoch_metrics: list[str], trial: Any,
                monitor: str | None, keep_predictions: bool, checkpoint: Any = None) -> dict[str, Any] | None:
    """This rank's part of the one fold fit (:func:`nnsearch.fit.fold.fit_one_fold`); rank 0's answer for the parent."""
    from nnsearch.fit.fold import FoldResult, Rank, fit_one_fold
    from nnsearch.fit.pruning import FoldPruned
    from nnsearch.fit.settings import FitSettings

    result = FoldResult(fold.index)
    try:
        fit_one_fold(cfg, data, fold, FitSettings.from_config(cfg.trainer), seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor,
                     result=result, on_epoch=None, rank=Rank(rank, world), checkpoint=checkpoint)
    except FoldPruned as pruned:  # rank 0: the decision every rank stopped on
        return {"kind": "pruned", "message": pruned, "history": list(result.history), "metrics": {}}
    except TrialFailed as err:
        return {"kind": "error", "rank": rank, "message": str(err), "history": list(result.history)}
    if rank != 0:
        return None
    return {"kind": "done", "history": list(result.history), "metrics": result.metrics, "predictions": result.predictions if keep_predictions else None,
            "restored_epochs": result.restored_epochs}


def rank_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, rank: int, world: int, seed: int) -> TensorBatches:
    """Rank ``rank``'s training batches: its ``DistributedSampler`` share of the rows, a new share each epoch.

    The sampler is told the rank and world size, so it needs no process group; ``seed`` must be the
    same on every rank, so that the ranks' shares are disjoint and together cover every row.
    """
    from torch.utils.data import TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(TensorDataset(x, y), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return TensorBatches(x, y, batch_size, index_sampler=sampler)
