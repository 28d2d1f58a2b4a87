"""The floor: Optuna around a bare PyTorch loop, no Lightning, no DataLoader, no tracking.

It trains and validates exactly what nnsearch does for a trial (same folds, seeds, batches in
the same shuffled order, per-epoch validation loss and accuracy), so the time nnsearch spends
above this is its own overhead. It also measures the time inside training steps (forward,
backward, optimizer step), the arithmetic every variant has to do.

Usage: python benchmarks/bare.py {mlp,cnn} N_TRIALS WORKDIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import journal_study, load_setup, write_result  # noqa: E402

SEED = 0


def fit(setup, fold, params, seed: int, clock: list[float]) -> float:
    torch.manual_seed(seed)
    net = setup.network(params)
    opt = setup.adam(net, params)
    generator = torch.Generator().manual_seed(seed)
    n, bs = len(fold.x_train), setup.batch(params)
    steps = n // bs if n % bs == 1 else -(-n // bs)  # nnsearch drops a last batch of one row
    for _ in range(setup.max_epochs):
        net.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, steps * bs, bs):
            idx = order[start : start + bs]
            x, y = fold.x_train[idx], fold.y_train[idx]
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            clock[0] += time.perf_counter() - t0
        net.eval()
        with torch.inference_mode():
            logits = net(fold.x_val)
            curve = (F.cross_entropy(logits, fold.y_val).item(), (logits.argmax(-1) == fold.y_val).float().mean().item())
    return curve[1]


def main(kind: str, n_trials: int, workdir: Path) -> None:
    torch.set_num_threads(1)
    setup = load_setup(kind)
    study = journal_study(workdir, SEED)
    clock = [0.0]

    def objective(trial) -> float:
        params = setup.suggest(trial)
        scores = [fit(setup, fold, params, (SEED + trial.number) * 1000 + k, clock) for k, fold in enumerate(setup.folds)]
        return sum(scores) / len(scores)

    study.optimize(objective, n_trials=n_trials)
    write_result(workdir, step_s=clock[0])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
