"""Trial checkpoints: a fold's training state saved while it trains, so that a retried trial resumes.

A trial whose process dies (kill -9, SLURM preemption, out of memory) or is stopped (Ctrl-C,
SIGTERM) is queued again with its parameters (:mod:`nnsearch.study.trials`). Its checkpoints live
in one folder per *original* trial (``<launch.checkpoint_dir>/<study>/trial-NNNN``), so the retry
finds them: each finished fold's result (``fold{k}.done``, with its final weights) is read back
instead of refitted, and the interrupted fold continues from its last checkpoint
(``fold{k}.<engine>.ckpt``).

What a checkpoint holds is Lightning's own checkpoint: ``trainer.save_checkpoint`` on the Trainer
engine (resumed with ``trainer.fit(ckpt_path=...)``), the same dictionary written by the fast engine
(:meth:`nnsearch.fit.fast.TrainerView.save_checkpoint`): the module, optimizer and scheduler states,
the epoch and every callback's ``state_dict`` (early stopping's counters included). The state
Lightning does not keep, and that an exact resume needs, is this callback's own ``state_dict``: the
fold's per-epoch history, the torch, numpy and python random states (written here: Lightning's own
collector of them is private) and the training batches' shuffling generator. A resumed fold therefore trains the epochs it missed exactly as an
uninterrupted one (on CPU: the same metrics, ``tests/fit/test_checkpoint.py``). Lightning does not
step a ``ReduceLROnPlateau`` scheduler for the epoch it resumes after, so ``scheduler=plateau`` may
lag one step after a resume.

Files are written atomically (a temporary file, then ``os.replace``): a process killed mid-write
leaves the previous checkpoint. Under DDP every rank takes part in ``save_checkpoint`` and rank 0
writes.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnsearch.fit.settings import CheckpointEvery

if TYPE_CHECKING:  # torch is imported where a checkpoint is read or written: the study's process only names folders
    import torch

MAX_COST = 0.02  # a time-based interval waits at least 1/MAX_COST times the last save's own duration


@dataclass(frozen=True)
class FoldCheckpointing:
    """Where fold ``fold`` of a trial keeps its checkpoints, and how often; crosses into fold processes and DDP ranks."""

    folder: Path
    fold: int
    every: CheckpointEvery

    def path(self, engine: str) -> Path:
        return self.folder / f"fold{self.fold}.{engine}.ckpt"

    def resume_path(self, engine: str) -> str | None:
        """The checkpoint this engine resumes from, if one was written."""
        path = self.path(engine)
        return str(path) if path.is_file() else None

    @property
    def done_path(self) -> Path:
        return self.folder / f"fold{self.fold}.done"

    def finished(self) -> dict[str, Any] | None:
        """``{"result": FoldResult, "weights": state_dict or None}`` of this fold, if it finished in an earlier attempt."""
        if not self.done_path.is_file():
            return None
        import torch

        try:
            return torch.load(self.done_path, weights_only=False, map_location="cpu")
        except Exception:  # noqa: BLE001 - an unreadable file (another version): the fold is trained again
            return None

    def finish(self, result: Any, weights: dict[str, torch.Tensor] | None) -> None:
        """Record the finished fold (its result and final weights) and drop its partial checkpoints."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_atomically({"result": result, "weights": weights}, self.done_path)
        for partial in self.folder.glob(f"fold{self.fold}.*.ckpt"):
            partial.unlink(missing_ok=True)


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then ``os.replace``: a kill mid-write leaves the previous file."""
    import torch

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TrialCheckpoints:
    """The checkpoint folder of one trial, keyed on the original trial (a retry has a new number)."""

    folder: Path
    every: CheckpointEvery

    def fold(self, index: int) -> FoldCheckpointing:
        return FoldCheckpointing(self.folder, index, self.every)

    def final_weights(self) -> dict[int, dict[str, torch.Tensor]]:
        """Each finished fold's final weights, by fold."""
        out = {}
        for path in sorted(self.folder.glob("fold*.done")):
            done = FoldCheckpointing(self.folder, int(path.name[4:-5]), self.every).finished()
            if done and done.get("weights") is not None:
                out[int(path.name[4:-5])] = done["weights"]
        return out

    def delete(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        for empty in (self.folder.parent, self.folder.parent.parent):  # the study's folder, then the root, once empty
            try:
                empty.rmdir()
            except OSError:
                break


def checkpoint_root(checkpoint_dir: str | None, storage_url: str | None) -> Path:
    """``launch.checkpoint_dir``, or a ``checkpoints`` folder beside the study's journal or SQLite file
    (``./checkpoints`` for a database server: give several machines a shared path)."""
    from nnsearch.storage import DEFAULT_JOURNAL, is_journal

    if checkpoint_dir:
        return Path(checkpoint_dir).expanduser().absolute()
    url = str(storage_url or "")
    if is_journal(storage_url):
        return Path(url or DEFAULT_JOURNAL).expanduser().absolute().parent / "checkpoints"
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).expanduser().absolute().parent / "checkpoints"
    return Path("checkpoints").absolute()


def trial_folder(root: Path, study_name: str, original_trial: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name)
    return root / safe / f"trial-{original_trial:04d}"


def rng_states() -> dict[str, Any]:
    """torch's, numpy's and python's random states, as tensors and plain values (Lightning loads checkpoints with ``weights_only``)."""
    import torch

    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached))
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
