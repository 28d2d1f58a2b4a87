"""What trial checkpoints cost: one fold's fit with checkpoints off, at the default interval, and every epoch.

``python benchmarks/checkpoint_cost.py [--study digits_cnn] [--epochs 20] [--rounds 3]`` fits fold 0 of the
study's base configuration in this process, the variants in alternating order each round (drifting load
from other processes evens out), and prints the median seconds per variant and their ratio to "off".
"Off" still records the finished fold (one ``fold0.done`` file); the other variants add the saves within it.
On a shared machine the whole-fit ratios are noisy, so it also times the saves themselves and prints their
share of the fit (the figure the README states).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="digits_cnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--override", nargs="*", default=[])
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from nnsearch.config.studies import register_studies
    from nnsearch.cv.splits import fold_seed
    from nnsearch.fit.callbacks import FoldCheckpoint
    from nnsearch.fit.checkpoint import FoldCheckpointing
    from nnsearch.fit.fold import fit_fold
    from nnsearch.fit.settings import DEFAULT_EVERY, CheckpointEvery
    from nnsearch.study.session import prepare

    register_studies()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+study={args.study}", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=null",
                                           *args.override])
    p = prepare(cfg)
    fold = p.folds.get(0, cfg.data.get("scaler"))
    variants = {"off": None, f"default ({DEFAULT_EVERY})": CheckpointEvery.parse(DEFAULT_EVERY), "every epoch": CheckpointEvery(epochs=1)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    saves: dict[str, list[float]] = {name: [] for name in variants}
    current = {"name": ""}
    save = FoldCheckpoint.save

    def timed_save(self, trainer):
        started = time.perf_counter()
        save(self, trainer)
        saves[current["name"]].append(time.perf_counter() - started)

    FoldCheckpoint.save = timed_save
    fit_fold(cfg, p.data, fold, seed=fold_seed(0, 0), epoch_metrics=p.epoch_metrics)  # warm-up: lazy imports, first optimizer
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            every = variants[name] or CheckpointEvery()
            with tempfile.TemporaryDirectory() as folder:
                checkpoint = FoldCheckpointing(Path(folder), 0, every)
                current["name"] = name
                started = time.perf_counter()
                fit_fold(cfg, p.data, fold, seed=fold_seed(0, 0), epoch_metrics=p.epoch_metrics, checkpoint=checkpoint)
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["off"])
    print(f"{args.study}, fold 0, {args.epochs} epochs, median of {args.rounds} rounds:")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        saved = sum(saves[name]) / args.rounds
        each = f", {1000 * statistics.median(saves[name]):.1f} ms each" if saves[name] else ""
        print(f"  {name:<16} {median:7.3f} s   x{median / base:.3f}   saves per fit {len(saves[name]) / args.rounds:.0f}{each}: "
              f"{100 * saved / median:.2f} % of the fit")


if __name__ == "__main__":
    main()
