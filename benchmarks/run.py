"""nnsearch against the loop users write by hand, on the same trials: one command, a table and ratios.

    python benchmarks/run.py                 # MLP and CNN studies, 5-fold CV (~10 min on 2 cores)
    python benchmarks/run.py --studies mlp --trials 4
    python benchmarks/run.py --start-to-exit     # only the whole command, nnsearch vs recipe (~4 min)

Variants, each a fresh process on the same data, folds, seeds, search space and trial budget
(seeded random sampler, no pruning, no held-out test split, so every variant trains exactly the same
trials on the same rows):

- ``nnsearch``: the real CLI (``trainer.engine=fast``, the default), MLflow tracking included;
- ``nnsearch-lightning``: the same with ``trainer.engine=lightning``, to show what the fast loop buys;
- ``recipe``: Optuna + Lightning Trainer + DataLoader + pruning callback + ``MLflowCallback``;
- ``bare``: a bare PyTorch loop, no tracking (the floor).

Trial times come from each variant's Optuna journal (trial start and completion), so every
variant is timed the same way; "start to exit" is the whole command's wall time, from launch to
the process' exit (imports, set-up, trials, nnsearch's report, study plots and final model, exit),
which is what a user waits for on a small study. "outside steps" is the share of a variant's trial time not spent in
forward/backward/optimizer steps, taking the bare loop's measured step time as the arithmetic all
variants share. Timings on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, STUDIES, STUDY_NAME  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = ("nnsearch", "nnsearch-lightning", "recipe", "bare")
DEFAULT_TRIALS = {"mlp": 4, "cnn": 2}
TARGETS = {"speedup_vs_recipe": 2.0, "vs_bare": 1.25, "help_s": 1.5}


def command(variant: str, kind: str, n_trials: int, workdir: Path) -> list[str]:
    py = sys.executable
    if variant.startswith("nnsearch"):
        engine = "lightning" if variant == "nnsearch-lightning" else "fast"
        return [
            py, "-m", "nnsearch", f"+study={STUDIES[kind]}", f"study.n_trials={n_trials}", f"study.name={STUDY_NAME}",
            "cv.folds=5", "++cv.test_size=0", "seed=0", "sampler=random", "pruner=none", f"trainer.engine={engine}", f"hydra.run.dir={workdir}/outputs",
        ]  # fmt: skip
    return [py, str(HERE / f"{variant}.py"), kind, str(n_trials), str(workdir)]


def run_variant(variant: str, kind: str, n_trials: int, root: Path, round_: int = 0) -> dict:
    """Run one variant in its own directory; time it from launch and read its trials back."""
    workdir = root / f"{kind}-{variant}-{round_}"
    workdir.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    with open(workdir / "log.txt", "w") as log:
        launched = time.time()
        proc = subprocess.Popen(command(variant, kind, n_trials, workdir), cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{variant} ({kind}) failed; see {workdir / 'log.txt'}:\n" + (workdir / "log.txt").read_text()[-3000:])
    trials = _trials(workdir)
    first = min(t.datetime_start.timestamp() for t in trials)
    last = max(t.datetime_complete.timestamp() for t in trials)
    child = json.loads((workdir / "child.json").read_text()) if (workdir / "child.json").exists() else {}
    return {
        "variant": variant,
        "n": len(trials),
        "wall_s": last - first,
        "per_trial_s": (last - first) / len(trials),
        "trials_per_hour": 3600 * len(trials) / (last - first),
        "first_trial_s": first - launched,
        "after_last_s": ended - last,
        "process_s": ended - launched,
        "peak_mib": usage.ru_maxrss / 1024,
        "params": [t.params for t in trials],
        "values": [t.value for t in trials],
        "step_s": child.get("step_s"),
    }


def _trials(workdir: Path) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    return sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)


# nnsearch.cli.help answers --help from directory listings; until __main__.py calls it first, this
# line runs the same code path so the benchmark shows both
FAST_HELP = "import sys; from nnsearch.cli.help import help_text, wants_help; wants_help() and print(help_text()); import hydra"


def help_seconds(args: list[str], repeats: int = 3) -> float:
    """Median wall time of ``python ARGS --help`` (a fresh interpreter each time)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args, "--help"], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def combine(runs: list[dict]) -> dict:
    """One row from several rounds of the same variant: times summed over all their trials."""
    n, wall = sum(r["n"] for r in runs), sum(r["wall_s"] for r in runs)
    return {
        **runs[0],
        "n": n,
        "wall_s": wall,
        "per_trial_s": wall / n,
        "trials_per_hour": 3600 * n / wall,
        "first_trial_s": statistics.mean(r["first_trial_s"] for r in runs),
        "after_last_s": statistics.mean(r["after_last_s"] for r in runs),
        "process_s": statistics.mean(r["process_s"] for r in runs),
        "process_each_s": [r["process_s"] for r in runs],
        "peak_mib": max(r["peak_mib"] for r in runs),
        "step_s": sum(r["step_s"] for r in runs) if runs[0]["step_s"] is not None else None,
    }


def report(kind: str, rows: dict[str, dict]) -> dict[str, float]:
    bare_step = rows["bare"]["step_s"] if "bare" in rows else None
    print(f"\n{kind.upper()} study ({STUDIES[kind]}, 5-fold CV, {next(iter(rows.values()))['n']} trials per variant)")
    header = f"{'variant':<20}{'s/trial':>9}{'trials/h':>10}{'outside steps':>15}{'first trial s':>15}{'process s':>11}{'peak MiB':>10}"
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        outside = f"{1 - bare_step / r['wall_s']:.0%}" if bare_step else "n/a"
        print(
            f"{name:<20}{r['per_trial_s']:>9.2f}{r['trials_per_hour']:>10.0f}{outside:>15}"
            f"{r['first_trial_s']:>15.2f}{r['process_s']:>11.1f}{r['peak_mib']:>10.0f}"
        )
    params = [r["params"] for r in rows.values()]
    print(f"same sampled parameters in every variant: {'yes' if all(p == params[0] for p in params) else 'NO'}")
    if "nnsearch" in rows and "bare" in rows:
        diff = max(abs(a - b) for a, b in zip(rows["nnsearch"]["values"], rows["bare"]["values"]))
        print(f"largest |CV accuracy difference| nnsearch vs bare over the trials: {diff:.2e}")
    ratios = {}
    if "nnsearch" in rows and "recipe" in rows:
        ratios["speedup_vs_recipe"] = rows["nnsearch"]["trials_per_hour"] / rows["recipe"]["trials_per_hour"]
    if "nnsearch" in rows and "bare" in rows:
        ratios["vs_bare"] = rows["nnsearch"]["per_trial_s"] / rows["bare"]["per_trial_s"]
    if "nnsearch" in rows and "recipe" in rows:
        ratios["exit_vs_recipe"] = rows["recipe"]["process_s"] / rows["nnsearch"]["process_s"]
    if "nnsearch" in rows and "nnsearch-lightning" in rows:
        ratios["fast_vs_lightning_engine"] = rows["nnsearch-lightning"]["per_trial_s"] / rows["nnsearch"]["per_trial_s"]
    return ratios


def start_to_exit(n_trials: int, rounds: int, root: Path) -> None:
    """The whole command, launch to exit, nnsearch against the hand recipe on a small study:
    the user's wait, fixed costs (imports, set-up, report, exit) included."""
    runs: dict[str, list[dict]] = {"nnsearch": [], "recipe": []}
    for round_ in range(rounds):
        for v in ("nnsearch", "recipe") if round_ % 2 == 0 else ("recipe", "nnsearch"):
            runs[v].append(run_variant(v, "mlp", n_trials, root, round_))
    print(f"\nStart to exit ({STUDIES['mlp']}, 5-fold CV, {n_trials} trials, {rounds} rounds in alternating order)")
    header = f"{'variant':<10}{'start-to-exit s (each round)':>30}{'mean s':>8}{'to 1st trial s':>16}{'s/trial':>9}{'after last trial s':>20}"
    print(header)
    print("-" * len(header))
    rows = {v: combine(r) for v, r in runs.items()}
    for name, r in rows.items():
        each = ", ".join(f"{x:.1f}" for x in r["process_each_s"])
        print(f"{name:<10}{each:>30}{r['process_s']:>8.1f}{r['first_trial_s']:>16.1f}{r['per_trial_s']:>9.2f}{r['after_last_s']:>20.1f}")
    print(f"recipe start-to-exit / nnsearch start-to-exit: {rows['recipe']['process_s'] / rows['nnsearch']['process_s']:.2f}x "
          f"(per trial {rows['recipe']['per_trial_s'] / rows['nnsearch']['per_trial_s']:.2f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--trials", type=int, default=None, help="trials per variant and round (default: mlp 4, cnn 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, in alternating variant order (ABBA) so drifting load evens out")
    parser.add_argument("--start-to-exit", action="store_true", help="only the whole command's wall time, nnsearch vs recipe (mlp, 6 trials unless --trials)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    if args.start_to_exit:
        with tempfile.TemporaryDirectory(prefix="nnsearch-bench-") as tmp:
            start_to_exit(args.trials or 6, args.rounds, Path(tmp))
        return
    help_s = help_seconds(["-m", "nnsearch"])
    fast_help_s = help_seconds(["-c", FAST_HELP])
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="nnsearch-bench-") as tmp:
        for kind in args.studies:
            n = args.trials or DEFAULT_TRIALS[kind]
            runs: dict[str, list[dict]] = {v: [] for v in args.variants}
            for round_ in range(args.rounds):
                order = args.variants if round_ % 2 == 0 else args.variants[::-1]
                for v in order:
                    runs[v].append(run_variant(v, kind, n, Path(tmp), round_))
            results[kind] = report(kind, {v: combine(r) for v, r in runs.items()})
            if "nnsearch" in runs and "recipe" in runs:
                rows = {v: combine(runs[v]) for v in ("nnsearch", "recipe")}
                print(f"start to exit: nnsearch {rows['nnsearch']['process_s']:.1f} s, recipe {rows['recipe']['process_s']:.1f} s (means)")
    print(f"\nCLI start-up: `python -m nnsearch --help` {help_s:.2f} s; via nnsearch.cli.help {fast_help_s:.2f} s (medians of 3)")
    print("\nRatios (one run)                                   " + "".join(f"{k:>10}" for k in results) + "    target")
    lines = [
        ("nnsearch trials/h / recipe trials/h", "speedup_vs_recipe", f">= {TARGETS['speedup_vs_recipe']}"),
        ("nnsearch s/trial / bare loop s/trial", "vs_bare", f"<= {TARGETS['vs_bare']}"),
        ("recipe start-to-exit s / nnsearch start-to-exit s", "exit_vs_recipe", "(info)"),
        ("engine=lightning s/trial / engine=fast s/trial", "fast_vs_lightning_engine", "(info)"),
    ]
    for label, key, target in lines:
        cells = "".join(f"{results[k][key]:>10.2f}" if key in results[k] else f"{'n/a':>10}" for k in results)
        print(f"{label:<51}{cells}    {target}")
    print(f"{'`--help` seconds (Hydra help / nnsearch.cli.help)':<51}{help_s:>10.2f}{fast_help_s:>10.2f}    < {TARGETS['help_s']}")


if __name__ == "__main__":
    main()
