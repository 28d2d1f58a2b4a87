"""Trials per hour with 1 and 2 worker processes on one study (one torch thread each).

    python benchmarks/scaling.py [--trials 12] [--study digits_mlp] [--epochs 10]

Each configuration runs the real CLI in a fresh temporary directory. Throughput is measured two
ways: over the whole command (start-up included) and over the span from the first trial's start
to the last trial's end (steady state). Printed figures are from one run: compare the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(workers: int, args: argparse.Namespace) -> dict[str, float]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "nnsearch", f"+study={args.study}", f"study.n_trials={args.trials}",
            f"launch.workers={workers}", "launch.threads_per_worker=1", "runtime.threads=1", "pruner=none",
            "sampler=random", f"trainer.max_epochs={args.epochs}", f"cv.folds={args.folds}",
        ]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{workers} worker(s) failed:\n{done.stderr[-2000:]}")
        study = optuna.load_study(study_name=args.study, storage=JournalStorage(JournalFileBackend(str(Path(tmp) / "optuna.journal"))))
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
        return {"trials": len(trials), "wall_s": wall, "span_s": span, "per_hour_wall": 3600 * len(trials) / wall, "per_hour_steady": 3600 * len(trials) / span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--study", default="digits_mlp")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    results = {w: run(w, args) for w in (1, 2)}
    print(f"study {args.study}: {args.trials} trials, {args.folds}-fold CV, {args.epochs} epochs, random sampler, no pruning")
    print(f"{'workers':>8} {'trials':>7} {'wall s':>8} {'trials/h (wall)':>16} {'trials/h (steady)':>18}")
    for w, r in results.items():
        print(f"{w:>8} {r['trials']:>7} {r['wall_s']:>8.1f} {r['per_hour_wall']:>16.0f} {r['per_hour_steady']:>18.0f}")
    print(f"scaling 2 vs 1 worker: {results[2]['per_hour_wall'] / results[1]['per_hour_wall']:.2f}x (wall), "
          f"{results[2]['per_hour_steady'] / results[1]['per_hour_steady']:.2f}x (steady state)")


if __name__ == "__main__":
    main()
