"""What each search method buys: best CV score and epochs trained, on the same study and seeds.

    python benchmarks/search_methods.py [--study digits_mlp] [--trials 30] [--folds 3] [--epochs 10]

Runs the study with random search, TPE, GP and TPE + Hyperband pruning (each through the real
CLI in a fresh directory), then prints per method the best CV score, the epochs trained in total,
and the epochs it took to first reach the random search's final best score.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {
    "random": ["sampler=random", "pruner=none"],
    "tpe": ["sampler=tpe", "pruner=none"],
    "gp": ["sampler=gp", "pruner=none"],
    "tpe+hyperband": ["sampler=tpe", "pruner=hyperband"],
}


def run(method: str, overrides: list[str], args: argparse.Namespace) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "nnsearch", f"+study={args.study}", f"study.n_trials={args.trials}",
            f"cv.folds={args.folds}", f"trainer.max_epochs={args.epochs}", f"seed={args.seed}", *overrides,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{method} failed:\n{done.stderr[-2000:]}")
        seconds = time.perf_counter() - start
        study = optuna.load_study(study_name=args.study, storage=JournalStorage(JournalFileBackend(str(Path(tmp) / "optuna.journal"))))
        maximize = study.direction.name == "MAXIMIZE"
        trials = sorted(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number)
        curve, spent, best = [], 0, None
        for t in trials:
            spent += t.user_attrs.get("epochs", 0)
            if t.state == TrialState.COMPLETE and (best is None or (t.value > best if maximize else t.value < best)):
                best = t.value
            curve.append((spent, best))
        return {"best": best, "epochs": spent, "curve": curve, "maximize": maximize, "seconds": seconds,
                "pruned": sum(t.state == TrialState.PRUNED for t in trials)}


def epochs_to_reach(curve: list, target: float, maximize: bool) -> int | None:
    for spent, best in curve:
        if best is not None and (best >= target if maximize else best <= target):
            return spent
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="digits_mlp")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {m: run(m, o, args) for m, o in METHODS.items()}
    target = results["random"]["best"]
    maximize = results["random"]["maximize"]
    print(f"study {args.study}: {args.trials} trials, {args.folds}-fold CV, up to {args.epochs} epochs per fold, seed {args.seed}")
    print(f"target = random search's best = {target:.4f}")
    print(f"{'method':<15} {'best':>8} {'epochs':>7} {'pruned':>7} {'epochs to target':>17} {'share of random':>16} {'time s':>7}")
    for method, r in results.items():
        reach = epochs_to_reach(r["curve"], target, maximize)
        share = f"{reach / results['random']['epochs']:.2f}" if reach is not None else "never"
        print(f"{method:<15} {r['best']:>8.4f} {r['epochs']:>7} {r['pruned']:>7} {str(reach) if reach is not None else 'never':>17} {share:>16} {r['seconds']:>7.1f}")
    hb = epochs_to_reach(results["tpe+hyperband"]["curve"], target, maximize)
    verdict = "yes" if hb is not None and hb <= results["random"]["epochs"] / 3 else "no"
    print(f"TPE+Hyperband reached the random-search result with at most one third of its epochs: {verdict}")


if __name__ == "__main__":
    main()
