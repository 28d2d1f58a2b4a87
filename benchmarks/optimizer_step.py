"""What the fused optimizer kernel buys: one fold's fit with ``optimizer.fused`` off and on.

``python benchmarks/optimizer_step.py [--study digits_mlp] [--epochs 20] [--rounds 5] [--override k=v ...]``
fits fold 0 of the study's base configuration in this process, on one thread, the two variants in
alternating order each round (drifting load from other processes evens out), and prints the median
seconds and process (CPU) seconds of each and their ratio. Small networks take many small steps, so
the optimizer's per-parameter ops weigh heavily: this is why ``conf/optimizer/adam*.yaml`` set
``fused: true``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="digits_mlp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--override", nargs="*", default=[])
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from nnsearch.config.studies import register_studies
    from nnsearch.cv.splits import fold_seed
    from nnsearch.fit.fold import fit_fold
    from nnsearch.study.session import prepare

    torch.set_num_threads(1)
    register_studies()
    variants = {"fused: false": "optimizer.fused=false", "fused: true": "optimizer.fused=true"}
    configs = {}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name, override in variants.items():
            configs[name] = compose("config", overrides=[f"+study={args.study}", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=null",
                                                         "runtime.threads=1", f"++{override}", *args.override])
    p = prepare(configs["fused: false"])
    fold = p.folds.get(0, configs["fused: false"].data.get("scaler"))
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for cfg in configs.values():  # warm-up: lazy imports, first optimizer of each kind
        fit_fold(cfg, p.data, fold, seed=fold_seed(0, 0), epoch_metrics=p.epoch_metrics)
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            started, process = time.perf_counter(), time.process_time()
            fit_fold(configs[name], p.data, fold, seed=fold_seed(0, 0), epoch_metrics=p.epoch_metrics)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - process)
    base, base_cpu = statistics.median(wall["fused: false"]), statistics.median(cpu["fused: false"])
    print(f"{args.study}, fold 0, {args.epochs} epochs, 1 thread, median of {args.rounds} rounds:")
    for name in variants:
        median, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:<13} {median:7.3f} s  x{median / base:.3f}   CPU {median_cpu:7.3f} s  x{median_cpu / base_cpu:.3f}")


if __name__ == "__main__":
    main()
